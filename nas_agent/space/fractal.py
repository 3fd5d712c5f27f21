"""The FractalNet space of templates/fractalnet.py, as an indexable product.

Each variant is a dict of template parameters. The space is a mixed-radix product of
its dimensions, so variant i is computed directly (no list of thousands of dicts),
and a seeded sample of k variants is a sample of k indices.

The default is our own space (orders of the four element layers, five activations, small
widths). The source paper's generator (blocks 1-5, columns 1-7, widths 64-512, element
sequences of length 2-4 with repetition over conv / bn / act / dropout) is expressible too:
`[space] element_lengths` builds those sequences, `max_channels` lets widths pass 256, and
conf/paper-space.toml declares the paper's ranges.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Any, Iterator

from nas_agent.space.protocol import settings, short

ELEMENT_KINDS = ("conv", "bn", "act", "dropout")


def element_orders(kinds: tuple[str, ...] = ELEMENT_KINDS) -> tuple[tuple[str, ...], ...]:
    """Every ordering of the element's layers (4 kinds: 24 orders)."""
    return tuple(itertools.permutations(kinds))


def element_sequences(kinds: tuple[str, ...], lengths: tuple[int, ...]) -> tuple[tuple[str, ...], ...]:
    """The source paper's rule: every sequence of `kinds` of each length, with repetition, that holds a conv.

    A sequence without a conv cannot turn a block's input channels into its width, so it is no network.
    (4 kinds, lengths 2-4: 336 sequences, 219 of them with a conv.)
    """
    return tuple(seq for n in lengths for seq in itertools.product(kinds, repeat=n) if "conv" in seq)


@dataclass(frozen=True)
class FractalSpace:
    """Dimensions of the generator: fractal depth (blocks), columns, width, activation, layer order."""

    n_blocks: tuple[int, ...] = (2, 3, 4, 5)
    n_columns: tuple[int, ...] = (2, 3, 4)
    base_channels: tuple[int, ...] = (16, 32)
    activation: tuple[str, ...] = ("relu", "gelu", "silu", "leaky_relu", "elu")
    element_order: tuple[tuple[str, ...], ...] = field(default_factory=element_orders)
    max_channels: tuple[int, ...] = ()   # empty: the template's own cap on a block's width (256)

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> "FractalSpace":
        """Build from a `[space]` config section; lists become tuples, orders may be given explicitly.

        `element_lengths` (with `element_kinds`, default conv, bn, act, dropout) builds the element
        sequences by the paper's rule instead of listing them (see element_sequences).
        """
        section = dict(section)
        lengths, kinds = section.pop("element_lengths", None), section.pop("element_kinds", None)
        if lengths is not None or kinds is not None:
            if "element_order" in section:
                raise ValueError("[space] give element_order or element_lengths (and element_kinds), not both")
            if not isinstance(lengths, list) or not lengths or not all(isinstance(n, int) and 1 <= n <= 8
                                                                     for n in lengths):
                raise ValueError("[space] element_lengths must be a list of lengths from 1 to 8")
            kinds = ELEMENT_KINDS if kinds is None else kinds
            if not isinstance(kinds, list | tuple) or not set(kinds) <= set(ELEMENT_KINDS) or "conv" not in kinds:
                raise ValueError(f"[space] element_kinds must be a list of {', '.join(ELEMENT_KINDS)} holding conv")
            section["element_order"] = [list(seq) for seq in element_sequences(tuple(kinds), tuple(lengths))]
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
            **({"MAX_CHANNELS": self.max_channels} if self.max_channels else {}),
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
        return child, settings({n: child[n] for n in taken})

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

    def draw(self, rng: random.Random) -> dict[str, Any]:
        """One variant, uniformly at random."""
        return self.variant(rng.randrange(len(self)))

    def sample(self, k: int | None, seed: int = 0) -> list[dict[str, Any]]:
        """k distinct variants in a seeded random order (all of them when k is None)."""
        n = len(self)
        k = n if k is None else min(k, n)
        return [self.variant(i) for i in random.Random(seed).sample(range(n), k)]


def _tuples(value):
    """Lists (as JSON gives them back) as tuples, so they compare equal to the space's values."""
    return tuple(value) if isinstance(value, list) else value
