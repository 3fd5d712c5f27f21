"""The search space of the fractal generative template: level structures, widths, depths and orders.

A generator's parameters are four per-level tuples (LEVEL_SEQ, LEVEL_WIDTH, LEVEL_DEPTH,
LEVEL_ORDER). As a point of the space (what Optuna samples) they are one dimension for the
level structure and one per level for width, depth and order, up to the deepest structure;
the levels a structure does not use are ignored (and filled with its last level's values
when a model is read back as a point). Mutations work on the per-level form: another level
structure (one level more or fewer, the widths and depths stretched to it), one level wider
or narrower, deeper or shallower, or switched between autoregressive and masked.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, fields
from typing import Any

# Ways to split 3 x 32 x 32 = 3,072 values into levels, from a flat autoregressive model over all of
# them to four levels. The first level's units are square patches when they tile the image.
HIERARCHIES: tuple[tuple[int, ...], ...] = (
    (3072,), (1024, 3), (64, 48), (256, 4, 3), (64, 16, 3), (16, 64, 3), (64, 4, 4, 3),
)
PARAMS = ("LEVEL_SEQ", "LEVEL_WIDTH", "LEVEL_DEPTH", "LEVEL_ORDER")


@dataclass(frozen=True)
class GenerativeSpace:
    """Values the mutations may pick from; `[space]` of a generative config may narrow them."""

    hierarchies: tuple[tuple[int, ...], ...] = HIERARCHIES
    widths: tuple[int, ...] = (16, 32, 48, 64, 96, 128, 192)
    depths: tuple[int, ...] = (1, 2, 3, 4)
    orders: tuple[str, ...] = ("ar", "mar")

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> "GenerativeSpace":
        """Build from a `[space]` section (lists become tuples); unknown keys and bad levels are errors."""
        known = {f.name for f in fields(cls)}
        unknown = set(section) - known
        if unknown:
            raise ValueError(f"unknown [space] keys for img-generation: {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(sorted(known))}")
        values = {}
        for key, value in section.items():
            if not isinstance(value, (list, tuple)) or (key == "hierarchies" and
                                                         not all(isinstance(v, (list, tuple)) for v in value)):
                raise ValueError(f"[space] {key} must be a list" + (" of lists" if key == "hierarchies" else ""))
            values[key] = tuple(tuple(v) for v in value) if key == "hierarchies" else tuple(value)
            if not values[key]:
                raise ValueError(f"[space] {key} must not be empty")
        for levels in values.get("hierarchies", ()):
            if math.prod(levels) != 3 * 32 * 32:
                raise ValueError(f"[space] hierarchies: {list(levels)} multiplies to {math.prod(levels)}, not 3072")
        if set(values.get("orders", ())) - {"ar", "mar"}:
            raise ValueError("[space] orders may hold only 'ar' and 'mar'")
        return cls(**values)

    # the Space protocol ------------------------------------------------------------------

    @property
    def max_levels(self) -> int:
        return max(len(levels) for levels in self.hierarchies)

    def dimensions(self) -> dict[str, tuple]:
        dims: dict[str, tuple] = {"LEVEL_SEQ": self.hierarchies}
        for name, values in (("LEVEL_WIDTH", self.widths), ("LEVEL_DEPTH", self.depths), ("LEVEL_ORDER", self.orders)):
            dims.update({f"{name}_{i}": values for i in range(self.max_levels)})
        return dims

    def params_of(self, point: dict[str, Any]) -> dict[str, Any]:
        levels = tuple(point["LEVEL_SEQ"])
        return {"LEVEL_SEQ": levels, **{name: tuple(point[f"{name}_{i}"] for i in range(len(levels)))
                                        for name in PARAMS[1:]}}

    def point_of(self, params: dict[str, Any]) -> dict[str, Any] | None:
        p = per_level(params)
        if p is None or p["LEVEL_SEQ"] not in self.hierarchies:
            return None
        point: dict[str, Any] = {"LEVEL_SEQ": p["LEVEL_SEQ"]}
        for name, values in (("LEVEL_WIDTH", self.widths), ("LEVEL_DEPTH", self.depths), ("LEVEL_ORDER", self.orders)):
            if any(v not in values for v in p[name]):
                return None
            padded = p[name] + (p[name][-1],) * (self.max_levels - len(p[name]))
            point.update({f"{name}_{i}": v for i, v in enumerate(padded)})
        return point

    def region_values(self, params: dict[str, Any]) -> dict[str, Any]:
        return {n: v for n, v in params.items() if n in PARAMS}

    def _per_level(self) -> int:
        return len(self.widths) * len(self.depths) * len(self.orders)

    def __len__(self) -> int:
        """Distinct generators: for each level structure, a width, depth and order per level."""
        return sum(self._per_level() ** len(levels) for levels in self.hierarchies)

    def draw(self, rng: random.Random) -> dict[str, Any]:
        """One generator uniformly at random: a structure weighted by how many generators it holds, then each level."""
        levels = rng.choices(self.hierarchies, weights=[self._per_level() ** len(h) for h in self.hierarchies])[0]
        return {"LEVEL_SEQ": levels,
                "LEVEL_WIDTH": tuple(rng.choice(self.widths) for _ in levels),
                "LEVEL_DEPTH": tuple(rng.choice(self.depths) for _ in levels),
                "LEVEL_ORDER": tuple(rng.choice(self.orders) for _ in levels)}

    def mutate(self, params: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], str] | None:
        p = per_level(params)
        if p is None:
            return None
        k = len(p["LEVEL_SEQ"])
        kind = rng.choice(("levels", "width", "depth", "order"))
        if kind == "levels":
            others = [h for h in self.hierarchies if h != p["LEVEL_SEQ"] and abs(len(h) - k) <= 1]
            if not others:
                return None
            new = rng.choice(others)
            return ({"LEVEL_SEQ": new, **{n: _resize(p[n], len(new)) for n in PARAMS[1:]}},
                    f"LEVEL_SEQ {p['LEVEL_SEQ']} -> {new}")
        i = rng.randrange(k)
        name, choices = {"width": ("LEVEL_WIDTH", self.widths), "depth": ("LEVEL_DEPTH", self.depths),
                         "order": ("LEVEL_ORDER", self.orders)}[kind]
        current = p[name][i]
        if kind == "order":
            options = [o for o in choices if o != current]
            value = rng.choice(options) if options else None
        else:
            value = _step(choices, current, rng)
        if value is None or value == current:
            return None
        return {**p, name: p[name][:i] + (value,) + p[name][i + 1:]}, f"{name}[{i}] {current} -> {value}"

    def cross(self, first: dict[str, Any], second: dict[str, Any],
              rng: random.Random) -> tuple[dict[str, Any], str] | None:
        """Each level's width, depth and order from one of two parents with the same level structure."""
        a, b = per_level(first), per_level(second)
        if a is None or b is None or a["LEVEL_SEQ"] != b["LEVEL_SEQ"] or a == b:
            return None
        taken = [i for i in range(len(a["LEVEL_SEQ"])) if rng.random() < 0.5]
        child = {n: tuple((b if i in taken else a)[n][i] for i in range(len(a[n]))) for n in PARAMS}
        if child in (a, b):
            return None
        return child, f"levels {taken} from it"


def per_level(params: dict) -> dict | None:
    """The four per-level parameters as tuples, or None when they are missing or of uneven length."""
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
