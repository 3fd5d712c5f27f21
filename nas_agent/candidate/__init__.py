"""A candidate: one Python source file under the LEMUR contract, parsed once into a frozen value.

Every stage after parsing (policy, contract, template regions, deduplication, smoke run,
registration) reads the same `Candidate`, so the source is handed to libcst once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import libcst as cst

from nas_agent.candidate.declared import TemplateError, read_params, read_string_constant
from nas_agent.candidate.normalize import code_hash
from nas_agent.candidate.syntax import MAX_NESTING, CandidateSyntaxError, nesting_depth, parse_module, syntax_problem

__all__ = ["Candidate", "CandidateSyntaxError", "MAX_NESTING", "code_hash", "nesting_depth", "parse_module",
           "syntax_problem"]


@dataclass(frozen=True)
class Candidate:
    """A parsed candidate: its source, libcst tree, declared FAMILY and TASK, template parameters, code hash.

    `family` and `task` are None when the file declares none; `params` is empty when it has no
    readable parameter region. Build one with `Candidate.parse`.
    """

    source: str
    module: cst.Module = field(repr=False, compare=False)
    code_hash: str
    family: str | None = None
    task: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def parse(cls, source: str) -> Candidate:
        """Parse `source` (safely: see `syntax`) and read what it declares; CandidateSyntaxError says why not."""
        return cls.of_module(source, parse_module(source))

    @classmethod
    def of_module(cls, source: str, module: cst.Module) -> Candidate:
        """The candidate of a tree already parsed (or rendered) from `source`, without parsing it again."""
        try:
            params = read_params(module)
        except TemplateError:
            params = {}  # a hand-written file need not come from a template
        return cls(source, module, code_hash(source), read_string_constant(module, "FAMILY", None),
                   read_string_constant(module, "TASK", None), params)

    def family_or(self, default: str) -> str:
        return self.family if self.family is not None else default

    def task_or(self, default: str) -> str:
        return self.task if self.task is not None else default
