"""What every template's search space offers the strategies: named dimensions and moves within them.

A *point* holds one value per dimension (what Optuna samples); a template's *parameters* are
what its parameter region assigns (what mutations edit and the catalog stores). For the
FractalNet space they are the same dict; a generator's per-level parameters are spread over
one dimension per level. `mutate`, `optuna` and `hpo` search any template through this.
"""

from __future__ import annotations

import random
from typing import Any, Protocol


class Space(Protocol):
    def dimensions(self) -> dict[str, tuple]:
        """Each dimension's name and the values it may take (at least one)."""
        ...

    def params_of(self, point: dict[str, Any]) -> dict[str, Any]:
        """The template parameters of a point (one value per dimension)."""
        ...

    def point_of(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """The point a model's template parameters are; None when they lie outside the space."""
        ...

    def mutate(self, params: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], str] | None:
        """(new parameters, one-line change) one step away from `params` inside the space; None if none."""
        ...

    def cross(self, first: dict[str, Any], second: dict[str, Any],
              rng: random.Random) -> tuple[dict[str, Any], str] | None:
        """(child parameters, what it took from `second`) mixing two parents; None when they cannot mix."""
        ...

    def region_values(self, params: dict[str, Any]) -> dict[str, Any]:
        """The values of `params` that belong in the template's parameter region."""
        ...

    def __len__(self) -> int:
        """How many distinct parameter sets (networks the template can render) the space holds."""
        ...

    def draw(self, rng: random.Random) -> dict[str, Any]:
        """The parameters of one network drawn uniformly from the space (each distinct one equally likely)."""
        ...


def short(value) -> str:
    """A parameter value as a change line shows it (sequences comma-separated)."""
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def settings(params: dict[str, Any]) -> str:
    """Parameters as a change line shows them: "N_BLOCKS=3, ACTIVATION=gelu"."""
    return ", ".join(f"{name}={short(value)}" for name, value in params.items())
