"""Per-strategy figures of a search run: the table that says whether the LLM beats plain mutation."""

from __future__ import annotations

import statistics

from nas_agent.catalog import Catalog
from nas_agent.catalog.records import lower_is_better


def strategy_summary(catalog: Catalog, run_id: str) -> list[dict]:
    """One row per strategy that proposed in the run, in order of first appearance.

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
