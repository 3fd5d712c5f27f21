"""Does neural-fractal pre-training help a candidate that has few labels? Scratch vs raw vs stylized fractals.

One fixed candidate (a small FractalNet: 3 blocks x 2 columns, 16 base channels) is fine-tuned on
2,500 labelled real CIFAR-10 images and tested on all 10,000 test images, in three arms with the
same total number of epochs:

- scratch:  P + F epochs on the 2,500 real images;
- fractal:  P epochs on raw neural fractals (as many training images as real ones), then F on the real;
- stylized: the same fractals reverse-stylized toward 300 real images (method --method), then F.

Each arm runs for every seed (--seeds). Every training runs in the sandboxed child, through
nas_agent.search.pretrain, into a catalog under --out. The script also prints render and
stylization throughput (both methods) and the domain gap (KID against 1,000 real test images).

    .venv/bin/python benchmarks/fractal_pretraining.py --data-dir ../shared/data/cifar10-jpeg.tar.gz
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nas_agent.catalog import Catalog  # noqa: E402
from nas_agent.config import load_config  # noqa: E402
from nas_agent.data import load_cache, resolve_cifar10  # noqa: E402
from nas_agent.cli.fractals import kid_table  # noqa: E402
from nas_agent.fractals.dataset import load_images, load_tensors, read_dataset, split_views, write_dataset  # noqa: E402
from nas_agent.fractals.kid import domain_gap  # noqa: E402
from nas_agent.search.pretrain import Pretrainer, Variant  # noqa: E402
from nas_agent.fractals.render import RenderSettings, render_dataset  # noqa: E402
from nas_agent.fractals.stylize import StylizeSettings, stylize  # noqa: E402
from nas_agent.search.trainer import read_candidate, register  # noqa: E402
from nas_agent.space import load_template  # noqa: E402
from nas_agent.validate import validator_for  # noqa: E402

CANDIDATE = {"N_BLOCKS": 3, "N_COLUMNS": 2, "BASE_CHANNELS": 16, "MAX_CHANNELS": 64}
console = Console()


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"))
    p.add_argument("--out", default=str(REPO / "runs" / "bench-fractal-pretraining"))
    p.add_argument("--labels", type=int, default=2500, help="labelled real training images")
    p.add_argument("--classes", type=int, default=25, help="fractal classes (generator networks)")
    p.add_argument("--pretrain-epochs", type=int, default=2)
    p.add_argument("--finetune-epochs", type=int, default=4)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--method", default="fast", choices=("fast", "gram"), help="stylization of the stylized arm")
    p.add_argument("--gram-images", type=int, default=256, help="images for the gram throughput and KID")
    p.add_argument("--style-count", type=int, default=300)
    p.add_argument("--threads", type=int, default=1, help="torch threads (driver and children); 1 suits shared cores")
    p.add_argument("--device", default="cpu")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    cache = resolve_cifar10(args.data_dir)
    real = load_cache(cache)
    per_class = args.labels // args.classes          # as many fractal training images as labelled real ones
    test_views = max(1, per_class // 10)

    # 1. Render (or reuse) the raw fractals.
    settings = RenderSettings(classes=args.classes, per_class=per_class + test_views, seed=0)
    raw_dir = out / "fractals-raw"
    if (raw_dir / "meta.json").exists() and read_dataset(raw_dir).meta.get("settings") == settings.to_dict():
        raw = read_dataset(raw_dir)
        console.print(f"reusing {raw_dir} (rendered earlier)")
    else:
        with console.status(f"rendering {settings.classes} x {settings.per_class} neural fractals"):
            x, y, render_stats = render_dataset(settings, device, batch=128)
        raw = write_dataset(raw_dir, *split_views(x, y, test_views), meta={
            "kind": "neural-fractals", "classes": args.classes, "settings": settings.to_dict(),
            "render": render_stats.to_dict(), "test_per_class": test_views, "stylize": None, "parent": None})
    render_stats = raw.meta["render"]
    tensors = load_tensors(raw)

    # 2. Stylize toward real images (both methods measured; the arm uses --method).
    styles, described = load_images(args.data_dir, args.style_count, 32, seed=0)
    fast_settings = StylizeSettings(method="fast")
    gram_settings = StylizeSettings(method="gram", encoder="auto")
    stylized = {}
    timings = {}
    for method, s in (("fast", fast_settings), ("gram", gram_settings)):
        n = None if method == args.method else args.gram_images
        with console.status(f"stylizing ({method}) {n or 'all'} images"):
            train, st = stylize(tensors["train_x"][:n], styles, s, device, batch=128)
            if n is None:
                test, st2 = stylize(tensors["test_x"], styles, s, device, batch=128, offset=len(train))
                st.images, st.seconds = st.images + st2.images, st.seconds + st2.seconds
                write_dataset(out / f"fractals-{method}", train, tensors["train_y"], test, tensors["test_y"], meta={
                    **{k: v for k, v in raw.meta.items() if k not in ("hash", "train", "test")},
                    "kind": "neural-fractals (stylized)", "parent": raw.hash,
                    "stylize": {**s.__dict__, "encoder_used": st.encoder, "style_source": described}})
        stylized[method], timings[method] = train, st

    # 3. Domain gap on 1,000 held-out real test images.
    # Random picks: the cache is sorted by class, so a slice would be one class.
    held_out = real.test_x[torch.randperm(len(real.test_x), generator=torch.Generator().manual_seed(1))[:1000]]
    other_real = real.train_x[torch.randperm(len(real.train_x), generator=torch.Generator().manual_seed(2))[:1000]]
    k = min(1000, len(tensors["train_x"]))
    g = args.gram_images
    with console.status("measuring KID"):
        gap, encoder = domain_gap(held_out, {
            "real (1,000 training images)": other_real, "raw fractals": tensors["train_x"][:k],
            "fast-stylized": stylized["fast"][:k], f"raw fractals (first {g})": tensors["train_x"][:g],
            f"gram-stylized (first {g})": stylized["gram"][:g]}, device, encoder="auto")

    # 4. Train the arms.
    template = load_template("fractalnet.py")
    cand = out / "candidate.py"
    cand.write_text(template.render(CANDIDATE))
    base = load_config("quick").with_overrides({
        "catalog": str(out / "catalog.sqlite"), "device": args.device, "data.test_subset": 0,
        "train.batch_size": 64, "train.lr": 0.05, "limits.threads": args.threads, "limits.seconds": 3600.0,
        "pretrain.finetune_subset": args.labels, "pretrain.epochs": args.pretrain_epochs})
    arms = [("scratch", "scratch", args.pretrain_epochs + args.finetune_epochs),
            ("fractal", str(raw_dir), args.finetune_epochs),
            (f"stylized ({args.method})", str(out / f"fractals-{args.method}"), args.finetune_epochs)]
    results: dict[str, list] = {arm: [] for arm, _, _ in arms}
    with Catalog(base.catalog) as cat:
        name = register(cat, read_candidate(cand, validator_for(base, catalog=cat, smoke=False)), base,
                        origin="benchmark")
        for seed in range(args.seeds):
            for arm, source, ft_epochs in arms:
                cfg = base.with_overrides({"train.seed": seed, "pretrain.finetune_epochs": ft_epochs})
                t0 = time.perf_counter()
                with console.status(f"seed {seed}: {arm}"):
                    result = Pretrainer(cat, cfg, cache).run(name, Variant.of(source))
                if not result.ok:
                    raise SystemExit(f"{arm} seed {seed} failed: {result.reason}")
                results[arm].append(result)
                console.print(f"seed {seed} {arm}: final {result.final_accuracy:.4f} best {result.accuracy:.4f}"
                              + (f" (synthetic test acc {result.pretrain_accuracy:.3f})"
                                 if result.pretrain_accuracy is not None else "")
                              + (" [recorded earlier]" if result.skipped else f" in {time.perf_counter() - t0:.0f} s"))

    # 5. Tables.
    def ms(values):
        return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0:.4f}"

    table = Table(title=f"FractalNet {CANDIDATE} fine-tuned on {args.labels} CIFAR-10 labels, tested on 10,000 "
                        f"({args.seeds} seeds, {args.pretrain_epochs + args.finetune_epochs} epochs in total)")
    for column in ("arm", "epochs (synthetic + real)", "final test acc", "best test acc", "synthetic test acc",
                   "Δ final vs scratch"):
        table.add_column(column, justify="left" if column == "arm" else "right")
    scratch_mean = statistics.mean(r.final_accuracy for r in results["scratch"])
    for arm, source, ft_epochs in arms:
        rs = results[arm]
        pre_epochs = 0 if source == "scratch" else args.pretrain_epochs
        pre = [r.pretrain_accuracy for r in rs if r.pretrain_accuracy is not None]
        table.add_row(arm, f"{pre_epochs} + {ft_epochs}", ms([r.final_accuracy for r in rs]),
                      ms([r.accuracy for r in rs]), ms(pre) if pre else "-",
                      f"{statistics.mean(r.final_accuracy for r in rs) - scratch_mean:+.4f}")
    console.print(table)

    speed = Table(title=f"throughput on {args.device}, {args.threads} thread(s)")
    for column in ("stage", "images", "seconds", "images/s", "note"):
        speed.add_column(column, justify="left" if column in ("stage", "note") else "right")
    speed.add_row("render", str(render_stats["images"]), f"{render_stats['seconds']:.1f}",
                  f"{render_stats['images_per_second']:.1f}",
                  f"{render_stats['rejected_flat']} flat + {render_stats['rejected_noise']} noise-like + "
                  f"{render_stats.get('rejected_simple', 0)} too simple rejected, "
                  f"{render_stats['networks_tried']} networks tried")
    for method in ("fast", "gram"):
        st = timings[method]
        speed.add_row(f"stylize {method}", str(st.images), f"{st.seconds:.1f}", f"{st.images_per_second:.1f}",
                      st.encoder or "Fourier amplitude + colour covariance")
    console.print(speed)

    console.print(kid_table(gap, f"domain gap: KID against 1,000 real CIFAR-10 test images (encoder: {encoder})",
                            "image set"))
    console.print(f"style images: {described}; catalog: {base.catalog} (nas-agent fractals variants --catalog ...)",
                  highlight=False)


if __name__ == "__main__":
    main()
