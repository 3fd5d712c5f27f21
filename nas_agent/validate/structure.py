"""The structural fingerprint of an instantiated network, taken inside the sandbox child.

Two candidates are the same network when they run the same operations on the same
shapes with the same parameters, however their code is written (nn.Sequential or
attributes, nn.ReLU or F.relu, a loop or unrolled layers). The fingerprint therefore
records what actually runs: every ATen operator of one seeded training-mode forward
pass with its scalar arguments (stride, padding, dropout rate, eps, …) and output
shapes, plus the multiset of parameter and buffer shapes and the output shape.
Counting FLOPs rides on the same forward pass.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Structure:
    """What the probe found: the fingerprint and the network's size and cost."""

    struct_hash: str
    n_params: int
    flops_per_sample: int
    output_shape: tuple[int, ...]
    n_ops: int


def _shape_of(value):
    if isinstance(value, torch.Tensor):
        return list(value.shape)
    if isinstance(value, (tuple, list)):
        return [_shape_of(v) for v in value]
    return None


def _scalar_args(args) -> list:
    """Non-tensor arguments that configure an op (int lists, floats, bools); tensors are described by shape."""
    out = []
    for arg in args:
        if isinstance(arg, bool | int | float | str) or arg is None:
            out.append(round(arg, 9) if isinstance(arg, float) else arg)
        elif isinstance(arg, (list, tuple)) and all(isinstance(a, bool | int | float) for a in arg):
            out.append(list(arg))
        elif isinstance(arg, torch.dtype):
            out.append(str(arg))
    return out


class _OpRecorder(TorchDispatchMode):
    """Record (operator, scalar arguments, output shapes) for every ATen op, in call order."""

    def __init__(self):
        super().__init__()
        self.ops: list = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        self.ops.append([func.name(), _scalar_args(args), _scalar_args((kwargs or {}).values()), _shape_of(result)])
        return result


def probe(model: torch.nn.Module, inputs: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, Structure]:
    """Run one seeded forward pass in the model's current mode; return its output and the Structure.

    The output keeps its autograd graph, so the caller can run backward on it.
    """
    torch.manual_seed(seed)
    recorder = _OpRecorder()
    counter = FlopCounterMode(display=False)
    with counter, recorder:
        output = model(inputs)
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"forward returned {type(output).__name__}, not a tensor")
    n_params = sum(p.numel() for p in model.parameters())
    fingerprint = {
        "ops": recorder.ops,
        "parameters": sorted(list(p.shape) for p in model.parameters()),
        "buffers": sorted(list(b.shape) for b in model.buffers()),
        "output": list(output.shape[1:]),
    }
    digest = hashlib.sha256(json.dumps(fingerprint, separators=(",", ":")).encode()).hexdigest()
    return output, Structure(struct_hash=digest, n_params=n_params,
                             flops_per_sample=int(counter.get_total_flops()) // max(1, inputs.shape[0]),
                             output_shape=tuple(output.shape[1:]), n_ops=len(recorder.ops))
