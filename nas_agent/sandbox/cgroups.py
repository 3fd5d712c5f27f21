"""One control group per child, where the host lets the driver make them: memory and a process count.

The kernel then counts everything the child's processes hold — anonymous memory, shared
memory and tmpfs pages, the page cache they dirty — against one limit, and caps how many
tasks (threads included) they may run; RLIMIT_AS and the driver's resident-memory watchdog
stay as the walls where no cgroup can be made. Both cgroup v2 (one unified tree) and v1 (one
tree per controller) are handled. The child joins its groups itself between fork and exec
(`join`), so bwrap and everything under it start inside them.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path

_ROOT = Path("/sys/fs/cgroup")
_ids = itertools.count()


def own_groups() -> dict[str, Path]:
    """The folders of this process's own groups: {"unified": ...} on v2, {"memory": ..., "pids": ...} on v1."""
    found: dict[str, Path] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "" and (_ROOT / "cgroup.controllers").exists():
            found["unified"] = _ROOT / path.lstrip("/")
        for controller in controllers.split(","):
            if controller in ("memory", "pids") and (_ROOT / controller).is_dir():
                found[controller] = _ROOT / controller / path.lstrip("/")
    return found


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


@dataclass
class ChildGroup:
    """The groups one child runs in; `join` in the child, `close` in the driver once it has exited."""

    folders: tuple[Path, ...]
    events: Path | None            # where the kernel counts OOM kills (memory.events or memory.oom_control)

    @classmethod
    def create(cls, memory_mb: int, max_tasks: int) -> "ChildGroup | None":
        """Groups limited to `memory_mb` and `max_tasks`, or None where this host does not let us make them."""
        own = own_groups()
        name = f"nas-agent-{os.getpid()}-{next(_ids)}"
        made: list[Path] = []
        try:
            if "unified" in own:
                folder = own["unified"] / name
                folder.mkdir()
                made.append(folder)
                _write(folder / "memory.max", str(memory_mb << 20))
                if (folder / "memory.swap.max").exists():
                    _write(folder / "memory.swap.max", "0")
                _write(folder / "pids.max", str(max_tasks))
                return cls(tuple(made), folder / "memory.events")
            if "memory" in own and "pids" in own:
                memory, pids = own["memory"] / name, own["pids"] / name
                memory.mkdir()
                made.append(memory)
                pids.mkdir()
                made.append(pids)
                _write(memory / "memory.limit_in_bytes", str(memory_mb << 20))
                if (memory / "memory.memsw.limit_in_bytes").exists():
                    _write(memory / "memory.memsw.limit_in_bytes", str(memory_mb << 20))
                _write(pids / "pids.max", str(max_tasks))
                return cls(tuple(made), memory / "memory.oom_control")
        except OSError:
            for folder in reversed(made):
                try:
                    folder.rmdir()
                except OSError:
                    pass
        return None

    def join(self) -> None:
        """Move the calling process into the groups (run in the child, before exec)."""
        for folder in self.folders:
            _write(folder / "cgroup.procs", "0")

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of these groups for going over the memory limit."""
        try:
            for line in self.events.read_text().splitlines() if self.events else ():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
        except (OSError, ValueError):
            pass
        return False

    def close(self) -> None:
        """Remove the groups (they must be empty: the driver calls this after the child's processes are gone)."""
        for folder in reversed(self.folders):
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # the last task is still being reaped
                    time.sleep(0.02)
