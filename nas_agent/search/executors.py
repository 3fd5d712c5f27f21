"""Executors: where a training job runs. The driver calls `run` from one thread per slot.

An executor only trains: it never opens the catalog. It hands each event of the
sandboxed child (started, epoch, …) to `on_event` as it arrives and returns the
TrainOutcome; the driver turns both into catalog rows.
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import replace
from pathlib import Path
from typing import Callable, Protocol

from nas_agent.train.job import TrainJob, TrainOutcome
from nas_agent.train.sandbox import run_job

EventSink = Callable[[dict], None]


class Executor(Protocol):
    """Trains jobs; `slots` of them at once."""

    name: str
    slots: int

    def run(self, job: TrainJob, workdir: Path, on_event: EventSink, cancel: threading.Event) -> TrainOutcome:
        """Train `job` to the end (blocking); setting `cancel` stops it with an "interrupted" outcome."""
        ...

    def close(self) -> None:
        ...


def visible_gpus() -> int:
    """How many CUDA devices this machine shows, without initialising CUDA in the driver."""
    mask = os.environ.get("CUDA_VISIBLE_DEVICES")
    if mask is not None:
        return len([d for d in mask.split(",") if d.strip() and d.strip() != "-1"])
    return len([p for p in Path("/dev").glob("nvidia[0-9]*")])


class LocalExecutor:
    """Sandboxed children on this machine: one slot per visible GPU, or `workers` CPU slots.

    With GPUs each slot owns one device (`cuda:i`), so concurrent candidates never share a
    GPU unless `workers` asks for more slots than there are GPUs (then they take turns by slot).
    """

    name = "local"

    def __init__(self, device: str = "auto", workers: int = 0):
        gpus = visible_gpus() if device in ("auto", "cuda") else 0
        if device.startswith("cuda:"):
            devices = [device]
        elif gpus:
            devices = [f"cuda:{i}" for i in range(gpus)]
        else:
            devices = ["cpu" if device == "auto" else device]
        self.slots = max(1, workers or (len(devices) if devices[0].startswith("cuda") else 1))
        self._free: queue.Queue[str] = queue.Queue()
        for i in range(self.slots):
            self._free.put(devices[i % len(devices)])

    def run(self, job: TrainJob, workdir: Path, on_event: EventSink, cancel: threading.Event) -> TrainOutcome:
        device = self._free.get()
        try:
            pinned = job if job.device not in ("auto", "cuda") else replace(job, device=device)
            return run_job(pinned, workdir, on_event=on_event, cancel=cancel)
        finally:
            self._free.put(device)

    def close(self) -> None:
        pass
