"""Independent reference ("oracle") of how LEMUR builds its database and answers ``api.data()``.

LEMUR is the public repository ABrain-One/nn-dataset. This module re-implements, from
reading its source, the two pieces a side-by-side test needs:

* ``build_database(folder, db_path)``: ``ab/nn/util/db/Init.py:init_db`` (only the tables
  ``data()`` reads: nn, transform, metric, prm, stat, train_stat) followed by
  ``ab/nn/util/db/Write.py:json_train_to_db`` over an nn-dataset folder
  (``nn/``, ``metric/``, ``transform/``, ``stat/train/<task>_<dataset>_<metric>_<nn>/<epoch>.json``).
* ``data(db_path, ...)``: ``ab/nn/api.py:data`` -> ``ab/nn/util/db/Read.py:data`` ->
  ``ab/nn/util/db/Query.py:fill_hyper_prm``, returned as ``DataFrame.from_records``.

Versions followed (see /tmp/lemur_reference_notes.md for the full list of choices):
Write.py, Init.py, Read.py, Query.py and api.py at commit 3320fd88cae648f3a409801ed357c791a2cbd676
(the newest stored version that imports a nested ``train_stat`` object into a ``train_stat`` table),
``uuid4``/``conf_to_names``/``str_not_none`` from ab/nn/util/Util.py at 564008cdce0673c87c4f556ffb212dbe976bb8bd
(md5 of the whitespace-stripped ``str(obj)``), constants from ab/nn/util/Const.py at f6f5aad11c30fc0924518064c3a448cc524b3a96.

It deliberately imports nothing from ``nas_agent``: it must stay an independent oracle.
The SQL (table declarations, INSERT OR IGNORE / OR REPLACE, the index on prm, the data() query)
is kept verbatim in substance, because SQLite itself decides several observable details
(NUMERIC affinity of ``prm.value`` turning 1.0 into 1, NULL-valued hyperparameters being dropped by
``INSERT OR IGNORE`` against ``NOT NULL``, the order and the winner among duplicate prm names).
"""
from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd

# ---------------------------------------------------------------- ab/nn/util/Const.py
CONFIG_SPLITTER = '_'
MAIN_COLUMNS = ('task', 'dataset', 'metric', 'nn')
MAIN_COLUMNS_EXT = MAIN_COLUMNS + ('epoch',)
CODE_TABLES = ('nn', 'transform', 'metric')
PARAM_TABLES = ('prm',)
DEPENDENT_TABLES = CODE_TABLES + PARAM_TABLES
INDEX_COLUMNS = ('task', 'dataset') + DEPENDENT_TABLES  # LEMUR's `index_colum`
EXTRA_MAIN_COLUMNS = ('duration', 'accuracy')
TRAIN_STAT_TABLE = 'train_stat'

# Write.py: TRAIN_STAT_DB_FIELDS, the columns of train_stat besides stat_id.
TRAIN_STAT_DB_FIELDS = (
    'train_loss', 'test_loss', 'train_accuracy', 'gradient_norm', 'samples_per_second', 'epoch_max',
    'cpu_count', 'cpu_type', 'cpu_usage_percent',
    'total_ram_kb', 'occupied_ram_kb', 'ram_usage_percent',
    'gpu_type', 'gpu_memory_kb', 'gpu_total_memory_kb', 'occupied_gpu_memory_kb', 'gpu_memory_usage_percent',
)

# The 16 columns api.data() returns, in order (Read.data's SELECT minus the popped `transform`, plus `prm`).
DATA_COLUMNS = ('id', 'task', 'dataset', 'metric', 'metric_code', 'metric_id', 'nn', 'nn_code', 'nn_id',
                'epoch', 'accuracy', 'duration', 'prm_id', 'transform_code', 'transform_id', 'prm')


# ---------------------------------------------------------------- ab/nn/util/Util.py
def uuid4(obj) -> str:
    """Util.uuid4: md5 hex of ``str(obj)`` with every whitespace character removed."""
    s = re.sub('\\s', '', str(obj))
    return hashlib.md5(s.encode()).hexdigest()


def conf_to_names(c: str) -> tuple[str, ...]:
    """Util.conf_to_names: split a stat folder name on '_'."""
    return tuple(c.split(CONFIG_SPLITTER))


def str_not_none(prefix: str, value) -> str:
    """Util.str_not_none: '' for a falsy value (so max_rows=0 means no LIMIT)."""
    return ' ' + prefix + str(value) if value else ''


# ---------------------------------------------------------------- ab/nn/util/db/Init.py
def init_db(cursor: sqlite3.Cursor) -> None:
    """Init.init_db, restricted to the tables data() needs (code tables, prm, stat, train_stat)."""
    for nm in CODE_TABLES:  # create_code_table
        cursor.execute(f"""
        CREATE TABLE IF NOT EXISTS {nm} (
            name TEXT PRIMARY KEY,
            code TEXT NOT NULL,
            id TEXT NOT NULL)""")
    cursor.execute("CREATE INDEX IF NOT EXISTS idx_nn_id ON nn(id)")

    for nm in PARAM_TABLES:  # create_param_table; `OBJECT` gives the column NUMERIC affinity
        cursor.execute(f"""
            CREATE TABLE IF NOT EXISTS {nm} (
                uid   TEXT NOT NULL,
                name  TEXT NOT NULL,
                value OBJECT NOT NULL
            )
        """)
        cursor.execute(f"CREATE INDEX IF NOT EXISTS idx_{nm}_uid ON {nm}(uid, name, value)")

    cursor.execute(f"""
        CREATE TABLE IF NOT EXISTS stat (
            id TEXT PRIMARY KEY,
            accuracy REAL,
            epoch INTEGER,
            duration INTEGER,
            {', '.join(INDEX_COLUMNS)},
        """
                   + ',\n'.join([f"FOREIGN KEY ({nm}) REFERENCES {nm} (name) ON DELETE CASCADE" for nm in CODE_TABLES] +
                                [f"FOREIGN KEY ({nm}) REFERENCES {nm} (uid) ON DELETE CASCADE" for nm in PARAM_TABLES])
                   + ')')
    cursor.execute("CREATE INDEX IF NOT EXISTS idx_accuracy_desc ON stat (accuracy DESC)")
    for nm in INDEX_COLUMNS:
        cursor.execute(f"CREATE INDEX IF NOT EXISTS idx_{nm} ON stat ({nm})")

    cursor.execute(f"""
    CREATE TABLE IF NOT EXISTS {TRAIN_STAT_TABLE} (
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
        FOREIGN KEY (stat_id) REFERENCES stat(id) ON DELETE CASCADE
    )
    """)
    cursor.execute(f"CREATE INDEX IF NOT EXISTS idx_{TRAIN_STAT_TABLE}_gradient_norm ON {TRAIN_STAT_TABLE} (gradient_norm);")
    cursor.execute(f"CREATE INDEX IF NOT EXISTS idx_{TRAIN_STAT_TABLE}_samples_per_second "
                   f"ON {TRAIN_STAT_TABLE} (samples_per_second);")


# ---------------------------------------------------------------- ab/nn/util/db/Write.py
def code_to_db(cursor: sqlite3.Cursor, table_name: str, code_file: Path, dedup_nn_by_id: bool = True) -> str:
    """Write.code_to_db for a code file: store (name=file stem, code, id=uuid4(code)).

    Returns the name the code is stored under. For table 'nn' a new file whose id is already
    stored under another name is not inserted; the stored name is returned (Write.py@3320fd88).
    A missing or non-UTF-8 file raises, which json_train_to_db turns into "skip the rest of the file".
    """
    nm = code_file.stem
    with open(code_file, 'r', encoding='utf-8') as file:  # text mode: '\r\n' arrives as '\n'
        code = file.read()
    cursor.execute(f"SELECT code FROM {table_name} WHERE name = ?", (nm,))
    existing_entry = cursor.fetchone()
    if existing_entry:
        if existing_entry[0] != code:
            cursor.execute(f"UPDATE {table_name} SET code = ?, id = ? WHERE name = ?", (code, uuid4(code), nm))
    else:
        id_val = uuid4(code)
        if table_name == 'nn' and dedup_nn_by_id:
            cursor.execute("SELECT name FROM nn WHERE id = ?", (id_val,))
            stored = cursor.fetchone()
            if stored:
                return stored[0]
        cursor.execute(f"INSERT INTO {table_name} (name, code, id) VALUES (?, ?, ?)", (nm, code, id_val))
    return nm


def populate_code_table(cursor: sqlite3.Cursor, folder: Path, table_name: str, name: str,
                        dedup_nn_by_id: bool = True) -> str:
    """Write.populate_code_table(table_name, cursor, name=name): store <folder>/<table>/<name>.py."""
    return code_to_db(cursor, table_name, folder / table_name / f"{name}.py", dedup_nn_by_id)


def populate_prm_table(table_name: str, cursor: sqlite3.Cursor, prm: dict, uid) -> None:
    """Write.populate_prm_table: one (uid, name, value) row per hyperparameter.

    No unique key exists, so OR IGNORE only drops rows breaking NOT NULL (a null value).
    """
    for nm, value in prm.items():
        cursor.execute(f"INSERT OR IGNORE INTO {table_name} (uid, name, value) VALUES (?, ?, ?)", (uid, nm, value))


def save_train_stat(cursor: sqlite3.Cursor, stat_id: str, train_stat: dict) -> None:
    """Write.save_train_stat: one train_stat row per stat row (OR REPLACE); other keys are dropped."""
    if not train_stat:
        return
    columns = ('stat_id',) + TRAIN_STAT_DB_FIELDS
    values = [stat_id] + [train_stat.get(field) for field in TRAIN_STAT_DB_FIELDS]
    cursor.execute(f"INSERT OR REPLACE INTO {TRAIN_STAT_TABLE} ({', '.join(columns)}) "
                   f"VALUES ({', '.join(['?'] * len(columns))})", values)


def save_stat(config_ext: tuple, prm: dict, cursor: sqlite3.Cursor) -> str:
    """Write.save_stat: prm rows, then the stat row (OR IGNORE), then its train_stat row.

    stat.id = uuid4([transform, uid, task, dataset, metric, nn, epoch, duration, accuracy]).
    The prm rows hold every remaining key, `transform` included.
    """
    prm = dict(prm)
    train_stat = dict(prm.pop('train_stat', {}) or {})
    if train_stat.get('epoch_max') is None:
        epoch_max = prm.get('epoch_max')  # stays in prm as well
        if epoch_max is not None:
            train_stat['epoch_max'] = epoch_max
    prm.pop('layer_stat', None)

    transform = prm['transform']
    uid = prm.pop('uid')
    extra_main_column_values = [prm.pop(nm, None) for nm in EXTRA_MAIN_COLUMNS]
    for nm in PARAM_TABLES:
        populate_prm_table(nm, cursor, prm, uid)

    all_values = [transform, uid, *config_ext, *extra_main_column_values]
    stat_id = uuid4(all_values)
    cursor.execute(f"""
    INSERT OR IGNORE INTO stat (id, transform, prm, {', '.join(MAIN_COLUMNS_EXT + EXTRA_MAIN_COLUMNS)})
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    """, (stat_id, *all_values))
    save_train_stat(cursor, stat_id, train_stat)
    return stat_id


def json_train_to_db(folder: Path, cursor: sqlite3.Cursor, *, skip_default_transform: bool = False,
                     dedup_nn_by_id: bool = True, errors: list | None = None) -> None:
    """Write.json_train_to_db: import every stat/train/<config>/<epoch>.* file.

    Any exception inside one epoch file (missing nn/metric/transform code file, malformed JSON,
    missing 'transform' or 'uid', a config name not splitting into 4 parts, ...) skips the rest of
    that file; trials already saved from it stay. Files whose stem is not an int are ignored.
    Iteration order is Path.iterdir() order, as in LEMUR.
    """
    stat_train_dir = folder / 'stat' / 'train'
    sub_configs = [d.name for d in stat_train_dir.iterdir() if d.is_dir()]
    for sub_config_str in sub_configs:
        model_stat_dir = stat_train_dir / sub_config_str
        for epoch_file in Path(model_stat_dir).iterdir():
            model_stat_file = model_stat_dir / epoch_file
            try:
                epoch = int(epoch_file.stem)
            except ValueError:
                continue
            try:
                with open(model_stat_file, 'r', encoding='utf-8', errors='replace') as f:
                    for trial in json.load(f):
                        task, dataset, metric, nn = conf_to_names(sub_config_str)
                        nn = populate_code_table(cursor, folder, 'nn', nn, dedup_nn_by_id) or nn
                        sub_config = (task, dataset, metric, nn)
                        for single_metric in metric.split(','):
                            populate_code_table(cursor, folder, 'metric', single_metric.strip())
                        # Write.py@3320fd88 loads any truthy transform; @1446c67e also skipped 'default'.
                        if trial['transform'] and not (skip_default_transform and trial['transform'] == 'default'):
                            populate_code_table(cursor, folder, 'transform', trial['transform'])
                        extracted_train_stat = trial.get('train_stat') if isinstance(trial.get('train_stat'), dict) else {}
                        # (layer_stat import into layer_stat/per_layer_stat is not needed by data())
                        trial = {k: v for k, v in trial.items() if not isinstance(v, (dict, list))}
                        if extracted_train_stat:
                            trial['train_stat'] = extracted_train_stat
                        save_stat(sub_config + (epoch,), trial, cursor)
            except Exception as e:
                message = f"Error: skipping JSON file {model_stat_file}: {e}"
                print(message, file=sys.stderr)
                if errors is not None:
                    errors.append((str(model_stat_file), repr(e)))


def build_database(folder: Path, db_path: Path, *, skip_default_transform: bool = False,
                   dedup_nn_by_id: bool = True, errors: list | None = None) -> None:
    """Write.init_population for a folder with stat/: init_db() then json_train_to_db().

    LEMUR only builds a database that does not exist yet, so an existing db_path is an error.
    The keyword options reproduce older Write.py behaviour when changed from their defaults;
    `errors`, when given, receives (file, exception) for every epoch file that was cut short.
    """
    folder, db_path = Path(folder), Path(db_path)
    if db_path.exists():
        raise FileExistsError(db_path)
    conn = sqlite3.connect(db_path)
    try:
        cursor = conn.cursor()
        init_db(cursor)
        json_train_to_db(folder, cursor, skip_default_transform=skip_default_transform,
                         dedup_nn_by_id=dedup_nn_by_id, errors=errors)
        conn.commit()  # close_conn: one commit at the end
    finally:
        conn.close()


# ---------------------------------------------------------------- ab/nn/util/db/Read.py + Query.py
def sql_where(value_list) -> tuple[list, str]:
    """Read.sql_where: `s.<col> = ?` per given filter, `s.<col> in (...)` for a tuple."""
    filters, params = [], []
    for nm, v in zip(MAIN_COLUMNS_EXT, value_list):
        if v is not None:
            if isinstance(v, tuple):
                filters.append(f"s.{nm} in ({','.join('?' for _ in v)})")
                params.extend(v)
            else:
                filters.append(f"s.{nm} = ?")
                params.append(v)
    return params, ' WHERE ' + ' AND '.join(filters) if filters else ''


def fill_hyper_prm(cur: sqlite3.Cursor) -> list[dict]:
    """Query.fill_hyper_prm (num_joint_nns=1): attach prm = {name: value} of the row's prm_id, pop 'transform'.

    All prm rows of a uid are merged, so trials sharing a uid share one dict; for a name stored
    with several values the last row SQLite returns wins.
    """
    rows = cur.fetchall()
    if not rows:
        return []
    columns = [c[0] for c in cur.description]
    prm_by_uid: dict = defaultdict(dict)
    prm_ids, seen = [], set()
    for r in rows:
        prm_id = dict(zip(columns, r)).get('prm_id')
        if prm_id and prm_id not in seen:
            seen.add(prm_id)
            prm_ids.append(prm_id)
    chunk_size = 500
    for start in range(0, len(prm_ids), chunk_size):
        chunk = prm_ids[start:start + chunk_size]
        cur.execute(f"SELECT uid, name, value FROM prm WHERE uid IN ({', '.join(['?'] * len(chunk))})", chunk)
        for uid, name, value in cur.fetchall():
            prm_by_uid[uid][name] = value
    results = []
    for r in rows:
        rec = dict(zip(columns, r))
        rec['prm'] = prm_by_uid.get(rec['prm_id'], {})
        rec.pop('transform', None)
        results.append(rec)
    return results


def data(db_path: Path, only_best_accuracy: bool = False, task=None, dataset=None, metric=None, nn=None,
         epoch=None, max_rows=None) -> pd.DataFrame:
    """api.data -> Read.data (sql=None, no prefixes/min_accuracy/unique_nn/nn stats/layer stats).

    Rows are ordered by task, dataset, metric, nn, epoch only; ties come in SQLite's order.
    only_best_accuracy keeps every row equal to its (task, dataset, metric, nn, epoch) maximum.
    """
    params, where_clause = sql_where([task, dataset, metric, nn, epoch])
    source = f'(SELECT s.* FROM stat s {where_clause})'
    if only_best_accuracy:
        source = """
            (WITH filtered_stat AS {source}
            SELECT f.* FROM filtered_stat f
            JOIN (
                SELECT task, dataset, metric, nn, epoch, MAX(accuracy) AS max_accuracy
                FROM filtered_stat
                GROUP BY task, dataset, metric, nn, epoch
            ) b
            ON f.task = b.task AND f.dataset = b.dataset AND f.metric = b.metric
               AND f.nn = b.nn AND f.epoch = b.epoch AND f.accuracy = b.max_accuracy
        )""".format(source=source)
    base_query = """
            SELECT s.id, s.task, s.dataset, s.metric, m.code AS metric_code, m.id AS metric_id,
                   s.nn, n.code AS nn_code, n.id AS nn_id, s.epoch, s.accuracy, s.duration,
                   s.prm AS prm_id, t.code AS transform_code, t.id AS transform_id, s.transform
            FROM {source} s
            LEFT JOIN nn       n ON s.nn = n.name
            LEFT JOIN metric   m ON s.metric = m.name
            LEFT JOIN transform t ON s.transform = t.name
        """.format(source=source)
    limit_clause = str_not_none('LIMIT ', max_rows)
    conn = sqlite3.connect(Path(db_path))
    try:
        cur = conn.cursor()
        cur.execute(f'''{base_query}
                        ORDER BY s.task, s.dataset, s.metric, s.nn, s.epoch
                        {limit_clause}''', params)
        results = fill_hyper_prm(cur)
    finally:
        conn.close()
    return pd.DataFrame.from_records(tuple(results))
