"""The SQLite catalog: LEMUR's tables plus ours for lineage, status, runs and events.

Every query of the catalog lives in this module; the tables and their migrations are in
`schema` (LEMUR's core tables exactly as nn-dataset creates them, ours beside them), the
values stored in `records`.

One process writes (the search driver); any number may read at the same time,
which WAL mode and a busy timeout make safe.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import sqlite_utils

from nas_agent.catalog import schema
from nas_agent.catalog.records import (EVENT_KINDS, LOWER_IS_BETTER_METRICS, MODEL_STATUSES, RUN_STATUSES,
                                       EpochRecord, ModelRecord, lemur_id, prm_uid, stat_id)
from nas_agent.errors import UserError

# A reader may have to wait while the driver commits or checkpoints; 30 s is far
# longer than any single write of ours takes.
BUSY_TIMEOUT_S = 30.0

_SQLITE_MAGIC = b"SQLite format 3\x00"

# LEMUR's save_stat: a row whose values all repeat an earlier one is that row (INSERT OR IGNORE).
_INSERT_STAT = """
INSERT OR IGNORE INTO stat (id, accuracy, epoch, duration, task, dataset, nn, transform, metric, prm)
VALUES (:id, :accuracy, :epoch, :duration, :task, :dataset, :nn, :transform, :metric, :prm)
"""
# The rows of one trial: a model, its hyperparameters (uid), transform, metric, task and dataset.
_SAME_TRIAL = ("nn = :nn AND prm = :prm AND transform = :transform AND metric = :metric "
               "AND task = :task AND dataset = :dataset")

_UPSERT_TRAIN_STAT = """
INSERT INTO train_stat (stat_id, train_loss, test_loss, train_accuracy, samples_per_second,
                        epoch_max, gpu_type, gpu_memory_kb, occupied_ram_kb)
VALUES (:stat_id, :train_loss, :test_loss, :train_accuracy, :samples_per_second,
        :epoch_max, :gpu_type, :gpu_memory_kb, :occupied_ram_kb)
ON CONFLICT (stat_id) DO UPDATE SET train_loss = excluded.train_loss,
    test_loss = excluded.test_loss, train_accuracy = excluded.train_accuracy,
    samples_per_second = excluded.samples_per_second, epoch_max = excluded.epoch_max,
    gpu_type = excluded.gpu_type, gpu_memory_kb = excluded.gpu_memory_kb,
    occupied_ram_kb = excluded.occupied_ram_kb
"""

# A stat row's score in its metric's direction: ascending order puts the best first.
_SIGNED = "(CASE WHEN {t}.metric IN (SELECT value FROM json_each(:lower)) THEN {t}.accuracy ELSE -{t}.accuracy END)"

# Best epoch per model (ties: the earlier epoch), with its mean epoch time; each task ranked by
# its own metric's direction (accuracy: highest first, bits/dim: lowest first).
_LEADERBOARD = """
WITH chosen AS (
    SELECT s.*, MAX(s.epoch) OVER (PARTITION BY s.nn, s.prm, s.transform, s.metric, s.task, s.dataset) AS last
    FROM stat s
    WHERE (:task IS NULL OR s.task = :task)
      AND (:names IS NULL OR s.nn IN (SELECT value FROM json_each(:names)))),
ranked AS (
    SELECT s.nn, s.task, s.dataset, s.metric, s.accuracy, s.epoch,
           ROW_NUMBER() OVER (PARTITION BY s.nn ORDER BY """ + _SIGNED.format(t="s") + """, s.epoch) AS pos,
           -- duration is LEMUR's, cumulative: a trial's mean epoch time is its last row's duration / epoch,
           -- averaged over the model's trials (records without a duration are left out)
           AVG(CASE WHEN s.epoch = s.last THEN s.duration * 1.0 / s.epoch END) OVER (PARTITION BY s.nn) / 1e9
               AS seconds_per_epoch
    FROM chosen s)
SELECT r.nn AS name, m.family, r.task, r.dataset, r.metric, r.accuracy, r.epoch, m.n_params,
       r.seconds_per_epoch, m.origin, m.status
FROM ranked r LEFT JOIN model m ON m.name = r.nn
WHERE r.pos = 1 AND (:origin IS NULL OR m.origin = :origin)
ORDER BY r.task, """ + _SIGNED.format(t="r") + """, m.n_params IS NULL, m.n_params, r.nn
LIMIT :top
"""

@dataclass
class Run:
    """An open run: its id, and the status it will end with when the block set one."""

    id: str
    status: str | None = None


class CatalogError(UserError):
    """The catalog file cannot be used, or a named model/run is not in it (one-line message)."""


def _scalar(value):
    """A train_stat value as SQLite can bind it (anything else, such as a list, as its JSON text)."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(value)


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _prm_rows(uid: str, prm: dict) -> list[tuple]:
    """(uid, name, value) rows of a trial's scalars, as LEMUR's populate_prm_table stores them.

    A None value is not stored (LEMUR's INSERT OR IGNORE against NOT NULL drops it); lists and
    dicts never reach it (LEMUR drops them from a record first).
    """
    return [(uid, k, v) for k, v in prm.items() if isinstance(v, (bool, int, float, str))]


def _check_sqlite_file(path: Path) -> None:
    """Refuse, before SQLite touches it, a path that is not an SQLite database."""
    if path.is_dir():
        raise CatalogError(f"{path} is a directory, not a catalog file")
    if not path.exists() or path.stat().st_size == 0:
        return
    try:
        with path.open("rb") as f:
            header = f.read(len(_SQLITE_MAGIC))
    except OSError as e:
        raise CatalogError(f"cannot read catalog {path}: {e.strerror}") from None
    if header != _SQLITE_MAGIC:
        raise CatalogError(f"{path} is not an SQLite database; choose another catalog path")


class Catalog:
    """The search's one shared state: models, their code, metrics, runs and events."""

    def __init__(self, path: str | os.PathLike):
        """Open the catalog at `path`, creating the file and schema if needed.

        Raises CatalogError, leaving the file untouched, when `path` is not an
        SQLite database or holds tables this catalog cannot use.
        """
        self.path = Path(path)
        _check_sqlite_file(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite_utils.Database(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S))
        except sqlite3.Error as e:
            raise CatalogError(f"cannot open catalog {self.path}: {e}") from None
        try:
            self._open()
        except sqlite3.DatabaseError as e:
            self.close()
            raise CatalogError(f"cannot open catalog {self.path}: {e}") from None
        except CatalogError:
            self.close()
            raise

    def _open(self) -> None:
        conn = self.db.conn
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        # Everything up to _ensure_schema only reads, so a file we refuse is left as it was.
        existing = set(self.db.table_names())
        version = self._check_compatible(existing)
        self.db.enable_wal()
        conn.execute("PRAGMA synchronous = NORMAL")
        # A database made by LEMUR itself declares stat.prm REFERENCES prm(uid),
        # which SQLite cannot enforce ("foreign key mismatch" on every insert);
        # such a file keeps LEMUR's own unenforced behaviour.
        lemur_made = conn.execute("SELECT 1 FROM pragma_foreign_key_list('stat') "
                                  "WHERE \"table\" = 'prm'").fetchone()
        if not lemur_made:
            conn.execute("PRAGMA foreign_keys = ON")
        # A reader opening a complete catalog must not write: the driver may hold the write lock.
        if version != schema.SCHEMA_VERSION or not existing.issuperset(schema.LEMUR_TABLES + schema.OWN_TABLES):
            with self._write() as w:
                for migration in schema.pending(version):
                    for table, column, declaration in migration.add_columns:
                        if table in existing and column not in {c.name for c in self.db[table].columns}:
                            w.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
                    for statement in migration.statements:
                        w.execute(statement)
                    if migration.upgrade is not None:
                        migration.upgrade(w)
                for statement in schema.statements(schema.LEMUR_SCHEMA + schema.OWN_SCHEMA):
                    w.execute(statement)
                w.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                          (str(schema.SCHEMA_VERSION),))

    def _check_compatible(self, existing: set[str]) -> int | None:
        """Raise CatalogError unless the file is empty, a catalog, or a LEMUR database; return its schema version."""
        if existing and "meta" not in existing and not {"nn", "stat"} <= existing:
            raise CatalogError(f"{self.path} is an SQLite database but not a catalog; choose another path")
        version = self._stamped_version(existing)
        if version is not None and version > schema.SCHEMA_VERSION:
            raise CatalogError(f"{self.path} has catalog schema {version}, newer than this "
                               f"nas-agent's {schema.SCHEMA_VERSION}; upgrade nas-agent")
        added_later = {(table, column) for m in schema.pending(version) for table, column, _ in m.add_columns}
        for table, wanted in schema.schema_columns().items():
            if table in existing:
                present = {c.name for c in self.db[table].columns}
                missing = {c for c in wanted if (table, c) not in added_later} - present
                if missing:
                    raise CatalogError(f"{self.path}: table {table} lacks columns "
                                       f"{', '.join(sorted(missing))}; not a usable catalog")
        return version

    def _stamped_version(self, existing: set[str]) -> int | None:
        """The schema version the file is stamped with; None for a file without our tables (new, or LEMUR's)."""
        if "meta" not in existing:
            return None
        row = self.db.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        try:
            return int(row[0]) if row else None
        except (TypeError, ValueError):
            raise CatalogError(f"{self.path}: unreadable schema version {row[0]!r}") from None

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        self.db.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One atomic write transaction: committed at the end, rolled back on any exception."""
        conn = self.db.conn
        with conn:
            # IMMEDIATE takes the write lock up front (waiting up to the busy
            # timeout); a deferred transaction that reads first and writes later
            # fails at once with SQLITE_BUSY if another connection wrote between.
            conn.execute("BEGIN IMMEDIATE")
            yield conn

    def _rows(self, sql: str, params=()) -> list[dict]:
        return list(self.db.query(sql, params))

    # --- code tables ---------------------------------------------------------

    def register_transform(self, name: str, code: str) -> None:
        """Store (or update) the source of a transform; idempotent."""
        self._register_code("transform", name, code)

    def register_metric(self, name: str, code: str) -> None:
        """Store (or update) the source of a metric; idempotent."""
        self._register_code("metric", name, code)

    def code_of(self, table: str, names: list[str]) -> dict[str, str]:
        """The stored code of these transforms or metrics (`table` "transform" or "metric"), by name."""
        if table not in ("transform", "metric"):
            raise ValueError(f"code_of reads transform or metric, not {table!r}")
        rows = self._rows(f"SELECT name, code FROM {table} WHERE name IN (SELECT value FROM json_each(?))",
                          (json.dumps(list(names)),))
        return {r["name"]: r["code"] for r in rows}

    def _register_code(self, table: str, name: str, code: str) -> None:
        with self._write() as w:
            # A name stays bound to its first code: an imported LEMUR metric keeps LEMUR's own file.
            w.execute(f"INSERT OR IGNORE INTO {table} (name, code, id) VALUES (?, ?, ?)", (name, code, lemur_id(code)))

    # --- models --------------------------------------------------------------

    def add_model(self, rec: ModelRecord, run_id: str | None = None, *, code_stored: bool = False) -> bool:
        """Insert the model's code and record, queued, with a 'queued' event; False if the name exists.

        Raises CatalogError when the same code hash is already catalogued under another name.
        `code_stored`: the nn row is there already (add_lemur_model wrote it).
        """
        now = _utc_now()
        with self._write() as w:
            if w.execute("SELECT 1 FROM model WHERE name = ?" if code_stored else "SELECT 1 FROM nn WHERE name = ?",
                         (rec.name,)).fetchone():
                return False
            twin = w.execute("SELECT name FROM model WHERE code_hash = ?", (rec.code_hash,)).fetchone()
            if twin:
                raise CatalogError(f"code hash {rec.code_hash[:8]} is already catalogued as {twin[0]}")
            if not code_stored:
                w.execute("INSERT INTO nn (name, code, id) VALUES (?, ?, ?)",
                          (rec.name, rec.code, lemur_id(rec.code)))
            w.execute(
                "INSERT INTO model (name, family, task, dataset, metric, code_hash, struct_hash, "
                "template_params, parent, origin, n_params, status, run_id, created, updated, profile) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
                (rec.name, rec.family, rec.task, rec.dataset, rec.metric, rec.code_hash, rec.struct_hash,
                 json.dumps(rec.template_params, sort_keys=True, default=str), rec.parent, rec.origin,
                 rec.n_params, run_id, now, now, rec.profile))
            self._insert_event(w, rec.name, "queued", None, None, run_id, now)
        return True

    def add_lemur_model(self, rec: ModelRecord, run_id: str | None = None) -> bool:
        """Store an imported LEMUR model's code under its own name; True when it also became a model row.

        LEMUR keeps every file, so the nn row is always written; a file whose normalised code is
        already a model (differing only in comments or local names) stays an nn row of LEMUR's
        only, its results still in data(). False as well when the name is taken.
        """
        with self._write() as w:
            if w.execute("SELECT 1 FROM nn WHERE name = ?", (rec.name,)).fetchone():
                return False
            w.execute("INSERT INTO nn (name, code, id) VALUES (?, ?, ?)", (rec.name, rec.code, lemur_id(rec.code)))
            if w.execute("SELECT 1 FROM model WHERE code_hash = ?", (rec.code_hash,)).fetchone():
                return False
        return self.add_model(rec, run_id=run_id, code_stored=True)

    def nn_code(self, name: str) -> str | None:
        """The code LEMUR's nn table holds under `name`, or None."""
        row = self.db.conn.execute("SELECT code FROM nn WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def nn_named_by_id(self, code_id: str) -> str | None:
        """The nn row whose LEMUR id (lemur_id of its code) is `code_id`, or None."""
        row = self.db.conn.execute("SELECT name FROM nn WHERE id = ? ORDER BY rowid LIMIT 1", (code_id,)).fetchone()
        return row[0] if row else None

    def lemur_records(self, stat_ids: list[str]) -> dict[str, dict]:
        """The imported records behind these stat rows, as they were read (rows nas-agent trained have none)."""
        rows = self._rows("SELECT stat_id, record FROM lemur_record WHERE stat_id IN (SELECT value FROM json_each(?))",
                          (json.dumps(stat_ids),))
        return {r["stat_id"]: json.loads(r["record"]) for r in rows}

    def get_model(self, name: str) -> dict | None:
        """The model's row plus its `code`, with template_params decoded; None if unknown."""
        rows = self._rows("SELECT m.*, n.code FROM model m JOIN nn n ON n.name = m.name "
                          "WHERE m.name = ?", (name,))
        return _decode_model(rows[0]) if rows else None

    def resolve_name(self, text: str) -> str | None:
        """The model named `text`, or the only one whose name contains it (such as its hash)."""
        if self.get_model(text) is not None:
            return text
        matches = self._rows("SELECT name FROM nn WHERE instr(name, ?) > 0 LIMIT 2", (text,))
        return matches[0]["name"] if len(matches) == 1 else None

    def find_by_code_hash(self, code_hash: str) -> str | None:
        """Name of the model with this normalised-code hash, if any."""
        rows = self._rows("SELECT name FROM model WHERE code_hash = ?", (code_hash,))
        return rows[0]["name"] if rows else None

    def find_by_struct_hash(self, struct_hash: str) -> list[str]:
        """Names of the models sharing this structure hash, oldest first."""
        rows = self._rows("SELECT name FROM model WHERE struct_hash = ? ORDER BY rowid", (struct_hash,))
        return [r["name"] for r in rows]

    def set_status(self, name: str, status: str, reason: str | None = None,
                   run_id: str | None = None, stage: str | None = None) -> None:
        """Move a model to `status` and log an event of that kind, atomically."""
        if status not in MODEL_STATUSES:
            raise ValueError(f"status must be one of {', '.join(MODEL_STATUSES)}, not {status!r}")
        now = _utc_now()
        with self._write() as w:
            changed = w.execute("UPDATE model SET status = ?, reason = ?, updated = ?, "
                                "run_id = COALESCE(?, run_id) WHERE name = ?",
                                (status, reason, now, run_id, name)).rowcount
            if not changed:
                raise CatalogError(f"no model named {name} in the catalog")
            self._insert_event(w, name, status, stage, reason, run_id, now)

    def set_model_facts(self, name: str, *, n_params: int | None = None,
                        struct_hash: str | None = None) -> None:
        """Fill in facts learnt after the model was added; None leaves a fact as it is."""
        with self._write() as w:
            changed = w.execute("UPDATE model SET n_params = COALESCE(?, n_params), "
                                "struct_hash = COALESCE(?, struct_hash), updated = ? WHERE name = ?",
                                (n_params, struct_hash, _utc_now(), name)).rowcount
            if not changed:
                raise CatalogError(f"no model named {name} in the catalog")

    def models(self, status: str | None = None, task: str | None = None) -> list[dict]:
        """Model rows (without code) in the order they were added, optionally filtered."""
        rows = self._rows("SELECT * FROM model WHERE (:status IS NULL OR status = :status) "
                          "AND (:task IS NULL OR task = :task) ORDER BY rowid",
                          {"status": status, "task": task})
        return [_decode_model(r) for r in rows]

    # --- results -------------------------------------------------------------

    def record_epoch(self, rec: EpochRecord) -> str:
        """Store one epoch nas-agent trained (prm, stat and train_stat rows) atomically; return the stat id.

        The stat row is LEMUR's: its id `stat_id(...)` of its values, `duration` the nanoseconds since
        the trial's first epoch began. Recording the same epoch of the same trial again replaces it.
        The model, transform and metric must already be in the catalog.
        """
        uid = rec.uid or prm_uid(rec.prm)
        trial = {"nn": rec.nn, "prm": uid, "transform": rec.transform, "metric": rec.metric, "task": rec.task,
                 "dataset": rec.dataset}
        with self._write() as w:
            known = w.execute("SELECT EXISTS (SELECT 1 FROM nn WHERE name = ?), "
                              "EXISTS (SELECT 1 FROM transform WHERE name = ?), "
                              "EXISTS (SELECT 1 FROM metric WHERE name = ?)",
                              (rec.nn, rec.transform, rec.metric)).fetchone()
            for ok, what, name in zip(known, ("model", "transform", "metric"),
                                      (rec.nn, rec.transform, rec.metric)):
                if not ok:
                    raise CatalogError(f"no {what} named {name} in the catalog; add or register it first")
            before = w.execute(f"SELECT MAX(duration) FROM stat WHERE {_SAME_TRIAL} AND epoch = :epoch - 1",
                               {**trial, "epoch": rec.epoch}).fetchone()[0]
            duration = (before or 0) + round(rec.duration_s * 1e9)
            w.execute(f"DELETE FROM stat WHERE {_SAME_TRIAL} AND epoch = :epoch", {**trial, "epoch": rec.epoch})
            if not w.execute("SELECT 1 FROM prm WHERE uid = ? LIMIT 1", (uid,)).fetchone():
                w.executemany("INSERT INTO prm (uid, name, value) VALUES (?, ?, ?)", _prm_rows(uid, rec.prm))
            row_id = stat_id(rec.transform, uid, rec.task, rec.dataset, rec.metric, rec.nn, rec.epoch, duration,
                             rec.accuracy)
            w.execute(_INSERT_STAT, {**trial, "id": row_id, "accuracy": rec.accuracy, "epoch": rec.epoch,
                                     "duration": duration})
            w.execute(_UPSERT_TRAIN_STAT, {
                "stat_id": row_id, "train_loss": rec.train_loss, "test_loss": rec.test_loss,
                "train_accuracy": rec.train_accuracy, "samples_per_second": rec.samples_per_second,
                "epoch_max": rec.epoch_max, "gpu_type": rec.gpu_type,
                "gpu_memory_kb": rec.gpu_memory_kb, "occupied_ram_kb": rec.occupied_ram_kb})
        return row_id

    def add_lemur_record(self, task: str, dataset: str, metric: str, nn: str, epoch: int, record: dict) -> str:
        """Store one trial record of an nn-dataset stat file as LEMUR's save_stat does; return its stat id.

        Every scalar key but uid, duration and accuracy becomes a prm row of the record's uid (transform
        and flat training statistics included); a nested train_stat becomes a train_stat row (the flat
        epoch_max standing in for a missing one); a record whose nine values repeat an earlier one's
        is that row. The record itself is kept as it was (lemur_record), so an export writes it back
        unchanged. nn, the metric and the transform must be in the catalog.
        """
        train_stat = dict(record["train_stat"]) if isinstance(record.get("train_stat"), dict) else {}
        scalars = {k: v for k, v in record.items() if not isinstance(v, (dict, list))}
        if train_stat.get("epoch_max") is None and scalars.get("epoch_max") is not None:
            train_stat["epoch_max"] = scalars["epoch_max"]
        uid = scalars.pop("uid")
        duration, accuracy = scalars.pop("duration", None), scalars.pop("accuracy", None)
        transform = scalars["transform"]
        row_id = stat_id(transform, uid, task, dataset, metric, nn, epoch, duration, accuracy)
        with self._write() as w:
            w.executemany("INSERT INTO prm (uid, name, value) SELECT ?, ?, ? WHERE NOT EXISTS "
                          "(SELECT 1 FROM prm WHERE uid = ?1 AND name = ?2 AND value IS ?3)", _prm_rows(uid, scalars))
            w.execute(_INSERT_STAT, {"id": row_id, "accuracy": accuracy, "epoch": epoch, "duration": duration,
                                     "task": task, "dataset": dataset, "nn": nn, "transform": transform,
                                     "metric": metric, "prm": uid})
            w.execute("INSERT OR IGNORE INTO lemur_record (stat_id, record) VALUES (?, ?)",
                      (row_id, json.dumps(record)))
            if train_stat:
                fields = [c for c in schema.schema_columns()["train_stat"] if c != "stat_id"]
                w.execute(f"INSERT OR REPLACE INTO train_stat (stat_id, {', '.join(fields)}) "
                          f"VALUES (?, {', '.join('?' * len(fields))})",
                          (row_id, *[_scalar(train_stat.get(f)) for f in fields]))
        return row_id

    def epochs(self, name: str) -> list[dict]:
        """The model's stat rows joined with train_stat, by epoch; `duration` in ns since the trial began,
        `seconds` that epoch's own time (None where LEMUR's records have no duration)."""
        return self._rows("SELECT s.*, s.rowid AS stored, (s.duration - COALESCE(LAG(s.duration) OVER (PARTITION BY s.prm, s.transform, "
                          "s.metric, s.task, s.dataset ORDER BY s.epoch), 0)) / 1e9 AS seconds, t.* FROM stat s "
                          "LEFT JOIN train_stat t ON t.stat_id = s.id "
                          "WHERE s.nn = ? ORDER BY s.epoch, s.prm", (name,))

    def leaderboard(self, task: str | None = None, top: int | None = None,
                    origin: str | None = None, names: list[str] | None = None) -> list[dict]:
        """One row per model with results, best first (ties: fewer parameters first), task by task.

        "Best" follows the metric: the highest accuracy, the lowest bits/dim (LOWER_IS_BETTER_METRICS).
        Keys: rank, name, family, task, dataset, metric, accuracy (the best score), epoch (of the
        best), n_params, seconds_per_epoch (mean), origin, status. `names` limits the
        ranking to those models (e.g. the ones one run trained).
        """
        rows = self._rows(_LEADERBOARD, {"task": task, "origin": origin, "lower": json.dumps(LOWER_IS_BETTER_METRICS),
                                         "names": None if names is None else json.dumps(list(names)),
                                         "top": -1 if top is None else top})
        return [{"rank": i, **row} for i, row in enumerate(rows, start=1)]

    def trial_prms(self, uids: list[str]) -> dict[str, dict]:
        """The hyperparameters of each trial uid, as dicts (scalars in their stored type)."""
        prm: dict[str, dict] = {}
        # Name, then value order, as LEMUR's data() merges them: of several values of a name, the largest wins.
        for p in self._rows("SELECT uid, name, value FROM prm "
                            "WHERE uid IN (SELECT value FROM json_each(?)) ORDER BY uid, name, value",
                            (json.dumps(sorted(set(uids))),)):
            prm.setdefault(p["uid"], {})[p["name"]] = p["value"]
        return prm

    # --- runs and events -----------------------------------------------------

    def start_run(self, command: str, config: dict) -> str:
        """Open a run and return its id, e.g. ``20261122-153000-ab12``."""
        now = datetime.now(timezone.utc)
        run_id = f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
        with self._write() as w:
            w.execute("INSERT INTO nas_run (id, command, config, started, status) VALUES (?, ?, ?, ?, 'running')",
                      (run_id, command, json.dumps(config, sort_keys=True, default=str),
                       now.isoformat(timespec="seconds")))
        return run_id

    def end_run(self, run_id: str, status: str) -> None:
        """Close a run with a final status (finished, interrupted or failed)."""
        if status not in RUN_STATUSES:
            raise ValueError(f"run status must be one of {', '.join(RUN_STATUSES)}, not {status!r}")
        with self._write() as w:
            if not w.execute("UPDATE nas_run SET status = ?, ended = ? WHERE id = ?",
                             (status, _utc_now(), run_id)).rowcount:
                raise CatalogError(f"no run {run_id} in the catalog")

    def runs(self) -> list[dict]:
        """All runs, oldest first, config decoded."""
        rows = self._rows("SELECT * FROM nas_run ORDER BY started, id")
        return [{**r, "config": json.loads(r["config"]) if r["config"] else {}} for r in rows]

    def add_event(self, nn: str | None, kind: str, stage: str | None = None,
                  reason: str | None = None, run_id: str | None = None) -> None:
        """Append one event to the log (e.g. a rejected proposal, with its stage and reason)."""
        with self._write() as w:
            self._insert_event(w, nn, kind, stage, reason, run_id, _utc_now())

    @staticmethod
    def _insert_event(w: sqlite3.Connection, nn, kind, stage, reason, run_id, at) -> None:
        if kind not in EVENT_KINDS:
            raise ValueError(f"event kind must be one of {', '.join(EVENT_KINDS)}, not {kind!r}")
        w.execute("INSERT INTO event (run_id, nn, kind, stage, reason, at) VALUES (?, ?, ?, ?, ?, ?)",
                  (run_id, nn, kind, stage, reason, at))

    def events(self, nn: str | None = None, kind: str | None = None) -> list[dict]:
        """Events in the order they happened, optionally for one model and/or one kind."""
        return self._rows("SELECT * FROM event WHERE (:nn IS NULL OR nn = :nn) "
                          "AND (:kind IS NULL OR kind = :kind) ORDER BY id", {"nn": nn, "kind": kind})

    # --- LLM calls --------------------------------------------------------------

    def add_llm_call(self, **fields) -> int:
        """Record one completion of an LLM call and the verdict of what it produced; returns its id."""
        known = set(schema.schema_columns()["llm_call"]) - {"id", "at"}
        unknown = set(fields) - known
        if unknown:
            raise ValueError(f"unknown llm_call field(s): {', '.join(sorted(unknown))}")
        if isinstance(fields.get("sampling"), dict):
            fields["sampling"] = json.dumps(fields["sampling"], sort_keys=True)
        if "ok" in fields and fields["ok"] is not None:
            fields["ok"] = int(bool(fields["ok"]))
        fields["at"] = _utc_now()
        columns = ", ".join(fields)
        with self._write() as w:
            cursor = w.execute(f"INSERT INTO llm_call ({columns}) VALUES ({', '.join('?' * len(fields))})",
                               tuple(fields.values()))
            return cursor.lastrowid

    def llm_calls(self, run_id: str | None = None, parent: str | None = None, ok: bool | None = None,
                  last: int | None = None) -> list[dict]:
        """Recorded LLM completions, oldest first (`last`: only the newest N), filtered by run, parent, outcome."""
        rows = self._rows("SELECT * FROM llm_call WHERE (:run IS NULL OR run_id = :run) "
                          "AND (:parent IS NULL OR parent = :parent) AND (:ok IS NULL OR ok = :ok) "
                          "ORDER BY id DESC LIMIT :limit",
                          {"run": run_id, "parent": parent, "ok": None if ok is None else int(ok),
                           "limit": -1 if last is None else last})
        return rows[::-1]

    def judge_llm_call(self, call_id: int, *, ok: bool, stage: str | None, reason: str, code_hash: str | None,
                       nn: str | None = None) -> None:
        """Record the verdict on what an LLM completion produced, and the catalogued model it became (if any)."""
        with self._write() as w:
            w.execute("UPDATE llm_call SET ok = ?, stage = ?, reason = ?, code_hash = ?, nn = ? WHERE id = ?",
                      (int(bool(ok)), stage, reason, code_hash, nn, call_id))

    # --- search proposals --------------------------------------------------------

    def add_proposal(self, **fields) -> int:
        """Record one proposal of a search strategy and its verdict; returns its id.

        Fields: run_id, round, strategy, parent, change (one line: what was changed), nn (the
        catalogued model it became or repeats), code_hash, prm (HPO trials: the recipe as a dict),
        ok, stage and reason (the verdict), status (queued, done, failed, stopped, duplicate, rejected),
        accuracy (the best test accuracy its training reached).
        """
        known = set(schema.schema_columns()["proposal"]) - {"id", "at"}
        unknown = set(fields) - known
        if unknown:
            raise ValueError(f"unknown proposal field(s): {', '.join(sorted(unknown))}")
        if isinstance(fields.get("prm"), dict):
            fields["prm"] = json.dumps(fields["prm"], sort_keys=True, default=str)
        if fields.get("ok") is not None:
            fields["ok"] = int(bool(fields["ok"]))
        fields["at"] = _utc_now()
        with self._write() as w:
            cursor = w.execute(f"INSERT INTO proposal ({', '.join(fields)}) VALUES ({', '.join('?' * len(fields))})",
                               tuple(fields.values()))
            return cursor.lastrowid

    def update_proposal(self, proposal_id: int, *, status: str, accuracy: float | None = None,
                        reason: str | None = None) -> None:
        """Set what became of a proposal after training."""
        with self._write() as w:
            w.execute("UPDATE proposal SET status = ?, accuracy = COALESCE(?, accuracy), "
                      "reason = COALESCE(?, reason) WHERE id = ?", (status, accuracy, reason, proposal_id))

    def proposals(self, run_id: str | None = None, strategy: str | None = None,
                  status: str | None = None) -> list[dict]:
        """Recorded proposals, oldest first, `prm` decoded, optionally filtered."""
        rows = self._rows("SELECT * FROM proposal WHERE (:run IS NULL OR run_id = :run) "
                          "AND (:strategy IS NULL OR strategy = :strategy) AND (:status IS NULL OR status = :status) "
                          "ORDER BY id", {"run": run_id, "strategy": strategy, "status": status})
        return [{**r, "prm": json.loads(r["prm"]) if r["prm"] else None} for r in rows]

    # --- pre-training variants -----------------------------------------------------

    def record_pretrain_variant(self, **fields) -> None:
        """Store (or update) how one fine-tuning trial was pre-trained; keyed by (nn, prm), prm the trial uid.

        Fields: nn, prm, variant (scratch, fractal, stylized-fractal-<method>), dataset_hash,
        dataset_params (dict), dataset_path, stylize, pretrain_epochs, pretrain_accuracy (on the
        synthetic test views), pretrain_seconds, finetune_subset, finetune_epochs, accuracy (best
        fine-tuned test accuracy), final_accuracy, seed, status, reason, run_id.
        """
        known = set(schema.schema_columns()["pretrain_variant"]) - {"id", "created", "updated"}
        unknown = set(fields) - known
        if unknown or not {"nn", "prm"} <= set(fields):
            raise ValueError(f"pretrain_variant needs nn and prm; unknown field(s): {', '.join(sorted(unknown))}")
        if isinstance(fields.get("dataset_params"), dict):
            fields["dataset_params"] = json.dumps(fields["dataset_params"], sort_keys=True, default=str)
        now = _utc_now()
        columns = [*fields, "created", "updated"]
        updates = ", ".join(f"{c} = excluded.{c}" for c in [*fields, "updated"] if c not in ("nn", "prm"))
        with self._write() as w:
            w.execute(f"INSERT INTO pretrain_variant ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
                      f"ON CONFLICT (nn, prm) DO UPDATE SET {updates}", (*fields.values(), now, now))

    def pretrain_variants(self, nn: str | None = None, status: str | None = None) -> list[dict]:
        """Pre-training variants in the order they were first recorded, dataset_params decoded."""
        rows = self._rows("SELECT * FROM pretrain_variant WHERE (:nn IS NULL OR nn = :nn) "
                          "AND (:status IS NULL OR status = :status) ORDER BY id", {"nn": nn, "status": status})
        return [{**r, "dataset_params": json.loads(r["dataset_params"]) if r["dataset_params"] else {}} for r in rows]

    def get_run(self, run_id: str) -> dict | None:
        """One run's row, config decoded; None if unknown."""
        rows = self._rows("SELECT * FROM nas_run WHERE id = ?", (run_id,))
        return {**rows[0], "config": json.loads(rows[0]["config"]) if rows[0]["config"] else {}} if rows else None

    def reopen_run(self, run_id: str) -> None:
        """Mark a run running again (resuming it)."""
        with self._write() as w:
            if not w.execute("UPDATE nas_run SET status = 'running', ended = NULL WHERE id = ?", (run_id,)).rowcount:
                raise CatalogError(f"no run {run_id} in the catalog")

    @contextmanager
    def run(self, command: str, config: dict, *, resume: str | None = None) -> Iterator[Run]:
        """A run for the length of the block (a new one, or `resume`'s re-opened), always closed.

        It ends "finished" when the block does, "interrupted" on Ctrl-C, "failed" on any other
        error (both re-raised), unless the block set `run.status` itself.
        """
        if resume:
            self.reopen_run(resume)
        current = Run(resume or self.start_run(command, config))
        try:
            yield current
        except KeyboardInterrupt:
            current.status = current.status or "interrupted"
            raise
        except BaseException:
            current.status = current.status or "failed"
            raise
        finally:
            self.end_run(current.id, current.status or "finished")

    def best_accuracy(self, name: str, prm: dict | None = None) -> float | None:
        """The model's best test accuracy over all its trials, or over the trial with these hyperparameters."""
        # The best in the metric's direction: the lowest bits/dim, the highest accuracy.
        row = self.db.conn.execute(
            "SELECT CASE WHEN MAX(metric) IN (SELECT value FROM json_each(?)) THEN MIN(accuracy) "
            "ELSE MAX(accuracy) END FROM stat WHERE nn = ? AND (? IS NULL OR prm = ?)",
            (json.dumps(LOWER_IS_BETTER_METRICS), name, None if prm is None else prm_uid(prm),
             None if prm is None else prm_uid(prm))).fetchone()
        return row[0]

    def lineage(self, name: str) -> list[str]:
        """Ancestors of `name` from the root down to `name` itself; [] for an unknown model.

        A parent outside the catalog (e.g. a template) ends the chain as its root.
        """
        if self.get_model(name) is None:
            return []
        chain = [name]
        parent = self._parent(name)
        # The `not in chain` guard stops a hand-edited cycle from looping forever.
        while parent and parent not in chain:
            chain.append(parent)
            parent = self._parent(parent)
        return chain[::-1]

    def _parent(self, name: str) -> str | None:
        rows = self._rows("SELECT parent FROM model WHERE name = ?", (name,))
        return rows[0]["parent"] if rows else None


def _decode_model(row: dict) -> dict:
    params = row.get("template_params")
    return {**row, "template_params": json.loads(params) if params else {}}
