"""The search loop end to end: real images, real sandboxed training, replayed LLM answers, real Optuna."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from nas_agent.catalog import Catalog

from conftest import catalog_snapshot, wait_until_one_done_and_one_mid_training

pytestmark = pytest.mark.e2e

# Small FractalNets on a 600 / 200 image subset: each candidate trains in seconds on a CPU.
SEARCH_TOML = """
name = "test-search"
template = "templates/fractalnet.py"

[train]
epochs = {epochs}
batch_size = 100
lr = 0.05

[data]
train_subset = {train_subset}
test_subset = 200

[limits]
seconds = 300

[space]
n_blocks = [2, 3]
n_columns = [1, 2]
base_channels = [8, 16]

[search]
budget = {budget}
round_size = 3
parents = 2
strategies = {strategies}

[llm]
backend = "replay"
mode = "code"          # the replayed answers are code edits

[reference]
{reference}
"""

# Replayed LLM answers, in the order the backend hands them out (it starts over at the end):
# a valid edit, a policy violation, and prose without code.
REPLAY = [
    "<think>\nFewer, narrower blocks with GELU should train faster.\n</think>\n```python\n"
    "# --- nas-agent: template parameters (begin) ---\nN_BLOCKS = 2\nN_COLUMNS = 2\nBASE_CHANNELS = 8\n"
    "ACTIVATION = \"gelu\"\n# --- nas-agent: template parameters (end) ---\n```",
    "<think>\nLet me look at the data first.\n</think>\n```python\n# --- nas-agent: element (begin) ---\n"
    "def make_element(c_in, c_out, dropout):\n    open('/etc/passwd')\n    return nn.Identity()\n"
    "# --- nas-agent: element (end) ---\n```",
    "I would make the network deeper.",
]


def write_config(folder: Path, *, budget: int, epochs: int = 1,
                 strategies: str = "{ llm = 1.0, mutate = 1.0, optuna = 1.0 }", reference: bool = False,
                 train_subset: int = 600) -> Path:
    """A search config; the reference network (a narrow ResNet-9) only when asked for, to keep tests short."""
    path = folder / "search.toml"
    path.write_text(SEARCH_TOML.format(budget=budget, epochs=epochs, strategies=strategies, train_subset=train_subset,
                                       reference="params = {BASE_CHANNELS = 8}" if reference else 'template = ""'))
    return path


def write_replay(folder: Path) -> Path:
    path = folder / "replay.jsonl"
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in REPLAY))
    return path


def search_command(config: Path, catalog: Path, *extra) -> list[str]:
    return [sys.executable, "-m", "nas_agent.cli", "search", "--config", str(config), "--catalog", str(catalog),
            "--device", "cpu", *map(str, extra)]


def run_search(config: Path, catalog: Path, env: dict, *extra, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(search_command(config, catalog, *extra), env=env, capture_output=True, text=True,
                          timeout=timeout, check=False, cwd=Path(__file__).resolve().parents[1])


def proposal_rows(catalog: Path) -> list[dict]:
    with Catalog(catalog) as cat:
        return cat.proposals()


@pytest.mark.slow
def test_search_fills_the_catalog_with_every_strategy_and_a_leaderboard(tmp_path, cli_env):
    config, replay = write_config(tmp_path, budget=6, reference=True), write_replay(tmp_path)
    catalog = tmp_path / "catalog.sqlite"
    result = run_search(config, catalog, cli_env, "--replay", replay)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "budget of 6 candidates spent" in result.stdout
    assert "leaderboard" in result.stdout and "strategies" in result.stdout
    rows = proposal_rows(catalog)
    admitted = [r for r in rows if r["ok"]]
    assert len(admitted) == 6 and all(r["status"] in ("done", "failed") for r in admitted)
    with Catalog(catalog) as cat:
        models = {m["name"]: m for m in cat.models()}
        # The reference network is trained besides the budget, as the baseline row.
        assert {m["origin"] for m in models.values()} == {"llm", "mutate", "optuna", "reference"}
        assert all(m["status"] == "done" for m in models.values()), [m["reason"] for m in models.values()]
        board = cat.leaderboard()
        assert len(board) == 7 and all(0 < r["accuracy"] <= 1 for r in board)
        (reference,) = [m for m in models.values() if m["origin"] == "reference"]
        assert reference["family"] == "ResNet9" and "ResNet9" in result.stdout
        # The LLM's answers were recorded with their verdicts, and the model it produced is linked.
        calls = cat.llm_calls()
        assert {c["stage"] for c in calls if not c["ok"]} >= {"policy", "parse"}
        assert any(c["ok"] and c["nn"] in models for c in calls)
        # Mutations name their parent and what they changed.
        mutants = [r for r in rows if r["strategy"] == "mutate" and r["ok"]]
        assert mutants and all(r["parent"] and "->" in r["change"] or "crossover" in r["change"] for r in mutants)
    rejected = [r for r in rows if r["status"] == "rejected"]
    assert rejected and all(r["stage"] and r["reason"] for r in rejected)
    # Optuna's study lives beside the catalog and saw every optuna proposal.
    import optuna

    storage = f"sqlite:///{tmp_path / 'optuna.sqlite3'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    trials = {t.number: t for t in optuna.load_study(study_name=summary.study_name, storage=storage).trials}
    for row in (r for r in rows if r["strategy"] == "optuna"):
        if row["status"] == "done":
            assert trials[row["trial"]].user_attrs["model"] == row["nn"]
            assert trials[row["trial"]].value == pytest.approx(row["accuracy"])
    # TPE also learnt from what the other strategies trained (warm start from the catalog).
    assert {t.user_attrs.get("origin") for t in trials.values()} & {"mutate", "llm"}

    # A second search with the same recipe reuses the reference's result instead of training it again,
    # and a leaderboard filtered to one origin still shows the reference as its baseline row.
    again = run_search(write_config(tmp_path, budget=1, strategies="{ mutate = 1.0 }", reference=True), catalog,
                       cli_env)
    assert again.returncode == 0, again.stderr[-3000:]
    with Catalog(catalog) as cat:
        assert [e["kind"] for e in cat.events(nn=reference["name"])].count("done") == 1
    board = subprocess.run([sys.executable, "-m", "nas_agent.cli", "leaderboard", "--catalog", str(catalog),
                            "--origin", "mutate"], env=cli_env, capture_output=True, text=True, check=True)
    (line,) = [row for row in board.stdout.splitlines() if "ResNet9" in row]
    assert "ref" in line and "reference" in line


@pytest.mark.slow
def test_a_search_killed_mid_round_resumes_without_losing_or_repeating_work(tmp_path, cli_env):
    config = write_config(tmp_path, budget=5, epochs=2, strategies="{ mutate = 1.0, optuna = 1.0 }")
    catalog = tmp_path / "catalog.sqlite"
    proc = subprocess.Popen(search_command(config, catalog), env=cli_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[1])
    stats, status, runs = wait_until_one_done_and_one_mid_training(proc, catalog)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished_before = [row for row in stats if status[row[0]] == "done"]

    result = run_search(config, catalog, cli_env, "--resume", runs[0])
    assert result.returncode == 0, result.stderr[-3000:]
    stats_after, status_after, runs_after = catalog_snapshot(catalog)
    assert runs_after == runs  # the same run went on
    assert set(finished_before) <= set(stats_after)  # every finished result kept, untouched
    assert len(status_after) == 5 and set(status_after.values()) == {"done"}
    assert len(stats_after) == 5 * 2  # every candidate's 2 epochs, each once
    with Catalog(catalog) as cat:
        for name in status_after:
            finishes = [e for e in cat.events(nn=name) if e["kind"] == "done"]
            assert len(finishes) == 1, (name, finishes)  # nothing trained to the end twice
        assert sum(1 for r in cat.proposals() if r["ok"]) == 5
        assert cat.get_run(runs[0])["status"] == "finished"


@pytest.mark.slow
def test_ctrl_c_requeues_the_candidate_in_training_and_says_how_to_resume(tmp_path, cli_env):
    # Epochs of 2,000 images, three per candidate: the interrupt must land while a candidate is mid-training,
    # and a window of a few seconds leaves room for a slow poll on a loaded machine.
    config = write_config(tmp_path, budget=4, epochs=3, strategies="{ mutate = 1.0 }", train_subset=2000)
    catalog = tmp_path / "catalog.sqlite"
    # SIGINT back to its default in the child: a test run started in the background of a shell
    # (no job control) ignores SIGINT, the child would inherit that and never see the Ctrl-C.
    proc = subprocess.Popen(search_command(config, catalog), env=cli_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1],
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _, status, runs = wait_until_one_done_and_one_mid_training(proc, catalog)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert f"--resume {runs[0]}" in err
    with Catalog(catalog) as cat:
        assert cat.get_run(runs[0])["status"] == "interrupted"
        interrupted = [n for n, s in status.items() if s == "running"]
        assert [cat.get_model(n)["status"] for n in interrupted] == ["queued"] * len(interrupted)
        assert {cat.get_model(n)["status"] for n, s in status.items() if s == "done"} == {"done"}
    resumed = run_search(config, catalog, cli_env, "--resume", runs[0])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    with Catalog(catalog) as cat:
        assert {m["status"] for m in cat.models()} == {"done"} and len(cat.models()) == 4


@pytest.mark.slow
def test_hpo_trials_retrain_the_best_model_with_other_recipes_as_separate_lemur_trials(tmp_path, cli_env):
    config = write_config(tmp_path, budget=4, strategies="{ mutate = 1.0, hpo = 1.0 }")
    catalog = tmp_path / "catalog.sqlite"
    result = run_search(config, catalog, cli_env)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = proposal_rows(catalog)
    trials = [r for r in rows if r["strategy"] == "hpo"]
    assert trials and all(r["ok"] and r["prm"] and r["status"] in ("done", "stopped") for r in trials)
    with Catalog(catalog) as cat:
        for trial in trials:
            assert 0.8 <= trial["prm"]["momentum"] <= 0.99 and trial["accuracy"] is not None
            # The tuned model keeps its base result and gains one LEMUR trial (own prm rows) per recipe.
            recipes = {e["prm"] for e in cat.epochs(trial["nn"])}
            assert len(recipes) >= 2
            assert cat.get_model(trial["nn"])["origin"] == "mutate"
    assert "hpo" in result.stdout


def _one_line_error(result: subprocess.CompletedProcess, words: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], result.stderr


def test_bad_settings_exit_with_one_line_and_leave_no_catalog(tmp_path, cli_env):
    catalog = tmp_path / "catalog.sqlite"
    unknown = write_config(tmp_path, budget=2, strategies="{ mutate = 1.0, genetic = 1.0 }")
    _one_line_error(run_search(unknown, catalog, cli_env), "unknown strategy genetic")
    good = write_config(tmp_path, budget=2, strategies="{ mutate = 1.0 }")
    _one_line_error(run_search(good, catalog, cli_env, "--budget", "-3"), "--budget and --hours must be >= 0")
    _one_line_error(run_search(good, catalog, cli_env, "--data-dir", tmp_path / "no-such-data"), "no-such-data")
    _one_line_error(run_search(good, catalog, cli_env, "--budget", "0"), "an endless search")
    assert not catalog.exists()


@pytest.mark.slow
def test_the_same_search_on_a_local_ray_instance(tmp_path, cli_env):
    config = write_config(tmp_path, budget=3, strategies="{ mutate = 1.0, optuna = 1.0 }")
    catalog = tmp_path / "catalog.sqlite"
    result = run_search(config, catalog, cli_env, "--executor", "ray")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "executor ray" in result.stderr and "budget of 3 candidates spent" in result.stdout
    with Catalog(catalog) as cat:
        models = cat.models()
        assert len(models) == 3 and {m["status"] for m in models} == {"done"}
        assert {m["origin"] for m in models} <= {"mutate", "optuna"}
        assert all(len(cat.epochs(m["name"])) == 1 for m in models)


def test_an_unreachable_ray_address_is_one_line(tmp_path, cli_env):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    catalog = tmp_path / "catalog.sqlite"
    config = write_config(tmp_path, budget=2, strategies="{ mutate = 1.0 }")
    _one_line_error(run_search(config, catalog, cli_env, "--executor", "ray", "--ray-address", f"127.0.0.1:{port}",
                               timeout=300), f"127.0.0.1:{port}")
    assert not catalog.exists()


# LLM answers a hostile model could give: element regions that attack the harness when the network is
# built, in the child (the forge corpus' attacks, spliced into the template's editable region).
_ELEMENT = ("```python\n# --- nas-agent: element (begin) ---\ndef make_element(c_in, c_out, dropout):\n"
            "{attack}\n    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())\n"
            "# --- nas-agent: element (end) ---\n```")
HOSTILE_REPLAY = [
    _ELEMENT.format(attack="    F.cross_entropy = lambda *a, **k: torch.zeros((), requires_grad=True)\n"
                           "    torch.Tensor.argmax = lambda self, *a, **k: torch.zeros(self.shape[0], dtype=torch.long)\n"
                           "    torch.Tensor.__eq__ = lambda self, other: torch.ones(self.shape, dtype=torch.bool)"),
    _ELEMENT.format(attack="    import json, os\n"
                           "    forged = json.dumps({'event': 'epoch', 'epoch': 1, 'test_accuracy': 1.0, 'test_loss': 0.0,"
                           " 'seconds': 0.1}) + '\\n' + json.dumps({'event': 'done'}) + '\\n'\n"
                           "    for fd in range(3, 64):\n        try:\n            os.write(fd, forged.encode())\n"
                           "        except OSError:\n            pass"),
    _ELEMENT.format(attack="    import glob\n    for path in glob.glob('../*.sqlite*') + glob.glob('../../*.sqlite*'):\n"
                           "        try:\n            open(path, 'r+b').write(b'forged')\n        except OSError:\n"
                           "            pass"),
]


@pytest.mark.slow
def test_hostile_llm_edits_through_search_forge_nothing_with_the_policy_off(tmp_path, cli_env):
    """The search loop itself, fed attacks as LLM answers, with only the OS and the scorer in the way."""
    config = write_config(tmp_path, budget=3, strategies="{ llm = 1.0 }", train_subset=500)
    # No static policy and no smoke run: every attack reaches training, where only the jail and the scorer stand.
    config.write_text(config.read_text() + "\n[policy]\nenabled = false\n[validate]\nsmoke = false\n")
    replay = tmp_path / "hostile.jsonl"
    replay.write_text("".join(json.dumps({"text": text}) + "\n" for text in HOSTILE_REPLAY))
    catalog = tmp_path / "catalog.sqlite"
    result = run_search(config, catalog, cli_env, "--replay", replay)
    assert result.returncode == 0, result.stderr[-3000:]
    with Catalog(catalog) as cat:
        models = cat.models()
        assert len(models) == 3, [(m["name"], m["status"]) for m in models]
        accuracies = [e["accuracy"] for m in models for e in cat.epochs(m["name"])]
        assert accuracies and all(0 <= a <= 0.5 for a in accuracies), accuracies  # chance-level nets, not 1.0
        reasons = [(m["status"], cat.get_model(m["name"])["reason"] or "") for m in models]
        cat.leaderboard()
    # The forged events broke that one job's channel; the patched torch functions changed nothing
    # the driver computes; the catalog the third one looked for was out of its reach.
    assert any(status == "failed" and "event protocol" in reason for status, reason in reasons), reasons
    assert sqlite3.connect(catalog).execute("pragma integrity_check").fetchone() == ("ok",)
