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
from nas_agent.catalog.lemur_io import (MANIFEST, TRAIN_STAT_FIELDS, LemurLayoutError, export_lemur, import_lemur,
                                        lemur_nn)

RECORD_KEYS = {"accuracy", "duration", "batch", "lr", "momentum", "dropout", "transform", "uid"}


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
    configs = sorted(p.name for p in (out / "stat").iterdir())
    assert configs == sorted(f"img-classification_cifar-10_acc_{lemur_nn(n)}" for n in built.trained)
    for config in configs:
        task, dataset, metric, nn = config.split("_")  # LEMUR's own split of the folder name
        assert (out / "nn" / f"{nn}.py").read_text().count("class Net(") == 1
        files = sorted(int(p.stem) for p in (out / "stat" / config).glob("*.json"))
        assert files == list(range(1, built.epochs[config] + 1))
        for path in (out / "stat" / config).glob("*.json"):
            (record,) = json.loads(path.read_text())
            assert RECORD_KEYS <= set(record)
            assert isinstance(record["duration"], int) and record["duration"] > 1e9  # nanoseconds, 8-30 s
            assert record["train_stat"]["epoch_max"] == 3
    # The failed model has code but no results: its code and facts still travel.
    (failed,) = built.failed
    assert (out / "nn" / f"{lemur_nn(failed)}.py").exists()
    assert json.loads((out / MANIFEST).read_text())["models"][failed]["status"] == "failed"
    assert (out / "metric" / "acc.py").exists() and len(list((out / "transform").glob("*.py"))) == 1


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
    (nn / "nn").mkdir(parents=True)
    (nn / "metric").mkdir()
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
    stat = nn / "stat" / "train"
    for dataset in ("cifar-10", "mnist"):
        folder = stat / f"img-classification_{dataset}_acc_AlexNet"
        folder.mkdir(parents=True)
        for epoch in (1, 2):
            records = [
                {"accuracy": 0.41 + epoch / 10, "batch": 4, "dropout": 0.5, "duration": 724663893278 + epoch,
                 "lr": 0.0061, "momentum": 0.7549, "transform": "norm_299", "uid": "3cb173d35a780eafb1f1a9fa4dd955d6"},
                # The same trial recorded twice (nn-dataset has such files): the better one is kept.
                {"accuracy": 0.40 + epoch / 10, "batch": 4, "dropout": 0.5, "duration": 726854306683,
                 "lr": 0.0061, "momentum": 0.7549, "transform": "norm_299", "uid": "3cb173d35a780eafb1f1a9fa4dd955d6"},
                {"accuracy": 0.2 + epoch / 20, "batch": 64, "dropout": 0.3, "duration": 146898605057,
                 "lr": 0.0029, "momentum": 0.61, "transform": "norm_128_flip", "uid": "0704b68c51b5e330183c626689538658",
                 "train_stat": {"train_loss": 1.2, "test_loss": 1.4, "epoch_max": 50, "cpu_count": 24,
                                "gpu_type": "NVIDIA GeForce RTX 4090", "best_epoch": 10}},
            ]
            (folder / f"{epoch}.json").write_text(json.dumps(records, indent=4))
    (stat / "img-classification_cifar-10_acc_Missing").mkdir()          # no nn/Missing.py
    (stat / "img-classification_cifar-10_acc_AlexNet" / "3.json").write_text("[{")   # torn file
    return root


def test_lemur_own_clone_is_read_with_origin_lemur(tmp_path):
    clone = _lemur_clone(tmp_path / "nn-dataset")
    with Catalog(tmp_path / "catalog.sqlite") as cat:
        summary = import_lemur(cat, clone)
        (model,) = cat.models()
        rows = cat.epochs(model["name"])
        stats = {(r["dataset"], r["epoch"], r["transform"]): r for r in rows}
    # One model (the same code serves both datasets), its results on each dataset under its name.
    assert summary.added == [model["name"]] == ["img-classification_cifar-10_acc_AlexNet"]
    assert model["origin"] == "lemur" and model["status"] == "done" and model["family"] == "AlexNet"
    assert len(rows) == 2 * 2 * 2 and summary.merged == 4
    best = stats[("cifar-10", 2, "norm_299")]
    assert best["accuracy"] == pytest.approx(0.61) and best["duration"] == 724663893278 + 2
    assert best["prm"] == "3cb173d35a780eafb1f1a9fa4dd955d6"  # LEMUR's trial id kept
    # The same trial on the model's other dataset keeps LEMUR's id too, marked with where it ran.
    assert stats[("mnist", 2, "norm_299")]["prm"] == "3cb173d35a780eafb1f1a9fa4dd955d6@img-classification:mnist"
    assert stats[("mnist", 2, "norm_299")]["accuracy"] == pytest.approx(0.61)
    assert stats[("mnist", 1, "norm_128_flip")]["gpu_type"] == "NVIDIA GeForce RTX 4090"
    assert any("Missing" in line and "nn/Missing.py" in line for line in summary.skipped)
    assert any("3.json" in line and "unreadable" in line for line in summary.skipped)
    # Written back out, the two datasets land in their own stat folders again.
    with Catalog(tmp_path / "catalog.sqlite") as cat:
        export_lemur(cat, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out" / "stat").iterdir()) == [
        "img-classification_cifar-10_acc_AlexNet", "img-classification_mnist_acc_AlexNet"]
    records = json.loads((tmp_path / "out" / "stat" / "img-classification_mnist_acc_AlexNet" / "1.json").read_text())
    assert [r["transform"] for r in records] == ["norm_299", "norm_128_flip"]  # best first
    assert records[0]["lr"] == 0.0061 and records[1]["train_stat"]["epoch_max"] == 50
    # Reading that export back into the same catalog changes nothing (no trial id is marked twice).
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
