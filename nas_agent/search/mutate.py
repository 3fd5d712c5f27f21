"""Rule-based edits: the source paper's generator as a search operator.

A mutation changes one template parameter of a parent by one step (the next depth or
width in the space, another activation, two neighbouring layers of the element swapped);
a crossover takes each parameter from one of two parents. Edits are rendered into the
first parent's own code, so whatever an LLM changed in its element region is kept.
"""

from __future__ import annotations

import random

from nas_agent.search.strategy import BaseStrategy, Parent, Proposal, RoundContext
from nas_agent.space.fractal import FractalSpace
from nas_agent.space.template import TemplateError, render_params

ATTEMPTS_PER_PROPOSAL = 20   # tries to find an edit not made already this round


def _short(value) -> str:
    return ",".join(value) if isinstance(value, (tuple, list)) else str(value)


class MutateStrategy(BaseStrategy):
    """Mutations of one parameter (and, with two parents or more, crossovers) of the round's parents."""

    name = "mutate"

    def __init__(self, space: FractalSpace, crossover: float = 0.25):
        self.space, self.crossover = space, crossover
        self.choices = dict(space._dimensions())

    def project(self, params: dict) -> dict:
        """`params` with every value outside the configured space moved to the nearest value inside it.

        The template's own defaults (or an LLM's edit) may lie outside a `[space]` the user narrowed;
        its children should not.
        """
        # Parameters read back from the catalog's JSON hold lists where the template has tuples.
        projected = {n: tuple(v) if isinstance(v, list) else v for n, v in params.items()}
        for name, values in self.choices.items():
            value = projected.get(name)
            if name not in projected or value in values:
                continue
            numeric = isinstance(value, (int, float)) and all(isinstance(v, (int, float)) for v in values)
            projected[name] = min(values, key=lambda v: abs(v - value)) if numeric else values[0]
        return projected

    def mutate(self, parent: Parent, rng: random.Random) -> tuple[dict, str] | None:
        """(new parameters, change) for one step away from `parent` (projected into the space) in one dimension."""
        movable = [n for n in self.choices if n in parent.params and len(self.choices[n]) > 1]
        if not movable:
            return None
        name = rng.choice(movable)
        base = self.project(parent.params)
        values, current = self.choices[name], base[name]
        if name == "ELEMENT_ORDER":
            order = list(current)
            i = rng.randrange(len(order) - 1)
            order[i], order[i + 1] = order[i + 1], order[i]
            new = tuple(order)
        elif isinstance(current, (int, float)) and not isinstance(current, bool) and current in values:
            ordered = sorted(values)
            at = ordered.index(current)
            steps = [ordered[j] for j in (at - 1, at + 1) if 0 <= j < len(ordered)]
            new = rng.choice(steps)
        else:
            new = rng.choice([v for v in values if v != current])
        was = parent.params.get(name, current)  # the parent's own value, even if outside the space
        return {**base, name: new}, f"{name} {_short(was)} -> {_short(new)}"

    def cross(self, first: Parent, second: Parent, rng: random.Random) -> tuple[dict, str] | None:
        """Each parameter from one of the two parents at random (uniform crossover)."""
        a, b = self.project(first.params), self.project(second.params)
        shared = [n for n in self.choices if n in a and n in b and a[n] != b[n]]
        if not shared:
            return None
        taken = [n for n in shared if rng.random() < 0.5] or [rng.choice(shared)]
        params = {**a, **{n: b[n] for n in taken}}
        return params, f"crossover with {second.name}: {', '.join(f'{n}={_short(params[n])}' for n in taken)}"

    def region_values(self, params: dict) -> dict:
        """The edit's values that belong in the template's parameter region (the space's dimensions)."""
        return {n: v for n, v in params.items() if n in self.choices}

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
                edit = self.cross(parent, rng.choice([p for p in parents if p is not parent]), rng)
            edit = edit or self.mutate(parent, rng)
            if edit is None:
                continue
            params, change = edit
            key = repr(sorted(params.items()))
            if key in seen:
                continue
            seen.add(key)
            try:
                source = render_params(parent.source, self.region_values(params))
            except TemplateError:
                continue
            proposals.append(Proposal(self.name, parent.name, change, source))
        return proposals
