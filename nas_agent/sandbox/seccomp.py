"""Seccomp filters for sandbox children, built with libseccomp (through pyseccomp).

Two filters stack. The jail's filter is handed to bwrap, which installs it just before it
execs the worker, so it must still allow execve: it refuses new processes (threads stay
allowed), sockets, anonymous memory files, mode/owner/time changes of files, mounts and
namespaces, kernel interfaces a candidate has no use for, and limits on other processes.
The exec lock, loaded by the worker before candidate code runs, refuses execve too.
Refused calls fail with EPERM (clone3 with ENOSYS, so glibc falls back to clone, which
can be filtered by its flags); everything else is allowed.

Only the driver compiles filters (libseccomp finds itself with ldconfig, a subprocess the
jail refuses); the child loads the compiled program with one seccomp(2) call (`load_bpf`).
"""

from __future__ import annotations

import ctypes
import errno
import os
import tempfile
from functools import lru_cache

_CLONE_THREAD = 0x00010000

# Refused outright with EPERM.
DENIED = (
    "fork", "vfork", "socket", "socketpair", "memfd_create", "memfd_secret",
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd",
    "chmod", "fchmod", "fchmodat", "fchmodat2",
    "chown", "fchown", "fchownat", "lchown",
    "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
    "mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsmount", "fsconfig", "fspick",
    "mount_setattr", "unshare", "setns", "bpf", "keyctl", "add_key", "request_key", "perf_event_open",
    "sched_setaffinity", "io_uring_setup", "userfaultfd", "init_module", "finit_module", "delete_module",
    "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "personality", "acct", "quotactl",
    "mknod", "mknodat", "utime", "utimes", "utimensat", "futimesat",
)
EXEC = ("execve", "execveat")
EXEC_LOCK_FILE = "exec-lock.bpf"   # written by the driver into a job folder, loaded and deleted by the worker
# x86_64 numbers of calls an older libseccomp may not know by name; refused by number there.
_X86_64_NUMBERS = {"fchmodat2": 452, "memfd_secret": 447, "mount_setattr": 442, "clone3": 435}


def _add(flt, action, name: str, *args) -> bool:
    import pyseccomp as sc
    try:
        flt.add_rule(action, name, *args)
        return True
    except (ValueError, OSError, RuntimeError):
        number = _X86_64_NUMBERS.get(name)
        if number is None or sc.system_arch() != sc.Arch.X86_64:
            return False
        try:
            flt.add_rule(action, number, *args)
            return True
        except (ValueError, OSError, RuntimeError):
            return False


def _filter(exec_too: bool, base: bool):
    import pyseccomp as sc
    flt = sc.SyscallFilter(sc.ALLOW)
    if base:
        for name in DENIED:
            _add(flt, sc.ERRNO(errno.EPERM), name)
        # A clone without CLONE_THREAD makes a process; with it, a thread (torch's and Python's).
        _add(flt, sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, _CLONE_THREAD, 0))
        # clone3 passes its flags in memory a filter cannot read: say it does not exist.
        _add(flt, sc.ERRNO(errno.ENOSYS), "clone3")
        # Limits of this process (pid 0) may be lowered; no other process's.
        _add(flt, sc.ERRNO(errno.EPERM), "prlimit64", sc.Arg(0, sc.NE, 0))
    if exec_too:
        for name in EXEC:
            _add(flt, sc.ERRNO(errno.EPERM), name)
    return flt


def _compiled(flt) -> bytes:
    with tempfile.TemporaryFile() as out:
        flt.export_bpf(out)
        out.seek(0)
        return out.read()


@lru_cache(maxsize=1)
def jail_filter_bpf() -> bytes:
    """The compiled BPF program of the jail's filter (execve still allowed), for bwrap --seccomp."""
    return _compiled(_filter(exec_too=False, base=True))


@lru_cache(maxsize=2)
def exec_lock_bpf(full: bool = False) -> bytes:
    """The program the worker loads before candidate code: execve refused, plus the jail's rules when `full`."""
    return _compiled(_filter(exec_too=True, base=full))


def jail_filter_fd() -> int:
    """A fresh readable fd (a pipe, inheritable) holding the jail's filter; the caller closes it."""
    program = jail_filter_bpf()
    read_fd, write_fd = os.pipe()
    try:
        if len(program) > 65536:  # a pipe holds 64 KiB; the program is a few KiB
            raise OSError(errno.E2BIG, "seccomp program larger than a pipe buffer")
        os.write(write_fd, program)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return read_fd


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2
_SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC = 1, 1
_SYS_SECCOMP = {"x86_64": 317, "aarch64": 277}


def load_bpf(program: bytes) -> None:
    """Load a compiled filter on this process and all its threads (seccomp(2) with TSYNC); OSError if refused.

    Where the architecture's syscall number is unknown, prctl loads it on the calling thread only.
    """
    if not program or len(program) % ctypes.sizeof(_SockFilter):
        raise ValueError(f"not a BPF program ({len(program)} bytes)")
    count = len(program) // ctypes.sizeof(_SockFilter)
    instructions = (_SockFilter * count).from_buffer_copy(program)
    prog = _SockFprog(count, instructions)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) refused")
    number = _SYS_SECCOMP.get(os.uname().machine)
    if number is not None:
        done = libc.syscall(number, _SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC, ctypes.byref(prog))
    else:
        done = libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0)
    if done != 0:
        raise OSError(ctypes.get_errno(), f"seccomp refused the filter (returned {done})")


def available() -> tuple[bool, str]:
    """Whether seccomp filters can be built here, and why not."""
    try:
        import pyseccomp  # noqa: F401
        jail_filter_bpf()
    except Exception as exc:  # missing libseccomp.so.2 shows as OSError or AttributeError
        return False, f"{type(exc).__name__}: {exc}"
    return True, f"{len(jail_filter_bpf())} bytes of BPF"
