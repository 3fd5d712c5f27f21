"""The training loop of generative candidates: minimise forward(x), the images' NLL; report test bits/dim.

Runs inside the sandboxed child (nas_agent/train/worker.py picks it for task img-generation),
like the classification loop it mirrors: the whole uint8 dataset on the device, batches
drawn from a generator seeded per epoch, sums kept on the device, a checkpoint per epoch.
Images are fed as uint8 (the likelihood is over the exact 0..255 values), so there is no
normalisation and no crop; only horizontal flips (cfg.flip), which keep the distribution.
In the child the test set is not scored here: each epoch the per-value log-probabilities of
the test images and the logits on the driver's probe images are handed out
(`on_test_outputs`), and the driver's scorer computes bits/dim (nas_agent/train/score.py).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas_agent.config import TrainConfig
from nas_agent.tasks import bits_per_dim
from nas_agent.train.loop import EpochMetrics, autocast_for, make_optimizer, make_scheduler, optimizer_step, run_epochs


def _dims(x: torch.Tensor) -> int:
    return math.prod(x.shape[1:])


@torch.no_grad()
def evaluate_nll(model: nn.Module, x: torch.Tensor, cfg: TrainConfig, device: torch.device) -> float:
    """Summed negative log-likelihood in nats over the uint8 images `x`, in eval mode (exact for every level)."""
    model.eval()
    total = torch.zeros((), device=device, dtype=torch.float64)
    size = _eval_size(cfg, device)
    for start in range(0, len(x), size):
        with autocast_for(device, cfg):
            nll = model(x[start:start + size])
        total += nll.double().sum()
    return total.item()


def _eval_size(cfg: TrainConfig, device: torch.device) -> int:
    # value_logits holds 256 floats per sub-pixel: 64 CIFAR images are 200 MB of logits
    return cfg.eval_batch_size or (500 if device.type == "cuda" else 64)


@torch.no_grad()
def value_log_probs(model: nn.Module, x: torch.Tensor, cfg: TrainConfig, device: torch.device) -> torch.Tensor:
    """(N, C*H*W) float32 log-probability of each value of the uint8 images `x`, from model.value_logits."""
    model.eval()
    out = []
    size = _eval_size(cfg, device)
    for start in range(0, len(x), size):
        xb = x[start:start + size]
        with autocast_for(device, cfg):
            logits = model.value_logits(xb)
        log_p = F.log_softmax(logits.float(), -1).gather(-1, xb.long()[..., None]).squeeze(-1)
        out.append(log_p.reshape(len(xb), -1).cpu())
    return torch.cat(out)


@torch.no_grad()
def probe_logits(model: nn.Module, images: torch.Tensor, positions: list[int], cfg: TrainConfig,
                 device: torch.device) -> torch.Tensor:
    """(P, len(positions), 256) float32 logits of the probe `images` at the flat value `positions`."""
    model.eval()
    with autocast_for(device, cfg):
        logits = model.value_logits(images)
    return logits.float().reshape(len(images), -1, logits.shape[-1])[:, positions].cpu()


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
        with autocast_for(device, cfg):
            loss = model(xb).float().mean() / _dims(xb)
        optimizer_step(model, loss, optimizer, scheduler, cfg)
        loss_sum += loss.detach() * len(xb)
        seen += len(xb)
    return loss_sum.item() / max(seen, 1)


def train_generative(model: nn.Module, data, cfg: TrainConfig, device: torch.device, *,
                     checkpoint: Path | None = None, fingerprint: str = "", resume_epoch: int | None = None,
                     until_epoch: int | None = None,
                     on_test_outputs: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
                     probes: tuple[torch.Tensor, list[int]] | None = None,
                     on_epoch: Callable[[EpochMetrics], None] = lambda m: None) -> list[EpochMetrics]:
    """Train for cfg.epochs, resuming from a matching checkpoint; same promises as train.loop.train_model.

    Each epoch's EpochMetrics carries test bits/dim in `test_accuracy` (the task's score, the
    column LEMUR's stat table ranks by), and nats per sub-pixel value in `test_loss` and `train_loss`.
    With `on_test_outputs(epoch, log_probs, probe_logits)` and `probes` (images, flat positions)
    the test set is handed out instead, and the test fields stay None.
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
        optimizer = make_optimizer(model, cfg, device)
        scheduler = make_scheduler(optimizer, cfg, cfg.epochs * steps_per_epoch)

    def train_one(generator: torch.Generator) -> tuple[float | None, None]:
        batches = _batches(train_x, train_y, cfg, generator)
        if cfg.loop == "contract":
            model.learn(batches)
            return None, None
        return _train_epoch(model, batches, optimizer, scheduler, cfg, device), None

    def test(epoch: int) -> tuple[float, float] | None:
        if on_test_outputs is None:
            nll = evaluate_nll(model, test_x, cfg, device)
            return bits_per_dim(nll, len(test_x), dims), nll / (max(len(test_x), 1) * dims)
        images, positions = probes
        on_test_outputs(epoch, value_log_probs(model, test_x, cfg, device),
                        probe_logits(model, images.to(device), positions, cfg, device))
        return None

    return run_epochs(model, optimizer, scheduler, cfg, device, len(train_x), train_one, test,
                      checkpoint=checkpoint, fingerprint=fingerprint, resume_epoch=resume_epoch,
                      until_epoch=until_epoch, on_epoch=on_epoch)
