"""Mutations of fractal generators: another level structure, one level wider or narrower, deeper or
shallower, or switched between autoregressive and masked; crossovers of two same-shaped parents.

Edits are rendered into the parent's own code (its parameter region only), so whatever an LLM
changed in the template's other editable regions is kept.
"""

from __future__ import annotations

import random

from nas_agent.space.generative import PARAMS, GenerativeSpace
from nas_agent.search.mutate import MutateStrategy
from nas_agent.search.strategy import Parent


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


class GenerativeMutateStrategy(MutateStrategy):
    """The `mutate` strategy for task img-generation: the fractal one's proposal loop, these edits."""

    name = "mutate"

    def __init__(self, space: GenerativeSpace = GenerativeSpace(), crossover: float = 0.25):
        self.space, self.crossover = space, crossover

    def mutate(self, parent: Parent, rng: random.Random) -> tuple[dict, str] | None:
        """(new per-level parameters, change) one step away from the parent in one respect."""
        p = _levels(parent.params)
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

    def cross(self, first: Parent, second: Parent, rng: random.Random) -> tuple[dict, str] | None:
        """Each level's width, depth and order from one of two parents with the same level structure."""
        a, b = _levels(first.params), _levels(second.params)
        if a is None or b is None or a["LEVEL_SEQ"] != b["LEVEL_SEQ"] or a == b:
            return None
        taken = [i for i in range(len(a["LEVEL_SEQ"])) if rng.random() < 0.5]
        child = {n: tuple((b if i in taken else a)[n][i] for i in range(len(a[n]))) for n in PARAMS}
        if child in (a, b):
            return None
        return child, f"crossover with {second.name}: levels {taken} from it"

    def region_values(self, params: dict) -> dict:
        return params  # mutate and cross return the per-level parameters only
