"""Which walls this host can put around a sandbox child, probed once per process.

Required: bubblewrap able to create user, pid, network, mount and IPC namespaces (tested by
running Python in a real jail), and seccomp. Reported but not required: Landlock and
cgroup memory/pids controllers the driver could write to.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache

from nas_agent.sandbox.jail import PACKAGE_ROOT, JailSpec, bwrap_path, jail_argv


@dataclass(frozen=True)
class Wall:
    name: str
    ok: bool
    detail: str
    required: bool


@dataclass(frozen=True)
class Walls:
    """The probe's answer: one Wall each, in a fixed order."""

    walls: tuple[Wall, ...]

    @property
    def jail_ok(self) -> bool:
        """Whether every required wall holds, so candidates can run jailed."""
        return all(w.ok for w in self.walls if w.required)

    def why_not(self) -> str:
        """The required walls that do not hold, and why, in one line."""
        return "; ".join(f"{w.name}: {w.detail}" for w in self.walls if w.required and not w.ok)


def _probe_bwrap() -> Wall:
    bwrap = bwrap_path()
    if bwrap is None:
        return Wall("bubblewrap", False, "bwrap is not installed (apt-get install bubblewrap)", True)
    with tempfile.TemporaryDirectory(prefix="nas-agent-probe-") as folder:
        argv = jail_argv(JailSpec(writable=(folder,), env={"PATH": "/usr/bin:/bin"}),
                         [sys.executable, "-I", "-S", "-c", "import os; print(os.getpid())"], bwrap=bwrap)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Wall("bubblewrap", False, f"{bwrap} did not run: {exc}", True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return Wall("bubblewrap", False, f"cannot create namespaces: {last[:200]}", True)
    pid = done.stdout.strip()
    if pid not in {"1", "2"}:  # pid 1 is bwrap's init inside the new pid namespace
        return Wall("bubblewrap", False, f"no new pid namespace (python saw pid {pid})", True)
    version = subprocess.run([bwrap, "--version"], capture_output=True, text=True).stdout.strip()
    return Wall("bubblewrap", True, f"{version or bwrap}: user, pid, net, mount, ipc, uts namespaces", True)


def _probe_seccomp() -> Wall:
    from nas_agent.sandbox import seccomp
    ok, detail = seccomp.available()
    if ok:
        # Loading needs a child (a filter cannot be taken off this process again), and it loads the
        # program the way a worker does: compiled here, read from a file, installed with seccomp(2).
        code = ("import os, sys\nfrom nas_agent.sandbox.seccomp import load_bpf\n"
                "load_bpf(open(sys.argv[1], 'rb').read())\n"
                "try: os.execv('/bin/true', ['true'])\nexcept PermissionError: print('refused')")
        with tempfile.NamedTemporaryFile(suffix=".bpf") as program:
            program.write(seccomp.exec_lock_bpf())
            program.flush()
            done = subprocess.run([sys.executable, "-c", code, program.name], capture_output=True, text=True,
                                  timeout=30, env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
                                      PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))})
        if done.stdout.strip() != "refused":
            last = (done.stderr.strip().splitlines() or ["the filter did not refuse execve"])[-1]
            return Wall("seccomp", False, f"filter not loadable: {last[:200]}", True)
    return Wall("seccomp", ok, detail if not ok else f"libseccomp filter loads ({detail})", True)


def _probe_landlock() -> Wall:
    from nas_agent.sandbox.landlock import abi_version
    abi = abi_version()
    return Wall("landlock", abi > 0, f"ABI {abi}" if abi else "the kernel offers no Landlock", False)


def _probe_cgroups() -> Wall:
    """Whether a child's control group can really be made here (made and removed at once)."""
    from nas_agent.sandbox.cgroups import ChildGroup, own_groups

    own = own_groups()
    version = "v2" if "unified" in own else "v1" if own else "no cgroup fs"
    group = ChildGroup.create(64, 8)
    if group is None:
        return Wall("cgroups", False, f"{version}: cannot make a child group (rlimits and the watchdog stand in)", False)
    group.close()
    return Wall("cgroups", True, f"{version}: each child gets its own memory and task limits", False)


_allow_unjailed: bool | None = None


def allow_unjailed(allow: bool = True) -> None:
    """Let run_child start candidate code without the jail when this host cannot build one (--allow-unjailed)."""
    global _allow_unjailed
    _allow_unjailed = allow


def unjailed_allowed() -> bool:
    """Whether allow_unjailed(True) was called, or NAS_AGENT_ALLOW_UNJAILED=1 is set (and not overridden)."""
    if _allow_unjailed is not None:
        return _allow_unjailed
    return os.environ.get("NAS_AGENT_ALLOW_UNJAILED", "").strip().lower() in {"1", "true", "yes"}


@lru_cache(maxsize=1)
def probe() -> Walls:
    """Probe the host once per process (it runs a jailed Python: about a tenth of a second)."""
    return Walls((_probe_bwrap(), _probe_seccomp(), _probe_landlock(), _probe_cgroups()))
