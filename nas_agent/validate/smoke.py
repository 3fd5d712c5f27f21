"""The smoke run: a candidate built and run once on a small batch, in the sandbox, before any training.

The driver never imports candidate code: this module only starts the child
(`nas_agent.validate.smoke_worker`) under tight limits and turns what it reports into a
verdict plus the network's structural fingerprint, size and cost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from nas_agent.train.job import CANDIDATE_FILE
from nas_agent.train.sandbox import ChildLimits, run_child
from nas_agent.validate.verdict import Verdict


@dataclass(frozen=True)
class SmokeLimits:
    """How much a smoke run may take, and the size and cost ceilings a candidate must stay under."""

    seconds: float = 60.0            # wall clock, and CPU time, of the whole child (torch import included)
    memory_mb: int = 4096            # address space of the child
    max_params: int = 50_000_000
    max_gflops: float = 20.0         # forward FLOPs per image
    batch: int = 2


@dataclass(frozen=True)
class SmokeResult:
    """The verdict of a smoke run and, when the network ran, its fingerprint, size and cost."""

    verdict: Verdict
    struct_hash: str | None = None
    n_params: int | None = None
    flops_per_sample: int | None = None
    seconds: float = 0.0


def smoke_test(source: str, workdir: str | Path, limits: SmokeLimits = SmokeLimits(), *,
               in_shape: tuple[int, ...] = (1, 3, 32, 32), out_shape: tuple[int, ...] = (10,),
               task: str = "img-classification") -> SmokeResult:
    """Run `source`'s Net forward and backward once in a sandboxed child in `workdir` (created afresh)."""
    workdir = Path(workdir)
    job = {"candidate": str(workdir.resolve() / CANDIDATE_FILE), "in_shape": list(in_shape),
           "out_shape": list(out_shape), "max_params": limits.max_params, "max_gflops": limits.max_gflops,
           "batch": limits.batch, "task": task}
    child_limits = ChildLimits(seconds=limits.seconds, memory_mb=limits.memory_mb, cpu_seconds=limits.seconds,
                               open_files=256, file_mb=16, threads=1,
                               seconds_key="validate.smoke_seconds", memory_key="validate.smoke_memory_mb")
    result = run_child("nas_agent.validate.smoke_worker", {CANDIDATE_FILE: source, "job.json": json.dumps(job)},
                       workdir, child_limits, device="cpu")
    failure = result.failure()
    if failure is not None:
        if failure.startswith("timeout:"):
            failure += ": an endless loop or far too much work"
        return SmokeResult(Verdict.reject("smoke", failure), seconds=result.seconds)
    done = next(e for e in result.events if e.get("event") == "done")
    return SmokeResult(Verdict.accept(), struct_hash=done["struct_hash"], n_params=done["n_params"],
                       flops_per_sample=done["flops_per_sample"], seconds=result.seconds)
