"""Fractal generative models: exact likelihoods, training on real CIFAR-10 in the sandbox, sampling, ranking.

The likelihood tests import the template itself (repository code, not an untrusted candidate);
everything that trains or samples goes through the real CLI, validator, sandbox and catalog.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nas_agent.catalog import Catalog, EpochRecord, ModelRecord, model_name
from nas_agent.tasks.pixel_baseline import best_per_pixel_bpd
from nas_agent.space import load_template

pytestmark = pytest.mark.train

# Small enough to train an epoch of 512 images in well under a minute on two CPU cores.
TINY = {"LEVEL_SEQ": (64, 16, 3), "LEVEL_WIDTH": (32, 32, 16), "LEVEL_DEPTH": (1, 1, 1)}
TRAIN_IMAGES, TEST_IMAGES = 512, 200


def build(params: dict, in_shape=(1, 3, 32, 32), seed: int = 0):
    """The template rendered with `params`, imported, and its Net built (seeded)."""
    source = load_template("fractal_gen.py").render(params)
    spec = importlib.util.spec_from_loader("fractal_gen_under_test", loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, "fractal_gen.py", "exec"), module.__dict__)
    torch.manual_seed(seed)
    return module.Net(in_shape, (256,), {"dropout": 0.0}, "cpu").eval()


@pytest.fixture(scope="module")
def real_images(cifar_cache):
    from nas_agent.data import load_cache

    return load_cache(cifar_cache).subset(TRAIN_IMAGES, TEST_IMAGES, seed=0)


def bpd_of(net, images) -> float:
    with torch.no_grad():
        return net(images).double().sum().item() / (len(images) * images[0].numel() * math.log(2))


@pytest.mark.parametrize("orders", [("ar", "ar", "ar"), ("mar", "ar", "mar")])
def test_untrained_model_is_close_to_8_bits_per_dim(real_images, orders):
    net = build({**TINY, "LEVEL_ORDER": orders})
    bpd = bpd_of(net, real_images.test_x[:16])
    # Uniform over 256 values is exactly 8 bits; small random logits cost a little more, never less
    # by more than rounding (a normalised model cannot beat uniform on average before training).
    assert 7.99 < bpd < 8.05


# On 8 x 8 crops of real images (192 values): the same code paths as 32 x 32, 16 times fewer steps.
@pytest.mark.parametrize("params", [
    {**TINY, "LEVEL_SEQ": (4, 16, 3), "LEVEL_ORDER": ("ar", "ar", "ar")},
    {**TINY, "LEVEL_SEQ": (4, 16, 3), "LEVEL_ORDER": ("mar", "ar", "mar")},
    {"LEVEL_SEQ": (192,), "LEVEL_WIDTH": (16,), "LEVEL_DEPTH": (2,), "LEVEL_ORDER": ("ar",)},
], ids=["fractal-ar", "fractal-mar", "flat-ar"])
def test_nll_is_the_sum_of_per_channel_log_probabilities(real_images, params):
    """forward's parallel NLL equals the log-probabilities taken step by step along the sampler's path.

    A causal mask that leaked a later value, or a cache that forgot an earlier one, would make
    the two differ by far more than float rounding.
    """
    net = build(params, in_shape=(1, 3, 8, 8), seed=1)
    with torch.no_grad():  # perturb the weights: at init every conditional is nearly uniform
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    x = real_images.test_x[:2, :, 8:16, 8:16].contiguous()
    nll = net(x)
    stepwise = net.log_prob_stepwise(x)
    assert stepwise.shape == x.shape and (stepwise <= 0).all()
    assert (-stepwise.sum((1, 2, 3))).tolist() == pytest.approx(nll.tolist(), rel=1e-5)
    assert (-net.log_prob(x).sum((1, 2, 3))).tolist() == pytest.approx(nll.tolist(), rel=1e-5)
    assert (nll / (192 * math.log(2)) - 8).abs().max() > 0.05  # the perturbation made it non-uniform


@pytest.mark.parametrize("orders", [("ar", "ar"), ("mar", "ar"), ("ar", "mar")])
def test_probabilities_of_all_images_sum_to_one(orders):
    """On 1 x 2 x 1 x 1 images (two sub-pixels: 65,536 possible images) the likelihood is a distribution."""
    net = build({"LEVEL_SEQ": (2, 1), "LEVEL_WIDTH": (16, 16), "LEVEL_DEPTH": (1, 1), "LEVEL_ORDER": orders,
                 "MAR_STEPS": 2}, in_shape=(1, 2, 1, 1), seed=2)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.5)
        grid = torch.cartesian_prod(torch.arange(256), torch.arange(256)).to(torch.uint8).view(-1, 2, 1, 1)
        total = torch.logsumexp(-net(grid).double(), 0).exp().item()
    assert total == pytest.approx(1.0, abs=1e-4)


def test_bad_levels_fail_with_a_clear_error():
    with pytest.raises(ValueError, match="product of LEVEL_SEQ"):
        build({**TINY, "LEVEL_SEQ": (64, 16, 4)})
    with pytest.raises(ValueError, match="uint8"):
        build(TINY)(torch.zeros(1, 3, 32, 32))


def run_cli(*args, env, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "nas_agent.cli", *map(str, args)], env=env,
                            capture_output=True, text=True)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cli_env):
    """A tiny fractal generator trained one epoch on 512 real images by `nas-agent train --task img-generation`."""
    root = tmp_path_factory.mktemp("generative")
    candidate = root / "tiny_fractal_gen.py"
    candidate.write_text(load_template("fractal_gen.py").render(TINY))
    config = root / "tiny.toml"
    config.write_text(f"""task = "img-generation"
template = "templates/fractal_gen.py"
[train]
epochs = 1
batch_size = 32
optimizer = "adamw"
lr = 0.005
schedule = "constant"
grad_clip = 1.0
label_smoothing = 0.0
dropout = 0.0
crop_padding = 0
[data]
train_subset = {TRAIN_IMAGES}
test_subset = {TEST_IMAGES}
[limits]
seconds = 600
[reference]
template = ""
""")
    catalog = root / "catalog.sqlite"
    result = run_cli("train", candidate, "--task", "img-generation", "--config", config, "--catalog", catalog,
                     env=cli_env)
    return catalog, result


def test_training_records_bits_per_dim_that_beat_a_per_pixel_baseline(trained, real_images):
    catalog, result = trained
    with Catalog(catalog) as cat:
        (model,) = cat.models()
        epochs = cat.epochs(model["name"])
        board = cat.leaderboard(task="img-generation")
    assert model["name"].startswith("FractalGen-") and model["status"] == "done"
    assert model["n_params"] and len(epochs) == 1
    (epoch,) = epochs
    assert (epoch["metric"], epoch["task"], epoch["transform"]) == ("bpd", "img-generation", "flip_uint8")
    bpd = epoch["accuracy"]
    assert epoch["test_loss"] == pytest.approx(bpd * math.log(2))  # nats per value
    assert board[0]["name"] == model["name"] and board[0]["metric"] == "bpd"
    assert "best bpd" in result.stdout
    # The same 512 training and 200 test images the child trained and tested on; the baseline gets
    # the smoothing that suits the test images best.
    baseline, alpha = best_per_pixel_bpd(real_images.train_x, real_images.test_x)
    assert 7.5 < baseline < 8.2
    assert bpd < baseline - 0.2, f"trained model {bpd:.3f} bpd vs per-pixel baseline {baseline:.3f} (alpha {alpha})"


def test_sampling_writes_valid_images_and_a_grid(trained, cli_env, tmp_path):
    """`nas-agent sample` draws in the sandbox; the driver checks the child's bytes and writes the grid."""
    import numpy as np
    from PIL import Image

    catalog, _ = trained
    with Catalog(catalog) as cat:
        (model,) = cat.models()
    out = tmp_path / "grid.png"
    result = run_cli("sample", model["name"].rsplit("-", 1)[-1], "--n", 4, "--out", out, "--catalog", catalog,
                     env=cli_env)
    assert "wrote" in result.stdout and "s per image" in result.stdout
    with Image.open(out) as grid:
        assert grid.size == (2 * 34 + 2, 2 * 34 + 2) and grid.mode == "RGB"  # 2 x 2 images, 2 px apart
        pixels = np.asarray(grid)
    tiles = [pixels[2 + 34 * r:34 + 34 * r, 2 + 34 * c:34 + 34 * c] for r in range(2) for c in range(2)]
    assert len({tile.tobytes() for tile in tiles}) == 4 and all(tile.std() > 10 for tile in tiles)
    raw = np.fromfile(catalog.parent / "sandbox" / f"sample-{model['code_hash'][:12]}" / "samples.u8", np.uint8)
    assert raw.size == 4 * 3 * 32 * 32 and (raw.reshape(4, 3, 32, 32)[0].transpose(1, 2, 0) == tiles[0]).all()


def test_sample_and_train_errors_are_one_line(trained, cli_env, tmp_path):
    catalog, _ = trained
    missing = run_cli("sample", "no-such-model", "--catalog", catalog, env=cli_env, check=False)
    assert missing.returncode == 2 and "no candidate named" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    wrong_task = run_cli("train", Path("templates/fractal_gen.py").resolve(), "--task", "img-classification",
                         "--catalog", tmp_path / "c.sqlite", "--no-smoke", env=cli_env, check=False)
    assert wrong_task.returncode == 1 and "declares TASK 'img-generation'" in wrong_task.stdout + wrong_task.stderr


def test_smoke_run_rejects_a_generator_whose_probabilities_do_not_sum_to_one(tmp_path):
    from nas_agent.validate.pipeline import Validator
    from nas_agent.validate.smoke import SmokeLimits
    from nas_agent.space.template import load_templates

    template = load_template("fractal_gen.py")
    honest = template.render(TINY)
    # A "better" likelihood by fiat: the NLL halved. Outside the editable regions, so first catch it
    # without templates (a hand-written file), where only the smoke run can tell.
    cheat = honest.replace("return -self._log_prob(0, self.start.expand(values.shape[0], -1), values).sum(1)",
                           "return -self._log_prob(0, self.start.expand(values.shape[0], -1), values).sum(1) - 1e5")
    assert cheat != honest
    validator = Validator(smoke=SmokeLimits(seconds=120), workdir=tmp_path)
    ok = validator.validate(honest, "honest")
    assert ok.ok, ok.verdict
    assert ok.n_params == sum(p.numel() for p in build(TINY).parameters())
    bad = validator.validate(cheat, "cheat")
    assert (bad.verdict.stage, "negative NLL" in bad.verdict.reason) == ("smoke", True)
    with_templates = Validator(templates=load_templates()).validate(cheat, "cheat")
    assert with_templates.verdict.stage == "contract"


def test_leaderboard_ranks_bits_per_dim_lowest_first_and_accuracy_highest_first(tmp_path):
    with Catalog(tmp_path / "c.sqlite") as cat:
        cat.register_transform("t", "code")
        names = {}
        for task, metric, code, scores in [("img-generation", "bpd", "g1", [4.0, 3.6]),
                                           ("img-generation", "bpd", "g2", [3.8]),
                                           ("img-classification", "acc", "c1", [0.5, 0.7]),
                                           ("img-classification", "acc", "c2", [0.6])]:
            cat.register_metric(metric, "code")
            digest = code.encode().hex().ljust(16, "0")
            name = model_name("X", code)
            cat.add_model(ModelRecord(name=name, code=code, family="X", task=task, dataset="cifar-10",
                                      metric=metric, code_hash=digest, template_params={}, parent=None,
                                      origin="manual"))
            for epoch, score in enumerate(scores, start=1):
                cat.record_epoch(EpochRecord(nn=name, epoch=epoch, accuracy=score, duration_s=1.0, prm={},
                                             transform="t", metric=metric, task=task, dataset="cifar-10"))
            names[code] = name
        generation = cat.leaderboard(task="img-generation")
        assert [(r["name"], r["accuracy"], r["epoch"]) for r in generation] == [
            (names["g1"], 3.6, 2), (names["g2"], 3.8, 1)]
        assert [r["name"] for r in cat.leaderboard()] == [names["c1"], names["c2"], names["g1"], names["g2"]]
        assert (cat.best_accuracy(names["g1"]), cat.best_accuracy(names["c1"])) == (3.6, 0.7)


def test_mutations_stay_valid_generators_and_touch_every_kind_of_parameter():
    from nas_agent.search.mutate import MutateStrategy
    from nas_agent.search.strategy import RoundContext, template_parent
    from nas_agent.space.generative import GenerativeSpace
    from nas_agent.space.template import load_templates, read_params
    from nas_agent.validate.pipeline import Validator

    template = load_template("fractal_gen.py")
    context = RoundContext(1, "run", None, None, template, [template_parent(template)], random.Random(0))
    proposals = MutateStrategy(GenerativeSpace()).propose(context, 12)
    assert len(proposals) == 12 and len({p.source for p in proposals}) == 12
    validator = Validator(templates=load_templates())
    kinds = set()
    for proposal in proposals:
        assert validator.validate(proposal.source, proposal.change).ok, proposal.change
        params = read_params(proposal.source)
        assert math.prod(params["LEVEL_SEQ"]) == 3072
        assert len({len(params[k]) for k in ("LEVEL_SEQ", "LEVEL_WIDTH", "LEVEL_DEPTH", "LEVEL_ORDER")}) == 1
        kinds.add(proposal.change.split(" ")[0].split("[")[0])
    assert kinds == {"LEVEL_SEQ", "LEVEL_WIDTH", "LEVEL_DEPTH", "LEVEL_ORDER"}


def test_sampled_images_are_read_only_from_a_regular_file_of_the_right_size(tmp_path):
    """Regression: the driver read samples.u8 with np.fromfile, so a FIFO hung it and a link was followed."""
    import os

    from nas_agent.train.sample import SampleError, read_samples

    shape = (2, 3, 4, 4)
    good = tmp_path / "good.u8"
    good.write_bytes(bytes(range(96)))
    assert read_samples(good, shape).shape == shape and read_samples(good, shape)[1, 2, 3, 3] == 95
    secret = tmp_path / "secret"
    secret.write_bytes(b"s" * 96)
    (tmp_path / "link.u8").symlink_to(secret)
    os.mkfifo(tmp_path / "fifo.u8")
    (tmp_path / "short.u8").write_bytes(b"x" * 95)
    for name, words in (("link.u8", "cannot open"), ("fifo.u8", "not a regular file"), ("short.u8", "95 bytes"),
                        ("missing.u8", "cannot open")):
        with pytest.raises(SampleError, match=words):
            read_samples(tmp_path / name, shape)
