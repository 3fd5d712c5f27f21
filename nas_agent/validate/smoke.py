"""The smoke run: a candidate built and run once on a small batch, in the sandbox, before any training.

The driver never imports candidate code: this module only starts the child
(`nas_agent.validate.smoke_worker`) under tight limits and turns what it reports into a
verdict plus the network's structural fingerprint, size and cost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from nas_agent.tasks import is_generative
from nas_agent.train.events import SMOKE_EVENTS, ProtocolError, check, quote_untrusted
from nas_agent.train.job import CANDIDATE_FILE
from nas_agent.train.score import OUTPUT_FILE, PARAMETERS_FILE, ScoreError, count_parameters, read_float32
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
    warm: bool = True                # take a jailed spare that has torch imported, and leave one for the next run


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
    job = {"in_shape": list(in_shape),
           "out_shape": list(out_shape), "max_params": limits.max_params, "max_gflops": limits.max_gflops,
           "batch": limits.batch, "task": task}
    child_limits = ChildLimits(seconds=limits.seconds, memory_mb=limits.memory_mb, cpu_seconds=limits.seconds,
                               open_files=256, file_mb=16, folder_mb=64, threads=1,
                               seconds_key="validate.smoke_seconds", memory_key="validate.smoke_memory_mb")
    result = run_child("nas_agent.validate.smoke_worker", {CANDIDATE_FILE: source, "job.json": json.dumps(job)},
                       workdir, child_limits, device="cpu", warm=limits.warm)
    try:
        done = _verdict_inputs(result, Path(workdir), limits, in_shape, out_shape, task)
    except SmokeRejection as exc:
        return SmokeResult(Verdict.reject("smoke", str(exc)), seconds=result.seconds)
    return SmokeResult(Verdict.accept(), struct_hash=done["struct_hash"], n_params=done["n_params"],
                       flops_per_sample=done["flops_per_sample"], seconds=result.seconds)


class SmokeRejection(Exception):
    """Why the driver rejects a smoke run."""


def _verdict_inputs(result, workdir: Path, limits: SmokeLimits, in_shape, out_shape, task: str) -> dict:
    """The checked `done` event with the driver's own parameter count; SmokeRejection says why not.

    The child's checks give early, specific reasons; the verdict rests on the driver's: the
    parameter count from the shapes file, the output's shape and finiteness from its file.
    """
    failure = result.failure()
    if failure is not None:
        if failure.startswith("timeout:"):
            failure += ": an endless loop or far too much work"
        elif failure.startswith("out of memory:"):   # name the limit, as the parameter and FLOP limits do
            failure += f" (the smoke run's limit: validate.smoke_memory_mb = {limits.memory_mb:,} MB)"
        elif not failure.startswith(("crashed:", "out of memory:", "failed:", "interrupted:", "refused:")):
            failure = quote_untrusted(failure)  # the candidate's own words (an exception message)
        raise SmokeRejection(failure)
    try:
        done = check(next(e for e in result.events if e.get("event") == "done"), SMOKE_EVENTS)
        n_params = count_parameters(workdir / PARAMETERS_FILE)
        expected = (limits.batch,) if is_generative(task) else (limits.batch, *out_shape)
        output = read_float32(workdir / OUTPUT_FILE, expected)
    except (ProtocolError, ScoreError) as exc:
        raise SmokeRejection(f"the child's report does not hold: {exc}") from None
    if is_generative(task) and (output < -1e-3).any():
        raise SmokeRejection(f"forward returned a negative NLL ({float(output.min()):.4g}): the model's "
                             f"probabilities do not sum to one over the 256 values")
    if n_params > limits.max_params:
        raise SmokeRejection(f"{n_params:,} parameters, above the {limits.max_params:,} limit (validate.max_params)")
    return {**done, "n_params": n_params}
