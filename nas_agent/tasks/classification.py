"""The img-classification task in plain data: its name, its metric (accuracy) with LEMUR's code for it, its transform."""

from __future__ import annotations

TASK_CLASSIFICATION = "img-classification"
ACC_METRIC = "acc"
# Stored in LEMUR's metric table: what the driver computes from the child's test logits.
ACC_METRIC_CODE = '''import torch


def accuracy(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of samples whose arg-max class is the label."""
    return (outputs.argmax(1) == labels).float().mean().item()
'''


def classification_transform(train) -> tuple[str, str]:
    """LEMUR transform name and the equivalent torchvision code of a [train] section's augmentation."""
    parts, steps = [], []
    if train.crop_padding:
        parts.append(f"crop{train.crop_padding}")
        steps.append(f"transforms.RandomCrop(32, padding={train.crop_padding}, padding_mode='reflect')")
    if train.flip:
        parts.append("flip")
        steps.append("transforms.RandomHorizontalFlip()")
    parts.append("norm")
    steps += ["transforms.ToTensor()", "transforms.Normalize(*norm)"]
    return "_".join(parts), transform_code(steps)


def transform_code(steps: list[str]) -> str:
    """A LEMUR transform file: `transform(norm)` composing the torchvision `steps`."""
    body = ",\n        ".join(steps)
    return ("import torchvision.transforms as transforms\n\n\n"
            f"def transform(norm):\n    return transforms.Compose([\n        {body},\n    ])\n")
