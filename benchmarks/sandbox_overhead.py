"""What the OS jail costs: smoke-run latency, start-to-first-step latency and training images/s, jailed and not.

    .venv/bin/python benchmarks/sandbox_overhead.py --data-dir ../shared/data/cifar10-jpeg.tar.gz

Both modes run the same small FractalNet through the real sandbox (`smoke_test`, `run_job`),
interleaved round by round so the machine's noise falls on both alike. "unjailed" is the
child without bubblewrap (what --allow-unjailed runs: rlimits, seccomp, Landlock, audit hook);
"jailed" adds the namespaces and read-only mounts, started fresh; "jailed, warm spare" is the
smoke run as the validator does it, taking a jail started earlier with torch imported
(`run_child(..., warm=True)`). Medians over the rounds.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import track
from rich.table import Table

from nas_agent.config import TrainConfig
from nas_agent.data import resolve_cifar10
from nas_agent.sandbox import walls
from nas_agent.space import load_template
from nas_agent.train.job import TrainJob
from nas_agent.train.sandbox import run_job
from nas_agent.validate import SmokeLimits, smoke_test

CANDIDATE = {"N_BLOCKS": 3, "N_COLUMNS": 2, "BASE_CHANNELS": 16, "MAX_CHANNELS": 64}
_NO_JAIL = walls.Walls((walls.Wall("bubblewrap", False, "switched off by the benchmark", True),))


_real_probe = walls.probe


def _set_jail(on: bool) -> None:
    """Point the sandbox's host probe at the real walls, or at a host without bubblewrap."""
    walls.allow_unjailed(not on)
    walls.probe = _real_probe if on else (lambda: _NO_JAIL)


def _train_once(source: str, cache: Path, work: Path, args, *, jailed: bool) -> tuple[float, float]:
    """(seconds from the call to the child's `started` event, training images/s of its epoch)."""
    _set_jail(jailed)
    job = TrainJob(name="bench", source=source, dataset_cache=str(cache),
                   train=dataclasses.asdict(TrainConfig(epochs=1, batch_size=64, lr=0.05)),
                   train_subset=args.train_subset, test_subset=args.test_subset, device="cpu",
                   seconds=600, memory_mb=8192, threads=args.threads)
    seen: dict[str, float] = {}
    started = time.monotonic()

    def on_event(event: dict) -> None:
        if event["event"] == "started":
            seen["started"] = time.monotonic() - started
        elif event["event"] == "epoch":
            seen["images_per_second"] = float(event.get("samples_per_second") or 0.0)

    outcome = run_job(job, work / "job", on_event=on_event)
    if not outcome.ok:
        raise SystemExit(f"training failed: {outcome.reason}")
    return seen["started"], seen["images_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--train-subset", type=int, default=2000)
    parser.add_argument("--test-subset", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    if not _real_probe().jail_ok:
        raise SystemExit(f"this host cannot build the jail: {_real_probe().why_not()}")
    cache = resolve_cifar10(args.data_dir, None)
    source = load_template("fractalnet.py").render(CANDIDATE)
    modes = ("unjailed", "jailed", "jailed, warm spare")
    results: dict[str, dict[str, list[float]]] = {m: {"smoke": [], "start": [], "ips": []} for m in modes}
    with tempfile.TemporaryDirectory(prefix="sandbox_overhead-") as tmp:
        work = Path(tmp)

        def smoke(mode: str) -> float:
            _set_jail(mode != "unjailed")
            t0 = time.monotonic()
            verdict = smoke_test(source, work / "smoke", SmokeLimits(seconds=120, warm=mode.endswith("spare"))).verdict
            if not verdict.ok:
                raise SystemExit(f"smoke run failed ({mode}): {verdict.reason}")
            return time.monotonic() - t0

        smoke("jailed, warm spare")  # leaves the first spare; the trainings below give it time to import torch
        for _ in track(range(args.rounds), description="rounds", transient=True):
            for mode in ("unjailed", "jailed"):
                start, ips = _train_once(source, cache, work, args, jailed=mode == "jailed")
                results[mode]["start"].append(start)
                results[mode]["ips"].append(ips)
            for mode in modes:
                results[mode]["smoke"].append(smoke(mode))
    _set_jail(True)

    median = {m: {k: statistics.median(v) if v else float("nan") for k, v in r.items()} for m, r in results.items()}
    table = Table(title=f"sandbox overhead: {args.rounds} rounds, {args.train_subset} training images, "
                        f"{args.threads} thread(s), CPU (medians)")
    for column in ("mode", "smoke run (s)", "start to first step (s)", "training images/s"):
        table.add_column(column, justify="right")
    for mode in modes:
        m = median[mode]
        trained = mode != "jailed, warm spare"  # trainings always start a fresh jail
        table.add_row(mode, f"{m['smoke']:.2f}", f"{m['start']:.2f}" if trained else "-",
                      f"{m['ips']:.0f}" if trained else "-")
    u, j, w = median["unjailed"], median["jailed"], median["jailed, warm spare"]
    table.add_row("jailed / unjailed", f"{j['smoke'] / u['smoke']:.2f}x", f"{j['start'] / u['start']:.2f}x",
                  f"{j['ips'] / u['ips']:.3f}x")
    table.add_row("warm spare / unjailed", f"{w['smoke'] / u['smoke']:.2f}x", "-", "-")
    Console(width=None if sys.stdout.isatty() else 120).print(table)


if __name__ == "__main__":
    main()
