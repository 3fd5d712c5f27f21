"""The catalog's schema: LEMUR's tables as nn-dataset creates them, ours beside them, and the
ordered migrations that bring a user's existing catalog up to date. DDL only; no queries."""

from __future__ import annotations

import functools
import sqlite3
from dataclasses import dataclass
from typing import Callable

from nas_agent.catalog import migrate_lemur

# LEMUR's tables, as ab/nn/util/db/Init.py of nn-dataset creates them. One
# deliberate difference: LEMUR also declares stat.prm REFERENCES prm(uid), but
# prm.uid is not unique, and with foreign keys enforced (as here) SQLite rejects
# every insert into such a table with "foreign key mismatch".
LEMUR_SCHEMA = """
CREATE TABLE IF NOT EXISTS nn (
    name TEXT PRIMARY KEY,
    code TEXT NOT NULL,
    id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_nn_id ON nn(id);
CREATE TABLE IF NOT EXISTS transform (
    name TEXT PRIMARY KEY,
    code TEXT NOT NULL,
    id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS metric (
    name TEXT PRIMARY KEY,
    code TEXT NOT NULL,
    id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS prm (
    uid TEXT NOT NULL,
    name TEXT NOT NULL,
    value OBJECT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_prm_uid ON prm(uid, name, value);
CREATE TABLE IF NOT EXISTS stat (
    id TEXT PRIMARY KEY,
    accuracy REAL,
    epoch INTEGER,
    duration INTEGER,
    task TEXT,
    dataset TEXT,
    nn TEXT,
    transform TEXT,
    metric TEXT,
    prm TEXT,
    FOREIGN KEY (nn) REFERENCES nn (name) ON DELETE CASCADE,
    FOREIGN KEY (transform) REFERENCES transform (name) ON DELETE CASCADE,
    FOREIGN KEY (metric) REFERENCES metric (name) ON DELETE CASCADE);
CREATE INDEX IF NOT EXISTS idx_accuracy_desc ON stat (accuracy DESC);
CREATE INDEX IF NOT EXISTS idx_task ON stat (task);
CREATE INDEX IF NOT EXISTS idx_dataset ON stat (dataset);
CREATE INDEX IF NOT EXISTS idx_nn ON stat (nn);
CREATE INDEX IF NOT EXISTS idx_transform ON stat (transform);
CREATE INDEX IF NOT EXISTS idx_metric ON stat (metric);
CREATE INDEX IF NOT EXISTS idx_prm ON stat (prm);
CREATE TABLE IF NOT EXISTS train_stat (
    stat_id TEXT PRIMARY KEY,
    train_loss REAL,
    test_loss REAL,
    train_accuracy REAL,
    gradient_norm REAL,
    samples_per_second REAL,
    epoch_max INTEGER,
    cpu_count INTEGER,
    cpu_type TEXT,
    cpu_usage_percent REAL,
    total_ram_kb REAL,
    occupied_ram_kb REAL,
    ram_usage_percent REAL,
    gpu_type TEXT,
    gpu_memory_kb REAL,
    gpu_total_memory_kb REAL,
    occupied_gpu_memory_kb REAL,
    gpu_memory_usage_percent REAL,
    FOREIGN KEY (stat_id) REFERENCES stat(id) ON DELETE CASCADE);
CREATE INDEX IF NOT EXISTS idx_train_stat_gradient_norm ON train_stat (gradient_norm);
CREATE INDEX IF NOT EXISTS idx_train_stat_samples_per_second ON train_stat (samples_per_second);
"""

OWN_SCHEMA = """
CREATE TABLE IF NOT EXISTS model (
    name TEXT PRIMARY KEY REFERENCES nn (name) ON DELETE CASCADE,
    family TEXT,
    task TEXT,
    dataset TEXT,
    metric TEXT,
    code_hash TEXT,
    struct_hash TEXT,
    template_params TEXT,
    parent TEXT,
    origin TEXT,
    n_params INTEGER,
    status TEXT,
    reason TEXT,
    run_id TEXT,
    created TEXT,
    updated TEXT,
    profile TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS idx_model_code_hash ON model (code_hash);
CREATE INDEX IF NOT EXISTS idx_model_struct_hash ON model (struct_hash);
CREATE INDEX IF NOT EXISTS idx_model_status ON model (status);
CREATE INDEX IF NOT EXISTS idx_model_origin ON model (origin);
CREATE INDEX IF NOT EXISTS idx_model_family ON model (family);
CREATE TABLE IF NOT EXISTS nas_run (
    id TEXT PRIMARY KEY,
    command TEXT,
    config TEXT,
    started TEXT,
    ended TEXT,
    status TEXT);
CREATE TABLE IF NOT EXISTS event (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT,
    nn TEXT,
    kind TEXT,
    stage TEXT,
    reason TEXT,
    at TEXT);
CREATE INDEX IF NOT EXISTS idx_event_nn ON event (nn);
CREATE INDEX IF NOT EXISTS idx_event_kind ON event (kind);
CREATE TABLE IF NOT EXISTS llm_call (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT,
    purpose TEXT,
    parent TEXT,
    backend TEXT,
    model TEXT,
    sampling TEXT,
    prompt TEXT,
    completion TEXT,
    reasoning_chars INTEGER,
    tokens_in INTEGER,
    tokens_out INTEGER,
    latency_s REAL,
    finish_reason TEXT,
    ok INTEGER,
    stage TEXT,
    reason TEXT,
    code_hash TEXT,
    nn TEXT,
    at TEXT);
CREATE INDEX IF NOT EXISTS idx_llm_call_run ON llm_call (run_id);
CREATE INDEX IF NOT EXISTS idx_llm_call_parent ON llm_call (parent, ok);
CREATE TABLE IF NOT EXISTS proposal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT,
    round INTEGER,
    strategy TEXT,
    parent TEXT,
    change TEXT,
    nn TEXT,
    code_hash TEXT,
    prm TEXT,
    trial INTEGER,
    ok INTEGER,
    stage TEXT,
    reason TEXT,
    status TEXT,
    accuracy REAL,
    at TEXT);
CREATE INDEX IF NOT EXISTS idx_proposal_run ON proposal (run_id, round);
CREATE INDEX IF NOT EXISTS idx_proposal_nn ON proposal (nn);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT);
CREATE TABLE IF NOT EXISTS pretrain_variant (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    nn TEXT REFERENCES nn (name) ON DELETE CASCADE,
    prm TEXT,
    variant TEXT,
    dataset_hash TEXT,
    dataset_params TEXT,
    dataset_path TEXT,
    stylize TEXT,
    pretrain_epochs INTEGER,
    pretrain_accuracy REAL,
    pretrain_seconds REAL,
    finetune_subset INTEGER,
    finetune_epochs INTEGER,
    accuracy REAL,
    final_accuracy REAL,
    seed INTEGER,
    status TEXT,
    reason TEXT,
    run_id TEXT,
    created TEXT,
    updated TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS idx_pretrain_variant_trial ON pretrain_variant (nn, prm);
CREATE TABLE IF NOT EXISTS lemur_record (
    stat_id TEXT PRIMARY KEY REFERENCES stat (id) ON DELETE CASCADE,
    record TEXT NOT NULL);
"""

LEMUR_TABLES = ("nn", "transform", "metric", "prm", "stat", "train_stat")
# Named so that none shadows a table of LEMUR's (it has run, tflite, prun, nn_stat, layer_stat, ...).
OWN_TABLES = ("model", "nas_run", "event", "llm_call", "proposal", "meta", "pretrain_variant", "lemur_record")


@dataclass(frozen=True)
class Migration:
    """One step of the schema, from `version - 1` to `version`, applied to a user's existing catalog.

    New tables and indexes need no step of their own (the DDL above creates what is missing);
    a step adds columns to tables that exist, then runs its statements, in one transaction.
    """

    version: int
    why: str
    add_columns: tuple[tuple[str, str, str], ...] = ()    # (table, column, declaration)
    statements: tuple[str, ...] = ()
    upgrade: Callable[[sqlite3.Connection], None] | None = None   # a step SQL alone cannot express


# Ordered, append-only: a catalog stamped N gets every step above N when it is opened.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(3, "the pretrain_variant table: fractal pre-training variants of a trial"),
    Migration(4, "model.profile: the policy profile (strict or reviewed) a model was validated under",
              add_columns=(("model", "profile", "TEXT"),),
              statements=("UPDATE model SET profile = CASE WHEN origin = 'lemur' THEN 'reviewed' ELSE 'strict' END "
                          "WHERE profile IS NULL",)),
    Migration(5, "LEMUR's names, ids and cumulative durations; our runs in nas_run (LEMUR has a run table)",
              upgrade=migrate_lemur.upgrade),
)
SCHEMA_VERSION = MIGRATIONS[-1].version

def pending(version: int | None) -> list[Migration]:
    """The steps a catalog stamped `version` still needs; none for a new file (the DDL makes it current)."""
    return [] if version is None else [m for m in MIGRATIONS if m.version > version]


def statements(script: str) -> list[str]:
    """The statements of a DDL script, one by one."""
    return [s.strip() for s in script.split(";") if s.strip()]


@functools.lru_cache(maxsize=1)
def schema_columns() -> dict[str, list[str]]:
    """Column names of every catalog table, read back from the DDL itself."""
    mem = sqlite3.connect(":memory:")
    try:
        mem.executescript(LEMUR_SCHEMA + OWN_SCHEMA)
        return {t: [row[1] for row in mem.execute(f"PRAGMA table_info({t})")]
                for t in LEMUR_TABLES + OWN_TABLES}
    finally:
        mem.close()
