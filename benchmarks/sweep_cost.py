"""Sweep cost: train K sampled FractalNet candidates and project the paper's 1,200 x 5-epoch sweep on this device.

    .venv/bin/python benchmarks/sweep_cost.py --data-dir ../shared/data/cifar10-jpeg.tar.gz      # CPU-sized
    .venv/bin/python benchmarks/sweep_cost.py --data-dir DATA --config default --space full \\
        --train-subset 0 --test-subset 0 --epochs 5 --candidates 24 --jobs 2                      # a GPU

Each candidate goes through the real pipeline (generator -> catalog -> sandboxed child ->
catalog), `--jobs` at a time (on one GPU, several small candidates share it). The projection
scales each candidate's measured epoch to the full 50,000 / 10,000 images and to 5 epochs,
keeps the measured per-candidate overhead (child start-up, data load), divides by the
concurrency, and multiplies by 1,200 / K. The source paper reports about 500 GPU-hours.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from nas_agent.catalog import Catalog
from nas_agent.config import load_config
from nas_agent.data import resolve_cifar10
from nas_agent.search.trainer import Trainer, read_candidate, register
from nas_agent.search.generate import generate_candidates
from nas_agent.space import FractalSpace, load_template
from nas_agent.validate import validator_for

PAPER_CANDIDATES, PAPER_EPOCHS, FULL_TRAIN, FULL_TEST = 1200, 5, 50_000, 10_000


def full_epoch_seconds(epoch: dict, train_n: int, test_n: int) -> float:
    """One epoch's seconds scaled to the whole dataset: training by images/s, evaluation by test share."""
    train_s = train_n / epoch["samples_per_second"]
    eval_s = max(epoch["seconds"] - train_s, 0.0)
    return train_s * FULL_TRAIN / train_n + eval_s * FULL_TEST / test_n


def device_of(catalog: Catalog, names: list[str]) -> str:
    gpus = {e["gpu_type"] for n in names for e in catalog.epochs(n) if e.get("gpu_type")}
    return ", ".join(sorted(gpus)) if gpus else f"CPU {platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 (tar.gz, image folder or torchvision root)")
    parser.add_argument("--config", default="quick", help="recipe ([train]) and, with --space config, the space")
    parser.add_argument("--space", choices=["config", "full"], default="config",
                        help="sample the config's [space] or the generator's whole space")
    parser.add_argument("--candidates", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=None, help="default: the config's")
    parser.add_argument("--train-subset", type=int, default=5000, help="0: all 50,000")
    parser.add_argument("--test-subset", type=int, default=1000, help="0: all 10,000")
    parser.add_argument("--jobs", type=int, default=1, help="candidates trained at once (on one device)")
    parser.add_argument("--device", default=None, help="default: the config's (auto)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args()

    console = Console(width=None if sys.stdout.isatty() else 200)  # full table when piped to a file
    work = Path(args.out or tempfile.mkdtemp(prefix="sweep_cost-"))
    base = load_config(args.config)
    overrides = {"catalog": str(work / "catalog.sqlite"), "data.train_subset": args.train_subset,
                 "data.test_subset": args.test_subset, "train.epochs": args.epochs, "device": args.device}
    cfg = base.with_overrides({k: v for k, v in overrides.items() if v is not None})
    space = FractalSpace.from_config(cfg.space) if args.space == "config" and cfg.space else FractalSpace()
    cache = resolve_cifar10(args.data_dir, None)
    files = generate_candidates(load_template(cfg.template), space.sample(args.candidates, args.seed),
                                work / "candidates")

    started = time.perf_counter()
    with Catalog(cfg.catalog) as catalog:
        validator = validator_for(cfg, catalog=catalog, allow_known=True, smoke=False)  # timing training only
        names = [register(catalog, read_candidate(c.path, validator), cfg, origin="generator") for c in files]
        Trainer(catalog, cfg, cache, jobs=args.jobs).train(names)
        wall = time.perf_counter() - started
        rows = [(name, c.params, catalog.get_model(name), catalog.epochs(name)) for name, c in zip(names, files)]
        device = device_of(catalog, names)

    train_n = args.train_subset or FULL_TRAIN
    test_n = args.test_subset or FULL_TEST
    epochs = cfg.train.epochs
    table = Table(title=f"Sweep cost: {len(rows)} sampled candidates, {epochs} epoch(s), {train_n:,} train / "
                        f"{test_n:,} test real images, config {args.config}, {args.jobs} at a time, on {device}")
    for column in ("candidate", "blocks", "cols", "width", "act", "order", "params", "s/epoch",
                   "s/epoch full data", "accuracy", "status"):
        table.add_column(column, justify="left" if column in ("candidate", "act", "order", "status") else "right")
    accuracies, measured, full = [], 0.0, []
    for name, p, model, stats in rows:
        acc = stats[-1]["accuracy"] if stats else None
        secs = statistics.mean(e["seconds"] for e in stats) if stats else None
        scaled = statistics.mean(full_epoch_seconds(e, train_n, test_n) for e in stats) if stats else None
        if acc is not None:
            accuracies.append(acc)
            measured += sum(e["seconds"] for e in stats)
            full.append(scaled)
        table.add_row(name.rsplit("_", 1)[-1], str(p["N_BLOCKS"]), str(p["N_COLUMNS"]), str(p["BASE_CHANNELS"]),
                      p["ACTIVATION"], "-".join(p["ELEMENT_ORDER"]),
                      f"{model['n_params']:,}" if model["n_params"] else "?",
                      f"{secs:.1f}" if secs else "", f"{scaled:.1f}" if scaled else "",
                      f"{acc:.4f}" if acc is not None else "",
                      model["status"] + (f": {model['reason']}" if model["reason"] else ""))
    console.print(table)
    if not accuracies:
        console.print("no candidate finished; nothing to project")
        return
    # Overhead (start-up, data load, queueing) as measured; epoch work rescaled to the paper's sweep.
    overhead = max(wall - measured / args.jobs, 0.0)
    sample_full = overhead + sum(f * PAPER_EPOCHS for f in full) / args.jobs
    projected_h = sample_full * PAPER_CANDIDATES / len(full) / 3600
    console.print(f"accuracy after {epochs} epoch(s): mean {statistics.mean(accuracies):.4f}, best {max(accuracies):.4f}")
    console.print(f"full-data epoch: median {statistics.median(full):.1f} s, mean {statistics.mean(full):.1f} s; "
                  f"sample wall clock {wall:.0f} s ({overhead:.0f} s of it start-up and data loading)")
    console.print(f"projected {PAPER_CANDIDATES:,} candidates x {PAPER_EPOCHS} epochs on full CIFAR-10: "
                  f"{projected_h:.1f} device-hours on {device} ({args.jobs} at a time); the paper: about 500 GPU-hours")


if __name__ == "__main__":
    main()
