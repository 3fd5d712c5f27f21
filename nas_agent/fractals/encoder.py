"""Fixed image encoders for style statistics and the domain-gap measure.

A pretrained VGG-19 is used only when torchvision already has its weights on disk (nothing is
downloaded); otherwise a fixed random multi-scale convolutional encoder stands in. Random filters
are a known working basis for texture synthesis (Ustyuzhaninov et al., "Texture synthesis using
shallow convolutional networks with random filters", 2016). Every caller is told which one it got.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


class RandomEncoder(nn.Module):
    """Random filters at four scales (3, 5, 7, 11 px) and two stride-2 stages; fixed by `seed`.

    forward(x in 0..1, N x 3 x H x W) returns the feature maps of the three stages.
    """

    def __init__(self, seed: int = 0, channels: int = 16):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.bank = nn.ModuleList()
        for k in (3, 5, 7, 11):
            conv = nn.Conv2d(3, channels, k, padding=k // 2)
            self._init(conv, g)
            self.bank.append(conv)
        width = 4 * channels
        self.down1 = nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.down2 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self._init(self.down1, g)
        self._init(self.down2, g)
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def _init(conv: nn.Conv2d, g: torch.Generator) -> None:
        fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
        with torch.no_grad():
            # He scaling keeps activations of the same order through the ReLUs.
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * math.sqrt(2.0 / fan_in))
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=g) * 0.1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - 0.5) / 0.25
        f1 = torch.cat([F.relu(conv(x)) for conv in self.bank], dim=1)
        f2 = F.relu(self.down1(f1))
        f3 = F.relu(self.down2(f2))
        return [f1, f2, f3]


class VGGEncoder(nn.Module):
    """VGG-19 features relu1_1, relu2_1, relu3_1 of ImageNet weights (inputs upsampled to 64 px)."""

    _TAPS = (1, 6, 11)

    def __init__(self, features: nn.Module):
        super().__init__()
        self.features = features[: self._TAPS[-1] + 1]
        self.requires_grad_(False)
        self.eval()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[-1] < 64:
            x = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self._TAPS:
                taps.append(x)
        return taps


def cached_vgg_weights() -> Path | None:
    """The VGG-19 weights file if torchvision's download cache already holds it, else None."""
    from torchvision.models import VGG19_Weights

    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(VGG19_Weights.IMAGENET1K_V1.url).name
    return path if path.is_file() else None


def make_encoder(kind: str = "auto", seed: int = 0) -> tuple[nn.Module, str]:
    """(encoder, description). kind: auto (VGG-19 if cached, else random), vgg, or random."""
    if kind not in ("auto", "vgg", "random"):
        raise ValueError(f"encoder must be auto, vgg or random, not {kind!r}")
    weights = cached_vgg_weights() if kind != "random" else None
    if weights is not None:
        from torchvision.models import vgg19

        model = vgg19()
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return VGGEncoder(model.features), f"pretrained VGG-19 ({weights.name})"
    if kind == "vgg":
        raise ValueError("no cached VGG-19 weights in torchvision's cache "
                         f"({Path(torch.hub.get_dir()) / 'checkpoints'}); use --encoder random or auto")
    return RandomEncoder(seed), f"random multi-scale conv encoder (seed {seed}; no cached VGG-19 weights)"
