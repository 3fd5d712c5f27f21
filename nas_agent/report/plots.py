"""The report's figures as PNG images (base64 text), drawn with matplotlib's Agg backend (no display)."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")  # before pyplot: a headless machine has no display to open
import matplotlib.pyplot as plt  # noqa: E402

from nas_agent.report.data import StageRejections, TaskSection  # noqa: E402

REFERENCE = "reference"
_DPI = 110


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _label(metric: str) -> str:
    return {"acc": "test accuracy", "bpd": "bits/dim (lower is better)"}.get(metric, metric)


def scatter(section: TaskSection) -> str | None:
    """Best accuracy against parameter count (log scale), one colour per origin, the reference marked."""
    points = [r for r in section.rows if r["n_params"]]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    origins = sorted({r["origin"] or "?" for r in points} - {REFERENCE})
    for origin in origins:
        rows = [r for r in points if (r["origin"] or "?") == origin]
        ax.scatter([r["n_params"] for r in rows], [r["accuracy"] for r in rows], s=26, alpha=0.8, label=origin)
    ref = [r for r in points if r["origin"] == REFERENCE]
    if ref:
        ax.scatter([r["n_params"] for r in ref], [r["accuracy"] for r in ref], marker="*", s=220,
                   c="gold", edgecolors="black", label="reference", zorder=3)
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel(f"best {_label(section.metric)}")
    ax.set_title(f"{section.task}: {_label(section.metric)} vs size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def distribution(section: TaskSection) -> str | None:
    """Histograms of accuracy after epoch 1 and after the last epoch (the source paper's figure 3)."""
    if not section.first_epoch and not section.last_epoch:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    values = section.first_epoch + section.last_epoch
    low, high = min(values), max(values)
    bins = [low + (high - low) * i / 20 for i in range(21)] if high > low else 10
    if section.first_epoch:
        ax.hist(section.first_epoch, bins=bins, alpha=0.6, label=f"after epoch 1 ({len(section.first_epoch)})")
    if section.last_epoch:
        last = f"epoch {section.last_epoch_number}" if section.last_epoch_number else "the last epoch"
        ax.hist(section.last_epoch, bins=bins, alpha=0.6, label=f"after {last} ({len(section.last_epoch)})")
    ax.set_xlabel(_label(section.metric))
    ax.set_ylabel("models")
    ax.set_title(f"{section.task}: distribution of {_label(section.metric)}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def curves(section: TaskSection) -> str | None:
    """Per-epoch test accuracy of the top models (their best trial)."""
    if not section.curves:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, points in section.curves.items():
        epochs, accuracy = zip(*points)
        ax.plot(epochs, accuracy, marker="o", markersize=3, label=name.rsplit("_", 1)[-1])
    ax.set_xlabel("epoch")
    ax.set_ylabel(_label(section.metric))
    ax.set_title(f"{section.task}: per-epoch curves of the top {len(section.curves)}")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _png(fig)


def strategies(rows: list[dict]) -> str | None:
    """Per strategy: proposals split by what became of them."""
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    names = [r["strategy"] for r in rows]
    bottom = [0] * len(rows)
    for key in ("trained", "stopped", "failed", "duplicates", "rejected"):
        counts = [r[key] for r in rows]
        ax.bar(names, counts, bottom=bottom, label=key)
        bottom = [b + c for b, c in zip(bottom, counts)]
    ax.set_ylabel("proposals")
    ax.set_title("proposals by strategy and outcome")
    ax.legend(fontsize=8)
    return _png(fig)


def rejections(stages: list[StageRejections]) -> str | None:
    """Rejections per validation stage (horizontal bars)."""
    if not stages:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 0.5 * len(stages) + 1.5))
    ax.barh([s.stage for s in stages][::-1], [s.count for s in stages][::-1], color="tab:red")
    ax.set_xlabel("rejected")
    ax.set_title("rejections by stage")
    return _png(fig)
