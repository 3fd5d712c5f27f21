"""The report as one self-contained HTML page: inline CSS, a few lines of inline JS, images as data URIs."""

from __future__ import annotations

from html import escape

from nas_agent.report.data import ReportData

# Sorting by a click on a column header; numbers sort as numbers (data-value), empty cells last.
_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, column) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var ascending = th.getAttribute("data-order") !== "asc";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("data-order"); });
      th.setAttribute("data-order", ascending ? "asc" : "desc");
      function key(row) {
        var cell = row.cells[column];
        var value = cell.getAttribute("data-value");
        if (value === null) { return cell.textContent.trim().toLowerCase(); }
        return value === "" ? null : parseFloat(value);
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null || y === null) { return (x === null) - (y === null); }
        var order = x < y ? -1 : (x > y ? 1 : 0);
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
td.text, th.text { text-align: left; }
table.sortable th { cursor: pointer; background: #f3f3f3; }
table.sortable th[data-order=asc]::after { content: " \\25B2"; }
table.sortable th[data-order=desc]::after { content: " \\25BC"; }
tr.reference { background: #fff6bf; }
figure { display: inline-block; vertical-align: top; width: 48%; margin: 0.5em 0.5%; } figure img { width: 100%; }
.muted { color: #777; } code { font-size: 0.9em; }
ul.lineage { list-style: none; padding-left: 1.2em; } ul.lineage li { margin: 2px 0; }
"""


def _fmt(value, spec: str = "") -> str:
    if value is None:
        return ""
    return format(value, spec) if spec else str(value)


def _cell(value, spec: str = "", text: bool = False) -> str:
    """A table cell; numbers carry their raw value for sorting."""
    if text or isinstance(value, str):
        return f'<td class="text">{escape(_fmt(value))}</td>'
    raw = "" if value is None else repr(float(value))
    return f'<td data-value="{raw}">{escape(_fmt(value, spec))}</td>'


def _table(table_id: str, headers: list[str], rows: list[str], text_columns: set[str] = frozenset()) -> str:
    head = "".join(f'<th class="text">{escape(h)}</th>' if h in text_columns else f"<th>{escape(h)}</th>"
                   for h in headers)
    return (f'<table class="sortable" id="{escape(table_id)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _figure(plot_id: str, png: str | None, caption: str) -> str:
    if png is None:
        return ""
    return (f'<figure><img data-plot="{escape(plot_id)}" alt="{escape(caption)}" '
            f'src="data:image/png;base64,{png}"><figcaption>{escape(caption)}</figcaption></figure>')


def _short(name: str) -> str:
    return name.rsplit("_", 1)[-1]


def render(data: ReportData, plots: dict[str, str | None]) -> str:
    """The whole page; `plots` maps a plot id (e.g. ``img-classification/scatter``) to base64 PNG or None."""
    parts = [f"<h1>nas-agent report</h1><p class=\"muted\">catalog <code>{escape(data.catalog)}</code>"
             + (f", run <code>{escape(data.run['id'])}</code> ({escape(data.run['status'] or '')}: "
                f"<code>{escape(data.run['command'] or '')}</code>)" if data.run else ", all runs")
             + f"; {data.models} model(s); made {escape(data.generated)}</p>"]
    if not data.tasks:
        parts.append('<p id="no-results">No trained candidates yet.</p>')
    for section in data.tasks:
        task = section.task
        parts.append(f'<h2 id="task-{escape(task)}">{escape(task)}: leaderboard</h2>')
        rows = []
        for r in section.rows:
            css = ' class="reference"' if r["origin"] == "reference" else ""
            rows.append(f'<tr data-name="{escape(r["name"])}"{css}>'
                        + (_cell(r["rank"]) if r["rank"] is not None else '<td data-value="">ref</td>')
                        + f'<td class="text" title="{escape(r["name"])}">{escape(_short(r["name"]))}</td>'
                        + _cell(r["family"], text=True) + _cell(r["dataset"], text=True)
                        + _cell(r["accuracy"], ".4f") + _cell(r["epoch"]) + _cell(r["n_params"], ",")
                        + _cell(r["seconds_per_epoch"], ".1f") + _cell(r["origin"], text=True)
                        + _cell(r["status"], text=True) + "</tr>")
        parts.append(_table(f"leaderboard-{task}", ["rank", "model", "family", "dataset",
                                                   f"best {section.metric}", "epoch", "params", "s/epoch",
                                                   "origin", "status"], rows,
                            {"model", "family", "dataset", "origin", "status"}))
        parts.append("<div>"
                     + _figure(f"{task}/scatter", plots.get(f"{task}/scatter"), "accuracy vs parameter count")
                     + _figure(f"{task}/distribution", plots.get(f"{task}/distribution"),
                               "accuracy after epoch 1 and after the last epoch")
                     + _figure(f"{task}/curves", plots.get(f"{task}/curves"), "per-epoch curves of the top 10")
                     + "</div>")
    parts.append(_strategies(data, plots))
    parts.append(_rejections(data, plots))
    parts.append(_lineage(data))
    parts.append(_llm(data))
    title = "nas-agent report" + (f" — run {data.run['id']}" if data.run else "")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><link rel=\"icon\" href=\"data:,\">"
            f"<style>{_STYLE}</style></head><body>{''.join(parts)}"
            f"<script>{_SCRIPT}</script></body></html>\n")


def _strategies(data: ReportData, plots: dict) -> str:
    out = ['<h2 id="strategies">strategies</h2>']
    if not data.strategies:
        return out[0] + "<p>No search proposals recorded.</p>"
    rows = ["<tr>" + _cell(r["strategy"], text=True) + _cell(r["proposals"]) + _cell(r["valid"])
            + _cell(r["valid_share"] * 100, ".0f") + _cell(r["duplicates"]) + _cell(r["rejected"])
            + _cell(r["trained"]) + _cell(r["failed"]) + _cell(r["stopped"]) + _cell(r["best"], ".4f")
            + _cell(r["mean"], ".4f") + "</tr>" for r in data.strategies]
    out.append(_table("strategies-table", ["strategy", "proposals", "valid", "valid %", "duplicates", "rejected",
                                           "trained", "failed", "stopped", "best acc", "mean acc"], rows,
                      {"strategy"}))
    out.append(_figure("strategies", plots.get("strategies"), "proposals by strategy and outcome"))
    return "".join(out)


def _rejections(data: ReportData, plots: dict) -> str:
    out = ['<h2 id="rejections">rejection reasons by stage</h2>']
    if not data.rejections:
        return out[0] + "<p>Nothing was rejected.</p>"
    rows = []
    for stage in data.rejections:
        for i, (reason, count) in enumerate(stage.reasons):
            rows.append("<tr>" + _cell(stage.stage, text=True) + (_cell(stage.count) if i == 0 else _cell(None))
                        + _cell(count) + _cell(reason, text=True) + "</tr>")
    out.append(_table("rejections-table", ["stage", "rejected", "alike", "reason (an example)"], rows,
                      {"stage", "reason (an example)"}))
    out.append(_figure("rejections", plots.get("rejections"), "rejections by stage"))
    return "".join(out)


def _lineage(data: ReportData) -> str:
    out = ['<h2 id="lineage">lineage</h2>']
    if not data.lineage:
        return out[0] + "<p>No model has a parent in this catalog.</p>"
    children: dict[str, list] = {}
    for edge in data.lineage:
        children.setdefault(edge.parent, []).append(edge)
    have_parent = {e.child for e in data.lineage}
    roots = [p for p in children if p not in have_parent]

    def subtree(name: str, seen: frozenset) -> str:
        items = []
        for e in children.get(name, []):
            if e.child in seen:
                continue  # a hand-edited cycle must not recurse forever
            acc = f" — {e.accuracy:.4f}" if e.accuracy is not None else ""
            items.append(f'<li data-child="{escape(e.child)}">→ <b>{escape(_short(e.child))}</b>{escape(acc)} '
                         f'<span class="muted">[{escape(e.strategy or "")}] {escape(e.change or "")} '
                         f"({escape(e.status or '')})</span>{subtree(e.child, seen | {e.child})}</li>")
        return f'<ul class="lineage">{"".join(items)}</ul>' if items else ""

    for root in roots:
        out.append(f'<div class="lineage-root"><b title="{escape(root)}">{escape(_short(root))}</b>'
                   f"{subtree(root, frozenset({root}))}</div>")
    return "".join(out)


def _llm(data: ReportData) -> str:
    out = ['<h2 id="llm">LLM cost</h2>']
    if not data.llm:
        return out[0] + "<p>No LLM calls recorded.</p>"
    rows = ["<tr>" + _cell(r["backend"], text=True) + _cell(r["model"], text=True) + _cell(r["calls"])
            + _cell(r["valid"]) + _cell(r["trained"]) + _cell(r["tokens_in"], ",") + _cell(r["tokens_out"], ",")
            + _cell(r["seconds"], ".1f") + _cell(r["calls_per_valid"], ".2f") + _cell(r["tokens_per_valid"], ",.0f")
            + _cell(r["seconds_per_valid"], ".1f") + "</tr>" for r in data.llm]
    out.append(_table("llm-table", ["backend", "model", "calls", "valid", "trained", "tokens in", "tokens out",
                                    "seconds", "calls / valid", "tokens / valid", "seconds / valid"], rows,
                      {"backend", "model"}))
    return "".join(out)
