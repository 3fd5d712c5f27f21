"""Bad input ends in one clear line and a non-zero exit, and leaves the catalog as it was.

One test starts the real `nas-agent` process; the others run the commands in this process through
Typer's runner (the same code, without an interpreter start each).
"""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from nas_agent.config import Config, ConfigError, from_dict, load_config

from conftest import CANDIDATES


def run_cli(*args, env=None, cwd=None):
    env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "nas_agent.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


def invoke(*args, env=None):
    """`nas-agent ARGS` in this process: its exit code, stdout and stderr, as run_cli gives them."""
    from typer.testing import CliRunner

    from nas_agent.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200", **(env or {})})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback is a failure of its own, not a one-line error
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr)


def assert_one_line_error(result, *words):
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_missing_dataset_names_the_paths_tried_and_leaves_no_catalog(tmp_path):
    catalog = tmp_path / "catalog.sqlite"
    result = run_cli("train", CANDIDATES / "nan_loss.py", "--data-dir", tmp_path / "nowhere", "--catalog", catalog)
    assert_one_line_error(result, "nowhere", "--data-dir")
    assert not catalog.exists()


def test_unreadable_and_invalid_configs(tmp_path):
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[train\nepochs = 3\n")
    assert_one_line_error(invoke("train", CANDIDATES / "nan_loss.py", "--config", bad_toml), "not valid TOML")
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[train]\nepochs = 0\noptimiser = 'sgd'\n")
    assert_one_line_error(invoke("sweep", tmp_path, "--config", wrong), "optimiser")
    assert_one_line_error(invoke("generate", "--count", "--config", tmp_path / "missing.toml"), "cannot read config")


def test_a_file_that_is_not_a_catalog_is_refused_and_left_unchanged(tmp_path):
    garbage = tmp_path / "catalog.sqlite"
    garbage.write_bytes(b"definitely not sqlite" * 100)
    before = garbage.read_bytes()
    assert_one_line_error(invoke("leaderboard", "--catalog", garbage))
    assert garbage.read_bytes() == before


def test_other_bad_arguments(tmp_path):
    assert_one_line_error(invoke("generate"), "--out")
    assert_one_line_error(invoke("leaderboard", "--catalog", tmp_path / "none.sqlite"), "no catalog")
    assert_one_line_error(invoke("sweep", tmp_path / "empty-does-not-exist"), "not a folder")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(invoke("sweep", tmp_path / "empty"), "no candidate files")
    assert_one_line_error(invoke("train", tmp_path / "missing.py"), "no such file")


def test_config_validation():
    assert load_config("paper").train.batch_size == 16
    assert load_config("default").train.schedule == "onecycle"
    assert load_config("quick").data.train_subset == 5000
    with pytest.raises(ConfigError, match="epochs must be int"):
        from_dict({"train": {"epochs": "five"}})
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict({"train": {"epoch": 5}})
    with pytest.raises(ConfigError, match="train.lr must be positive"):
        from_dict({"train": {"lr": -1.0}})
    with pytest.raises(ConfigError, match="device"):
        from_dict({"device": "tpu"})
    assert from_dict({"train": {"lr": 1}}).train.lr == 1.0  # an int where a float is expected is fine
    cfg = load_config("paper").with_overrides({"train.epochs": 2, "data.dir": "/x", "device": None})
    assert (cfg.train.epochs, cfg.data.dir, cfg.device) == (2, "/x", "auto")
    with pytest.raises(ConfigError, match="unknown key.*checkpoints"):  # a key nothing reads is refused
        from_dict({"checkpoints": "runs/checkpoints"})


def test_default_toml_is_the_one_source_of_defaults(tmp_path):
    # The dataclasses and the shipped default.toml say the same, so TrainConfig() in code is the user's recipe.
    assert load_config(None).to_dict() == Config().to_dict()
    # A file that leaves keys out gets default.toml's values; a table value replaces the default's whole.
    partial = tmp_path / "partial.toml"
    partial.write_text('name = "partial"\n[train]\nepochs = 2\n[search]\nstrategies = { mutate = 1.0 }\n')
    cfg = load_config(partial)
    default = load_config(None)
    assert (cfg.name, cfg.train.epochs) == ("partial", 2)
    assert (cfg.train.batch_size, cfg.train.lr, cfg.llm.model) == (default.train.batch_size, default.train.lr,
                                                                   default.llm.model)
    assert cfg.search.strategies == {"mutate": 1.0} and cfg.search.budget == default.search.budget
    broken = tmp_path / "broken.toml"
    broken.write_text("[train\nepochs = 2\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)


def test_hostile_file_is_rejected_at_policy_and_never_run(tmp_path, cli_env):
    folder = tmp_path / "in"
    folder.mkdir()
    marker = tmp_path / "pwned"
    good = (CANDIDATES / "nan_loss.py").read_text()
    (folder / "hostile.py").write_text(good.replace(
        "import torch\n", f"import torch\nimport os\nos.system('touch {marker}')\n", 1))
    catalog = tmp_path / "catalog.sqlite"
    result = invoke("sweep", folder, "--catalog", catalog, env=cli_env)
    assert result.returncode == 1
    assert "policy" in result.stderr and "import of os" in result.stderr
    assert not marker.exists()
    from nas_agent.catalog import Catalog

    with Catalog(catalog) as cat:
        (event,) = cat.events(kind="rejected")
        assert event["stage"] == "policy" and cat.models() == []


def test_candidate_text_is_printed_as_text_never_as_markup(tmp_path):
    """Regression: Rich read '[untrusted candidate output]' as a style tag and dropped it from `train`'s output.

    Candidate-derived text (a failure reason, a file name) must reach the terminal as written, so a
    candidate can neither hide the untrusted marker nor style, link or blank out its own message.
    """
    from nas_agent.catalog import Catalog
    from nas_agent.catalog.records import ModelRecord
    from nas_agent.train.events import quote_untrusted

    catalog = tmp_path / "catalog.sqlite"
    reason = "the candidate raised: " + quote_untrusted("[link=http://x]click[/link] [conceal]secret[/] [red]0.99")
    with Catalog(catalog) as cat:
        cat.add_model(ModelRecord(name="img-classification_cifar-10_acc_Net-[bold]x", code="x = 1\n", family="Net",
                                  task="img-classification", dataset="cifar-10", metric="acc", code_hash="ab" * 32,
                                  template_params={}, parent=None, origin="file"))
        cat.set_status("img-classification_cifar-10_acc_Net-[bold]x", "failed", reason)
    shown = invoke("show", "img-classification_cifar-10_acc_Net-[bold]x", "--catalog", catalog)
    assert shown.returncode == 0, shown.stderr
    assert "[untrusted candidate output]" in shown.stdout and "[link=http://x]click[/link]" in shown.stdout
    assert "[conceal]secret[/]" in shown.stdout and "Net-[bold]x" in shown.stdout
    named = tmp_path / "[red]odd.py"
    named.write_text("import os\n")
    verdicts = invoke("validate", named, "--catalog", catalog)
    assert verdicts.returncode == 1 and "[red]odd" in verdicts.stdout, verdicts.stdout
