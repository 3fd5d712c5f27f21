"""The search spaces: templates, their editable regions, and the values their parameters may take."""

from nas_agent.space.fractal import ELEMENT_KINDS, FractalSpace, element_orders
from nas_agent.space.template import (Template, TemplateError, changed_outside_regions, editable_regions, has_regions,
                                     load_template, load_templates, read_family, read_params, render_params,
                                     replace_regions)

__all__ = [
    "ELEMENT_KINDS", "FractalSpace", "Template", "TemplateError", "changed_outside_regions", "editable_regions",
    "element_orders", "has_regions", "load_template", "load_templates", "read_family", "read_params",
    "render_params", "replace_regions",
]
