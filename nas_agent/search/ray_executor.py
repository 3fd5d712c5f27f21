"""The `ray` executor: one Ray task per candidate, on a local Ray instance or a running cluster.

Each task calls `run_job` inside a Ray worker, so the candidate still trains only in the
sandboxed child process, on the worker's machine. The task is a Ray generator: it yields
the child's events as they happen and its TrainOutcome last, and the driver thread hands
each event to `on_event` as it arrives. Workers never open the catalog.

Stopping: the driver raises the job's flag on a small `_StopFlags` actor; the task polls
it and sets the threading.Event that `run_job` watches, so the child is killed by the
sandbox as it would be locally. Only a task that does not answer within a grace period
is force-cancelled (its worker dies, and the child with it through PDEATHSIG).

A multi-machine cluster needs, on every node: nas_agent installed in the same Python
environment, and the job's paths — data cache, checkpoints, sandbox folders beside the
catalog — on a shared file system mounted at the same path as on the driver. On a local
Ray instance all of this holds by itself.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from nas_agent.sandbox import walls
from nas_agent.search.executors import EventSink
from nas_agent.train.job import TrainJob, TrainOutcome
from nas_agent.train.sandbox import run_job

_POLL_SECONDS = 0.25          # how often the driver looks at `cancel` and the task at its flag
_STOP_GRACE_SECONDS = 10.0    # after raising the flag, wait this long before force-cancelling
_CONNECT_TIMEOUT_SECONDS = 3.0
# By default ray.init tries a cluster's GCS 20 times, each try waiting up to 5 + 5 + 30 s, so a
# port that answers TCP but is no Ray head (the dashboard's, say) holds it for many minutes.
# These make it give up after about 12 s. The C++ ones are read when ray is first imported, so
# they bound only a process that had not imported Ray before; a value the user set wins.
_CONNECT_ENV = {"RAY_gcs_server_port_wait_time_s": "2",     # tries; Python reads it at each ray.init
                "RAY_gcs_rpc_server_connect_timeout_s": "1",  # channel wait of each try (C++)
                "RAY_py_gcs_connect_timeout_s": "3"}          # cluster-id wait of each try (C++)


class RayExecutorError(ValueError):
    """Ray is missing, the cluster cannot be reached, or it cannot run the jobs asked for; one line."""


class _StopFlags:
    """A Ray actor: the driver raises a job's flag, the task training that job polls it."""

    def __init__(self):
        self._raised: set[str] = set()

    def raise_flag(self, key: str) -> None:
        self._raised.add(key)

    def is_raised(self, key: str) -> bool:
        return key in self._raised

    def clear(self, key: str) -> None:
        self._raised.discard(key)


def _train_task(job: TrainJob, workdir: str, key: str, flags, allow_unjailed: bool = False):
    """The Ray task (a generator): yields ("event", dict) as the child reports, then ("outcome", TrainOutcome).

    The child is jailed on the worker's node as it would be here; `allow_unjailed` carries the
    driver's --allow-unjailed to a node that cannot build the jail.
    """
    import ray

    if allow_unjailed:
        walls.allow_unjailed(True)

    cancel = threading.Event()
    inbox: queue.Queue = queue.Queue()

    def train() -> None:
        try:
            inbox.put(("outcome", run_job(job, workdir, on_event=lambda e: inbox.put(("event", e)), cancel=cancel)))
        except Exception as exc:  # the sandbox itself failed (disk full, fork failed): re-raised below
            inbox.put(("error", exc))

    trainer = threading.Thread(target=train, name=f"train {job.name}", daemon=True)
    trainer.start()
    checked = time.monotonic()
    try:
        while True:
            # Look at the flag every _POLL_SECONDS whether or not events keep coming: a child whose
            # epochs take less than that would otherwise never let the flag be read.
            if not cancel.is_set() and time.monotonic() - checked >= _POLL_SECONDS:
                checked = time.monotonic()
                try:
                    if ray.get(flags.is_raised.remote(key), timeout=5):
                        cancel.set()
                except ray.exceptions.RayError:
                    pass  # flags unreachable: the driver force-cancels after its grace period
            try:
                kind, payload = inbox.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            if kind == "error":
                raise payload
            yield kind, payload
            if kind == "outcome":
                return
    finally:
        # However this generator ends (an error, Ray closing it), the child must not outlive it.
        cancel.set()
        trainer.join()


def _outcome_from(name: str, events: list[dict], reason: str) -> TrainOutcome:
    """The outcome of a job whose task ended without reporting one, rebuilt from the events that arrived."""
    outcome = TrainOutcome(name=name, ok=False, reason=reason)
    for event in events:
        if event.get("event") == "started":
            outcome.n_params = event.get("n_params")
        elif event.get("event") == "epoch":
            outcome.epochs.append(event)
    return outcome


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:300]


@contextmanager
def _environment(values: dict[str, str]):
    """Set `values` in os.environ where unset, for the duration of the block."""
    added = [name for name in values if name not in os.environ]
    os.environ.update({name: values[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _check_reachable(ray, address: str) -> None:
    """Raise RayExecutorError at once when nothing listens where ray.init would connect."""
    client = address.startswith("ray://")
    try:  # resolved as ray.init does: `auto` to the running local cluster, localhost to this node's IP
        target = address.removeprefix("ray://") if client else \
            ray._private.services.canonicalize_bootstrap_address(address)
    except ValueError:
        target = ""
    except ConnectionError as exc:
        raise RayExecutorError(f"no Ray cluster at {address} ({_one_line(exc)}): start one with "
                               f"`ray start --head`, or leave the Ray address empty to start a local one") from None
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise RayExecutorError(f"bad Ray address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=_CONNECT_TIMEOUT_SECONDS).close()
    except OSError as exc:
        start = f"ray start --head --{'ray-client-server-port' if client else 'port'} {port}"
        raise RayExecutorError(f"cannot reach a Ray cluster at {address} ({exc.strerror or exc}): start one there "
                               f"with `{start}`, or leave the Ray address empty to start a local one") from None


class RayExecutor:
    """Trains each job as one Ray task with `gpus_per_job` GPUs (or `cpus_per_job` CPUs); see the module notes.

    `address` empty starts a private local Ray instance (with `num_cpus` CPUs, if given); else
    it is a running cluster's `HOST:PORT`, `ray://HOST:PORT` or `auto`. If Ray is already
    initialised in this process, that connection is used. `gpus_per_job` None takes 1 GPU per
    job when the cluster has GPUs, else none. `slots` is how many jobs the cluster runs at once.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None,
                 gpus_per_job: float | None = None, cpus_per_job: int = 1):
        if cpus_per_job < 1 or (gpus_per_job is not None and gpus_per_job < 0):
            raise RayExecutorError(f"a Ray job needs at least 1 CPU and no negative GPUs "
                                   f"(cpus_per_job={cpus_per_job}, gpus_per_job={gpus_per_job})")
        address = "" if (address or "").strip() in ("", "local") else address.strip()
        # Only while connecting: a local instance's own processes must keep Ray's defaults.
        with _environment(_CONNECT_ENV if address else {}):
            try:
                import ray
            except ImportError:
                raise RayExecutorError("the ray executor needs Ray: pip install ray") from None
            self._ray = ray
            if address:
                _check_reachable(ray, address)
            self._owns_ray = not ray.is_initialized()
            if self._owns_ray:
                self._init(address, num_cpus)
        try:
            resources = ray.cluster_resources()
            cluster_gpus, cluster_cpus = resources.get("GPU", 0.0), resources.get("CPU", 0.0)
            self.gpus_per_job = float(gpus_per_job if gpus_per_job is not None else (1 if cluster_gpus else 0))
            self.cpus_per_job = cpus_per_job
            where = f"the Ray cluster at {address}" if address else "the local Ray instance"
            if self.gpus_per_job > cluster_gpus:
                raise RayExecutorError(f"{where} has {cluster_gpus:g} GPU(s); a job asks for {self.gpus_per_job:g}")
            if cpus_per_job > cluster_cpus:
                raise RayExecutorError(f"{where} has {cluster_cpus:g} CPU(s); a job asks for {cpus_per_job}")
            slots = cluster_cpus // cpus_per_job
            if self.gpus_per_job:  # each GPU job holds its CPUs too
                slots = min(slots, cluster_gpus // self.gpus_per_job)
            self.slots = max(1, int(slots))
            self._task = ray.remote(_train_task).options(
                num_cpus=cpus_per_job, num_gpus=self.gpus_per_job, max_retries=0)
            # Zero CPUs: the flags must never wait for, or take, a slot meant for training.
            self._flags = ray.remote(_StopFlags).options(num_cpus=0).remote()
        except BaseException:
            self.close()
            raise

    def _init(self, address: str, num_cpus: int | None) -> None:
        ray = self._ray
        try:
            if address:
                ray.init(address=address, logging_level=logging.WARNING)
            else:  # "local", not None: never join a cluster found through RAY_ADDRESS or /tmp/ray
                ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
        except Exception as exc:
            if address:
                raise RayExecutorError(f"cannot connect to a Ray cluster at {address} ({_one_line(exc)}): is a Ray "
                                       f"head running there (`ray start --head`)?") from None
            raise RayExecutorError(f"cannot start a local Ray instance: {_one_line(exc)}") from None

    def _placed(self, job: TrainJob) -> TrainJob:
        """The job as a worker must see it: absolute paths, and the device Ray gave the task."""
        if self.gpus_per_job and (job.device == "auto" or job.device.startswith("cuda")):
            device = "cuda"  # Ray sets CUDA_VISIBLE_DEVICES to the task's GPUs; cuda:N means nothing there
        elif not self.gpus_per_job and job.device == "auto":
            device = "cpu"   # a worker's machine may have GPUs the task was not given
        else:
            device = job.device
        checkpoint = str(Path(job.checkpoint).resolve()) if job.checkpoint else None
        return replace(job, device=device, dataset_cache=str(Path(job.dataset_cache).resolve()),
                       checkpoint=checkpoint)

    def run(self, job: TrainJob, workdir: Path, on_event: EventSink, cancel: threading.Event) -> TrainOutcome:
        """Train `job` as a Ray task (blocking); events reach `on_event` as they happen; `cancel` stops it."""
        ray, flags = self._ray, self._flags
        key = f"{job.name}/{uuid.uuid4().hex}"
        stream = self._task.remote(self._placed(job), str(Path(workdir).resolve()), key, flags,
                                   walls.unjailed_allowed())
        events: list[dict] = []
        stop_asked: float | None = None
        finished = False
        try:
            while True:
                ready, _ = ray.wait([stream], timeout=_POLL_SECONDS)
                if ready:
                    kind, payload = ray.get(next(stream))
                    if kind == "outcome":
                        finished = True
                        return payload
                    events.append(payload)
                    on_event(payload)
                if not cancel.is_set():
                    continue
                if stop_asked is None:
                    flags.raise_flag.remote(key)
                    stop_asked = time.monotonic()
                elif time.monotonic() - stop_asked > _STOP_GRACE_SECONDS:
                    ray.cancel(stream, force=True)
                    finished = True
                    return _outcome_from(job.name, events, f"interrupted: the run was stopped (the Ray task did "
                                                           f"not stop within {_STOP_GRACE_SECONDS:g} s; its worker "
                                                           f"was killed)")
        except ray.exceptions.RayError as exc:
            finished = True
            if cancel.is_set():
                return _outcome_from(job.name, events, f"interrupted: the run was stopped ({_one_line(exc)})")
            if isinstance(exc, ray.exceptions.RayTaskError):  # an exception inside the task, not a lost worker
                return _outcome_from(job.name, events, f"ray task failed: {_one_line(exc.cause or exc)}")
            return _outcome_from(job.name, events, f"ray worker lost: {_one_line(exc)}")
        finally:
            if not finished:  # on_event raised, or KeyboardInterrupt: the task must not train on unseen
                ray.cancel(stream, force=True)
            flags.clear.remote(key)

    def close(self) -> None:
        """Stop the flags actor, and Ray itself if this executor started it."""
        ray = self._ray
        flags, self._flags = getattr(self, "_flags", None), None
        if flags is not None and ray.is_initialized():
            ray.kill(flags)
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
        self._owns_ray = False
