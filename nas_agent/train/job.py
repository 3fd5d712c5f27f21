"""Plain data passed between the driver and a training child process."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


CANDIDATE_FILE = "candidate.py"  # in the sandbox folder, next to the job file


@dataclass
class TrainJob:
    """Everything the child needs: the candidate file, the recipe, the data cache, the limits."""

    name: str
    source: str                      # the candidate's code; the sandbox writes it to CANDIDATE_FILE
    dataset_cache: str               # uint8 tensor cache written by nas_agent.data (the child gets a view of it)
    train: dict[str, Any]            # TrainConfig as a dict
    train_subset: int = 0
    test_subset: int = 0
    device: str = "auto"
    checkpoint: str | None = None
    fingerprint: str = ""
    seconds: float = 3600.0
    memory_mb: int = 16384
    threads: int = 0
    in_shape: tuple[int, ...] = (1, 3, 32, 32)
    out_shape: tuple[int, ...] = (10,)
    task: str = "img-classification"  # img-generation: forward returns NLL, trained by nas_agent.train.generative
    # Weights to start from (a checkpoint of train_model): tensors whose name and shape match are loaded,
    # the rest (e.g. a classifier head of another class count) keep their fresh initialisation.
    init_from: str | None = None
    # The last epoch the catalog holds for this trial: a checkpoint of that epoch is resumed, no other.
    resume_epoch: int | None = None
    # Train only up to this epoch now (successive halving pauses a candidate there; a promotion resumes
    # it from the checkpoint). The schedule still spans train["epochs"]. None: to the last epoch.
    until_epoch: int | None = None
    # Generators: the driver's probe images (nas_agent.train.score.Probes as a dict), checked each epoch.
    probes: dict[str, Any] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_file(cls, path: str | Path) -> "TrainJob":
        data = json.loads(Path(path).read_text())
        data["in_shape"], data["out_shape"] = tuple(data["in_shape"]), tuple(data["out_shape"])
        return cls(**data)


@dataclass
class TrainOutcome:
    """How a child process ended: done with its epochs, or failed with a reason."""

    name: str
    ok: bool
    reason: str = ""
    n_params: int | None = None
    epochs: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    log_tail: str = ""
