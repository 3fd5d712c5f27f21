"""LEMUR's view of the catalog: `data()` returns what nn-dataset's `ab.nn.api.data()` returns.

The catalog holds LEMUR's own tables (nn, metric, transform, prm, stat, train_stat) with LEMUR's
names, ids and durations, so this is LEMUR's query: the same 16 columns in the same order, the
rows ordered by task, dataset, metric, nn and epoch, `prm` every hyperparameter stored under the
row's trial uid (transform included), `duration` nanoseconds since the trial began (NaN where
a record has none). `only_best_accuracy` keeps every row whose accuracy is the best of its
(task, dataset, metric, nn, epoch), ties included.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from nas_agent.catalog.store import Catalog, CatalogError

DATA_COLUMNS = ("id", "task", "dataset", "metric", "metric_code", "metric_id", "nn", "nn_code", "nn_id",
                "epoch", "accuracy", "duration", "prm_id", "transform_code", "transform_id", "prm")
FILTERS = ("task", "dataset", "metric", "nn", "epoch")

_SELECT = """
SELECT s.id, s.task, s.dataset, s.metric, m.code AS metric_code, m.id AS metric_id,
       s.nn, n.code AS nn_code, n.id AS nn_id, s.epoch, s.accuracy, s.duration,
       s.prm AS prm_id, t.code AS transform_code, t.id AS transform_id
FROM {rows} s
LEFT JOIN nn n ON n.name = s.nn
LEFT JOIN metric m ON m.name = s.metric
LEFT JOIN transform t ON t.name = s.transform
ORDER BY s.task, s.dataset, s.metric, s.nn, s.epoch
"""
_BEST = """(
    WITH chosen AS (SELECT * FROM stat {where})
    SELECT c.* FROM chosen c
    JOIN (SELECT task, dataset, metric, nn, epoch, MAX(accuracy) AS best FROM chosen
          GROUP BY task, dataset, metric, nn, epoch) b
      ON c.task = b.task AND c.dataset = b.dataset AND c.metric = b.metric AND c.nn = b.nn
     AND c.epoch = b.epoch AND c.accuracy = b.best)"""


def data(catalog: Catalog | str | os.PathLike, only_best_accuracy: bool = False, task: str | None = None,
         dataset: str | None = None, metric: str | None = None, nn: str | tuple[str, ...] | None = None,
         epoch: int | None = None, max_rows: int | None = None) -> pd.DataFrame:
    """LEMUR's `api.data()` on the catalog: one row per stat record, filtered on equality (`nn` may be a
    tuple of names), at most `max_rows` rows (0 or None: all). A path names an existing catalog file."""
    if isinstance(catalog, Catalog):
        return _data(catalog, only_best_accuracy, (task, dataset, metric, nn, epoch), max_rows)
    if not Path(catalog).is_file():   # reading must not conjure an empty catalog out of a mistyped path
        raise CatalogError(f"no catalog at {catalog}")
    with Catalog(catalog) as cat:
        return _data(cat, only_best_accuracy, (task, dataset, metric, nn, epoch), max_rows)


def _data(catalog: Catalog, only_best: bool, values: tuple, max_rows: int | None) -> pd.DataFrame:
    conditions, params = [], []
    for column, value in zip(FILTERS, values):
        if isinstance(value, tuple):
            conditions.append(f"{column} IN ({', '.join('?' * len(value))})")
            params += value
        elif value is not None:
            conditions.append(f"{column} = ?")
            params.append(value)
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    rows_sql = _BEST.format(where=where) if only_best else f"(SELECT * FROM stat {where})"
    sql = _SELECT.format(rows=rows_sql) + (f" LIMIT {int(max_rows)}" if max_rows else "")
    conn = catalog.db.conn
    cursor = conn.execute(sql, params)
    columns = [c[0] for c in cursor.description]
    rows = [dict(zip(columns, r)) for r in cursor.fetchall()]
    if not rows:
        return pd.DataFrame()   # LEMUR's empty answer has no columns either
    prm: dict[str, dict] = {}
    uids = sorted({r["prm_id"] for r in rows if r["prm_id"]})
    for start in range(0, len(uids), 500):   # SQLite's bound-parameter limit
        chunk = uids[start:start + 500]
        # Name, then value order: of a name stored with several values under one uid, the largest wins.
        for uid, name, value in conn.execute(f"SELECT uid, name, value FROM prm WHERE uid IN "
                                             f"({', '.join('?' * len(chunk))}) ORDER BY uid, name, value", chunk):
            prm.setdefault(uid, {})[name] = value
    for r in rows:
        r["prm"] = prm.get(r["prm_id"], {})
    return pd.DataFrame.from_records(rows, columns=list(DATA_COLUMNS))
