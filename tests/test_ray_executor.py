"""The Ray executor on a local Ray instance started by the tests, training on real CIFAR-10 images."""

from __future__ import annotations

import dataclasses
import socket
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from nas_agent.catalog import Catalog
from nas_agent.config import TrainConfig, load_config
from nas_agent.search.ray_executor import RayExecutor, RayExecutorError
from nas_agent.search.trainer import Trainer, read_candidate, register
from nas_agent.space import load_template
from nas_agent.train.job import TrainJob
from nas_agent.validate import validator_for

from conftest import SMALL_FRACTAL

pytestmark = pytest.mark.ray

TINY = {**SMALL_FRACTAL, "N_BLOCKS": 2, "BASE_CHANNELS": 8, "MAX_CHANNELS": 32}


@pytest.fixture(scope="module")
def executor():
    """One local Ray instance (2 CPUs) for the whole module: starting Ray takes seconds."""
    ray_executor = RayExecutor(None, num_cpus=2)
    yield ray_executor
    ray_executor.close()


def _source(**params) -> str:
    return load_template("fractalnet.py").render({**TINY, **params})


def _job(name: str, cache: Path, epochs: int, train_subset: int = 300) -> TrainJob:
    return TrainJob(name=name, source=_source(), dataset_cache=str(cache),
                    train=dataclasses.asdict(TrainConfig(epochs=epochs, batch_size=100, lr=0.05)),
                    train_subset=train_subset, test_subset=100, device="cpu", seconds=300, memory_mb=8192,
                    threads=1)


def _training_children(under: Path) -> list[psutil.Process]:
    """Live sandboxed training processes whose job file lies under `under`."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "nas_agent.train.worker" in cmdline and str(under) in cmdline:
            found.append(proc)
    return found


def _filled(row: dict) -> set[str]:
    return {key for key, value in row.items() if value is not None}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_executor_takes_its_slots_from_the_cluster(executor):
    assert executor.name == "ray"
    assert executor.slots == 2 and executor.gpus_per_job == 0


@pytest.mark.slow
def test_trainer_trains_through_ray_like_through_the_local_pool(executor, cifar_cache, tmp_path):
    cfg = load_config("quick").with_overrides({
        "catalog": str(tmp_path / "ray" / "catalog.sqlite"), "device": "cpu", "train.epochs": 1,
        "train.batch_size": 100, "data.train_subset": 300, "data.test_subset": 100, "limits.threads": 1})
    validator = validator_for(cfg, smoke=False)
    files = []
    for i, columns in enumerate((1, 2)):
        files.append(tmp_path / f"tiny_{i}.py")
        files[-1].write_text(_source(N_COLUMNS=columns))
    with Catalog(cfg.catalog) as catalog:
        names = [register(catalog, read_candidate(f, validator), cfg, origin="manual") for f in files]
        summary = Trainer(catalog, cfg, cifar_cache, executor=executor).train(names)
        assert sorted(summary.trained) == sorted(names) and not summary.failed
        ray_rows = {name: (catalog.get_model(name), catalog.epochs(name)) for name in names}

    local_cfg = cfg.with_overrides({"catalog": str(tmp_path / "local" / "catalog.sqlite")})
    with Catalog(local_cfg.catalog) as catalog:
        name = register(catalog, read_candidate(files[0], validator_for(cfg, smoke=False)), local_cfg,
                        origin="manual")
        assert Trainer(catalog, local_cfg, cifar_cache).train([name]).trained == [name]
        local_model, local_epochs = catalog.get_model(name), catalog.epochs(name)

    for model, epochs in ray_rows.values():
        assert model["status"] == "done" and model["n_params"] > 1000
        assert [e["epoch"] for e in epochs] == [1] and 0 <= epochs[0]["accuracy"] <= 1
    ray_model, ray_epochs = ray_rows[name]
    assert _filled(ray_epochs[0]) == _filled(local_epochs[0])
    assert ray_model["n_params"] == local_model["n_params"]
    # Same seed, one thread, same images: the Ray worker trains exactly what the local child does.
    assert ray_epochs[0]["accuracy"] == local_epochs[0]["accuracy"]


@pytest.mark.slow
def test_events_reach_the_driver_while_the_child_trains(executor, cifar_cache, tmp_path):
    seen = []

    def on_event(event):
        seen.append((event["event"], event.get("epoch"), bool(_training_children(tmp_path))))

    outcome = executor.run(_job("stream", cifar_cache, epochs=2), tmp_path / "sandbox", on_event, threading.Event())
    assert outcome.ok, outcome.reason
    assert [e["epoch"] for e in outcome.epochs] == [1, 2] and outcome.n_params > 1000
    # "started" and the first epoch arrived while the child was still alive: streamed, not replayed at the end.
    assert seen[0] == ("started", None, True)
    assert ("epoch", 1, True) in seen
    assert [kind for kind, _, _ in seen] == ["started", "epoch", "epoch", "done"]


@pytest.mark.slow
def test_cancel_stops_the_remote_child_quickly(executor, cifar_cache, tmp_path):
    cancel = threading.Event()
    cancelled_at = []

    def on_event(event):
        if event["event"] == "epoch" and not cancel.is_set():
            cancelled_at.append(time.monotonic())
            cancel.set()

    outcome = executor.run(_job("cancel", cifar_cache, epochs=50), tmp_path / "sandbox", on_event, cancel)
    stopped_in = time.monotonic() - cancelled_at[0]
    # The exact sandbox reason: the task's own flag stopped the child, not the force-cancel fallback.
    assert outcome.reason == "interrupted: the run was stopped" and not outcome.ok
    assert stopped_in < 5, f"took {stopped_in:.1f} s to stop"
    assert len(outcome.epochs) >= 1
    deadline = time.monotonic() + 5
    while _training_children(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _training_children(tmp_path)


@pytest.mark.slow
def test_a_task_that_misses_its_flag_is_killed_after_the_grace_period(executor, cifar_cache, tmp_path, monkeypatch):
    import ray

    from nas_agent.search import ray_executor

    monkeypatch.setattr(ray_executor, "_STOP_GRACE_SECONDS", 1.0)
    second = RayExecutor()  # Ray is up: this one joins it, with flags of its own
    ray.kill(second._flags)  # the task can no longer learn that it should stop
    cancel = threading.Event()

    def on_event(event):
        if event["event"] == "epoch":
            cancel.set()

    try:
        outcome = second.run(_job("deaf", cifar_cache, epochs=50), tmp_path / "sandbox", on_event, cancel)
    finally:
        second.close()
    assert ray.is_initialized(), "closing an executor that joined Ray must leave Ray running"
    assert outcome.reason.startswith("interrupted: ") and "worker was killed" in outcome.reason
    assert outcome.epochs and outcome.n_params
    deadline = time.monotonic() + 5  # the child dies with the killed worker (PDEATHSIG)
    while _training_children(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _training_children(tmp_path)


@pytest.mark.slow
def test_a_lost_worker_becomes_a_failed_outcome(executor, cifar_cache, tmp_path):
    def on_event(event):
        if event["event"] == "started":  # kill the Ray worker that runs the task, not the child
            # Jailed, the child is bwrap, its init and the worker: the outermost is the Ray worker's own child.
            children = _training_children(tmp_path)
            (child,) = [c for c in children if c.ppid() not in {other.pid for other in children}]
            child.parent().kill()

    outcome = executor.run(_job("lost", cifar_cache, epochs=50), tmp_path / "sandbox", on_event, threading.Event())
    assert not outcome.ok and outcome.reason.startswith("ray worker lost: "), outcome.reason
    deadline = time.monotonic() + 5  # the child dies with its parent (PDEATHSIG)
    while _training_children(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _training_children(tmp_path)


def test_unreachable_address_fails_fast_with_one_line():
    address = f"127.0.0.1:{_free_port()}"
    started = time.monotonic()
    with pytest.raises(RayExecutorError) as error:
        RayExecutor(address)
    assert time.monotonic() - started < 10
    message = str(error.value)
    assert address in message and "ray start --head" in message and "\n" not in message


def test_a_port_that_is_not_ray_fails_in_bounded_time(tmp_path):
    """Something listens, but it is no Ray head: ray.init's retries are bounded (fresh interpreter, no Ray yet)."""
    import subprocess

    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))  # all interfaces: ray.init turns 127.0.0.1 into this node's IP
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        script = ("from nas_agent.search.ray_executor import RayExecutor, RayExecutorError\n"
                  f"try:\n    RayExecutor({address!r})\n"
                  "except RayExecutorError as exc:\n    print(exc)\n    raise SystemExit(3)\n")
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                                cwd=tmp_path, check=False)
    assert result.returncode == 3, result.stderr[-2000:]
    assert time.monotonic() - started < 30  # Ray's defaults: minutes
    assert address in result.stdout and "ray start --head" in result.stdout


def test_missing_ray_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(RayExecutorError, match="pip install ray"):
        RayExecutor()
