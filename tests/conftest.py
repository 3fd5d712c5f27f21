"""Shared fixtures: the real CIFAR-10 copy, one decoded cache per test session, small candidates."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CANDIDATES = Path(__file__).resolve().parent / "candidates"

# A FractalNet small enough to train in seconds on a CPU, still with the full structure.
SMALL_FRACTAL = {"N_BLOCKS": 3, "N_COLUMNS": 2, "BASE_CHANNELS": 16, "MAX_CHANNELS": 64}


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
