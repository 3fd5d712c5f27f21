"""Read-side views of the catalog shared by the leaderboard, the report and the exports.

Pure functions over what `Catalog`'s public methods return: which models a run touched,
the best of a model's epochs, and the leaderboard narrowed by dataset and parameter count.
"""

from __future__ import annotations

from nas_agent.catalog.records import lower_is_better
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
