"""The img-classification task in plain data: its name and its metric (accuracy) with LEMUR's code for it."""

from __future__ import annotations

TASK_CLASSIFICATION = "img-classification"
ACC_METRIC = "acc"
# Stored in LEMUR's metric table: what the driver computes from the child's test logits.
ACC_METRIC_CODE = '''import torch


def accuracy(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of samples whose arg-max class is the label."""
    return (outputs.argmax(1) == labels).float().mean().item()
'''
