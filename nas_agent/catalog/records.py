"""The values the catalog stores and names: model and epoch records, LEMUR names, trial ids, metric direction."""

from __future__ import annotations

import hashlib
import json
import re
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

    name: str                        # model_name(family, code), or the name an imported LEMUR model has
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
    profile: str = "strict"          # the policy profile it was validated under (reviewed: code people wrote)


@dataclass
class EpochRecord:
    """One finished epoch of one trial (one set of hyperparameters) of one model, as nas-agent trained it.

    `duration_s` is this epoch's seconds; the catalog stores LEMUR's `duration`, nanoseconds since
    the trial started (cumulative over its epochs).
    """

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
    uid: str | None = None           # the trial id; None derives it from prm (prm_uid)


def lemur_id(value) -> str:
    """LEMUR's `uuid4`: md5 of `str(value)` with every whitespace character removed.

    It is the id of a code row (nn, metric, transform: the code text) and of a stat row (the list
    of its values, see `stat_id`), so ids computed here and by LEMUR agree.
    """
    return hashlib.md5(re.sub(r"\s", "", str(value)).encode()).hexdigest()


def model_name(family: str, code: str) -> str:
    """The name a new model gets, in LEMUR's convention: ``<family>-<lemur_id(code)>`` (``FractalNet-1a2b…``)."""
    if not is_valid_family(family):
        raise ValueError(f"family must be 1-80 letters, digits and hyphens, not {family[:40]!r}")
    return f"{family}-{lemur_id(code)}"


def stat_id(transform, uid, task, dataset, metric, nn, epoch, duration, accuracy) -> str:
    """A stat row's id as LEMUR's save_stat makes it: `lemur_id` of the list of its values, in this order."""
    return lemur_id([transform, uid, task, dataset, metric, nn, epoch, duration, accuracy])


def prm_uid(prm: dict) -> str:
    """The trial id of a hyperparameter set: md5 of its canonical JSON (sorted keys)."""
    canonical = json.dumps(prm, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.md5(canonical.encode()).hexdigest()


# The origin of the reference network's rows: the baseline every leaderboard lists.
REFERENCE_ORIGIN = "reference"
