"""Training throughput: the source paper's protocol against the fast path, same candidate, same data, one run.

    .venv/bin/python benchmarks/train_throughput.py --data-dir ../shared/data/cifar10-jpeg.tar.gz

(a) paper: a torchvision DataLoader over PIL images with per-sample transforms (flip, ToTensor,
    Normalize), batch 16, the candidate's own train_setup()/learn() (SGD lr 0.01, momentum 0.9,
    constant rate), as LEMUR's runner trains it;
(b) fast: the trainer's fast path (nas_agent.train.loop): uint8 tensors on the device, batched
    crop/flip/normalise, large batches, one-cycle SGD, bf16 autocast and channels_last on CUDA,
    optionally torch.compile.
Both train the same template variant from the same seed for the same epochs on the same images
and are evaluated the same way on the same test images. Prints images/s, seconds per epoch, test
accuracy after each epoch and the ratios. On a GPU, run it with `--device cuda` and the full data
(`--train-subset 0 --test-subset 0`).
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from nas_agent.config import TrainConfig, load_config
from nas_agent.data import load_cache, resolve_cifar10
from nas_agent.data.augment import CIFAR10_MEAN, CIFAR10_STD
from nas_agent.search.generate import generate_candidates
from nas_agent.space import load_template
from nas_agent.device import resolve_device
from nas_agent.train.loop import evaluate, seed_everything, train_model


class PILImages(Dataset):
    """CIFAR-10 as torchvision's CIFAR10 dataset serves it: one PIL image per item, transformed per sample."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform):
        self.images = x.permute(0, 2, 3, 1).contiguous().numpy()  # N x H x W x C, as torchvision keeps it
        self.labels = y.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def load_net(path: Path):
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(module, cfg: TrainConfig, device: torch.device):
    seed_everything(cfg.seed)
    prm = {"lr": cfg.lr, "momentum": cfg.momentum, "dropout": cfg.dropout}
    return module.Net((1, 3, 32, 32), (10,), prm, device).to(device)


def train_paper(module, data, cfg: TrainConfig, device: torch.device, workers: int) -> list[dict]:
    """The paper protocol: DataLoader + per-sample transforms + the candidate's own learn()."""
    model = build(module, cfg, device)
    model.train_setup({"lr": cfg.lr, "momentum": cfg.momentum, "dropout": cfg.dropout})
    transform = transforms.Compose([transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                                    transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)])
    loader = DataLoader(PILImages(data.train_x, data.train_y, transform), batch_size=cfg.batch_size, shuffle=True,
                        num_workers=workers, generator=torch.Generator().manual_seed(cfg.seed))
    test_x, test_y = data.test_x.to(device), data.test_y.to(device)
    rows = []
    for epoch in range(1, cfg.epochs + 1):
        started = time.perf_counter()
        model.learn(loader)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_s = time.perf_counter() - started
        accuracy, _ = evaluate(model, test_x, test_y, replace(cfg, amp="off", channels_last="off"), device)
        rows.append({"epoch": epoch, "train_s": train_s, "epoch_s": time.perf_counter() - started,
                     "images_s": len(data.train_x) / train_s, "accuracy": accuracy})
    return rows


def train_fast(module, data, cfg: TrainConfig, device: torch.device, compile: bool) -> list[dict]:
    model = build(module, cfg, device)
    metrics = train_model(model, data, cfg, device, compile=compile)
    return [{"epoch": m.epoch, "train_s": len(data.train_x) / m.samples_per_second, "epoch_s": m.seconds,
             "images_s": m.samples_per_second, "accuracy": m.test_accuracy} for m in metrics]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 (tar.gz, image folder or torchvision root)")
    parser.add_argument("--template", default="templates/fractalnet.py")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="template parameter (Python literal), e.g. N_BLOCKS=3; repeatable")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-subset", type=int, default=10000, help="0: all 50,000")
    parser.add_argument("--test-subset", type=int, default=0, help="0: all 10,000")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--fast-config", default=None,
                        help="config whose [train] recipe the fast path uses (default: default on CUDA, quick on CPU)")
    parser.add_argument("--fast-batch", type=int, default=0, help="override the fast path's batch size")
    parser.add_argument("--compile", action="store_true", help="fast path through torch.compile (compile time counts)")
    parser.add_argument("--workers", type=int, default=0, help="paper protocol: DataLoader worker processes")
    parser.add_argument("--only", choices=["paper", "fast"], default=None, help="run one side only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import ast
    params = {k: ast.literal_eval(v) for k, v in (p.split("=", 1) for p in args.param)}
    console = Console(width=None if sys.stdout.isatty() else 160)
    device = resolve_device(args.device)
    data = load_cache(resolve_cifar10(args.data_dir, None)).subset(args.train_subset or None,
                                                                   args.test_subset or None, seed=args.seed)
    template = load_template(args.template)
    [candidate] = generate_candidates(template, [params], tempfile.mkdtemp(prefix="throughput-"))
    module = load_net(candidate.path)

    paper = replace(load_config("paper").train, epochs=args.epochs, seed=args.seed)
    fast_config = args.fast_config or ("default" if device.type == "cuda" else "quick")
    fast = replace(load_config(fast_config).train, epochs=args.epochs, seed=args.seed)
    if args.fast_batch:
        fast = replace(fast, batch_size=args.fast_batch)
    n_params = sum(p.numel() for p in build(module, fast, torch.device("cpu")).parameters())
    console.print(f"device: {device_name(device)}; torch {torch.__version__}; candidate {candidate.path.name} "
                  f"({n_params:,} parameters, {params or 'template defaults'}); "
                  f"{len(data.train_x):,} train / {len(data.test_x):,} test real images; {args.epochs} epoch(s)")

    results = {}
    if args.only in (None, "paper"):
        console.print(f"paper protocol: batch {paper.batch_size}, constant lr {paper.lr}, dropout {paper.dropout}, "
                      f"DataLoader workers {args.workers} ...")
        results["paper"] = train_paper(module, data, paper, device, args.workers)
    if args.only in (None, "fast"):
        console.print(f"fast path: recipe of conf/{fast_config}.toml, batch {fast.batch_size}, {fast.schedule} "
                      f"lr {fast.lr}, dropout {fast.dropout}, crop {fast.crop_padding}, compile {args.compile} ...")
        results["fast"] = train_fast(module, data, fast, device, args.compile)

    table = Table(title="Training throughput, paper protocol vs fast path")
    for column in ("protocol", "batch", "epoch", "images/s", "s/epoch (train+eval)", "training s so far",
                   "test accuracy"):
        table.add_column(column, justify="left" if column == "protocol" else "right")
    for name, rows in results.items():
        batch = (paper if name == "paper" else fast).batch_size
        so_far = 0.0
        for row in rows:
            so_far += row["train_s"]  # time to this accuracy: training only, evaluation excluded
            table.add_row(name, str(batch), str(row["epoch"]), f"{row['images_s']:,.0f}", f"{row['epoch_s']:.1f}",
                          f"{so_far:.1f}", f"{row['accuracy']:.4f}")
    console.print(table)
    summary = {name: (statistics.mean(r["images_s"] for r in rows), statistics.mean(r["epoch_s"] for r in rows),
                      rows[-1]["accuracy"]) for name, rows in results.items()}
    for name, (images_s, epoch_s, accuracy) in summary.items():
        console.print(f"{name}: {images_s:,.0f} images/s, {epoch_s:.1f} s/epoch, accuracy {accuracy:.4f} "
                      f"after {args.epochs} epoch(s)")
    if len(summary) == 2:
        speedup = summary["fast"][0] / summary["paper"][0]
        gain = summary["fast"][2] - summary["paper"][2]
        console.print(f"fast / paper: {speedup:.2f}x images/s, {summary['paper'][1] / summary['fast'][1]:.2f}x "
                      f"less time per epoch, accuracy {gain:+.4f}")


if __name__ == "__main__":
    main()
