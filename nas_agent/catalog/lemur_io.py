"""LEMUR interop on disk: write the catalog in nn-dataset's folder layout, and read that layout back.

The layout is nn-dataset's current one (the contents of its ``ab/nn/``)::

    nn/<nn>.py                                   model code, one file per model
    metric/<metric>.py, transform/<name>.py      the code those names stand for
    stat/train/<task>_<dataset>_<metric>_<nn>/<epoch>.json
                                                 per epoch, a list of trial records: accuracy,
                                                 duration (ns since the trial began), uid, the
                                                 trial's hyperparameters and transform, flat
                                                 training statistics or a nested train_stat

Reading follows LEMUR's own database build (ab/nn/util/db/Write.py, json_train_to_db) record for
record, so `nas_agent.catalog.lemur.data()` then answers what LEMUR's `api.data()` answers on the
same folder: every record LEMUR keeps (repeated trials included), NULL where a record has no
duration, every scalar key in prm. Where LEMUR's build stops reading a file (a record whose
model, metric or transform code is missing, or that lacks its transform or uid), so does this
one, and the summary says where and why. Each record is also kept as it was, so writing the
catalog back out gives the same files. Facts LEMUR has no place for (lineage, parameter count,
template parameters, status, policy profile) travel in ``nas-agent.json`` beside the folders,
which LEMUR ignores. Reading also accepts the older ``stat/<...>`` layout and a clone of
nn-dataset itself (``ab/nn/`` under the folder).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from nas_agent.catalog import schema
from nas_agent.catalog.records import ModelRecord, lemur_id
from nas_agent.catalog.store import Catalog, CatalogError

ORIGIN = "lemur"
MANIFEST = "nas-agent.json"
_HASH_SUFFIX = re.compile(r"^(?P<family>.+)-[0-9a-f]{8,}$")


class LemurLayoutError(ValueError):
    """A folder that is not in nn-dataset's layout (one-line message)."""


class _RecordRefused(Exception):
    """Why LEMUR's build would stop reading an epoch file at this record."""


@dataclass
class ExportSummary:
    folder: Path
    models: int = 0
    configs: int = 0            # stat/train/<task>_<dataset>_<metric>_<nn> folders
    epoch_files: int = 0
    records: int = 0


@dataclass
class ImportSummary:
    added: list[str] = field(default_factory=list)      # models new to the catalog
    known: list[str] = field(default_factory=list)      # models it had already (results merged in)
    records: int = 0                                     # trial records read (a record repeating one exactly is one row)
    skipped: list[str] = field(default_factory=list)    # one line per folder, file or record left out, and why


# --- export ---------------------------------------------------------------------


def export_lemur(catalog: Catalog, out_dir: str | Path, names: list[str] | None = None) -> ExportSummary:
    """Write the catalog's models (or `names`) and every recorded epoch in nn-dataset's layout under `out_dir`.

    Imported records are written back exactly as they were read; nas-agent's own are written the
    way LEMUR's trainer writes them (hyperparameters, accuracy, cumulative duration, uid, transform,
    a nested train_stat).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise LemurLayoutError(f"{out} is a file; give a folder to export into")
    summary = ExportSummary(out)
    wanted = [r[0] for r in catalog.db.conn.execute("SELECT name FROM nn ORDER BY name")]
    if names is not None:
        chosen = set(names)
        wanted = [n for n in wanted if n in chosen]
    manifest, transforms, metrics = {}, set(), set()
    for name in wanted:
        _write(out / "nn" / f"{name}.py", catalog.nn_code(name))
        summary.models += 1
        model = catalog.get_model(name)
        if model is not None:
            manifest[name] = {k: model.get(k) for k in ("family", "task", "dataset", "metric", "parent", "origin",
                                                        "n_params", "template_params", "code_hash", "struct_hash",
                                                        "status", "reason", "profile")}
        rows = catalog.epochs(name)
        prms = catalog.trial_prms([r["prm"] for r in rows if r["prm"]])
        kept = catalog.lemur_records([r["id"] for r in rows])
        files: dict[tuple[str, int], list[dict]] = {}
        for row in sorted(rows, key=lambda r: r["stored"]):   # each file's records in the order they came
            config = f"{row['task']}_{row['dataset']}_{row['metric']}_{name}"
            record = kept.get(row["id"]) or _record(row, prms.get(row["prm"], {}))
            files.setdefault((config, row["epoch"]), []).append(record)
            if row["transform"]:
                transforms.add(row["transform"])
            metrics.update(m.strip() for m in row["metric"].split(","))
        for (config, epoch), records in sorted(files.items()):
            _write(out / "stat" / "train" / config / f"{epoch}.json", json.dumps(records, indent=4) + "\n")
            summary.epoch_files += 1
            summary.records += len(records)
        summary.configs += len({config for config, _ in files})
    for table, wanted_codes in (("transform", transforms), ("metric", metrics)):
        for name, code in catalog.code_of(table, sorted(wanted_codes)).items():
            _write(out / table / f"{name}.py", code)
    _write(out / MANIFEST, json.dumps({"models": manifest}, indent=2, sort_keys=True, default=str) + "\n")
    return summary


def _record(row: dict, prm: dict) -> dict:
    """A trial record as LEMUR's trainer writes one, from a stat row nas-agent recorded."""
    record = {**prm, "accuracy": row["accuracy"], "uid": row["prm"], "transform": row["transform"]}
    if row["duration"] is not None:
        record["duration"] = row["duration"]
    fields = [c for c in schema.schema_columns()["train_stat"] if c != "stat_id"]
    train_stat = {k: row[k] for k in fields if row.get(k) is not None}
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
    """Read an nn-dataset layout into the catalog as LEMUR's database build reads it.

    New models keep their LEMUR names, get origin ``lemur``, profile ``reviewed`` and status done.
    Importing the same folder twice changes nothing.
    """
    root, configs = find_layout(folder)
    summary = ImportSummary()
    manifest = _read_manifest(root, summary)
    touched: dict[str, bool] = {}     # model name -> whether it is new
    for config in configs:
        parts = config.name.split("_")
        if len(parts) != 4:
            summary.skipped.append(f"{config.name}: not <task>_<dataset>_<metric>_<nn>")
            continue
        task, dataset, metric, nn = parts
        for path in sorted(config.iterdir(), key=lambda p: p.name):
            if not path.stem.isdigit() or not path.is_file():
                continue    # LEMUR reads only <epoch>.* files
            where = f"{config.name}/{path.name}"
            try:
                trials = json.loads(path.read_text(encoding="utf-8", errors="replace"))
                if not isinstance(trials, list):
                    raise _RecordRefused("not a list of trial records")
                for index, trial in enumerate(trials):
                    try:
                        name = _store(catalog, root, task, dataset, metric, nn, int(path.stem), trial,
                                      manifest.get(nn, {}), run_id, touched)
                    except _RecordRefused as exc:
                        raise _RecordRefused(f"record {index} and the {len(trials) - index - 1} after it: {exc}")
                    summary.records += 1
                    touched.setdefault(name, False)
            except (OSError, ValueError, _RecordRefused, CatalogError) as exc:
                summary.skipped.append(f"{where}: {exc} (LEMUR's build stops reading the file there too)")
    # Models of nas-agent's manifest without results (failed, or never trained) come along with their facts.
    for nn, facts in manifest.items():
        if nn not in touched and (root / "nn" / f"{nn}.py").is_file():
            try:
                _ensure_model(catalog, root, nn, facts.get("task"), facts.get("dataset"), facts.get("metric"), facts,
                              run_id, touched)
            except (_RecordRefused, CatalogError) as exc:
                summary.skipped.append(f"{MANIFEST} model {nn}: {exc}")
    for name, new in touched.items():
        (summary.added if new else summary.known).append(name)
        if new:
            has_results = bool(catalog.epochs(name))
            status = "done" if has_results else manifest.get(name, {}).get("status")
            if status in ("done", "failed"):
                catalog.set_status(name, status, reason=None if has_results else manifest[name].get("reason"),
                                   run_id=run_id)
    return summary


def _store(catalog: Catalog, root: Path, task: str, dataset: str, metric: str, nn: str, epoch: int, trial,
           facts: dict, run_id: str | None, touched: dict) -> str:
    """One record, in LEMUR's order: the model's code, each metric's, the transform's, then the record."""
    if not isinstance(trial, dict):
        raise _RecordRefused("not a trial record (a JSON object)")
    name = _ensure_model(catalog, root, nn, task, dataset, metric, facts, run_id, touched)
    for single in metric.split(","):
        _ensure_code(catalog, "metric", single.strip(), root)
    if "transform" not in trial or "uid" not in trial:
        raise _RecordRefused("it has no " + ("transform" if "transform" not in trial else "uid"))
    if trial["transform"]:
        _ensure_code(catalog, "transform", str(trial["transform"]), root)
    catalog.add_lemur_record(task, dataset, metric, name, epoch, trial)
    return name


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
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        # LEMUR's corpus may hold code this Python cannot parse; hash its text instead.
        return "text-" + lemur_id(code)


def _ensure_model(catalog: Catalog, root: Path, nn: str, task: str, dataset: str, metric: str, facts: dict,
                  run_id: str | None, touched: dict) -> str:
    """The name LEMUR files this model's results under, storing its code first if the catalog lacks it.

    Like LEMUR's code_to_db: a new file whose code (whitespace aside) is stored under another name
    already is filed under that name.
    """
    code_file = root / "nn" / f"{nn}.py"
    if nn in touched:
        return nn
    try:
        code = code_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _RecordRefused(f"no readable model code nn/{nn}.py ({type(exc).__name__})") from None
    existing = catalog.nn_code(nn)
    if existing is not None:
        if existing != code:
            raise _RecordRefused(f"the catalog holds a different model named {nn}")
        return nn
    twin = catalog.nn_named_by_id(lemur_id(code))
    if twin is not None:
        return twin
    match = _HASH_SUFFIX.match(nn)
    added = catalog.add_lemur_model(ModelRecord(
        name=nn, code=code, family=facts.get("family") or (match["family"] if match else nn), task=task,
        dataset=dataset, metric=metric, code_hash=_code_hash(code), template_params=facts.get("template_params") or {},
        parent=facts.get("parent"), origin=ORIGIN, struct_hash=facts.get("struct_hash"),
        n_params=facts.get("n_params"), profile=facts.get("profile") or "reviewed"), run_id=run_id)
    touched[nn] = added
    return nn


def _ensure_code(catalog: Catalog, table: str, name: str, root: Path) -> None:
    """Register a metric or transform once, with its code from the layout (LEMUR stops where it is missing)."""
    if catalog.code_of(table, [name]):
        return
    path = root / table / f"{name}.py"
    try:
        code = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise _RecordRefused(f"no {table} code {table}/{name}.py") from None
    (catalog.register_metric if table == "metric" else catalog.register_transform)(name, code)
