"""Template files: rewrite the parameter region with libcst, read and replace the editable regions.

A template is an ordinary candidate file whose tunable constants sit between two
marker comments (read by `nas_agent.candidate.declared`). Tools (the generator,
mutations, the LLM prompt) change only that region, and they do it on the syntax
tree, never by pasting strings.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import libcst as cst

from nas_agent.candidate.declared import (BEGIN_MARKER, END_MARKER, FAMILY_PATTERN, TemplateError, family_from_stem,
                                          is_valid_family, read_family, read_params, read_string_constant, read_task,
                                          region_assignments)
from nas_agent.candidate.syntax import CandidateSyntaxError, parse_module

# Re-exported: what a file declares is read in the candidate package, below this one.
__all__ = ["BEGIN_MARKER", "END_MARKER", "FAMILY_PATTERN", "Template", "TemplateError", "changed_outside_regions",
           "editable_regions", "family_from_stem", "has_regions", "is_valid_family", "load_template",
           "load_templates", "read_family", "read_params", "read_string_constant", "read_task", "render_params",
           "render_tree", "replace_regions"]

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"


@dataclass(frozen=True)
class Template:
    """A parsed template: its source, family name and default parameters."""

    path: Path
    source: str
    family: str
    defaults: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def tree(self) -> cst.Module:
        return _parse(self.source)

    @cached_property
    def fixed_code(self) -> list[str]:
        """Canonical code of the statements outside the editable regions (what candidates must keep)."""
        return fixed_statements(self.source)

    def render(self, values: dict[str, Any]) -> str:
        """Source of the template with the given parameters replaced."""
        return render_params(self.tree, values)


def render_params(source: str | cst.Module, values: dict[str, Any]) -> str:
    """Rewrite the parameter region's assignments with `values` (unknown names are an error)."""
    return render_tree(source, values).code


def render_tree(source: str | cst.Module, values: dict[str, Any]) -> cst.Module:
    """Like render_params, returning the libcst module (for checks that would re-parse the text)."""
    module = _parse(source) if isinstance(source, str) else source
    assignments = dict(region_assignments(module))
    unknown = set(values) - set(assignments)
    if unknown:
        raise TemplateError(f"not template parameters: {', '.join(sorted(unknown))}")
    # Swap only the region's top-level statements: a full tree transform costs far more.
    replaced = {id(assignments[name]): cst.parse_expression(repr(value)) for name, value in values.items()}
    body = []
    for statement in module.body:
        if isinstance(statement, cst.SimpleStatementLine) and id(statement.body[0]) in replaced:
            assign = statement.body[0]
            statement = statement.with_changes(body=[assign.with_changes(value=replaced[id(assign)])])
        body.append(statement)
    return module.with_changes(body=body)


_REGION_MARKER = re.compile(r"#\s*---\s*nas-agent:\s*(?P<label>.+?)\s*\((?P<side>begin|end)\)\s*---\s*$")


def fixed_statements(source: str) -> list[str]:
    """Canonical form (an AST dump) of each top-level statement outside every editable region."""
    inside_lines, inside = set(), False
    for number, line in enumerate(source.splitlines(), start=1):
        match = _REGION_MARKER.match(line.strip()) if "nas-agent:" in line else None
        if match:
            inside = match["side"] == "begin"
        elif inside:
            inside_lines.add(number)
    try:
        body = ast.parse(source).body
    except SyntaxError as exc:
        raise TemplateError(f"syntax error at line {exc.lineno}: {exc.msg}") from None
    return [ast.dump(statement) for statement in body if statement.lineno not in inside_lines]


def editable_regions(source: str) -> dict[str, str]:
    """The text of each editable region (between its marker lines, markers excluded), by label."""
    regions: dict[str, list[str]] = {}
    current = None
    for line in source.splitlines():
        match = _REGION_MARKER.match(line.strip()) if "nas-agent:" in line else None
        if match:
            current = match["label"] if match["side"] == "begin" else None
            if current is not None:
                regions[current] = []
        elif current is not None:
            regions[current].append(line)
    return {label: "\n".join(lines) for label, lines in regions.items()}


def replace_regions(source: str, replacements: dict[str, str]) -> str:
    """`source` with the named editable regions' text replaced (marker lines kept); unknown labels are an error."""
    unknown = set(replacements) - set(editable_regions(source))
    if unknown:
        raise TemplateError(f"no editable region named {', '.join(sorted(unknown))}")
    out, skipping = [], False
    for line in source.splitlines():
        match = _REGION_MARKER.match(line.strip()) if "nas-agent:" in line else None
        if match and match["side"] == "begin" and match["label"] in replacements:
            out += [line, replacements[match["label"]].strip("\n")]
            skipping = True
        elif match and match["side"] == "end":
            out.append(line)
            skipping = False
        elif not skipping:
            out.append(line)
    return "\n".join(out) + "\n"


def has_regions(source: str) -> bool:
    """Whether the source carries editable-region markers (it was made from a template)."""
    return any(_REGION_MARKER.match(line.strip()) for line in source.splitlines() if "nas-agent:" in line)


def changed_outside_regions(candidate: str, template: Template) -> str | None:
    """None when `candidate` differs from `template` only inside its editable regions, else what changed.

    Comments and formatting do not count; a changed, added or removed statement does.
    """
    mine, theirs = fixed_statements(candidate), template.fixed_code
    for position, code in enumerate(mine):
        if position >= len(theirs) or code != theirs[position]:
            statement = ast.parse(candidate).body
            kept = [s for s in statement if ast.dump(s) in mine]
            where = f"line {kept[position].lineno}" if position < len(kept) else "a statement"
            verb = "was added" if position >= len(theirs) else f"differs from template {template.path.name}"
            return (f"{where} {verb} outside the editable regions; change only the code between "
                    f"the nas-agent (begin)/(end) markers")
    if len(theirs) > len(mine):
        return f"a statement of template {template.path.name} outside the editable regions was removed"
    return None


def load_templates(folder: str | Path = TEMPLATES_DIR) -> dict[str, Template]:
    """Every template in `folder`, by family name."""
    templates = {}
    for path in sorted(Path(folder).glob("*.py")):
        template = load_template(path)
        templates[template.family] = template
    return templates


def load_template(path: str | Path) -> Template:
    """Read a template file (a path, or the name of a file in templates/)."""
    path = Path(path)
    if not path.exists():  # a name in templates/, or a path relative to the repository (as configs give it)
        path = next((p for p in (TEMPLATES_DIR / path, TEMPLATES_DIR.parent / path) if p.exists()), path)
    try:
        source = path.read_text()
    except OSError as exc:
        raise TemplateError(f"cannot read template {path}: {exc.strerror}") from None
    return Template(path=path, source=source, family=read_family(source, family_from_stem(path.stem)),
                    defaults=read_params(source))


def _parse(source: str) -> cst.Module:
    try:
        return parse_module(source)
    except CandidateSyntaxError as exc:
        raise TemplateError(str(exc)) from None
