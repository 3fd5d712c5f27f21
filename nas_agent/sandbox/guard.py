"""The sandbox's in-process wall: a Python audit hook installed before candidate code is loaded.

The static policy should already have rejected any candidate that reaches for processes,
sockets, native code or files. This hook is the second wall for what the policy missed:
once installed (audit hooks cannot be removed), the child may not start processes, open
sockets, load native libraries through ctypes, send signals, or create, change or delete
files outside the folders it was given. Reading stays allowed: torch imports lazily.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_PROCESS_EVENTS = ("os.system", "os.exec", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn",
                   "subprocess.Popen", "os.kill", "os.killpg", "signal.pthread_kill", "pty.spawn")
_NATIVE_EVENTS = ("ctypes.dlopen", "ctypes.dlsym", "ctypes.dlsym/handle", "ctypes.cdata", "ctypes.addressof",
                  "ctypes.call_function", "ctypes.PyObj_FromPtr", "ctypes.string_at", "ctypes.wstring_at")
_NETWORK_EVENTS = ("socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo",
                   "socket.gethostbyname", "socket.sendto", "urllib.Request", "http.client.connect",
                   "ftplib.connect", "smtplib.connect", "webbrowser.open")
# (event, index of the path argument): file-system changes, allowed only inside the given folders.
_PATH_EVENTS = {"os.remove": 0, "os.rmdir": 0, "os.mkdir": 0, "os.chmod": 0, "os.chown": 0, "os.truncate": 0,
                "os.utime": 0, "os.rename": (0, 1), "os.link": (0, 1), "os.symlink": (0, 1),
                "shutil.rmtree": 0, "shutil.copyfile": 1, "shutil.copytree": 1, "shutil.move": 1,
                "os.mkfifo": 0, "os.mknod": 0, "os.setxattr": 0, "os.removexattr": 0}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


class SandboxViolation(PermissionError):
    """Candidate code tried something the sandbox forbids."""


def _inside(path, roots: tuple[str, ...]) -> bool:
    if isinstance(path, int):  # a raw descriptor: only ours (opened before the hook) may write
        return False
    try:
        resolved = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    return resolved == os.devnull or any(resolved == r or resolved.startswith(r + os.sep) for r in roots)


def _writes(mode, flags) -> bool:
    if isinstance(mode, str):
        return any(c in mode for c in "wax+")
    return isinstance(flags, int) and bool(flags & _WRITE_FLAGS)


def install(writable: list[str | Path]) -> None:
    """Forbid processes, sockets, ctypes, signals and writes outside `writable` for the rest of this process.

    Everything the hook consults is bound in its closure, so rebinding this module's globals
    does not loosen it. It is still code in the candidate's own interpreter: the OS jail
    (nas_agent.sandbox) is the wall that holds when this one is taken apart.
    """
    roots = tuple(os.path.realpath(p) for p in writable)
    inside, writes, violation = _inside, _writes, SandboxViolation
    path_events, process_events = dict(_PATH_EVENTS), frozenset(_PROCESS_EVENTS)
    network_events, native_events = frozenset(_NETWORK_EVENTS), frozenset(_NATIVE_EVENTS)

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            if writes(mode, flags) and not inside(path, roots):
                raise violation(f"sandbox: writing {path!r} is not allowed (outside the sandbox folder)")
        elif event in path_events:
            indices = path_events[event]
            for i in (indices if isinstance(indices, tuple) else (indices,)):
                if i < len(args) and not inside(args[i], roots):
                    raise violation(f"sandbox: {event} on {args[i]!r} is not allowed (outside the sandbox folder)")
        elif event in process_events or event.startswith(("os.exec", "os.spawn")):
            raise violation(f"sandbox: {event} is not allowed (no new processes or signals)")
        elif event in network_events:
            raise violation(f"sandbox: {event} is not allowed (no network)")
        elif event in native_events:
            raise violation(f"sandbox: {event} is not allowed (no native code)")

    sys.addaudithook(hook)
