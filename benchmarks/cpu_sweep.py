"""CPU sweep: train K generated FractalNet candidates for 1 epoch on real CIFAR-10 and tabulate.

    .venv/bin/python benchmarks/cpu_sweep.py --data-dir ../shared/data/cifar10-jpeg.tar.gz

Each candidate goes through the real pipeline (generator -> catalog -> sandboxed child ->
catalog), so the seconds include the child's start-up (torch import, data cache load).
"""

from __future__ import annotations

import argparse
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
from nas_agent.search.sweep import Trainer, read_candidate, register
from nas_agent.space import FractalSpace, generate_candidates, load_template
from nas_agent.validate import validator_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 (tar.gz, image folder or torchvision root)")
    parser.add_argument("--candidates", type=int, default=10)
    parser.add_argument("--train-subset", type=int, default=5000)
    parser.add_argument("--test-subset", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--config", default="quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args()

    console = Console(width=None if sys.stdout.isatty() else 200)  # full table when piped to a file
    work = Path(args.out or tempfile.mkdtemp(prefix="cpu_sweep-"))
    cfg = load_config(args.config).with_overrides({
        "device": "cpu", "catalog": str(work / "catalog.sqlite"), "train.epochs": args.epochs,
        "data.train_subset": args.train_subset, "data.test_subset": args.test_subset})
    cache = resolve_cifar10(args.data_dir, None)
    template = load_template(cfg.template)
    files = generate_candidates(template, FractalSpace().sample(args.candidates, args.seed), work / "candidates")

    started = time.perf_counter()
    with Catalog(cfg.catalog) as catalog:
        validator = validator_for(cfg, catalog=catalog, allow_known=True, smoke=False)  # timing training only
        names = [register(catalog, read_candidate(c.path, validator), cfg, origin="generator") for c in files]
        Trainer(catalog, cfg, cache, jobs=1).train(names)
        rows = []
        for name, candidate in zip(names, files):
            model, epochs = catalog.get_model(name), catalog.epochs(name)
            rows.append((name.rsplit("_", 1)[-1], candidate.params, model, epochs))
    total = time.perf_counter() - started

    table = Table(title=f"CPU sweep: {len(rows)} candidates, {args.epochs} epoch(s), "
                        f"{args.train_subset} train / {args.test_subset} test real images, config {args.config}")
    for column in ("candidate", "blocks", "cols", "width", "act", "order", "params", "s/epoch", "accuracy", "status"):
        table.add_column(column, justify="left" if column in ("candidate", "act", "order", "status") else "right")
    accuracies, seconds = [], []
    for short, p, model, epochs in rows:
        acc = epochs[-1]["accuracy"] if epochs else None
        secs = statistics.mean(e["seconds"] for e in epochs) if epochs else None
        if acc is not None:
            accuracies.append(acc)
            seconds.append(secs)
        table.add_row(short, str(p["N_BLOCKS"]), str(p["N_COLUMNS"]), str(p["BASE_CHANNELS"]), p["ACTIVATION"],
                      "-".join(p["ELEMENT_ORDER"]), f"{model['n_params']:,}" if model["n_params"] else "?",
                      f"{secs:.1f}" if secs else "", f"{acc:.4f}" if acc is not None else "",
                      model["status"] + (f": {model['reason']}" if model["reason"] else ""))
    console.print(table)
    if accuracies:
        console.print(f"mean accuracy {statistics.mean(accuracies):.4f} (best {max(accuracies):.4f}); "
                      f"mean {statistics.mean(seconds):.1f} s per epoch (median {statistics.median(seconds):.1f}); "
                      f"wall clock {total:.0f} s for {len(rows)} candidates incl. child start-up; device cpu "
                      f"({__import__('os').cpu_count()} cores)")


if __name__ == "__main__":
    main()
