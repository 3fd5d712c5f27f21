"""Run one training job in a child process with a wall-clock limit and a memory limit.

The child gets its own empty working directory, a scrubbed environment, its own process
group (so a timeout kills everything it started) and dies with the driver. Whatever
happens in it — an exception, a hang, NaN, out of memory, a crash — comes back as a
TrainOutcome with a one-line reason; the driver carries on.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from nas_agent.train.job import CANDIDATE_FILE, TrainJob, TrainOutcome

# Environment variables a training child may see; everything else (tokens, keys, proxies) is dropped.
_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES", "CUDA_HOME", "LD_LIBRARY_PATH",
             "NVIDIA_VISIBLE_DEVICES", "TMPDIR")
_PR_SET_PDEATHSIG = 1
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_POLL_SECONDS = 0.25


def _child_env(workdir: Path, threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP}
    env.update(HOME=str(workdir), PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1",
               # The child must import the same nas_agent as the driver, installed or not.
               PYTHONPATH=os.pathsep.join([_PACKAGE_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]))
    if threads > 0:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _limit_child(memory_mb: int, limit_address_space: bool):
    """Runs in the child between fork and exec: die with the parent, cap memory and files."""
    def apply():
        try:  # Linux: SIGKILL the child when the driver dies, even by kill -9.
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
        if limit_address_space:  # CUDA maps far more virtual memory than it uses: CPU runs only.
            limit = memory_mb << 20
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _read_events(stream, sink: queue.Queue) -> None:
    for line in stream:
        try:
            sink.put(json.loads(line))
        except json.JSONDecodeError:
            continue
    sink.put(None)  # end of stream: the child closed its pipe or exited


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_job(job: TrainJob, workdir: str | Path, on_event: Callable[[dict], None] = lambda event: None,
            cancel: threading.Event | None = None) -> TrainOutcome:
    """Train `job` in a sandboxed child; `on_event` sees each event (started, epoch, …) as it arrives.

    Setting `cancel` kills the child; the outcome's reason then starts with "interrupted".
    """
    workdir = Path(workdir)
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / CANDIDATE_FILE).write_text(job.source)
    job_file = workdir / "job.json"
    job_file.write_text(job.to_json())
    log_path = workdir / "log.txt"

    on_gpu = job.device.startswith("cuda") or (job.device == "auto" and _cuda_visible())
    read_fd, write_fd = os.pipe()
    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nas_agent.train.worker", str(job_file), str(write_fd)],
            cwd=workdir, env=_child_env(workdir, job.threads), stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            pass_fds=(write_fd,), preexec_fn=_limit_child(job.memory_mb, not on_gpu),
        )
    os.close(write_fd)
    events: queue.Queue = queue.Queue()
    reader = threading.Thread(target=_read_events, args=(os.fdopen(read_fd), events), daemon=True)
    reader.start()

    outcome = TrainOutcome(name=job.name, ok=False)
    finished = False

    def take(event: dict) -> None:
        nonlocal finished
        kind = event.get("event")
        if kind == "started":
            outcome.n_params = event.get("n_params")
        elif kind == "epoch":
            outcome.epochs.append(event)
        elif kind == "failed":
            outcome.reason = event.get("reason", "failed")
        elif kind == "done":
            finished = True
        on_event(event)

    killed_for = None
    while True:
        try:
            event = events.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            # A grandchild holding the pipe open must not keep us waiting after the child exited.
            if proc.poll() is not None:
                break
            event = {}  # nothing new: just check the limits
        if event is None:
            break
        if event:
            take(event)
        if cancel is not None and cancel.is_set():
            killed_for = "interrupted: the run was stopped"
        elif time.monotonic() - started > job.seconds:
            killed_for = f"timeout: still running after {job.seconds:g} s (limits.seconds)"
        elif _rss_mb(proc.pid) > job.memory_mb:
            killed_for = f"out of memory: resident memory above {job.memory_mb} MB (limits.memory_mb)"
        if killed_for:
            break
    returncode = proc.wait() if not killed_for else None
    _kill_group(proc)  # the child if a limit was hit, and anything it left in its process group
    reader.join(timeout=5)
    while not events.empty():  # events that arrived while we stopped waiting
        event = events.get_nowait()
        if event:
            take(event)
    outcome.seconds = time.monotonic() - started
    outcome.log_tail = _tail(log_path)

    if killed_for:
        outcome.reason = killed_for
    elif finished and returncode == 0:
        outcome.ok = True
    elif not outcome.reason:
        outcome.reason = _exit_reason(returncode, outcome.log_tail)
    return outcome


def _exit_reason(returncode: int, log_tail: str) -> str:
    last = next((line for line in reversed(log_tail.splitlines()) if line.strip()), "")
    if returncode < 0:
        name = signal.Signals(-returncode).name
        if -returncode == signal.SIGKILL:
            return f"crashed: killed by {name} (often the system running out of memory)"
        return f"crashed: killed by {name}" + (f": {last[:300]}" if last else "")
    return f"crashed: exit code {returncode}" + (f": {last[:300]}" if last else "")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _cuda_visible() -> bool:
    # The driver never initialises CUDA itself; a device node is enough to decide.
    return Path("/dev/nvidia0").exists() or Path("/dev/nvidiactl").exists()
