"""The scorer of generators: bits/dim from per-value log-probabilities, checked against probe logits.

The honest side uses the fractal template itself (repository code) on real CIFAR-10 test
images; the dishonest side is small models written here that break one rule each: a value
that sees itself, two values that see each other, a file of log-probabilities its own
logits do not back, a log-probability above zero.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nas_agent.config import TrainConfig
from nas_agent.train.generative import probe_logits, value_log_probs
from nas_agent.train.score import Probes, ScoreError, check_probes, score_log_probs
from tests.test_generative import TINY, build

CFG = TrainConfig(eval_batch_size=8)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def test_images(cifar_cache):
    from nas_agent.data import load_cache

    return load_cache(cifar_cache).subset(64, 12, seed=0).test_x


def outputs(model, images: torch.Tensor, seed: int = 0):
    """What an honest worker leaves for the scorer: (probes, log-probabilities, probe logits)."""
    probes = Probes.pick(images.numpy(), seed=seed, bases=2, per_base=4)
    log_probs = value_log_probs(model, images, CFG, CPU).numpy()
    logits = probe_logits(model, torch.stack(probes.images(images)), probes.flat_positions, CFG, CPU).numpy()
    return probes, log_probs, logits


@pytest.mark.parametrize("orders", [("ar", "ar", "ar"), ("mar", "ar", "mar")])
def test_an_honest_generator_passes_and_its_score_is_its_likelihood(test_images, orders):
    model = build({**TINY, "LEVEL_ORDER": orders})
    for seed in range(3):  # different probes, different positions: none may trip an honest model
        probes, log_probs, logits = outputs(model, test_images, seed)
        check_probes(probes, logits, log_probs, test_images.numpy())
    score = score_log_probs(log_probs)
    with torch.no_grad():
        nll = model(test_images).double().sum().item()
    assert score.accuracy == pytest.approx(nll / (log_probs.size * math.log(2)), rel=1e-4)
    assert 7.9 < score.accuracy < 8.1  # untrained: close to uniform over 256 values


class SeesItself(torch.nn.Module):
    """Puts almost all mass on each value's own true value: bits/dim near 0, and not a factorisation."""

    def value_logits(self, x):
        return 20.0 * F.one_hot(x.long(), 256).float()


class SeesEachOther(torch.nn.Module):
    """Each value's distribution is set by the sum of all the other values: never itself, yet circular."""

    def value_logits(self, x):
        flat = x.long().reshape(len(x), -1)
        others = (flat.sum(1, keepdim=True) - flat) % 256
        return 20.0 * F.one_hot(others, 256).float().reshape(*x.shape, 256)


class Uniform(torch.nn.Module):
    def value_logits(self, x):
        return torch.zeros(*x.shape, 256)


def test_a_value_that_sees_itself_is_caught(test_images):
    probes, log_probs, logits = outputs(SeesItself(), test_images)
    assert score_log_probs(log_probs).accuracy < 1e-3  # what it would have been recorded at
    with pytest.raises(ScoreError, match="sees itself"):
        check_probes(probes, logits, log_probs, test_images.numpy())


def test_two_values_that_see_each_other_are_caught(test_images):
    probes, log_probs, logits = outputs(SeesEachOther(), test_images)
    with pytest.raises(ScoreError, match="each depend on the other"):
        check_probes(probes, logits, log_probs, test_images.numpy())


def test_a_log_probability_file_its_logits_do_not_back_is_caught(test_images):
    probes, log_probs, logits = outputs(Uniform(), test_images)
    check_probes(probes, logits, log_probs, test_images.numpy())  # honest: uniform, 8 bits
    forged = np.full_like(log_probs, -1e-4)  # "almost certain of every value": 0.0001 bits
    assert score_log_probs(forged).accuracy < 1e-3
    with pytest.raises(ScoreError, match="its logits give"):
        check_probes(probes, logits, forged, test_images.numpy())


def test_a_log_probability_above_zero_is_no_distribution(test_images):
    with pytest.raises(ScoreError, match="not a distribution"):
        score_log_probs(np.full((2, 3072), 0.5, dtype=np.float32))


def test_probe_logits_of_the_wrong_shape_are_refused(test_images):
    probes, log_probs, logits = outputs(Uniform(), test_images)
    with pytest.raises(ScoreError, match="shape"):
        check_probes(probes, logits[:, :-1], log_probs, test_images.numpy())


def test_probes_change_exactly_one_value_each(test_images):
    images = test_images.numpy()
    probes = Probes.pick(images, seed=7, bases=3, per_base=5)
    rows = probes.images(images)
    assert len(rows) == probes.n_images == 3 * 6
    assert Probes.from_dict(probes.to_dict()) == probes
    for b, (base, positions, values) in enumerate(zip(probes.bases, probes.positions, probes.values)):
        group = rows[b * 6:(b + 1) * 6]
        assert np.array_equal(group[0], images[base])
        for variant, p, v in zip(group[1:], positions, values):
            diff = np.flatnonzero(variant.reshape(-1) != images[base].reshape(-1))
            assert diff.tolist() == [p] and variant.reshape(-1)[p] == v
