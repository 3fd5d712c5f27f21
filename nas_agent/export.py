"""Standalone exports: a candidate's code with its metrics, lineage and recipe in a header."""

from __future__ import annotations

import json
from pathlib import Path

from nas_agent.catalog import Catalog
from nas_agent.catalog.lemur import data as lemur_data


class ExportError(ValueError):
    """A candidate that cannot be exported (unknown, or nothing to write)."""


def _header(model: dict, epochs: list[dict], recipe: dict | None, lineage: list[str]) -> str:
    lines = [
        f"nas-agent export of {model['name']}",
        f"family: {model['family']}   origin: {model['origin']}   status: {model['status']}",
        f"parameters: {model['n_params'] if model['n_params'] is not None else 'unknown'}",
        f"lineage: {' -> '.join(lineage)}",
    ]
    if epochs:
        best = max(epochs, key=lambda e: e["accuracy"])
        lines.append(f"best test accuracy: {best['accuracy']:.4f} (epoch {best['epoch']} of {len(epochs)}, "
                     f"{model['task']} on {model['dataset']})")
        lines.append("per-epoch test accuracy: " + ", ".join(f"{e['accuracy']:.4f}" for e in epochs))
    if recipe:
        lines.append("training recipe (LEMUR prm): " + json.dumps(recipe, sort_keys=True))
    lines.append("The file follows the LEMUR contract: Net(in_shape, out_shape, prm, device), "
                 "train_setup(prm), learn(train_data).")
    return "".join(f"# {line}\n" for line in lines) + "\n"


def export_candidate(catalog: Catalog, name: str, out_dir: str | Path) -> Path:
    """Write `<out_dir>/<name>.py`; returns its path."""
    model = catalog.get_model(name)
    if model is None:
        raise ExportError(f"no candidate named {name} in the catalog")
    epochs = catalog.epochs(name)
    trials = lemur_data(catalog, nn=name)
    recipe = trials.iloc[-1]["prm"] if len(trials) else None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.py"
    path.write_text(_header(model, epochs, recipe, catalog.lineage(name)) + model["code"])
    return path
