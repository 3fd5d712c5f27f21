"""Kernel Inception Distance (Binkowski et al., 2018) on a fixed encoder: the real-synthetic domain gap.

KID is the unbiased squared MMD between two feature sets under the cubic polynomial kernel
k(a, b) = (a.b / d + 1)^3, averaged over random subsets (mean and std reported). Features here are
the per-channel mean and standard deviation of each stage of a fixed encoder (pretrained VGG-19
if cached, else a fixed random multi-scale conv encoder with its own seed), standardised by the
real set's statistics so every dimension counts alike. Lower is closer; about 0 for two samples
of the same distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

KID_ENCODER_SEED = 1234   # not the stylizer's seed: the measure must not be what `gram` optimised


@dataclass(frozen=True)
class KID:
    mean: float
    std: float
    subsets: int
    subset_size: int

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.std:.4f}"


@torch.no_grad()
def features(images: torch.Tensor, encoder: nn.Module, device: torch.device, batch: int = 256) -> torch.Tensor:
    """Pooled features of uint8 images (N x 3 x H x W): per-channel mean and std of every stage, N x D."""
    out = []
    for start in range(0, len(images), batch):
        x = images[start:start + batch].to(device).float() / 255
        pooled = []
        for f in encoder(x):
            flat = f.flatten(2)
            pooled += [flat.mean(-1), flat.std(-1)]
        out.append(torch.cat(pooled, dim=1).cpu())
    return torch.cat(out).double()


def _poly(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a @ b.T / a.shape[1] + 1) ** 3


def kid(real: torch.Tensor, fake: torch.Tensor, subsets: int = 20, subset_size: int = 500, seed: int = 0) -> KID:
    """KID between two feature sets (N x D, M x D), over `subsets` random subsets of equal size."""
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError("KID needs at least 2 images in each set")
    mean, std = real.mean(0), real.std(0).clamp_min(1e-8)
    real, fake = (real - mean) / std, (fake - mean) / std
    g = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        a = real[torch.randperm(len(real), generator=g)[:size]]
        b = fake[torch.randperm(len(fake), generator=g)[:size]]
        kaa, kbb, kab = _poly(a, a), _poly(b, b), _poly(a, b)
        off = size * (size - 1)
        mmd = (kaa.sum() - kaa.diagonal().sum()) / off + (kbb.sum() - kbb.diagonal().sum()) / off \
            - 2 * kab.mean()
        values.append(float(mmd))
    t = torch.tensor(values)
    return KID(float(t.mean()), float(t.std()) if len(values) > 1 else 0.0, subsets, size)


def kid_encoder(kind: str = "auto") -> tuple[nn.Module, str]:
    """The fixed encoder KID is measured on, and its description."""
    from nas_agent.fractals.encoder import make_encoder

    return make_encoder(kind, seed=KID_ENCODER_SEED)


def domain_gap(real: torch.Tensor, sets: dict[str, torch.Tensor], device: torch.device | str = "cpu",
               encoder: str = "auto", seed: int = 0, subset_size: int = 500) -> tuple[dict[str, KID], str]:
    """KID of each named uint8 image set against the real images, on one fixed encoder."""
    device = torch.device(device)
    model, description = kid_encoder(encoder)
    model = model.to(device)
    real_f = features(real, model, device)
    return {name: kid(real_f, features(x, model, device), seed=seed, subset_size=subset_size)
            for name, x in sets.items()}, description
