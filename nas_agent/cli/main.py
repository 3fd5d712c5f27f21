"""The `nas-agent` commands: generate, validate, train, sweep, propose, search, runs, leaderboard, show, export,
sample, report, doctor, lemur export/import (and, from nas_agent.cli.fractals, fractals ... and pretrain)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.markup import escape
from rich.table import Table

# Only light modules at the top: `--help`, `leaderboard` and the argument errors must not wait for
# torch. Each command imports what it runs.
from nas_agent.cli.common import (USER_ERRORS, CatalogOpt, ConfigOpt, ProfileOpt, SmokeOpt, TaskOpt, catalog_path,
                                  command_line, config_of, console, err, fail, open_catalog, progress_bars,
                                  require_jail, resolve_name, train_with_progress)
from nas_agent.cli.bench import bench_app
from nas_agent.cli.fractals import fractals_app, pretrain
from nas_agent.config import Config, load_config
from nas_agent.tasks import TASK_GENERATION, is_generative

if TYPE_CHECKING:
    from nas_agent.validate import Validation

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="LLM-assisted neural architecture search over fractal templates, on CIFAR-10.")

# Commands that may run candidate code in a sandbox child, and so need the OS jail.
_JAILED_COMMANDS = {"train", "sweep", "validate", "propose", "search", "sample", "pretrain"}


@app.callback()
def _walls(ctx: typer.Context,
           allow_unjailed: bool = typer.Option(False, "--allow-unjailed",
                                               help="Run candidate code even where the OS jail cannot be built "
                                                    "(bubblewrap missing or namespaces refused): only for code you trust. "
                                                    "Also NAS_AGENT_ALLOW_UNJAILED=1.")) -> None:
    """LLM-assisted neural architecture search over fractal templates, on CIFAR-10."""
    from nas_agent.sandbox import walls
    if allow_unjailed:
        walls.allow_unjailed(True)
    if ctx.invoked_subcommand in _JAILED_COMMANDS:
        require_jail()


@app.command()
def doctor() -> None:
    """Show which OS walls this host puts around candidate code; exit 1 when the jail cannot be built."""
    from nas_agent.sandbox import walls
    here = walls.probe()
    table = Table(title="walls around candidate code")
    for column in ("wall", "", "required", "detail"):
        table.add_column(column)
    for wall in here.walls:
        table.add_row(wall.name, "[green]ok[/]" if wall.ok else "[red]missing[/]", "yes" if wall.required else "no",
                      wall.detail)
    console.print(table)
    if not here.jail_ok:
        fail(f"candidates cannot be jailed here: {here.why_not()}", code=1)
    console.print("candidates run jailed: bubblewrap namespaces, seccomp, Landlock where the kernel has it")


@app.command()
def generate(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for the candidate files."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", min=1, help="Write at most this many variants."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampling order."),
    count: bool = typer.Option(False, "--count", help="Only print how many unique variants the space holds."),
    template: Optional[Path] = typer.Option(None, "--template", help="Template file (default: the config's)."),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Write candidate files from the fractal template space."""
    from nas_agent.search.generate import generate_candidates
    from nas_agent.space import FractalSpace, load_template

    try:
        cfg = load_config(config)
        space = FractalSpace.from_config(cfg.space)
        if count:
            console.print(len(space))
            return
        if out is None:
            fail("--out DIR is required (or pass --count)")
        tmpl = load_template(template or cfg.template)
        variants = space.sample(limit, seed)
        with progress_bars() as progress:
            task = progress.add_task("rendering", total=len(variants))
            written = generate_candidates(tmpl, variants, out, on_written=lambda c: progress.advance(task))
    except (ValueError, *USER_ERRORS) as exc:
        fail(str(exc))
    console.print(f"wrote {len(written)} unique {tmpl.family} candidates to {out} "
                  f"(space: {len(space)} variants, seed {seed})")


def _train_files(files: list[Path], cfg: Config, jobs: int, origin: str, retry_failed: bool,
                 command: str) -> int:
    """Register and train files; returns the process exit code."""
    from nas_agent.catalog import Catalog
    from nas_agent.data import resolve_cifar10
    from nas_agent.search.trainer import CandidateError, read_candidate, register, run_dir_of
    from nas_agent.validate import validator_for

    # Find the data before touching the catalog: a wrong path must leave the catalog as it was.
    cache = resolve_cifar10(cfg.data.dir or None, cfg.data.cache_dir or None)
    with Catalog(cfg.catalog) as catalog, catalog.run(command, cfg.to_dict()) as run:
        run_id = run.id
        try:
            candidates, rejected = [], 0
            validator = validator_for(cfg, catalog=catalog, workdir=run_dir_of(cfg) / "sandbox", allow_known=True)
            with progress_bars() as progress:
                checking = progress.add_task("validating" + (" (smoke runs)" if validator.smoke else ""),
                                             total=len(files))
                for path in files:
                    try:
                        candidate = read_candidate(path, validator, task=cfg.task)
                    except CandidateError as exc:
                        rejected += 1
                        catalog.add_event(str(path), "rejected", stage=exc.verdict.stage,
                                          reason=exc.verdict.reason, run_id=run_id)
                        err.print(f"[yellow]rejected[/] {escape(str(exc))}", highlight=False)
                    else:
                        candidates.append(register(catalog, candidate, cfg, origin=origin, run_id=run_id))
                    progress.advance(checking)
            todo, skipped = [], 0
            for name in dict.fromkeys(candidates):
                state = catalog.get_model(name)["status"]
                if state == "done" or (state == "failed" and not retry_failed):
                    skipped += 1
                else:
                    todo.append(name)
            if skipped:
                console.print(f"{skipped} candidate(s) already finished in {cfg.catalog}: skipped"
                              + ("" if retry_failed else " (failed ones too; --retry-failed trains them again)"))
            if not todo:
                return 1 if rejected else 0
            summary = _run_with_progress(catalog, cfg, cache, todo, jobs, run_id)
            _print_leaderboard(catalog.leaderboard(task=cfg.task, names=todo), title="this run")
            console.print(f"trained {len(summary.trained)}, failed {len(summary.failed)}, "
                          f"interrupted {len(summary.interrupted)}, rejected {rejected}; catalog: {cfg.catalog}")
            for name in summary.failed:
                console.print(f"[red]failed[/] {escape(name)}: {escape(catalog.get_model(name)['reason'] or '')}", highlight=False)
            return 1 if (summary.failed or rejected) else 0
        except KeyboardInterrupt:
            run.status = "interrupted"
            err.print("interrupted: candidates in training were stopped and re-queued; run the same command to resume")
            return 130


def _run_with_progress(catalog, cfg, cache, names, jobs, run_id):
    from nas_agent.search.trainer import Trainer, metric_of

    return train_with_progress(
        lambda on_progress: Trainer(catalog, cfg, cache, run_id=run_id, jobs=jobs, on_progress=on_progress),
        names, epochs=cfg.train.epochs, metric=metric_of(cfg.task)[0])


@app.command()
def train(
    file: Path = typer.Argument(..., help="Candidate file (LEMUR contract)."),
    config: Optional[Path] = ConfigOpt,
    epochs: Optional[int] = typer.Option(None, "--epochs", "-e", min=1),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="CIFAR-10: torchvision root, or folder/.tar.gz of train/<class>/*.jpg."),
    train_subset: Optional[int] = typer.Option(None, "--train-subset", min=0, help="Train on N images (0: all)."),
    test_subset: Optional[int] = typer.Option(None, "--test-subset", min=0, help="Test on M images (0: all)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    catalog: Optional[Path] = CatalogOpt,
    seconds: Optional[float] = typer.Option(None, "--seconds", help="Wall-clock limit for the candidate."),
    origin: str = typer.Option("manual", "--origin", help="Origin recorded in the catalog."),
    smoke: Optional[bool] = SmokeOpt,
    task: Optional[str] = TaskOpt,
    profile: Optional[str] = ProfileOpt,
    loop: Optional[str] = typer.Option(None, "--loop", help="fast (the trainer drives forward on batches on the "
                                                            "device) or contract (the model's own train_setup and "
                                                            "learn, LEMUR's protocol). Default: train.loop."),
) -> None:
    """Train one candidate in a sandboxed child process and record it."""
    try:
        cfg = config_of(config, epochs=epochs, data_dir=data_dir, train_subset=train_subset,
                      test_subset=test_subset, device=device, catalog=catalog, seconds=seconds, smoke=smoke,
                      task=task, profile=profile, loop=loop)
        if not file.exists():
            fail(f"no such file: {file}")
        code = _train_files([file], cfg, 1, origin, retry_failed=True, command=command_line())
    except USER_ERRORS as exc:
        fail(str(exc))
    raise typer.Exit(code)


@app.command()
def sweep(
    directory: Optional[Path] = typer.Argument(
        None, help="Folder of candidate files (*.py). Omitted: sample --limit variants of the template space."),
    config: Optional[Path] = ConfigOpt,
    catalog: Optional[Path] = CatalogOpt,
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Candidates trained at once."),
    limit: int = typer.Option(10, "--limit", "-n", min=1, help="Without DIR: how many variants to sample."),
    seed: int = typer.Option(0, "--seed", help="Without DIR: seed of the sample."),
    epochs: Optional[int] = typer.Option(None, "--epochs", "-e", min=1),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir"),
    train_subset: Optional[int] = typer.Option(None, "--train-subset", min=0),
    test_subset: Optional[int] = typer.Option(None, "--test-subset", min=0),
    device: Optional[str] = typer.Option(None, "--device"),
    seconds: Optional[float] = typer.Option(None, "--seconds", help="Wall-clock limit per candidate."),
    origin: str = typer.Option("generator", "--origin"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Train candidates that failed before again."),
    smoke: Optional[bool] = SmokeOpt,
) -> None:
    """Train every candidate in a folder (or a sample of the space); re-running resumes."""
    from nas_agent.search.generate import generate_candidates
    from nas_agent.space import FractalSpace, load_template

    try:
        cfg = config_of(config, epochs=epochs, data_dir=data_dir, train_subset=train_subset,
                      test_subset=test_subset, device=device, catalog=catalog, seconds=seconds, smoke=smoke)
        if directory is None:
            directory = Path(cfg.catalog).parent / "candidates"
            template = load_template(cfg.template)
            space = FractalSpace.from_config(cfg.space)
            files = [c.path for c in generate_candidates(template, space.sample(limit, seed), directory)]
            console.print(f"sampled {len(files)} of {len(space)} {template.family} variants into {directory}")
        elif not directory.is_dir():
            fail(f"not a folder: {directory}")
        else:
            files = sorted(directory.glob("*.py"))
        if not files:
            fail(f"no candidate files (*.py) in {directory}; make some with: nas-agent generate --out {directory}")
        code = _train_files(files, cfg, jobs, origin, retry_failed, command=command_line())
    except (ValueError, *USER_ERRORS) as exc:
        fail(str(exc))
    raise typer.Exit(code)


@app.command()
def validate(
    files: list[Path] = typer.Argument(..., help="Candidate files, or folders of *.py files."),
    smoke: bool = typer.Option(False, "--smoke", help="Also run each candidate once in the sandbox."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per file, one per line."),
    config: Optional[Path] = ConfigOpt,
    catalog: Optional[Path] = typer.Option(
        None, "--catalog", help="Look duplicates up in this catalog (default: the config's, when it exists)."),
    profile: Optional[str] = ProfileOpt,
) -> None:
    """Check candidates: parse, policy, contract, duplicates and (--smoke) a sandboxed run. Exit 1 if any fails."""
    from nas_agent.catalog import Catalog
    from nas_agent.search.trainer import CandidateError, read_source
    from nas_agent.validate import Validation, validator_for

    try:
        cfg = load_config(config).with_overrides({"policy.profile": profile})
        paths = []
        for item in files:
            if item.is_dir():
                paths += sorted(item.glob("*.py"))
            elif item.exists():
                paths.append(item)
            else:
                fail(f"no such file: {item}")
        catalog_path = catalog or Path(cfg.catalog)
        if catalog is not None and not catalog_path.exists():
            fail(f"no catalog at {catalog_path}")
        cat = Catalog(catalog_path) if catalog_path.exists() else None
        try:
            validator = validator_for(cfg, catalog=cat, smoke=smoke)
            results = []
            with progress_bars() as progress:
                task = progress.add_task("validating", total=len(paths), visible=not as_json)
                for path in paths:
                    try:
                        result = validator.validate(read_source(path), str(path))
                    except CandidateError as exc:
                        result = Validation(str(path), exc.verdict)
                    results.append(result)
                    if as_json:
                        print(json.dumps(result.as_dict()), flush=True)
                    progress.advance(task)
        finally:
            if cat is not None:
                cat.close()
    except USER_ERRORS as exc:
        fail(str(exc))
    if not as_json:
        _print_verdicts(results)
    raise typer.Exit(0 if all(r.ok for r in results) else 1)


def _print_verdicts(results: list[Validation]) -> None:
    table = Table(title="validation")
    for column in ("file", "verdict", "reason", "code hash", "struct hash", "params"):
        table.add_column(column, overflow="fold")
    for r in results:
        verdict = "[green]ok[/]" if r.ok else f"[red]{r.verdict.stage}[/]"
        if r.ok and r.warnings:
            verdict = f"[yellow]ok, {len(r.warnings)} warning(s)[/]"
        reason = r.verdict.reason or "; ".join(r.warnings[:3]) + (" …" if len(r.warnings) > 3 else "")
        table.add_row(escape(r.label), verdict, escape(reason), (r.code_hash or "")[:12], (r.struct_hash or "")[:12],
                      f"{r.n_params:,}" if r.n_params is not None else "")
    console.print(table)
    passed = sum(r.ok for r in results)
    warned = sum(r.ok and bool(r.warnings) for r in results)
    profile = results[0].profile if results else "strict"
    console.print(f"{passed} of {len(results)} passed under the {profile} profile"
                  + (f" ({warned} with policy findings reported as warnings: the jail runs them)" if warned else ""),
                  highlight=False)


@app.command()
def propose(
    template: Optional[Path] = typer.Option(None, "--template", help="Template to edit (default: the config's)."),
    parent: Optional[str] = typer.Option(None, "--parent", help="Edit this catalog model instead of the template."),
    n: Optional[int] = typer.Option(None, "--n", min=1, help="Proposals to ask for (default: llm.n)."),
    mode: Optional[str] = typer.Option(None, "--mode",
                                       help="params (points of the space, under its JSON schema), code (edited "
                                            "regions) or mixed (default: llm.mode). With --from-file: how to read "
                                            "the files (default: a JSON point of the space, else code)."),
    backend: Optional[str] = typer.Option(None, "--backend", help="vllm, openai, transformers or replay."),
    model: Optional[str] = typer.Option(None, "--model", help="Model id, folder, GGUF file, or smollm2."),
    replay: Optional[Path] = typer.Option(None, "--replay", help="Replay file (backend replay)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1),
    temperature: Optional[float] = typer.Option(None, "--temperature", min=0.0),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the valid proposals here."),
    record: Optional[Path] = typer.Option(None, "--record", help="Append the completions to this replay file."),
    smoke: Optional[bool] = SmokeOpt,
    config: Optional[Path] = ConfigOpt,
    catalog: Optional[Path] = CatalogOpt,
    from_file: bool = typer.Option(False, "--from-file",
                                   help="Judge saved completions (FILES: text files, one answer each, or folders of "
                                        "*.txt) the way a live answer is judged, without an LLM: extraction, splice, "
                                        "the static validation stages (--smoke: also the smoke run). Nothing is "
                                        "recorded. Exit 1 if any is rejected."),
    files: Optional[list[Path]] = typer.Argument(None, help="With --from-file: the saved completions."),
) -> None:
    """Ask the LLM once for proposals, validate them and show the verdicts (every call is recorded)."""
    from nas_agent.llm import MODES

    if mode is not None and mode not in MODES:
        fail(f"--mode: {mode!r} is not one of {', '.join(MODES)}")
    if files and not from_file:
        fail("completion files are read only with --from-file")
    if from_file:
        _judge_saved_completions(files or [], mode, parent, template, out, smoke, config, catalog)
        return
    _ask_once(template, parent, n, mode, backend, model, replay, max_tokens, temperature, out, record, smoke,
              config, catalog)


def _ask_once(template, parent, n, mode, backend, model, replay, max_tokens, temperature, out, record, smoke,
              config, catalog) -> None:
    from nas_agent.catalog import Catalog
    from nas_agent.llm import LLMError, make_backend
    from nas_agent.llm.replay import record as record_completions
    from nas_agent.search.propose_once import ask_once, base_of
    from nas_agent.search.trainer import run_dir_of
    from nas_agent.validate import validator_for

    try:
        cfg = config_of(config, catalog=catalog, smoke=smoke).with_overrides({
            "llm.backend": backend, "llm.model": model, "llm.n": n, "llm.max_tokens": max_tokens,
            "llm.temperature": temperature, "llm.mode": mode, "llm.replay_file": str(replay) if replay else None})
        with Catalog(cfg.catalog) as cat:
            base = base_of(cfg, cat, resolve_name(cat, parent) if parent else None, template)
            with cat.run(command_line(), cfg.to_dict()) as run:
                validator = validator_for(cfg, catalog=cat, workdir=run_dir_of(cfg) / "sandbox")
                err.print(f"loading {cfg.llm.backend} backend, model {cfg.llm.model} …", highlight=False)
                llm = make_backend(cfg.llm)
                try:
                    with err.status(f"asking for {cfg.llm.n} proposal(s) ({cfg.llm.mode} mode) and validating them"):
                        judged = ask_once(cfg, cat, llm, base, validator, run_id=run.id, mode=cfg.llm.mode)
                finally:
                    llm.close()
    except (LLMError, *USER_ERRORS) as exc:
        fail(str(exc))
    if record:
        record_completions(record, [j.answer.completion for j in judged])
    written = _write_valid(judged, out)
    table = Table(title=f"{len(judged)} proposal(s) from {llm.name}:{llm.model} for {base.label}")
    for column in ("#", "mode", "verdict", "reason", "tokens out", "reasoning chars", "seconds"):
        table.add_column(column, overflow="fold")
    for j in judged:
        a, v = j.answer, j.validation.verdict
        table.add_row(j.label, a.mode, "[green]ok[/]" if v.ok else f"[red]{v.stage}[/]", escape(v.reason[:300]),
                      str(a.completion.tokens_out), f"{len(a.extraction.reasoning):,}", f"{a.completion.latency_s:.1f}")
    console.print(table)
    valid = sum(j.validation.ok for j in judged)
    console.print(f"{valid} of {len(judged)} valid; recorded in {cfg.catalog}"
                  + (f"; wrote {len(written)} file(s) to {out}" if out else ""), highlight=False)


def _judge_saved_completions(files, mode, parent, template, out, smoke, config, catalog) -> None:
    from nas_agent.catalog import Catalog
    from nas_agent.search.propose_once import base_of, judge_saved
    from nas_agent.validate import validator_for

    texts = [(str(path), _read_completion(path)) for path in _completion_files(files)]
    try:
        # Only --smoke runs code; the catalog, when there is one, is read for --parent and duplicates.
        cfg = config_of(config, catalog=catalog, smoke=bool(smoke))
        cat = Catalog(cfg.catalog) if Path(cfg.catalog).exists() else None
        try:
            if parent and cat is None:
                fail(f"--parent needs a catalog; there is none at {cfg.catalog}")
            base = base_of(cfg, cat, resolve_name(cat, parent) if parent else None, template)
            validator = validator_for(cfg, catalog=cat, smoke=bool(smoke))
            judged = judge_saved(cfg, texts, base, validator, mode=mode or "auto")
        finally:
            if cat is not None:
                cat.close()
    except USER_ERRORS as exc:
        fail(str(exc))
    table = Table(title=f"{len(judged)} saved completion(s) for {base.label}")
    for column in ("file", "read as", "ok", "stage", "reason"):
        table.add_column(column, overflow="fold")
    for j in judged:
        v = j.validation.verdict
        cut = j.answer.extraction.truncated and "cut off" not in v.reason
        reason = v.reason + (" (the answer was cut off)" if cut else "")
        table.add_row(escape(j.label), j.answer.mode, "[green]yes[/]" if v.ok else "[red]no[/]", v.stage or "",
                      escape(reason[:300]))
    console.print(table)
    written = _write_valid(judged, out)
    valid = sum(j.validation.ok for j in judged)
    console.print(f"{valid} of {len(judged)} valid" + (f"; wrote {len(written)} file(s) to {out}" if out else ""),
                  highlight=False)
    raise typer.Exit(0 if valid == len(judged) else 1)


def _completion_files(items: list[Path]) -> list[Path]:
    """The files named, folders expanded to their *.txt; a one-line error for what is not there."""
    paths = []
    for item in items:
        if item.is_dir():
            found = sorted(item.glob("*.txt"))
            if not found:
                fail(f"no saved completions (*.txt) in {item}")
            paths += found
        elif item.is_file():
            paths.append(item)
        else:
            fail(f"no such file: {item}")
    if not paths:
        fail("--from-file needs saved completions: text files (one answer each) or folders of *.txt")
    return paths


def _read_completion(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}")


def _write_valid(judged, out: Path | None) -> list[Path]:
    """The valid proposals written to `out` as proposal-<hash>.py (nothing without `out`)."""
    if not out:
        return []
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for j in judged:
        if j.validation.ok:
            path = out / f"proposal-{j.validation.code_hash[:8]}.py"
            path.write_text(j.answer.source)
            written.append(path)
    return written


def strategy_mix(text: str) -> dict[str, float]:
    """`random`, `mutate+optuna` or `llm=0.5,mutate=0.5` as {strategy: weight}; a one-line error when malformed."""
    mix = {}
    for item in (part.strip() for part in text.replace("+", ",").split(",")):
        if not item:
            continue
        name, _, weight = item.partition("=")
        try:
            mix[name.strip()] = float(weight) if weight else 1.0
        except ValueError:
            fail(f"--strategies: {item!r} is not name or name=weight")
    if not mix:
        fail("--strategies: name at least one strategy")
    return mix


@app.command()
def search(
    config: Optional[Path] = ConfigOpt,
    budget: Optional[int] = typer.Option(None, "--budget", "-n", help="Candidates to train (0: no limit; see --hours)."),
    hours: Optional[float] = typer.Option(None, "--hours", help="Wall-clock limit of the search, in hours."),
    catalog: Optional[Path] = CatalogOpt,
    executor: Optional[str] = typer.Option(None, "--executor", help="local or ray."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster address (default: start one here)."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue the run with this id (after a crash or Ctrl-C)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir"),
    epochs: Optional[int] = typer.Option(None, "--epochs", "-e", min=1),
    train_subset: Optional[int] = typer.Option(None, "--train-subset", min=0),
    test_subset: Optional[int] = typer.Option(None, "--test-subset", min=0),
    device: Optional[str] = typer.Option(None, "--device"),
    backend: Optional[str] = typer.Option(None, "--backend", help="LLM backend: vllm, openai, transformers, replay."),
    model: Optional[str] = typer.Option(None, "--model", help="LLM: model id, folder, GGUF file, or smollm2."),
    replay: Optional[Path] = typer.Option(None, "--replay", help="Replay file (backend replay)."),
    seed: Optional[int] = typer.Option(None, "--seed"),
    task: Optional[str] = TaskOpt,
    strategies_opt: Optional[str] = typer.Option(None, "--strategies", "-s",
                                                 help="Strategy mix instead of [search] strategies: names joined "
                                                      "by + (equal weights) or name=weight pairs, e.g. random, "
                                                      "mutate+optuna, llm=0.5,mutate=0.5."),
    fidelity: Optional[str] = typer.Option(None, "--fidelity", help="full (every candidate trains every epoch) or "
                                                                    "halving (successive halving, [search] "
                                                                    "min_epochs and reduction)."),
    epoch_budget: Optional[int] = typer.Option(None, "--epoch-budget", min=0,
                                               help="Epochs to train in all, over every candidate (0: no limit)."),
) -> None:
    """Search: rounds of LLM edits, mutations and Optuna proposals, validated, trained and ranked."""
    from nas_agent.catalog import Catalog
    from nas_agent.data import resolve_cifar10
    from nas_agent.llm import LLMError
    from nas_agent.search.trainer import metric_of, run_dir_of
    from nas_agent.space import load_template
    from nas_agent.space.template import read_task
    from nas_agent.validate import validator_for
    from nas_agent.search.assemble import (check_strategies, make_backend_if_needed, make_executor, make_strategies,
                                           optuna_storage)
    from nas_agent.search.display import SearchDisplay
    from nas_agent.search.loop import Search
    from nas_agent.search.reference import reference_candidate
    from nas_agent.catalog.browse import strategy_summary
    from nas_agent.search.pretrain import check_datasets

    overrides = {"search.budget": budget, "search.hours": hours, "search.executor": executor,
                 "search.ray_address": ray_address, "search.seed": seed, "llm.backend": backend,
                 "llm.model": model, "llm.replay_file": str(replay) if replay else None,
                 "search.fidelity": fidelity, "search.epoch_budget": epoch_budget,
                 "search.strategies": strategy_mix(strategies_opt) if strategies_opt else None}
    try:
        if budget is not None and budget < 0 or hours is not None and hours < 0:
            fail("--budget and --hours must be >= 0")
        cfg = config_of(config, epochs=epochs, data_dir=data_dir, train_subset=train_subset, test_subset=test_subset,
                      device=device, catalog=catalog, task=task).with_overrides(overrides)
        if resume:
            # The run's own settings, with what this command line changes on top.
            with open_catalog(Path(cfg.catalog)) as cat:
                run = cat.get_run(resume)
            if run is None:
                fail(f"no run {resume!r} in {cfg.catalog}; `nas-agent runs` lists the runs")
            from nas_agent.config import from_dict

            cfg = from_dict(run["config"], source=f"run {resume}").with_overrides(
                {**overrides, "data.dir": str(data_dir) if data_dir else None, "device": device})
        if not cfg.search.budget and not cfg.search.hours and not cfg.search.epoch_budget:
            fail("an endless search: set a budget (--budget N), an epoch budget (--epoch-budget E) "
                 "or a time limit (--hours H)")
        template = load_template(cfg.template)
        # Everything that can fail on a bad setting comes before the catalog is opened.
        declared = read_task(template.source)
        if declared != cfg.task:
            fail(f"template {template.path.name} declares TASK {declared!r} but the run's task is {cfg.task!r}; "
                 f"set `template` in the config to a {cfg.task} template (or pass --task {declared})")
        check_strategies(cfg)
        check_datasets(cfg)  # [pretrain] datasets: each must be a dataset folder
        reference_candidate(cfg)
        cache = resolve_cifar10(cfg.data.dir or None, cfg.data.cache_dir or None)
        pool = make_executor(cfg)
        llm = make_backend_if_needed(cfg)
    except (LLMError, ValueError, *USER_ERRORS) as exc:
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    status, stats, strategies = "failed", None, {}
    try:
        with Catalog(cfg.catalog) as cat:
            with cat.run(command_line(), cfg.to_dict(), resume=resume) as run:
                run_id = run.id
                err.print(f"search run {run_id}: budget {cfg.search.budget or 'none'}, "
                          f"{cfg.search.hours or 'no'} hour limit, strategies "
                          + ", ".join(f"{k} {v:g}" for k, v in cfg.search.strategies.items() if v > 0)
                          + f", executor {cfg.search.executor} ({pool.slots} slot(s))", highlight=False)
                try:
                    validator = validator_for(cfg, catalog=cat, workdir=run_dir_of(cfg) / "sandbox")
                    strategies = make_strategies(cfg, cat, run_id, llm)
                    engine = Search(cfg, cat, run_id, cache, template=template, strategies=strategies,
                                    validator=validator, executor=pool)
                    stats = engine.stats
                    with SearchDisplay(err, engine.stats, cfg.train.epochs) as display:
                        engine.on_change = display.update
                        status = engine.run()
                except KeyboardInterrupt:
                    status = run.status = "interrupted"
                finally:
                    for strategy in strategies.values():
                        strategy.close()
            names = {p["nn"] for p in cat.proposals(run_id=run_id) if p["ok"] and p["nn"]}
            names |= {stats.reference} if stats and stats.reference else set()
            board = cat.leaderboard(task=cfg.task, names=sorted(names)) if names else []
            summary = strategy_summary(cat, run_id)
    except (LLMError, *USER_ERRORS) as exc:
        fail(str(exc))
    finally:
        pool.close()
        if llm is not None:
            llm.close()
    if board:
        _print_leaderboard(board[:20], title=f"run {run_id}: leaderboard")
    _print_strategy_summary(summary, run_id, metric=metric_of(cfg.task)[0])
    if status == "interrupted":
        err.print(f"interrupted: finished results are in {cfg.catalog}; continue with "
                  f"nas-agent search --resume {run_id} --catalog {cfg.catalog}", highlight=False)
        raise typer.Exit(130)
    console.print(f"{stats.stop_reason}; catalog {cfg.catalog}"
                  + (f"; Optuna studies: optuna-dashboard {optuna_storage(cfg)}"
                     if {"optuna", "hpo"} & set(cfg.search.strategies) else ""), highlight=False)


def _print_strategy_summary(rows: list[dict], run_id: str, metric: str = "acc") -> None:
    table = Table(title=f"run {run_id}: strategies")
    for column in ("strategy", "proposals", "valid", "duplicates", "rejected", "trained", "failed", "stopped",
                   f"best {metric}", f"mean {metric}"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    fmt = lambda v: "-" if v is None else f"{v:.4f}"
    for r in rows:
        table.add_row(r["strategy"], str(r["proposals"]), f"{r['valid']} ({r['valid_share']:.0%})", str(r["duplicates"]),
                      str(r["rejected"]), str(r["trained"]), str(r["failed"]), str(r["stopped"]), fmt(r["best"]),
                      fmt(r["mean"]))
    console.print(table)


LEADERBOARD_COLUMNS = ("rank", "name", "accuracy", "epoch", "n_params", "seconds_per_epoch", "origin", "status",
                       "task", "metric")


def _print_leaderboard(rows: list[dict], title: str = "leaderboard") -> None:
    table = Table(title=title)
    metrics = {row.get("metric") or "acc" for row in rows}
    best = f"best {metrics.pop()}" if len(metrics) == 1 else "best"  # acc (higher is better), bpd (lower)
    for column in ("rank", "name", best, "epoch", "params", "s/epoch", "origin"):
        # Names end in the hash that tells candidates apart: wrap them rather than cut them.
        table.add_column(column, justify="right" if column not in ("name", "origin") else "left",
                         overflow="fold")
    for row in rows:
        # The reference network is the baseline: marked, and listed even where a filter leaves it out.
        reference = row["origin"] == "reference"
        table.add_row("ref" if row["rank"] is None else str(row["rank"]), escape(row["name"]), f"{row['accuracy']:.4f}",
                      str(row["epoch"]), f"{row['n_params']:,}" if row["n_params"] is not None else "?",
                      f"{row['seconds_per_epoch']:.1f}", row["origin"] or "",
                      style="yellow" if reference else None)
    console.print(table)


@app.command()
def runs(catalog: Optional[Path] = CatalogOpt) -> None:
    """List the catalog's runs: id, command, status, start and end."""
    try:
        with open_catalog(catalog_path(catalog)) as cat:
            rows = cat.runs()
    except USER_ERRORS as exc:
        fail(str(exc))
    table = Table(title="runs")
    for column in ("id", "status", "started", "ended", "command"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r["id"], r["status"], r["started"] or "", r["ended"] or "", r["command"] or "")
    console.print(table)


@app.command()
def leaderboard(
    catalog: Optional[Path] = CatalogOpt,
    top: Optional[int] = typer.Option(None, "--top", "-k", min=1),
    task: Optional[str] = typer.Option(None, "--task"),
    origin: Optional[str] = typer.Option(None, "--origin"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Only models evaluated on this dataset."),
    run: Optional[str] = typer.Option(None, "--run", help="Only models this run proposed or trained."),
    min_params: Optional[int] = typer.Option(None, "--min-params", min=0, help="At least this many parameters."),
    max_params: Optional[int] = typer.Option(None, "--max-params", min=0, help="At most this many parameters."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON rows."),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV."),
    variants: bool = typer.Option(False, "--variants", help="Per model: scratch vs fractal vs stylized-fractal "
                                                            "fine-tuning (nas-agent pretrain)."),
) -> None:
    """Rank trained candidates by best test accuracy; the reference network's row is always listed."""
    from nas_agent.catalog.browse import filter_leaderboard, run_models
    from nas_agent.catalog.browse import with_reference_rows

    try:
        with open_catalog(catalog_path(catalog)) as cat:
            names = run_models(cat, run) if run else None
            rows = filter_leaderboard(cat.leaderboard(task=task, origin=origin, names=names), dataset=dataset,
                                      min_params=min_params, max_params=max_params, top=top)
            rows = with_reference_rows(rows, cat.leaderboard(task=task))
            if variants:
                from nas_agent.cli.fractals import print_variants
                from nas_agent.search.pretrain import variant_board

                board = variant_board(cat, [row["name"] for row in rows])
    except (ValueError, *USER_ERRORS) as exc:
        fail(str(exc))
    if variants:
        if as_json:
            print(json.dumps(board, indent=2))
        else:
            print_variants(board)
        return
    rows = [{k: row.get(k) for k in LEADERBOARD_COLUMNS} for row in rows]
    if as_json:
        print(json.dumps(rows, indent=2))
    elif as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=LEADERBOARD_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    elif not rows:
        console.print("no trained candidates yet")
    else:
        _print_leaderboard(rows)


@app.command()
def show(
    name: str = typer.Argument(..., help="Candidate name, or a unique part of it such as its hash."),
    catalog: Optional[Path] = CatalogOpt,
    code: bool = typer.Option(True, "--code/--no-code", help="Print the source."),
) -> None:
    """Print a candidate's code, lineage and per-epoch metrics."""
    try:
        with open_catalog(catalog_path(catalog)) as cat:
            name = resolve_name(cat, name)
            model = cat.get_model(name)
            epochs = cat.epochs(name)
            lineage = cat.lineage(name)
            events = cat.events(nn=name)
    except USER_ERRORS as exc:
        fail(str(exc))
    console.print(f"[bold]{escape(name)}[/]  family {model['family']}  origin {model['origin']}  "
                  f"status {model['status']}" + (f" ({escape(model['reason'])})" if model["reason"] else ""),
                  highlight=False)
    console.print(f"params {model['n_params'] if model['n_params'] is not None else '?'}  "
                  f"code hash {model['code_hash'][:16]}  created {model['created']}", highlight=False)
    if model["template_params"]:
        console.print("template parameters: " + json.dumps(model["template_params"]), highlight=False)
    console.print("lineage: " + " -> ".join(lineage), highlight=False)
    if epochs:
        table = Table(title="per-epoch metrics")
        for column in ("epoch", "test acc", "test loss", "train loss", "train acc", "seconds", "img/s"):
            table.add_column(column, justify="right")
        fmt = lambda v, f: "" if v is None else format(v, f)
        for e in epochs:
            table.add_row(str(e["epoch"]), fmt(e["accuracy"], ".4f"), fmt(e["test_loss"], ".4f"),
                          fmt(e["train_loss"], ".4f"), fmt(e["train_accuracy"], ".4f"),
                          fmt(e["seconds"], ".1f"), fmt(e["samples_per_second"], ".0f"))
        console.print(table)
    if events:
        console.print("events: " + ", ".join(f"{e['kind']}" + (f" ({escape(e['reason'])})" if e["reason"] else "")
                                             for e in events[-8:]), highlight=False)
    if code:
        from rich.syntax import Syntax

        console.print(Syntax(model["code"], "python", line_numbers=False))


@app.command()
def export(
    name: Optional[str] = typer.Argument(None, help="Candidate name (or unique part); omit with --top."),
    top: Optional[int] = typer.Option(None, "--top", "-k", min=1, help="Export the K best."),
    out: Path = typer.Option(Path("runs/exports"), "--out", "-o"),
    catalog: Optional[Path] = CatalogOpt,
    task: Optional[str] = typer.Option(None, "--task"),
) -> None:
    """Write standalone Python files (LEMUR contract, metrics, lineage and recipe in a header) that train on their own."""
    from nas_agent.export import export_candidate

    if (name is None) == (top is None):
        fail("give either a NAME or --top K")
    try:
        with open_catalog(catalog_path(catalog)) as cat:
            names = [resolve_name(cat, name)] if name else [r["name"] for r in cat.leaderboard(task=task, top=top)]
            if not names:
                fail("no trained candidates to export")
            paths = [export_candidate(cat, n, out) for n in names]
    except USER_ERRORS as exc:
        fail(str(exc))
    for path in paths:
        console.print(f"wrote {path}", highlight=False)


@app.command()
def sample(
    name: str = typer.Argument(..., help="A trained generative candidate (name, or a unique part such as its hash)."),
    n: int = typer.Option(64, "--n", "-n", min=1, max=4096, help="How many images to draw."),
    out: Path = typer.Option(Path("samples.png"), "--out", "-o", help="PNG file for the image grid."),
    seed: int = typer.Option(0, "--seed", help="Seed of the draws."),
    temperature: float = typer.Option(1.0, "--temperature", min=0.01, help="Softmax temperature (1: the model)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    config: Optional[Path] = ConfigOpt,
    catalog: Optional[Path] = CatalogOpt,
) -> None:
    """Draw images from a trained fractal generator (level by level, in the sandbox) and write a grid."""
    from nas_agent.train.sample import SampleError, sample_images, write_grid
    from nas_agent.search.trainer import checkpoint_of, run_dir_of

    try:
        cfg = config_of(config, catalog=catalog, device=device)
        with open_catalog(Path(cfg.catalog)) as cat:
            name = resolve_name(cat, name)
            model = cat.get_model(name)
        if not is_generative(model["task"] or ""):
            fail(f"{name} is a {model['task']} model; sample draws images from {TASK_GENERATION} models")
        checkpoint = checkpoint_of(cfg, name)
        if not checkpoint.exists():
            fail(f"no trained weights for {name} at {checkpoint}; train it first (nas-agent train FILE --task "
                 f"{TASK_GENERATION} --catalog {cfg.catalog})")
        workdir = run_dir_of(cfg) / "sandbox" / f"sample-{model['code_hash'][:12]}"
        with err.status(f"drawing {n} image(s) from {name} in the sandbox"):
            drawn = sample_images(model["code"], checkpoint, n, workdir, seed=seed, temperature=temperature,
                                  device=cfg.device, seconds=cfg.limits.seconds, memory_mb=cfg.limits.memory_mb,
                                  threads=cfg.limits.threads)
        path = write_grid(drawn.images, out)
    except (SampleError, OSError, *USER_ERRORS) as exc:
        fail(str(exc))
    console.print(f"wrote {path}: {n} samples of {name}, {drawn.seconds_per_image:.2f} s per image", highlight=False)


@app.command()
def report(
    out: Path = typer.Option(Path("runs/report.html"), "--out", "-o", help="HTML file to write."),
    run: Optional[str] = typer.Option(None, "--run", help="Only what this run proposed, trained or rejected."),
    catalog: Optional[Path] = CatalogOpt,
) -> None:
    """Write one self-contained HTML report: leaderboards, figures, strategies, rejections, lineage, LLM cost."""
    from nas_agent.report import write_report

    try:
        with open_catalog(catalog_path(catalog)) as cat:
            with err.status("drawing the report"):
                data = write_report(cat, out, run_id=run)
    except (OSError, *USER_ERRORS) as exc:
        fail(str(exc))
    rows = sum(len(t.rows) for t in data.tasks)
    console.print(f"wrote {out}: {rows} leaderboard row(s) over {len(data.tasks)} task(s), "
                  f"{len(data.strategies)} strateg{'y' if len(data.strategies) == 1 else 'ies'}, "
                  f"{sum(r.count for r in data.rejections)} rejection(s)", highlight=False)


lemur_app = typer.Typer(no_args_is_help=True, help="LEMUR interop: nn-dataset's folder layout, out and in.")
app.add_typer(lemur_app, name="lemur")


@lemur_app.command("export")
def lemur_export(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for nn/, metric/, transform/ and stat/."),
    catalog: Optional[Path] = CatalogOpt,
) -> None:
    """Write every model and every recorded epoch in nn-dataset's layout (stat/<task>_<dataset>_<metric>_<nn>/<epoch>.json)."""
    from nas_agent.catalog.lemur_io import LemurLayoutError, export_lemur

    try:
        with open_catalog(catalog_path(catalog)) as cat:
            summary = export_lemur(cat, out)
    except (OSError, LemurLayoutError, *USER_ERRORS) as exc:
        fail(str(exc))
    console.print(f"wrote {summary.models} model(s), {summary.configs} stat folder(s), {summary.epoch_files} "
                  f"epoch file(s) with {summary.records} trial record(s) to {out}", highlight=False)


@lemur_app.command("import")
def lemur_import(
    folder: Path = typer.Argument(..., help="An nn-dataset layout: a lemur export, or a clone of nn-dataset."),
    catalog: Optional[Path] = CatalogOpt,
) -> None:
    """Read an nn-dataset layout into the catalog; new models get origin lemur. Importing twice changes nothing."""
    from nas_agent.catalog import Catalog
    from nas_agent.catalog.lemur_io import LemurLayoutError, find_layout, import_lemur

    try:
        find_layout(folder)  # a wrong folder must not leave a new, empty catalog behind
        with Catalog(catalog_path(catalog)) as cat:
            with cat.run(command_line(), {"lemur_import": str(folder)}) as run:
                summary = import_lemur(cat, folder, run_id=run.id)
    except (OSError, LemurLayoutError, *USER_ERRORS) as exc:
        fail(str(exc))
    for line in summary.skipped:
        err.print(f"[yellow]skipped[/] {escape(line)}", highlight=False, soft_wrap=True)
    console.print(f"imported {summary.records} trial record(s): {len(summary.added)} new model(s), "
                  f"{len(summary.known)} already catalogued"
                  + (f", {len(summary.skipped)} skipped" if summary.skipped else ""), highlight=False)
    if not summary.added and not summary.known:
        raise typer.Exit(1)


app.add_typer(fractals_app, name="fractals")
app.add_typer(bench_app, name="bench")
app.command("pretrain")(pretrain)


def main() -> None:  # pragma: no cover - console script entry
    app()
