"""Compare search settings on a bench table: many seeded replays each, anytime curves, budgets to the top.

A setting is a strategy mix (`random`, `mutate`, `mutate+optuna`, `mix` for the config's own
weights) under a fidelity (`full`: every candidate trains the recipe's epochs; `halving`:
successive halving). Every number is a median over seeds with its interquartile range.
"""

from __future__ import annotations

import multiprocessing
import statistics
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from nas_agent.bench.replay import Trace, replay
from nas_agent.bench.table import BenchTable, BenchTableError
from nas_agent.config import Config

REPLAYABLE = ("random", "mutate", "optuna", "llm")   # hpo changes the recipe: the table has one


@dataclass(frozen=True)
class Setting:
    label: str                      # e.g. "mutate+optuna", "random@halving"
    strategies: dict
    fidelity: str = "full"


def parse_settings(strategies: str, fidelities: str, config: Config) -> list[Setting]:
    """Settings from `--strategies a,b+c,mix` crossed with `--fidelity full,halving`; a one-line error if unknown."""
    settings = []
    fidelity_list = [f.strip() for f in fidelities.split(",") if f.strip()] or ["full"]
    for fidelity in fidelity_list:
        if fidelity not in ("full", "halving"):
            raise BenchTableError(f"unknown fidelity {fidelity!r}; choose full or halving")
    for item in (s.strip() for s in strategies.split(",")):
        if not item:
            continue
        if item == "mix":
            weights = {k: float(v) for k, v in config.search.strategies.items() if v > 0 and k in REPLAYABLE}
        else:
            weights = {name: 1.0 for name in item.split("+")}
        unknown = sorted(set(weights) - set(REPLAYABLE))
        if unknown or not weights:
            raise BenchTableError(f"cannot replay {item!r}: strategies are {', '.join(REPLAYABLE)} joined by + "
                                  f"(or mix: the config's own weights){'; hpo changes the recipe' if 'hpo' in unknown else ''}")
        for fidelity in fidelity_list:
            settings.append(Setting(item if fidelity == "full" else f"{item}@{fidelity}", weights, fidelity))
    if not settings:
        raise BenchTableError("no strategies to replay")
    return settings


def _replay_one(table: BenchTable, config: Config, setting: Setting, seed: int, budget: int,
                epoch_budget: int, backend=None) -> Trace:
    halving = setting.fidelity == "halving"
    # Successive halving spends the same epochs as full training of `budget` candidates, on as many
    # candidates as it likes; full training spends `budget` candidates.
    return replay(table, config, setting.label, setting.strategies, seed,
                  budget=len(table.rows) if halving else budget, fidelity=setting.fidelity,
                  epoch_budget=epoch_budget if halving else 0, backend=backend if "llm" in setting.strategies else None)


def run_settings(table: BenchTable, config: Config, settings: list[Setting], seeds: list[int], *, budget: int,
                 epoch_budget: int, workers: int = 1, on_done=lambda trace: None) -> dict[str, list[Trace]]:
    """Every setting x seed replayed (in `workers` processes); traces by setting label, in seed order."""
    results: dict[str, list[Trace]] = {s.label: [] for s in settings}
    jobs = [(s, seed) for s in settings for seed in seeds]
    asks_llm = any("llm" in s.strategies for s in settings)
    if workers <= 1 or asks_llm:   # one model in memory, not one per worker
        backend = None
        if asks_llm:
            from nas_agent.llm import make_backend

            backend = make_backend(config.llm)     # loaded once for every replay; each replay seeds its sampling
        try:
            for setting, seed in jobs:
                trace = _replay_one(table, config, setting, seed, budget, epoch_budget, backend)
                results[setting.label].append(trace)
                on_done(trace)
        finally:
            if backend is not None:
                backend.close()
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_replay_one, table, config, s, seed, budget, epoch_budget) for s, seed in jobs]
            for future in as_completed(futures):
                trace = future.result()
                results[trace.setting].append(trace)
                on_done(trace)
    for traces in results.values():
        traces.sort(key=lambda t: t.seed)
    return results


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(25th percentile, median, 75th percentile)."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[1], q[2]


@dataclass
class Summary:
    """One setting's figures over its seeds."""

    setting: str
    seeds: int
    reached: int                          # seeds that reached the table's top fraction
    to_top: tuple[float, float, float] | None   # candidates needed (quartiles; an unreached seed counts as the budget + 1)
    best: tuple[float, float, float]      # incumbent's final accuracy at the end
    candidates: float                     # median candidates used
    epochs: float                         # median epochs spent
    epochs_to_top: tuple[float, float, float] | None


def summarize(table: BenchTable, results: dict[str, list[Trace]], budget: int, top: float = 0.01) -> list[Summary]:
    """Each setting's figures; `top`: the fraction of the table the target is (0.01: its top 1 %)."""
    threshold = table.top_threshold(top)
    floor = min(table.finals())
    rows = []
    for setting, traces in results.items():
        needed = [t.candidates_to_reach(threshold) for t in traces]
        epochs_needed = [t.epochs_to_reach(threshold) for t in traces]
        reached = sum(n is not None for n in needed)
        unreached = max(budget, max((t.candidates for t in traces), default=0)) + 1
        epochs_cap = max((t.epochs for t in traces), default=0) + 1
        best = [t.steps[-1][2] if t.steps and t.steps[-1][2] is not None else floor for t in traces]
        rows.append(Summary(
            setting, len(traces), reached,
            quartiles([n if n is not None else unreached for n in needed]) if traces else None,
            quartiles(best), statistics.median(t.candidates for t in traces),
            statistics.median(t.epochs for t in traces),
            quartiles([e if e is not None else epochs_cap for e in epochs_needed]) if traces else None))
    return rows


def regret_curve(table: BenchTable, traces: list[Trace], xs: list[int], by: str) -> list[tuple[float, float, float]]:
    """Quartiles of regret (table best - incumbent) over seeds at each x (candidates or epochs)."""
    best, floor = table.best(), min(table.finals())
    curve = []
    for x in xs:
        values = []
        for trace in traces:
            incumbent = trace.best_after_candidates(x) if by == "candidates" else trace.best_after_epochs(x)
            values.append(best - (incumbent if incumbent is not None else floor))
        curve.append(quartiles(values))
    return curve


def epochs_to_match(table: BenchTable, full: list[Trace], halving: list[Trace]) -> tuple[float, int | None, int]:
    """(full training's median final regret, the epochs successive halving's median regret needs to reach it
    or None, full training's median epochs)."""
    target = statistics.median(table.best() - (t.steps[-1][2] if t.steps and t.steps[-1][2] is not None
                                               else min(table.finals())) for t in full)
    spent = int(statistics.median(t.epochs for t in full))
    xs = list(range(1, max((t.epochs for t in halving), default=0) + 1))
    curve = regret_curve(table, halving, xs, "epochs")
    return target, next((x for x, (_, median, _) in zip(xs, curve) if median <= target + 1e-12), None), spent


def plot(table: BenchTable, results: dict[str, list[Trace]], budget: int, path: Path, noise: float | None,
         top: float = 0.01) -> Path:
    """Anytime curves: best-so-far and regret against candidates, regret against epochs (median and IQR)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    xs = list(range(1, budget + 1))
    best = table.best()
    for setting, traces in results.items():
        if not traces:
            continue
        if "@" not in setting:
            regret = regret_curve(table, traces, xs, "candidates")
            acc = [(best - hi, best - mid, best - lo) for lo, mid, hi in regret]
            line, = axes[0].plot(xs, [m for _, m, _ in acc], label=setting)
            axes[0].fill_between(xs, [lo for lo, _, _ in acc], [hi for _, _, hi in acc], alpha=0.15,
                                 color=line.get_color())
            axes[1].plot(xs, [m for _, m, _ in regret], label=setting, color=line.get_color())
            axes[1].fill_between(xs, [lo for lo, _, _ in regret], [hi for _, _, hi in regret],
                                 alpha=0.15, color=line.get_color())
        ex = list(range(1, max(t.epochs for t in traces) + 1))
        regret = regret_curve(table, traces, ex, "epochs")
        axes[2].plot(ex, [m for _, m, _ in regret], label=setting,
                     linestyle="--" if "@" in setting else "-")
    axes[0].axhline(table.top_threshold(top), color="grey", linestyle=":", label=f"top {top:.0%}")
    if noise:
        axes[0].axhspan(best - noise, best, color="grey", alpha=0.1, label=f"seed noise (std {noise:.3f})")
        for ax in axes[1:]:
            ax.axhline(noise, color="grey", linestyle=":", label="seed noise (std)")
    axes[0].set(xlabel="candidates trained", ylabel="best test accuracy so far (table's final)",
                title="best so far (median, IQR)")
    # symlog: a regret of 0 (the table's best found) stays on the chart
    for ax, unit in ((axes[1], "candidates"), (axes[2], "epochs")):
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.set_ylim(bottom=0)
        ax.set(xlabel=f"{unit} trained", ylabel="regret (table best - incumbent)", title=f"regret vs {unit}")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{table.config}: {len(table.rows)} variants, {table.epochs} epoch(s), "
                 f"{len(next(iter(results.values())))} seeds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
