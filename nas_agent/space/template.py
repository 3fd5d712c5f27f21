"""Template files: read and rewrite the declared parameter region with libcst.

A template is an ordinary candidate file whose tunable constants sit between two
marker comments. Tools (the generator, mutations, the LLM prompt) change only that
region, and they do it on the syntax tree, never by pasting strings.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import libcst as cst

BEGIN_MARKER = "# --- nas-agent: template parameters (begin) ---"
END_MARKER = "# --- nas-agent: template parameters (end) ---"

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"


class TemplateError(ValueError):
    """A template or a parameter assignment that cannot be read or rendered."""


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

    def render(self, values: dict[str, Any]) -> str:
        """Source of the template with the given parameters replaced."""
        return render_params(self.tree, values)


def _has_comment(statement: cst.CSTNode, text: str) -> bool:
    return any(line.comment is not None and line.comment.value.strip() == text
               for line in getattr(statement, "leading_lines", ()))


def _region_assignments(module: cst.Module):
    """Yield (name, Assign node) for each assignment inside the parameter region."""
    inside = False
    seen_begin = False
    for statement in module.body:
        if _has_comment(statement, END_MARKER):
            inside = False
        if _has_comment(statement, BEGIN_MARKER):
            inside = seen_begin = True
        if not inside:
            continue
        if not (isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1
                and isinstance(statement.body[0], cst.Assign)
                and len(statement.body[0].targets) == 1
                and isinstance(statement.body[0].targets[0].target, cst.Name)):
            raise TemplateError("the parameter region may hold only simple `NAME = literal` assignments")
        assign = statement.body[0]
        yield assign.targets[0].target.value, assign
    if not seen_begin:
        raise TemplateError(f"no parameter region: expected a line {BEGIN_MARKER!r}")


def read_params(source: str) -> dict[str, Any]:
    """The literal values assigned in a source's parameter region."""
    module = _parse(source)
    params = {}
    for name, assign in _region_assignments(module):
        try:
            params[name] = ast.literal_eval(module.code_for_node(assign.value))
        except (ValueError, SyntaxError) as exc:
            raise TemplateError(f"parameter {name} is not a literal: {exc}") from None
    return params


def read_family(source: str, default: str = "Net") -> str:
    """The module-level FAMILY constant, or `default` when the file declares none."""
    for statement in _parse(source).body:
        if isinstance(statement, cst.SimpleStatementLine):
            for small in statement.body:
                if (isinstance(small, cst.Assign) and len(small.targets) == 1
                        and isinstance(small.targets[0].target, cst.Name)
                        and small.targets[0].target.value == "FAMILY"
                        and isinstance(small.value, cst.SimpleString)):
                    return small.value.evaluated_value
    return default


def render_params(source: str | cst.Module, values: dict[str, Any]) -> str:
    """Rewrite the parameter region's assignments with `values` (unknown names are an error)."""
    return render_tree(source, values).code


def render_tree(source: str | cst.Module, values: dict[str, Any]) -> cst.Module:
    """Like render_params, returning the libcst module (for checks that would re-parse the text)."""
    module = _parse(source) if isinstance(source, str) else source
    assignments = dict(_region_assignments(module))
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


def load_template(path: str | Path) -> Template:
    """Read a template file (a path, or the name of a file in templates/)."""
    path = Path(path)
    if not path.exists() and (TEMPLATES_DIR / path).exists():
        path = TEMPLATES_DIR / path
    try:
        source = path.read_text()
    except OSError as exc:
        raise TemplateError(f"cannot read template {path}: {exc.strerror}") from None
    return Template(path=path, source=source, family=read_family(source, path.stem),
                    defaults=read_params(source))


def _parse(source: str) -> cst.Module:
    try:
        return cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        raise TemplateError(f"syntax error at line {exc.raw_line}: {exc.message}") from None
