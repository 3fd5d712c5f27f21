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
            if key == "element_order":
                values[key] = tuple(tuple(order) for order in value)
            else:
                values[key] = tuple(value)
            if not values[key]:
                raise ValueError(f"[space] {key} must not be empty")
        return cls(**values)

    def _dimensions(self) -> list[tuple[str, tuple]]:
        return [
            ("N_BLOCKS", self.n_blocks),
            ("N_COLUMNS", self.n_columns),
            ("BASE_CHANNELS", self.base_channels),
            ("ACTIVATION", self.activation),
            ("ELEMENT_ORDER", self.element_order),
        ]

    def __len__(self) -> int:
        return math.prod(len(values) for _, values in self._dimensions())

    def variant(self, index: int) -> dict[str, Any]:
        """Template parameters of variant `index` (0 <= index < len(self))."""
        if not 0 <= index < len(self):
            raise IndexError(f"variant {index} outside a space of {len(self)}")
        params = {}
        for name, values in reversed(self._dimensions()):
            index, digit = divmod(index, len(values))
            params[name] = values[digit]
        return {name: params[name] for name, _ in self._dimensions()}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self.variant(i) for i in range(len(self)))

    def sample(self, k: int | None, seed: int = 0) -> list[dict[str, Any]]:
        """k distinct variants in a seeded random order (all of them when k is None)."""
        n = len(self)
        k = n if k is None else min(k, n)
        return [self.variant(i) for i in random.Random(seed).sample(range(n), k)]
