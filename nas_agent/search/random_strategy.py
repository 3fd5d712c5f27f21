"""The random strategy: networks drawn uniformly from the template's space, the baseline every other must beat.

It is the source paper's generator used as a search: no parent, no model of what scores well,
each proposal the template rendered with one uniform draw. Draws it made before (in this run)
are not proposed again, so on a small space it enumerates without repeats; what other
strategies found already the validator rejects as a duplicate.
"""

from __future__ import annotations

from nas_agent.search.strategy import BaseStrategy, Proposal, RoundContext
from nas_agent.space.protocol import Space, settings

ATTEMPTS_PER_PROPOSAL = 20   # draws per proposal before giving up on finding one not drawn yet


class RandomStrategy(BaseStrategy):
    name = "random"

    def __init__(self, space: Space):
        self.space = space
        self.drawn: set[str] = set()

    def propose(self, context: RoundContext, k: int) -> list[Proposal]:
        parent = f"template:{context.template.path.name}"
        proposals: list[Proposal] = []
        for _ in range(k * ATTEMPTS_PER_PROPOSAL):
            if len(proposals) >= k or len(self.drawn) >= len(self.space):
                break
            params = self.space.region_values(self.space.draw(context.rng))
            key = repr(sorted(params.items()))
            if key in self.drawn:
                continue
            self.drawn.add(key)
            change = "random draw: " + settings(params)
            proposals.append(Proposal(self.name, parent, change, context.template.render(params)))
        return proposals
