"""Parsing candidate source safely: Python's own parser and a nesting bound before libcst.

Candidate code is adversarial, and libcst's native parser is not built for it: a few KB of
nested brackets overflow its stack and kill the driver (SIGSEGV at 3,000 parentheses, at
10,000 `lambda:`s or `and`s), and a long chain of subscripts or operators takes minutes
(`a[0][0]...` 3,000 deep: over 15 s). Python's parser refuses brackets past 200 levels with
a SyntaxError and reports deeper chains as RecursionError or MemoryError, so it goes first;
then the tree's depth is measured without recursion and capped well above any real model
code (the templates, the LEMUR models and this package reach 23). Only then does libcst parse.
"""

from __future__ import annotations

import ast

import libcst as cst

# Deepest expression or statement nesting a candidate may have. Real model code reaches ~25;
# libcst parses 1,000 levels in about a second, so 100 keeps it fast with room to spare.
MAX_NESTING = 100


class CandidateSyntaxError(ValueError):
    """The source is not a Python module libcst may be handed: a syntax error, or nested too deeply."""


def nesting_depth(tree: ast.AST) -> int:
    """How deep `tree` nests, counting a chain of `and`/`or` as libcst does (one level per operator)."""
    deepest, todo = 0, [(tree, 1)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, ast.BoolOp):  # flat in Python's tree, a binary chain in libcst's
            depth += max(len(node.values) - 2, 0)
        deepest = max(deepest, depth)
        todo.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def syntax_problem(source: str, max_nesting: int = MAX_NESTING) -> str | None:
    """Why `source` may not be parsed with libcst (one line), or None when it may."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        where = f" at line {exc.lineno}, column {exc.offset}" if exc.lineno else ""
        return f"syntax error{where}: {exc.msg}"
    except (RecursionError, MemoryError, ValueError):  # ValueError: null bytes in the source
        return "the code is nested too deeply (or is too large) for Python's parser"
    depth = nesting_depth(tree)
    if depth > max_nesting:
        return f"the code nests {depth} levels deep; at most {max_nesting} are accepted"
    return None


def parse_module(source: str) -> cst.Module:
    """`source` as a libcst module, checked first; CandidateSyntaxError says why not."""
    problem = syntax_problem(source)
    if problem is not None:
        raise CandidateSyntaxError(problem)
    try:
        return cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        raise CandidateSyntaxError(f"syntax error at line {exc.raw_line}, column {exc.raw_column}: "
                                   f"{exc.message}") from None
