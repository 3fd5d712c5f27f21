"""The bubblewrap (bwrap) command line that jails one sandbox child.

The child sees a read-only root holding only what Python needs to run (the interpreter,
the venv, the `nas_agent` package, /usr), the paths its caller lets it read, and its job
folder read-write — each at its host path, so paths in job.json keep working. It gets
new user, pid, network, IPC and UTS namespaces, no capabilities, a scrubbed environment,
and dies with the driver. There is no tmpfs it could fill: tmpfs pages escape RLIMIT_AS.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import nas_agent

PACKAGE_DIR = str(Path(nas_agent.__file__).resolve().parent)   # bound alone: runs/ and the catalog stay outside
PACKAGE_ROOT = str(Path(PACKAGE_DIR).parent)                    # what PYTHONPATH names
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# The dynamic loader's index of shared libraries (CUDA's libcuda lives in a multiarch folder); nothing else of /etc.
_SYSTEM_FILES = ("/etc/ld.so.cache",)


def bwrap_path() -> str | None:
    """The bwrap binary, or None when it is not installed."""
    return shutil.which("bwrap") or next((p for p in ("/usr/bin/bwrap", "/bin/bwrap") if os.path.exists(p)), None)


@dataclass(frozen=True)
class JailSpec:
    """What one jailed child may see: `readable` read-only, `writable` read-write, device nodes when `cuda`."""

    writable: tuple[str, ...]                    # the job folder (and e.g. a checkpoint folder)
    readable: tuple[str, ...] = ()               # data files and such, besides what Python needs
    cuda: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    chdir: str | None = None                     # defaults to the first writable path


def _real(path: str | Path) -> str:
    return os.path.realpath(os.path.abspath(str(path)))


def python_paths() -> list[str]:
    """The folders Python needs to start and import nas_agent's dependencies: prefix, venv, package."""
    paths = [sys.base_prefix, sys.prefix, sys.exec_prefix, PACKAGE_DIR, os.path.dirname(_real(sys.executable))]
    # A venv's python is a symlink into the base interpreter; bind where it really lives too.
    return list(dict.fromkeys(_real(p) for p in paths if p))


def _alias_binds() -> list[str]:
    """Python's folders again at the paths it was started by, where those pass through a symlink.

    The child is started as `sys.executable`, and a venv finds itself from that path; when the
    venv is reached through a link (a checkout whose .venv links elsewhere), it must exist there too.
    """
    args: list[str] = []
    for path in dict.fromkeys(os.path.abspath(p) for p in (sys.prefix, sys.exec_prefix, os.path.dirname(sys.executable))):
        if _real(path) != path and os.path.exists(path):
            args += ["--ro-bind", _real(path), path]
    return args


def _system_binds() -> list[str]:
    args: list[str] = []
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):  # merged /usr: /bin -> usr/bin and so on
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in _SYSTEM_FILES:
        if os.path.isfile(path):
            args += ["--ro-bind", path, path]
    return args


def _cuda_binds() -> list[str]:
    args: list[str] = []
    for node in sorted(glob.glob("/dev/nvidia*")):
        if os.path.exists(node) and not os.path.isdir(node):
            args += ["--dev-bind", node, node]
    if os.path.isdir("/dev/nvidia-caps"):
        args += ["--dev-bind", "/dev/nvidia-caps", "/dev/nvidia-caps"]
    # The CUDA driver reads PCI topology from /sys and its version from /proc/driver/nvidia.
    if os.path.isdir("/sys"):
        args += ["--ro-bind", "/sys", "/sys"]
    if os.path.isdir("/proc/driver/nvidia"):
        args += ["--ro-bind", "/proc/driver/nvidia", "/proc/driver/nvidia"]
    return args


def jail_argv(spec: JailSpec, command: Sequence[str], *, bwrap: str | None = None,
              seccomp_fd: int | None = None) -> list[str]:
    """The argv that runs `command` inside the jail `spec` describes (a pure function of its inputs and the host's layout).

    `seccomp_fd` is a readable fd holding a compiled BPF filter; bwrap installs it just before it
    execs `command`, so that filter must allow execve.
    """
    if not spec.writable:
        raise ValueError("a jail needs a writable job folder")
    argv = [bwrap or bwrap_path() or "bwrap",
            "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--proc", "/proc", "--dev", "/dev"]
    argv += _system_binds()
    # Read-only binds first, read-write after, so a job folder inside a readable path stays writable.
    seen: set[str] = set()
    for path in [*python_paths(), *map(_real, spec.readable)]:
        if path not in seen and os.path.exists(path) and not (path == "/usr" or path.startswith(("/usr/", "/proc", "/dev"))):
            seen.add(path)
            argv += ["--ro-bind", path, path]
    argv += _alias_binds()
    for path in map(_real, spec.writable):
        argv += ["--bind", path, path]
    if spec.cuda:
        argv += _cuda_binds()
    # bwrap's root and /dev are tmpfs; read-only they cannot be used as memory beyond RLIMIT_AS.
    argv += ["--remount-ro", "/dev", "--remount-ro", "/"]
    argv += ["--clearenv"]
    for key, value in spec.env.items():
        argv += ["--setenv", key, value]
    argv += ["--chdir", _real(spec.chdir or spec.writable[0])]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    return [*argv, "--", *command]


def exit_status(returncode: int) -> int:
    """bwrap reports a command killed by signal N as exit code 128+N; turn that back into -N as Popen does."""
    if 128 < returncode < 128 + 65:
        return -(returncode - 128)
    return returncode

