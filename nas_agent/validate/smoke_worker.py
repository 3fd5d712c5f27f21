"""Child-process entry point of the smoke run: `python -m nas_agent.validate.smoke_worker JOB.json EVENT_FD [GO_FD]`.

Started by `nas_agent.validate.smoke` inside the sandbox, never in the driver. With GO_FD it
is a warm spare: it imports torch, then waits for a line on GO_FD before it reads JOB.json
(the driver writes the job into its folder first). Installs
the audit-hook guard, imports the candidate, builds `Net`, runs forward and backward on
a small seeded batch, checks shape, finiteness, size and cost, and reports the network's
structural fingerprint. One `done` or `failed` event on the pipe says how it went.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

from nas_agent.tasks import is_generative
from nas_agent.train.worker import describe, emit, load_candidate, lock_down, model_prm, parameter_saver, write_atomically


class SmokeFailure(Exception):
    """The candidate ran but broke a smoke-run rule."""


def _check(job: dict, workdir: Path, started: float) -> dict:
    import torch
    import torch.nn.functional as F

    from nas_agent.validate.structure import probe

    from nas_agent.train.job import CANDIDATE_FILE

    module = load_candidate(workdir / CANDIDATE_FILE)
    in_shape, out_shape = tuple(job["in_shape"]), tuple(job["out_shape"])
    prm = model_prm(module, {"lr": 0.01, "momentum": 0.9, "dropout": 0.1})
    try:
        model = module.Net(in_shape, out_shape, prm, torch.device("cpu"))
    except BaseException as exc:
        described = describe(exc)
        # Keep "out of memory" first: it names the limit to look at.
        oom = "out of memory: " if described.startswith("out of memory: ") else ""
        raise SmokeFailure(f"{oom}Net(...) raised {described.removeprefix(oom)}") from None
    if not isinstance(model, torch.nn.Module):
        raise SmokeFailure(f"Net(...) built a {type(model).__name__}, not an nn.Module")
    n_params = sum(p.numel() for p in model.parameters())
    if n_params > job["max_params"]:
        raise SmokeFailure(f"{n_params:,} parameters, above the {job['max_params']:,} limit (validate.max_params)")

    generator = torch.Generator().manual_seed(0)
    batch = job["batch"]
    model.train()
    if is_generative(job.get("task")):  # uint8 images in, one NLL per image out
        from nas_agent.validate.generative_smoke import generative_forward

        try:
            output, structure, loss, problem = generative_forward(model, batch, in_shape, generator)
        except TypeError as exc:
            raise SmokeFailure(str(exc)) from None
        if problem:
            raise SmokeFailure(problem)
        return _finish(job, workdir, model, n_params, output, structure, loss, started)
    inputs = torch.randn((batch, *in_shape[1:]), generator=generator)
    labels = torch.randint(0, out_shape[0], (batch,), generator=generator)
    try:
        output, structure = probe(model, inputs)
    except TypeError as exc:
        raise SmokeFailure(str(exc)) from None
    except RuntimeError as exc:
        if "complex" not in str(exc):
            raise
        # A complex-valued network (LEMUR's ComplexNet) is fed complex64 images by LEMUR's complex_*
        # transforms: the same batch as complex numbers, once.
        try:
            output, structure = probe(model, inputs.to(torch.complex64))
        except TypeError as again:
            raise SmokeFailure(str(again)) from None
    if tuple(output.shape) != (batch, *out_shape):
        raise SmokeFailure(f"forward returned shape {tuple(output.shape)}, expected {(batch, *out_shape)} "
                           f"(batch, *out_shape)")
    if not torch.isfinite(output).all():
        raise SmokeFailure("forward returned NaN or infinite values on a random batch")
    return _finish(job, workdir, model, n_params, output, structure, F.cross_entropy(output, labels), started)


def _finish(job: dict, workdir: Path, model, n_params: int, output, structure, loss, started: float) -> dict:
    """The checks every task shares: cost, a finite loss, and gradients that reach the weights.

    The output and the parameters are also left as files: the driver decides the verdict on
    shape, finiteness and size from those, not from what this process says.
    """
    import torch

    from nas_agent.train.score import OUTPUT_FILE, PARAMETERS_FILE

    write_atomically(workdir / OUTPUT_FILE, output.detach().float().cpu().numpy().astype("<f4").tobytes())
    job["save_parameters"](model, workdir / PARAMETERS_FILE)

    flops_limit = job["max_gflops"] * 1e9
    if structure.flops_per_sample > flops_limit:
        raise SmokeFailure(f"{structure.flops_per_sample / 1e9:.2f} GFLOPs per image, above the "
                           f"{job['max_gflops']:g} GFLOPs limit (validate.max_gflops)")
    loss.backward()
    if not math.isfinite(loss.item()):
        raise SmokeFailure("the loss of a random batch is NaN or infinite")
    trainable = [p for p in model.parameters() if p.requires_grad]
    if trainable and all(p.grad is None for p in trainable):
        raise SmokeFailure("backward reached no parameter: the output does not depend on the weights")
    if any(p.grad is not None and not torch.isfinite(p.grad).all() for p in trainable):
        raise SmokeFailure("backward produced NaN or infinite gradients")
    return {"struct_hash": structure.struct_hash, "n_params": n_params,
            "flops_per_sample": structure.flops_per_sample, "output_shape": list(structure.output_shape),
            "n_ops": structure.n_ops, "seconds": round(time.monotonic() - started, 3)}


def _warm_up() -> None:
    """Pay torch's first-use costs (the FLOP counter's lazy imports, autograd) on a network of our own.

    About 2 s on a CPU: a warm spare pays them before its candidate is known.
    """
    import torch
    import torch.nn.functional as F

    from nas_agent.validate.structure import probe

    torch.set_num_threads(1)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    output, _ = probe(net, torch.randn(2, 3, 8, 8))
    F.cross_entropy(output, torch.tensor([0, 1])).backward()


def _wait_for_go(go_fd: int) -> bool:
    """Block until the driver says go (True) or closes the pipe, discarding this spare (False)."""
    with os.fdopen(go_fd, "rb") as go:
        return go.readline().strip() == b"go"


def main(job_path: str, event_fd: int, go_fd: int | None = None) -> int:
    events = os.fdopen(event_fd, "w", buffering=1)
    started = time.monotonic()
    workdir = Path(job_path).parent
    try:
        from nas_agent.sandbox import landlock

        # First, while this is the only thread: the kernel's wall, inherited by every later thread.
        landlock_abi = landlock.restrict([workdir])
        import torch

        _warm_up()
        if go_fd is not None:
            emit(events, "ready")  # read by the driver's spares thread: this jail is up and warm
            if not _wait_for_go(go_fd):
                return 0
            started = time.monotonic()
        job = json.loads(Path(job_path).read_text())
        job["save_parameters"] = parameter_saver()  # torch's own named_parameters, before the candidate loads
        torch.set_num_threads(1)
        torch.ones(1).add_(1)  # start torch's thread pool and allocator before the guard goes up
        lock_down(workdir, [workdir])
    except Exception as exc:  # our own set-up failed: not the candidate's fault
        emit(events, "failed", stage="setup", reason=f"smoke set-up failed: {describe(exc)}")
        return 2
    try:
        result = _check(job, workdir, started)
    except SmokeFailure as exc:
        emit(events, "failed", stage="smoke", reason=str(exc))
        return 1
    except RecursionError:
        emit(events, "failed", stage="smoke", reason="RecursionError: maximum recursion depth exceeded")
        return 1
    except BaseException as exc:  # candidate code may raise anything, SystemExit included
        emit(events, "failed", stage="smoke", reason=describe(exc))
        return 1
    emit(events, "done", landlock=landlock_abi, **result)
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # its files are closed and its events sent: skip torch's second-long interpreter teardown
