"""What search strategies share: the round's context, proposals, outcomes, and parent selection.

A strategy turns the round's parents into proposals (candidate code plus the one-line
change that made it); the loop alone validates, deduplicates, trains and records them,
then hands each strategy the outcomes of its own proposals so it can learn from every
verdict (and, in the same round, propose follow-ups such as the llm's repairs).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

import libcst as cst

from nas_agent.candidate import parse_module
from nas_agent.catalog import Catalog
from nas_agent.config import Config
from nas_agent.space.template import Template, TemplateError, read_params

STRATEGIES = ("llm", "mutate", "optuna", "hpo", "random")


@dataclass(frozen=True)
class Parent:
    """A model the round builds on: a catalogued candidate, or the template itself."""

    name: str                      # catalog name, or "template:<file>"
    source: str
    accuracy: float | None = None
    params: dict = field(default_factory=dict)   # its template parameters, when it has a parameter region

    @cached_property
    def module(self) -> cst.Module:
        """The parent's syntax tree, parsed once however many edits a round renders from it."""
        return parse_module(self.source)


@dataclass(frozen=True)
class Proposal:
    """One candidate a strategy proposes: what it changed, from which parent, and the strategy's own handle.

    A proposal is a value: the loop validates and records it and reports back with an Outcome.
    `source` is None when the strategy could not produce code (`problem` says why), and for an
    hpo trial, which retrains the catalogued model `parent` with `train` overrides of [train].
    """

    strategy: str
    parent: str | None
    change: str                               # one line a person (and the LLM) can read
    source: str | None
    problem: str = ""                         # why there is no source (an LLM answer without usable code)
    train: dict | None = None                 # hpo: overrides of [train]; the model is `parent`
    trial: int | None = None                  # the Optuna trial it is (optuna, hpo)
    llm_call: int | None = None               # the llm_call row it came from (llm)
    problem_stage: str = "parse"              # the verdict's stage when there is no source ("truncated": cut off)


@dataclass(frozen=True)
class Outcome:
    """What became of a proposal: rejected, duplicate, done, failed, stopped or interrupted.

    `accuracy` is the catalogued model's best score (done / stopped / a known duplicate), `name`
    the model it became or repeats, `stage` the validation stage that rejected it.
    """

    proposal: Proposal
    status: str
    accuracy: float | None = None
    reason: str = ""
    stage: str | None = None
    name: str | None = None


@dataclass
class RoundContext:
    """Everything a strategy may look at when proposing."""

    round: int
    run_id: str
    config: Config
    catalog: Catalog
    template: Template
    parents: list[Parent]
    rng: random.Random


class Strategy(Protocol):
    name: str

    def propose(self, context: RoundContext, k: int) -> list[Proposal]:
        """Up to `k` proposals built on `context.parents`."""
        ...

    def observe(self, outcomes: list[Outcome]) -> None:
        """Learn from what became of this strategy's proposals."""
        ...

    def follow_up(self, context: RoundContext) -> list[Proposal]:
        """More proposals in the same round, after `observe` saw its rejections (the llm's repairs)."""
        ...

    def should_stop(self, proposal: Proposal, epoch: int, accuracy: float) -> bool:
        """After each epoch of a proposal's training: stop it early (pruning)?"""
        ...

    def close(self) -> None:
        ...


class BaseStrategy:
    """Defaults for the optional parts of a strategy."""

    name = "base"

    def observe(self, outcomes: list[Outcome]) -> None:
        pass

    def follow_up(self, context: RoundContext) -> list[Proposal]:
        return []

    def should_stop(self, proposal: Proposal, epoch: int, accuracy: float) -> bool:
        return False

    def close(self) -> None:
        pass


def _params_of(source: str) -> dict:
    try:
        return read_params(source)
    except TemplateError:
        return {}


def template_parent(template: Template) -> Parent:
    return Parent(f"template:{template.path.name}", template.source, None, dict(template.defaults))


def choose_parents(catalog: Catalog, config: Config, template: Template, *, best: int, diverse: int,
                   rng: random.Random) -> list[Parent]:
    """The `best` top models of the template's family and task, plus `diverse` others picked for being unlike them.

    The diversity picks keep the search from collapsing onto one design: each is the model whose
    template parameters differ from the ones already chosen in the most places (ties: at random).
    With nothing trained yet, the template itself is the only parent.
    """
    rows = [r for r in catalog.leaderboard(task=config.task) if r["family"] == template.family]
    if not rows:
        return [template_parent(template)]
    chosen = rows[:best]
    pool = rows[best:]
    for _ in range(diverse):
        if not pool:
            break
        chosen_params = [catalog.get_model(r["name"])["template_params"] for r in chosen]

        def distance(row: dict) -> int:
            params = catalog.get_model(row["name"])["template_params"]
            return min(sum(params.get(k) != p.get(k) for k in set(params) | set(p)) for p in chosen_params)

        rng.shuffle(pool)
        pick = max(pool, key=distance)
        pool.remove(pick)
        chosen.append(pick)
    parents = []
    for row in chosen:
        model = catalog.get_model(row["name"])
        parents.append(Parent(row["name"], model["code"], row["accuracy"], model["template_params"] or
                              _params_of(model["code"])))
    return parents


def allocate(k: int, weights: dict[str, float], rng: random.Random) -> dict[str, int]:
    """Split `k` proposals among strategies in proportion to their weights (largest remainders, ties at random)."""
    total = sum(w for w in weights.values() if w > 0)
    active = [name for name, w in weights.items() if w > 0]
    if not active or k <= 0:
        return {name: 0 for name in weights}
    exact = {name: k * weights[name] / total for name in active}
    counts = {name: int(exact[name]) for name in active}
    order = sorted(active, key=lambda n: (exact[n] - counts[n], rng.random()), reverse=True)
    for name in order[:k - sum(counts.values())]:
        counts[name] += 1
    return {name: counts.get(name, 0) for name in weights}
