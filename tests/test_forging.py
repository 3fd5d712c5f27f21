"""A candidate never scores itself: hostile files that try to forge their score, the channel or a rival's.

Every file in tests/hostile/forge/ is trained by a real `nas-agent sweep` with the static
policy switched off and no smoke run, beside an honest rival queued in the same sweep. The
scores the catalog records must be the ones the driver computed from the candidates' test
logits: no forged accuracy, the rival's accuracy the same as when it trains alone, the driver
alive, every catalog readable, candidate text quoted as untrusted.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from nas_agent.catalog import Catalog
from nas_agent.validate import SmokeLimits, smoke_test

from conftest import corpus_header, run_nas_agent

FORGE = Path(__file__).resolve().parent / "hostile" / "forge"
# One epoch on 1,000 images: the honest tiny networks of the corpus stay near chance (0.1-0.3);
# the rival (a small FractalNet) reaches about 0.26 on the 200 test images, far above chance.
FORGED_ABOVE = 0.5

pytestmark = [pytest.mark.slow, pytest.mark.sandbox, pytest.mark.e2e]


CORPUS = {path.stem: corpus_header(path) for path in sorted(FORGE.glob("*.py"))}


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "hostile.toml"
    config.write_text('device = "cpu"\n[train]\nepochs = 1\nbatch_size = 25\nlr = 0.05\n'
                      "[data]\ntrain_subset = 1000\ntest_subset = 200\n"
                      "[limits]\nseconds = 120\nmemory_mb = 4096\nthreads = 1\n"
                      "[policy]\nenabled = false\n")
    return config


def _sweep(folder: Path, catalog: Path, config: Path, env: dict) -> None:
    run_nas_agent("sweep", folder, "--config", config, "--catalog", catalog, "--no-smoke", "--jobs", 2,
                  env=env, timeout=900, check=False)


def _by_stem(catalog: Path, folder: Path) -> dict[str, dict]:
    codes = {p.read_text(): p.stem for p in folder.glob("*.py")}
    with Catalog(catalog) as cat:
        found = {}
        for model in cat.models():
            row = cat.get_model(model["name"])
            epochs = cat.epochs(model["name"])
            found[codes[row["code"]]] = {**row, "accuracies": [e["accuracy"] for e in epochs],
                                         "test_losses": [e["test_loss"] for e in epochs]}
        cat.leaderboard()  # every later read still works
    return found


def test_the_corpus_covers_each_way_to_forge_a_result():
    assert len(CORPUS) >= 16
    assert {h["class"] for h in CORPUS.values()} >= {"forge", "channel", "tamper", "smoke", "text"}
    assert all(h.get("attack") and h.get("proof") for h in CORPUS.values())


def test_no_candidate_forges_its_score_or_a_rivals_with_the_policy_off(tmp_path, cli_env, small_candidate):
    config = _config(tmp_path)
    # The rival alone first: its honest accuracy under this recipe.
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "rival.py").write_text(small_candidate.read_text())
    _sweep(alone, tmp_path / "alone.sqlite", config, cli_env)
    honest = _by_stem(tmp_path / "alone.sqlite", alone)["rival"]
    assert honest["status"] == "done" and len(honest["accuracies"]) == 1

    folder = tmp_path / "hostile"
    folder.mkdir()
    for name in CORPUS:
        if CORPUS[name]["class"] != "smoke":  # those are for the smoke run (below)
            (folder / f"{name}.py").write_text((FORGE / f"{name}.py").read_text())
    (folder / "rival.py").write_text(small_candidate.read_text())
    catalog = tmp_path / "catalog.sqlite"
    _sweep(folder, catalog, config, cli_env)
    found = _by_stem(catalog, folder)

    assert set(found) == {p.stem for p in folder.glob("*.py")}
    for stem, model in found.items():
        assert model["status"] in ("done", "failed"), (stem, model["status"], model["reason"])
        assert all(0 <= a <= FORGED_ABOVE for a in model["accuracies"]), (stem, model["accuracies"])
    # The rival trained in its own folder, untouched: the same accuracy as alone.
    assert found["rival"]["status"] == "done"
    assert found["rival"]["accuracies"] == pytest.approx(honest["accuracies"], abs=1e-9)
    assert found["rival"]["test_losses"] == pytest.approx(honest["test_losses"], abs=1e-9)
    # Broken messages fail their own job with a reason, and only that job.
    for stem in ("garbage_on_the_pipe", "endless_line_on_the_pipe", "forged_events_on_every_fd", "deeply_nested_json"):
        assert found[stem]["status"] == "failed" and "event protocol" in found[stem]["reason"], found[stem]
    assert honest["accuracies"][0] > 0.18  # the rival learnt something (chance: 0.10 +- 0.02): not a tie
    # Candidate text is quoted, marked and cut short; nothing from /etc/passwd reached the catalog.
    reason = found["instructions_in_its_exception"]["reason"]
    assert "[untrusted candidate output]" in reason and len(reason) < 450 and "\x1b" not in reason
    dump = "\n".join(sqlite3.connect(catalog).iterdump())
    assert "root:x:0:0" not in dump


@pytest.mark.parametrize("name", ["hides_its_parameters", "lies_about_its_shapes", "weights_outside_the_module_tree"])
def test_hidden_parameters_are_counted_by_the_driver(tmp_path, name):
    source = (FORGE / f"{name}.py").read_text()
    result = smoke_test(source, tmp_path / "smoke", SmokeLimits(seconds=60, memory_mb=4096, max_params=1_000_000))
    assert result.verdict.stage == "smoke" and "parameters, above" in result.verdict.reason, result.verdict


def test_an_honest_network_is_counted_exactly(tmp_path, small_candidate):
    """The live-tensor count adds nothing to a network whose weights all sit in its module tree."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("honest", small_candidate)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.Net((1, 3, 32, 32), (10,), {"lr": 0.01, "momentum": 0.9, "dropout": 0.1}, "cpu")
    result = smoke_test(small_candidate.read_text(), tmp_path / "smoke", SmokeLimits(seconds=60))
    assert result.verdict.ok and result.n_params == sum(p.numel() for p in net.parameters())


FORGE_GEN = Path(__file__).resolve().parent / "hostile" / "forge_gen"
GEN_CORPUS = {path.stem: corpus_header(path) for path in sorted(FORGE_GEN.glob("*.py"))}


def test_no_generator_forges_its_bits_per_dim_with_the_policy_off(tmp_path, cli_env):
    """Generators see their test images, so the scorer checks their logits on probes it picked per job."""
    config = tmp_path / "generative.toml"
    config.write_text('task = "img-generation"\ntemplate = "templates/fractal_gen.py"\ndevice = "cpu"\n'
                      '[train]\nepochs = 1\nbatch_size = 50\noptimizer = "adamw"\nlr = 0.05\nschedule = "constant"\n'
                      'label_smoothing = 0.0\ndropout = 0.0\ncrop_padding = 0\n'
                      "[data]\ntrain_subset = 500\ntest_subset = 100\n"
                      "[limits]\nseconds = 300\nmemory_mb = 4096\nthreads = 1\n"
                      '[policy]\nenabled = false\n[reference]\ntemplate = ""\n')
    folder = tmp_path / "generators"
    folder.mkdir()
    for name, header in GEN_CORPUS.items():
        if header["class"] != "smoke":
            (folder / f"{name}.py").write_text((FORGE_GEN / f"{name}.py").read_text())
    # The honest twin of the corpus: the same learnt table of per-position categoricals, no attack.
    honest = (FORGE_GEN / "unnormalised_smoke.py").read_text().replace(".sum(1) - 1e5\n", ".sum(1)\n")
    (folder / "honest_table.py").write_text(honest)
    catalog = tmp_path / "catalog.sqlite"
    _sweep(folder, catalog, config, cli_env)
    found = _by_stem(catalog, folder)

    assert found["honest_table"]["status"] == "done", found["honest_table"]["reason"]
    (honest_bpd,) = found["honest_table"]["accuracies"]
    assert 5.0 < honest_bpd < 8.5  # a per-position table after one epoch: a little under uniform's 8 bits
    expected = {"sees_itself": "sees itself", "cheats_off_the_probes": "its logits give",
                "values_see_each_other": "each depend on the other"}
    assert set(expected) <= set(found)
    for stem, says in expected.items():
        model = found[stem]
        assert model["status"] == "failed" and says in model["reason"], (stem, model["status"], model["reason"])
        assert model["accuracies"] == [], (stem, model["accuracies"])  # no forged bits/dim was recorded


def test_the_driver_refuses_a_generator_whose_nll_is_negative(tmp_path):
    source = (FORGE_GEN / "unnormalised_smoke.py").read_text()
    result = smoke_test(source, tmp_path / "smoke", SmokeLimits(seconds=60, memory_mb=4096),
                        out_shape=(256,), task="img-generation")
    assert result.verdict.stage == "smoke" and "negative NLL" in result.verdict.reason, result.verdict
