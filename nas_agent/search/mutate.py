"""Rule-based edits: the source paper's generator as a search operator, over any template's space.

A mutation moves a parent one step in one respect (the space says what a step is: the next
depth or width, another activation, two neighbouring layers of the element swapped, another
level structure of a generator); a crossover mixes two parents' parameters. Edits are
rendered into the first parent's own code, so whatever an LLM changed in its other editable
regions is kept. An edit that lands on a network the catalog (or this round) holds already
walks on, one more step at a time: around a good parent the one-step neighbours are soon all
tried, and proposing them again only buys duplicate verdicts.
"""

from __future__ import annotations

import json

from nas_agent.search.strategy import BaseStrategy, Proposal, RoundContext
from nas_agent.space.protocol import Space
from nas_agent.space.template import TemplateError, render_params

ATTEMPTS_PER_PROPOSAL = 20   # tries to find an edit not made already this round
MAX_STEPS = 4                # an edit that lands on a network tried before walks on, up to this many steps


class MutateStrategy(BaseStrategy):
    """Mutations of one parameter (and, with two parents or more, crossovers) of the round's parents."""

    name = "mutate"

    def __init__(self, space: Space, crossover: float = 0.25):
        self.space, self.crossover = space, crossover

    def propose(self, context: RoundContext, k: int) -> list[Proposal]:
        """Up to `k` distinct edits (crossover with probability `crossover`, else a mutation) of the round's parents."""
        rng, parents = context.rng, context.parents
        proposals, seen = [], self._known(context)
        for _ in range(k * ATTEMPTS_PER_PROPOSAL):
            if len(proposals) >= k:
                break
            parent = rng.choice(parents)
            edit = None
            if len(parents) > 1 and rng.random() < self.crossover:
                other = rng.choice([p for p in parents if p is not parent])
                crossed = self.space.cross(parent.params, other.params, rng)
                edit = (crossed[0], f"crossover with {other.name}: {crossed[1]}") if crossed else None
            edit = edit or self.space.mutate(parent.params, rng)
            if edit is None:
                continue
            params, change = edit
            for _ in range(MAX_STEPS - 1):
                if self._key(params) not in seen:
                    break
                further = self.space.mutate(params, rng)
                if further is None:
                    break
                params, change = further[0], f"{change}; {further[1]}"
            key = self._key(params)
            if key in seen:
                continue
            seen.add(key)
            try:
                source = render_params(parent.module, self.space.region_values(params))
            except TemplateError:
                continue
            proposals.append(Proposal(self.name, parent.name, change, source))
        return proposals

    def _known(self, context: RoundContext) -> set[str]:
        """The points of the space the catalog holds a model of (this template's family)."""
        known: set[str] = set()
        if context.catalog is None:   # proposing without a catalog (nothing tried yet)
            return known
        for model in context.catalog.models(task=context.config.task):
            if model["family"] == context.template.family and model["template_params"]:
                known.add(self._key(model["template_params"]))
        return known

    def _key(self, params: dict) -> str:
        """One string per point of the space (parameters outside its dimensions, lists or tuples: alike)."""
        point = self.space.point_of(params)
        return json.dumps(point if point is not None else params, sort_keys=True, default=str)
