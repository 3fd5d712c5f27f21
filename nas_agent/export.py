"""Standalone exports: a candidate's code, a header with its metrics, lineage and recipe, and a `__main__`.

The file needs only PyTorch and torchvision: `python FILE.py PATH_TO_CIFAR10` trains the
network with the exact recipe of its best catalogued trial and prints the test accuracy.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, fields
from pathlib import Path

from nas_agent.catalog import TASK_CLASSIFICATION, Catalog
from nas_agent.catalog.browse import best_row
from nas_agent.config import TrainConfig
from nas_agent.errors import UserError

_RUNNER_MARKER = "# --- nas-agent standalone runner (begin) ---\n"
# LEMUR prm keys of a nas-agent trial -> the [train] keys they fix.
_PRM_TO_TRAIN = {"lr": "lr", "momentum": "momentum", "dropout": "dropout", "batch": "batch_size",
                 "epoch": "epochs", "optimizer": "optimizer", "schedule": "schedule",
                 "weight_decay": "weight_decay", "label_smoothing": "label_smoothing", "seed": "seed",
                 "bn_recalibration": "bn_recalibration"}


class ExportError(UserError, ValueError):
    """A candidate that cannot be exported (unknown, or nothing to write)."""


def best_trial(catalog: Catalog, name: str) -> tuple[dict | None, dict]:
    """(the stat row of the model's best epoch, that trial's prm); (None, {}) without results."""
    best = best_row(catalog.epochs(name))
    if best is None:
        return None, {}
    return best, catalog.trial_prms([best["prm"]]).get(best["prm"], {})


def _trained_config(catalog: Catalog, name: str) -> dict:
    """The configuration of the latest run that finished training the model ({} if none is known)."""
    runs = [e["run_id"] for e in catalog.events(nn=name, kind="done") if e["run_id"]]
    model = catalog.get_model(name)
    for run_id in reversed(runs + ([model["run_id"]] if model and model["run_id"] else [])):
        run = catalog.get_run(run_id)
        if run and run["config"].get("train"):
            return run["config"]
    return {}


def training_recipe(catalog: Catalog, name: str) -> dict:
    """The complete recipe of the model's best trial: its run's [train] section, the trial's prm on top.

    A trial nas-agent did not train (no `schedule` in its prm, e.g. imported from LEMUR) is
    trained through the candidate's own train_setup/learn (`loop` "contract").
    """
    _, prm = best_trial(catalog, name)
    config = _trained_config(catalog, name)
    known = {f.name for f in fields(TrainConfig)}
    recipe = {**asdict(TrainConfig()), **{k: v for k, v in config.get("train", {}).items() if k in known}}
    for key, train_key in _PRM_TO_TRAIN.items():
        if key in prm:
            recipe[train_key] = prm[key]
    if "bn_recalibration" not in prm and "bn_recalibration" not in config.get("train", {}):
        recipe["bn_recalibration"] = 0   # trained before nas-agent recalibrated BatchNorm statistics
    transform = str(prm.get("transform", ""))
    crop = re.search(r"(?:^|_)crop(\d+)(?:_|$)", transform)
    if prm and "schedule" not in prm:
        recipe["loop"] = "contract"
    if transform:
        recipe["crop_padding"] = int(crop.group(1)) if crop else 0
        recipe["flip"] = "flip" in transform.split("_")
    data = config.get("data", {})
    recipe["train_subset"] = int(prm.get("train_subset", data.get("train_subset", 0)) or 0)
    recipe["test_subset"] = int(prm.get("test_subset", data.get("test_subset", 0)) or 0)
    return recipe


def _header(model: dict, epochs: list[dict], recipe: dict, prm: dict, lineage: list[str],
            changes: dict[str, str]) -> str:
    lines = [
        f"nas-agent export of {model['name']}",
        f"family: {model['family']}   origin: {model['origin']}   status: {model['status']}",
        f"parameters: {model['n_params'] if model['n_params'] is not None else 'unknown'}",
        f"code hash: {model['code_hash']}",
        "lineage (root first): " + " -> ".join(lineage),
    ]
    for child in lineage[1:]:
        if changes.get(child):
            lines.append(f"  {child.rsplit('_', 1)[-1]}: {changes[child]}")
    if epochs:
        best = best_row(epochs)
        trial = [e for e in epochs if e["prm"] == best["prm"]]
        metric = "test accuracy" if best["metric"] == "acc" else best["metric"]
        lines.append(f"best {metric}: {best['accuracy']:.4f} (epoch {best['epoch']} of {len(trial)}, "
                     f"{model['task']} on {model['dataset']}, {best['seconds']:.1f} s/epoch)")
        lines.append(f"per-epoch {metric} of that trial: " + ", ".join(f"{e['accuracy']:.4f}" for e in trial))
    else:
        lines.append("no recorded results")
    if prm:
        lines.append("trial hyperparameters (LEMUR prm): " + json.dumps(prm, sort_keys=True))
    lines.append("training recipe (EXPORT_RECIPE below): " + json.dumps(recipe, sort_keys=True))
    if recipe["loop"] == "contract":
        lines.append("loop 'contract': the trial was not trained by nas-agent, so Net.train_setup/learn choose the "
                     "optimiser; the recipe gives batch, epochs, seed, subsets, crop and flip")
    lines += [
        "The file follows the LEMUR contract: supported_hyperparameters(), Net(in_shape, out_shape, prm, device),",
        "train_setup(prm), learn(train_data), forward(x). It needs only PyTorch and torchvision:",
        f"  python {model['name']}.py PATH_TO_CIFAR10 [--epochs N] [--train-subset N] [--test-subset M]",
        "PATH_TO_CIFAR10: a .tar.gz or folder of train/<class>/*.jpg and test/<class>/*.jpg, or a torchvision root.",
        "With the recipe's subset sizes, seed and device it trains on the same images in the same order.",
    ]
    # Every line stays a comment: a line break inside catalog text (an LLM's summary of its change)
    # would otherwise turn the rest of that line into code of the exported file.
    lines = [" ".join(line.splitlines()) for line in lines]
    return "".join(f"# {line}\n" if line else "#\n" for line in lines) + "\n"


def _python_literal(recipe: dict) -> str:
    """The recipe as a Python dict literal, one key a line (repr keeps True/None/floats exact)."""
    return "{\n" + "".join(f"    {k!r}: {recipe[k]!r},\n" for k in sorted(recipe)) + "}"


def _runner_source() -> str:
    text = (Path(__file__).parent / "export_standalone.py").read_text()
    return text[text.index(_RUNNER_MARKER):]


def export_candidate(catalog: Catalog, name: str, out_dir: str | Path) -> Path:
    """Write `<out_dir>/<name>.py`, runnable on its own; returns its path."""
    model = catalog.get_model(name)
    if model is None:
        raise ExportError(f"no candidate named {name} in the catalog")
    epochs = catalog.epochs(name)
    _, prm = best_trial(catalog, name)
    recipe = training_recipe(catalog, name)
    lineage = catalog.lineage(name)
    changes = {p["nn"]: f"{p['strategy']}: {p['change']}" for p in catalog.proposals()
               if p["nn"] in lineage and p["ok"] and p["change"] and p["nn"] != p["parent"]}
    code = model["code"] if model["code"].endswith("\n") else model["code"] + "\n"
    if model["task"] == TASK_CLASSIFICATION:
        runner = (f"\n\n# --- nas-agent export: standalone training ---\nEXPORT_NAME = {name!r}\n"
                  f"EXPORT_RECIPE = {_python_literal(recipe)}\n\n\n" + _runner_source())
    else:  # the runner trains classifiers on CIFAR-10; other tasks get their code and header only
        runner = f"\n# (no standalone __main__: it trains {TASK_CLASSIFICATION} models only)\n"
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} is a file; give a folder to export into")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.py"
    path.write_text(_header(model, epochs, recipe, prm, lineage, changes) + code + runner)
    return path
