"""The search space: templates, their parameter regions, and the permutation generator."""

from nas_agent.space.fractal import ELEMENT_KINDS, FractalSpace, element_orders
from nas_agent.space.generate import GeneratedCandidate, candidate_filename, generate_candidates, render_variants
from nas_agent.space.template import (Template, TemplateError, changed_outside_regions, editable_regions, has_regions, load_template,
                                     load_templates, read_family, read_params, render_params,
                                     replace_regions)

__all__ = [
    "ELEMENT_KINDS", "FractalSpace", "GeneratedCandidate", "Template", "TemplateError", "candidate_filename",
    "changed_outside_regions", "editable_regions", "element_orders", "generate_candidates", "has_regions", "load_template", "load_templates", "read_family", "read_params", "render_params",
    "render_variants", "replace_regions",
]
