"""The values the catalog stores and names: model and epoch records, LEMUR names, trial ids, metric direction."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from nas_agent.space.template import is_valid_family
from nas_agent.tasks import TASK_CLASSIFICATION, TASKS, lower_is_better

# Metrics (stat.metric) where a lower value is better (the SQL ranking needs them as a list).
LOWER_IS_BETTER_METRICS = tuple(task.metric for task in TASKS.values() if task.lower_is_better)

MODEL_STATUSES = ("queued", "running", "done", "failed")
RUN_STATUSES = ("running", "finished", "interrupted", "failed")
EVENT_KINDS = ("proposed", "rejected", "queued", "running", "done", "failed", "resumed")


@dataclass
class ModelRecord:
    """A validated candidate about to enter the catalog."""

    name: str
    code: str
    family: str
    task: str
    dataset: str
    metric: str
    code_hash: str
    template_params: dict
    parent: str | None
    origin: str
    struct_hash: str | None = None
    n_params: int | None = None


@dataclass
class EpochRecord:
    """One finished epoch of one trial (one set of hyperparameters) of one model."""

    nn: str
    epoch: int
    accuracy: float
    duration_s: float
    prm: dict
    transform: str
    metric: str
    task: str
    dataset: str
    train_loss: float | None = None
    test_loss: float | None = None
    train_accuracy: float | None = None
    samples_per_second: float | None = None
    epoch_max: int | None = None
    gpu_type: str | None = None
    gpu_memory_kb: float | None = None
    occupied_ram_kb: float | None = None
    # The trial id; None derives it from prm. An import keeps the uid its source gave the trial.
    uid: str | None = None


def lemur_name(task: str, dataset: str, metric: str, family: str, code_hash: str) -> str:
    """LEMUR-style model name, e.g. ``img-classification_cifar-10_acc_FractalNet-1a2b3c4d``."""
    # LEMUR splits names on "_", so the parts before the family must not contain one.
    for part in (task, dataset, metric):
        if not part or "_" in part:
            raise ValueError(f"task, dataset and metric must be non-empty and free of '_': {part!r}")
    if not is_valid_family(family) or len(code_hash) < 8:
        raise ValueError(f"family must be 1-80 letters, digits and hyphens (found {family[:40]!r}) "
                         "and code_hash at least 8 characters")
    return f"{task}_{dataset}_{metric}_{family}-{code_hash[:8]}"


def prm_uid(prm: dict) -> str:
    """The trial id of a hyperparameter set: md5 of its canonical JSON (sorted keys)."""
    canonical = json.dumps(prm, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.md5(canonical.encode()).hexdigest()


# The origin of the reference network's rows: the baseline every leaderboard lists.
REFERENCE_ORIGIN = "reference"
