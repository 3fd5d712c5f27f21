"""The reference network: a known-good design trained once per recipe, the baseline row of every leaderboard."""

from __future__ import annotations

from pathlib import Path

from nas_agent.candidate import Candidate
from nas_agent.catalog import Catalog, prm_uid
from nas_agent.catalog.records import REFERENCE_ORIGIN
from nas_agent.config import Config
from nas_agent.search.trainer import CandidateFile, register
from nas_agent.space.template import load_template, render_tree


def reference_candidate(config: Config) -> CandidateFile | None:
    """The configured reference network rendered with its parameters; None when `[reference] template` is empty.

    Raises TemplateError (a ValueError) for an unreadable template or an unknown parameter.
    """
    settings = config.reference
    if not settings.template:
        return None
    template = load_template(settings.template)
    module = render_tree(template.tree, settings.params)
    return CandidateFile(Path(template.path), Candidate.of_module(module.code, module), template.family)


def register_reference(catalog: Catalog, config: Config, run_id: str | None = None) -> str | None:
    """Catalogue the reference network (once: its name follows from its code) and return its name."""
    candidate = reference_candidate(config)
    return None if candidate is None else register(catalog, candidate, config, origin=REFERENCE_ORIGIN, run_id=run_id)


def trained_with(catalog: Catalog, name: str, prm: dict, epochs: int) -> bool:
    """Whether the model finished all `epochs` of the trial with hyperparameters `prm`."""
    uid = prm_uid(prm)
    return any(row["prm"] == uid and row["epoch"] >= epochs for row in catalog.epochs(name))
