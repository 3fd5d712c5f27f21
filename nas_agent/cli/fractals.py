"""`nas-agent fractals render|stylize|kid|variants` and `nas-agent pretrain`: synthetic pre-training from the shell."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from nas_agent.cli.common import USER_ERRORS, command_line, config_of, console, fail, progress_bars, resolve_name

fractals_app = typer.Typer(add_completion=False, no_args_is_help=True,
                           help="Neural-fractal datasets: render, reverse-stylize, measure the domain gap.")


def _device(name: str):
    from nas_agent.device import resolve_device

    try:
        return resolve_device(name)
    except (ValueError, RuntimeError) as exc:
        fail(str(exc))


def _threads(threads: int) -> None:
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


ThreadsOpt = typer.Option(0, "--threads", min=0, help="CPU threads for torch (0: torch's default). "
                                                     "On shared cores 1 is often fastest.")


@fractals_app.command()
def render(
    out: Path = typer.Option(..., "--out", "-o", help="Dataset folder to write (dataset.pt, meta.json, preview.png)."),
    classes: int = typer.Option(10, "--classes", "-k", min=1, help="Generator networks; one class each."),
    per_class: int = typer.Option(100, "--per-class", "-m", min=2, help="Views per network."),
    size: int = typer.Option(32, "--size", min=8, max=512, help="Image side in pixels."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    layers: int = typer.Option(6, "--layers", min=1, help="Hidden layers of the complex MLP g."),
    width: int = typer.Option(3, "--width", min=1, help="Complex neurons per hidden layer."),
    steps: int = typer.Option(20, "--steps", min=1, help="Iterations T of z -> g(z) + c."),
    gain: float = typer.Option(0.7, "--gain", min=0.01, help="Scale of g's random weights (times 1/sqrt(fan-in))."),
    skip: float = typer.Option(1.0, "--skip", min=0.0,
                               help="g(z) = (MLP(z) + skip*z)^3; 0 is the paper's g (see the README)."),
    samples: int = typer.Option(2, "--samples", min=1, help="Sub-pixel samples per side (anti-aliasing)."),
    test_per_class: Optional[int] = typer.Option(None, "--test-per-class", min=1,
                                                 help="Views per class held out for testing (default: a tenth)."),
    batch: int = typer.Option(256, "--batch", min=1, help="Images rendered at once."),
    threads: int = ThreadsOpt,
) -> None:
    """Render K generator networks x M views of neural fractals, degenerate renders filtered out."""
    from nas_agent.fractals.dataset import FractalDataError, split_views, write_dataset
    from nas_agent.fractals.render import RenderSettings, render_dataset

    try:
        settings = RenderSettings(classes=classes, per_class=per_class, size=size, layers=layers, width=width,
                                  steps=steps, samples=samples, gain=gain, skip=skip, seed=seed)
    except ValueError as exc:
        fail(str(exc))
    dev = _device(device)
    _threads(threads)
    held_out = test_per_class if test_per_class is not None else max(1, per_class // 10)
    if held_out >= per_class:
        fail(f"--test-per-class {held_out} leaves no training views; it must be below --per-class {per_class}")
    try:
        with progress_bars() as progress:
            task = progress.add_task(f"rendering on {dev}", total=classes * per_class)
            x, y, stats = render_dataset(settings, dev, batch=batch,
                                         on_progress=lambda done, total: progress.update(task, completed=done))
        dataset = write_dataset(out, *split_views(x, y, held_out), meta={
            "kind": "neural-fractals", "classes": classes, "settings": settings.to_dict(),
            "render": stats.to_dict(), "test_per_class": held_out, "stylize": None, "parent": None})
    except (ValueError, FractalDataError, OSError) as exc:
        fail(str(exc))
    table = Table(title=f"neural fractals: {out}")
    for column in ("images", "classes", "train / test", "rejected flat", "rejected noise", "rejected simple",
                   "networks tried",
                   "seconds", "images/s", "device", "hash"):
        table.add_column(column, justify="right")
    table.add_row(str(stats.images), str(classes), f"{dataset.meta['train']} / {dataset.meta['test']}",
                  str(stats.rejected_flat), str(stats.rejected_noise), str(stats.rejected_simple),
                  str(stats.networks_tried),
                  f"{stats.seconds:.1f}", f"{stats.images_per_second:.1f}", stats.device, dataset.hash[:12])
    console.print(table)
    console.print(f"preview: {out / 'preview.png'}", highlight=False)


@fractals_app.command()
def stylize(
    directory: Path = typer.Argument(..., help="Dataset folder made by `nas-agent fractals render`."),
    style_dir: Path = typer.Option(..., "--style-dir",
                                   help="Real images: a folder of .png/.jpg, or a CIFAR-10 source."),
    method: str = typer.Option("fast", "--method", help="gram (optimisation, Gram matrices) or fast (one pass)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the stylized dataset."),
    style_count: int = typer.Option(300, "--style-count", min=1, help="Real images to stylize toward."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device"),
    steps: int = typer.Option(40, "--steps", min=1, help="gram: optimisation steps."),
    encoder: str = typer.Option("auto", "--encoder", help="gram/KID: auto (VGG-19 if cached), vgg or random."),
    amplitude: float = typer.Option(0.5, "--amplitude", min=0.0, max=1.0,
                                    help="fast: share of the style image's Fourier amplitude."),
    batch: int = typer.Option(128, "--batch", min=1),
    kid: bool = typer.Option(True, "--kid/--no-kid", help="Measure KID against the style images, raw vs stylized."),
    threads: int = ThreadsOpt,
) -> None:
    """Reverse-stylize a fractal dataset toward a few hundred real images; report images/s (and KID)."""
    from nas_agent.fractals.dataset import FractalDataError, load_images, load_tensors, read_dataset, write_dataset
    from nas_agent.fractals.stylize import StylizeSettings
    from nas_agent.fractals.stylize import stylize as run_stylize

    try:
        settings = StylizeSettings(method=method, seed=seed, steps=steps, encoder=encoder, amplitude=amplitude)
        source = read_dataset(directory)
        if source.stylize:
            fail(f"{directory} is already stylized ({source.stylize}); stylize the raw render instead")
        tensors = load_tensors(source)
        size = tensors["train_x"].shape[-1]
        styles, described = load_images(style_dir, style_count, size, seed=seed)
    except (ValueError, FractalDataError) as exc:
        fail(str(exc))
    dev = _device(device)
    _threads(threads)
    n = len(tensors["train_x"]) + len(tensors["test_x"])
    try:
        with progress_bars() as progress:
            task = progress.add_task(f"stylizing ({method}) on {dev}", total=n)
            done = {"train": 0}

            def advance(k, total):
                progress.update(task, completed=done["train"] + k)

            train, stats = run_stylize(tensors["train_x"], styles, settings, dev, batch=batch, on_progress=advance)
            done["train"] = len(train)
            test, test_stats = run_stylize(tensors["test_x"], styles, settings, dev, batch=batch,
                                           on_progress=advance, offset=len(train))
    except ValueError as exc:
        fail(str(exc))
    seconds = stats.seconds + test_stats.seconds
    meta = {**source.meta, "kind": "neural-fractals (stylized)", "parent": source.hash,
            "stylize": {**settings.__dict__, "encoder_used": stats.encoder, "style_source": described,
                        "images": n, "seconds": seconds, "images_per_second": n / max(seconds, 1e-9)}}
    for key in ("hash", "train", "test"):
        meta.pop(key, None)
    try:
        dataset = write_dataset(out, train, tensors["train_y"], test, tensors["test_y"], meta)
    except OSError as exc:
        fail(f"cannot write {out}: {exc}")
    table = Table(title=f"stylized ({method}): {out}")
    for column in ("images", "seconds", "images/s", "encoder", "style images", "hash"):
        table.add_column(column, justify="right")
    table.add_row(str(n), f"{seconds:.1f}", f"{n / max(seconds, 1e-9):.1f}", stats.encoder or "-", described,
                  dataset.hash[:12])
    console.print(table)
    if kid:
        from nas_agent.fractals.kid import domain_gap

        k = min(500, len(train))
        gap, on = domain_gap(styles, {"raw": tensors["train_x"][:k], "stylized": train[:k]}, dev,
                             encoder="random" if encoder == "random" else "auto")
        console.print(f"KID against the {len(styles)} style images (encoder: {on}): raw {gap['raw']}, "
                      f"stylized {gap['stylized']}", highlight=False)
    console.print(f"preview: {out / 'preview.png'}", highlight=False)


@fractals_app.command("kid")
def kid_command(
    real: Path = typer.Argument(..., help="Real images: a folder of .png/.jpg, or a CIFAR-10 source."),
    datasets: list[Path] = typer.Argument(..., help="Dataset folders to compare with the real images."),
    count: int = typer.Option(1000, "--count", min=2, help="Real images (and at most this many of each set)."),
    encoder: str = typer.Option("auto", "--encoder", help="auto (VGG-19 if cached), vgg or random."),
    device: str = typer.Option("auto", "--device"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """KID (kernel MMD on a fixed encoder) between real images and each synthetic dataset: the domain gap."""
    from nas_agent.fractals.dataset import FractalDataError, load_images, load_tensors, read_dataset
    from nas_agent.fractals.kid import domain_gap

    try:
        sets = {}
        for path in datasets:
            x = load_tensors(read_dataset(path))["train_x"]
            sets[str(path)] = x[:count]
        size = next(iter(sets.values())).shape[-1]
        real_x, described = load_images(real, count, size, seed=seed)
        gap, on = domain_gap(real_x, sets, _device(device), encoder=encoder, seed=seed)
    except (ValueError, FractalDataError) as exc:
        fail(str(exc))
    console.print(kid_table(gap, f"KID against {described}", "dataset"))
    console.print(f"encoder: {on}", highlight=False)


def kid_table(gap: dict, title: str, first_column: str) -> Table:
    """The domain gap of `domain_gap()` as a table: one row per image set, KID as mean ± std."""
    table = Table(title=title)
    table.add_column(first_column)
    table.add_column("KID (mean ± std over subsets)", justify="right")
    for name, value in gap.items():
        table.add_row(name, str(value))
    return table


@fractals_app.command()
def variants(
    name: Optional[str] = typer.Argument(None, help="Only this model (name or unique part)."),
    catalog: Optional[Path] = typer.Option(None, "--catalog", help="Catalog database (default: runs/catalog.sqlite)."),
) -> None:
    """Scratch vs fractal vs stylized-fractal fine-tuning results, per architecture."""
    from nas_agent.catalog import Catalog, CatalogError
    from nas_agent.config import load_config
    from nas_agent.search.pretrain import variant_board

    path = catalog or Path(load_config().catalog)
    if not path.exists():
        fail(f"no catalog at {path}; run nas-agent pretrain first or pass --catalog")
    try:
        with Catalog(path) as cat:
            names = None
            if name:
                resolved = cat.resolve_name(name)
                if resolved is None:
                    fail(f"no candidate named {name!r} in the catalog")
                names = [resolved]
            rows = variant_board(cat, names)
    except CatalogError as exc:
        fail(str(exc))
    print_variants(rows)


def print_variants(rows: list[dict], title: str = "pre-training variants") -> None:
    if not rows:
        console.print("no pre-training variants yet (nas-agent pretrain NAME --on DIR)")
        return
    table = Table(title=title)
    for column in ("model", "variant", "data", "pre-train ep", "labels", "fine-tune ep", "trials",
                   "test acc (mean ± std)", "synthetic acc"):
        left = column in ("model", "variant")
        table.add_column(column, justify="left" if left else "right", no_wrap=left)
    for r in rows:
        table.add_row(r["name"].rsplit("_", 1)[-1], r["variant"], (r["dataset_hash"] or "-")[:12],
                      str(r["pretrain_epochs"]), str(r["finetune_subset"] or "all"), str(r["finetune_epochs"]),
                      str(r["trials"]), f"{r['accuracy']:.4f} ± {r['std']:.4f}",
                      "-" if r["pretrain_accuracy"] is None else f"{r['pretrain_accuracy']:.3f}")
    console.print(table)


def pretrain(
    name: str = typer.Argument(..., help="Catalogued model (name or unique part), or a candidate file to register."),
    on: str = typer.Option(..., "--on", help="Dataset folder (nas-agent fractals render/stylize), or `scratch`."),
    epochs: Optional[int] = typer.Option(None, "--epochs", "-e", min=1, help="Pre-training epochs (pretrain.epochs)."),
    finetune_subset: Optional[int] = typer.Option(None, "--finetune-subset", min=0,
                                                  help="CIFAR-10 labels to fine-tune on (pretrain.finetune_subset)."),
    finetune_epochs: Optional[int] = typer.Option(None, "--finetune-epochs", min=1,
                                                  help="Fine-tuning epochs (default: pretrain.finetune_epochs)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Run configuration (TOML path or conf/ name)."),
    catalog: Optional[Path] = typer.Option(None, "--catalog"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="CIFAR-10 source."),
    test_subset: Optional[int] = typer.Option(None, "--test-subset", min=0, help="Test on M images (0: all)."),
    device: Optional[str] = typer.Option(None, "--device"),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of both phases (train.seed)."),
) -> None:
    """Pre-train a candidate on a synthetic dataset, fine-tune it on CIFAR-10 labels, record both in the catalog."""
    from nas_agent.catalog import Catalog
    from nas_agent.data import resolve_cifar10
    from nas_agent.fractals.dataset import FractalDataError
    from nas_agent.search.pretrain import Pretrainer, Variant, variant_board
    from nas_agent.search.trainer import read_candidate, register, run_dir_of
    from nas_agent.validate import validator_for

    try:
        cfg = config_of(config, data_dir=data_dir, test_subset=test_subset, device=device,
                               catalog=catalog).with_overrides({
                                   "pretrain.epochs": epochs, "pretrain.finetune_subset": finetune_subset,
                                   "pretrain.finetune_epochs": finetune_epochs, "train.seed": seed})
        variant = Variant.of(on)
        cache = resolve_cifar10(cfg.data.dir or None, cfg.data.cache_dir or None)
        with Catalog(cfg.catalog) as cat:
            with cat.run(command_line(), cfg.to_dict()) as run:
                try:
                    if Path(name).is_file():
                        validator = validator_for(cfg, catalog=cat, workdir=run_dir_of(cfg) / "sandbox",
                                                  allow_known=True)
                        model = register(cat, read_candidate(Path(name), validator), cfg, origin="manual",
                                         run_id=run.id)
                    else:
                        model = resolve_name(cat, name)
                    result = _run_with_progress(Pretrainer(cat, cfg, cache, run_id=run.id), model, variant, cfg)
                except KeyboardInterrupt:
                    run.status = "interrupted"
                    raise typer.Exit(130)
            rows = variant_board(cat, [model])
    except (FractalDataError, ValueError, *USER_ERRORS) as exc:
        fail(str(exc))
    print_variants(rows, title=f"pre-training variants of {model}")
    if result.skipped:
        console.print(f"{variant.label}: already recorded in {cfg.catalog}; nothing trained", highlight=False)
    elif not result.ok:
        fail(f"{variant.label} of {model} failed: {result.reason}", code=1)
    else:
        console.print(f"{variant.label}: best fine-tuned accuracy {result.accuracy:.4f} "
                      f"(final {result.final_accuracy:.4f}); catalog {cfg.catalog}", highlight=False)


def _run_with_progress(trainer, model: str, variant, cfg):
    from nas_agent.search.pretrain import finetune_config

    epochs = {"pretrain": cfg.pretrain.epochs, "finetune": finetune_config(cfg).train.epochs}
    with progress_bars() as progress:
        tasks: dict[str, int] = {}

        def on_event(phase: str, event: dict) -> None:
            if phase not in tasks:
                tasks[phase] = progress.add_task(f"{phase} {variant.label}", total=epochs[phase])
            if event.get("event") == "epoch":
                progress.update(tasks[phase], completed=event["epoch"],
                                description=f"{phase} {variant.label} acc {event['test_accuracy']:.3f}")

        trainer.on_event = on_event
        return trainer.run(model, variant)
