"""Run untrusted candidate code in a child process with wall-clock, memory, CPU and file limits.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from nas_agent.train.job import CANDIDATE_FILE, TrainJob, TrainOutcome

# Environment variables a training child may see; everything else (tokens, keys, proxies) is dropped.
_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES", "CUDA_HOME", "LD_LIBRARY_PATH",
             "NVIDIA_VISIBLE_DEVICES")
_PR_SET_PDEATHSIG = 1
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_POLL_SECONDS = 0.25


def _child_env(workdir: Path, threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP}
    env.update(HOME=str(workdir), TMPDIR=str(workdir / "tmp"), PYTHONHASHSEED="0",
               PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1",
               # The child must import the same nas_agent as the driver, installed or not.
               PYTHONPATH=os.pathsep.join([_PACKAGE_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]))
    if threads > 0:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


@dataclass(frozen=True)
class ChildLimits:
    """Limits on one child process; None leaves a limit unset."""

    seconds: float = 3600.0              # wall clock, enforced by the driver (kills the process group)
    memory_mb: int = 16384               # resident memory (watched) and, on CPU, address space (rlimit)
    cpu_seconds: float | None = None     # CPU time (rlimit): a busy loop dies even if the clock is slow
    open_files: int | None = None        # open file descriptors (rlimit)
    file_mb: int | None = None           # largest file the child may write (rlimit)
    threads: int = 0                     # torch / OpenMP threads; 0 leaves torch's default
    seconds_key: str = ""                # the config keys behind the limits, named in the reasons
    memory_key: str = ""


def _cite(key: str) -> str:
    return f" ({key})" if key else ""


def _limit_child(limits: ChildLimits, limit_address_space: bool):
    """Runs in the child between fork and exec: die with the parent, cap memory, CPU time and files."""
    def apply():
        try:  # Linux: SIGKILL the child when the driver dies, even by kill -9.
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
        if limit_address_space:  # CUDA maps far more virtual memory than it uses: CPU runs only.
            limit = limits.memory_mb << 20
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        if limits.cpu_seconds is not None:  # SIGXCPU at the soft limit, SIGKILL at the hard one
            soft = max(1, int(limits.cpu_seconds))
            resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 5))
        if limits.open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        if limits.file_mb is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb << 20, limits.file_mb << 20))
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


@dataclass
class ChildResult:
    """What a child process left behind: its events in order and how it ended."""

    events: list[dict] = field(default_factory=list)
    returncode: int | None = None
    killed_for: str | None = None        # the limit (or cancel) that made the driver kill it
    seconds: float = 0.0
    log_tail: str = ""

    def failure(self) -> str | None:
        """None when the child ended cleanly with a `done` event, else a one-line reason."""
        if self.killed_for:
            return self.killed_for
        reported = next((e.get("reason", "failed") for e in self.events if e.get("event") == "failed"), None)
        if reported:
            return reported
        if self.returncode == 0 and any(e.get("event") == "done" for e in self.events):
            return None
        return _exit_reason(self.returncode if self.returncode is not None else -signal.SIGKILL, self.log_tail)


def run_child(worker: str, files: dict[str, str], workdir: str | Path, limits: ChildLimits, *,
              device: str = "cpu", on_event: Callable[[dict], None] = lambda event: None,
              cancel: threading.Event | None = None) -> ChildResult:
    """Run `python -m WORKER workdir/job.json EVENT_FD` in a fresh `workdir` holding `files`.

    The worker reports JSON events on the pipe EVENT_FD; `on_event` sees each as it arrives.
    Setting `cancel` kills the child; its result then says "interrupted".
    """
    workdir = Path(workdir)
    if workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "tmp").mkdir(parents=True)
    for name, text in files.items():
        (workdir / name).write_text(text)
    log_path = workdir / "log.txt"

    on_gpu = device.startswith("cuda") or (device == "auto" and _cuda_visible())
    read_fd, write_fd = os.pipe()
    started = time.monotonic()
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", worker, str(workdir / "job.json"), str(write_fd)],
                cwd=workdir, env=_child_env(workdir, limits.threads), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                pass_fds=(write_fd,), preexec_fn=_limit_child(limits, not on_gpu),
            )
    finally:
        os.close(write_fd)
    inbox: queue.Queue = queue.Queue()
    reader = threading.Thread(target=_read_events, args=(os.fdopen(read_fd), inbox), daemon=True)
    reader.start()

    result = ChildResult()

    def take(event: dict) -> None:
        result.events.append(event)
        on_event(event)

    while True:
        try:
            event = inbox.get(timeout=_POLL_SECONDS)
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
            result.killed_for = "interrupted: the run was stopped"
        elif time.monotonic() - started > limits.seconds:
            result.killed_for = f"timeout: still running after {limits.seconds:g} s{_cite(limits.seconds_key)}"
        elif _rss_mb(proc.pid) > limits.memory_mb:
            result.killed_for = (f"out of memory: resident memory above {limits.memory_mb} MB"
                                 f"{_cite(limits.memory_key)}")
        if result.killed_for:
            break
    result.returncode = proc.wait() if not result.killed_for else None
    _kill_group(proc)  # the child if a limit was hit, and anything it left in its process group
    reader.join(timeout=5)
    while not inbox.empty():  # events that arrived while we stopped waiting
        event = inbox.get_nowait()
        if event:
            take(event)
    result.seconds = time.monotonic() - started
    result.log_tail = _tail(log_path)
    if result.returncode is not None and -result.returncode == signal.SIGXCPU:
        result.killed_for = f"timeout: CPU time above {limits.cpu_seconds:g} s{_cite(limits.seconds_key)}"
    return result


def run_job(job: TrainJob, workdir: str | Path, on_event: Callable[[dict], None] = lambda event: None,
            cancel: threading.Event | None = None) -> TrainOutcome:
    """Train `job` in a sandboxed child; `on_event` sees each event (started, epoch, …) as it arrives.

    Setting `cancel` kills the child; the outcome's reason then starts with "interrupted".
    """
    limits = ChildLimits(seconds=job.seconds, memory_mb=job.memory_mb, threads=job.threads,
                         file_mb=max(1024, job.memory_mb), seconds_key="limits.seconds",
                         memory_key="limits.memory_mb")
    result = run_child("nas_agent.train.worker", {CANDIDATE_FILE: job.source, "job.json": job.to_json()},
                       workdir, limits, device=job.device, on_event=on_event, cancel=cancel)
    outcome = TrainOutcome(name=job.name, ok=False, seconds=result.seconds, log_tail=result.log_tail)
    for event in result.events:
        if event.get("event") == "started":
            outcome.n_params = event.get("n_params")
        elif event.get("event") == "epoch":
            outcome.epochs.append(event)
    reason = result.failure()
    outcome.ok, outcome.reason = reason is None, reason or ""
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
