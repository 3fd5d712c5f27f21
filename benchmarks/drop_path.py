"""Drop-path at search budgets: test accuracy of one FractalNet with drop-path off, local, local + global.

    .venv/bin/python benchmarks/drop_path.py --data-dir ../shared/data/cifar10-jpeg.tar.gz

Trains in process (trusted template code) with the default recipe's loop on real CIFAR-10.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from nas_agent.config import TrainConfig
from nas_agent.data import load_cache, resolve_cifar10
from nas_agent.space import load_template
from nas_agent.train.loop import train_model

SETTINGS = [(0.0, 0.0), (0.15, 0.0), (0.15, 0.5)]  # (local, global)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--train-subset", type=int, default=5000)
    parser.add_argument("--test-subset", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    data = load_cache(resolve_cifar10(args.data_dir, None)).subset(args.train_subset, args.test_subset)
    template = load_template("fractalnet.py")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    table = Table(title=f"drop-path, 3 blocks x 4 columns, {args.epochs} epochs, "
                        f"{args.train_subset}/{args.test_subset} real images, {device}")
    for column in ("local", "global", "train acc", "test acc", "seconds"):
        table.add_column(column, justify="right")
    work = Path(tempfile.mkdtemp(prefix="drop_path-"))
    for local, global_ in SETTINGS:
        path = work / f"fractal_{local}_{global_}.py"
        path.write_text(template.render({"N_BLOCKS": 3, "N_COLUMNS": 4, "BASE_CHANNELS": 16, "ACTIVATION": "gelu",
                                         "ELEMENT_ORDER": ("conv", "bn", "act", "dropout"),
                                         "LOCAL_DROP_PATH": local, "GLOBAL_DROP_PATH": global_}))
        spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        torch.manual_seed(0)
        net = module.Net((1, 3, 32, 32), (10,), {"dropout": 0.0}, device)
        started = time.perf_counter()
        last = train_model(net, data, TrainConfig(epochs=args.epochs, batch_size=128, lr=0.05), device)[-1]
        table.add_row(f"{local:g}", f"{global_:g}", f"{last.train_accuracy:.3f}", f"{last.test_accuracy:.3f}",
                      f"{time.perf_counter() - started:.0f}")
    Console(width=None if sys.stdout.isatty() else 160).print(table)


if __name__ == "__main__":
    main()
