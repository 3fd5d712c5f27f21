"""The img-classification task in plain data: its name, its metric (accuracy) with LEMUR's code for it, its transform."""

from __future__ import annotations

TASK_CLASSIFICATION = "img-classification"
ACC_METRIC = "acc"
# Stored in LEMUR's metric table, and written as metric/acc.py by `lemur export`: LEMUR loads a metric
# file through its create_metric(); the driver's scorer computes the same share from the child's logits.
ACC_METRIC_CODE = '''import torch


class Accuracy:
    """Share of samples whose arg-max class is the label, accumulated over batches."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.correct = 0
        self.total = 0

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        predicted = outputs.reshape(-1, outputs.shape[-1]).argmax(dim=1)
        targets = targets.reshape(-1)
        self.correct += (predicted == targets).sum().item()
        self.total += targets.numel()

    def __call__(self, outputs, targets):
        self.update(outputs, targets)
        return self.correct, self.total

    def result(self):
        return self.correct / max(self.total, 1e-8)


def create_metric(out_shape=None):
    return Accuracy()
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
