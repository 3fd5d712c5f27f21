"""The OS walls around candidate code: every file in tests/hostile/escape/ tries to get out of its jail.

Each attack first takes the in-process audit hook apart (where it needs to), so only the OS walls
(bubblewrap's namespaces and read-only mounts, seccomp, Landlock, rlimits, the driver's watchdog)
stand between it and the host. It runs through the real smoke run, with no static policy in
front. What it reached is judged from outside wherever the test can see it: planted secrets,
files outside the job folder, surviving processes, loopback listeners, the driver's limits,
the package's files. Each attack also writes `proof.json` naming any wall it saw give way.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from nas_agent.catalog import Catalog
from nas_agent.sandbox import walls
from nas_agent.train.sandbox import log_path_of
from nas_agent.validate import SmokeLimits, smoke_test

from conftest import corpus_header, run_nas_agent

pytestmark = pytest.mark.sandbox

ESCAPE = Path(__file__).resolve().parent / "hostile" / "escape"
CORPUS = sorted(ESCAPE.glob("*.py"))
SECRET = "NAS-AGENT-SECRET-"
MARKER = "nas-agent-escape-marker"
UDP_PORT, TCP_PORT, ABSTRACT = 47801, 47802, "\0nas-agent-escape"


def test_this_host_can_jail_candidates():
    here = walls.probe()
    assert here.jail_ok, f"the jail cannot be built here: {here.why_not()} (CI installs bubblewrap)"


def test_the_escape_corpus_names_its_attack_and_the_wall_for_each_file():
    assert len(CORPUS) >= 30
    headers = [corpus_header(p) for p in CORPUS]
    assert all(h.get("class") == "escape" and h.get("attack") and h.get("wall") for h in headers)


class _Listeners:
    """Loopback UDP and TCP ports and an abstract unix socket; they remember whatever reaches them."""

    def __init__(self):
        self.received: list[str] = []
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", UDP_PORT))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", TCP_PORT))
        self.tcp.listen()
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind(ABSTRACT)
        self.unix.listen()
        for sock, name in ((self.udp, "udp"), (self.tcp, "tcp"), (self.unix, "unix")):
            threading.Thread(target=self._serve, args=(sock, name), daemon=True).start()

    def _serve(self, sock: socket.socket, name: str) -> None:
        while True:
            try:
                if name == "udp":
                    data, _ = sock.recvfrom(4096)
                    self.received.append(f"udp: {data!r}")
                else:
                    conn, _ = sock.accept()
                    self.received.append(f"{name}: a connection")
                    conn.close()
            except OSError:
                return

    def close(self) -> None:
        for sock in (self.udp, self.tcp, self.unix):
            sock.close()


@pytest.fixture(scope="module")
def listeners():
    found = _Listeners()
    yield found
    found.close()


def _fingerprint(path: Path) -> tuple:
    info = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), info.st_mode, info.st_mtime_ns, info.st_nlink


def _marked_processes() -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if MARKER.encode() in cmdline and str(os.getpid()) != pid:
            found.append(f"{pid}: {cmdline[:120]!r}")
    return found


def _escaped_files(*roots: Path) -> list[str]:
    found = []
    for root in roots:
        try:
            found += [str(p) for p in root.iterdir() if p.name.startswith(("nas-agent-escaped", "hoard"))]
        except OSError:
            continue
    return found


@pytest.mark.slow
@pytest.mark.parametrize("attack", CORPUS, ids=[p.stem for p in CORPUS])
def test_an_escape_attempt_reaches_nothing_outside_its_job_folder(attack, tmp_path, monkeypatch, listeners):
    import nas_agent
    import nas_agent.train.score as score
    import torch

    token = uuid.uuid4().hex
    secret = f"{SECRET}{token}"
    monkeypatch.setenv("NAS_AGENT_SECRET", secret)        # the driver's environment
    planted = [tmp_path / "catalog.sqlite", tmp_path / "jobs" / "other-job" / "candidate.py",
               tmp_path / "checkpoints" / "rival" / "checkpoint.pt", Path(f"/tmp/nas-agent-secret-{token}.txt")]
    for path in planted:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secret)
    package = [Path(score.__file__), Path(nas_agent.__file__), Path(torch.__file__), Path(json.__file__)]
    before = {p: _fingerprint(p) for p in planted + package}
    cpu_limit = resource.getrlimit(resource.RLIMIT_CPU)
    bystander = subprocess.Popen(["sleep", "120"])
    listeners.received.clear()
    workdir = tmp_path / "jobs" / attack.stem
    try:
        result = smoke_test(attack.read_text(), workdir, SmokeLimits(seconds=60))
        marked = _marked_processes()
        alive = bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
        planted[-1].unlink(missing_ok=True)
    for pid_line in marked:  # do not leave an escaped process behind, whatever the verdict
        subprocess.run(["kill", "-9", pid_line.split(":")[0]], check=False)

    proof = workdir / "proof.json"
    assert proof.is_file(), f"the attack never ran: {result.verdict}"
    assert json.loads(proof.read_text())["achieved"] == [], result.verdict
    assert "\n" not in result.verdict.reason
    left = [p for p in workdir.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    log = log_path_of(workdir)
    assert not left and secret.encode() not in log.read_bytes()
    assert {p: _fingerprint(p) for p in planted[:-1] + package} == {p: before[p] for p in planted[:-1] + package}
    assert not _escaped_files(Path("/tmp"), Path("/var/tmp"), Path("/"), tmp_path, tmp_path / "jobs",
                              Path("/dev/shm"))
    assert not (workdir / "exec-proof").exists()
    assert not marked
    assert listeners.received == []
    assert alive, "a process outside the jail was killed"
    assert resource.getrlimit(resource.RLIMIT_CPU) == cpu_limit
    assert log.stat().st_size <= (16 << 20) + (64 << 10)   # the smoke run's RLIMIT_FSIZE


@pytest.mark.slow
def test_the_disk_filler_is_stopped_by_the_watchdog(tmp_path):
    result = smoke_test((ESCAPE / "fills_the_disk.py").read_text(), tmp_path / "job", SmokeLimits(seconds=60))
    assert not result.verdict.ok and "out of disk" in result.verdict.reason, result.verdict


def test_without_a_jail_candidates_are_refused_unless_allowed(tmp_path, monkeypatch):
    missing = walls.Walls((walls.Wall("bubblewrap", False, "bwrap is not installed", True),))
    monkeypatch.setattr(walls, "probe", lambda: missing)
    monkeypatch.delenv("NAS_AGENT_ALLOW_UNJAILED", raising=False)
    attack = (ESCAPE / "fork_exec_survivor.py").read_text()

    refused = smoke_test(attack, tmp_path / "refused", SmokeLimits(seconds=60))
    assert not refused.verdict.ok and "cannot jail candidate code" in refused.verdict.reason
    assert "bwrap is not installed" in refused.verdict.reason and not (tmp_path / "refused").exists()

    # Allowed, the child runs without namespaces, but still under the full seccomp filter the driver compiled.
    monkeypatch.setenv("NAS_AGENT_ALLOW_UNJAILED", "1")
    ran = smoke_test(attack, tmp_path / "allowed", SmokeLimits(seconds=60))
    assert json.loads((tmp_path / "allowed" / "proof.json").read_text())["achieved"] == [], ran.verdict
    assert not _marked_processes()


@pytest.mark.slow
def test_escapes_through_the_validate_and_train_commands_reach_nothing(tmp_path, cli_env):
    chosen = ("writes_everywhere", "walks_for_secrets", "fork_exec_survivor", "torch_save_outside", "reads_other_jobs")
    folder = tmp_path / "in"
    folder.mkdir()
    for name in chosen:
        (folder / f"{name}.py").write_text((ESCAPE / f"{name}.py").read_text())
    config = tmp_path / "open.toml"
    config.write_text('device = "cpu"\n[train]\nepochs = 1\nbatch_size = 50\n[data]\ntrain_subset = 200\n'
                      'test_subset = 100\n[limits]\nseconds = 120\nmemory_mb = 4096\nthreads = 1\n'
                      '[policy]\nenabled = false\n')
    token = uuid.uuid4().hex
    planted = [tmp_path / "planted-secret.txt", Path(f"/tmp/nas-agent-secret-{token}.txt")]
    for path in planted:
        path.write_text(f"{SECRET}{token}")
    try:
        checked = run_nas_agent("validate", folder, "--smoke", "--config", config, env=cli_env, check=False,
                                timeout=600)
        trained = run_nas_agent("train", folder / "writes_everywhere.py", "--config", config, "--no-smoke",
                                "--catalog", tmp_path / "catalog.sqlite", env=cli_env, check=False, timeout=600)
        marked = _marked_processes()
        contents = [path.read_text() for path in planted]
    finally:
        planted[-1].unlink(missing_ok=True)
    # Verdicts, not crashes: each attack ends as a verdict or a recorded training, whatever it tried.
    assert checked.returncode in (0, 1) and "Traceback" not in checked.stderr, checked.stderr[-2000:]
    assert "of 5 passed" in checked.stdout
    assert trained.returncode in (0, 1) and "Traceback" not in trained.stderr, trained.stderr[-2000:]
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        assert [m["status"] for m in catalog.models()] in (["done"], ["failed"])
    proofs = list(tmp_path.rglob("proof.json"))
    assert proofs and all(json.loads(p.read_text())["achieved"] == [] for p in proofs)
    assert contents == [f"{SECRET}{token}"] * 2 and not marked
    assert not _escaped_files(Path("/tmp"), Path("/var/tmp"), tmp_path, tmp_path / "in")


def _spares(folder: Path) -> set[str]:
    return {p.name for p in folder.glob(".spare-*") if p.is_dir()}


def _spares_ready() -> int:
    """Spares whose jail is up and warm (a spare's folder exists from its start, before it can be taken)."""
    from nas_agent.train import sandbox

    with sandbox._SPARES.lock:
        return len(sandbox._SPARES.waiting)


def _wait_for(condition, seconds: float = 120.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_a_smoke_run_takes_a_warm_spare_jail_and_leaves_another(tmp_path, small_candidate):
    """The spare is a whole jail started before its candidate was known; taking it moves its folder."""
    from nas_agent.train import sandbox

    sandbox._SPARES.close()  # none from earlier tests: this one's first run starts cold
    source = small_candidate.read_text()
    first = smoke_test(source, tmp_path / "first", SmokeLimits(seconds=60))
    assert first.verdict.ok, first.verdict
    assert _wait_for(lambda: _spares_ready() == 1), "no spare was started"
    (spare,) = _spares(tmp_path)
    second = smoke_test(source, tmp_path / "second", SmokeLimits(seconds=60))
    assert second.verdict.ok, second.verdict
    assert (second.n_params, second.struct_hash) == (first.n_params, first.struct_hash)
    # The spare's folder became the second job's (its files are there), and a new spare waits.
    assert spare not in _spares(tmp_path) and (tmp_path / "second" / "parameters.json").is_file()
    assert _wait_for(lambda: _spares_ready() == 1)
    # A run that asks for no spare starts its own jail and leaves the waiting one alone.
    waiting = _spares(tmp_path)
    cold = smoke_test(source, tmp_path / "cold", SmokeLimits(seconds=60, warm=False))
    assert cold.verdict.ok and _spares(tmp_path) == waiting
    sandbox._SPARES.close()  # a discarded spare is killed and its folder removed
    assert _spares(tmp_path) == set() and not list(tmp_path.glob(".spare-*.log"))


def test_a_spare_runs_a_hostile_job_inside_its_own_walls(tmp_path, small_candidate):
    """Through a spare, a job is as walled in as through a fresh jail: its neighbours stay out of reach."""
    from nas_agent.train import sandbox

    sandbox._SPARES.close()  # the spare this test waits for is the one its warm-up run leaves
    attack = (ESCAPE / "reads_other_jobs.py").read_text()
    secret = f"{SECRET}{uuid.uuid4().hex}"
    (tmp_path / "jobs" / "other-job").mkdir(parents=True)
    (tmp_path / "jobs" / "other-job" / "candidate.py").write_text(secret)
    assert smoke_test(small_candidate.read_text(), tmp_path / "jobs" / "warm-up", SmokeLimits(seconds=60)).verdict.ok
    assert _wait_for(lambda: _spares_ready() == 1)
    (spare,) = _spares(tmp_path / "jobs")
    workdir = tmp_path / "jobs" / "attack"
    smoke_test(attack, workdir, SmokeLimits(seconds=60))
    assert spare not in _spares(tmp_path / "jobs")  # the attack ran in the spare, not in a fresh jail
    proof = workdir / "proof.json"
    assert proof.is_file() and json.loads(proof.read_text())["achieved"] == []
    assert not [p for p in workdir.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
