"""Read-side views of the catalog shared by the leaderboard, the report and the exports.

Pure functions over what `Catalog`'s public methods return: which models a run touched,
the best of a model's epochs, the leaderboard narrowed by dataset and parameter count (with the
reference network's rows kept), and a run's per-strategy figures.
"""

from __future__ import annotations

import statistics

from nas_agent.catalog.records import REFERENCE_ORIGIN, lower_is_better
from nas_agent.catalog.store import Catalog, CatalogError

# Event kinds that mean a run trained (or tried to train) the model, as opposed to rejecting a file.
_TRAINING_EVENTS = ("queued", "running", "done", "failed", "resumed")


def run_models(catalog: Catalog, run_id: str) -> list[str]:
    """Names of the catalogued models a run proposed, registered or trained, oldest first.

    Raises CatalogError for an unknown run.
    """
    if catalog.get_run(run_id) is None:
        raise CatalogError(f"no run {run_id!r} in {catalog.path}; `nas-agent runs` lists the runs")
    names: dict[str, None] = {}
    for proposal in catalog.proposals(run_id=run_id):
        if proposal["nn"]:
            names[proposal["nn"]] = None
    for event in catalog.events():
        if event["run_id"] == run_id and event["kind"] in _TRAINING_EVENTS and event["nn"]:
            names[event["nn"]] = None
    # Rejected files are logged by path, not by name; only catalogued models count.
    return [n for n in names if catalog.get_model(n) is not None]


def filter_leaderboard(rows: list[dict], *, dataset: str | None = None, min_params: int | None = None,
                       max_params: int | None = None, top: int | None = None) -> list[dict]:
    """The leaderboard rows of `dataset` whose parameter count lies in [min_params, max_params], re-ranked.

    A row whose parameter count is unknown is left out as soon as a bound is given.
    """
    if min_params is not None and max_params is not None and min_params > max_params:
        raise ValueError(f"--min-params {min_params} is above --max-params {max_params}")

    def keep(row: dict) -> bool:
        if dataset is not None and row["dataset"] != dataset:
            return False
        if min_params is None and max_params is None:
            return True
        n = row["n_params"]
        return n is not None and (min_params is None or n >= min_params) and (max_params is None or n <= max_params)

    kept = [row for row in rows if keep(row)]
    if top is not None:
        kept = kept[:top]
    return [{**row, "rank": i} for i, row in enumerate(kept, start=1)]


def best_row(rows: list[dict]) -> dict | None:
    """The best stat row in its metric's direction (accuracy: highest, bits/dim: lowest); ties: the earlier epoch."""
    if not rows:
        return None
    return min(rows, key=lambda r: (r["accuracy"] if lower_is_better(r["metric"]) else -r["accuracy"], r["epoch"]))


def with_reference_rows(rows: list[dict], board: list[dict]) -> list[dict]:
    """`rows` (a filtered leaderboard) plus the reference rows of the whole `board` it left out.

    The added rows keep their place by accuracy; their rank is None, since they are outside
    the filter the ranks count.
    """
    shown = {row["name"] for row in rows}
    extra = [{**row, "rank": None} for row in board if row["origin"] == REFERENCE_ORIGIN and row["name"] not in shown]
    if not extra:
        return rows
    # Task by task, each in its metric's direction, as the leaderboard itself orders them.
    return sorted(rows + extra, key=lambda row: (row.get("task") or "", row["accuracy"]
                                                 if lower_is_better(row.get("metric")) else -row["accuracy"]))


def strategy_summary(catalog: Catalog, run_id: str) -> list[dict]:
    """A search run's per-strategy figures (does the LLM beat plain mutation?).

    One row per strategy that proposed in the run, in order of first appearance.

    Keys: strategy, proposals, valid, valid_share, duplicates, rejected, trained, failed,
    stopped, best (accuracy), mean (accuracy over its trained candidates), best_name.
    """
    rows: dict[str, list[dict]] = {}
    for proposal in catalog.proposals(run_id=run_id):
        rows.setdefault(proposal["strategy"], []).append(proposal)
    summary = []
    for strategy, proposals in rows.items():
        finished = [p for p in proposals if p["status"] in ("done", "stopped") and p["accuracy"] is not None]
        # Bits/dim (generators) is best when lowest; accuracy when highest.
        lower = any(lower_is_better((catalog.get_model(p["nn"]) or {}).get("metric")) for p in finished if p["nn"])
        best = (min if lower else max)(finished, key=lambda p: p["accuracy"], default=None)
        valid = sum(1 for p in proposals if p["ok"])
        summary.append({
            "strategy": strategy, "proposals": len(proposals), "valid": valid,
            "valid_share": valid / len(proposals),
            "duplicates": sum(1 for p in proposals if p["status"] == "duplicate"),
            "rejected": sum(1 for p in proposals if p["status"] == "rejected"),
            "trained": sum(1 for p in proposals if p["status"] == "done"),
            "failed": sum(1 for p in proposals if p["status"] == "failed"),
            "stopped": sum(1 for p in proposals if p["status"] == "stopped"),
            "best": best["accuracy"] if best else None,
            "best_name": best["nn"] if best else None,
            "mean": statistics.fmean(p["accuracy"] for p in finished) if finished else None,
        })
    return summary
