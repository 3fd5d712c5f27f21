"""Static safety policy for untrusted candidate code, checked on the libcst tree.

The policy is the first wall: nothing is executed to check it. It allows the imports a
model needs, and rejects the names, calls and attributes through which code reaches
files, processes, the network, threads, serialisation or the interpreter's internals.
The sandboxed child process is the second wall, not the only one.
"""

from __future__ import annotations

from dataclasses import dataclass

import importlib
import importlib.util
import string
import symtable
import sys
import types
import unicodedata
from functools import lru_cache

import libcst as cst
import libcst.matchers as m
from libcst.metadata import PositionProvider

from nas_agent.candidate import CandidateSyntaxError, parse_module
from nas_agent.validate.verdict import Verdict

DEFAULT_ALLOWED_IMPORTS = (
    "torch", "torch.nn", "torch.nn.functional", "torch.nn.init", "torch.nn.utils", "torch.utils.checkpoint",
    "torch.optim", "torch.optim.lr_scheduler", "torchvision.ops", "math", "typing", "functools", "collections",
    "dataclasses", "itertools", "numbers", "enum", "abc", "operator", "random", "copy", "__future__",
)
# The module objects an attribute chain may pass through (besides the allowed imports and torch.nn's
# submodules): an allow-list, so that torch.os, torch.hub, torch.fx or any module torch grows later
# is refused until someone decides it belongs in model code.
DEFAULT_ALLOWED_MODULES = (
    "torch.fft", "torch.linalg", "torch.special", "torch.autograd", "torch.autograd.function",
    "torch.amp", "torch.cuda", "torch.cuda.amp", "torch.types", "torch.utils", "collections.abc",
)
# Reachable from an allowed import, yet a way to files, processes, the network or native code.
DEFAULT_FORBIDDEN_QUALIFIED = (
    "torch.save", "torch.load", "torch.hub", "torch.jit.load", "torch.jit.save", "torch.ops.load_library",
    "torch.utils.cpp_extension", "torch.utils.data", "torch.multiprocessing", "torch.distributed",
    "torch.classes.load_library", "torch.backends.cudnn.benchmark", "torch.cuda.set_per_process_memory_fraction",
    "torch.set_num_threads", "torch.set_num_interop_threads", "torch.from_file", "torch.storage",
    "torch.package", "torch.serialization", "torch.compiler", "torch.compile", "torch.profiler", "torch.autograd.profiler",
    "torch.jit", "torch.onnx", "torch.export", "torch.UntypedStorage", "torch.TypedStorage",
    # Kernels and dispatch rewritten under every caller: torch.library.impl("aten::eq"), overrides, modes.
    "torch.library", "torch.overrides", "torch.utils._python_dispatch",
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
    allowed_modules: tuple[str, ...] = DEFAULT_ALLOWED_MODULES
    max_source_bytes: int = 100_000

    def module_allowed(self, module: str) -> bool:
        """Whether an attribute chain may pass through the module object named `module`."""
        return self.import_allowed(module) or module in self.allowed_modules

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
    """Which of `names` the code may reach as the builtins, not only as a function's own variables.

    Python's compiler symbol table knows each scope's bindings exactly (a parameter called
    `input` is not the builtin `input`), and it is far cheaper than a libcst scope analysis.
    Any use or binding at module level counts, and so does a global one in a function: a
    module-level `eval = ...` in dead code, or `global eval`, must not make `eval(...)` pass.
    """
    wanted = set(names)
    found: set[str] = set()
    module = symtable.symtable(code, "<candidate>", "exec")
    stack = [module]
    while stack:
        table = stack.pop()
        stack.extend(table.get_children())
        for symbol in table.get_symbols():
            name = symbol.get_name()
            if name not in wanted:
                continue
            if table is module or symbol.is_global() or symbol.is_declared_global():
                found.add(name)
    return found


class _PolicyVisitor(cst.CSTVisitor):
    def __init__(self, config: PolicyConfig, builtins_used: set[str], name_functions_used: set[str],
                 findings: list[_PolicyViolation] | None = None):
        super().__init__()
        self.config = config
        self.findings = findings      # None: stop at the first violation; a list: collect them all
        self.builtins_used = builtins_used  # forbidden names used as the builtins (see _builtin_uses)
        self.name_functions_used = name_functions_used  # getattr and friends, as the builtins
        self.aliases: dict[str, str] = {}  # local name -> the qualified name it stands for
        self.attribute_names: set[int] = set()  # ids of the Name nodes that are `x.<name>`
        self.attribute_bases: set[int] = set()  # ids of the nodes that are the `x` of `x.<name>`
        self.called: set[int] = set()           # ids of the nodes that are called: `f` of `f(...)`
        self.bound: set[int] = set()            # ids of Name nodes being bound (imports, alias targets)

    def on_visit(self, node: cst.CSTNode) -> bool:
        try:
            return super().on_visit(node)
        except _PolicyViolation as violation:
            if self.findings is None:
                raise
            self.findings.append(violation)
            return True   # and go on into the node's children

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
        for module in _modules_along(qualified):
            # Modules re-export what they import: torch.os, typing.sys, torch.nn.parallel.distributed.dist.
            # Only the listed modules pass (allowed imports, torch.nn's, policy.allowed_modules), private ones never.
            if not self.config.module_allowed(module) or any(p.startswith("_") for p in module.split(".")) \
                    or any(module == f or module.startswith(f + ".") for f in self.config.forbidden_qualified):
                raise _PolicyViolation(node, f"{qualified} is the module {module}, which candidates may not use")
        # `qualified` is already resolved through aliases, so compare against imported module roots.
        imported_roots = {target.partition(".")[0] for target in self.aliases.values()}
        if qualified.partition(".")[0] in imported_roots and any(p.startswith("_") for p in qualified.split(".")[1:]):
            raise _PolicyViolation(node, f"{qualified}: private module internals are not allowed")

    # imports
    def visit_Import(self, node: cst.Import) -> None:
        self.bound.update(id(n) for n in m.findall(node, m.Name()))
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
        self.bound.update(id(n) for n in m.findall(node, m.Name()))
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
        _check_identifier(node, node.value)
        if id(node) in self.attribute_names or id(node) in self.bound:
            return
        # A parameter or local called `input` is harmless; the builtin of that name is not.
        if node.value in self.builtins_used:
            raise _PolicyViolation(node, f"the builtin {node.value} is not allowed in candidate code")
        if node.value in self.name_functions_used and id(node) not in self.called:
            raise _PolicyViolation(node, f"{node.value} may only be called (with a literal name), not passed around")
        # A module is reached through its attributes only: in a list, an argument or a walrus it
        # would carry torch.save past every check.
        if node.value in self.aliases and id(node) not in self.attribute_bases \
                and _is_module(self.aliases[node.value]):
            raise _PolicyViolation(node, f"the module {node.value} may only be used as `{node.value}.name`")

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self.attribute_names.add(id(node.attr))
        self.attribute_bases.add(id(node.value))
        attr = node.attr.value
        _check_identifier(node, attr)
        if attr.startswith("__") and attr.endswith("__") and attr not in ALLOWED_DUNDER_ATTRIBUTES:
            raise _PolicyViolation(node, f"access to the dunder attribute {attr} is not allowed")
        if attr in self.config.forbidden_attributes:
            raise _PolicyViolation(node, f"access to {attr} (interpreter internals) is not allowed")
        if attr.startswith("_") and attr not in ALLOWED_DUNDER_ATTRIBUTES \
                and not (isinstance(node.value, cst.Name) and node.value.value == "self"):
            raise _PolicyViolation(node, f"the private attribute {attr} is only allowed on self")
        dotted = _dotted(node)
        if dotted:
            self._check_qualified(node, self._qualify(dotted))

    def visit_Call(self, node: cst.Call) -> None:
        self.called.add(id(node.func))
        func = _dotted(node.func)
        if func in NAME_FUNCTIONS:
            if len(node.args) < 2 or any(arg.star for arg in node.args[:2]):
                raise _PolicyViolation(node, f"{func} needs an object and a literal attribute name")
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
                self.attribute_bases.add(id(node.args[0].value))
                self._check_qualified(node, self._qualify(f"{target}.{attr}"))
                if func == "setattr" and target.partition(".")[0] in self.aliases:
                    raise _PolicyViolation(node, f"setattr on {target} (an imported module or class) is not allowed")
        if isinstance(node.func, cst.Attribute) and node.func.attr.value in ("format", "format_map"):
            _check_format(node)

    def _alias(self, target: cst.BaseExpression, value: cst.BaseExpression) -> None:
        # `t = torch` makes t another name for torch: follow it like an import alias.
        source = _dotted(value)
        if source is None or source.partition(".")[0] not in self.aliases or not isinstance(target, cst.Name):
            return
        self.aliases[target.value] = self._qualify(source)
        self.bound.add(id(target))
        if isinstance(value, cst.Name):
            self.attribute_bases.add(id(value))  # `t = torch` is an alias, not a use of the module as a value

    def visit_Assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            self._check_target(target.target)
            self._alias(target.target, node.value)

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self._check_target(node.target)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        self._check_target(node.target)

    def visit_Del(self, node: cst.Del) -> None:
        self._check_target(node.target)

    def _check_target(self, target: cst.BaseExpression) -> None:
        """No assignment into imported modules or classes (F.cross_entropy = ..., nn.Module.__call__ = ...)."""
        for element in m.findall(target, m.Attribute() | m.Subscript()):
            root = element
            while isinstance(root, (cst.Attribute, cst.Subscript)):
                root = root.value
            if isinstance(root, cst.Name) and root.value in self.aliases:
                raise _PolicyViolation(target, f"assigning into {root.value} (an imported module or class) "
                                               f"is not allowed")

    def visit_Annotation(self, node: cst.Annotation) -> None:
        # A string annotation is code that typing.get_type_hints (functools.singledispatch...) evaluates.
        if m.findall(node, m.SimpleString() | m.ConcatenatedString() | m.FormattedString()):
            raise _PolicyViolation(node, "string annotations are not allowed: write the type itself")

    def visit_MatchKeywordElement(self, node: cst.MatchKeywordElement) -> None:
        if node.key.value.startswith("_"):
            raise _PolicyViolation(node, f"matching the private attribute {node.key.value} is not allowed")


def _check_identifier(node: cst.CSTNode, name: str) -> None:
    # Python reads identifiers NFKC-normalised: `ｅｖａｌ` is `eval`. Model code needs no such names.
    if not name.isascii():
        raise _PolicyViolation(node, f"the identifier {name!r} is not ASCII (Python reads it as "
                                     f"{unicodedata.normalize('NFKC', name)!r})")


def _check_format(node: cst.Call) -> None:
    """`"{0.__class__}".format(e)` reaches attributes by name: allow only literal formats with plain fields."""
    base = node.func.value
    if not isinstance(base, (cst.SimpleString, cst.ConcatenatedString)):
        raise _PolicyViolation(node, "format on a string that is not a literal is not allowed")
    text = base.evaluated_value
    if not isinstance(text, str):
        raise _PolicyViolation(node, "format on bytes is not allowed")
    try:
        fields = _format_fields(text)
    except ValueError as exc:
        raise _PolicyViolation(node, f"malformed format string: {exc}") from None
    if any("." in f or "[" in f for f in fields):
        raise _PolicyViolation(node, "format fields that reach attributes or items are not allowed; "
                                     "use an f-string with the expression itself")


def _format_fields(text: str) -> list[str]:
    """The field names of a format string, those nested in format specs (`{:{width}}`) included."""
    fields = []
    for _, field, spec, _ in string.Formatter().parse(text):
        if field is not None:
            fields.append(field)
        if spec and "{" in spec:
            fields += _format_fields(spec)
    return fields


@lru_cache(maxsize=4096)
def _modules_along(qualified: str) -> tuple[str, ...]:
    """The names of the module objects met walking `qualified` from its (already allowed) root module.

    Only modules are followed: the walk stops at the first attribute that is not one, or is missing.
    """
    parts = qualified.split(".")
    try:
        obj = sys.modules.get(parts[0]) or importlib.import_module(parts[0])
    except Exception:  # not importable here: the contract stage will say so
        return ()
    found = []
    for part in parts[1:]:
        try:
            obj = getattr(obj, part)
        except Exception:
            # Not loaded yet is not absent: a lazily imported submodule (torch.utils.benchmark) is
            # still a module the chain reaches. Named, not imported; the walk ends there.
            name = f"{obj.__name__}.{part}" if isinstance(obj, types.ModuleType) else None
            try:
                if name and importlib.util.find_spec(name) is not None:
                    found.append(name)
            except Exception:
                pass
            break
        if not isinstance(obj, types.ModuleType):
            break
        found.append(obj.__name__)
    return tuple(found)


def _is_module(qualified: str) -> bool:
    """Whether `qualified` (a root module and attributes) names a module object."""
    if "." not in qualified:
        try:
            return isinstance(sys.modules.get(qualified) or importlib.import_module(qualified), types.ModuleType)
        except Exception:
            return False
    along = _modules_along(qualified)
    return len(along) == qualified.count(".")


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
            module = parse_module(source)
        except CandidateSyntaxError as exc:
            return Verdict.reject("parse", str(exc))
    else:
        module = source
    code = source if isinstance(source, str) else (text or module.code)
    try:
        used = _builtin_uses(code, (*config.forbidden_names, *NAME_FUNCTIONS))  # one symbol-table pass
        builtins_used, name_functions_used = used & set(config.forbidden_names), used & set(NAME_FUNCTIONS)
    except SyntaxError as exc:  # valid grammar, invalid program (e.g. `return` outside a function)
        return Verdict.reject("parse", f"line {exc.lineno}: {exc.msg}")
    try:
        module.visit(_PolicyVisitor(config, builtins_used, name_functions_used))
    except _PolicyViolation as violation:
        line = _line_of(module, violation.node)
        return Verdict.reject("policy", (f"line {line}: " if line else "") + str(violation))
    return Verdict.accept()


def policy_findings(module: cst.Module, config: PolicyConfig | None = None, *, text: str | None = None) -> list[str]:
    """Every policy finding in `module` (one line each, with its line number), for the reviewed profile.

    Code a person wrote is checked for the same things as generated code, but what is found is
    reported, not refused: the jail is the wall it runs behind. A program Python refuses (a
    `return` outside a function) is still one finding.
    """
    config = config or PolicyConfig()
    code = text or module.code
    try:
        used = _builtin_uses(code, (*config.forbidden_names, *NAME_FUNCTIONS))
    except SyntaxError as exc:
        return [f"line {exc.lineno}: {exc.msg}"]
    findings: list[_PolicyViolation] = []
    module.visit(_PolicyVisitor(config, used & set(config.forbidden_names), used & set(NAME_FUNCTIONS), findings))
    positions = cst.MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider) if findings else {}
    lines = []
    for violation in findings:
        where = positions.get(violation.node) if violation.node is not None else None
        text_line = (f"line {where.start.line}: " if where else "") + str(violation)
        if text_line not in lines:
            lines.append(text_line)
    return lines


def _line_of(module: cst.Module, node) -> int | None:
    """Line of `node` in `module`; positions are computed only here, for the rejection message."""
    if node is None:
        return None
    try:
        return cst.MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)[node].start.line
    except KeyError:
        return None
