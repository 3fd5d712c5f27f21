"""A tabular benchmark of a space: every variant trained once under one recipe, as one JSON file.

The NAS-Bench approach: train the whole space once, then compare search strategies by
replaying them against table lookups (bench/replay.py) at no training cost. A table says
exactly what it measured (recipe, data subset, seed, device, package versions) and how noisy
that measurement is (a sample of variants retrained with other seeds), and refuses to stand in
for a config whose recipe or space it was not built with.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from nas_agent.errors import UserError

FORMAT = "nas-agent-bench/1"


class BenchTableError(UserError, ValueError):
    """A table file that cannot be read, or does not match the config it is used with."""


def params_key(params: dict[str, Any]) -> str:
    """One canonical string per parameter set (tuples and lists alike), to look variants up by."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


class EpochRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epoch: int
    accuracy: float
    loss: float | None = None
    train_loss: float | None = None
    seconds: float


class VariantRow(BaseModel):
    """One variant of the space: its parameters, catalog identity, size and per-epoch results."""

    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any]
    name: str
    code_hash: str
    struct_hash: str | None = None
    n_params: int | None = None
    status: str                         # done | failed | duplicate (of another variant's network)
    reason: str | None = None
    duplicate_of: str | None = None
    epochs: list[EpochRow] = []

    @property
    def final(self) -> float | None:
        """Accuracy after the recipe's last epoch; None when the variant did not finish."""
        return self.epochs[-1].accuracy if self.epochs and self.status != "failed" else None

    def at(self, epoch: int) -> float | None:
        """Accuracy after `epoch` (1-based); None when the table has no such epoch."""
        return self.epochs[epoch - 1].accuracy if 0 < epoch <= len(self.epochs) else None


class NoiseRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    accuracy: dict[str, float]          # seed (as text) -> final accuracy


class BenchTable(BaseModel):
    """The whole table; `rows` follow the space's own order of variants."""

    model_config = ConfigDict(extra="forbid")

    format: str = FORMAT
    config: str
    template: str
    family: str
    task: str
    metric: str
    space: dict[str, list]              # dimension -> its values, as the config's [space] gives them
    recipe: dict[str, Any]              # the trial's prm, as the catalog records it (epochs, subsets, seed, ...)
    device: str
    versions: dict[str, str]
    built: str
    rows: list[VariantRow]
    noise: list[NoiseRow] = []

    # reading and writing -------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> BenchTable:
        """Read a table file; BenchTableError with one line saying why it cannot be used."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise BenchTableError(f"no bench table at {path}; build one with: nas-agent bench build") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BenchTableError(f"{path}: not a readable bench table ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BenchTableError(f"{path}: not a bench table of format {FORMAT}")
        try:
            table = cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"]))
            raise BenchTableError(f"{path}: malformed bench table at {where}: {first['msg']}") from None
        if not table.rows:
            raise BenchTableError(f"{path}: the bench table has no variants")
        return table

    def save(self, path: str | Path) -> None:
        """Write atomically, one variant per line: diffs of a rebuilt table stay readable."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        head = self.model_dump(exclude={"rows", "noise"})
        lines = ["{"] + [f"  {json.dumps(k)}: {json.dumps(v, sort_keys=True)}," for k, v in head.items()]
        rows = [json.dumps(r.model_dump(exclude_none=True), sort_keys=True) for r in self.rows]
        noise = [json.dumps(r.model_dump(), sort_keys=True) for r in self.noise]
        lines.append('  "rows": [\n    ' + ",\n    ".join(rows) + "\n  ],")
        lines.append('  "noise": [' + ("\n    " + ",\n    ".join(noise) + "\n  " if noise else "") + "]")
        lines.append("}")
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(path)

    # using it ----------------------------------------------------------------------

    def check_matches(self, *, recipe: dict[str, Any], space: dict[str, list], family: str, task: str) -> None:
        """Raise BenchTableError (one line) unless the table measured this recipe on this space."""
        if task != self.task or family != self.family:
            raise BenchTableError(f"the table measured {self.family} on {self.task}; the config searches "
                                  f"{family} on {task}")
        for key in sorted(set(recipe) | set(self.recipe)):
            if _comparable(recipe.get(key)) != _comparable(self.recipe.get(key)):
                raise BenchTableError(f"the table was built with {key}={self.recipe.get(key)!r}, the config trains "
                                      f"with {key}={recipe.get(key)!r}; build a table for this config")
        ours, theirs = _comparable(space), _comparable(self.space)
        if ours != theirs:
            differ = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
            raise BenchTableError(f"the table's space differs from the config's in {', '.join(differ)}; "
                                  f"build a table for this config")

    def index(self) -> dict[str, VariantRow]:
        """Variants by params_key."""
        return {params_key(r.params): r for r in self.rows}

    @property
    def epochs(self) -> int:
        return int(self.recipe.get("epoch", max((len(r.epochs) for r in self.rows), default=0)))

    def finals(self) -> list[float]:
        """Final accuracies of the variants that finished."""
        return [r.final for r in self.rows if r.final is not None]

    def best(self) -> float:
        return max(self.finals())

    def top_threshold(self, fraction: float = 0.01) -> float:
        """The final accuracy a variant needs to be in the table's top `fraction` (at least the best one)."""
        finals = sorted(self.finals(), reverse=True)
        return finals[max(0, math.ceil(len(finals) * fraction) - 1)]

    def rank_correlation(self, epoch: int, last: int | None = None) -> float | None:
        """Spearman correlation of accuracy after `epoch` with accuracy after `last` (default: the final epoch)."""
        last = last or self.epochs
        pairs = [(r.at(epoch), r.at(last)) for r in self.rows if r.status != "failed"]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        return spearman([a for a, _ in pairs], [b for _, b in pairs]) if len(pairs) > 2 else None

    def noise_summary(self) -> dict[str, float] | None:
        """How much a variant's final accuracy moves with the seed: mean per-variant std, and the widest spread."""
        spreads, stds = [], []
        for row in self.noise:
            values = list(row.accuracy.values())
            if len(values) < 2:
                continue
            mean = sum(values) / len(values)
            stds.append(math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)))
            spreads.append(max(values) - min(values))
        if not stds:
            return None
        return {"variants": len(stds), "seeds": max(len(r.accuracy) for r in self.noise),
                "std": sum(stds) / len(stds), "max_spread": max(spreads)}


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation: Pearson's on average ranks (ties share a rank)."""
    import pandas as pd

    return float(pd.Series(a).rank().corr(pd.Series(b).rank()))


def _comparable(value):
    """JSON's view of a value (tuples as lists, ints and floats that are equal as equal)."""
    return json.loads(json.dumps(value, sort_keys=True))
