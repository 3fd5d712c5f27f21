"""Mutations of fractal generators: another level structure, one level wider or narrower, deeper or
shallower, or switched between autoregressive and masked; crossovers of two same-shaped parents.

Edits are rendered into the parent's own code (its parameter region only), so whatever an LLM
changed in the template's other editable regions is kept.
"""

from __future__ import annotations

import random

from nas_agent.generative.space import PARAMS, GenerativeSpace
from nas_agent.search.strategy import BaseStrategy, Parent, Proposal, RoundContext
from nas_agent.space.template import TemplateError, render_params

ATTEMPTS_PER_PROPOSAL = 20


def _levels(params: dict) -> dict | None:
    """The parent's four per-level parameters as tuples, or None when they are missing or uneven."""
    try:
        out = {name: tuple(params[name]) for name in PARAMS}
    except (KeyError, TypeError):
        return None
    return out if len({len(v) for v in out.values()}) == 1 else None


def _resize(values: tuple, k: int) -> tuple:
    """`values` stretched or squeezed to `k` levels, keeping the first and the last level's values."""
    n = len(values)
    return tuple(values[round(i * (n - 1) / max(1, k - 1))] for i in range(k))


def _step(values: tuple, current, rng: random.Random):
    """A neighbour of `current` in the sorted `values` (the nearest one when it is not among them)."""
    ordered = sorted(values)
    at = min(range(len(ordered)), key=lambda i: abs(ordered[i] - current))
    if ordered[at] != current:
        return ordered[at]
    steps = [ordered[j] for j in (at - 1, at + 1) if 0 <= j < len(ordered)]
    return rng.choice(steps) if steps else None


class GenerativeMutateStrategy(BaseStrategy):
    """The `mutate` strategy for task img-generation."""

    name = "mutate"

    def __init__(self, space: GenerativeSpace = GenerativeSpace(), crossover: float = 0.25):
        self.space, self.crossover = space, crossover

    def mutate(self, params: dict, rng: random.Random) -> tuple[dict, str] | None:
        """(new per-level parameters, change) one step away from `params` in one respect."""
        p = _levels(params)
        if p is None:
            return None
        k = len(p["LEVEL_SEQ"])
        kind = rng.choice(("levels", "width", "depth", "order"))
        if kind == "levels":
            others = [h for h in self.space.hierarchies if h != p["LEVEL_SEQ"] and abs(len(h) - k) <= 1]
            if not others:
                return None
            new = rng.choice(others)
            return ({"LEVEL_SEQ": new, **{n: _resize(p[n], len(new)) for n in PARAMS[1:]}},
                    f"LEVEL_SEQ {p['LEVEL_SEQ']} -> {new}")
        i = rng.randrange(k)
        name, choices = {"width": ("LEVEL_WIDTH", self.space.widths), "depth": ("LEVEL_DEPTH", self.space.depths),
                         "order": ("LEVEL_ORDER", self.space.orders)}[kind]
        current = p[name][i]
        if kind == "order":
            options = [o for o in choices if o != current]
            value = rng.choice(options) if options else None
        else:
            value = _step(choices, current, rng)
        if value is None or value == current:
            return None
        return {**p, name: p[name][:i] + (value,) + p[name][i + 1:]}, f"{name}[{i}] {current} -> {value}"

    def cross(self, first: dict, second: dict, rng: random.Random, other: str) -> tuple[dict, str] | None:
        """Each level's width, depth and order from one of two parents with the same level structure."""
        a, b = _levels(first), _levels(second)
        if a is None or b is None or a["LEVEL_SEQ"] != b["LEVEL_SEQ"] or a == b:
            return None
        taken = [i for i in range(len(a["LEVEL_SEQ"])) if rng.random() < 0.5]
        child = {n: tuple((b if i in taken else a)[n][i] for i in range(len(a[n]))) for n in PARAMS}
        if child in (a, b):
            return None
        return child, f"crossover with {other}: levels {taken} from it"

    def propose(self, context: RoundContext, k: int) -> list[Proposal]:
        rng, parents = context.rng, context.parents
        proposals, seen = [], set()
        for _ in range(k * ATTEMPTS_PER_PROPOSAL):
            if len(proposals) >= k:
                break
            parent: Parent = rng.choice(parents)
            edit = None
            if len(parents) > 1 and rng.random() < self.crossover:
                mate = rng.choice([p for p in parents if p is not parent])
                edit = self.cross(parent.params, mate.params, rng, mate.name)
            edit = edit or self.mutate(parent.params, rng)
            if edit is None:
                continue
            params, change = edit
            key = repr(sorted(params.items()))
            if key in seen:
                continue
            seen.add(key)
            try:
                source = render_params(parent.source, params)
            except TemplateError:
                continue
            proposals.append(Proposal(self.name, parent.name, change, source))
        return proposals
