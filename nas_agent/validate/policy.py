"""Static safety policy for untrusted candidate code, checked on the libcst tree.

The policy is the first wall: nothing is executed to check it. It allows the imports a
model needs, and rejects the names, calls and attributes through which code reaches
files, processes, the network, threads, serialisation or the interpreter's internals.
The sandboxed child process is the second wall, not the only one.
"""

from __future__ import annotations

from dataclasses import dataclass

import symtable

import libcst as cst
from libcst.metadata import PositionProvider

from nas_agent.validate.verdict import Verdict

DEFAULT_ALLOWED_IMPORTS = (
    "torch", "torch.nn", "torch.nn.functional", "torch.nn.init", "torch.nn.utils", "torch.utils.checkpoint",
    "torch.optim", "torch.optim.lr_scheduler", "torchvision.ops", "math", "typing", "functools", "collections",
    "dataclasses", "itertools", "numbers", "enum", "abc", "operator", "random", "copy", "__future__",
)
# Reachable from an allowed import, yet a way to files, processes, the network or native code.
DEFAULT_FORBIDDEN_QUALIFIED = (
    "torch.save", "torch.load", "torch.hub", "torch.jit.load", "torch.jit.save", "torch.ops.load_library",
    "torch.utils.cpp_extension", "torch.utils.data", "torch.multiprocessing", "torch.distributed",
    "torch.classes.load_library", "torch.backends.cudnn.benchmark", "torch.cuda.set_per_process_memory_fraction",
    "torch.set_num_threads", "torch.set_num_interop_threads", "torch.from_file", "torch.storage",
    "torch.package", "torch.serialization", "torch.compiler", "torch.profiler", "torch.autograd.profiler",
    "torch.jit", "torch.onnx", "torch.export", "torch.UntypedStorage", "torch.TypedStorage",
    # Name-based access that bypasses attribute checks, and eval in disguise (string annotations).
    "operator.attrgetter", "operator.methodcaller", "typing.get_type_hints", "typing.ForwardRef",
)
DEFAULT_FORBIDDEN_NAMES = (
    "eval", "exec", "compile", "open", "__import__", "globals", "locals", "vars", "breakpoint", "input",
    "exit", "quit", "help", "memoryview", "__builtins__", "__loader__", "__spec__", "delattr",
)
# Frame and code objects: the way from any object back to the interpreter's globals.
DEFAULT_FORBIDDEN_ATTRIBUTES = (
    "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "gi_frame", "gi_code", "cr_frame", "cr_code",
    "ag_frame", "tb_frame", "tb_next", "co_code", "func_globals",
    # Ways to files or native code from ordinary objects: tensor.numpy().ctypes, .tofile, scripted .save.
    "ctypes", "tofile", "from_file", "save", "export_chrome_trace",
)
ALLOWED_DUNDER_ATTRIBUTES = ("__init__",)  # super().__init__() and nothing else
NAME_FUNCTIONS = ("getattr", "setattr", "hasattr")  # safe only with a literal, non-dunder name


@dataclass(frozen=True)
class PolicyConfig:
    """What the policy allows; the defaults are the safe setting (`[policy]` in conf/ can change them)."""

    allowed_imports: tuple[str, ...] = DEFAULT_ALLOWED_IMPORTS
    forbidden_qualified: tuple[str, ...] = DEFAULT_FORBIDDEN_QUALIFIED
    forbidden_names: tuple[str, ...] = DEFAULT_FORBIDDEN_NAMES
    forbidden_attributes: tuple[str, ...] = DEFAULT_FORBIDDEN_ATTRIBUTES
    max_source_bytes: int = 100_000

    def import_allowed(self, module: str) -> bool:
        """Exactly the listed modules, plus torch.nn's submodules (layers live there)."""
        return module in self.allowed_imports or module.startswith("torch.nn.")


class _PolicyViolation(Exception):
    def __init__(self, node: cst.CSTNode | None, message: str):
        super().__init__(message)
        self.node = node


def _dotted(node: cst.BaseExpression) -> str | None:
    """`a.b.c` for a chain of plain names and attributes, else None."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr.value}" if base else None
    return None


def _module_name(node) -> str:
    return _dotted(node) or ""


def _builtin_uses(code: str, names: tuple[str, ...]) -> set[str]:
    """Which of `names` the code uses as the builtins, not as its own variables.

    Python's compiler symbol table knows each scope's bindings exactly (a parameter called
    `input` is not the builtin `input`), and it is far cheaper than a libcst scope analysis.
    """
    wanted = set(names)
    found: set[str] = set()
    module = symtable.symtable(code, "<candidate>", "exec")
    bound_globally = {s.get_name() for s in module.get_symbols() if s.is_assigned() or s.is_imported()}
    stack = [module]
    while stack:
        table = stack.pop()
        stack.extend(table.get_children())
        for symbol in table.get_symbols():
            name = symbol.get_name()
            if name not in wanted or not symbol.is_referenced() or name in bound_globally:
                continue
            if table is module or (symbol.is_global() and not symbol.is_declared_global()):
                found.add(name)
    return found


class _PolicyVisitor(cst.CSTVisitor):
    def __init__(self, config: PolicyConfig, builtins_used: set[str]):
        super().__init__()
        self.config = config
        self.builtins_used = builtins_used  # forbidden names used as the builtins (see _builtin_uses)
        self.aliases: dict[str, str] = {}  # local name -> the qualified name it stands for
        self.attribute_names: set[int] = set()  # ids of the Name nodes that are `x.<name>`

    def _qualify(self, dotted: str) -> str:
        head, _, rest = dotted.partition(".")
        base = self.aliases.get(head)
        if base is None:
            return dotted
        return f"{base}.{rest}" if rest else base

    def _check_qualified(self, node, qualified: str) -> None:
        for forbidden in self.config.forbidden_qualified:
            if qualified == forbidden or qualified.startswith(forbidden + "."):
                raise _PolicyViolation(node, f"{qualified} is not allowed (file, process, native or "
                                             f"serialisation access): candidates must stay pure model code")
        # `qualified` is already resolved through aliases, so compare against imported module roots.
        imported_roots = {target.partition(".")[0] for target in self.aliases.values()}
        if qualified.partition(".")[0] in imported_roots and any(p.startswith("_") for p in qualified.split(".")[1:]):
            raise _PolicyViolation(node, f"{qualified}: private module internals are not allowed")

    # imports
    def visit_Import(self, node: cst.Import) -> None:
        for alias in node.names:
            module = _module_name(alias.name)
            if not self.config.import_allowed(module):
                raise _PolicyViolation(node, f"import of {module} is not allowed: candidates may import "
                                             f"torch and its model modules, math, typing, functools, "
                                             f"collections and a few more (policy.allowed_imports)")
            self._check_qualified(node, module)
            local = alias.asname.name.value if alias.asname else module.partition(".")[0]
            self.aliases[local] = module if alias.asname else local

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        if node.relative:
            raise _PolicyViolation(node, "relative imports are not allowed")
        module = _module_name(node.module)
        if not self.config.import_allowed(module):
            raise _PolicyViolation(node, f"import from {module} is not allowed")
        if isinstance(node.names, cst.ImportStar):
            raise _PolicyViolation(node, f"from {module} import * is not allowed: name what you use")
        for alias in node.names:
            name = _module_name(alias.name)
            qualified = f"{module}.{name}"
            self._check_qualified(node, qualified)
            if name.startswith("_") and module != "__future__":
                raise _PolicyViolation(node, f"import of private name {qualified} is not allowed")
            self.aliases[alias.asname.name.value if alias.asname else name] = qualified

    # names and attributes
    def visit_Name(self, node: cst.Name) -> None:
        # A parameter or local called `input` is harmless; the builtin of that name is not.
        if node.value in self.builtins_used and id(node) not in self.attribute_names:
            raise _PolicyViolation(node, f"the builtin {node.value} is not allowed in candidate code")

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self.attribute_names.add(id(node.attr))
        attr = node.attr.value
        if attr.startswith("__") and attr.endswith("__") and attr not in ALLOWED_DUNDER_ATTRIBUTES:
            raise _PolicyViolation(node, f"access to the dunder attribute {attr} is not allowed")
        if attr in self.config.forbidden_attributes:
            raise _PolicyViolation(node, f"access to {attr} (interpreter internals) is not allowed")
        dotted = _dotted(node)
        if dotted:
            self._check_qualified(node, self._qualify(dotted))

    def visit_Call(self, node: cst.Call) -> None:
        func = _dotted(node.func)
        if func in NAME_FUNCTIONS and len(node.args) >= 2:
            name = node.args[1].value
            if not isinstance(name, cst.SimpleString):
                raise _PolicyViolation(node, f"{func} with a computed attribute name is not allowed; "
                                             f"use plain attribute access")
            attr = name.evaluated_value
            if not isinstance(attr, str) or attr.startswith("_"):
                raise _PolicyViolation(node, f"{func} of the private or dunder name {attr!r} is not allowed")
            if attr in self.config.forbidden_attributes:
                raise _PolicyViolation(node, f"{func} of {attr!r} (interpreter internals) is not allowed")
            target = _dotted(node.args[0].value)
            if target:  # getattr(torch, "save") is torch.save
                self._check_qualified(node, self._qualify(f"{target}.{attr}"))

    def visit_Assign(self, node: cst.Assign) -> None:
        # `t = torch` makes t another name for torch: follow it like an import alias.
        source = _dotted(node.value)
        if source is None or source.partition(".")[0] not in self.aliases:
            return
        for target in node.targets:
            if isinstance(target.target, cst.Name):
                self.aliases[target.target.value] = self._qualify(source)


def check_size(source: str, config: PolicyConfig | None = None) -> Verdict:
    """`policy` rejection when the source is larger than the policy allows, else ok."""
    limit = (config or PolicyConfig()).max_source_bytes
    size = len(source.encode())
    if size > limit:
        return Verdict.reject("policy", f"source is {size:,} bytes, above the {limit:,} byte limit "
                                        f"(policy.max_source_bytes)")
    return Verdict.accept()


def check_policy(source: str | cst.Module, config: PolicyConfig | None = None, *, text: str | None = None) -> Verdict:
    """`policy` rejection naming the first offending line, `parse` for bad syntax, or ok.

    `source` is text or an already parsed module; with a module, pass its `text` too when
    you have it, to save generating it again.
    """
    config = config or PolicyConfig()
    if isinstance(source, str):
        verdict = check_size(source, config)
        if not verdict.ok:
            return verdict
        try:
            module = cst.parse_module(source)
        except cst.ParserSyntaxError as exc:
            return Verdict.reject("parse", f"syntax error at line {exc.raw_line}: {exc.message}")
    else:
        module = source
    try:
        builtins_used = _builtin_uses(source if isinstance(source, str) else (text or module.code),
                                      config.forbidden_names)
    except SyntaxError as exc:  # valid grammar, invalid program (e.g. `return` outside a function)
        return Verdict.reject("parse", f"line {exc.lineno}: {exc.msg}")
    try:
        module.visit(_PolicyVisitor(config, builtins_used))
    except _PolicyViolation as violation:
        line = _line_of(module, violation.node)
        return Verdict.reject("policy", (f"line {line}: " if line else "") + str(violation))
    return Verdict.accept()


def _line_of(module: cst.Module, node) -> int | None:
    """Line of `node` in `module`; positions are computed only here, for the rejection message."""
    if node is None:
        return None
    try:
        return cst.MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)[node].start.line
    except KeyError:
        return None
