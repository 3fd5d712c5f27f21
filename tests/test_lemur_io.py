"""LEMUR interop on real files: nn-dataset's layout written, read back, and LEMUR's own exports read."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path

import pytest

from catalog_factory import build_catalog
from conftest import run_nas_agent
from nas_agent.catalog import Catalog
from nas_agent.catalog.lemur import data
from nas_agent.catalog.lemur_io import MANIFEST, LemurLayoutError, export_lemur, import_lemur

RECORD_KEYS = {"accuracy", "duration", "batch", "lr", "momentum", "dropout", "transform", "uid"}
TRAIN_STAT_FIELDS = ("train_loss", "test_loss", "train_accuracy", "samples_per_second", "epoch_max",
                     "gpu_type", "gpu_memory_kb", "occupied_ram_kb")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_catalog(tmp_path_factory.mktemp("lemur") / "catalog.sqlite", models=8, epochs=3, seed=1)


def everything(path: Path) -> tuple[dict, set]:
    """({model: (code, family, parent, n_params, status)}, {every epoch with its trial, metrics and train_stat})."""
    with Catalog(path) as cat:
        models = {m["name"]: (cat.get_model(m["name"])["code"], m["family"], m["parent"], m["n_params"], m["status"])
                  for m in cat.models()}
        epochs = set()
        for name in models:
            rows = cat.epochs(name)
            prms = cat.trial_prms([r["prm"] for r in rows])
            for r in rows:
                epochs.add((name, r["epoch"], r["accuracy"], r["duration"], r["task"], r["dataset"], r["metric"],
                            r["transform"], r["prm"], json.dumps(prms[r["prm"]], sort_keys=True),
                            tuple(r[k] for k in TRAIN_STAT_FIELDS)))
    return models, epochs


def test_export_writes_nn_dataset_layout(built, tmp_path):
    out = tmp_path / "lemur"
    run_nas_agent("lemur", "export", "--out", out, "--catalog", built.path)
    stat = out / "stat" / "train"                  # nn-dataset's current layout
    configs = sorted(p.name for p in stat.iterdir())
    assert configs == sorted(f"img-classification_cifar-10_acc_{n}" for n in built.trained)
    for config in configs:
        task, dataset, metric, nn = config.split("_")  # LEMUR's own split of the folder name
        assert (out / "nn" / f"{nn}.py").read_text().count("class Net(") == 1
        files = sorted(int(p.stem) for p in (stat / config).glob("*.json"))
        assert files == list(range(1, built.epochs[nn] + 1))
        durations = []
        for epoch in files:
            (record,) = json.loads((stat / config / f"{epoch}.json").read_text())
            assert RECORD_KEYS <= set(record)
            assert record["train_stat"]["epoch_max"] == 3
            durations.append(record["duration"])
        # Nanoseconds since the trial began (8-30 s an epoch), as LEMUR's trainer writes them.
        assert all(isinstance(d, int) for d in durations) and durations == sorted(durations) and durations[0] > 1e9
    # The failed model has code but no results: its code and facts still travel.
    (failed,) = built.failed
    assert (out / "nn" / f"{failed}.py").exists()
    assert json.loads((out / MANIFEST).read_text())["models"][failed]["status"] == "failed"
    assert len(list((out / "transform").glob("*.py"))) == 1
    # LEMUR loads a metric file through its create_metric().
    namespace: dict = {}
    exec((out / "metric" / "acc.py").read_text(), namespace)
    import torch

    metric = namespace["create_metric"](out_shape=(10,))
    metric(torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]), torch.tensor([1, 0, 0]))
    assert metric.result() == pytest.approx(2 / 3)


def test_round_trip_preserves_every_model_and_every_epoch(built, tmp_path):
    with Catalog(built.path) as cat:
        export_lemur(cat, tmp_path / "lemur")
    copy = tmp_path / "copy.sqlite"
    result = run_nas_agent("lemur", "import", tmp_path / "lemur", "--catalog", copy)
    assert f"{len(built.trained) * 3} trial record(s)" in result.stdout
    models_before, epochs_before = everything(built.path)
    models_after, epochs_after = everything(copy)
    assert models_after == models_before  # code, family, lineage, parameter count and status
    assert epochs_after == epochs_before and len(epochs_after) == sum(built.epochs.values())
    with Catalog(copy) as cat:
        assert {m["origin"] for m in cat.models()} == {"lemur"}
        with Catalog(built.path) as source:
            assert [r["name"] for r in cat.leaderboard()] == [r["name"] for r in source.leaderboard()]
            assert cat.lineage(built.failed[0]) == source.lineage(built.failed[0])
    # Importing again, or into the catalog it came from, adds nothing.
    for target in (copy, built.path):
        counts = _counts(target)
        with Catalog(target) as cat:
            summary = import_lemur(cat, tmp_path / "lemur")
        assert not summary.added and summary.records == len(epochs_before) and _counts(target) == counts


def _counts(path: Path) -> dict:
    with sqlite3.connect(path) as db:
        return {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("nn", "stat", "prm", "train_stat")}


def _lemur_clone(root: Path) -> Path:
    """A slice of an nn-dataset clone: ab/nn/nn, ab/nn/stat/train, a metric; records as nn-dataset writes them."""
    nn = root / "ab" / "nn"
    for folder in ("nn", "metric", "transform"):
        (nn / folder).mkdir(parents=True)
    (nn / "nn" / "AlexNet.py").write_text(textwrap.dedent('''\
        import torch.nn as nn
        def supported_hyperparameters():
            return {"lr", "momentum", "dropout"}
        class Net(nn.Module):
            def __init__(self, in_shape, out_shape, prm, device):
                super().__init__()
                self.head = nn.Linear(3 * 32 * 32, out_shape[0])
            def forward(self, x):
                return self.head(x.flatten(1))
        '''))
    (nn / "metric" / "acc.py").write_text("def create_metric(out_shape=None):\n    return None\n")
    for transform in ("norm_299", "norm_128_flip"):
        (nn / "transform" / f"{transform}.py").write_text(f"def transform(norm):\n    return {transform!r}\n")
    stat = nn / "stat" / "train"
    for dataset in ("cifar-10", "mnist"):
        folder = stat / f"img-classification_{dataset}_acc_AlexNet"
        folder.mkdir(parents=True)
        for epoch in (1, 2):
            records = [
                {"accuracy": 0.41 + epoch / 10, "batch": 4, "dropout": 0.5, "duration": 724663893278 + epoch,
                 "lr": 0.0061, "momentum": 0.7549, "transform": "norm_299", "uid": "3cb173d35a780eafb1f1a9fa4dd955d6"},
                # The same trial recorded twice (nn-dataset has such files): LEMUR keeps both.
                {"accuracy": 0.40 + epoch / 10, "batch": 4, "dropout": 0.5, "epoch": epoch,
                 "lr": 0.0061, "momentum": 0.7549, "transform": "norm_299", "uid": "3cb173d35a780eafb1f1a9fa4dd955d6"},
                {"accuracy": 0.2 + epoch / 20, "batch": 64, "dropout": 0.3, "duration": 146898605057,
                 "lr": 0.0029, "momentum": 0.61, "transform": "norm_128_flip", "uid": "0704b68c51b5e330183c626689538658",
                 "train_loss": 1.1, "gradient_norm": 3.5,            # flat training statistics, as older records
                 "train_stat": {"train_loss": 1.2, "test_loss": 1.4, "epoch_max": 50, "cpu_count": 24,
                                "gpu_type": "NVIDIA GeForce RTX 4090", "best_epoch": 10}},
                # A record whose transform code is missing: LEMUR's build stops reading the file here.
                {"accuracy": 0.9, "batch": 8, "transform": "bf-v1-Missing", "uid": "1"},
                {"accuracy": 0.95, "batch": 8, "transform": "norm_299", "uid": "2"},
            ]
            (folder / f"{epoch}.json").write_text(json.dumps(records, indent=4))
    (stat / "img-classification_cifar-10_acc_Missing").mkdir()          # no nn/Missing.py
    (stat / "img-classification_cifar-10_acc_Missing" / "1.json").write_text(json.dumps([{"accuracy": 0.1,
                                                                                        "transform": "", "uid": "3"}]))
    (stat / "img-classification_cifar-10_acc_AlexNet" / "3.json").write_text("[{")   # torn file
    return root


def test_lemur_own_clone_is_read_as_lemur_reads_it(tmp_path):
    from lemur_reference import build_database, data as lemur_data

    clone = _lemur_clone(tmp_path / "nn-dataset")
    with Catalog(tmp_path / "catalog.sqlite") as cat:
        summary = import_lemur(cat, clone)
        (model,) = cat.models()
        rows = cat.epochs(model["name"])
        frame = data(cat)
    # One model under LEMUR's name; both datasets' results under it, every record LEMUR keeps.
    assert summary.added == [model["name"]] == ["AlexNet"]
    assert model["origin"] == "lemur" and model["status"] == "done" and model["family"] == "AlexNet"
    assert model["profile"] == "reviewed"
    assert len(rows) == 2 * 2 * 3 == summary.records            # repeated trials kept, the file cut where LEMUR cuts
    first = [r for r in rows if (r["dataset"], r["epoch"], r["transform"]) == ("cifar-10", 2, "norm_299")]
    assert sorted(r["accuracy"] for r in first) == pytest.approx([0.6, 0.61])
    assert {r["duration"] for r in first} == {724663893278 + 2, None}      # no duration: NULL, never 0
    assert {r["prm"] for r in first} == {"3cb173d35a780eafb1f1a9fa4dd955d6"}  # LEMUR's trial id kept
    flat = frame[(frame.nn == "AlexNet") & (frame.prm_id == "0704b68c51b5e330183c626689538658")].iloc[0]["prm"]
    assert flat["train_loss"] == 1.1 and flat["gradient_norm"] == 3.5 and flat["transform"] == "norm_128_flip"
    assert any("Missing/1.json" in line and "nn/Missing.py" in line for line in summary.skipped)
    assert any("1.json" in line and "transform/bf-v1-Missing.py" in line for line in summary.skipped)
    assert any("3.json" in line for line in summary.skipped)
    # The same rows as LEMUR's own build of the same folder, column for column.
    build_database(clone / "ab" / "nn", tmp_path / "lemur.db")
    ours, theirs = (f.sort_values("id").reset_index(drop=True) for f in (frame, lemur_data(tmp_path / "lemur.db")))
    assert ours.astype(str).equals(theirs.astype(str))
    # Written back out, the files hold the records as they were read, in the same layout.
    with Catalog(tmp_path / "catalog.sqlite") as cat:
        export_lemur(cat, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out" / "stat" / "train").iterdir()) == [
        "img-classification_cifar-10_acc_AlexNet", "img-classification_mnist_acc_AlexNet"]
    source = json.loads((clone / "ab/nn/stat/train/img-classification_mnist_acc_AlexNet/1.json").read_text())
    written = json.loads((tmp_path / "out/stat/train/img-classification_mnist_acc_AlexNet/1.json").read_text())
    assert written == source[:3]
    assert (tmp_path / "out" / "transform" / "norm_299.py").read_text() == "def transform(norm):\n    return 'norm_299'\n"
    # Reading that export back into the same catalog changes nothing.
    with Catalog(tmp_path / "catalog.sqlite") as cat:
        again = import_lemur(cat, tmp_path / "out")
        assert not again.added and len(cat.epochs(model["name"])) == len(rows)


def test_bad_folders_are_one_line_errors_and_leave_no_catalog(tmp_path):
    from typer.testing import CliRunner

    from nas_agent.cli import app

    (tmp_path / "empty").mkdir()
    for folder, words in (("nowhere", "no folder"), ("empty", "has no stat/ folder")):
        result = CliRunner().invoke(app, ["lemur", "import", str(tmp_path / folder), "--catalog",
                                          str(tmp_path / "c.sqlite")])
        assert result.exit_code == 2 and words in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c.sqlite").exists()
    (tmp_path / "file").write_text("x")
    with Catalog(tmp_path / "d.sqlite") as cat, pytest.raises(LemurLayoutError, match="is a file"):
        export_lemur(cat, tmp_path / "file")
