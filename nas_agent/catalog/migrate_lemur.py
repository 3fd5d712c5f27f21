"""Migration 5: an existing catalog takes LEMUR's names, ids and durations, and leaves LEMUR's `run` name free.

Before it, a model was named ``<task>_<dataset>_<metric>_<family>-<hash8>``, nn.id held our
normalised-code hash, a stat id hashed (nn, trial, transform, metric, epoch), a duration was one
epoch's nanoseconds (imports stored LEMUR's missing durations as 0), and our runs lived in a
table named `run`, which is LEMUR's mobile-analytics table. After it, every name, id and
duration is what LEMUR itself would hold for the same rows, and every row is kept.
"""

from __future__ import annotations

import sqlite3

from nas_agent.catalog.records import lemur_id, stat_id

# Where model names appear (table, column), besides nn.name and model.name themselves.
NAME_COLUMNS = (("stat", "nn"), ("model", "parent"), ("proposal", "nn"), ("proposal", "parent"),
                ("llm_call", "nn"), ("llm_call", "parent"), ("event", "nn"), ("pretrain_variant", "nn"))


def upgrade(conn: sqlite3.Connection) -> None:
    """Run inside the migration's transaction (foreign keys are checked when it commits)."""
    conn.execute("PRAGMA defer_foreign_keys = ON")
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "run" in tables and "nas_run" not in tables:
        conn.execute("ALTER TABLE run RENAME TO nas_run")
    _rename_models(conn, tables)
    for table in ("nn", "metric", "transform"):
        rows = conn.execute(f"SELECT name, code FROM {table}").fetchall()
        conn.executemany(f"UPDATE {table} SET id = ? WHERE name = ?", [(lemur_id(code), name) for name, code in rows])
    _lemur_durations(conn)
    _lemur_stat_ids(conn)


def _rename_models(conn: sqlite3.Connection, tables: set[str]) -> None:
    """Long names become LEMUR's: an imported model its own short name, ours `<family>-<lemur_id(code)>`."""
    renames = {}
    for name, code, family, origin in conn.execute(
            "SELECT n.name, n.code, m.family, m.origin FROM nn n LEFT JOIN model m ON m.name = n.name"):
        if name.count("_") < 3:
            continue   # already a LEMUR name
        short = name.split("_", 3)[3]
        renames[name] = short if origin == "lemur" or not family else f"{family}-{lemur_id(code)}"
    taken = {row[0] for row in conn.execute("SELECT name FROM nn")} - set(renames)
    for old, new in list(renames.items()):
        if new in taken:           # a short name held already by another model: keep the old one
            del renames[old]
        taken.add(renames.get(old, old))
    pairs = [(new, old) for old, new in renames.items()]
    conn.executemany("UPDATE nn SET name = ? WHERE name = ?", pairs)
    conn.executemany("UPDATE model SET name = ? WHERE name = ?", pairs)
    for table, column in NAME_COLUMNS:
        if table in tables:
            conn.executemany(f"UPDATE {table} SET {column} = ? WHERE {column} = ?", pairs)


def _lemur_durations(conn: sqlite3.Connection) -> None:
    """Imported zeros were missing values (NULL); our own per-epoch nanoseconds become cumulative per trial."""
    conn.execute("UPDATE stat SET duration = NULL WHERE duration = 0 AND nn IN "
                 "(SELECT name FROM model WHERE origin = 'lemur')")
    conn.execute("""
        UPDATE stat SET duration = (
            SELECT SUM(earlier.duration) FROM stat earlier
            WHERE earlier.nn = stat.nn AND earlier.prm = stat.prm AND earlier.transform = stat.transform
              AND earlier.metric = stat.metric AND earlier.task = stat.task AND earlier.dataset = stat.dataset
              AND earlier.epoch <= stat.epoch)
        WHERE duration IS NOT NULL AND nn NOT IN (SELECT name FROM model WHERE origin = 'lemur')""")


def _lemur_stat_ids(conn: sqlite3.Connection) -> None:
    rows = conn.execute("SELECT id, transform, prm, task, dataset, metric, nn, epoch, duration, accuracy "
                        "FROM stat").fetchall()
    for old, transform, uid, task, dataset, metric, nn, epoch, duration, accuracy in rows:
        new = stat_id(transform, uid, task, dataset, metric, nn, epoch, duration, accuracy)
        if new != old:
            conn.execute("UPDATE stat SET id = ? WHERE id = ?", (new, old))
            conn.execute("UPDATE train_stat SET stat_id = ? WHERE stat_id = ?", (new, old))
