"""The reference network: a known-good design trained once per recipe, the baseline row of every leaderboard."""

from __future__ import annotations

from pathlib import Path

from nas_agent.catalog import Catalog, prm_uid
from nas_agent.catalog.records import lower_is_better
from nas_agent.config import Config
from nas_agent.search.trainer import CandidateFile, register
from nas_agent.space.template import load_template, render_params
from nas_agent.validate.normalize import code_hash

ORIGIN = "reference"


def reference_candidate(config: Config) -> CandidateFile | None:
    """The configured reference network rendered with its parameters; None when `[reference] template` is empty.

    Raises TemplateError (a ValueError) for an unreadable template or an unknown parameter.
    """
    settings = config.reference
    if not settings.template:
        return None
    template = load_template(settings.template)
    source = render_params(template.source, settings.params) if settings.params else template.source
    return CandidateFile(Path(template.path), source, code_hash(source), template.family,
                         {**template.defaults, **settings.params})


def register_reference(catalog: Catalog, config: Config, run_id: str | None = None) -> str | None:
    """Catalogue the reference network (once: its name follows from its code) and return its name."""
    candidate = reference_candidate(config)
    return None if candidate is None else register(catalog, candidate, config, origin=ORIGIN, run_id=run_id)


def trained_with(catalog: Catalog, name: str, prm: dict, epochs: int) -> bool:
    """Whether the model finished all `epochs` of the trial with hyperparameters `prm`."""
    uid = prm_uid(prm)
    return any(row["prm"] == uid and row["epoch"] >= epochs for row in catalog.epochs(name))


def with_reference_rows(rows: list[dict], board: list[dict]) -> list[dict]:
    """`rows` (a filtered leaderboard) plus the reference rows of the whole `board` it left out.

    The added rows keep their place by accuracy; their rank is None, since they are outside
    the filter the ranks count.
    """
    shown = {row["name"] for row in rows}
    extra = [{**row, "rank": None} for row in board if row["origin"] == ORIGIN and row["name"] not in shown]
    if not extra:
        return rows
    # Task by task, each in its metric's direction, as the leaderboard itself orders them.
    return sorted(rows + extra, key=lambda row: (row.get("task") or "", row["accuracy"]
                                                 if lower_is_better(row.get("metric")) else -row["accuracy"]))
