"""LEMUR interop on disk: write the catalog in nn-dataset's folder layout, and read that layout back.

The layout is the one nn-dataset keeps under ``ab/nn/``::

    nn/<nn>.py                                   model code, one file per model
    metric/<metric>.py, transform/<name>.py      the code those names stand for
    stat/<task>_<dataset>_<metric>_<nn>/<epoch>.json
                                                 per epoch, a list of trial records:
                                                 accuracy, duration (ns), uid, the trial's
                                                 hyperparameters (batch, lr, momentum, dropout,
                                                 transform, ...) and optionally train_stat

LEMUR splits folder names on ``_``, so ``<nn>`` is the short name (``FractalNet-1a2b3c4d``); the
catalog's own name is the whole folder name. Facts LEMUR has no place for (lineage, parameter
count, template parameters, status) travel in ``nas-agent.json`` beside the folders, which
LEMUR ignores. Reading accepts this layout, nn-dataset's newer ``stat/train/<...>`` and a
clone of nn-dataset itself (``ab/nn/`` under the folder).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from nas_agent.catalog.records import EpochRecord, ModelRecord, lower_is_better, prm_uid
from nas_agent.catalog.store import Catalog, CatalogError

ORIGIN = "lemur"
MANIFEST = "nas-agent.json"
# Our train_stat columns that EpochRecord carries; LEMUR's records may hold more (cpu_count, ...).
TRAIN_STAT_FIELDS = ("train_loss", "test_loss", "train_accuracy", "samples_per_second", "epoch_max",
                     "gpu_type", "gpu_memory_kb", "occupied_ram_kb")
# Keys of a trial record that are not hyperparameters.
_RECORD_KEYS = ("accuracy", "duration", "uid", "train_stat")
_HASH_SUFFIX = re.compile(r"^(?P<family>.+)-[0-9a-f]{8,}$")


class LemurLayoutError(ValueError):
    """A folder that is not in nn-dataset's layout (one-line message)."""


@dataclass
class ExportSummary:
    folder: Path
    models: int = 0
    configs: int = 0            # stat/<task>_<dataset>_<metric>_<nn> folders
    epoch_files: int = 0
    records: int = 0


@dataclass
class ImportSummary:
    added: list[str] = field(default_factory=list)      # models new to the catalog
    known: list[str] = field(default_factory=list)      # models it had already (results merged in)
    records: int = 0                                     # trial records written
    merged: int = 0                                      # records of the same trial and epoch (best kept)
    skipped: list[str] = field(default_factory=list)    # one line per folder or file left out, and why


def lemur_nn(name: str) -> str:
    """LEMUR's short model name: the part after ``task_dataset_metric_`` (``_`` never appears in it)."""
    return name.split("_", 3)[-1].replace("_", "-")


# --- export ---------------------------------------------------------------------


def export_lemur(catalog: Catalog, out_dir: str | Path, names: list[str] | None = None) -> ExportSummary:
    """Write the catalog's models (or `names`) and every recorded epoch in nn-dataset's layout under `out_dir`."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise LemurLayoutError(f"{out} is a file; give a folder to export into")
    summary = ExportSummary(out)
    models = catalog.models()
    if names is not None:
        wanted = set(names)
        models = [m for m in models if m["name"] in wanted]
    manifest, transforms, metrics = {}, set(), set()
    for model in models:
        name = model["name"]
        code = catalog.get_model(name)["code"]
        short = lemur_nn(name)
        _write(out / "nn" / f"{short}.py", code)
        summary.models += 1
        manifest[name] = {k: model[k] for k in ("family", "task", "dataset", "metric", "parent", "origin",
                                                "n_params", "template_params", "code_hash", "struct_hash",
                                                "status", "reason")}
        rows = catalog.epochs(name)
        prms = catalog.trial_prms([r["prm"] for r in rows if r["prm"]])
        # One stat folder per (task, dataset, metric) the model has results for, one file per epoch.
        files: dict[tuple[str, int], list[dict]] = {}
        for row in rows:
            config = f"{row['task']}_{row['dataset']}_{row['metric']}_{short}"
            files.setdefault((config, row["epoch"]), []).append(_record(row, prms.get(row["prm"], {})))
            transforms.add(row["transform"])
            metrics.add(row["metric"])
        for (config, epoch), records in sorted(files.items()):
            # Best first, as nn-dataset orders its files (bits/dim: lowest first).
            sign = 1 if lower_is_better(config.split("_")[2]) else -1
            records.sort(key=lambda r: (sign * r["accuracy"], r["uid"]))
            _write(out / "stat" / config / f"{epoch}.json", json.dumps(records, indent=4, sort_keys=True) + "\n")
            summary.epoch_files += 1
            summary.records += len(records)
        summary.configs += len({config for config, _ in files})
    for table, folder, wanted in (("transform", "transform", transforms), ("metric", "metric", metrics)):
        for name, code in catalog.code_of(table, sorted(wanted)).items():
            _write(out / folder / f"{name}.py", code)
    _write(out / MANIFEST, json.dumps({"models": manifest}, indent=2, sort_keys=True, default=str) + "\n")
    return summary


def _record(row: dict, prm: dict) -> dict:
    record = {**prm, "accuracy": row["accuracy"], "duration": row["duration"], "uid": row["prm"],
              "transform": row["transform"]}
    train_stat = {k: row[k] for k in TRAIN_STAT_FIELDS if row.get(k) is not None}
    if train_stat:
        record["train_stat"] = train_stat
    return record


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# --- import ---------------------------------------------------------------------


def find_layout(folder: str | Path) -> tuple[Path, list[Path]]:
    """(root holding nn/ and stat/, the stat config folders) of an nn-dataset layout, or LemurLayoutError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LemurLayoutError(f"no folder {folder}")
    for root in (folder, folder / "ab" / "nn"):
        stat = root / "stat"
        if stat.is_dir():
            configs = [d for base in (stat, stat / "train") if base.is_dir()
                       for d in sorted(base.iterdir()) if d.is_dir() and d.name.count("_") == 3]
            return root, configs
    raise LemurLayoutError(f"{folder} has no stat/ folder; expected nn-dataset's layout "
                           "(nn/<nn>.py and stat/<task>_<dataset>_<metric>_<nn>/<epoch>.json)")


def import_lemur(catalog: Catalog, folder: str | Path, run_id: str | None = None) -> ImportSummary:
    """Read an nn-dataset layout into the catalog; new models get origin ``lemur`` and status done.

    Importing the same folder twice changes nothing. A model whose code the catalog already
    holds under another name takes the results under that name; those on another task or
    dataset than the model's own keep their trial uid with ``@task:dataset`` appended.
    Records of the same trial (uid) and epoch keep the best accuracy. Folders and files that cannot be read are skipped
    and named in the summary.
    """
    root, configs = find_layout(folder)
    summary = ImportSummary()
    manifest = _read_manifest(root, summary)
    touched: dict[str, bool] = {}     # model name -> whether it is new
    for config in configs:
        task, dataset, metric, nn = config.name.split("_")
        code_file = root / "nn" / f"{nn}.py"
        if not code_file.is_file():
            summary.skipped.append(f"{config.name}: no model code nn/{nn}.py")
            continue
        try:
            code = code_file.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            summary.skipped.append(f"{config.name}: cannot read nn/{nn}.py ({exc})")
            continue
        facts = manifest.get(config.name, {})
        try:
            name, new = _ensure_model(catalog, config.name, code, task, dataset, metric, nn, facts, run_id)
        except CatalogError as exc:
            summary.skipped.append(f"{config.name}: {exc}")
            continue
        touched.setdefault(name, new)
        _ensure_code(catalog, "metric", metric, root)
        home = catalog.get_model(name)
        # A catalog's stat ids assume one task and dataset per model; results of the same network on
        # another one (LEMUR keeps AlexNet on many) get their own trial id so they never overwrite these.
        foreign = "" if (home["task"], home["dataset"]) == (task, dataset) else f"@{task}:{dataset}"
        for record in _records(config, summary):
            transform = record["transform"]
            _ensure_code(catalog, "transform", transform, root)
            uid = record["uid"] or prm_uid(record["prm"])
            if foreign and not uid.endswith(foreign):
                uid += foreign
            catalog.record_epoch(EpochRecord(
                nn=name, epoch=record["epoch"], accuracy=record["accuracy"],
                duration_s=(record["duration"] or 0) / 1e9, prm=record["prm"], transform=transform,
                metric=metric, task=task, dataset=dataset, uid=uid,
                **{k: record["train_stat"].get(k) for k in TRAIN_STAT_FIELDS}))
            summary.records += 1
    # Models of the manifest without results (failed or never trained) come along with their facts.
    for full_name, facts in manifest.items():
        if full_name in touched or full_name.count("_") != 3:
            continue
        task, dataset, metric, nn = full_name.split("_")
        code_file = root / "nn" / f"{nn}.py"
        if code_file.is_file():
            try:
                name, new = _ensure_model(catalog, full_name, code_file.read_text(), task, dataset, metric, nn,
                                          facts, run_id)
            except CatalogError as exc:
                summary.skipped.append(f"{full_name}: {exc}")
                continue
            touched.setdefault(name, new)
    for name, new in touched.items():
        if not new:
            summary.known.append(name)
            continue
        summary.added.append(name)
        has_results = bool(catalog.epochs(name))
        status = "done" if has_results else manifest.get(name, {}).get("status")
        if status in ("done", "failed"):
            catalog.set_status(name, status, reason=None if has_results else manifest[name].get("reason"),
                               run_id=run_id)
    return summary


def _read_manifest(root: Path, summary: ImportSummary) -> dict[str, dict]:
    path = root / MANIFEST
    if not path.is_file():
        return {}
    try:
        models = json.loads(path.read_text())["models"]
        if not isinstance(models, dict):
            raise TypeError("models is not an object")
        return models
    except (OSError, ValueError, KeyError, TypeError) as exc:
        summary.skipped.append(f"{MANIFEST}: unreadable ({exc}); lineage and parameter counts not restored")
        return {}


def _code_hash(code: str) -> str:
    from nas_agent.candidate import code_hash

    try:
        return code_hash(code)
    except (SyntaxError, ValueError, RecursionError):
        # LEMUR's corpus may hold code this Python cannot parse; hash its text instead.
        return hashlib.sha256(code.encode()).hexdigest()


def _ensure_model(catalog: Catalog, name: str, code: str, task: str, dataset: str, metric: str, nn: str,
                  facts: dict, run_id: str | None) -> tuple[str, bool]:
    """The catalog name that takes this model's results, adding the model if needed; (name, added)."""
    existing = catalog.get_model(name)
    if existing is not None:
        if existing["code"] != code:
            raise CatalogError(f"the catalog holds a different model named {name}")
        return name, False
    digest = _code_hash(code)
    twin = catalog.find_by_code_hash(digest)
    if twin is not None:
        return twin, False
    match = _HASH_SUFFIX.match(nn)
    catalog.add_model(ModelRecord(
        name=name, code=code, family=facts.get("family") or (match["family"] if match else nn), task=task,
        dataset=dataset, metric=metric, code_hash=digest, template_params=facts.get("template_params") or {},
        parent=facts.get("parent"), origin=ORIGIN, struct_hash=facts.get("struct_hash"),
        n_params=facts.get("n_params")), run_id=run_id)
    return name, True


def _ensure_code(catalog: Catalog, table: str, name: str, root: Path) -> None:
    """Register a metric or transform once, with its code from the layout or a note that it was not there."""
    if catalog.code_of(table, [name]):
        return
    path = root / table / f"{name}.py"
    code = path.read_text() if path.is_file() else f"# {table} {name}: its code was not in the imported folder\n"
    (catalog.register_metric if table == "metric" else catalog.register_transform)(name, code)


def _records(config: Path, summary: ImportSummary) -> list[dict]:
    """The folder's trial records, one per (uid, transform, epoch), the best accuracy kept on repeats."""
    best: dict[tuple, dict] = {}
    for path in sorted(config.iterdir()):
        if path.suffix != ".json":
            continue
        where = f"{config.name}/{path.name}"
        if not path.stem.isdigit():
            summary.skipped.append(f"{where}: not an epoch file (<epoch>.json)")
            continue
        try:
            trials = json.loads(path.read_text())
            if not isinstance(trials, list):
                raise ValueError("not a list of trial records")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            summary.skipped.append(f"{where}: unreadable ({exc})")
            continue
        for i, trial in enumerate(trials):
            if not isinstance(trial, dict) or not isinstance(trial.get("accuracy"), (int, float)) \
                    or not trial.get("transform") or not isinstance(trial.get("duration", 0), (int, float, type(None))):
                summary.skipped.append(f"{where}: record {i} lacks a numeric accuracy, a duration or a transform")
                continue
            prm = {k: v for k, v in trial.items() if k not in _RECORD_KEYS}
            train_stat = trial.get("train_stat") if isinstance(trial.get("train_stat"), dict) else {}
            uid = str(trial["uid"]) if trial.get("uid") else None
            record = {"epoch": int(path.stem), "accuracy": float(trial["accuracy"]),
                      "duration": trial.get("duration"), "uid": uid, "prm": prm,
                      "transform": str(trial["transform"]), "train_stat": train_stat}
            key = (uid or json.dumps(prm, sort_keys=True, default=str), record["transform"], record["epoch"])
            if key in best:
                summary.merged += 1
                if record["accuracy"] <= best[key]["accuracy"]:
                    continue
            best[key] = record
    return list(best.values())
