"""The training loop's pieces, in process, with trusted template code."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from nas_agent.config import TrainConfig
from nas_agent.data import load_cache
from nas_agent.train.loop import (NonFiniteLoss, autocast_for, cpu_has_native_bf16, load_checkpoint, make_scheduler,
                                   recalibrate_batchnorm, train_model)

from conftest import CANDIDATES, SMALL_FRACTAL

pytestmark = pytest.mark.train


def _module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_block_checkpointing_gives_the_same_gradients(tmp_path):
    from nas_agent.space import load_template

    path = tmp_path / "drop_path.py"  # drop-path on: its random draws must repeat in the recompute
    path.write_text(load_template("fractalnet.py").render({**SMALL_FRACTAL, "LOCAL_DROP_PATH": 0.15,
                                                           "GLOBAL_DROP_PATH": 0.5}))
    module = _module(path, "small_fractal")
    grads = []
    for checkpoint_blocks in (False, True):
        torch.manual_seed(0)
        net = module.Net((1, 3, 32, 32), (10,), {"dropout": 0.1, "checkpoint_blocks": checkpoint_blocks}, "cpu")
        torch.manual_seed(1)  # the same drop-path and dropout draws in both runs
        x = torch.randn(8, 3, 32, 32)
        net.train()(x).square().mean().backward()
        # Columns that global drop-path skipped get no gradient: the same ones in both runs.
        grads.append([None if p.grad is None else p.grad.clone() for p in net.parameters()])
    assert [g is None for g in grads[0]] == [g is None for g in grads[1]]
    assert any(g is not None for g in grads[0])
    for a, b in zip(*grads):
        if a is not None:
            torch.testing.assert_close(a, b)


def test_resume_continues_after_the_epoch_the_driver_names_and_replays_nothing(small_candidate, cifar_cache,
                                                                               tmp_path):
    module = _module(small_candidate, "small_fractal_resume")
    data = load_cache(cifar_cache).subset(600, 200, seed=0)
    cfg = TrainConfig(epochs=2, batch_size=100, lr=0.05)
    ckpt = tmp_path / "ckpt.pt"

    def net():
        torch.manual_seed(0)
        return module.Net((1, 3, 32, 32), (10,), {"dropout": 0.0}, "cpu")

    full = train_model(net(), data, cfg, torch.device("cpu"))
    one = []

    def killed_after_epoch_one(metrics):  # the checkpoint is written before the epoch is reported
        one.append(metrics)
        raise _Killed

    with pytest.raises(_Killed):
        train_model(net(), data, cfg, torch.device("cpu"), checkpoint=ckpt, fingerprint="a",
                    on_epoch=killed_after_epoch_one)
    saved = load_checkpoint(ckpt, "a")
    assert saved["epoch"] == 1 and "history" not in saved and load_checkpoint(ckpt, "other") is None
    # The catalog holds epoch 1: training continues with epoch 2 only, and matches an unbroken run.
    seen = []
    rest = train_model(net(), data, cfg, torch.device("cpu"), checkpoint=ckpt, fingerprint="a", resume_epoch=1,
                       on_epoch=lambda m: seen.append(m.epoch))
    assert seen == [2] and [m.epoch for m in rest] == [2]
    assert [one[0].test_accuracy, rest[0].test_accuracy] == [m.test_accuracy for m in full]  # deterministic
    # A checkpoint of another epoch than the catalog's is not trusted: training starts over.
    again = train_model(net(), data, cfg, torch.device("cpu"), checkpoint=ckpt, fingerprint="a", resume_epoch=0)
    assert [m.test_accuracy for m in again] == [m.test_accuracy for m in full]


def test_logits_are_handed_out_and_never_scored_in_the_loop(small_candidate, cifar_cache):
    module = _module(small_candidate, "small_fractal_logits")
    data = load_cache(cifar_cache).subset(300, 100, seed=0)
    handed = {}
    torch.manual_seed(0)
    metrics = train_model(module.Net((1, 3, 32, 32), (10,), {"dropout": 0.0}, "cpu"),
                          _without_labels(data),
                          TrainConfig(epochs=1, batch_size=100), torch.device("cpu"),
                          on_test_logits=lambda epoch, logits: handed.setdefault(epoch, logits))
    assert list(handed) == [1] and tuple(handed[1].shape) == (100, 10) and handed[1].dtype == torch.float32
    assert metrics[0].test_accuracy is None and metrics[0].test_loss is None


def _norm_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Dropout(0.5), torch.nn.BatchNorm2d(4, momentum=0.3))


def test_batchnorm_recalibration_is_the_plain_average_over_training_images_with_dropout_as_tested():
    from nas_agent.data.augment import normalize

    net = _norm_net()
    bn = net[2]
    bn.running_mean.fill_(7.0)
    bn.running_var.fill_(9.0)
    x = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8)
    cfg = TrainConfig(bn_recalibration=40, batch_size=10, amp="off")
    assert recalibrate_batchnorm(net, x, cfg, torch.device("cpu")) == 40
    with torch.no_grad():  # dropout in eval mode: the features the test will see, first 40 images only
        features = net[0](normalize(x[:40]))
    batch_means = features.view(4, 10, 4, 6, 6).mean(dim=(1, 3, 4))    # 4 batches x 4 channels
    torch.testing.assert_close(bn.running_mean, batch_means.mean(0))  # cumulative, not a momentum average
    assert bn.momentum == 0.3 and not net.training and not any(m.training for m in net.modules())
    assert bn.num_batches_tracked.item() == 4


def test_batchnorm_recalibration_off_leaves_the_statistics_alone():
    net = _norm_net()
    net[2].running_mean.fill_(7.0)
    x = torch.randint(0, 256, (20, 3, 8, 8), dtype=torch.uint8)
    assert recalibrate_batchnorm(net, x, TrainConfig(bn_recalibration=0), torch.device("cpu")) == 0
    assert recalibrate_batchnorm(torch.nn.Conv2d(3, 4, 3), x, TrainConfig(), torch.device("cpu")) == 0
    assert torch.all(net[2].running_mean == 7.0)


def test_every_evaluation_follows_a_recalibration(small_candidate, cifar_cache):
    """The scored statistics are those of the final weights, not the momentum average of training."""
    module = _module(small_candidate, "small_fractal_recal")
    data = load_cache(cifar_cache).subset(400, 100, seed=0)
    cfg = TrainConfig(epochs=1, batch_size=100, lr=0.05, bn_recalibration=200)
    torch.manual_seed(0)
    net = module.Net((1, 3, 32, 32), (10,), {"dropout": 0.0}, "cpu")
    train_model(net, _without_labels(data), cfg, torch.device("cpu"), on_test_logits=lambda epoch, logits: None)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    # Training took 4 steps; the statistics tested are the average of 2 batches of 100 after a reset.
    assert norms and all(m.num_batches_tracked.item() == 2 for m in norms)


class _Killed(Exception):
    pass


def _without_labels(data):
    from nas_agent.train.worker import ChildData

    return ChildData(data.train_x, data.train_y, data.test_x)


def test_nan_loss_raises(cifar_cache):
    module = _module(CANDIDATES / "nan_loss.py", "nan_loss")
    data = load_cache(cifar_cache).subset(100, 50, seed=0)
    with pytest.raises(NonFiniteLoss, match="nan"):
        train_model(module.Net((1, 3, 32, 32), (10,), {}, "cpu"), data, TrainConfig(epochs=1, batch_size=50),
                    torch.device("cpu"))


def test_cpu_autocast_follows_the_hardware_and_the_amp_switch():
    """amp=auto computes convs in bf16 on a CPU with native bf16 (and only there); amp=off stays fp32."""
    conv = torch.nn.Conv2d(3, 4, 3)
    x = torch.randn(2, 3, 8, 8)
    cpu = torch.device("cpu")
    with autocast_for(cpu, TrainConfig(amp="auto")):
        auto = conv(x).dtype
    with autocast_for(cpu, TrainConfig(amp="off")):
        off = conv(x).dtype
    assert auto == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)
    assert off == torch.float32


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "constant"])
def test_every_schedule_runs_any_number_of_steps(schedule):
    """Regression: 500 images in batches of 100 made a one-step warm-up, and OneCycleLR divided by zero."""
    for total in range(1, 13):
        weight = torch.nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.SGD([weight], lr=0.1)
        scheduler = make_scheduler(optimizer, TrainConfig(schedule=schedule, lr=0.1, warmup_fraction=0.2), total)
        rates = [optimizer.param_groups[0]["lr"]]
        for _ in range(total):
            optimizer.step()
            scheduler.step()
            rates.append(optimizer.param_groups[0]["lr"])
        assert all(0 <= r <= 0.1 + 1e-12 for r in rates[:-1]), (total, rates)
        if schedule == "onecycle" and total >= 4:
            # Warms up from lr / 10 towards lr (the peak falls between steps when the phase is fractional).
            assert rates[0] == pytest.approx(0.01) and max(rates) > 0.08, (total, rates)
