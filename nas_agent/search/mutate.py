"""Rule-based edits: the source paper's generator as a search operator, over any template's space.

A mutation moves a parent one step in one respect (the space says what a step is: the next
depth or width, another activation, two neighbouring layers of the element swapped, another
level structure of a generator); a crossover mixes two parents' parameters. Edits are
rendered into the first parent's own code, so whatever an LLM changed in its other editable
regions is kept.
"""

from __future__ import annotations

from nas_agent.search.strategy import BaseStrategy, Proposal, RoundContext
from nas_agent.space.protocol import Space
from nas_agent.space.template import TemplateError, render_params

ATTEMPTS_PER_PROPOSAL = 20   # tries to find an edit not made already this round


class MutateStrategy(BaseStrategy):
    """Mutations of one parameter (and, with two parents or more, crossovers) of the round's parents."""

    name = "mutate"

    def __init__(self, space: Space, crossover: float = 0.25):
        self.space, self.crossover = space, crossover

    def propose(self, context: RoundContext, k: int) -> list[Proposal]:
        """Up to `k` distinct edits (crossover with probability `crossover`, else a mutation) of the round's parents."""
        rng, parents = context.rng, context.parents
        proposals, seen = [], set()
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
            key = repr(sorted(params.items()))
            if key in seen:
                continue
            seen.add(key)
            try:
                source = render_params(parent.module, self.space.region_values(params))
            except TemplateError:
                continue
            proposals.append(Proposal(self.name, parent.name, change, source))
        return proposals
