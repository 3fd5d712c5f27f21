"""The walls' parts one by one: the jail's command line, the seccomp filters in a real jailed Python,
the driver's parameter count from a child's shapes file, the folder watchdog, core pinning.

These run small plain Pythons (no torch) in the jail, so they stay in the fast tier; the hostile
corpora in test_jail.py and test_forging.py exercise the same walls end to end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nas_agent.sandbox import seccomp, walls
from nas_agent.sandbox.jail import PACKAGE_ROOT, JailSpec, exit_status, jail_argv
from nas_agent.train.sandbox import _cores_for, _folder_mb
from nas_agent.train.score import ScoreError, count_parameters

pytestmark = pytest.mark.sandbox


def _pairs(argv: list[str], flag: str) -> list[tuple[str, str]]:
    return [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == flag]


def test_the_jail_binds_inputs_read_only_the_job_folder_read_write_and_nothing_of_home(tmp_path):
    data, job = tmp_path / "view.pt", tmp_path / "job"
    data.write_bytes(b"x")
    job.mkdir()
    argv = jail_argv(JailSpec(writable=(str(job),), readable=(str(data),), env={"HOME": str(job)}),
                     ["python", "-c", "pass"], bwrap="/usr/bin/bwrap")
    for flag in ("--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                 "--die-with-parent", "--new-session", "--clearenv"):
        assert flag in argv
    assert (str(data), str(data)) in _pairs(argv, "--ro-bind")
    assert _pairs(argv, "--bind") == [(str(job), str(job))]           # the only writable path
    bound = {src for src, _ in _pairs(argv, "--ro-bind") + _pairs(argv, "--bind")}
    assert os.path.expanduser("~") not in bound and "/etc" not in bound and "/" not in bound
    assert not [a for a in argv if a.startswith("/dev/nvidia")]       # device nodes only for CUDA jobs
    assert ("HOME", str(job)) in _pairs(argv, "--setenv")
    assert argv[argv.index("--") + 1:] == ["python", "-c", "pass"]
    # Read-only binds come first, so a job folder inside a readable one stays writable.
    last_ro = max(i for i, a in enumerate(argv) if a == "--ro-bind")
    assert argv.index("--bind") > last_ro
    with pytest.raises(ValueError, match="writable"):
        jail_argv(JailSpec(writable=()), ["true"])


def test_bwrap_exit_codes_for_signals_read_as_popen_s():
    assert exit_status(128 + 9) == -9 and exit_status(128 + 24) == -24 and exit_status(0) == 0 and exit_status(1) == 1


_PROBE = """
import ctypes, json, os, socket
done = {}
def attempt(name, call):
    try:
        call()
        done[name] = "allowed"
    except OSError as exc:
        done[name] = exc.__class__.__name__
attempt("fork", lambda: os._exit(0) if os.fork() == 0 else os.wait())
attempt("socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
attempt("memfd", lambda: os.memfd_create("x"))
attempt("chmod", lambda: os.chmod(".", 0o777))
attempt("affinity", lambda: os.sched_setaffinity(0, {0}))
attempt("prlimit of pid 1", lambda: __import__("resource").prlimit(1, __import__("resource").RLIMIT_CPU, (1, 1)))
attempt("write outside", lambda: open("/nas-agent-escaped", "w"))
attempt("thread", lambda: __import__("threading").Thread(target=lambda: None).start())
print(json.dumps(done))
"""


def test_a_jailed_python_may_start_threads_and_nothing_else(tmp_path):
    assert walls.probe().jail_ok, walls.probe().why_not()
    fd = seccomp.jail_filter_fd()
    try:
        argv = jail_argv(JailSpec(writable=(str(tmp_path),), env={"PATH": "/usr/bin:/bin"}),
                         [sys.executable, "-I", "-S", "-c", _PROBE], seccomp_fd=fd)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, pass_fds=(fd,))
    finally:
        os.close(fd)
    outcome = json.loads(done.stdout)
    assert outcome.pop("thread") == "allowed"
    assert all(v in ("PermissionError", "OSError") for v in outcome.values()), outcome


def test_the_exec_lock_refuses_execve_and_nothing_more(tmp_path):
    program = tmp_path / "exec-lock.bpf"
    program.write_bytes(seccomp.exec_lock_bpf())
    assert len(program.read_bytes()) % 8 == 0   # whole BPF instructions
    code = ("import os, sys\nfrom nas_agent.sandbox.seccomp import load_bpf\nload_bpf(open(sys.argv[1], 'rb').read())\n"
            "open(os.path.join(os.path.dirname(sys.argv[1]), 'still-writes'), 'w').write('ok')\n"
            "try: os.execv('/bin/true', ['true'])\nexcept PermissionError: print('refused')")
    done = subprocess.run([sys.executable, "-c", code, str(program)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": PACKAGE_ROOT})
    assert done.stdout.strip() == "refused", done.stderr
    assert (tmp_path / "still-writes").read_text() == "ok"
    with pytest.raises(ValueError, match="not a BPF program"):
        seccomp.load_bpf(b"1234567")


@pytest.mark.parametrize("content, reason", [
    ('{"w": [3, "3"]}', "no valid shape"), ('{"w": [-1]}', "no valid shape"), ('{"w": [true, 2]}', "no valid shape"),
    ('{"w": [1099511627776]}', "no valid shape"), ('[1, 2]', "not an object"), ("not json", "not JSON"),
])
def test_a_malformed_shapes_file_is_a_reason_not_a_count(tmp_path, content, reason):
    path = tmp_path / "parameters.json"
    path.write_text(content)
    with pytest.raises(ScoreError, match=reason):
        count_parameters(path)


def test_parameters_are_counted_from_shapes_and_links_are_not_followed(tmp_path):
    path = tmp_path / "parameters.json"
    path.write_text(json.dumps({"conv.weight": [16, 3, 3, 3], "conv.bias": [16], "scale": []}))
    assert count_parameters(path) == 16 * 27 + 16 + 1
    link = tmp_path / "link.json"
    link.symlink_to(path)
    with pytest.raises(ScoreError, match="cannot open"):
        count_parameters(link)
    os.mkfifo(tmp_path / "fifo.json")
    with pytest.raises(ScoreError, match="not a regular file"):
        count_parameters(tmp_path / "fifo.json")


def test_the_folder_watchdog_counts_stored_bytes_and_floods_of_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "data").write_bytes(b"x" * (3 << 20))
    with open(tmp_path / "sparse", "wb") as f:   # 1 GB apparent size, nothing stored
        f.truncate(1 << 30)
    assert 2.9 < _folder_mb([tmp_path]) < 3.5
    for i in range(30):
        (tmp_path / f"f{i}").touch()
    assert _folder_mb([tmp_path], max_entries=20) == float("inf")


def test_children_take_their_cores_in_turn():
    cores = sorted(os.sched_getaffinity(0))
    assert _cores_for(0) == [] and _cores_for(len(cores)) == []   # no pinning: torch's default, or every core
    first, second = _cores_for(1), _cores_for(1)
    if len(cores) == 1:
        assert first == second == []
    else:
        assert first != second and len(first) == len(second) == 1 and {*first, *second} <= set(cores)


def test_a_child_cgroup_holds_memory_the_address_space_limit_does_not_see():
    """Written memory past the group's limit is killed by the kernel, and the driver can tell it was that."""
    from nas_agent.sandbox.cgroups import ChildGroup

    group = ChildGroup.create(256, 64)
    if not next(w for w in walls.probe().walls if w.name == "cgroups").ok:  # this host makes none: the probe and the class agree
        assert group is None
        return
    assert group is not None
    try:
        # 512 MB actually written (not calloc'd), with no rlimit at all: only the cgroup stands in the way.
        hog = subprocess.run([sys.executable, "-c", "x = b'x' * (512 << 20); print('survived')"],
                             preexec_fn=group.join, capture_output=True, text=True, timeout=60)
        assert hog.returncode == -9 and "survived" not in hog.stdout
        assert group.oom_killed()
        small = ChildGroup.create(256, 64)
        fine = subprocess.run([sys.executable, "-c", "x = b'x' * (64 << 20); print('fine')"],
                              preexec_fn=small.join, capture_output=True, text=True, timeout=60)
        assert fine.stdout.strip() == "fine" and not small.oom_killed()
        small.close()
    finally:
        group.close()
    assert not any(folder.exists() for folder in group.folders)


def test_messages_nested_too_deeply_are_a_protocol_error_not_a_crash():
    """Regression: 60 KB of brackets (under the line limit) blew the driver's JSON parser stack in its reader thread."""
    from nas_agent.train.events import ProtocolError, parse_line

    with pytest.raises(ProtocolError, match="nested too deeply"):
        parse_line(b'{"event": "epoch", "test_accuracy": ' + b"[" * 30000 + b"]" * 30000 + b"}")
