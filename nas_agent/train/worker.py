"""Child-process entry point: load one candidate, train it, report events on a pipe.

Run as `python -m nas_agent.train.worker JOB.json EVENT_FD` by the sandbox, never in the driver:
this is the only place where candidate code is imported. Events are JSON lines on a
dedicated pipe so that whatever the candidate prints cannot forge them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path
from typing import NamedTuple


def emit(stream, event: str, **fields) -> None:
    stream.write(json.dumps({"event": event, **fields}) + "\n")
    stream.flush()


def describe(exc: BaseException) -> str:
    """One line a person can act on, with out-of-memory errors named as such."""
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:400]
    if isinstance(exc, MemoryError) or "out of memory" in text.lower() or "can't allocate memory" in text.lower():
        return f"out of memory: {text}"
    return text


def load_candidate(path: str):
    spec = importlib.util.spec_from_file_location("candidate", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["candidate"] = module
    spec.loader.exec_module(module)
    return module


def load_matching(model, state: dict) -> dict:
    """Load the tensors of `state` whose names and shapes match the model's; say what was loaded."""
    own = model.state_dict()
    matching = {k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    model.load_state_dict(matching, strict=False)
    return {"loaded": len(matching), "skipped": sorted(set(own) - set(matching))[:20]}


class ChildData(NamedTuple):
    """The data a training child sees: the test images come without their labels."""

    train_x: object
    train_y: object
    test_x: object
    test_y: None = None


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


UNREGISTERED = "(trainable tensors outside the module tree)"


def parameter_saver():
    """A function writing a model's parameter shapes (JSON, no pickle) for the driver to count.

    Call it before any candidate is imported: everything it uses is taken now, so a candidate
    that later patches `json`, overrides `parameters()`, `named_parameters()` or a tensor's
    `shape`, or keeps weights outside its module tree cannot shrink the count. The total is the
    larger of the module's registered parameters and every trainable leaf tensor alive in the
    process (found by the garbage collector, read through torch's own C descriptors); what
    the module tree does not explain is one extra entry. Shapes, not weights: a 55 M-parameter
    model must be counted and refused, not written out.
    """
    import gc
    import math

    import torch
    from torch.nn import Module

    named_parameters, dumps, collect, live, product = Module.named_parameters, json.dumps, gc.collect, gc.get_objects, math.prod
    base = torch._C.TensorBase
    size, numel = base.size, base.numel
    requires_grad, is_leaf = base.__dict__["requires_grad"].__get__, base.__dict__["is_leaf"].__get__
    plain = torch._C.DisableTorchFunctionSubclass
    write, replace = Path.write_bytes, os.replace

    def save(model, path: Path) -> None:
        with plain():
            try:
                shapes = {str(name): [int(d) for d in size(p)] for name, p in named_parameters(model)}
            except Exception:  # a module tree that cannot be walked: the live tensors below still count
                shapes = {}
            registered = sum(product(s) for s in shapes.values())
            collect()
            trainable = sum(numel(t) for t in live()
                            if issubclass(type(t), base) and requires_grad(t) and is_leaf(t))
        if trainable > registered:
            shapes[UNREGISTERED] = [trainable - registered]
        tmp = path.with_name(f".{path.name}.tmp")
        write(tmp, dumps(shapes).encode())
        replace(tmp, path)
    return save


# LEMUR's hyperparameters are fractions in [0, 1] that each model maps to its own range (a patch
# size, an auxiliary dropout): a name the recipe does not set gets the middle of that range.
UNSET_HYPERPARAMETER = 0.5


def model_prm(module, known: dict) -> dict:
    """The prm handed to Net and train_setup: `known`, plus each other name the model's
    supported_hyperparameters() lists (LEMUR models read theirs with prm['name'])."""
    try:
        names = module.supported_hyperparameters()
        extra = {name: UNSET_HYPERPARAMETER for name in names if isinstance(name, str) and name not in known}
    except Exception:  # the contract check will say what is wrong with supported_hyperparameters
        extra = {}
    return {**extra, **known}


# Trusted libraries whose native operators load through ctypes (torch.ops.load_library), which the
# guard refuses once candidate code may run: imported first, for a candidate that imports them.
PRELOADED_FOR_CANDIDATES = ("torchvision",)


def preload_libraries(candidate: Path) -> None:
    """Import the trusted libraries the candidate will import and whose operators need native code."""
    import ast

    try:
        tree = ast.parse(candidate.read_text())
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return  # loading the candidate will say what is wrong with it
    roots = {alias.name.partition(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    roots |= {node.module.partition(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    for name in PRELOADED_FOR_CANDIDATES:
        if name in roots:
            __import__(name)   # torchvision registers torchvision::nms & co. from its _C library


def lock_down(workdir: Path, writable: list[Path]) -> None:
    """The last step before candidate code loads: refuse execve (seccomp), then the audit-hook guard.

    The driver left the compiled filter in the job folder (in the jail, the exec lock on top of the
    jail's own filter; unjailed, the jail's rules too); it is loaded on every thread, then deleted.
    Trusted libraries the candidate imports and that load native operators are imported first.
    """
    from nas_agent.sandbox import guard, seccomp
    from nas_agent.train.job import CANDIDATE_FILE

    preload_libraries(workdir / CANDIDATE_FILE)

    program = workdir / seccomp.EXEC_LOCK_FILE
    if program.exists():
        seccomp.load_bpf(program.read_bytes())
        program.unlink()
    guard.install(writable)


def main(job_path: str, event_fd: int) -> int:
    events = os.fdopen(event_fd, "w", buffering=1)
    workdir = Path(job_path).parent
    try:
        from nas_agent.sandbox import landlock
        from nas_agent.tasks import task_of
        from nas_agent.train.job import CANDIDATE_FILE, TrainJob
        from nas_agent.train.score import LOGITS_FILE, LOGPROB_FILE, PARAMETERS_FILE, PROBE_FILE, Probes

        job = TrainJob.from_file(job_path)
        writable = [workdir] + ([Path(job.checkpoint).parent] if job.checkpoint else [])
        for folder in writable:
            folder.mkdir(parents=True, exist_ok=True)
        # First, while this is the only thread: the kernel's wall, inherited by every later thread.
        landlock.restrict(writable)

        import torch

        from nas_agent.config import TrainConfig
        from nas_agent.device import resolve_device
        from nas_agent.train.loop import seed_everything, train_model

        if job.threads > 0:
            torch.set_num_threads(job.threads)
        cfg = TrainConfig(**job.train)
        device = resolve_device(job.device)
        seed_everything(cfg.seed)
        # The driver's view of the data: train images and labels, test images only.
        view = torch.load(job.dataset_cache, map_location="cpu", weights_only=True)
        data = ChildData(view["train_x"], view["train_y"], view["test_x"])
        # Read before the guard, and weights_only: the process of a candidate wrote this checkpoint.
        init_state = torch.load(job.init_from, map_location="cpu", weights_only=True)["model"] if job.init_from else None
        torch.ones(1, device=device).add_(1)  # initialise the device (CUDA loads libraries) before the guard
        save_parameters = parameter_saver()
        lock_down(workdir, writable)
    except Exception as exc:  # our own set-up failed: say so, it is not the candidate's fault
        emit(events, "failed", stage="setup", reason=describe(exc), traceback=traceback.format_exc())
        return 2

    try:
        module = load_candidate(workdir / CANDIDATE_FILE)
        prm = model_prm(module, {"lr": cfg.lr, "momentum": cfg.momentum, "dropout": cfg.dropout,
                                 "checkpoint_blocks": cfg.checkpoint_blocks})
        model = module.Net(job.in_shape, job.out_shape, prm, device)
        if init_state is not None:
            emit(events, "init", **load_matching(model, init_state))
        save_parameters(model, workdir / PARAMETERS_FILE)
        emit(events, "started", device=str(device),
             gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None)

        def on_test_logits(epoch: int, logits) -> None:
            write_atomically(workdir / LOGITS_FILE.format(epoch=epoch), logits.numpy().astype("<f4").tobytes())

        def on_epoch(metrics):
            fields = {k: v for k, v in metrics.as_dict().items() if v is not None}
            emit(events, "epoch", **fields)

        kwargs = {"checkpoint": Path(job.checkpoint) if job.checkpoint else None, "fingerprint": job.fingerprint,
                  "resume_epoch": job.resume_epoch, "until_epoch": job.until_epoch, "on_epoch": on_epoch}
        if task_of(job.task).generative:  # forward returns each image's NLL: its own loop and metric
            from nas_agent.train.generative import train_generative

            if not callable(getattr(model, "value_logits", None)):
                raise TypeError("a generator must define value_logits(x): the (N, C, H, W, 256) logits "
                                "of each value given the ones before it, which the driver scores")
            probes = Probes.from_dict(job.probes)
            probe_images = torch.stack(probes.images(data.test_x))

            def on_test_outputs(epoch: int, log_probs, logits) -> None:
                write_atomically(workdir / LOGPROB_FILE.format(epoch=epoch), log_probs.numpy().astype("<f4").tobytes())
                write_atomically(workdir / PROBE_FILE.format(epoch=epoch), logits.numpy().astype("<f4").tobytes())

            train_generative(model, data, cfg, device, on_test_outputs=on_test_outputs,
                             probes=(probe_images, probes.flat_positions), **kwargs)
        else:
            train_model(model, data, cfg, device, on_test_logits=on_test_logits, prm=prm, **kwargs)
    except BaseException as exc:  # candidate code may raise anything, SystemExit included
        emit(events, "failed", stage="train", reason=describe(exc), traceback=traceback.format_exc()[-4000:])
        return 1
    emit(events, "done")
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1], int(sys.argv[2]))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # its files are closed and its events sent: skip torch's second-long interpreter teardown
