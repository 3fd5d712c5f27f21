"""Normalised-source hashing: the same code, however formatted or commented, hashes the same.

Python's own `ast` does this job best: its tree already drops comments and layout, and
`ast.unparse` re-emits it in one canonical form. Only docstrings need removing.
"""

from __future__ import annotations

import ast
import hashlib


class _DropDocstrings(ast.NodeTransformer):
    """Remove docstrings: they document, they do not change the network."""

    def _strip(self, node):
        self.generic_visit(node)
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
        return node

    visit_Module = visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _strip


def normalized_source(source: str) -> str:
    """Canonical text of a module: no docstrings, comments, blank lines or formatting choices."""
    return ast.unparse(_DropDocstrings().visit(ast.parse(source)))


def code_hash(source: str) -> str:
    """sha256 hex of the normalised source."""
    return hashlib.sha256(normalized_source(source).encode()).hexdigest()
