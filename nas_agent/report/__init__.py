"""The HTML report: leaderboards, figures, strategies, rejections, lineage and LLM cost in one offline file.

`data` reads the catalog, `plots` draws the figures, `html` lays out the page.
"""

from __future__ import annotations

from pathlib import Path

from nas_agent.catalog import Catalog
from nas_agent.report.data import ReportData, collect


def plots_for(data: ReportData) -> dict[str, str | None]:
    """Every figure of the report, by plot id, as base64 PNG (None where there is nothing to draw)."""
    from nas_agent.report import plots

    figures: dict[str, str | None] = {}
    for section in data.tasks:
        figures[f"{section.task}/scatter"] = plots.scatter(section)
        figures[f"{section.task}/distribution"] = plots.distribution(section)
        figures[f"{section.task}/curves"] = plots.curves(section)
    figures["strategies"] = plots.strategies(data.strategies)
    figures["rejections"] = plots.rejections(data.rejections)
    return figures


def build_report(catalog: Catalog, run_id: str | None = None) -> tuple[str, ReportData]:
    """(the page's HTML, the data it shows) for the whole catalog or one run."""
    from nas_agent.report.html import render

    data = collect(catalog, run_id)
    return render(data, plots_for(data)), data


def write_report(catalog: Catalog, out: str | Path, run_id: str | None = None) -> ReportData:
    """Write the report to `out` (parent folders made); returns what it shows."""
    page, data = build_report(catalog, run_id)
    out = Path(out)
    if out.is_dir():
        raise IsADirectoryError(f"{out} is a folder; give a file name such as {out / 'report.html'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    return data


__all__ = ["ReportData", "build_report", "collect", "plots_for", "write_report"]
