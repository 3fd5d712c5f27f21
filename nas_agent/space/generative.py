"""The search space of the fractal generative template: level structures, widths, depths and orders."""

from __future__ import annotations

import math
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
            values[key] = tuple(tuple(v) for v in value) if key == "hierarchies" else tuple(value)
            if not values[key]:
                raise ValueError(f"[space] {key} must not be empty")
        for levels in values.get("hierarchies", ()):
            if math.prod(levels) != 3 * 32 * 32:
                raise ValueError(f"[space] hierarchies: {list(levels)} multiplies to {math.prod(levels)}, not 3072")
        if set(values.get("orders", ())) - {"ar", "mar"}:
            raise ValueError("[space] orders may hold only 'ar' and 'mar'")
        return cls(**values)
