"""What every nas-agent command shares: the consoles, one-line failures, progress bars, config and catalog lookup."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from nas_agent.config import Config, ConfigError, load_config
from nas_agent.errors import UserError
from nas_agent.tasks import TASKS as TASK_REGISTRY

if TYPE_CHECKING:
    from nas_agent.catalog import Catalog

console = Console()
err = Console(stderr=True)

USER_ERRORS = (UserError, FileNotFoundError)   # ConfigError, CatalogError, DatasetError, CandidateError, ...


def fail(message: str, code: int = 2) -> None:
    """Print one line saying what went wrong and exit non-zero."""
    # Messages carry file names, paths and candidate text: printed as they are, never read as markup.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


TASKS = tuple(TASK_REGISTRY)


def config_of(config: Optional[Path], **overrides) -> Config:
    """The run's Config: the file (or conf/generative.toml for --task img-generation) with the command line on top."""
    task = overrides.get("task")
    if task is not None and task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose {' or '.join(TASKS)}")
    if config is None and task is not None and TASK_REGISTRY[task].config:
        config = Path(TASK_REGISTRY[task].config)  # the task's own recipe and search, e.g. conf/generative.toml
    cfg = load_config(config)
    mapping = {"task": "task", "epochs": "train.epochs", "data_dir": "data.dir", "train_subset": "data.train_subset",
               "test_subset": "data.test_subset", "device": "device", "catalog": "catalog",
               "seconds": "limits.seconds", "memory_mb": "limits.memory_mb", "smoke": "validate.smoke",
               "profile": "policy.profile", "loop": "train.loop"}
    values = {mapping[k]: (str(v) if isinstance(v, Path) else v) for k, v in overrides.items()}
    return cfg.with_overrides(values)


ConfigOpt = typer.Option(None, "--config", "-c", help="Run configuration (TOML path or a name in conf/).")
SmokeOpt = typer.Option(None, "--smoke/--no-smoke",
                        help="Smoke-run each new candidate in the sandbox before training (default: validate.smoke).")
CatalogOpt = typer.Option(None, "--catalog", help="Catalog database (default: the config's, runs/catalog.sqlite).")
ProfileOpt = typer.Option(None, "--profile",
                          help="Policy profile: strict (a finding rejects; generated code) or reviewed (findings are "
                               "warnings and the jail holds; code people wrote). Default: policy.profile.")
TaskOpt = typer.Option(None, "--task", help="img-classification or img-generation (fractal generators scored in "
                                            "bits/dim; without --config it uses conf/generative.toml).")


def catalog_path(catalog: Optional[Path], config: Optional[Path] = None) -> Path:
    """--catalog when given, else the config's catalog."""
    return catalog if catalog is not None else Path(load_config(config).catalog)


def open_catalog(path: Path, must_exist: bool = True) -> Catalog:
    """The catalog at `path`; a missing one is a one-line error unless `must_exist` is false."""
    from nas_agent.catalog import Catalog

    if must_exist and not path.exists():
        fail(f"no catalog at {path}; train something first (nas-agent train/sweep) or pass --catalog")
    return Catalog(path)


def progress_bars() -> Progress:
    """Rich progress bars on stderr (stdout stays for tables and --json)."""
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=False)


def require_jail() -> None:
    """A one-line failure unless candidate code can be jailed here (or the user allowed running it unjailed)."""
    from nas_agent.sandbox import walls

    if walls.unjailed_allowed():
        return
    here = walls.probe()
    if not here.jail_ok:
        fail(f"this host cannot jail candidate code ({here.why_not()}); "
             "run `nas-agent doctor`, or pass --allow-unjailed to run code you trust without OS isolation")


def train_with_progress(make_trainer, requests: list, *, epochs: int, metric: str, title: str = ""):
    """Train `requests` with the Trainer `make_trainer(on_progress)` builds: an overall bar and one per job."""
    with progress_bars() as progress:
        overall = progress.add_task(title or f"training {len(requests)} candidate(s)", total=len(requests))
        rows: dict[str, int] = {}

        def on_progress(key: str, event: dict) -> None:
            kind = event.get("event")
            short = key.rsplit("_", 1)[-1]
            if kind == "launch":
                rows[key] = progress.add_task(f"  {escape(short)}", total=epochs)
            elif kind == "epoch" and key in rows:
                progress.update(rows[key], completed=event["epoch"],
                                description=f"  {escape(short)} {metric} {event['test_accuracy']:.3f}")
            elif kind in ("outcome", "cancelled"):
                if key in rows:
                    progress.remove_task(rows.pop(key))
                progress.advance(overall)

        return make_trainer(on_progress).train(requests)


def command_line() -> str:
    """This invocation as the catalog's run records it."""
    return " ".join(["nas-agent", *sys.argv[1:]])


def resolve_name(cat: Catalog, name: str) -> str:
    """The full model name that `name` (a name or a unique part, such as its hash) stands for; else a one-line error."""
    match = cat.resolve_name(name)
    if match is None:
        fail(f"no candidate named {name!r} in the catalog (a unique part of the name, such as the hash, works too)")
    return match
