"""Pre-train a catalogued candidate on a synthetic dataset, fine-tune it on CIFAR-10, record both phases.

Both phases run the candidate's code only in the sandboxed child (nas_agent.train.sandbox and
worker): the pre-training child writes a checkpoint, the fine-tuning child starts from its tensors
(those whose names and shapes match: a classifier head for K fractal classes is left fresh).
The fine-tuned epochs are a LEMUR trial of the model of their own (the prm row names the variant),
and the `pretrain_variant` table says how that trial was pre-trained, so scratch, fractal and
stylized-fractal trials of the same architecture sit side by side.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from nas_agent.catalog import Catalog, CatalogError, EpochRecord
from nas_agent.catalog.records import prm_uid
from nas_agent.config import Config
from nas_agent.fractals.dataset import SyntheticDataset, read_dataset
from nas_agent.search.trainer import METRIC, METRIC_CODE, run_dir_of, transform_of, trial_prm
from nas_agent.train.job import TrainJob, TrainOutcome
from nas_agent.train.sandbox import run_job

SCRATCH = "scratch"


@dataclass(frozen=True)
class Variant:
    """What a model is pre-trained on before fine-tuning: nothing (scratch) or a synthetic dataset."""

    label: str
    dataset: SyntheticDataset | None = None

    @classmethod
    def of(cls, source: str | os.PathLike | None) -> "Variant":
        """`scratch` (or None) for no pre-training, else a dataset folder made by `nas-agent fractals`."""
        if source is None or str(source) == SCRATCH:
            return cls(SCRATCH)
        dataset = read_dataset(source)
        return cls(dataset.variant, dataset)


@dataclass
class VariantResult:
    name: str
    variant: str
    prm: str                                    # the fine-tuning trial's uid
    ok: bool
    reason: str = ""
    pretrain_accuracy: float | None = None
    accuracy: float | None = None               # best fine-tuned test accuracy
    final_accuracy: float | None = None
    epochs: list[dict] = field(default_factory=list)
    skipped: bool = False                       # recorded by an earlier run: nothing trained


def _digest(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class Pretrainer:
    """Runs pre-train -> fine-tune variants of catalogued models; the driver side (it only writes the catalog).

    `on_event(phase, event)` sees every event of both children (phase "pretrain" or "finetune").
    """

    def __init__(self, catalog: Catalog, config: Config, cifar_cache: Path, *, run_id: str | None = None,
                 executor=None, on_event: Callable[[str, dict], None] = lambda phase, event: None):
        self.catalog, self.config, self.cifar_cache = catalog, config, Path(cifar_cache)
        self.run_id, self.executor, self.on_event = run_id, executor, on_event
        self.finetune = finetune_config(config)
        self.transform, transform_code = transform_of(self.finetune)
        catalog.register_transform(self.transform, transform_code)
        catalog.register_metric(METRIC, METRIC_CODE)
        self.cancel = threading.Event()

    def prm(self, variant: Variant) -> dict:
        """The fine-tuning trial's hyperparameters: the recipe plus what it was pre-trained on."""
        pre = self.config.pretrain
        ds = variant.dataset
        return {**trial_prm(self.finetune), "pretrain": variant.label,
                "pretrain_data": ds.hash[:16] if ds else "", "pretrain_epochs": pre.epochs if ds else 0,
                "pretrain_stylize": (ds.stylize or "none") if ds else "none"}

    def run(self, name: str, variant: Variant) -> VariantResult:
        """Pre-train (unless scratch) and fine-tune `name`; a trial recorded as done before is not repeated."""
        model = self.catalog.get_model(name)
        if model is None:
            raise CatalogError(f"no model named {name} in the catalog")
        prm = self.prm(variant)
        uid = prm_uid(prm)
        for row in self.catalog.pretrain_variants(nn=name, status="done"):
            if row["prm"] == uid:
                return VariantResult(name, variant.label, uid, True, pretrain_accuracy=row["pretrain_accuracy"],
                                     accuracy=row["accuracy"], final_accuracy=row["final_accuracy"], skipped=True)
        pre, ds = self.config.pretrain, variant.dataset
        row = dict(nn=name, prm=uid, variant=variant.label, dataset_hash=ds.hash if ds else None,
                   dataset_params=_dataset_params(ds), dataset_path=str(ds.path.resolve()) if ds else None,
                   stylize=ds.stylize if ds else None, pretrain_epochs=pre.epochs if ds else 0,
                   finetune_subset=self.finetune.data.train_subset, finetune_epochs=self.finetune.train.epochs,
                   seed=self.config.train.seed, run_id=self.run_id)
        self.catalog.record_pretrain_variant(**row, status="running")
        key = f"{name}~{uid[:8]}"
        checkpoints = run_dir_of(self.config) / "checkpoints" / key  # this variant's own folder
        init_from, result = None, VariantResult(name, variant.label, uid, False)
        if ds is not None:
            job = self._pretrain_job(model, ds, checkpoints / "pretrain.pt")
            outcome = self._run("pretrain", job, key)
            if not outcome.ok:
                return self._failed(row, result, f"pre-training: {outcome.reason}")
            result.pretrain_accuracy = outcome.epochs[-1]["test_accuracy"] if outcome.epochs else None
            row.update(pretrain_accuracy=result.pretrain_accuracy, pretrain_seconds=outcome.seconds)
            init_from = job.checkpoint
        job = self._finetune_job(model, uid, checkpoints / "finetune.pt", init_from)
        loaded: list[int] = []
        outcome = self._run("finetune", job, key, loaded)
        if init_from is not None and outcome.ok and not any(loaded):
            return self._failed(row, result, "fine-tuning: no pre-trained tensor matched the candidate's")
        for event in outcome.epochs:  # replayed ones too: recording an epoch twice overwrites it
            self._record_epoch(name, prm, event, outcome)
        result.epochs = outcome.epochs
        if not outcome.ok:
            return self._failed(row, result, f"fine-tuning: {outcome.reason}")
        result.ok = True
        result.accuracy = max(e["test_accuracy"] for e in outcome.epochs)
        result.final_accuracy = outcome.epochs[-1]["test_accuracy"]
        self.catalog.record_pretrain_variant(**row, accuracy=result.accuracy, final_accuracy=result.final_accuracy,
                                             status="done", reason=None)
        return result

    # --- jobs ---------------------------------------------------------------------

    def _limits(self) -> dict:
        lim = self.config.limits
        threads = lim.threads or max(1, os.cpu_count() or 1)
        return dict(seconds=lim.seconds, memory_mb=lim.memory_mb, threads=threads, device=self.config.device)

    def _pretrain_job(self, model: dict, ds: SyntheticDataset, checkpoint: Path) -> TrainJob:
        pre = self.config.pretrain
        train = {**self.config.to_dict()["train"], "epochs": pre.epochs, "lr": pre.lr or self.config.train.lr}
        return TrainJob(name=model["name"], source=model["code"], dataset_cache=str(ds.file.resolve()), train=train,
                        checkpoint=str(checkpoint), out_shape=(ds.classes,), resume_epoch=0,
                        fingerprint=_digest({"code": model["code_hash"], "train": train, "data": ds.hash}),
                        **self._limits())

    def _finetune_job(self, model: dict, uid: str, checkpoint: Path, init_from: str | None) -> TrainJob:
        train = self.finetune.to_dict()["train"]
        data = self.finetune.data
        return TrainJob(name=model["name"], source=model["code"], dataset_cache=str(self.cifar_cache), train=train,
                        train_subset=data.train_subset, test_subset=data.test_subset, checkpoint=str(checkpoint),
                        fingerprint=_digest({"code": model["code_hash"], "trial": uid}), init_from=init_from,
                        resume_epoch=0,  # both phases start over: the outcome must hold every epoch
                        **self._limits())

    def _run(self, phase: str, job: TrainJob, key: str, loaded: list | None = None) -> TrainOutcome:
        workdir = run_dir_of(self.config) / "sandbox" / f"{key}-{phase}"

        def on_event(event: dict) -> None:
            if event.get("event") == "init" and loaded is not None:
                loaded.append(event.get("loaded", 0))
            self.on_event(phase, event)

        if self.executor is not None:
            return self.executor.run(job, workdir, on_event, self.cancel)
        return run_job(job, workdir, on_event=on_event, cancel=self.cancel)

    def _record_epoch(self, name: str, prm: dict, event: dict, outcome: TrainOutcome) -> None:
        cfg = self.finetune
        self.catalog.record_epoch(EpochRecord(
            nn=name, epoch=event["epoch"], accuracy=event["test_accuracy"], duration_s=event["seconds"], prm=prm,
            transform=self.transform, metric=METRIC, task=cfg.task, dataset=cfg.dataset,
            train_loss=event.get("train_loss"), test_loss=event.get("test_loss"),
            train_accuracy=event.get("train_accuracy"), samples_per_second=event.get("samples_per_second"),
            epoch_max=cfg.train.epochs, gpu_memory_kb=event.get("peak_gpu_memory_kb"),
            occupied_ram_kb=event.get("peak_rss_kb")))
        if outcome.n_params is not None:
            self.catalog.set_model_facts(name, n_params=outcome.n_params)

    def _failed(self, row: dict, result: VariantResult, reason: str) -> VariantResult:
        result.reason = reason
        self.catalog.record_pretrain_variant(**{**row, "pretrain_accuracy": result.pretrain_accuracy},
                                             status="failed", reason=reason[:1000])
        return result


def finetune_config(config: Config) -> Config:
    """The run's config with the fine-tuning subset and epochs of [pretrain] in place."""
    pre = config.pretrain
    return config.with_overrides({"data.train_subset": pre.finetune_subset or None,
                                  "train.epochs": pre.finetune_epochs or None})


def _dataset_params(ds: SyntheticDataset | None) -> dict:
    if ds is None:
        return {}
    return {"render": ds.meta.get("settings"), "stylize": ds.meta.get("stylize"), "parent": ds.meta.get("parent"),
            "train": ds.meta.get("train"), "test": ds.meta.get("test"), "classes": ds.classes}


def variant_board(catalog: Catalog, names: list[str] | None = None) -> list[dict]:
    """One row per (model, variant, fine-tuning recipe): mean and spread of best accuracy over seeds.

    Rows of one model sit together, scratch first, so the effect of pre-training reads across.
    """
    groups: dict[tuple, list[dict]] = {}
    for row in catalog.pretrain_variants(status="done"):
        if names is not None and row["nn"] not in names:
            continue
        key = (row["nn"], row["variant"], row["dataset_hash"], row["pretrain_epochs"], row["finetune_subset"],
               row["finetune_epochs"])
        groups.setdefault(key, []).append(row)
    board = []
    for (nn, variant, data, pre_epochs, subset, ft_epochs), rows in groups.items():
        acc = [r["accuracy"] for r in rows]
        mean = sum(acc) / len(acc)
        std = (sum((a - mean) ** 2 for a in acc) / (len(acc) - 1)) ** 0.5 if len(acc) > 1 else 0.0
        pre = [r["pretrain_accuracy"] for r in rows if r["pretrain_accuracy"] is not None]
        board.append({"name": nn, "variant": variant, "dataset_hash": data, "pretrain_epochs": pre_epochs,
                      "finetune_subset": subset, "finetune_epochs": ft_epochs, "trials": len(rows),
                      "accuracy": mean, "std": std, "pretrain_accuracy": sum(pre) / len(pre) if pre else None})
    board.sort(key=lambda r: (r["name"], r["variant"] != SCRATCH, r["variant"], -r["accuracy"]))
    return board


def check_datasets(config: Config) -> list[Variant]:
    """The variants of `[pretrain] datasets` (scratch first when `scratch`); FractalDataError for a bad folder."""
    pre = config.pretrain
    if not pre.datasets:
        return []
    return ([Variant.of(SCRATCH)] if pre.scratch else []) + [Variant.of(path) for path in pre.datasets]


def pretrain_variants_for(catalog: Catalog, config: Config, cifar_cache: Path, names: list[str], *,
                          run_id: str | None = None, executor=None,
                          on_event: Callable[[str, dict], None] = lambda phase, event: None) -> list[VariantResult]:
    """The search's variant dimension: every `[pretrain]` variant of the `top` best of `names`.

    Variants recorded before are skipped, so a resumed search does not train them again.
    """
    variants = check_datasets(config)
    if not variants or not names:
        return []
    scored = [(acc, n) for n in dict.fromkeys(names) if (acc := catalog.best_accuracy(n)) is not None]
    ranked = [n for _, n in sorted(scored, key=lambda t: -t[0])]          # failed trainings have no accuracy
    top = ranked[: config.pretrain.top] if config.pretrain.top else ranked
    trainer = Pretrainer(catalog, config, cifar_cache, run_id=run_id, executor=executor, on_event=on_event)
    return [trainer.run(name, variant) for name in top for variant in variants]
