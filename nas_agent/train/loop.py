"""The training loop: whole dataset on the device, batched augmentation, one sync per epoch.

This module runs inside the sandboxed child process (see worker.py). It never opens the
catalog: it reports each finished epoch through a callback and keeps a checkpoint per
epoch so a killed run resumes where it stopped. In the child it never sees test labels:
`on_test_logits` hands each epoch's test logits out, and the driver scores them
(nas_agent/train/score.py). Trusted in-process callers (benchmarks) let it score itself.
"""

from __future__ import annotations

import functools
import math
import os
import resource
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas_agent.config import TrainConfig
from nas_agent.data.augment import augment_batch, normalize


class NonFiniteLoss(RuntimeError):
    """Training diverged: the loss became NaN or infinite."""


@dataclass
class EpochMetrics:
    """What one finished epoch measured."""

    epoch: int                      # 1-based, as LEMUR counts
    test_accuracy: float | None     # None when the test logits were handed out to be scored by the driver
    test_loss: float | None
    train_loss: float | None
    train_accuracy: float | None
    seconds: float                  # training + evaluation wall time of this epoch
    samples_per_second: float       # training images per second
    peak_gpu_memory_kb: float | None
    peak_rss_kb: float

    def as_dict(self) -> dict:
        return asdict(self)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """The recipe's optimizer over the model's trainable parameters."""
    # Multi-tensor steps, no per-parameter Python loop. Fused AdamW on CUDA; SGD stays on foreach
    # because fused SGD fails when a parameter first gets a gradient after step one, which global
    # drop-path does (a column skipped in the first batches has no momentum buffer yet).
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fast)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                           weight_decay=cfg.weight_decay, foreach=True)


def make_scheduler(optimizer, cfg: TrainConfig, total_steps: int):
    """The recipe's learning-rate schedule over `total_steps` steps (any count from one up)."""
    if cfg.schedule == "onecycle" and total_steps >= 4:
        # OneCycleLR divides by the length of each phase, counted from the step after the first:
        # a warm-up of one step (0.2 of 5) or less divides by zero. Short runs warm up over two.
        warmup = min(max(cfg.warmup_fraction, 2 / total_steps), 1 - 2 / total_steps)
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=total_steps, pct_start=warmup,
            anneal_strategy="linear", div_factor=10.0, final_div_factor=100.0,
            cycle_momentum=False)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX), where oneDNN's bf16 convs pay off.

    oneDNN also runs bf16 on plain AVX-512 by emulation, which is slower than fp32, so the
    instruction flags decide, not torch's `_is_mkldnn_bf16_supported`.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return ("avx512_bf16" in flags or "amx_bf16" in flags) and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def autocast_for(device: torch.device, cfg: TrainConfig):
    """The autocast context the recipe and the hardware call for (a no-op where it would not pay)."""
    # bf16 on CUDA, and on CPUs with native bf16: benchmarks/train_throughput.py measured 1.4-1.6x
    # images/s on an AVX512-BF16 EPYC for a FractalNet step, at no accuracy cost after 2 epochs.
    if cfg.amp == "auto" and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    if cfg.amp == "auto" and device.type == "cpu" and cpu_has_native_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


def _use_channels_last(device: torch.device, cfg: TrainConfig) -> bool:
    return cfg.channels_last == "on" or (cfg.channels_last == "auto" and device.type == "cuda")


def _peak_rss_kb() -> float:
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
             device: torch.device) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) over a uint8 image tensor, in large batches."""
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    channels_last = _use_channels_last(device, cfg)
    # On CPU, small batches stay in cache: 64 evaluates twice as fast as 1000 (measured on a FractalNet).
    size = cfg.eval_batch_size or (1000 if device.type == "cuda" else 64)
    for start in range(0, len(x), size):
        xb = normalize(x[start:start + size])
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        yb = y[start:start + size]
        with autocast_for(device, cfg):
            out = model(xb)
        loss_sum += F.cross_entropy(out.float(), yb, reduction="sum")
        correct += (out.argmax(1) == yb).sum()
    n = max(len(x), 1)
    return correct.item() / n, loss_sum.item() / n


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, cfg: TrainConfig, device: torch.device) -> int:
    """Re-estimate the running statistics of every normalization layer on the first `cfg.bn_recalibration` images.

    Early in training the running averages trail the weights (momentum 0.1 over a few dozen
    steps), so an evaluation in eval mode measures that lag rather than the architecture. The
    statistics are reset and recomputed as a plain cumulative average over un-augmented
    training images, without gradients, with only the normalization layers in training mode
    (dropout and the rest stay as the test sees them). Returns the images used (0: nothing to do).
    """
    n = min(cfg.bn_recalibration, len(x))
    norms = [m for m in model.modules()
             if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats and m.running_mean is not None]
    if n <= 0 or not norms:
        return 0
    model.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None     # None: cumulative average over the batches seen since the reset
        m.train()
    channels_last = _use_channels_last(device, cfg)
    try:
        for start in range(0, n, cfg.batch_size):
            xb = normalize(x[start:min(start + cfg.batch_size, n)])
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast_for(device, cfg):
                model(xb)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
            m.eval()
    return n


def _batches(x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, generator: torch.Generator,
             channels_last: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled, augmented (images, labels) batches, drawn on the device from `generator`."""
    order = torch.randperm(len(x), device=x.device, generator=generator)
    for start in range(0, len(x), cfg.batch_size):
        idx = order[start:start + cfg.batch_size]
        xb = augment_batch(x[idx], crop_padding=cfg.crop_padding, flip=cfg.flip, generator=generator)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        yield xb, y[idx]


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, cfg: TrainConfig, device: torch.device) -> torch.Tensor:
    """Float32 logits (N x classes) on the CPU for a uint8 image tensor, in large batches, in eval mode."""
    model.eval()
    channels_last = _use_channels_last(device, cfg)
    size = cfg.eval_batch_size or (1000 if device.type == "cuda" else 64)
    parts = []
    for start in range(0, len(x), size):
        xb = normalize(x[start:start + size])
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with autocast_for(device, cfg):
            out = model(xb)
        parts.append(out.detach().float().cpu())
    return torch.cat(parts) if parts else torch.zeros((0, 0))


def save_checkpoint(path: Path, model, optimizer, scheduler, epoch: int, fingerprint: str) -> None:
    """Write the checkpoint atomically: a killed process leaves the previous one intact.

    Weights, optimizer, schedule and RNG only: the epochs' results live in the catalog, never here.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({
        "fingerprint": fingerprint,
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }, tmp)
    os.replace(tmp, path)


def resume_from_checkpoint(checkpoint: Path | None, fingerprint: str, model: nn.Module, optimizer, scheduler,
                           resume_epoch: int | None = None) -> int:
    """Restore weights, optimizer, schedule and RNG from this candidate's checkpoint; the epoch to continue after.

    `resume_epoch` is the last epoch the catalog holds (the driver's word, not the checkpoint's):
    a checkpoint of another epoch is not used and training starts over. None accepts any epoch
    (trusted in-process use).
    """
    ckpt = load_checkpoint(checkpoint, fingerprint)
    if ckpt is None or not isinstance(ckpt.get("epoch"), int):
        return 0
    if resume_epoch is not None and ckpt["epoch"] != resume_epoch:
        return 0
    model.load_state_dict(ckpt["model"])
    if optimizer is not None and ckpt["optimizer"] is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt["scheduler"] is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    torch.set_rng_state(ckpt["rng_cpu"])
    if ckpt["rng_cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["rng_cuda"])
    return ckpt["epoch"]


def load_checkpoint(path: Path | None, fingerprint: str) -> dict | None:
    """The checkpoint at `path` if it belongs to this candidate and recipe, else None."""
    if path is None or not path.exists():
        return None
    try:
        # weights_only: the process of a candidate wrote this file.
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None  # a torn or foreign file: start over rather than fail
    return ckpt if isinstance(ckpt, dict) and ckpt.get("fingerprint") == fingerprint else None


def train_model(model: nn.Module, data, cfg: TrainConfig, device: torch.device, *,
                checkpoint: Path | None = None, fingerprint: str = "", compile: bool = False,
                resume_epoch: int | None = None, until_epoch: int | None = None, prm: dict | None = None,
                on_test_logits: Callable[[int, torch.Tensor], None] | None = None,
                on_epoch: Callable[[EpochMetrics], None] = lambda m: None) -> list[EpochMetrics]:
    """Train for cfg.epochs (or up to `until_epoch`), resuming from `checkpoint` when it matches `fingerprint`
    (and `resume_epoch`).

    `on_epoch(metrics)` is called for each epoch trained now (the returned list holds those too).
    With `on_test_logits(epoch, logits)` the test set is not scored here: its logits are handed
    out and the metrics' test fields stay None (the sandboxed child; `data.test_y` may be None).
    `compile=True` runs the steps through torch.compile. Only trusted code may ask for it: the
    sandboxed child forbids the subprocesses and native libraries that compilation needs.
    """
    model.to(device)
    channels_last = _use_channels_last(device, cfg)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    # The compiled wrapper runs the steps; `model` keeps the plain state dict for checkpoints.
    runner = torch.compile(model) if compile and cfg.loop == "fast" else model
    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    test_x = data.test_x.to(device)
    test_y = data.test_y.to(device) if on_test_logits is None else None
    steps_per_epoch = math.ceil(len(train_x) / cfg.batch_size)

    if cfg.loop == "contract":  # the model's own optimizer, with the prm its Net was built with
        model.train_setup(prm or {"lr": cfg.lr, "momentum": cfg.momentum, "dropout": cfg.dropout})
        optimizer, scheduler = getattr(model, "optimizer", None), None
        criterion = None
    else:
        optimizer = make_optimizer(model, cfg, device)
        scheduler = make_scheduler(optimizer, cfg, cfg.epochs * steps_per_epoch)
        criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    def train_one(generator: torch.Generator) -> tuple[float | None, float | None]:
        batches = _batches(train_x, train_y, cfg, generator, channels_last)
        if cfg.loop == "contract":
            model.learn(batches)
            return None, None
        return _train_epoch(runner, batches, optimizer, scheduler, criterion, cfg, device)

    def test(epoch: int) -> tuple[float, float] | None:
        # Part of the evaluation, so it counts in the epoch's seconds; it changes no weight.
        recalibrate_batchnorm(model, train_x, cfg, device)
        if on_test_logits is None:
            return evaluate(runner, test_x, test_y, cfg, device)
        on_test_logits(epoch, predict(runner, test_x, cfg, device))
        return None

    return run_epochs(model, optimizer, scheduler, cfg, device, len(train_x), train_one, test,
                      checkpoint=checkpoint, fingerprint=fingerprint, resume_epoch=resume_epoch,
                      until_epoch=until_epoch, on_epoch=on_epoch)


def run_epochs(model: nn.Module, optimizer, scheduler, cfg: TrainConfig, device: torch.device, train_size: int,
               train_one: Callable[[torch.Generator], tuple[float | None, float | None]],
               test: Callable[[int], tuple[float, float] | None], *, checkpoint: Path | None, fingerprint: str,
               resume_epoch: int | None = None, until_epoch: int | None = None,
               on_epoch: Callable[[EpochMetrics], None]) -> list[EpochMetrics]:
    """The epoch skeleton every trainer shares: resume, then per epoch train, time, test, checkpoint, report.

    `train_one(generator)` runs one epoch's steps drawing every shuffle and augmentation from
    `generator` (seeded per epoch, so a resumed run draws the same batches) and returns
    (train loss, train accuracy), either None where not measured. `test(epoch)` returns the task's
    (score, loss) on the test images, or None when it handed them out to be scored elsewhere.
    A non-finite loss ends the run with NonFiniteLoss. With `until_epoch` it stops after that epoch,
    the schedule still laid out over cfg.epochs, so a later call resumes it as if never paused.
    """
    start = resume_from_checkpoint(checkpoint, fingerprint, model, optimizer, scheduler, resume_epoch)
    last = min(cfg.epochs, until_epoch or cfg.epochs)
    results = []
    for epoch in range(start + 1, last + 1):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        generator = torch.Generator(device=device)
        generator.manual_seed(cfg.seed * 1000 + epoch)
        started = time.perf_counter()
        train_loss, train_accuracy = train_one(generator)
        if train_loss is not None and not math.isfinite(train_loss):
            raise NonFiniteLoss(f"training loss is {train_loss} in epoch {epoch}")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds = time.perf_counter() - started
        scored = test(epoch)
        test_score, test_loss = scored if scored is not None else (None, None)
        if scored is not None and not (math.isfinite(test_loss) and math.isfinite(test_score)):
            raise NonFiniteLoss(f"test loss is {test_loss} after epoch {epoch}")
        metrics = EpochMetrics(
            epoch=epoch, test_accuracy=test_score, test_loss=test_loss,
            train_loss=train_loss, train_accuracy=train_accuracy,
            seconds=time.perf_counter() - started,
            samples_per_second=train_size / max(train_seconds, 1e-9),
            peak_gpu_memory_kb=(torch.cuda.max_memory_allocated(device) / 1024 if device.type == "cuda" else None),
            peak_rss_kb=_peak_rss_kb(),
        )
        results.append(metrics)
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, scheduler, epoch, fingerprint)
        on_epoch(metrics)
    return results


def optimizer_step(model: nn.Module, loss: torch.Tensor, optimizer, scheduler, cfg: TrainConfig) -> None:
    """One step of every trainer: gradients of `loss`, optional clipping, the optimizer and schedule steps."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip, foreach=True)
    optimizer.step()
    scheduler.step()


def _train_epoch(model, batches, optimizer, scheduler, criterion, cfg: TrainConfig,
                 device: torch.device) -> tuple[float, float]:
    """One pass over the batches; sums stay on the device so the loop never waits for the GPU."""
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for xb, yb in batches:
        with autocast_for(device, cfg):
            out = model(xb)
            loss = criterion(out.float(), yb)
        optimizer_step(model, loss, optimizer, scheduler, cfg)
        loss_sum += loss.detach() * len(yb)
        correct += (out.detach().argmax(1) == yb).sum()
        seen += len(yb)
    return loss_sum.item() / seen, correct.item() / seen
