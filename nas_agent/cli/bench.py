"""`nas-agent bench build|run`: a tabular benchmark of a space, and strategies replayed against it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nas_agent.cli.common import (USER_ERRORS, ConfigOpt, command_line, config_of, console, err, fail, progress_bars,
                                  require_jail, train_with_progress)

bench_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="Tabular benchmarks: train a whole space once, then compare strategies on lookups.")

TABLES = Path("benchmarks/tables")


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        fail(f"--noise-seeds takes comma-separated integers, not {text!r}")
    return seeds


@bench_app.command()
def build(
    config: Optional[Path] = ConfigOpt,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Table file (default: benchmarks/tables/<config>.json)."),
    catalog: Optional[Path] = typer.Option(None, "--catalog", help="The build's own catalog, which makes it "
                                                                    "resumable (default: runs/bench/<config>.sqlite)."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Variants trained at once."),
    noise: int = typer.Option(12, "--noise", min=0, help="Variants retrained with other seeds to measure the noise."),
    noise_seeds: str = typer.Option("1,2", "--noise-seeds", help="Seeds of those retrainings, comma-separated."),
    epochs: Optional[int] = typer.Option(None, "--epochs", "-e", min=1),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir"),
    train_subset: Optional[int] = typer.Option(None, "--train-subset", min=0),
    test_subset: Optional[int] = typer.Option(None, "--test-subset", min=0),
    device: Optional[str] = typer.Option(None, "--device"),
) -> None:
    """Train every variant of the config's space once under its recipe and write the table (re-running resumes)."""
    from nas_agent.bench.build import TableBuilder
    from nas_agent.catalog import Catalog
    from nas_agent.data import resolve_cifar10
    from nas_agent.search.trainer import metric_of

    require_jail()
    seeds = _seeds(noise_seeds)
    try:
        cfg = config_of(config, epochs=epochs, data_dir=data_dir, train_subset=train_subset,
                        test_subset=test_subset, device=device)
        cfg = cfg.with_overrides({"catalog": str(catalog or Path("runs/bench") / f"{cfg.name}.sqlite")})
        out = out or TABLES / f"{cfg.name}.json"
        cache = resolve_cifar10(cfg.data.dir or None, cfg.data.cache_dir or None)
        Path(cfg.catalog).parent.mkdir(parents=True, exist_ok=True)
        with Catalog(cfg.catalog) as cat, cat.run(command_line(), cfg.to_dict()) as run:
            builder = TableBuilder(cfg, cat, run.id, cache, jobs=jobs)
            with progress_bars() as progress:
                checking = progress.add_task(f"validating {len(builder.variants)} variants (smoke runs)",
                                             total=len(builder.variants))
                found = builder.register_all(on_checked=lambda: progress.advance(checking))
            for key, reason in found.rejected.items():
                err.print(f"[yellow]rejected[/] {escape(key)}: {escape(reason)}", highlight=False, soft_wrap=True)
            metric = metric_of(cfg.task)[0]
            todo = builder.todo()
            if todo:
                train_with_progress(builder.trainer, todo, epochs=cfg.train.epochs, metric=metric,
                                    title=f"training {len(todo)} variant(s)")
            requests = builder.noise_requests(noise, seeds)
            if builder.untrained(requests):
                train_with_progress(builder.trainer, builder.untrained(requests), epochs=cfg.train.epochs, metric=metric,
                                    title=f"noise: {noise} variant(s) x seeds {','.join(map(str, seeds))}")
            table = builder.table(cfg.name, requests)
            table.save(out)
    except (ValueError, *USER_ERRORS) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        err.print("interrupted: run the same command to resume; finished variants are kept in the catalog")
        raise typer.Exit(130)
    finished = table.finals()
    summary = Table(title=f"bench table {out}")
    for column in ("variants", "finished", "failed", "best", "median", "top 1 % from", "noise (std)", "device"):
        summary.add_column(column)
    finals = sorted(finished)
    spread = table.noise_summary()
    summary.add_row(str(len(table.rows)), str(len(finished)), str(len(table.rows) - len(finished)),
                    f"{finals[-1]:.4f}" if finals else "-", f"{finals[len(finals) // 2]:.4f}" if finals else "-",
                    f"{table.top_threshold():.4f}" if finals else "-",
                    f"{spread['std']:.4f} ({spread['variants']} x {spread['seeds']} seeds)" if spread else "-",
                    escape(table.device))
    console.print(summary)


@bench_app.command("run")
def run_(
    table_path: Path = typer.Option(..., "--table", "-t", help="A table from `nas-agent bench build`."),
    config: Optional[Path] = ConfigOpt,
    strategies: str = typer.Option("random,mutate,optuna,mutate+optuna", "--strategies", "-s",
                                   help="Comma-separated settings: a strategy, several joined by + (equal weights), "
                                        "or mix (the config's own weights)."),
    fidelity: str = typer.Option("full", "--fidelity", help="full, halving, or both (full,halving): successive "
                                                            "halving ([search] min_epochs, reduction) at the same epochs."),
    seeds: int = typer.Option(50, "--seeds", min=1, help="Replays per setting (seeds 0..N-1)."),
    budget: int = typer.Option(0, "--budget", "-b", min=0, help="Candidates per replay (0: the whole table)."),
    workers: int = typer.Option(2, "--workers", "-j", min=1, help="Replays at once (processes)."),
    top: float = typer.Option(0.01, "--top", min=0.0001, max=1.0,
                              help="The target: the table's best fraction (0.01: top 1 %; at least its best variant)."),
    plot_path: Optional[Path] = typer.Option(None, "--plot", help="Where to draw the curves "
                                                                  "(default: beside the table, <table>.png)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", "-e", min=1),
    train_subset: Optional[int] = typer.Option(None, "--train-subset", min=0),
    test_subset: Optional[int] = typer.Option(None, "--test-subset", min=0),
    backend: Optional[str] = typer.Option(None, "--backend", help="The llm setting's backend (default llm.backend)."),
    model: Optional[str] = typer.Option(None, "--model", help="The llm setting's model (default llm.model)."),
    replay: Optional[Path] = typer.Option(None, "--replay", help="Replay file (backend replay)."),
) -> None:
    """Replay each setting's own search against the table (no training): anytime curves and budgets to the top 1 %."""
    from nas_agent.bench import compare
    from nas_agent.bench.build import check_fits
    from nas_agent.bench.table import BenchTable
    from nas_agent.llm import LLMError

    try:
        cfg = config_of(config, epochs=epochs, train_subset=train_subset,
                        test_subset=test_subset).with_overrides({
            "llm.backend": backend, "llm.model": model, "llm.replay_file": str(replay) if replay else None})
        table = BenchTable.load(table_path)
        check_fits(table, cfg)
        settings = compare.parse_settings(strategies, fidelity, cfg)
        budget = budget or len(table.rows)
        epoch_budget = budget * table.epochs
        with progress_bars() as progress:
            task = progress.add_task(f"replaying {len(settings)} setting(s) x {seeds} seeds", total=len(settings) * seeds)
            results = compare.run_settings(table, cfg, settings, list(range(seeds)), budget=budget,
                                           epoch_budget=epoch_budget, workers=workers,
                                           on_done=lambda trace: progress.advance(task))
    except (ValueError, LLMError, *USER_ERRORS) as exc:
        fail(str(exc))
    noise = table.noise_summary()
    summaries = compare.summarize(table, results, budget, top)
    target = f"top {top:.0%}"
    out = Table(title=f"{table_path}: {len(table.rows)} variants, best {table.best():.4f}, {target} from "
                      f"{table.top_threshold(top):.4f}; budget {budget} candidates ({epoch_budget} epochs), "
                      f"{seeds} seeds")
    for column in ("setting", f"reached {target}", f"candidates to {target}", f"epochs to {target}", "final best",
                   "candidates", "epochs"):
        out.add_column(column, justify="left" if column == "setting" else "right")

    def q(values, digits=0):
        lo, mid, hi = values
        return f"{mid:.{digits}f} [{lo:.{digits}f}-{hi:.{digits}f}]"

    for s in summaries:
        out.add_row(escape(s.setting), f"{s.reached}/{s.seeds}", q(s.to_top), q(s.epochs_to_top), q(s.best, 4),
                    f"{s.candidates:.0f}", f"{s.epochs:.0f}")
    wide = console if console.is_terminal else Console(width=160)   # a log or a pipe: no truncated columns
    wide.print(out)
    console.print(escape(f"median [interquartile range] over seeds; a seed that never reached the {target} counts "
                         "as budget + 1"), style="dim")
    if noise:
        console.print(f"table noise: final accuracy of {noise['variants']} variants retrained with "
                      f"{noise['seeds']} seeds: std {noise['std']:.4f}, widest spread {noise['max_spread']:.4f} "
                      f"- a difference in final best smaller than this is no win")
    if table.epochs > 1:
        console.print(f"rank correlation (Spearman) of epoch-1 with epoch-{table.epochs} accuracy over the table: "
                      f"{table.rank_correlation(1):+.3f} (what successive halving relies on)")
    random_row = next((s for s in summaries if s.setting == "random"), None)
    if random_row:
        for s in summaries:
            if s.setting != "random" and "@" not in s.setting:
                console.print(f"{escape(s.setting)}: {s.to_top[1] / random_row.to_top[1]:.2f} of random's median "
                              f"budget to the {target}")
    for s in settings:
        if s.fidelity == "halving" and s.label.split("@")[0] in results:
            regret, needed, spent = compare.epochs_to_match(table, results[s.label.split("@")[0]], results[s.label])
            console.print(f"{escape(s.label)}: reaches full training's median final regret {regret:.4f} "
                          + (f"after {needed} epochs, {needed / spent:.0%} of full training's {spent}" if needed
                             else f"never within {epoch_budget} epochs"))
    png = compare.plot(table, results, budget, plot_path or table_path.with_suffix(".png"),
                       noise["std"] if noise else None, top=top)
    console.print(f"curves: {png}")
