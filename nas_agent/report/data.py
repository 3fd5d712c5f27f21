"""What the report shows, read from the catalog into plain data (no HTML, no plotting here)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

from nas_agent.catalog import Catalog
from nas_agent.catalog.browse import best_row, run_models, strategy_summary, with_reference_rows

TOP_CURVES = 10


@dataclass
class TaskSection:
    """One task's leaderboard and the figures drawn from it."""

    task: str
    metric: str
    rows: list[dict]                                   # leaderboard rows (reference included)
    curves: dict[str, list[tuple[int, float]]]         # top models: (epoch, accuracy) of their best trial
    first_epoch: list[float]                           # accuracy after epoch 1, one per model
    last_epoch: list[float]                            # accuracy after the trial's last epoch
    last_epoch_number: int | None                      # the most common last epoch (for the label)


@dataclass
class StageRejections:
    stage: str
    count: int
    reasons: list[tuple[str, int]]                     # (example reason, how many share its pattern)


@dataclass
class LineageEdge:
    parent: str
    child: str
    strategy: str | None
    change: str | None
    accuracy: float | None
    status: str | None


@dataclass
class ReportData:
    catalog: str
    run: dict | None
    generated: str
    tasks: list[TaskSection] = field(default_factory=list)
    strategies: list[dict] = field(default_factory=list)
    rejections: list[StageRejections] = field(default_factory=list)
    lineage: list[LineageEdge] = field(default_factory=list)
    llm: list[dict] = field(default_factory=list)
    models: int = 0                                    # catalogued models in scope


def collect(catalog: Catalog, run_id: str | None = None) -> ReportData:
    """Everything the report shows; with `run_id`, only what that run proposed, trained or rejected.

    Raises CatalogError for an unknown run.
    """
    names = set(run_models(catalog, run_id)) if run_id else None
    models = [m for m in catalog.models() if names is None or m["name"] in names]
    data = ReportData(catalog=str(catalog.path), run=catalog.get_run(run_id) if run_id else None,
                      generated=datetime.now(timezone.utc).isoformat(timespec="seconds"), models=len(models))
    tasks = sorted({m["task"] for m in models if m["task"]})
    metric_of = {m["name"]: m["metric"] for m in models}
    for task in tasks:
        board = catalog.leaderboard(task=task)
        rows = board if names is None else with_reference_rows(
            [dict(r) for r in board if r["name"] in names], board)
        if names is not None:
            rank = 0
            for row in rows:
                if row["rank"] is not None:
                    rank += 1
                    row["rank"] = rank
        if rows:
            data.tasks.append(_task_section(catalog, task, rows, metric_of))
    proposals = catalog.proposals(run_id=run_id)
    if proposals:
        data.strategies = strategy_summary(catalog, run_id)
    data.rejections = _rejections(catalog, proposals, run_id, names)
    data.lineage = _lineage(catalog, models, proposals)
    data.llm = _llm_cost(catalog, run_id)
    return data


def _best_trial_epochs(catalog: Catalog, name: str) -> list[dict]:
    rows = catalog.epochs(name)
    best = best_row(rows)
    return [r for r in rows if r["prm"] == best["prm"]] if best else []


def _task_section(catalog: Catalog, task: str, rows: list[dict], metric_of: dict[str, str]) -> TaskSection:
    curves, first, last, last_numbers = {}, [], [], Counter()
    for row in rows:
        trial = _best_trial_epochs(catalog, row["name"])
        if not trial:
            continue
        by_epoch = {r["epoch"]: r["accuracy"] for r in trial}
        if 1 in by_epoch:
            first.append(by_epoch[1])
        final = max(by_epoch)
        last.append(by_epoch[final])
        last_numbers[final] += 1
        if len(curves) < TOP_CURVES:
            curves[row["name"]] = sorted(by_epoch.items())
    metric = next((metric_of[r["name"]] for r in rows if metric_of.get(r["name"])), "acc")
    return TaskSection(task, metric, rows, curves, first, last,
                       last_numbers.most_common(1)[0][0] if last_numbers else None)


def reason_pattern(reason: str) -> str:
    """A rejection reason with numbers, quoted names and paths blanked, so alike reasons group together."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", reason or "")
    text = re.sub(r"\S*/\S*|\S*-[0-9a-f]{8}\b", "…", text)  # paths and catalog names
    return re.sub(r"\d+(\.\d+)?", "N", text).strip()[:160]


def _rejections(catalog: Catalog, proposals: list[dict], run_id: str | None,
                names: set[str] | None) -> list[StageRejections]:
    """Verdicts of rejected proposals and files, and failed trainings (stage train), by stage."""
    verdicts = [(p["stage"], p["reason"]) for p in proposals if not p["ok"] and p["stage"]]
    for event in catalog.events(kind="rejected"):
        if run_id is None or event["run_id"] == run_id:
            verdicts.append((event["stage"] or "unknown", event["reason"]))
    for event in catalog.events(kind="failed"):
        if (run_id is None or event["run_id"] == run_id) and (names is None or event["nn"] in names):
            verdicts.append(("train", event["reason"]))
    by_stage: dict[str, list[str]] = {}
    for stage, reason in verdicts:
        by_stage.setdefault(stage, []).append(reason or "")
    result = []
    for stage, reasons in sorted(by_stage.items(), key=lambda kv: -len(kv[1])):
        patterns = Counter(reason_pattern(r) for r in reasons)
        example = {}
        for r in reasons:
            example.setdefault(reason_pattern(r), r)
        result.append(StageRejections(stage, len(reasons),
                                      [(example[p][:300], n) for p, n in patterns.most_common(5)]))
    return result


def _lineage(catalog: Catalog, models: list[dict], proposals: list[dict]) -> list[LineageEdge]:
    """Parent -> child edges of the models in scope, with the change that made the child."""
    changes = {}
    for p in proposals or catalog.proposals():
        if p["ok"] and p["nn"] and p["parent"] and p["nn"] != p["parent"]:
            changes.setdefault(p["nn"], (p["strategy"], p["change"]))
    edges = []
    for m in models:
        if not m["parent"]:
            continue
        strategy, change = changes.get(m["name"], (m["origin"], None))
        edges.append(LineageEdge(m["parent"], m["name"], strategy, change,
                                 catalog.best_accuracy(m["name"]), m["status"]))
    return edges


def _llm_cost(catalog: Catalog, run_id: str | None) -> list[dict]:
    """LLM calls per backend and model: calls, tokens, seconds, and those per valid (and per trained) candidate."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for call in catalog.llm_calls(run_id=run_id):
        groups.setdefault((call["backend"] or "?", call["model"] or "?"), []).append(call)
    rows = []
    for (backend, model), calls in groups.items():
        valid = [c for c in calls if c["ok"]]
        trained = {c["nn"] for c in valid if c["nn"] and (catalog.get_model(c["nn"]) or {}).get("status") == "done"}
        tokens_in = sum(c["tokens_in"] or 0 for c in calls)
        tokens_out = sum(c["tokens_out"] or 0 for c in calls)
        seconds = sum(c["latency_s"] or 0.0 for c in calls)
        per = (lambda total: total / len(valid)) if valid else (lambda total: None)
        rows.append({"backend": backend, "model": model, "calls": len(calls), "valid": len(valid),
                     "valid_share": len(valid) / len(calls), "trained": len(trained),
                     "tokens_in": tokens_in, "tokens_out": tokens_out, "seconds": seconds,
                     "calls_per_valid": per(len(calls)), "tokens_per_valid": per(tokens_in + tokens_out),
                     "seconds_per_valid": per(seconds)})
    return rows
