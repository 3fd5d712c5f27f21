"""`nas-agent propose`'s work outside a search: ask the LLM once, or judge answers saved elsewhere.

Both judge every answer with the run's validator, the way the search loop judges its LLM
proposals; live answers are recorded (`llm_call` rows with their verdicts), saved ones are not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nas_agent.catalog import Catalog
from nas_agent.config import Config
from nas_agent.llm import Backend, Completion
from nas_agent.llm.propose import Answer, Proposer, read_saved_answer
from nas_agent.search.llm_strategy import judge_answer
from nas_agent.space.template import load_template
from nas_agent.tasks import task_of
from nas_agent.validate import Validation, Validator


@dataclass(frozen=True)
class Judged:
    """One answer and its validation; `label` names it in a table (a file, or the answer's index)."""

    label: str
    answer: Answer
    validation: Validation


@dataclass(frozen=True)
class Base:
    """What the answers build on: a catalog model's code or a template's, and its name in prompts and tables."""

    source: str
    label: str


def base_of(config: Config, catalog: Catalog | None, parent: str | None, template: Path | None) -> Base:
    """The parent model's code when `parent` is given (resolved already), else the template's."""
    if parent:
        return Base(catalog.get_model(parent)["code"], parent)
    found = load_template(template or config.template)
    return Base(found.source, f"template:{found.path.name}")


def ask_once(config: Config, catalog: Catalog, backend: Backend, base: Base, validator: Validator, *,
             run_id: str, mode: str) -> list[Judged]:
    """llm.n answers in `mode` (params, code, mixed) building on `base`, each recorded and judged."""
    proposer = Proposer.for_config(config, backend, catalog=catalog, run_id=run_id)
    answers = proposer.propose(base.source, base.label, config.llm.n, mode)
    return [Judged(str(a.index), a, judge_answer(catalog, validator, a)) for a in answers]


def judge_saved(config: Config, texts: list[tuple[str, str]], base: Base, validator: Validator, *,
                mode: str = "auto") -> list[Judged]:
    """Saved answers (label, text) read in `mode` ("auto": a JSON point of the space, else code) and judged."""
    space = task_of(config.task).space_of(config.space)
    template = load_template(config.template)
    judged = []
    for index, (label, text) in enumerate(texts):
        completion = Completion(0, text, 0, len(text.split()), 0.0)
        answer = read_saved_answer(completion, base.source, space, template, mode, index)
        judged.append(Judged(label, answer, judge_answer(None, validator, answer, label)))   # not recorded: no call
    return judged
