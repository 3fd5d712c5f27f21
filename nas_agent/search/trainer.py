"""Train candidate files through sandboxed children and record everything in the catalog.

The driver is the catalog's only writer: children stream events back, this module turns
them into catalog rows as they arrive, so a killed driver loses at most the epoch in flight.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from nas_agent.catalog import Catalog, EpochRecord, ModelRecord, model_name, prm_uid
from nas_agent.config import Config
from nas_agent.errors import UserError
from nas_agent.candidate import Candidate
from nas_agent.space.template import TemplateError, family_from_stem, read_task
from nas_agent.tasks import CLASSIFICATION, task_of
from nas_agent.train.job import TrainJob, TrainOutcome
from nas_agent.validate import Validation, Validator, Verdict

METRIC, METRIC_CODE = CLASSIFICATION.metric, CLASSIFICATION.metric_code   # what pre-training variants record


def metric_of(task: str) -> tuple[str, str]:
    """The LEMUR metric name and code a task's candidates are scored by: acc, or bpd for generators."""
    found = task_of(task)
    return found.metric, found.metric_code


class CandidateError(UserError, ValueError):
    """A candidate file that cannot be registered; carries the verdict that rejected it."""

    def __init__(self, path: Path, verdict: Verdict):
        super().__init__(f"{path}: {verdict}")
        self.verdict = verdict


@dataclass(frozen=True)
class CandidateFile:
    """A validated candidate (or a trusted template rendering) ready to be catalogued, and where it came from."""

    path: Path
    candidate: Candidate
    family: str
    struct_hash: str | None = None
    n_params: int | None = None
    profile: str = "strict"
    known_as: str | None = None      # the catalog already holds this very code under this name

    @classmethod
    def of(cls, validation: Validation, path: Path, default_family: str) -> CandidateFile:
        """The registrable form of an accepted validation (the family the file declares, else `default_family`)."""
        return cls(path, validation.candidate, validation.candidate.family_or(default_family),
                   struct_hash=validation.struct_hash, n_params=validation.n_params, profile=validation.profile,
                   known_as=validation.known_as)

    @property
    def source(self) -> str:
        return self.candidate.source

    @property
    def code_hash(self) -> str:
        return self.candidate.code_hash

    @property
    def template_params(self) -> dict:
        return dict(self.candidate.params)

    def name(self) -> str:
        """Its catalog name: the one it is known as, else LEMUR's convention `<family>-<lemur_id(code)>`."""
        return self.known_as or model_name(self.family, self.source)


def read_source(path: str | Path) -> str:
    """The text of a candidate file; CandidateError (stage parse) when it cannot be read."""
    path = Path(path)
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CandidateError(path, Verdict.reject("parse", f"cannot read file: {exc}")) from None


def _declared_task(source: str) -> str | None:
    """The file's TASK constant; None when it does not parse (the validator then says why)."""
    try:
        return read_task(source)
    except TemplateError:
        return None


def read_candidate(path: str | Path, validator: Validator, task: str | None = None) -> CandidateFile:
    """Read and validate a candidate file; raise CandidateError with the verdict that rejected it.

    With `task`, a file that declares another task (module constant TASK) is rejected first.
    """
    path = Path(path)
    source = read_source(path)
    # Before validation, whose smoke run would feed the file the other task's inputs.
    declared = _declared_task(source) if task is not None else None
    if declared is not None and declared != task:
        raise CandidateError(path, Verdict.reject(
            "contract", f"the file declares TASK {declared!r} but the run's task is {task!r}; "
                        f"pass --task {declared}"))
    result = validator.validate(source, str(path))
    if not result.ok:
        raise CandidateError(path, result.verdict)
    return CandidateFile.of(result, path, default_family=family_from_stem(path.stem))


def transform_of(config: Config) -> tuple[str, str]:
    """LEMUR transform name and the equivalent torchvision code of the run's augmentation (the task's own)."""
    return task_of(config.task).transform_of(config.train)


def trial_prm(config: Config) -> dict:
    """The hyperparameters of a trial, as LEMUR's prm table stores them."""
    t = config.train
    return {
        "lr": t.lr, "momentum": t.momentum, "dropout": t.dropout, "batch": t.batch_size,
        "epoch": t.epochs, "transform": transform_of(config)[0], "optimizer": t.optimizer,
        "schedule": t.schedule, "weight_decay": t.weight_decay, "label_smoothing": t.label_smoothing,
        "seed": t.seed, "train_subset": config.data.train_subset, "test_subset": config.data.test_subset,
        "bn_recalibration": t.bn_recalibration,
    }


def register(catalog: Catalog, candidate: CandidateFile, config: Config, *, origin: str,
             parent: str | None = None, run_id: str | None = None) -> str:
    """Add the candidate to the catalog (queued) unless it is there already; return its name.

    Code the catalog holds already (an imported LEMUR model trained again) keeps its name: the
    training becomes another trial of that model.
    """
    name = candidate.name()
    if candidate.known_as is not None:
        return name
    catalog.add_model(ModelRecord(
        name=name, code=candidate.source, family=candidate.family, task=config.task,
        dataset=config.dataset, metric=metric_of(config.task)[0], code_hash=candidate.code_hash,
        template_params=candidate.template_params, parent=parent, origin=origin,
        struct_hash=candidate.struct_hash, n_params=candidate.n_params, profile=candidate.profile), run_id=run_id)
    return name


@dataclass
class SweepSummary:
    trained: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)     # stopped early on request (pruned trials)


@dataclass(frozen=True)
class TrainRequest:
    """One training of a catalogued model: its name, and recipe changes for this trial (HPO) if any.

    `train` overrides keys of the run's [train] section; a request with overrides is a
    separate LEMUR trial (its own prm rows and checkpoint) of the same model.
    """

    name: str
    train: tuple[tuple[str, object], ...] = ()
    until: int | None = None      # train only up to this epoch now (successive halving); not part of the key

    @classmethod
    def of(cls, name: str, train: dict | None = None, until: int | None = None) -> TrainRequest:
        return cls(name, tuple(sorted((train or {}).items())), until)

    @property
    def key(self) -> str:
        """The name, plus a short digest of the overrides when there are any."""
        if not self.train:
            return self.name
        return f"{self.name}~{hashlib.sha256(repr(self.train).encode()).hexdigest()[:8]}"


def run_dir_of(config: Config) -> Path:
    """Checkpoints and sandboxes live beside the catalog."""
    return Path(config.catalog).resolve().parent


def job_folder(root: Path, key: str) -> Path:
    """`root/key`, refusing a key that is not one plain folder name.

    Keys are model names, and a name carries the candidate's FAMILY: the contract already
    refuses any that is not letters, digits and hyphens; this is the second wall, at the join.
    """
    if not key or key in (".", "..") or any(c in key for c in "/\\\0"):
        raise ValueError(f"not a job folder name: {key[:80]!r}")
    return root / key


def checkpoint_of(config: Config, key: str) -> Path:
    """The checkpoint of one training (a TrainRequest key), in a folder of its own: no other job can see it."""
    return job_folder(run_dir_of(config) / "checkpoints", key) / "checkpoint.pt"


def _fingerprint(model: dict, train: dict, config: Config) -> str:
    recipe = json.dumps({"code": model["code_hash"], "train": train,
                         "data": [config.data.train_subset, config.data.test_subset]}, sort_keys=True)
    return hashlib.sha256(recipe.encode()).hexdigest()


class Trainer:
    """Trains catalog candidates through an executor, `executor.slots` at a time, recording as results arrive.

    `on_progress(key, event)` sees every event; `should_stop(request, event)` is asked after each
    recorded epoch and may stop that training early (the outcome is then "stopped", not failed).
    """

    def __init__(self, catalog: Catalog, config: Config, dataset_cache: Path, *, run_id: str | None = None,
                 jobs: int = 1, executor=None, on_progress: Callable[[str, dict], None] = lambda key, event: None,
                 should_stop: Callable[[TrainRequest, dict], bool] = lambda request, event: False):
        from nas_agent.search.executors import LocalExecutor

        self.catalog, self.config, self.dataset_cache = catalog, config, Path(dataset_cache)
        self.executor = executor or LocalExecutor(config.device, workers=jobs)
        self.run_id, self.on_progress, self.should_stop = run_id, on_progress, should_stop
        self.transform, transform_code = transform_of(config)
        catalog.register_transform(self.transform, transform_code)
        self.metric, metric_code = metric_of(config.task)
        catalog.register_metric(self.metric, metric_code)
        self.cancel = threading.Event()

    def recipe(self, request: TrainRequest) -> dict:
        """The [train] section this request trains with."""
        return {**self.config.to_dict()["train"], **dict(request.train)}

    def prm(self, request: TrainRequest) -> dict:
        """The LEMUR hyperparameters of the request's trial."""
        return trial_prm(self.config.with_overrides({f"train.{k}": v for k, v in request.train}))

    def _job(self, request: TrainRequest) -> TrainJob:
        model = self.catalog.get_model(request.name)
        threads = self.config.limits.threads or max(1, (os.cpu_count() or 1) // self.executor.slots)
        train = self.recipe(request)
        trial = prm_uid(self.prm(request))
        # Resume trusts the catalog: the epochs it holds for this trial, not what a checkpoint claims.
        recorded = max((row["epoch"] for row in self.catalog.epochs(request.name) if row["prm"] == trial), default=0)
        return TrainJob(
            name=request.name, source=model["code"], dataset_cache=str(self.dataset_cache),
            train=train, train_subset=self.config.data.train_subset,
            test_subset=self.config.data.test_subset, device=self.config.device,
            checkpoint=str(checkpoint_of(self.config, request.key)), resume_epoch=recorded, until_epoch=request.until,
            fingerprint=_fingerprint(model, train, self.config),
            seconds=self.config.limits.seconds, memory_mb=self.config.limits.memory_mb, threads=threads,
            task=self.config.task, out_shape=task_of(self.config.task).out_shape or (10,))

    def _record_epoch(self, request: TrainRequest, event: dict, gpu: str | None) -> None:
        self.catalog.record_epoch(EpochRecord(
            nn=request.name, epoch=event["epoch"], accuracy=event["test_accuracy"], duration_s=event["seconds"],
            prm=self.prm(request), transform=self.transform, metric=self.metric, task=self.config.task,
            dataset=self.config.dataset, train_loss=event.get("train_loss"), test_loss=event.get("test_loss"),
            train_accuracy=event.get("train_accuracy"), samples_per_second=event.get("samples_per_second"),
            epoch_max=self.recipe(request)["epochs"], gpu_type=gpu, gpu_memory_kb=event.get("peak_gpu_memory_kb"),
            occupied_ram_kb=event.get("peak_rss_kb")))

    def train(self, requests: Iterable[str | TrainRequest]) -> SweepSummary:
        """Train each request (a model name or a TrainRequest); failures are recorded and the others go on."""
        requests = [r if isinstance(r, TrainRequest) else TrainRequest(r) for r in requests]
        summary = SweepSummary()
        inbox: queue.Queue = queue.Queue()
        run_dir = run_dir_of(self.config)
        stops = {r.key: threading.Event() for r in requests}

        def work(request: TrainRequest, job: TrainJob) -> None:
            key = request.key
            if self.cancel.is_set():
                inbox.put((request, {"event": "cancelled"}))
                return
            inbox.put((request, {"event": "launch"}))
            try:  # stops[key] is set by should_stop, or for all jobs when the run is cancelled
                outcome = self.executor.run(job, job_folder(run_dir / "sandbox", key),
                                            lambda event: inbox.put((request, event)), stops[key])
            except Exception as exc:  # the executor itself failed (disk full, fork failed, worker lost)
                outcome = TrainOutcome(name=request.name, ok=False, reason=f"executor error: {exc}")
            inbox.put((request, {"event": "outcome", "outcome": outcome}))

        gpus: dict[str, str | None] = {}
        with ThreadPoolExecutor(max_workers=self.executor.slots) as pool:
            for request in requests:
                pool.submit(work, request, self._job(request))
            remaining = len(requests)
            try:
                while remaining:
                    request, event = inbox.get()
                    remaining -= self._handle(request, event, gpus, summary, stops)
            except KeyboardInterrupt:
                self._cancel_all(stops)
                while remaining:  # children are being killed; record how each one ended
                    request, event = inbox.get()
                    remaining -= self._handle(request, event, gpus, summary, stops)
                raise
            finally:
                self._cancel_all(stops)
        self.cancel.clear()
        return summary

    def _cancel_all(self, stops: dict) -> None:
        self.cancel.set()
        for stop in stops.values():
            stop.set()

    def _handle(self, request: TrainRequest, event: dict, gpus: dict, summary: SweepSummary, stops: dict) -> int:
        """Record one event; return 1 when it ends that request's job."""
        kind, name, trial = event.get("event"), request.name, bool(request.train)
        self.on_progress(request.key, event)
        if kind == "launch" and not trial:
            previous = self.catalog.get_model(name)["status"]
            self.catalog.set_status(name, "running", run_id=self.run_id,
                                    reason="resumed after an interrupted run" if previous == "running" else None)
        elif kind == "started":
            gpus[request.key] = event.get("gpu")
            self.catalog.set_model_facts(name, n_params=event.get("n_params"))
        elif kind == "epoch":
            self._record_epoch(request, event, gpus.get(request.key))
            if self.should_stop(request, event):
                stops[request.key].set()
        elif kind == "cancelled":
            summary.interrupted.append(request.key)
            return 1
        elif kind == "outcome":
            outcome: TrainOutcome = event["outcome"]
            stopped = stops[request.key].is_set() and not self.cancel.is_set()
            if outcome.ok or (stopped and outcome.reason.startswith("interrupted")):
                (summary.stopped if not outcome.ok else summary.trained).append(request.key)
                if not trial:
                    reason = None if outcome.ok else "stopped early"
                    if outcome.ok and request.until is not None and request.until < self.recipe(request)["epochs"]:
                        reason = f"paused after epoch {request.until} (successive halving)"
                    self.catalog.set_status(name, "done", run_id=self.run_id, reason=reason)
            elif outcome.reason.startswith("interrupted"):
                if not trial:
                    self.catalog.set_status(name, "queued", reason=outcome.reason, run_id=self.run_id)
                summary.interrupted.append(request.key)
            else:
                if not trial:
                    self.catalog.set_status(name, "failed", reason=outcome.reason, stage="train", run_id=self.run_id)
                summary.failed.append(request.key)
            return 1
        return 0
