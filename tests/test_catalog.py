"""The catalog on real SQLite files: LEMUR schema, idempotent writes, ranking, export, safety."""

import hashlib
import json
import re
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nas_agent.catalog import (
    TASK_CLASSIFICATION,
    Catalog,
    CatalogError,
    EpochRecord,
    ModelRecord,
    lemur_id,
    model_name,
    prm_uid,
)
from nas_agent.catalog.lemur import DATA_COLUMNS, data
from nas_agent.catalog.records import stat_id
from nas_agent.catalog.schema import SCHEMA_VERSION

REPO = Path(__file__).resolve().parents[1]

LEMUR_COLUMNS = {
    "nn": ["name", "code", "id"],
    "transform": ["name", "code", "id"],
    "metric": ["name", "code", "id"],
    "prm": ["uid", "name", "value"],
    "stat": ["id", "accuracy", "epoch", "duration", "task", "dataset", "nn", "transform", "metric", "prm"],
    "train_stat": [
        "stat_id", "train_loss", "test_loss", "train_accuracy", "gradient_norm", "samples_per_second",
        "epoch_max", "cpu_count", "cpu_type", "cpu_usage_percent", "total_ram_kb", "occupied_ram_kb",
        "ram_usage_percent", "gpu_type", "gpu_memory_kb", "gpu_total_memory_kb",
        "occupied_gpu_memory_kb", "gpu_memory_usage_percent",
    ],
}

PRM = {"lr": 0.01, "batch": 128, "momentum": 0.9, "transform": "norm_32"}


@pytest.fixture
def cat(tmp_path):
    # A nested path also checks that the catalog creates its parent directory.
    with Catalog(tmp_path / "runs" / "catalog.sqlite") as c:
        c.register_transform("norm_32", "def transform(norm): ...")
        c.register_metric("acc", "def compute(y, t): ...")
        yield c


def model(family="FractalNet", code="class Net: pass", parent=None, origin="template",
          n_params=None, task=TASK_CLASSIFICATION, struct_hash=None):
    digest = hashlib.sha256(code.encode()).hexdigest()
    return ModelRecord(
        name=model_name(family, code), code=code, family=family,
        task=task, dataset="cifar-10", metric="acc", code_hash=digest,
        template_params={"columns": 3, "depth": 2}, parent=parent, origin=origin,
        struct_hash=struct_hash, n_params=n_params)


def epoch(name, n, accuracy, duration_s=2.0, prm=PRM, task=TASK_CLASSIFICATION, **extra):
    return EpochRecord(nn=name, epoch=n, accuracy=accuracy, duration_s=duration_s, prm=dict(prm),
                       transform="norm_32", metric="acc", task=task, dataset="cifar-10", **extra)


def count(cat, table):
    return cat.db.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


# --- schema ------------------------------------------------------------------

def test_schema_keeps_lemur_tables_with_exactly_lemur_columns(cat):
    conn = cat.db.conn
    for table, columns in LEMUR_COLUMNS.items():
        assert [r[1] for r in conn.execute(f"PRAGMA table_info({table})")] == columns, table
    types = {r[1]: r[2] for r in conn.execute("PRAGMA table_info(prm)")}
    assert types["value"] == "OBJECT"
    stat_fks = {(r[3], r[2], r[4]) for r in conn.execute("PRAGMA foreign_key_list(stat)")}
    assert stat_fks == {("nn", "nn", "name"), ("transform", "transform", "name"), ("metric", "metric", "name")}
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"idx_nn_id", "idx_prm_uid", "idx_accuracy_desc", "idx_task", "idx_dataset", "idx_nn",
            "idx_transform", "idx_metric", "idx_prm", "idx_model_code_hash"} <= indexes
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)


def _row_counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                             "AND name NOT LIKE 'sqlite_%'")]
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    finally:
        conn.close()


def _renamed_tables(counts: dict[str, int]) -> dict[str, int]:
    """Row counts as today's schema names the tables (our `run` became `nas_run`; lemur_record is new)."""
    counts = {("nas_run" if t == "run" else t): n for t, n in counts.items()}
    counts.pop("meta")
    return counts


@pytest.mark.parametrize("asset, models, stats", [("catalog-schema2.sqlite", 7, 12), ("catalog-schema3.sqlite", 10, 642)])
def test_an_old_catalog_opens_upgrades_and_keeps_every_row(tmp_path, asset, models, stats):
    # Written by nas-agent at schemas 2 and 3 (tests/catalog_factory.py; at 3 also `lemur import` of the
    # sample's AlexNet and ResNet, when imported models were named img-classification_cifar-10_acc_<nn>).
    path = tmp_path / "old.sqlite"
    path.write_bytes((REPO / "tests" / "assets" / asset).read_bytes())
    before = _row_counts(path)
    assert before["model"] == models and before["stat"] == stats
    with Catalog(path) as upgraded:
        conn = upgraded.db.conn
        with_results = {r[0] for r in conn.execute("SELECT DISTINCT nn FROM stat")}
        assert {row["name"] for row in upgraded.leaderboard()} == with_results   # every later read works
        assert len(upgraded.models()) == models
        # LEMUR's names, ids and durations: what LEMUR itself would hold for the same rows.
        names = {r[0]: r[1] for r in conn.execute("SELECT name, code FROM nn")}
        for name, code in names.items():
            assert "_" not in name and conn.execute("SELECT id FROM nn WHERE name = ?", (name,)).fetchone()[0] \
                == lemur_id(code)
        ours = {r[0] for r in conn.execute("SELECT name FROM model WHERE origin != 'lemur'")}
        assert all(name == model_name(name.rsplit("-", 1)[0], names[name]) for name in ours)
        for row in conn.execute("SELECT id, transform, prm, task, dataset, metric, nn, epoch, duration, accuracy "
                                "FROM stat"):
            assert row[0] == stat_id(*row[1:])
        assert not conn.execute("SELECT 1 FROM stat WHERE duration = 0").fetchone()
        for trial in conn.execute("SELECT GROUP_CONCAT(duration) FROM (SELECT * FROM stat WHERE nn IN "
                                  "(SELECT name FROM model WHERE origin != 'lemur') ORDER BY epoch) "
                                  "GROUP BY nn, prm, transform").fetchall():
            durations = [int(d) for d in trial[0].split(",")]
            assert durations == sorted(durations)          # nanoseconds since the trial began
        assert not conn.execute("PRAGMA foreign_key_check").fetchall()
        assert not {r[0] for r in conn.execute("SELECT nn FROM proposal WHERE nn IS NOT NULL")} - set(names)
        assert len(data(upgraded)) == stats
    after = _row_counts(path)
    assert after.pop("lemur_record") == 0
    assert _renamed_tables(after) == _renamed_tables(before)   # every row kept, none invented
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    conn.close()


def test_a_migration_adds_its_columns_to_an_existing_catalog_and_keeps_the_rows(tmp_path, monkeypatch):
    import nas_agent.catalog.schema as schema

    path = tmp_path / "old.sqlite"
    with Catalog(path) as old:
        old.add_model(ModelRecord(name="img-classification_cifar-10_acc_Net-00aa11bb", code="x = 1", family="Net",
                                  task=TASK_CLASSIFICATION, dataset="cifar-10", metric="acc", code_hash="00aa11bb",
                                  template_params={}, parent=None, origin="manual"))
    # The next version adds model.note: the DDL names it, and a step adds it to catalogs made before.
    step = schema.Migration(SCHEMA_VERSION + 1, "a note per model", add_columns=(("model", "note", "TEXT"),),
                             statements=("UPDATE model SET note = 'migrated'",))
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, step))
    monkeypatch.setattr(schema, "SCHEMA_VERSION", step.version)
    monkeypatch.setattr(schema, "OWN_SCHEMA", schema.OWN_SCHEMA.replace("CREATE TABLE IF NOT EXISTS model (",
                                                                          "CREATE TABLE IF NOT EXISTS model (\n    note TEXT,"))
    schema.schema_columns.cache_clear()
    try:
        with Catalog(path) as upgraded:
            assert [r[0] for r in upgraded.db.conn.execute("SELECT note FROM model")] == ["migrated"]
            assert len(upgraded.models()) == 1
        with Catalog(path) as again:  # a second open finds it current and changes nothing
            assert [r[0] for r in again.db.conn.execute("SELECT note FROM model")] == ["migrated"]
    finally:
        schema.schema_columns.cache_clear()


def test_a_catalog_from_a_newer_nas_agent_is_refused_untouched(tmp_path):
    path = tmp_path / "new.sqlite"
    with Catalog(path) as cat:
        cat.db.conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
        cat.db.conn.commit()
    before = path.read_bytes()
    with pytest.raises(CatalogError, match="newer than this"):
        Catalog(path)
    assert path.read_bytes() == before


def test_a_schema_1_catalog_gains_the_proposal_table_and_keeps_its_models(tmp_path):
    path = tmp_path / "old.sqlite"
    with Catalog(path) as old:
        old.add_model(ModelRecord(name="img-classification_cifar-10_acc_Net-00aa11bb", code="x = 1", family="Net",
                                  task=TASK_CLASSIFICATION, dataset="cifar-10", metric="acc", code_hash="00aa11bb",
                                  template_params={}, parent=None, origin="manual"))
        old.db.conn.execute("DROP TABLE proposal")
        old.db.conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        old.db.conn.commit()
    with Catalog(path) as upgraded:
        assert len(upgraded.models()) == 1
        proposal = upgraded.add_proposal(run_id="r", round=1, strategy="mutate", parent="template:t.py",
                                         change="N_BLOCKS 4 -> 3", ok=True, status="queued", trial=7,
                                         prm={"lr": 0.1})
        upgraded.update_proposal(proposal, status="done", accuracy=0.5)
        rows = upgraded.proposals(run_id="r")
        assert [(r["status"], r["accuracy"], r["trial"], r["prm"]) for r in rows] == [("done", 0.5, 7, {"lr": 0.1})]
        with pytest.raises(ValueError, match="unknown proposal field"):
            upgraded.add_proposal(run_id="r", colour="red")


def test_model_names_and_ids_follow_lemur():
    code = "class Net:\n    pass\n"
    # LEMUR's uuid4: md5 of the code with every whitespace character removed.
    assert lemur_id(code) == hashlib.md5(b"classNet:pass").hexdigest() == lemur_id("class  Net:\tpass")
    assert model_name("FractalNet", code) == f"FractalNet-{lemur_id(code)}"
    with pytest.raises(ValueError):
        model_name("Fractal_Net", code)     # LEMUR splits its stat folders on "_"
    # A stat row's id is lemur_id of its values, in save_stat's order.
    assert stat_id("norm", "u1", "img-classification", "cifar-10", "acc", "AlexNet", 1, None, 0.5) == \
        lemur_id("['norm','u1','img-classification','cifar-10','acc','AlexNet',1,None,0.5]")


def test_prm_uid_is_canonical():
    assert prm_uid({"a": 1, "b": 2.5}) == prm_uid({"b": 2.5, "a": 1})
    assert prm_uid({"a": 1}) == hashlib.md5(b'{"a":1}').hexdigest()
    assert prm_uid({"a": 1}) != prm_uid({"a": 2})


# --- models and status -------------------------------------------------------

def test_add_model_is_idempotent(cat):
    rec = model()
    assert cat.add_model(rec, run_id="r1") is True
    assert cat.add_model(rec, run_id="r1") is False
    assert (count(cat, "nn"), count(cat, "model"), count(cat, "event")) == (1, 1, 1)
    got = cat.get_model(rec.name)
    assert got["code"] == rec.code and got["status"] == "queued" and got["run_id"] == "r1"
    assert got["template_params"] == {"columns": 3, "depth": 2}
    assert cat.find_by_code_hash(rec.code_hash) == rec.name
    assert cat.get_model("nope") is None and cat.find_by_code_hash("0" * 64) is None


def test_same_code_under_another_name_is_refused_without_partial_writes(cat):
    first = model(family="FractalNet")
    cat.add_model(first)
    twin = model(family="OtherNet")  # same code, so same code hash, different name
    with pytest.raises(CatalogError, match="already catalogued"):
        cat.add_model(twin)
    assert (count(cat, "nn"), count(cat, "model"), count(cat, "event")) == (1, 1, 1)
    assert cat.get_model(twin.name) is None


def test_status_transitions_produce_events(cat):
    rec = model()
    cat.add_model(rec)
    cat.set_status(rec.name, "running", run_id="r2")
    cat.set_status(rec.name, "failed", reason="CUDA OOM", stage="train", run_id="r2")
    cat.set_status(rec.name, "queued")
    cat.add_event(rec.name, "resumed", run_id="r3")
    assert [e["kind"] for e in cat.events(rec.name)] == ["queued", "running", "failed", "queued", "resumed"]
    failed = cat.events(kind="failed")
    assert [(e["nn"], e["stage"], e["reason"], e["run_id"]) for e in failed] == \
        [(rec.name, "train", "CUDA OOM", "r2")]
    got = cat.get_model(rec.name)
    assert got["status"] == "queued" and got["reason"] is None and got["run_id"] == "r2"
    assert [m["name"] for m in cat.models(status="queued")] == [rec.name]
    assert cat.models(status="done") == []
    with pytest.raises(ValueError):
        cat.set_status(rec.name, "finished")
    with pytest.raises(CatalogError):
        cat.set_status("no-such-model", "running")
    with pytest.raises(ValueError):
        cat.add_event(rec.name, "exploded")


def test_rejected_proposals_are_logged_without_a_model(cat):
    cat.add_event("img-classification_cifar-10_acc_FractalNet-deadbeef", "rejected",
                  stage="policy", reason="uses torch.load")
    (event,) = cat.events(kind="rejected")
    assert (event["stage"], event["reason"]) == ("policy", "uses torch.load")
    assert count(cat, "model") == 0


def test_model_facts_and_struct_hash_lookup(cat):
    a, b = model(code="a = 1"), model(code="b = 2")
    cat.add_model(a)
    cat.add_model(b)
    cat.set_model_facts(a.name, n_params=1234, struct_hash="s1")
    cat.set_model_facts(b.name, struct_hash="s1")
    cat.set_model_facts(a.name, struct_hash="s1")  # n_params=None leaves the count alone
    assert cat.get_model(a.name)["n_params"] == 1234
    assert cat.find_by_struct_hash("s1") == [a.name, b.name]
    assert cat.find_by_struct_hash("s2") == []


def test_lineage_runs_from_root_to_model(cat):
    root = model(code="root")
    child = model(code="child", parent=root.name, origin="llm")
    grandchild = model(code="grandchild", parent=child.name, origin="mutation")
    for rec in (root, child, grandchild):
        cat.add_model(rec)
    assert cat.lineage(grandchild.name) == [root.name, child.name, grandchild.name]
    assert cat.lineage(root.name) == [root.name]
    assert cat.lineage("unknown") == []


# --- results -----------------------------------------------------------------

def test_record_epoch_replaces_the_same_epoch_and_prm_rows_are_written_once(cat):
    rec = model()
    cat.add_model(rec)
    first = cat.record_epoch(epoch(rec.name, 1, 0.50, train_loss=1.2))
    again = cat.record_epoch(epoch(rec.name, 1, 0.55, train_loss=1.1))
    # LEMUR's stat id hashes the row's values, accuracy included: the replacement has its own.
    assert first != again and [r[0] for r in cat.db.conn.execute("SELECT id FROM stat")] == [again]
    assert again == stat_id("norm_32", prm_uid(PRM), TASK_CLASSIFICATION, "cifar-10", "acc", rec.name, 1,
                            2_000_000_000, 0.55)
    assert (count(cat, "stat"), count(cat, "train_stat"), count(cat, "prm")) == (1, 1, len(PRM))
    cat.record_epoch(epoch(rec.name, 2, 0.60))
    assert (count(cat, "stat"), count(cat, "prm")) == (2, len(PRM))
    cat.record_epoch(epoch(rec.name, 1, 0.40, prm={**PRM, "lr": 0.1}))  # a second trial
    assert (count(cat, "stat"), count(cat, "prm")) == (3, 2 * len(PRM))
    rows = cat.epochs(rec.name)
    assert [r["epoch"] for r in rows] == [1, 1, 2]
    same_trial = [r for r in rows if r["prm"] == prm_uid(PRM)]
    assert [(r["accuracy"], r["train_loss"]) for r in same_trial] == [(0.55, 1.1), (0.60, None)]


def test_durations_are_nanoseconds_since_the_trial_began_as_lemur_keeps_them(cat):
    rec = model()
    cat.add_model(rec)
    first = cat.record_epoch(epoch(rec.name, 1, 0.5, duration_s=1.5))
    stored = cat.db.conn.execute("SELECT duration FROM stat WHERE id = ?", (first,)).fetchone()[0]
    assert stored == 1_500_000_000 and isinstance(stored, int)
    cat.record_epoch(epoch(rec.name, 2, 0.6, duration_s=2.5))
    rows = cat.epochs(rec.name)
    assert [r["duration"] for r in rows] == [1_500_000_000, 4_000_000_000]      # cumulative
    assert [r["seconds"] for r in rows] == [pytest.approx(1.5), pytest.approx(2.5)]   # each epoch's own
    (board,) = cat.leaderboard()
    assert board["seconds_per_epoch"] == pytest.approx(2.0)   # 1.5 after one epoch, 4.0 / 2 after two


def test_record_epoch_refuses_unregistered_transform(cat):
    rec = model()
    cat.add_model(rec)
    bad = epoch(rec.name, 1, 0.5)
    bad.transform = "never_registered"
    with pytest.raises(CatalogError, match="transform"):
        cat.record_epoch(bad)
    assert (count(cat, "stat"), count(cat, "prm")) == (0, 0)


def test_failed_epoch_write_leaves_no_stat_row_behind(cat):
    rec = model()
    cat.add_model(rec)
    # A real trigger makes the last insert of the transaction fail, as a crash would.
    cat.db.conn.execute("CREATE TRIGGER fail_train_stat BEFORE INSERT ON train_stat "
                        "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
    with pytest.raises(sqlite3.IntegrityError):
        cat.record_epoch(epoch(rec.name, 1, 0.5))
    assert (count(cat, "stat"), count(cat, "prm"), count(cat, "train_stat")) == (0, 0, 0)


def _board_fixture(cat):
    """Four models: a and b tie at 0.8 (b has fewer params), c trails on another task, d never trained."""
    # Codes chosen so that b's name sorts after a's: only the parameter count puts b first.
    a = model(code="a", n_params=1000, origin="llm")
    b = model(code="b", n_params=500)
    assert b.name > a.name
    c = model(code="c", n_params=10, task="img-segmentation")
    d = model(code="d", n_params=1)
    for rec in (a, b, c, d):
        cat.add_model(rec)
    for n, (acc, secs) in enumerate([(0.5, 1.0), (0.8, 2.0), (0.7, 3.0)], start=1):
        cat.record_epoch(epoch(a.name, n, acc, duration_s=secs))
    cat.record_epoch(epoch(b.name, 1, 0.8))
    cat.record_epoch(epoch(c.name, 1, 0.6, task="img-segmentation"))
    return a, b, c, d


def test_leaderboard_ranks_by_best_accuracy_then_fewer_params(cat):
    a, b, c, d = _board_fixture(cat)
    board = cat.leaderboard()
    assert [(r["rank"], r["name"]) for r in board] == [(1, b.name), (2, a.name), (3, c.name)]
    best_a = board[1]
    assert (best_a["accuracy"], best_a["epoch"], best_a["n_params"]) == (0.8, 2, 1000)
    assert best_a["seconds_per_epoch"] == pytest.approx(2.0)
    assert (best_a["family"], best_a["origin"], best_a["status"]) == ("FractalNet", "llm", "queued")
    assert [r["name"] for r in cat.leaderboard(top=2)] == [b.name, a.name]
    assert [r["name"] for r in cat.leaderboard(task="img-segmentation")] == [c.name]
    assert [r["name"] for r in cat.leaderboard(origin="llm")] == [a.name]


# --- LEMUR export ------------------------------------------------------------

def test_data_has_lemur_columns_and_prm_dicts(cat):
    a, b, c, d = _board_fixture(cat)
    frame = data(cat)
    assert list(frame.columns) == list(DATA_COLUMNS) == [   # LEMUR's api.data(), in its order
        "id", "task", "dataset", "metric", "metric_code", "metric_id", "nn", "nn_code", "nn_id",
        "epoch", "accuracy", "duration", "prm_id", "transform_code", "transform_id", "prm"]
    assert len(frame) == 5
    row = frame[frame.nn == b.name].iloc[0]
    assert row["prm"] == PRM and isinstance(row["prm"], dict) and row["prm_id"] == prm_uid(PRM)
    assert row["nn_code"] == "b" and row["nn_id"] == lemur_id("b") and row["transform_code"].startswith("def transform")
    assert row["metric_code"].startswith("def compute") and row["duration"] == 2_000_000_000
    assert row["transform_id"] == lemur_id(row["transform_code"]) and row["metric_id"] == lemur_id(row["metric_code"])


def test_data_only_best_accuracy_and_filters(cat):
    a, b, c, d = _board_fixture(cat)
    cat.record_epoch(epoch(b.name, 1, 0.8, prm={**PRM, "lr": 0.2}))   # a second trial ties at epoch 1
    cat.record_epoch(epoch(b.name, 1, 0.3, prm={**PRM, "lr": 0.3}))   # a third does worse
    best = data(cat, only_best_accuracy=True)
    # LEMUR keeps the best of each (task, dataset, metric, nn, epoch), ties included.
    assert sorted(zip(best.nn, best.epoch, best.accuracy)) == sorted(
        [(a.name, 1, 0.5), (a.name, 2, 0.8), (a.name, 3, 0.7), (b.name, 1, 0.8), (b.name, 1, 0.8), (c.name, 1, 0.6)])
    assert list(data(cat, nn=a.name).epoch) == [1, 2, 3]
    assert list(data(cat, nn=a.name, epoch=3).accuracy) == [0.7]
    assert set(data(cat, task="img-segmentation").nn) == {c.name}
    assert list(data(cat, max_rows=2).nn) == [a.name, a.name]
    empty = data(cat, dataset="mnist")
    assert empty.empty and list(empty.columns) == []   # LEMUR's empty answer has no columns


def test_data_reads_a_catalog_by_path(cat, tmp_path):
    a, *_ = _board_fixture(cat)
    assert len(data(cat.path, nn=a.name)) == 3
    with pytest.raises(CatalogError):
        data(tmp_path / "missing.sqlite")
    assert not (tmp_path / "missing.sqlite").exists()


# --- runs, files and processes -----------------------------------------------

def test_runs_start_and_end(cat):
    run_id = cat.start_run("nas-agent search", {"budget": 10, "conf": "quick.toml"})
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", run_id)
    cat.end_run(run_id, "interrupted")
    (run,) = cat.runs()
    assert (run["status"], run["config"]["budget"]) == ("interrupted", 10)
    assert run["ended"] >= run["started"]
    with pytest.raises(ValueError):
        cat.end_run(run_id, "done")
    with pytest.raises(CatalogError):
        cat.end_run("no-such-run", "failed")


def test_a_run_block_always_ends_its_run_with_how_the_block_ended(cat):
    with cat.run("nas-agent train", {}) as run:
        pass
    with pytest.raises(KeyboardInterrupt), cat.run("nas-agent train", {}) as interrupted:
        raise KeyboardInterrupt
    with pytest.raises(OSError), cat.run("nas-agent train", {}) as failed:
        raise OSError("disk full")
    with cat.run("nas-agent search", {}) as caught:
        caught.status = "interrupted"           # the block caught Ctrl-C itself and says so
    with cat.run("nas-agent search --resume", {}, resume=failed.id) as resumed:
        assert cat.get_run(failed.id)["status"] == "running"
    statuses = {r["id"]: r["status"] for r in cat.runs()}
    assert [statuses[r.id] for r in (run, interrupted, caught, resumed)] == \
        ["finished", "interrupted", "interrupted", "finished"]
    assert len(statuses) == 4 and resumed.id == failed.id


def test_data_survives_reopening(tmp_path):
    path = tmp_path / "catalog.sqlite"
    rec = model()
    with Catalog(path) as cat:
        cat.register_transform("norm_32", "t")
        cat.register_metric("acc", "m")
        cat.add_model(rec)
        run_id = cat.start_run("search", {})
        cat.record_epoch(epoch(rec.name, 1, 0.42, duration_s=3.0))
        cat.set_status(rec.name, "done", run_id=run_id)
    with Catalog(path) as cat:
        assert cat.get_model(rec.name)["status"] == "done"
        assert [r["accuracy"] for r in cat.epochs(rec.name)] == [0.42]
        assert [e["kind"] for e in cat.events(rec.name)] == ["queued", "done"]
        assert [r["id"] for r in cat.runs()] == [run_id]
        assert cat.add_model(rec) is False


def test_garbage_file_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "catalog.sqlite"
    garbage = b"definitely not sqlite\x00\xff" * 100
    path.write_bytes(garbage)
    with pytest.raises(CatalogError, match="not an SQLite database"):
        Catalog(path)
    assert path.read_bytes() == garbage
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.sqlite"]


def test_foreign_sqlite_database_is_refused_and_left_untouched(tmp_path):
    notes = tmp_path / "notes.sqlite"
    with sqlite3.connect(notes) as conn:
        conn.execute("CREATE TABLE note (id INTEGER PRIMARY KEY, text TEXT)")
    lookalike = tmp_path / "lookalike.sqlite"
    with sqlite3.connect(lookalike) as conn:
        conn.execute("CREATE TABLE nn (name TEXT PRIMARY KEY)")  # no code/id columns
        conn.execute("CREATE TABLE stat (id TEXT PRIMARY KEY)")
    for path in (notes, lookalike):
        before = path.read_bytes()
        with pytest.raises(CatalogError):
            Catalog(path)
        assert path.read_bytes() == before


def test_a_database_made_by_lemur_opens_and_takes_results(tmp_path):
    path = tmp_path / "ab.nn.db"
    with sqlite3.connect(path) as conn:
        # The stat table as nn-dataset declares it, with its unenforceable prm(uid) reference.
        conn.executescript("""
            CREATE TABLE nn (name TEXT PRIMARY KEY, code TEXT NOT NULL, id TEXT NOT NULL);
            CREATE TABLE transform (name TEXT PRIMARY KEY, code TEXT NOT NULL, id TEXT NOT NULL);
            CREATE TABLE metric (name TEXT PRIMARY KEY, code TEXT NOT NULL, id TEXT NOT NULL);
            CREATE TABLE prm (uid TEXT NOT NULL, name TEXT NOT NULL, value OBJECT NOT NULL);
            CREATE TABLE stat (id TEXT PRIMARY KEY, accuracy REAL, epoch INTEGER, duration INTEGER,
                task TEXT, dataset TEXT, nn TEXT, transform TEXT, metric TEXT, prm TEXT,
                FOREIGN KEY (nn) REFERENCES nn (name) ON DELETE CASCADE,
                FOREIGN KEY (prm) REFERENCES prm (uid) ON DELETE CASCADE);
            INSERT INTO nn VALUES ('AlexNet', 'class Net: ...', 'x');
        """)
    with Catalog(path) as cat:
        cat.register_transform("norm_32", "t")
        cat.register_metric("acc", "m")
        rec = model()
        cat.add_model(rec)
        cat.record_epoch(epoch(rec.name, 1, 0.5))
        assert set(data(cat).nn) == {rec.name}
        assert count(cat, "nn") == 2


def test_another_process_reads_the_leaderboard_while_the_writer_holds_the_lock(cat):
    a, b, c, d = _board_fixture(cat)
    # A second writer connection holds the write lock with an uncommitted change,
    # as the driver does in the middle of a transaction.
    writer = sqlite3.connect(cat.path)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE stat SET accuracy = 0.99 WHERE nn = ?", (c.name,))
    script = textwrap.dedent(f"""
        import json
        from nas_agent.catalog import Catalog
        with Catalog({str(cat.path)!r}) as cat:
            print(json.dumps([r["name"] for r in cat.leaderboard()]))
    """)
    try:
        started = time.monotonic()
        # Far below the busy timeout: the reader must not wait for the writer at all.
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=20, cwd=REPO)
        elapsed = time.monotonic() - started
    finally:
        writer.rollback()
        writer.close()
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [b.name, a.name, c.name]  # the uncommitted 0.99 is not seen
    assert elapsed < 15
