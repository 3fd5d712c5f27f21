"""Shared fixtures: the real CIFAR-10 copy, one decoded cache per test session, small candidates."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CANDIDATES = Path(__file__).resolve().parent / "candidates"

def run_nas_agent(*args, env=None, timeout=300, check=True) -> subprocess.CompletedProcess:
    """`nas-agent ARGS` in a fresh interpreter (wide console); with `check`, a non-zero exit fails the test."""
    result = subprocess.run([sys.executable, "-m", "nas_agent.cli", *map(str, args)], capture_output=True,
                            text=True, timeout=timeout, env={**(env or os.environ), "COLUMNS": "200"})
    if check and result.returncode != 0:
        raise AssertionError(f"nas-agent {' '.join(map(str, args))} exited {result.returncode}:\n{result.stderr}")
    return result


# A FractalNet small enough to train in seconds on a CPU, still with the full structure.
SMALL_FRACTAL = {"N_BLOCKS": 3, "N_COLUMNS": 2, "BASE_CHANNELS": 16, "MAX_CHANNELS": 64}


def boundary_variants(space, k: int = 6, seed: int = 0) -> list[dict]:
    """The fast tier's stand-in for an exhaustive sweep: the space's first and last variant, and `k` seeded ones."""
    return [space.variant(0), space.variant(len(space) - 1), *space.sample(k, seed)]


def corpus_header(path: Path) -> dict[str, str]:
    """The `# key: value` lines that open a hostile corpus file (class, attack, proof or wall)."""
    header = {}
    for line in path.read_text().splitlines():
        if not line.startswith("# ") or ":" not in line:
            break
        key, _, value = line[2:].partition(":")
        header[key.strip()] = value.strip()
    return header


def cifar_archive_path() -> Path:
    return Path(os.environ.get("NAS_AGENT_TEST_DATA", REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"))


@pytest.fixture(scope="session")
def cifar_archive() -> Path:
    path = cifar_archive_path()
    if not path.exists():
        pytest.fail(f"the real CIFAR-10 copy is missing at {path}; set NAS_AGENT_TEST_DATA to its .tar.gz")
    return path


@pytest.fixture(scope="session")
def data_cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("nas-agent-cache")


@pytest.fixture(scope="session")
def cifar_cache(cifar_archive, data_cache_dir) -> Path:
    """The decoded uint8 cache of the real archive (decoded once per session)."""
    from nas_agent.data import resolve_cifar10

    return resolve_cifar10(cifar_archive, data_cache_dir)


@pytest.fixture(scope="session")
def cli_env(cifar_archive, cifar_cache, data_cache_dir) -> dict[str, str]:
    """Environment for running the real `nas-agent` command against the session's data cache."""
    env = dict(os.environ)
    env.update(NAS_AGENT_DATA=str(cifar_archive), NAS_AGENT_CACHE=str(data_cache_dir), COLUMNS="200")
    return env


@pytest.fixture(scope="session")
def small_candidate(tmp_path_factory) -> Path:
    """A small rendered FractalNet variant, written to a file."""
    from nas_agent.space import load_template

    template = load_template("fractalnet.py")
    path = tmp_path_factory.mktemp("small") / "small_fractal.py"
    path.write_text(template.render(SMALL_FRACTAL))
    return path


def catalog_snapshot(catalog: Path):
    """(stat rows, model statuses, run ids) read straight from the catalog file."""
    import sqlite3
    from contextlib import closing

    # closing(): sqlite3's own context manager commits but leaves the connection open, and a
    # connection left open here sees a stale WAL index once the search process resets the WAL.
    with closing(sqlite3.connect(catalog)) as db:
        stats = db.execute("SELECT nn, epoch, id, accuracy FROM stat ORDER BY nn, epoch").fetchall()
        status = dict(db.execute("SELECT name, status FROM model").fetchall())
        runs = [row[0] for row in db.execute("SELECT id FROM nas_run ORDER BY started, id")]
    return stats, status, runs


def wait_until_one_done_and_one_mid_training(proc, catalog: Path, timeout: float = 600):
    """Poll the catalog a process is filling until one model is done and another has epochs but is running.

    Returns catalog_snapshot() of that moment; kills the process and fails the test on timeout.
    """
    import sqlite3
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            stats, status, runs = catalog_snapshot(catalog)
        except sqlite3.OperationalError:
            continue  # not created yet, or mid-write
        done = [n for n, s in status.items() if s == "done"]
        mid = [n for n, s in status.items() if s == "running" and any(row[0] == n for row in stats)]
        if done and mid:
            return stats, status, runs
    proc.kill()
    pytest.fail("never reached a state with one candidate done and one mid-training")
