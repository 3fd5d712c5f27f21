"""Reverse stylization: move synthetic images toward the look of a few hundred real ones.

Each synthetic image is paired (seeded) with one real style image. Two methods, both batched:

- `gram`: Gatys-style optimisation of the pixels, matching the Gram matrices of the style image's
  features while keeping the synthetic image's own deepest features (its structure);
- `fast`: one pass, no optimisation: the Fourier amplitude spectrum is blended toward the style
  image's (phase, where the structure lives, is kept), then the colour mean and covariance are
  matched to the style image's.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn as nn

METHODS = ("gram", "fast")


@dataclass(frozen=True)
class StylizeSettings:
    method: str = "fast"
    seed: int = 0
    # gram
    steps: int = 40
    lr: float = 0.03
    content_weight: float = 0.5         # relative to the (normalised) style loss
    encoder: str = "auto"               # auto | vgg | random
    # fast
    amplitude: float = 0.5              # 0 keeps the synthetic spectrum, 1 takes the style image's
    colour: bool = True                 # match the colour mean and covariance

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"--method must be gram or fast, not {self.method!r}")
        if self.steps < 1 or self.lr <= 0 or self.content_weight < 0 or not 0 <= self.amplitude <= 1:
            raise ValueError("steps must be >= 1, lr > 0, content weight >= 0, amplitude in [0, 1]")


@dataclass
class StylizeStats:
    images: int = 0
    seconds: float = 0.0
    encoder: str | None = None

    @property
    def images_per_second(self) -> float:
        return self.images / max(self.seconds, 1e-9)

    def to_dict(self) -> dict:
        return {**asdict(self), "images_per_second": self.images_per_second}


def pair_styles(n: int, n_styles: int, seed: int) -> torch.Tensor:
    """Which style image each of n synthetic images gets: every style used evenly, in seeded order."""
    g = torch.Generator().manual_seed(seed)
    order = torch.cat([torch.randperm(n_styles, generator=g) for _ in range(-(-n // n_styles))])
    return order[:n]


def gram(f: torch.Tensor) -> torch.Tensor:
    """Gram matrices of N x C x H x W features, normalised by H*W: N x C x C."""
    flat = f.flatten(2)
    return flat @ flat.transpose(1, 2) / flat.shape[-1]


def stylize_gram_batch(x: torch.Tensor, style: torch.Tensor, encoder: nn.Module, settings: StylizeSettings
                       ) -> torch.Tensor:
    """Optimise float images x (0..1) so their feature Gram matrices match `style`'s (same shape)."""
    with torch.no_grad():
        target_grams = [gram(f) for f in encoder(style)]
        content = encoder(x)[-1]
        # Normalise every term by the target's own size, so no layer dominates by scale alone.
        gram_scale = [g.pow(2).mean(dim=(1, 2)).clamp_min(1e-8) for g in target_grams]
        content_scale = content.pow(2).mean(dim=(1, 2, 3)).clamp_min(1e-8)
    pixels = x.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([pixels], lr=settings.lr)
    for _ in range(settings.steps):
        feats = encoder(pixels)
        loss = sum(((gram(f) - t).pow(2).mean(dim=(1, 2)) / s).sum()
                   for f, t, s in zip(feats, target_grams, gram_scale))
        loss = loss + settings.content_weight * ((feats[-1] - content).pow(2).mean(dim=(1, 2, 3))
                                                 / content_scale).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            pixels.clamp_(0, 1)
    return pixels.detach()


def stylize_fast_batch(x: torch.Tensor, style: torch.Tensor, settings: StylizeSettings) -> torch.Tensor:
    """Fourier-amplitude blend and colour mean/covariance transfer of float images x (0..1) toward `style`."""
    out = x
    if settings.amplitude > 0:
        spec_x, spec_s = torch.fft.fft2(x), torch.fft.fft2(style)
        # Geometric blend of amplitudes: real images' 1/f fall-off without their structure (phase).
        amp = spec_x.abs().clamp_min(1e-8).log() * (1 - settings.amplitude) + \
            spec_s.abs().clamp_min(1e-8).log() * settings.amplitude
        out = torch.fft.ifft2(torch.polar(amp.exp(), spec_x.angle())).real
    if settings.colour:
        out = match_colour(out, style)
    return out.clamp(0, 1)


def match_colour(x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """Give each image of x its style image's per-image colour mean and 3x3 covariance (whiten, colour)."""
    n = x.shape[0]
    px, ps = x.flatten(2), style.flatten(2)                      # N x 3 x P
    mx, ms = px.mean(-1, keepdim=True), ps.mean(-1, keepdim=True)
    cx, cs = px - mx, ps - ms
    eye = torch.eye(3, device=x.device).expand(n, 3, 3) * 1e-4    # flat images have singular covariances
    cov_x = cx @ cx.transpose(1, 2) / px.shape[-1] + eye
    cov_s = cs @ cs.transpose(1, 2) / ps.shape[-1] + eye
    out = _sqrtm(cov_s) @ _sqrtm(cov_x, inverse=True) @ cx + ms
    return out.view_as(x)


def _sqrtm(c: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(c)
    values = values.clamp_min(1e-8).pow(-0.5 if inverse else 0.5)
    return vectors @ torch.diag_embed(values) @ vectors.transpose(1, 2)


def stylize(images: torch.Tensor, styles: torch.Tensor, settings: StylizeSettings, device: torch.device,
            batch: int = 128, on_progress: Callable[[int, int], None] = lambda done, total: None,
            offset: int = 0) -> tuple[torch.Tensor, StylizeStats]:
    """Stylize uint8 images (N x 3 x H x W) toward uint8 style images; returns uint8 images and stats.

    `offset` shifts the style pairing, so two splits of one dataset do not reuse the same pairs.
    """
    stats = StylizeStats()
    encoder = None
    if settings.method == "gram":
        from nas_agent.fractals.encoder import make_encoder

        encoder, stats.encoder = make_encoder(settings.encoder, seed=settings.seed)
        encoder = encoder.to(device)
    pairs = pair_styles(offset + len(images), len(styles), settings.seed)[offset:]
    started = time.perf_counter()
    out = []
    for start in range(0, len(images), batch):
        x = images[start:start + batch].to(device).float() / 255
        s = styles[pairs[start:start + batch]].to(device).float() / 255
        if encoder is not None:
            y = stylize_gram_batch(x, s, encoder, settings)
        else:
            y = stylize_fast_batch(x, s, settings)
        out.append((y * 255).round().clamp(0, 255).to(torch.uint8).cpu())
        on_progress(min(start + batch, len(images)), len(images))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    stats.images, stats.seconds = len(images), time.perf_counter() - started
    return torch.cat(out) if out else images.clone(), stats
