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


def main(job_path: str, event_fd: int) -> int:
    events = os.fdopen(event_fd, "w", buffering=1)
    try:
        from nas_agent.train import guard, landlock
        from nas_agent.train.job import CANDIDATE_FILE, TrainJob

        job = TrainJob.from_file(job_path)
        writable = [Path(job_path).parent] + ([Path(job.checkpoint).parent] if job.checkpoint else [])
        for folder in writable:
            folder.mkdir(parents=True, exist_ok=True)
        # First, while this is the only thread: the kernel's wall, inherited by every later thread.
        landlock.restrict(writable)

        import torch

        from nas_agent.config import TrainConfig
        from nas_agent.data import load_cache
        from nas_agent.train.loop import resolve_device, seed_everything, train_model

        if job.threads > 0:
            torch.set_num_threads(job.threads)
        cfg = TrainConfig(**job.train)
        device = resolve_device(job.device)
        seed_everything(cfg.seed)
        data = load_cache(job.dataset_cache).subset(job.train_subset or None, job.test_subset or None, seed=cfg.seed)
        # Read before the guard, and weights_only: the process of a candidate wrote this checkpoint.
        init_state = torch.load(job.init_from, map_location="cpu", weights_only=True)["model"] if job.init_from else None
        torch.ones(1, device=device).add_(1)  # initialise the device (CUDA loads libraries) before the guard
        guard.install(writable)
    except Exception as exc:  # our own set-up failed: say so, it is not the candidate's fault
        emit(events, "failed", stage="setup", reason=describe(exc), traceback=traceback.format_exc())
        return 2

    try:
        module = load_candidate(Path(job_path).parent / CANDIDATE_FILE)
        prm = {"lr": cfg.lr, "momentum": cfg.momentum, "dropout": cfg.dropout,
               "checkpoint_blocks": cfg.checkpoint_blocks}
        model = module.Net(job.in_shape, job.out_shape, prm, device)
        n_params = sum(p.numel() for p in model.parameters())
        if init_state is not None:
            emit(events, "init", **load_matching(model, init_state))
        emit(events, "started", n_params=n_params, device=str(device),
             gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None)

        def on_epoch(metrics, replayed):
            emit(events, "epoch", replayed=replayed, **metrics.as_dict())

        if job.task == "img-generation":  # forward returns each image's NLL: its own loop and metric
            from nas_agent.generative.train import train_generative as train_model
        train_model(model, data, cfg, device,
                    checkpoint=Path(job.checkpoint) if job.checkpoint else None,
                    fingerprint=job.fingerprint, on_epoch=on_epoch)
    except BaseException as exc:  # candidate code may raise anything, SystemExit included
        emit(events, "failed", stage="train", reason=describe(exc), traceback=traceback.format_exc()[-4000:])
        return 1
    emit(events, "done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
