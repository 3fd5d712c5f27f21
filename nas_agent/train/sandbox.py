"""Run untrusted candidate code in a child process with wall-clock, memory, CPU and file limits.

The child gets its own empty working directory, a scrubbed environment, its own process
group (so a timeout kills everything it started) and dies with the driver. Whatever
happens in it — an exception, a hang, NaN, out of memory, a crash — comes back as a
TrainOutcome with a one-line reason; the driver carries on.
"""

from __future__ import annotations

import atexit
import ctypes
import itertools
import os
import queue
import resource
import select
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from nas_agent.sandbox import seccomp, walls
from nas_agent.sandbox.cgroups import ChildGroup
from nas_agent.sandbox.jail import PACKAGE_ROOT, JailSpec, exit_status, jail_argv
from nas_agent.tasks import is_generative
from nas_agent.train.events import (MAX_EVENTS, MAX_LINE_BYTES, MAX_TOTAL_BYTES, TRAIN_EVENTS, ProtocolError, check,
                                    parse_line, quote_untrusted)
from nas_agent.train.job import CANDIDATE_FILE, TrainJob, TrainOutcome
from nas_agent.train.score import (LOGITS_FILE, LOGPROB_FILE, PARAMETERS_FILE, PROBE_FILE, VALUES, ChildView,
                                   Probes, ScoreError, TestScore, check_probes, count_parameters, read_float32,
                                   score_log_probs, score_logits, write_child_view)

# Environment variables a training child may see; everything else (tokens, keys, proxies) is dropped.
_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES", "CUDA_HOME", "LD_LIBRARY_PATH",
             "NVIDIA_VISIBLE_DEVICES")
_PR_SET_PDEATHSIG = 1
_POLL_SECONDS = 0.25


def _child_env(workdir: Path, threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP}
    env.update(HOME=str(workdir), TMPDIR=str(workdir / "tmp"), PYTHONHASHSEED="0",
               PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1",
               # The child must import the same nas_agent as the driver, installed or not.
               PYTHONPATH=os.pathsep.join([PACKAGE_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]))
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
    folder_mb: int | None = None         # all it may keep in its job folder and writable folders (watchdog)
    threads: int = 0                     # torch / OpenMP threads; 0 leaves torch's default
    seconds_key: str = ""                # the config keys behind the limits, named in the reasons
    memory_key: str = ""


def _cite(key: str) -> str:
    return f" ({key})" if key else ""


_spare_ids = itertools.count()
_next_core = itertools.count()   # children started one after another take the next cores, so two jobs do not share one


def _cores_for(threads: int) -> list[int]:
    """`threads` of this process's cores for the next child, taken round-robin; all of them when threads is 0."""
    cores = sorted(os.sched_getaffinity(0))
    if threads <= 0 or threads >= len(cores):
        return []
    start = next(_next_core) * threads
    return [cores[(start + i) % len(cores)] for i in range(threads)]


_MAX_TASKS = 512   # processes and threads of one child's cgroup: torch's pools, never a flood


def _limit_child(limits: ChildLimits, limit_address_space: bool, group: ChildGroup | None = None):
    """Runs in the child between fork and exec: join its cgroups, die with the parent, cap memory, CPU time,
    files and cores."""
    cpus = _cores_for(limits.threads)

    def apply():
        if group is not None:
            group.join()
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
        if cpus:  # torch.set_num_threads(32) inside cannot take more cores (the jail refuses sched_setaffinity)
            os.sched_setaffinity(0, cpus)
    return apply


def _rss_mb(pid: int) -> float:
    """Resident memory of `pid` and all its descendants, in MB (in the jail: bwrap, its init, the worker)."""
    total, todo, seen = 0.0, [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) / 1024
                        break
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    todo += [int(c) for c in children.read().split()]
        except (OSError, ValueError):
            continue
    return total


def _read_events(stream, sink: queue.Queue) -> None:
    """Put each JSON line of the child's pipe on `sink`, bounded in line size, total size and count.

    A line that breaks the protocol is put as a ProtocolError, after which nothing more is read.
    """
    total, count, pending = 0, 0, b""
    try:
        while True:
            chunk = stream.read1(1 << 16)
            if not chunk:
                break
            total += len(chunk)
            if total > MAX_TOTAL_BYTES:
                raise ProtocolError(f"more than {MAX_TOTAL_BYTES:,} bytes of messages")
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if len(pending) > MAX_LINE_BYTES:
                raise ProtocolError(f"a message of more than {MAX_LINE_BYTES:,} bytes")
            for line in lines:
                if line.strip():
                    count += 1
                    if count > MAX_EVENTS:
                        raise ProtocolError(f"more than {MAX_EVENTS:,} messages")
                    sink.put(parse_line(line))
    except ProtocolError as exc:
        sink.put(exc)
    except Exception as exc:  # whatever else a message does to a parser ends that child, never this thread silently
        sink.put(ProtocolError(f"an unreadable message ({type(exc).__name__})"))
    sink.put(None)  # end of stream: the child closed its pipe or exited


def _tail(path: Path, lines: int = 20, max_bytes: int = 4096) -> str:
    """The last lines of a log the driver owns, reading at most its last `max_bytes` (it may be huge or sparse)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return ""
        os.lseek(fd, max(0, info.st_size - max_bytes), os.SEEK_SET)
        text = os.read(fd, max_bytes).decode(errors="replace")
    finally:
        os.close(fd)
    return "\n".join(text.splitlines()[-lines:])


def _folder_mb(folders, max_entries: int = 20_000) -> float:
    """Bytes the child keeps in `folders`, in MB; infinite past `max_entries` files (a flood of empty files)."""
    total, entries, todo = 0, 0, [str(f) for f in folders]
    while todo:
        try:
            with os.scandir(todo.pop()) as scan:
                for entry in scan:
                    entries += 1
                    if entries > max_entries:
                        return float("inf")
                    if entry.is_dir(follow_symlinks=False):
                        todo.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_blocks * 512  # sparse files count as stored
        except OSError:
            continue
    return total / (1 << 20)


def _write_exec_lock(workdir: Path, full: bool) -> None:
    """Leave the compiled exec-lock filter for the worker to load before candidate code (nas_agent.sandbox.seccomp).

    Unjailed (`full`), it carries the jail's rules as well. Without libseccomp on the driver there is none.
    """
    if seccomp.available()[0]:
        (workdir / seccomp.EXEC_LOCK_FILE).write_bytes(seccomp.exec_lock_bpf(full))


def log_path_of(workdir: str | Path) -> Path:
    """Where a child's stdout and stderr go: beside its job folder, outside the jail's view."""
    workdir = Path(workdir)
    return workdir.parent / f"{workdir.name}.log"


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


@dataclass
class _Spawned:
    """A started child: its process, the read end of its event pipe, and the start pipe of a warm one."""

    proc: subprocess.Popen
    events_fd: int
    jailed: bool
    go_fd: int | None = None        # warm children wait for a line here before they read job.json
    group: ChildGroup | None = None  # its cgroups, where the host lets us make them


def _spawn(worker: str, workdir: Path, limits: ChildLimits, *, on_gpu: bool, jailed: bool,
           readable: Sequence[str | Path] = (), writable: Sequence[str | Path] = (),
           warm: bool = False) -> _Spawned:
    """Start `python -m WORKER workdir/job.json EVENT_FD [GO_FD]` in `workdir`, jailed when `jailed`."""
    read_fd, write_fd = os.pipe()
    go_read, go_write = os.pipe() if warm else (None, None)
    command = [sys.executable, "-m", worker, str(workdir / "job.json"), str(write_fd)]
    env, pass_fds, seccomp_fd = _child_env(workdir, limits.threads), [write_fd], None
    if go_read is not None:
        command.append(str(go_read))
        pass_fds.append(go_read)
    group = ChildGroup.create(limits.memory_mb, _MAX_TASKS)
    try:
        if jailed:
            for folder in writable:
                Path(folder).mkdir(parents=True, exist_ok=True)
            seccomp_fd = seccomp.jail_filter_fd()
            pass_fds.append(seccomp_fd)
            spec = JailSpec(writable=tuple(map(str, [workdir, *writable])), readable=tuple(map(str, readable)),
                            cuda=on_gpu, env=env)
            command = jail_argv(spec, command, seccomp_fd=seccomp_fd)
        with open(log_path_of(workdir), "wb") as log:
            proc = subprocess.Popen(
                command, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                pass_fds=tuple(pass_fds), preexec_fn=_limit_child(limits, not on_gpu, group),
            )
    except BaseException:
        if group is not None:
            group.close()
        os.close(read_fd)
        if go_write is not None:
            os.close(go_write)
        raise
    finally:
        os.close(write_fd)
        if go_read is not None:
            os.close(go_read)
        if seccomp_fd is not None:
            os.close(seccomp_fd)
    return _Spawned(proc, read_fd, jailed, go_write, group)


def _fresh_folder(workdir: Path, jailed: bool) -> None:
    if workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "tmp").mkdir(parents=True)
    _write_exec_lock(workdir, full=not jailed)


class _WarmSpares:
    """Jailed children started ahead of need, waiting with torch imported: a smoke run starts in milliseconds.

    A spare is a whole jail of its own (namespaces, its own folder, the same limits) started
    before its candidate is known; taking it moves its folder to the job's path (a rename:
    the jail's bind follows the folder), writes the job there and tells it to go. Spares are
    started by one long-lived thread (a child dies with the thread that started it) and killed
    when the driver exits; at most `most` wait at a time.
    """

    def __init__(self, most: int = 2):
        self.most = most
        self.lock = threading.Lock()
        self.waiting: dict[tuple, tuple[Path, _Spawned]] = {}
        self.requests: queue.Queue = queue.Queue()
        self.thread: threading.Thread | None = None

    def take(self, key: tuple, workdir: Path) -> _Spawned | None:
        """The spare for `key` moved to `workdir`, or None (none ready, it died, or another file system)."""
        with self.lock:
            found = self.waiting.pop(key, None)
        if found is None:
            return None
        folder, child = found
        try:
            if child.proc.poll() is not None or os.stat(folder.parent).st_dev != os.stat(workdir.parent).st_dev:
                raise OSError("spare not usable")
            if workdir.exists():
                shutil.rmtree(workdir)
            os.rename(folder, workdir)
            if log_path_of(folder).exists():
                os.replace(log_path_of(folder), log_path_of(workdir))
        except OSError:
            self._discard(folder, child)
            return None
        return child

    def request(self, key: tuple, folder: Path, spawn: Callable[[], _Spawned]) -> None:
        """Have a spare for `key` started in `folder` (by the spares' own thread)."""
        if self.thread is None:
            self.thread = threading.Thread(target=self._serve, name="warm-spares", daemon=True)
            self.thread.start()
        self.requests.put((key, folder, spawn))

    def _serve(self) -> None:
        while True:
            key, folder, spawn = self.requests.get()
            with self.lock:
                if key in self.waiting:
                    continue
                while len(self.waiting) >= self.most:  # the oldest spare makes room
                    self._discard(*self.waiting.pop(next(iter(self.waiting))))
            try:
                child = spawn()
            except OSError:
                continue
            # Only a spare whose jail is up may be taken: before bwrap has bound its folder, moving
            # the folder would pull it from under bwrap. The worker says so in one line, then waits.
            if not self._ready(child):
                self._discard(folder, child)
                continue
            with self.lock:
                self.waiting[key] = (folder, child)

    @staticmethod
    def _ready(child: _Spawned, seconds: float = 300.0) -> bool:
        line, deadline = b"", time.monotonic() + seconds
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([child.events_fd], [], [], left)[0]:
                return False
            chunk = os.read(child.events_fd, 64 - len(line))  # the one line, nothing after it
            if not chunk or len(line) + len(chunk) >= 64:
                return False
            line += chunk
        return line.strip() == b'{"event": "ready"}'

    def _discard(self, folder: Path, child: _Spawned) -> None:
        _kill_group(child.proc)
        if child.group is not None:
            child.group.close()
        for fd in (child.events_fd, child.go_fd):
            if fd is not None:
                os.close(fd)
        shutil.rmtree(folder, ignore_errors=True)
        log_path_of(folder).unlink(missing_ok=True)

    def close(self) -> None:
        with self.lock:
            waiting, self.waiting = list(self.waiting.values()), {}
        for folder, child in waiting:
            self._discard(folder, child)


_SPARES = _WarmSpares()
atexit.register(_SPARES.close)


def run_child(worker: str, files: dict[str, str], workdir: str | Path, limits: ChildLimits, *,
              device: str = "cpu", on_event: Callable[[dict], None] = lambda event: None,
              cancel: threading.Event | None = None, readable: Sequence[str | Path] = (),
              writable: Sequence[str | Path] = (), warm: bool = False) -> ChildResult:
    """Run `python -m WORKER workdir/job.json EVENT_FD` in a fresh `workdir` holding `files`.

    The child runs in a bubblewrap jail (nas_agent.sandbox): it sees Python, the package,
    `readable` (read-only), `workdir` and `writable` (read-write), and nothing else of the host.
    Where the host cannot build the jail, the child is refused unless allow_unjailed(True) was
    called or NAS_AGENT_ALLOW_UNJAILED=1 is set.
    The worker reports JSON events on the pipe EVENT_FD; `on_event` sees each as it arrives.
    Setting `cancel` kills the child; its result then says "interrupted".
    With `warm` (a worker that reads its job only when told to go, and needs no other folder),
    a jailed spare started earlier is taken when one waits, and another is started for the next call.
    """
    walls_here = walls.probe()
    if not walls_here.jail_ok and not walls.unjailed_allowed():
        return ChildResult(killed_for=f"refused: this host cannot jail candidate code ({walls_here.why_not()}); "
                                      "pass --allow-unjailed to run it without OS isolation")
    workdir = Path(workdir).resolve()  # the jail binds real paths, and job.json names them
    on_gpu = device.startswith("cuda") or (device == "auto" and _cuda_visible())
    jailed = walls_here.jail_ok
    # Unjailed, the child sees host paths, so a spare's folder cannot move under it.
    warm = warm and jailed and not readable and not writable
    key = (worker, limits, on_gpu)
    child = _SPARES.take(key, workdir) if warm else None
    started = time.monotonic()
    if child is None:
        _fresh_folder(workdir, jailed)
        for name, text in files.items():
            (workdir / name).write_text(text)
        child = _spawn(worker, workdir, limits, on_gpu=on_gpu, jailed=jailed, readable=readable, writable=writable)
    else:
        for name, text in files.items():
            (workdir / name).write_text(text)
        os.write(child.go_fd, b"go\n")
        os.close(child.go_fd)
    if warm:
        spare = workdir.parent / f".spare-{os.getpid()}-{next(_spare_ids)}"

        def spawn() -> _Spawned:
            _fresh_folder(spare, jailed)
            return _spawn(worker, spare, limits, on_gpu=on_gpu, jailed=True, warm=True)
        _SPARES.request(key, spare, spawn)
    proc, read_fd, log_path = child.proc, child.events_fd, log_path_of(workdir)
    inbox: queue.Queue = queue.Queue()
    reader = threading.Thread(target=_read_events, args=(os.fdopen(read_fd, "rb"), inbox), daemon=True)
    reader.start()

    result = ChildResult()

    def take(event: dict | ProtocolError) -> None:
        # A broken message, or one `on_event` refuses (ProtocolError), ends this child: never the driver.
        try:
            if isinstance(event, ProtocolError):
                raise event
            on_event(event)
        except ProtocolError as exc:
            what = "" if isinstance(exc, OutputRefused) else "the child broke the event protocol: "
            result.killed_for = result.killed_for or f"failed: {what}{exc}"
            return
        result.events.append(event)

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
        if result.killed_for:
            break
        if cancel is not None and cancel.is_set():
            result.killed_for = "interrupted: the run was stopped"
        elif time.monotonic() - started > limits.seconds:
            result.killed_for = f"timeout: still running after {limits.seconds:g} s{_cite(limits.seconds_key)}"
        elif _rss_mb(proc.pid) > limits.memory_mb:
            result.killed_for = (f"out of memory: resident memory above {limits.memory_mb} MB"
                                 f"{_cite(limits.memory_key)}")
        elif limits.folder_mb is not None and _folder_mb([workdir, *writable]) > limits.folder_mb:
            result.killed_for = f"out of disk: its folders hold more than {limits.folder_mb} MB"
        if result.killed_for:
            break
    result.returncode = proc.wait() if not result.killed_for else None
    if jailed and result.returncode is not None:  # bwrap says 128+N for a command killed by signal N
        result.returncode = exit_status(result.returncode)
    _kill_group(proc)  # the child if a limit was hit, and anything it left in its process group
    if child.group is not None:
        if not result.killed_for and child.group.oom_killed():
            result.killed_for = (f"out of memory: its processes went over {limits.memory_mb} MB "
                                 f"(cgroup){_cite(limits.memory_key)}")
        child.group.close()
    reader.join(timeout=5)
    while not inbox.empty() and not result.killed_for:  # events that arrived while we stopped waiting
        event = inbox.get_nowait()
        if event:
            take(event)
    result.seconds = time.monotonic() - started
    result.log_tail = _tail(log_path)
    if result.returncode is not None and -result.returncode == signal.SIGXCPU:
        result.killed_for = f"timeout: CPU time above {limits.cpu_seconds:g} s{_cite(limits.seconds_key)}"
    return result


class OutputRefused(ProtocolError):
    """The files a child left for an epoch cannot be scored (missing, malformed, or failing a check)."""


class _EpochScorer:
    """Driver side of a training child: checks each event, scores each epoch from the files it left.

    The child's words pass only as telemetry of a known schema; the catalog's numbers (test
    accuracy and loss, parameter count, seconds) are computed here.
    """

    def __init__(self, job: TrainJob, workdir: Path, view: ChildView, on_event: Callable[[dict], None]):
        self.job, self.workdir, self.view, self.on_event = job, workdir, view, on_event
        self.outcome = TrainOutcome(name=job.name, ok=False)
        self.probes = Probes.from_dict(job.probes) if job.probes else None
        self.classes = int(np.prod(job.out_shape))
        # The epochs this job must reach: a paused one (successive halving) stops at until_epoch.
        self.epochs_total = int(min(job.until_epoch or job.train.get("epochs", 1), job.train.get("epochs", 1)))
        self.mark = time.monotonic()
        self.started = self.done = False
        self.failed: str | None = None

    def relay(self, raw: dict) -> None:
        event = check(raw, TRAIN_EVENTS)
        kind = event["event"]
        if kind == "started":
            if self.started:
                raise ProtocolError("a second started event")
            self.started, self.mark = True, time.monotonic()
            try:
                self.outcome.n_params = count_parameters(self.workdir / PARAMETERS_FILE)
            except ScoreError as exc:
                raise ProtocolError(f"no parameter file: {exc}") from None
            event = {**event, "n_params": self.outcome.n_params}
        elif kind == "epoch":
            event = self._score(event)
            self.outcome.epochs.append(event)
        elif kind == "done":
            self.done = True
        elif kind == "failed":
            self.failed = _quoted_failure(event["stage"], event["reason"])
            event = {**event, "reason": self.failed}
        self.on_event(event)

    def _score(self, event: dict) -> dict:
        if not self.started:
            raise ProtocolError("an epoch before the started event")
        epoch = event["epoch"]
        previous = self.outcome.epochs[-1]["epoch"] if self.outcome.epochs else None
        # The child continues after the epoch the catalog holds, or starts over when its checkpoint is not that one.
        allowed = {previous + 1} if previous is not None else {1, (self.job.resume_epoch or 0) + 1}
        if epoch not in allowed or epoch > self.epochs_total:
            raise ProtocolError(f"epoch {epoch} out of order")
        now = time.monotonic()
        seconds, self.mark = now - self.mark, now
        try:
            score = self._score_files(epoch)
        except ScoreError as exc:
            raise OutputRefused(f"the scorer refused epoch {epoch}: {exc}") from None
        # The child's own test numbers, if it sent any, are replaced: only these are recorded.
        return {**event, "seconds": seconds, "test_accuracy": score.accuracy, "test_loss": score.loss}

    def _score_files(self, epoch: int) -> TestScore:
        images = self.view.test_images
        if self.probes is None:
            logits = read_float32(self.workdir / LOGITS_FILE.format(epoch=epoch), (len(images), self.classes))
            return score_logits(logits, self.view.test_labels)
        dims = int(np.prod(images.shape[1:]))
        log_probs = read_float32(self.workdir / LOGPROB_FILE.format(epoch=epoch), (len(images), dims))
        probe_logits = read_float32(self.workdir / PROBE_FILE.format(epoch=epoch),
                                    (self.probes.n_images, len(self.probes.flat_positions), VALUES))
        score = score_log_probs(log_probs)
        check_probes(self.probes, probe_logits, log_probs, images)
        return score


def _quoted_failure(stage: str, reason: str) -> str:
    """A child's failure as a reason: what happened in the driver's words, the child's as quoted data."""
    words = " ".join(reason.split()).lower()
    kind = "out of memory: " if "out of memory" in words or "can't allocate memory" in words else ""
    where = "set-up failed" if stage == "setup" else "the candidate raised"
    return f"{kind}{where}: {quote_untrusted(reason)}"


def run_job(job: TrainJob, workdir: str | Path, on_event: Callable[[dict], None] = lambda event: None,
            cancel: threading.Event | None = None) -> TrainOutcome:
    """Train `job` in a sandboxed child and score it here; `on_event` sees each checked event as it arrives.

    The child sees the training images with labels and the test images without; each `epoch`
    event passed to `on_event` carries the test accuracy and loss computed by the driver.
    Setting `cancel` kills the child; the outcome's reason then starts with "interrupted".
    """
    workdir = Path(workdir)
    seed = int(job.train.get("seed", 0))
    view = write_child_view(job.dataset_cache, job.train_subset, job.test_subset, seed, workdir.parent / ".views")
    if is_generative(job.task):  # fresh probes per job: where a generator's logits are checked
        job = replace(job, probes=Probes.pick(view.test_images, seed=int.from_bytes(os.urandom(4), "little")).to_dict())
    child_job = replace(job, dataset_cache=str(view.path.resolve()), train_subset=0, test_subset=0)
    scorer = _EpochScorer(job, workdir, view, on_event)
    limits = ChildLimits(seconds=job.seconds, memory_mb=job.memory_mb, threads=job.threads,
                         file_mb=max(1024, job.memory_mb), folder_mb=2 * max(1024, job.memory_mb) + 1024,
                         seconds_key="limits.seconds",
                         memory_key="limits.memory_mb")
    result = run_child("nas_agent.train.worker", {CANDIDATE_FILE: job.source, "job.json": child_job.to_json()},
                       workdir, limits, device=job.device, on_event=scorer.relay, cancel=cancel,
                       readable=[view.path, *([job.init_from] if job.init_from else [])],
                       writable=[Path(job.checkpoint).parent] if job.checkpoint else [])
    outcome = scorer.outcome
    outcome.seconds, outcome.log_tail = result.seconds, result.log_tail
    if result.killed_for:
        reason = result.killed_for
    elif scorer.failed:
        reason = scorer.failed
    elif result.returncode == 0 and scorer.done:
        missing = scorer.epochs_total - (outcome.epochs[-1]["epoch"] if outcome.epochs else (job.resume_epoch or 0))
        reason = f"failed: the child said done with {missing} epoch(s) not trained" if missing > 0 else None
    else:
        reason = _exit_reason(result.returncode if result.returncode is not None else -signal.SIGKILL,
                              result.log_tail)
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
