"""BatchNorm recalibration at search budgets: does it change how low-fidelity scores rank architectures?

    .venv/bin/python benchmarks/bn_recalibration.py --data-dir ../shared/data/cifar10-jpeg.tar.gz

Trains K variants of the quick space once each (in process, trusted template code, the quick
recipe over --epochs epochs) and scores every epoch twice from the same weights: as trained
(BatchNorm's running averages) and after recalibrating the statistics on 2,000 training images.
Prints both accuracies per variant and epoch, and the Spearman rank correlation of epoch-1 with
last-epoch accuracy under each scoring: the correlation successive halving relies on.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from nas_agent.bench.table import spearman
from nas_agent.config import TrainConfig, load_config
from nas_agent.data import load_cache, resolve_cifar10
from nas_agent.space import load_template
from nas_agent.tasks import task_of
from nas_agent.train.loop import evaluate, recalibrate_batchnorm, train_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--variants", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-subset", type=int, default=5000)
    parser.add_argument("--test-subset", type=int, default=1000)
    parser.add_argument("--recalibration", type=int, default=2000, help="training images that re-estimate the stats")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    config = load_config("quick")
    space = task_of(config.task).space_of(config.space)
    template = load_template(config.template)
    data = load_cache(resolve_cifar10(args.data_dir, None)).subset(args.train_subset, args.test_subset, seed=args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    recipe = replace(TrainConfig(**config.to_dict()["train"]), epochs=args.epochs, bn_recalibration=0)
    with_recal = replace(recipe, bn_recalibration=args.recalibration)
    train_x, test_x, test_y = data.train_x.to(device), data.test_x.to(device), data.test_y.to(device)
    work = Path(tempfile.mkdtemp(prefix="bn_recalibration-"))
    variants = space.sample(args.variants, seed=args.seed)
    rows = []
    started = time.perf_counter()
    for index, params in enumerate(variants):
        path = work / f"variant_{index}.py"
        path.write_text(template.render(space.region_values(params)))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        torch.manual_seed(args.seed)
        net = module.Net((1, 3, 32, 32), (10,), {"dropout": recipe.dropout}, device)
        plain, recalibrated = [], []

        def on_epoch(metrics, net=net, plain=plain, recalibrated=recalibrated):
            plain.append(metrics.test_accuracy)
            twin = copy.deepcopy(net)          # the same weights; training goes on with the original
            recalibrate_batchnorm(twin, train_x, with_recal, device)
            recalibrated.append(evaluate(twin, test_x, test_y, with_recal, device)[0])

        train_model(net, data, recipe, device, on_epoch=on_epoch)
        rows.append({"variant": index, "params": params, "plain": plain, "recalibrated": recalibrated})
        print(f"{index + 1}/{len(variants)}  plain {plain}  recalibrated {recalibrated}", file=sys.stderr)

    console = Console(width=None if sys.stdout.isatty() else 170)
    table = Table(title=f"{len(rows)} quick-space variants, {args.epochs} epochs, {args.train_subset}/"
                        f"{args.test_subset} real images, {device}; test accuracy as trained / recalibrated")
    table.add_column("variant")
    for epoch in range(1, args.epochs + 1):
        table.add_column(f"epoch {epoch}", justify="right")
    for row in rows:
        p = row["params"]
        label = f"{p['N_BLOCKS']}x{p['N_COLUMNS']} {p['ACTIVATION']} {'-'.join(p['ELEMENT_ORDER'])}"
        table.add_row(label, *(f"{a:.3f} / {b:.3f}" for a, b in zip(row["plain"], row["recalibrated"])))
    console.print(table)
    summary = Table(title="rank correlation (Spearman) of low- with last-epoch accuracy, same variants")
    for column in ("scoring", *(f"epoch {e} vs {args.epochs}" for e in range(1, args.epochs)), "mean at epoch 1",
                   "mean at last"):
        summary.add_column(column, justify="right")
    for key, name in (("plain", "as trained (running averages)"), ("recalibrated", "BatchNorm recalibrated")):
        last = [r[key][-1] for r in rows]
        summary.add_row(name, *(f"{spearman([r[key][e] for r in rows], last):+.3f}" for e in range(args.epochs - 1)),
                        f"{sum(r[key][0] for r in rows) / len(rows):.3f}", f"{sum(last) / len(rows):.3f}")
    cross = spearman([r["recalibrated"][0] for r in rows], [r["plain"][-1] for r in rows])
    console.print(summary)
    console.print(f"epoch-1 recalibrated vs last-epoch as trained: {cross:+.3f}; "
                  f"{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
