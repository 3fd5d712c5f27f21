"""Normalised-source hashing: the same code, however formatted, commented or named inside, hashes the same.

Python's own `ast` does most of this job: its tree already drops comments and layout,
and `ast.unparse` re-emits it in one canonical form. On top of that, docstrings are
removed and the local names of every function (arguments and assigned variables) are
replaced by their order of first appearance, so renaming a loop variable or an argument
does not make a "new" network. Names that other code can see are kept: module-level
names, class attributes, attribute names (`self.conv` is a state-dict key) and
arguments that some call passes by keyword.
"""

from __future__ import annotations

import ast
import hashlib

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef,
           ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


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


def _own_nodes(nodes):
    """Every node below `nodes` that belongs to the same scope (nested scopes are not entered)."""
    stack = list(nodes)
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, _SCOPES):
            stack.extend(ast.iter_child_nodes(node))


def _arguments(args: ast.arguments) -> list[str]:
    every = [*args.posonlyargs, *args.args, *([args.vararg] if args.vararg else []),
             *args.kwonlyargs, *([args.kwarg] if args.kwarg else [])]
    return [a.arg for a in every]


class _CanonicalNames(ast.NodeTransformer):
    """Rename each function's (and lambda's, comprehension's) locals to `_l<depth>_<n>`."""

    def __init__(self, keyword_names: set[str]):
        self.keyword_names = keyword_names  # arguments callers may name: renaming them would change meaning
        self.mappings: list[dict[str, str]] = [{}]

    def _enter(self, local_names: list[str]) -> None:
        # A copy, so free variables keep the enclosing scope's names; locals shadow them.
        mapping = dict(self.mappings[-1])
        depth = len(self.mappings)
        for count, name in enumerate(local_names):
            mapping[name] = f"_l{depth}_{count}"
        self.mappings.append(mapping)

    def _locals_of(self, arguments: list[str], body) -> list[str]:
        declared = set()
        assigned = []
        for child in _own_nodes(body):
            if isinstance(child, (ast.Global, ast.Nonlocal)):
                declared.update(child.names)
            elif isinstance(child, ast.Name) and isinstance(child.ctx, (ast.Store, ast.Del)):
                assigned.append(child.id)
            elif isinstance(child, ast.ExceptHandler) and child.name:
                assigned.append(child.name)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                assigned.append(child.name)
        names = [a for a in arguments if a not in self.keyword_names] + assigned
        return [n for n in dict.fromkeys(names) if n not in declared]

    def _rename_arguments(self, args: ast.arguments) -> None:
        mapping = self.mappings[-1]
        for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if a is not None:
                a.arg = mapping.get(a.arg, a.arg)
                a.annotation = None  # annotations do not change what runs

    def _function(self, node):
        # Decorators and defaults are evaluated in the enclosing scope.
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        node.args.defaults = [self.visit(d) for d in node.args.defaults]
        node.args.kw_defaults = [self.visit(d) if d is not None else None for d in node.args.kw_defaults]
        node.returns = None
        node.name = self.mappings[-1].get(node.name, node.name)
        self._enter(self._locals_of(_arguments(node.args), node.body))
        self._rename_arguments(node.args)
        node.body = [self.visit(statement) for statement in node.body]
        self.mappings.pop()
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_Lambda(self, node: ast.Lambda):
        node.args.defaults = [self.visit(d) for d in node.args.defaults]
        self._enter([a for a in _arguments(node.args) if a not in self.keyword_names])
        self._rename_arguments(node.args)
        node.body = self.visit(node.body)
        self.mappings.pop()
        return node

    def _comprehension(self, node):
        targets = [n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)]
        self._enter(targets)
        self.generic_visit(node)
        self.mappings.pop()
        return node

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension

    def visit_ClassDef(self, node: ast.ClassDef):
        # Class bodies are namespaces others read (methods, attributes): names stay, but a
        # class nested in a function may itself have a local name.
        node.name = self.mappings[-1].get(node.name, node.name)
        self.mappings.append(dict(self.mappings[-1]))
        self.generic_visit(node)
        self.mappings.pop()
        return node

    def visit_Name(self, node: ast.Name):
        node.id = self.mappings[-1].get(node.id, node.id)
        return node

    def visit_ExceptHandler(self, node: ast.ExceptHandler):
        if node.name:
            node.name = self.mappings[-1].get(node.name, node.name)
        self.generic_visit(node)
        return node


def normalized_source(source: str) -> str:
    """Canonical text of a module: no docstrings, comments, layout, annotations or local naming choices."""
    tree = _DropDocstrings().visit(ast.parse(source))
    keyword_names = {k.arg for k in ast.walk(tree) if isinstance(k, ast.keyword) and k.arg}
    return ast.unparse(_CanonicalNames(keyword_names).visit(tree))


def code_hash(source: str) -> str:
    """sha256 hex of the normalised source."""
    return hashlib.sha256(normalized_source(source).encode()).hexdigest()
