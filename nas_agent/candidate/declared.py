"""What a candidate file declares, read from its syntax tree (nothing runs): FAMILY, TASK, template parameters.

A template is an ordinary candidate file whose tunable constants sit between two marker
comments (the parameter region); every candidate made from it carries the same region.
"""

from __future__ import annotations

import ast
import re

from typing import Any

import libcst as cst

from nas_agent.candidate.syntax import CandidateSyntaxError, parse_module
from nas_agent.errors import UserError

BEGIN_MARKER = "# --- nas-agent: template parameters (begin) ---"
END_MARKER = "# --- nas-agent: template parameters (end) ---"


class TemplateError(UserError, ValueError):
    """A template or a parameter assignment that cannot be read or rendered."""


def _has_comment(statement: cst.CSTNode, text: str) -> bool:
    return any(line.comment is not None and line.comment.value.strip() == text
               for line in getattr(statement, "leading_lines", ()))


def region_assignments(module: cst.Module):
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


def read_params(source: str | cst.Module) -> dict[str, Any]:
    """The literal values assigned in a source's parameter region."""
    module = _parse(source) if isinstance(source, str) else source
    params = {}
    for name, assign in region_assignments(module):
        try:
            params[name] = ast.literal_eval(module.code_for_node(assign.value))
        except (ValueError, SyntaxError) as exc:
            raise TemplateError(f"parameter {name} is not a literal: {exc}") from None
    return params


# A family names the model (`<task>_<dataset>_<metric>_<family>-<hash>`) and with it the job and
# checkpoint folders: letters, digits and hyphens only, so no FAMILY can walk out of a folder
# ("../..") or break LEMUR's "_"-separated names.
FAMILY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,79}")


def is_valid_family(family: str) -> bool:
    """Whether `family` may name models: 1-80 ASCII letters, digits and hyphens, not starting with a hyphen."""
    return isinstance(family, str) and FAMILY_PATTERN.fullmatch(family) is not None


def family_from_stem(stem: str) -> str:
    """A valid family made from a file name (`my_model` -> `my-model`), for files that declare none.

    A LEMUR name's code id is not part of the family (`FractalNet-1a2b…` of 32 hex digits -> `FractalNet`).
    """
    stem = re.sub(r"-[0-9a-f]{32}$", "", stem)
    cleaned = re.sub(r"-+", "-", re.sub(r"[^A-Za-z0-9-]", "-", stem)).strip("-")[:80]
    return cleaned or "Net"


def read_family(source: str | cst.Module, default: str = "Net") -> str:
    """The module-level FAMILY constant, or `default` when the file declares none."""
    return read_string_constant(source, "FAMILY", default)


def read_task(source: str | cst.Module, default: str = "img-classification") -> str:
    """The module-level TASK constant (e.g. "img-generation"), or `default` when the file declares none."""
    return read_string_constant(source, "TASK", default)


def read_string_constant(source: str | cst.Module, name: str, default: str | None) -> str | None:
    """The string literal assigned to module-level `name`, read from the syntax tree (nothing runs)."""
    module = _parse(source) if isinstance(source, str) else source
    for statement in module.body:
        if isinstance(statement, cst.SimpleStatementLine):
            for small in statement.body:
                if (isinstance(small, cst.Assign) and len(small.targets) == 1
                        and isinstance(small.targets[0].target, cst.Name)
                        and small.targets[0].target.value == name
                        and isinstance(small.value, cst.SimpleString)):
                    return small.value.evaluated_value
    return default


def _parse(source: str) -> cst.Module:
    try:
        return parse_module(source)
    except CandidateSyntaxError as exc:
        raise TemplateError(str(exc)) from None
