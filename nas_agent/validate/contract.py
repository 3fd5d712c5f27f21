"""Static check of the LEMUR candidate contract, on the syntax tree (nothing is executed)."""

from __future__ import annotations

import libcst as cst

from nas_agent.candidate import CandidateSyntaxError, parse_module
from nas_agent.space.template import is_valid_family, read_family, read_task
from nas_agent.tasks import is_generative
from nas_agent.validate.verdict import Verdict

REQUIRED_METHODS = {
    "__init__": ("self", "in_shape", "out_shape", "prm", "device"),
    "train_setup": ("self", "prm"),
    "learn": ("self", "train_data"),
    "forward": ("self",),
}
MODULE_BASES = {"nn.Module", "torch.nn.Module", "Module"}
# A generator (TASK = "img-generation") is scored from its per-value logits (nas_agent.train.score).
GENERATOR_METHODS = {"value_logits": ("self", "x")}


def _params(func: cst.FunctionDef) -> tuple[str, ...]:
    return tuple(p.name.value for p in (*func.params.posonly_params, *func.params.params))


def check_contract(source: str | cst.Module) -> Verdict:
    """`parse` or `contract` rejection with a reason, or ok when the code honours the contract.

    Takes source text, or an already parsed libcst module to skip a second parse.
    """
    if isinstance(source, cst.Module):
        module = source
    else:
        try:
            module = parse_module(source)
        except CandidateSyntaxError as exc:
            return Verdict.reject("parse", str(exc))

    family = read_family(module)
    if not is_valid_family(family):
        return Verdict.reject("contract", "FAMILY must be 1-80 letters, digits and hyphens (it names the model and "
                                          f"its folders), found {ascii(family[:60])}")
    functions = {s.name.value: s for s in module.body if isinstance(s, cst.FunctionDef)}
    classes = {s.name.value: s for s in module.body if isinstance(s, cst.ClassDef)}
    if "supported_hyperparameters" not in functions:
        return Verdict.reject("contract", "missing module-level function supported_hyperparameters()")
    if _params(functions["supported_hyperparameters"]):
        return Verdict.reject("contract", "supported_hyperparameters() must take no arguments")
    net = classes.get("Net")
    if net is None:
        return Verdict.reject("contract", "missing module-level class Net(nn.Module)")
    bases = {module.code_for_node(arg.value) for arg in net.bases}
    if not bases & MODULE_BASES:
        return Verdict.reject("contract", f"class Net must subclass nn.Module (found bases: {', '.join(sorted(bases)) or 'none'})")
    methods = {s.name.value: s for s in net.body.body if isinstance(s, cst.FunctionDef)}
    required = {**REQUIRED_METHODS, **(GENERATOR_METHODS if is_generative(read_task(module, default="")) else {})}
    for name, expected in required.items():
        method = methods.get(name)
        if method is None:
            return Verdict.reject("contract", f"class Net has no method {name}{_signature(expected)}")
        found = _params(method)
        if name == "forward" and (len(found) < 2 or found[0] != "self"):
            return Verdict.reject("contract", f"Net.forward must take (self, x), found {_signature(found)}")
        if name == "value_logits" and found[:2] != expected:
            return Verdict.reject("contract", f"a generator's Net.value_logits must take (self, x): the logits of "
                                              f"each value given the ones before it, found {_signature(found)}")
        if name not in ("forward", "value_logits") and found != expected:
            return Verdict.reject("contract", f"Net.{name} must be {name}{_signature(expected)}, found {name}{_signature(found)}")
    return Verdict.accept()


def _signature(names) -> str:
    return "(" + ", ".join(names) + ")"
