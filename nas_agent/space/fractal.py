"""The FractalNet permutation space of the source paper, as an indexable product.

Each variant is a dict of template parameters. The space is a mixed-radix product of
its dimensions, so variant i is computed directly (no list of thousands of dicts),
and a seeded sample of k variants is a sample of k indices.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Any, Iterator

from nas_agent.space.protocol import short

ELEMENT_KINDS = ("conv", "bn", "act", "dropout")


def element_orders(kinds: tuple[str, ...] = ELEMENT_KINDS) -> tuple[tuple[str, ...], ...]:
    """Every ordering of the element's layers (4 kinds: 24 orders)."""
    return tuple(itertools.permutations(kinds))


@dataclass(frozen=True)
class FractalSpace:
    """Dimensions of the generator: fractal depth (blocks), columns, width, activation, layer order."""

    n_blocks: tuple[int, ...] = (2, 3, 4, 5)
    n_columns: tuple[int, ...] = (2, 3, 4)
    base_channels: tuple[int, ...] = (16, 32)
    activation: tuple[str, ...] = ("relu", "gelu", "silu", "leaky_relu", "elu")
    element_order: tuple[tuple[str, ...], ...] = field(default_factory=element_orders)

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> "FractalSpace":
        """Build from a `[space]` config section; lists become tuples, orders may be given explicitly."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(section) - known
        if unknown:
            raise ValueError(f"unknown [space] keys: {', '.join(sorted(unknown))}")
        values = {}
        for key, value in section.items():
            if not isinstance(value, (list, tuple)) or (key == "element_order" and
                                                         not all(isinstance(v, (list, tuple)) for v in value)):
                raise ValueError(f"[space] {key} must be a list" + (" of lists" if key == "element_order" else ""))
            if key == "element_order":
                values[key] = tuple(tuple(order) for order in value)
            else:
                values[key] = tuple(value)
            if not values[key]:
                raise ValueError(f"[space] {key} must not be empty")
        return cls(**values)

    def dimensions(self) -> dict[str, tuple]:
        """The template parameters the space varies, each with the values it may take."""
        return {
            "N_BLOCKS": self.n_blocks,
            "N_COLUMNS": self.n_columns,
            "BASE_CHANNELS": self.base_channels,
            "ACTIVATION": self.activation,
            "ELEMENT_ORDER": self.element_order,
        }

    def __len__(self) -> int:
        return math.prod(len(values) for values in self.dimensions().values())

    # the Space protocol: a point is the parameters themselves -------------------------

    def params_of(self, point: dict[str, Any]) -> dict[str, Any]:
        return dict(point)

    def point_of(self, params: dict[str, Any]) -> dict[str, Any] | None:
        point = {}
        for name, values in self.dimensions().items():
            value = _tuples(params.get(name))
            if value not in values:
                return None
            point[name] = value
        return point

    def region_values(self, params: dict[str, Any]) -> dict[str, Any]:
        return {n: v for n, v in params.items() if n in self.dimensions()}

    def project(self, params: dict[str, Any]) -> dict[str, Any]:
        """`params` with every value outside the space moved to the nearest value inside it.

        The template's own defaults (or an LLM's edit) may lie outside a `[space]` the user narrowed;
        its children should not.
        """
        # Parameters read back from the catalog's JSON hold lists where the template has tuples.
        projected = {n: _tuples(v) for n, v in params.items()}
        for name, values in self.dimensions().items():
            value = projected.get(name)
            if name not in projected or value in values:
                continue
            numeric = isinstance(value, (int, float)) and all(isinstance(v, (int, float)) for v in values)
            projected[name] = min(values, key=lambda v: abs(v - value)) if numeric else values[0]
        return projected

    def mutate(self, params: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], str] | None:
        """One step in one dimension: the next depth or width, another activation, two neighbouring layers swapped."""
        choices = self.dimensions()
        movable = [n for n in choices if n in params and len(choices[n]) > 1]
        if not movable:
            return None
        name = rng.choice(movable)
        base = self.project(params)
        values, current = choices[name], base[name]
        if name == "ELEMENT_ORDER":
            order = list(current)
            i = rng.randrange(len(order) - 1)
            order[i], order[i + 1] = order[i + 1], order[i]
            new = tuple(order)
        elif isinstance(current, (int, float)) and not isinstance(current, bool) and current in values:
            ordered = sorted(values)
            at = ordered.index(current)
            new = rng.choice([ordered[j] for j in (at - 1, at + 1) if 0 <= j < len(ordered)])
        else:
            new = rng.choice([v for v in values if v != current])
        was = params.get(name, current)  # the parent's own value, even if outside the space
        return {**base, name: new}, f"{name} {short(was)} -> {short(new)}"

    def cross(self, first: dict[str, Any], second: dict[str, Any],
              rng: random.Random) -> tuple[dict[str, Any], str] | None:
        """Each parameter from one of the two parents at random (uniform crossover)."""
        a, b = self.project(first), self.project(second)
        shared = [n for n in self.dimensions() if n in a and n in b and a[n] != b[n]]
        if not shared:
            return None
        taken = [n for n in shared if rng.random() < 0.5] or [rng.choice(shared)]
        child = {**a, **{n: b[n] for n in taken}}
        return child, ", ".join(f"{n}={short(child[n])}" for n in taken)

    def variant(self, index: int) -> dict[str, Any]:
        """Template parameters of variant `index` (0 <= index < len(self))."""
        if not 0 <= index < len(self):
            raise IndexError(f"variant {index} outside a space of {len(self)}")
        params = {}
        dimensions = self.dimensions()
        for name, values in reversed(dimensions.items()):
            index, digit = divmod(index, len(values))
            params[name] = values[digit]
        return {name: params[name] for name in dimensions}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self.variant(i) for i in range(len(self)))

    def sample(self, k: int | None, seed: int = 0) -> list[dict[str, Any]]:
        """k distinct variants in a seeded random order (all of them when k is None)."""
        n = len(self)
        k = n if k is None else min(k, n)
        return [self.variant(i) for i in random.Random(seed).sample(range(n), k)]


def _tuples(value):
    """Lists (as JSON gives them back) as tuples, so they compare equal to the space's values."""
    return tuple(value) if isinstance(value, list) else value
