"""Child-process entry point of sampling: `python -m nas_agent.train.sample_worker JOB.json EVENT_FD`.

Started by nas_agent.train.sample inside the sandbox, never in the driver: it imports
the candidate, loads its trained weights, calls `Net.sample(n)` and writes the images as raw
uint8 bytes into its own folder (no pickle travels back to the driver). One `done` or
`failed` event on the pipe says how it went.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from nas_agent.train.worker import describe, emit, load_candidate, lock_down

SAMPLES_FILE = "samples.u8"


def main(job_path: str, event_fd: int) -> int:
    events = os.fdopen(event_fd, "w", buffering=1)
    workdir = Path(job_path).parent
    try:
        from nas_agent.sandbox import landlock

        # First, while this is the only thread: the kernel's wall, inherited by every later thread.
        landlock.restrict([workdir])
        import torch

        from nas_agent.train.job import CANDIDATE_FILE
        from nas_agent.device import resolve_device

        job = json.loads(Path(job_path).read_text())
        if job.get("threads", 0) > 0:
            torch.set_num_threads(job["threads"])
        device = resolve_device(job.get("device", "cpu"))
        state = torch.load(job["checkpoint"], map_location="cpu", weights_only=True)["model"]
        torch.ones(1, device=device).add_(1)  # initialise the device before the guard
        lock_down(workdir, [workdir])
    except Exception as exc:  # our own set-up failed (or the checkpoint is unreadable)
        emit(events, "failed", stage="setup", reason=f"sampling set-up failed: {describe(exc)}")
        return 2
    try:
        module = load_candidate(workdir / CANDIDATE_FILE)
        model = module.Net(tuple(job["in_shape"]), tuple(job["out_shape"]), {"dropout": 0.0}, device)
        model.load_state_dict(state)
        model.to(device)
        if not callable(getattr(model, "sample", None)):
            raise TypeError("the candidate's Net has no sample(n) method")
        torch.manual_seed(job["seed"])
        started = time.perf_counter()
        images = model.sample(job["n"], temperature=job["temperature"])
        seconds = time.perf_counter() - started
        expected = (job["n"], *job["in_shape"][1:])
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or tuple(images.shape) != expected:
            got = (f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor)
                   else type(images).__name__)
            raise TypeError(f"Net.sample returned {got}, expected uint8 {expected}")
        (workdir / SAMPLES_FILE).write_bytes(images.cpu().contiguous().numpy().tobytes())
    except BaseException as exc:  # candidate code may raise anything
        emit(events, "failed", stage="sample", reason=describe(exc))
        return 1
    emit(events, "done", shape=list(expected), seconds=seconds, file=SAMPLES_FILE)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
