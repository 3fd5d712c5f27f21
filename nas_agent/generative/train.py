"""The training loop of generative candidates: minimise forward(x), the images' NLL; report test bits/dim.

Runs inside the sandboxed child (nas_agent/train/worker.py picks it for task img-generation),
like the classification loop it mirrors: the whole uint8 dataset on the device, batches
drawn from a generator seeded per epoch, sums kept on the device, a checkpoint per epoch.
Images are fed as uint8 (the likelihood is over the exact 0..255 values), so there is no
normalisation and no crop; only horizontal flips (cfg.flip), which keep the distribution.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn as nn

from nas_agent.config import TrainConfig
from nas_agent.generative.task import bits_per_dim
from nas_agent.train.loop import EpochMetrics, _autocast, _optimizer, _scheduler, optimizer_step, run_epochs


def _dims(x: torch.Tensor) -> int:
    return math.prod(x.shape[1:])


@torch.no_grad()
def evaluate_nll(model: nn.Module, x: torch.Tensor, cfg: TrainConfig, device: torch.device) -> float:
    """Summed negative log-likelihood in nats over the uint8 images `x`, in eval mode (exact for every level)."""
    model.eval()
    total = torch.zeros((), device=device, dtype=torch.float64)
    size = cfg.eval_batch_size or (500 if device.type == "cuda" else 64)
    for start in range(0, len(x), size):
        with _autocast(device, cfg):
            nll = model(x[start:start + size])
        total += nll.double().sum()
    return total.item()


def _batches(x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
             generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    order = torch.randperm(len(x), device=x.device, generator=generator)
    for start in range(0, len(x), cfg.batch_size):
        idx = order[start:start + cfg.batch_size]
        xb = x[idx]
        if cfg.flip:
            flip = torch.rand(len(idx), device=x.device, generator=generator) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
        yield xb, y[idx]


def _train_epoch(model, batches, optimizer, scheduler, cfg: TrainConfig, device: torch.device) -> float:
    """One pass; returns the mean training loss in nats per sub-pixel value (MAR levels: an estimate)."""
    model.train()
    loss_sum = torch.zeros((), device=device)
    seen = 0
    for xb, _ in batches:
        with _autocast(device, cfg):
            loss = model(xb).float().mean() / _dims(xb)
        optimizer_step(model, loss, optimizer, scheduler, cfg)
        loss_sum += loss.detach() * len(xb)
        seen += len(xb)
    return loss_sum.item() / max(seen, 1)


def train_generative(model: nn.Module, data, cfg: TrainConfig, device: torch.device, *,
                     checkpoint: Path | None = None, fingerprint: str = "", resume_epoch: int | None = None,
                     on_epoch: Callable[[EpochMetrics], None] = lambda m: None) -> list[EpochMetrics]:
    """Train for cfg.epochs, resuming from a matching checkpoint; same promises as train.loop.train_model.

    Each epoch's EpochMetrics carries test bits/dim in `test_accuracy` (the task's score, the
    column LEMUR's stat table ranks by), and nats per sub-pixel value in `test_loss` and `train_loss`.
    """
    model.to(device)
    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    test_x = data.test_x.to(device)
    dims = _dims(train_x)
    steps_per_epoch = math.ceil(len(train_x) / cfg.batch_size)
    if cfg.loop == "contract":
        model.train_setup({"lr": cfg.lr, "momentum": cfg.momentum, "dropout": cfg.dropout})
        optimizer, scheduler = getattr(model, "optimizer", None), None
    else:
        optimizer = _optimizer(model, cfg, device)
        scheduler = _scheduler(optimizer, cfg, cfg.epochs * steps_per_epoch)

    def train_one(generator: torch.Generator) -> tuple[float | None, None]:
        batches = _batches(train_x, train_y, cfg, generator)
        if cfg.loop == "contract":
            model.learn(batches)
            return None, None
        return _train_epoch(model, batches, optimizer, scheduler, cfg, device), None

    def test(epoch: int) -> tuple[float, float]:
        nll = evaluate_nll(model, test_x, cfg, device)
        return bits_per_dim(nll, len(test_x), dims), nll / (max(len(test_x), 1) * dims)

    return run_epochs(model, optimizer, scheduler, cfg, device, len(train_x), train_one, test,
                      checkpoint=checkpoint, fingerprint=fingerprint, resume_epoch=resume_epoch, on_epoch=on_epoch)
