"""Standalone exports: header facts, no nas_agent dependency, and a `__main__` that retrains like the catalog says."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from catalog_factory import build_catalog
from conftest import run_nas_agent
from nas_agent.catalog import Catalog
from nas_agent.export import training_recipe
from nas_agent.space import load_template

# Runs a file as __main__ in a fresh interpreter in which nas_agent cannot be imported at all.
WITHOUT_NAS_AGENT = textwrap.dedent("""
    import importlib.abc, runpy, sys

    class NoNasAgent(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] == "nas_agent":
                raise ImportError(name + " is not importable here")

    sys.meta_path.insert(0, NoNasAgent())
    script, sys.argv = sys.argv[1], sys.argv[1:]
    runpy.run_path(script, run_name="__main__")
    assert not [m for m in sys.modules if m.split(".")[0] == "nas_agent"]
""")


def recipe_of(path: Path) -> dict:
    """EXPORT_RECIPE of an exported file, read from its syntax tree (nothing executed)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "EXPORT_RECIPE":
            return ast.literal_eval(node.value)
    raise AssertionError(f"no EXPORT_RECIPE in {path}")


def test_exported_winners_carry_metrics_lineage_recipe_and_no_nas_agent_import(tmp_path):
    built = build_catalog(tmp_path / "catalog.sqlite", models=6, epochs=2, seed=2)
    run_nas_agent("export", "--top", 3, "--out", tmp_path / "out", "--catalog", built.path, timeout=600)
    with Catalog(built.path) as cat:
        top = cat.leaderboard(top=3)
        recipes = {r["name"]: training_recipe(cat, r["name"]) for r in top}
        lineages = {r["name"]: cat.lineage(r["name"]) for r in top}
    files = sorted((tmp_path / "out").glob("*.py"))
    assert [f.stem for f in files] == sorted(r["name"] for r in top)
    for row in top:
        path = tmp_path / "out" / f"{row['name']}.py"
        text = path.read_text()
        assert text.startswith(f"# nas-agent export of {row['name']}\n")
        assert f"# best test accuracy: {row['accuracy']:.4f} (epoch {row['epoch']} of 2" in text
        assert "# lineage (root first): " + " -> ".join(lineages[row["name"]]) in text
        recipe = recipe_of(path)
        assert recipe == recipes[row["name"]]
        # The recipe of the quick config the factory trained with, with its subset sizes and 2 epochs.
        assert (recipe["lr"], recipe["batch_size"], recipe["epochs"], recipe["train_subset"]) == (0.05, 128, 2, 5000)
        assert recipe["schedule"] == "onecycle" and recipe["crop_padding"] == 4 and recipe["flip"] is True
        tree = ast.parse(text)
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert imported <= {"torch", "torchvision", "numpy", "math", "time", "json", "sys", "argparse", "pickle",
                            "tarfile", "pathlib", "contextlib"}, imported
        defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        assert {"supported_hyperparameters", "Net", "_export_main"} <= defined
    child = next((n for n, chain in lineages.items() if len(chain) > 1), None)
    if child is not None:  # the change that made a child is named in its header
        assert "N_COLUMNS" in (tmp_path / "out" / f"{child}.py").read_text().split("\n\n")[0]


@pytest.mark.parametrize("layout", ["jpeg folder", "torchvision root"])
def test_standalone_loader_picks_the_images_nas_agent_trains_on(layout, tmp_path, cifar_archive):
    """The export's own data code (no nas_agent) returns nas-agent's tensors: same pixels, order and subset."""
    import tarfile

    import torch

    from nas_agent.data import load_cifar10
    from nas_agent.export_standalone import _export_data

    if layout == "torchvision root":
        from test_data import write_torchvision_batches

        write_torchvision_batches(tmp_path / "data", rows=20)
    else:
        with tarfile.open(cifar_archive) as tar:  # the first 3 images of every split and class
            seen: dict[str, int] = {}
            members = []
            for member in tar:
                folder = member.name.rsplit("/", 1)[0]
                if member.isfile() and seen.get(folder, 0) < 3:
                    seen[folder] = seen.get(folder, 0) + 1
                    members.append(member)
            tar.extractall(tmp_path / "data", members=members, filter="data")
    expected = load_cifar10(tmp_path / "data", cache_dir=tmp_path / "cache").subset(17, 11, seed=3)
    got = _export_data(tmp_path / "data", 17, 11, seed=3)
    for name, tensor in zip(("train_x", "train_y", "test_x", "test_y"), got):
        assert torch.equal(tensor, getattr(expected, name)), name


@pytest.mark.slow
def test_exported_winner_retrains_on_its_own_exactly_as_catalogued(tmp_path, cli_env, cifar_archive):
    """Train with the real trainer on a tiny subset, export, run the file's __main__ without nas_agent."""
    source = load_template("fractalnet.py").render({"N_BLOCKS": 2, "N_COLUMNS": 2, "BASE_CHANNELS": 8,
                                                    "MAX_CHANNELS": 16})
    (tmp_path / "tiny.py").write_text(source)
    catalog = tmp_path / "catalog.sqlite"
    run_nas_agent("train", tmp_path / "tiny.py", "--config", "quick", "--epochs", 1, "--train-subset", 400,
                  "--test-subset", 200, "--device", "cpu", "--catalog", catalog, env=cli_env, timeout=600)
    run_nas_agent("export", "--top", 1, "--out", tmp_path / "out", "--catalog", catalog, env=cli_env, timeout=600)
    (exported,) = (tmp_path / "out").glob("*.py")
    assert recipe_of(exported)["train_subset"] == 400 and recipe_of(exported)["epochs"] == 1
    assert recipe_of(exported)["bn_recalibration"] == 2000   # scored as nas-agent scores
    runner = tmp_path / "without_nas_agent.py"
    runner.write_text(WITHOUT_NAS_AGENT)
    run = subprocess.run([sys.executable, str(runner), str(exported), str(cifar_archive), "--device", "cpu"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    with Catalog(catalog) as cat:
        (epoch,) = cat.epochs(exported.stem)
    assert result["epochs"] == 1 and len(result["history"]) == 1
    # Same images, same order, same initialisation and the same steps: the same numbers, up to
    # float summation order (measured: equal to all printed digits).
    assert result["history"][0]["test_loss"] == pytest.approx(epoch["test_loss"], abs=1e-4)
    assert result["history"][0]["train_loss"] == pytest.approx(epoch["train_loss"], abs=1e-4)
    # At most one of the 200 test images on the other side of a decision boundary (counted in whole
    # images: 0.15 - 0.145 is 0.0050000000000000044 in floats).
    assert abs(round(result["test_accuracy"] * 200) - round(epoch["accuracy"] * 200)) <= 1
    # Bad arguments end in one line that says what is wrong.
    for args, words in ((["--epochs", "0"], "--epochs must be positive"), ([], "no CIFAR-10 at")):
        data = str(tmp_path / "missing") if not args else str(cifar_archive)
        bad = subprocess.run([sys.executable, str(exported), data, *args], capture_output=True, text=True,
                             timeout=300, cwd=tmp_path)
        assert bad.returncode == 2 if args else bad.returncode == 1
        assert words in bad.stderr.strip().splitlines()[-1]
