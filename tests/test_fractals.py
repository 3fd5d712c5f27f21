"""Neural-fractal pre-training: rendering, the degeneracy filter, stylization, KID, and pretrain -> fine-tune."""

from __future__ import annotations

import sqlite3

import pytest
import torch
from typer.testing import CliRunner

from nas_agent.fractals.dataset import load_tensors, read_dataset, split_views, write_dataset
from nas_agent.fractals.kid import domain_gap
from nas_agent.fractals.render import (_PROBES, Networks, RenderSettings, boundary_complexity, degeneracy,
                                      draw_network, draw_view, find_anchors, render_dataset, render_views,
                                      too_simple)
from nas_agent.fractals.stylize import StylizeSettings, stylize

pytestmark = pytest.mark.train

TINY = dict(classes=3, per_class=6, size=16, steps=16)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Rendering is many small element-wise ops: on shared CPU cores one thread is several times faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_render_is_deterministic_per_seed_and_keeps_only_structured_images():
    settings = RenderSettings(**TINY, seed=3)
    x1, y1, stats = render_dataset(settings, "cpu", batch=32)
    x2, y2, _ = render_dataset(settings, "cpu", batch=7)         # another batching: same images
    x3, _, _ = render_dataset(RenderSettings(**TINY, seed=4), "cpu", batch=32)
    assert x1.dtype == torch.uint8 and x1.shape == (18, 3, 16, 16)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)
    assert y1.tolist() == [k for k in range(3) for _ in range(6)]
    # At 32 pixels the filter runs in full and throws renders away (probe views of rejected networks aside).
    _, _, stats = render_dataset(RenderSettings(**{**TINY, "size": 32}, seed=3), "cpu", batch=32)
    assert stats.rejected_flat + stats.rejected_noise + stats.rejected_simple > 0
    assert stats.rendered == (stats.images + stats.rejected_flat + stats.rejected_noise + stats.rejected_simple
                              + _PROBES * stats.networks_probed)
    assert stats.networks_tried >= stats.networks_probed >= 3


def test_degeneracy_criterion_flags_flat_and_noise_but_not_shapes():
    settings = RenderSettings()
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    disk = ((xx ** 2 + yy ** 2) < 0.4).float()
    stripes = (torch.sin(xx * 6) > 0).float()
    images = torch.stack([torch.full((32, 32), 0.5), torch.zeros(32, 32), disk * 0.03,
                          torch.randint(0, 2, (32, 32), generator=g).float(),
                          (torch.rand(32, 32, generator=g) < 0.5).float() * 0.5 + disk * 0.5,
                          disk, stripes])
    flat, noise = degeneracy(images, settings)
    assert flat.tolist() == [True, True, True, False, False, False, False]
    assert noise.tolist() == [False, False, False, True, True, False, False]


def _coverage_of(mask: torch.Tensor) -> torch.Tensor:
    """A 64 x 64 set drawn by hand -> its 32 x 32 coverage with 2 x 2 samples, as the renderer makes it."""
    return torch.nn.functional.avg_pool2d(mask.float()[None, None], 2)[0, 0]


def test_too_simple_rejects_half_planes_and_disks_but_not_rendered_structure():
    settings = RenderSettings()
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    simple = torch.stack([_coverage_of(m) for m in [
        yy < 0.1,                                        # a horizontal half-plane
        xx + 0.6 * yy < 0.2,                             # a slanted one
        xx ** 2 + yy ** 2 < 0.49,                        # a disk
        (xx - 0.8) ** 2 + (yy - 0.5) ** 2 < 0.8,         # a disk cut by the frame
        yy < 0.3 * torch.sin(3 * xx),                    # a smooth curve
    ]])
    _, dimension = boundary_complexity(simple)
    assert dimension.max() < 1.15 and too_simple(simple, settings).all()
    speckle = (torch.rand(1, 32, 32, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    assert boundary_complexity(speckle)[1].item() > 1.8        # the other end: caught by the noise test

    # A seeded batch of real renders: the filter throws some away as too simple, and what it keeps
    # (not flat, not noise, not simple) has a many-scale boundary.
    settings = RenderSettings(seed=1)
    nets = [draw_network(settings, k) for k in range(4)]
    anchors = find_anchors(Networks.stack(nets), settings, torch.device("cpu"))
    pairs = [(k, j) for k in range(4) for j in range(12)]
    _, coverage = render_views(Networks.stack([nets[k] for k, _ in pairs]),
                               [draw_view(settings, nets[k], k, j, anchors[k]) for k, j in pairs], settings,
                               torch.device("cpu"))
    flat, noise = degeneracy(coverage, settings)
    simple = too_simple(coverage, settings)
    kept = ~flat & ~noise & ~simple
    assert (simple & ~flat & ~noise).sum() >= 5 and kept.sum() >= 10
    length, dimension = boundary_complexity(coverage[kept])
    # ... and a boundary longer than any straight edge across the image (1-1.2 image sides).
    assert (dimension >= settings.min_dimension).all() and length.median() > 2


@pytest.fixture(scope="module")
def real_images(cifar_cache):
    from nas_agent.data import load_cache

    data = load_cache(cifar_cache)
    return data.train_x[:300], data.test_x[:300]     # style set, and held-out images to measure against


@pytest.fixture(scope="module")
def raw_fractals():
    x, y, _ = render_dataset(RenderSettings(classes=4, per_class=16, seed=0), "cpu", batch=64)
    return x, y


def test_fast_stylization_moves_colour_statistics_and_kid_toward_real(real_images, raw_fractals):
    style, held_out = real_images
    raw, _ = raw_fractals
    fast, stats = stylize(raw, style, StylizeSettings(method="fast"), torch.device("cpu"))
    assert fast.shape == raw.shape and fast.dtype == torch.uint8 and stats.images == len(raw)

    def colour_stats(x):
        x = x.float() / 255
        return torch.cat([x.mean((0, 2, 3)), x.std((2, 3)).mean(0)])

    target = colour_stats(held_out)
    assert (colour_stats(fast) - target).abs().sum() < 0.5 * (colour_stats(raw) - target).abs().sum()
    gap, encoder = domain_gap(held_out, {"raw": raw, "fast": fast}, encoder="random")
    assert "random" in encoder
    assert gap["fast"].mean < 0.5 * gap["raw"].mean


def test_gram_stylization_lowers_kid_and_says_which_encoder(real_images, raw_fractals):
    style, held_out = real_images
    raw = raw_fractals[0][:48]
    out, stats = stylize(raw, style, StylizeSettings(method="gram", steps=15, encoder="random"),
                         torch.device("cpu"), batch=48)
    assert stats.encoder.startswith("random multi-scale conv encoder")
    assert not torch.equal(out, raw)
    # KID is measured on an encoder with another seed than the one the optimisation matched.
    gap, _ = domain_gap(held_out, {"raw": raw, "gram": out}, encoder="random")
    assert gap["gram"].mean < 0.5 * gap["raw"].mean


def test_datasets_round_trip_and_bad_input_is_one_line(tmp_path, raw_fractals):
    from nas_agent.cli import app

    x, y = raw_fractals
    ds = write_dataset(tmp_path / "raw", *split_views(x, y, 2), meta={"kind": "neural-fractals", "classes": 4})
    again = read_dataset(tmp_path / "raw")
    assert again.hash == ds.hash and again.classes == 4 and again.variant == "fractal"
    tensors = load_tensors(again)
    assert len(tensors["train_x"]) == 56 and len(tensors["test_x"]) == 8
    assert (tmp_path / "raw" / "preview.png").stat().st_size > 1000
    runner = CliRunner()
    for args, says in [(["fractals", "render", "--out", str(tmp_path / "x"), "--per-class", "4",
                         "--test-per-class", "4"], "leaves no training views"),
                       (["fractals", "stylize", str(tmp_path), "--style-dir", str(tmp_path), "--out",
                         str(tmp_path / "y")], "is not a fractal dataset"),
                       (["fractals", "stylize", str(tmp_path / "raw"), "--style-dir", str(tmp_path / "none"),
                         "--out", str(tmp_path / "y"), "--method", "paint"], "--method must be gram or fast"),
                       (["pretrain", "anything", "--on", str(tmp_path / "missing")], "is not a fractal dataset")]:
        result = runner.invoke(app, args, env={"COLUMNS": "300"})
        assert result.exit_code == 2, result.output
        assert says in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_pretrain_then_finetune_lands_in_the_catalog_with_its_variant(tmp_path, cifar_cache, small_candidate,
                                                                      raw_fractals, real_images):
    from nas_agent.catalog import Catalog
    from nas_agent.config import load_config
    from nas_agent.search.pretrain import Pretrainer, Variant, variant_board
    from nas_agent.search.trainer import read_candidate, register
    from nas_agent.validate import validator_for

    x, y = raw_fractals
    raw = write_dataset(tmp_path / "raw", *split_views(x, y, 2), meta={"kind": "neural-fractals", "classes": 4})
    tensors = load_tensors(raw)
    fast_train, _ = stylize(tensors["train_x"], real_images[0], StylizeSettings(method="fast"), torch.device("cpu"))
    fast_test, _ = stylize(tensors["test_x"], real_images[0], StylizeSettings(method="fast"), torch.device("cpu"))
    write_dataset(tmp_path / "fast", fast_train, tensors["train_y"], fast_test, tensors["test_y"],
                  meta={"kind": "neural-fractals (stylized)", "classes": 4, "parent": raw.hash,
                        "stylize": {"method": "fast"}})
    cfg = load_config("quick").with_overrides({
        "catalog": str(tmp_path / "catalog.sqlite"), "device": "cpu", "data.test_subset": 200,
        "pretrain.epochs": 1, "pretrain.finetune_subset": 200, "pretrain.finetune_epochs": 2,
        "train.batch_size": 64, "limits.threads": 1})
    events = []
    with Catalog(cfg.catalog) as cat:
        name = register(cat, read_candidate(small_candidate, validator_for(cfg, catalog=cat, smoke=False)),
                        cfg, origin="manual")
        trainer = Pretrainer(cat, cfg, cifar_cache, on_event=lambda phase, e: events.append((phase, e)))
        stylized = trainer.run(name, Variant.of(tmp_path / "fast"))
        scratch = trainer.run(name, Variant.of("scratch"))
        assert stylized.ok and scratch.ok, (stylized.reason, scratch.reason)
        assert trainer.run(name, Variant.of(tmp_path / "fast")).skipped      # recorded: not trained again
        rows = {r["variant"]: r for r in cat.pretrain_variants(nn=name)}
        board = variant_board(cat, [name])
    # The fine-tuning child started from the pre-trained tensors (all but the 4-class head).
    init = [e for phase, e in events if phase == "finetune" and e.get("event") == "init"]
    assert len(init) == 1 and init[0]["loaded"] > 10 and init[0]["skipped"] == ["head.bias", "head.weight"]
    assert any(phase == "pretrain" and e.get("event") == "epoch" for phase, e in events)

    fast = rows["stylized-fractal-fast"]
    assert fast["status"] == "done" and fast["stylize"] == "fast" and fast["pretrain_epochs"] == 1
    assert fast["dataset_hash"] == read_dataset(tmp_path / "fast").hash
    assert fast["dataset_params"]["parent"] == raw.hash and fast["dataset_params"]["classes"] == 4
    assert fast["finetune_subset"] == 200 and fast["finetune_epochs"] == 2
    assert 0 <= fast["pretrain_accuracy"] <= 1
    assert rows["scratch"]["pretrain_epochs"] == 0 and rows["scratch"]["dataset_hash"] is None
    assert [r["variant"] for r in board] == ["scratch", "stylized-fractal-fast"]

    with sqlite3.connect(cfg.catalog) as db:
        stat = db.execute("SELECT prm, epoch, accuracy FROM stat WHERE nn = ? ORDER BY prm, epoch", (name,)).fetchall()
        pretrain_prm = dict(db.execute("SELECT uid, value FROM prm WHERE name = 'pretrain'").fetchall())
    assert {p for p, _, _ in stat} == {fast["prm"], rows["scratch"]["prm"]}
    assert pretrain_prm == {fast["prm"]: "stylized-fractal-fast", rows["scratch"]["prm"]: "scratch"}
    assert fast["accuracy"] == max(a for p, _, a in stat if p == fast["prm"])
    assert len(stat) == 4


def test_search_switch_validates_its_datasets(tmp_path, raw_fractals):
    from nas_agent.config import ConfigError, load_config
    from nas_agent.fractals.dataset import FractalDataError
    from nas_agent.search.pretrain import check_datasets

    x, y = raw_fractals
    write_dataset(tmp_path / "raw", *split_views(x, y, 2), meta={"kind": "neural-fractals", "classes": 4})
    cfg = load_config("quick")
    assert check_datasets(cfg) == []                                     # off by default
    on = cfg.with_overrides({"pretrain.datasets": [str(tmp_path / "raw")]})
    assert [v.label for v in check_datasets(on)] == ["scratch", "fractal"]
    assert [v.label for v in check_datasets(on.with_overrides({"pretrain.scratch": False}))] == ["fractal"]
    with pytest.raises(FractalDataError, match="is not a fractal dataset"):
        check_datasets(cfg.with_overrides({"pretrain.datasets": [str(tmp_path)]}))
    with pytest.raises(ConfigError, match="pretrain.epochs"):
        cfg.with_overrides({"pretrain.epochs": 0})
    # Only candidates with a result get variants: a failed training (no accuracy) is passed over.
    from nas_agent.catalog import Catalog
    from nas_agent.search.pretrain import pretrain_variants_for

    with Catalog(tmp_path / "catalog.sqlite") as cat:
        assert pretrain_variants_for(cat, on, tmp_path / "unused.pt", ["never-trained"]) == []
