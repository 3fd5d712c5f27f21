"""Build a bench table: every variant of the config's space trained once, through the normal sandbox.

Each variant is rendered from the template, validated like any candidate (policy, contract,
smoke run in the jail, dedup), registered in the bench's own catalog and trained by the same
Trainer a search uses. The catalog holds every result as it arrives, so an interrupted build
resumes where it stopped; the table file is written from the catalog at the end.
"""

from __future__ import annotations

import datetime as dt
import platform
import random
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from nas_agent.bench.table import BenchTable, EpochRow, NoiseRow, VariantRow, params_key
from nas_agent.catalog import Catalog, prm_uid
from nas_agent.config import Config, ConfigError
from nas_agent.device import cpu_name
from nas_agent.search.trainer import CandidateFile, Trainer, TrainRequest, register, run_dir_of, trial_prm
from nas_agent.space.template import Template, load_template
from nas_agent.tasks import task_of
from nas_agent.validate import validator_for


def space_dimensions(config: Config) -> dict[str, list]:
    """The config's space as a table stores it: each dimension's values, tuples as lists."""
    space = task_of(config.task).space_of(config.space)
    return {name: [list(v) if isinstance(v, tuple) else v for v in values]
            for name, values in space.dimensions().items()}


def check_fits(table: BenchTable, config: Config) -> None:
    """BenchTableError (one line) unless `table` measured the config's recipe on the config's space."""
    table.check_matches(recipe=trial_prm(config), space=space_dimensions(config),
                        family=load_template(config.template).family, task=config.task)


def variants_of(config: Config) -> list[dict]:
    """Every variant of the config's space, in a seeded order (an interrupted build covers a random part)."""
    space = task_of(config.task).space_of(config.space)
    if not hasattr(space, "sample"):
        raise ConfigError(f"bench tables cover classification spaces; {config.task} has none")
    return space.sample(None, seed=config.train.seed)


@dataclass
class Registered:
    """What validation made of the variants: catalog names by params key, and the rejected ones."""

    names: dict[str, str] = field(default_factory=dict)
    duplicate_of: dict[str, str] = field(default_factory=dict)    # params key -> the variant name it repeats
    rejected: dict[str, str] = field(default_factory=dict)        # params key -> why


class TableBuilder:
    """The steps of `nas-agent bench build`; the command drives them with progress bars."""

    def __init__(self, config: Config, catalog: Catalog, run_id: str, dataset_cache: Path, *, jobs: int = 1):
        self.config, self.catalog, self.run_id, self.jobs = config, catalog, run_id, jobs
        self.dataset_cache = dataset_cache
        self.template: Template = load_template(config.template)
        self.space = task_of(config.task).space_of(config.space)
        self.variants = variants_of(config)
        self.registered = Registered()

    def register_all(self, on_checked=lambda: None) -> Registered:
        """Validate and register every variant (the smoke run in the jail included); known ones are found again."""
        validator = validator_for(self.config, catalog=self.catalog, workdir=run_dir_of(self.config) / "sandbox",
                                  allow_known=True)
        found = self.registered
        for params in self.variants:
            key = params_key(params)
            source = self.template.render(self.space.region_values(params))
            validation = validator.validate(source, f"variant {key}")
            if validation.ok:
                candidate = CandidateFile.of(validation, Path("variant.py"), default_family=self.template.family)
                name = register(self.catalog, candidate, self.config, origin="bench", run_id=self.run_id)
                validator.registered_as(validation, name)
                found.names[key] = name
            elif validation.verdict.stage == "duplicate" and validation.duplicate_of:
                found.duplicate_of[key] = validation.duplicate_of
            else:
                found.rejected[key] = validation.verdict.reason
            on_checked()
        return found

    def todo(self) -> list[str]:
        """Variants not trained yet under this recipe (resuming a build trains only these)."""
        prm = trial_prm(self.config)
        return [name for name in dict.fromkeys(self.registered.names.values())
                if len(self._epochs(name, prm)) < self.config.train.epochs
                and self.catalog.get_model(name)["status"] != "failed"]

    def noise_requests(self, variants: int, seeds: list[int]) -> list[TrainRequest]:
        """Retrainings of a seeded sample of finished variants with other seeds (the table's own noise)."""
        names = sorted(n for n in set(self.registered.names.values()) if self._final(n) is not None)
        sample = random.Random(self.config.train.seed).sample(names, min(variants, len(names)))
        return [TrainRequest.of(name, {"seed": seed}) for name in sample for seed in seeds
                if seed != self.config.train.seed]

    def untrained(self, requests: list[TrainRequest]) -> list[TrainRequest]:
        """The requests whose trial has not recorded every epoch yet."""
        return [r for r in requests
                if len(self._epochs(r.name, {**trial_prm(self.config), **dict(r.train)})) < self.config.train.epochs]

    def trainer(self, on_progress=lambda key, event: None) -> Trainer:
        return Trainer(self.catalog, self.config, self.dataset_cache, run_id=self.run_id, jobs=self.jobs,
                       on_progress=on_progress)

    def _epochs(self, name: str, prm: dict) -> list[dict]:
        trial = prm_uid(prm)
        return sorted((r for r in self.catalog.epochs(name) if r["prm"] == trial), key=lambda r: r["epoch"])

    def _final(self, name: str, prm: dict | None = None) -> float | None:
        rows = self._epochs(name, prm or trial_prm(self.config))
        return rows[-1]["accuracy"] if len(rows) == self.config.train.epochs else None

    def table(self, config_name: str, noise: list[TrainRequest]) -> BenchTable:
        """The table as the catalog holds it now."""
        prm = trial_prm(self.config)
        rows, devices = [], set()
        for params in self.variants:
            key = params_key(params)
            name = self.registered.names.get(key) or self.registered.duplicate_of.get(key)
            if name is None:
                rows.append(VariantRow(params=params, name="", code_hash="", status="failed",
                                       reason=self.registered.rejected.get(key, "not validated")))
                continue
            model = self.catalog.get_model(name)
            epochs = self._epochs(name, prm)
            devices |= {r["gpu_type"] or "cpu" for r in epochs}
            finished = len(epochs) == self.config.train.epochs
            status = "duplicate" if key in self.registered.duplicate_of else ("done" if finished else "failed")
            rows.append(VariantRow(
                params=params, name=name, code_hash=model["code_hash"], struct_hash=model["struct_hash"],
                n_params=model["n_params"], status=status, duplicate_of=name if status == "duplicate" else None,
                reason=None if finished else (model["reason"] or "not trained"),
                epochs=[EpochRow(epoch=r["epoch"], accuracy=r["accuracy"], loss=r["test_loss"],
                                 train_loss=r["train_loss"], seconds=r["seconds"]) for r in epochs]))
        noise_rows: dict[str, dict[str, float]] = {}
        for request in noise:
            seed = dict(request.train)["seed"]
            final = self._final(request.name, {**prm, "seed": seed})
            base = self._final(request.name)
            if final is not None and base is not None:
                noise_rows.setdefault(request.name, {str(self.config.train.seed): base})[str(seed)] = final
        return BenchTable(
            config=config_name, template=str(self.config.template), family=self.template.family,
            task=self.config.task, metric=task_of(self.config.task).metric, space=space_dimensions(self.config),
            recipe=prm, device=", ".join(sorted(devices)) or "cpu", versions=package_versions(),
            built=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), rows=rows,
            noise=[NoiseRow(name=n, accuracy=a) for n, a in sorted(noise_rows.items())])


def package_versions() -> dict[str, str]:
    """What produced the numbers: Python, torch, torchvision, nas-agent, the CPU."""
    versions = {"python": platform.python_version(), "machine": platform.machine(),
                "cpu": cpu_name()}
    for package in ("torch", "torchvision", "nas-agent"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "unknown"
    return versions
