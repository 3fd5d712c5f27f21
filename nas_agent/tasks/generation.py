"""The img-generation task in plain data: its name, metric, output shape, and the bits/dim formula."""

from __future__ import annotations

import math

from nas_agent.tasks.classification import transform_code

TASK_GENERATION = "img-generation"
BPD_METRIC = "bpd"                    # bits per dimension: lower is better
GENERATION_OUT_SHAPE = (256,)         # out_shape of a generator: the values a sub-pixel can take

# Stored in LEMUR's metric table, like the classifiers' accuracy function.
BPD_METRIC_CODE = '''import math

import torch


def bpd(nll_nats: torch.Tensor, dims: int = 3 * 32 * 32) -> float:
    """Bits per dimension of a batch: mean negative log-likelihood (nats per image) / (dims * ln 2)."""
    return nll_nats.double().mean().item() / (dims * math.log(2))
'''


def is_generative(task: str) -> bool:
    """Whether `task` is scored by likelihood (its candidates' forward returns NLL), not accuracy."""
    return task == TASK_GENERATION


def bits_per_dim(nll_nats_sum: float, n_images: int, dims: int) -> float:
    """Bits per sub-pixel value from a summed negative log-likelihood in nats over `n_images`."""
    return nll_nats_sum / (max(n_images, 1) * dims * math.log(2))


def generation_transform(train) -> tuple[str, str]:
    """A generator's transform: the exact uint8 values (no crop, no normalisation), flipped when [train] flips."""
    steps = ["transforms.RandomHorizontalFlip()"] if train.flip else []
    return "_".join((["flip"] if train.flip else []) + ["uint8"]), transform_code(steps + ["transforms.PILToTensor()"])
