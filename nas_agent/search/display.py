"""The live view of a search: a Rich panel redrawn a few times a second while rounds run."""

from __future__ import annotations

import datetime
import threading

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from nas_agent.search.loop import SearchStats


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(seconds)))


def render(stats: SearchStats, epochs: int) -> Panel:
    """The panel for the current state of a search."""
    counts = Table.grid(padding=(0, 2))
    for _ in range(7):
        counts.add_column(justify="right")
    counts.add_row(*(Text(label, style="dim") for label in
                     ("proposed", "valid", "duplicate", "rejected", "trained", "failed", "stopped")))
    counts.add_row(*(str(v) for v in (stats.proposed, stats.valid, stats.duplicate, stats.rejected, stats.trained,
                                       stats.failed, stats.stopped)))
    best = (f"[bold green]{stats.best_accuracy:.4f}[/]  {stats.best_name}" if stats.best_name
            else "[dim]nothing trained yet[/]")
    if stats.reference_accuracy is not None:
        best += f"   [dim]reference {stats.reference_accuracy:.4f}[/]"
    remaining = []
    if stats.remaining_budget is not None:
        remaining.append(f"{stats.remaining_budget} candidate(s)")
    if stats.epoch_budget:
        remaining.append(f"{max(0, stats.epoch_budget - stats.epochs)} epoch(s)")
    if stats.remaining_s is not None:
        remaining.append(_clock(stats.remaining_s))
    lines = [Text.from_markup(f"[bold]round {stats.round}[/]  {stats.phase}"), counts,
             Text.from_markup(f"best  {best}"),
             Text.from_markup(f"elapsed {_clock(stats.elapsed_s)}   epochs trained {stats.epochs}"
                              + (f" ({stats.promoted} promotion(s))" if stats.promoted else "")
                              + f"   remaining {' · '.join(remaining) or 'no limit'}")]
    for key, (epoch, accuracy) in list(stats.active.items()):
        acc = f"  acc {accuracy:.3f}" if accuracy is not None else ""
        lines.append(Text(f"  training {key.rsplit('_', 1)[-1]}  epoch {epoch}/{epochs}{acc}", style="cyan"))
    return Panel(Group(*lines), title="nas-agent search", expand=False)


class SearchDisplay:
    """A context manager that keeps the panel live; `update(stats)` is safe from any thread."""

    def __init__(self, console: Console, stats: SearchStats, epochs: int):
        self.console, self.stats, self.epochs = console, stats, epochs
        self._lock = threading.Lock()
        self._live = Live(console=console, refresh_per_second=4, get_renderable=self._render, transient=False)
        self._last_phase = ""

    def _render(self) -> Panel:
        with self._lock:
            return render(self.stats, self.epochs)

    def update(self, stats: SearchStats) -> None:
        with self._lock:
            self.stats = stats
        if not self.console.is_terminal and stats.phase != self._last_phase:
            # In a log (CI, nohup) the live panel is not redrawn: one line per step instead.
            self._last_phase = stats.phase
            best = f"{stats.best_accuracy:.4f}" if stats.best_accuracy is not None else "-"
            self.console.print(f"[{_clock(stats.elapsed_s)}] {stats.phase} (proposed {stats.proposed}, "
                               f"valid {stats.valid}, trained {stats.trained}, best {best})", highlight=False)

    def __enter__(self) -> SearchDisplay:
        self._live.start()
        return self

    def __exit__(self, *exc) -> None:
        self._live.stop()
