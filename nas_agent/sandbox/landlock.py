"""Kernel-enforced write restriction for sandbox children, with Linux Landlock (5.13 and newer).

The audit hook (`guard`) sees what Python code does; native code (torch's own file
writer, for one) goes around it. Landlock is enforced by the kernel for the calling
thread and everything it starts afterwards, so the child calls `restrict` first thing,
before torch starts any thread. Reading and executing stay allowed; creating, writing,
renaming or deleting files is allowed only beneath the given folders; where the kernel
supports it, TCP bind/connect and signals to processes outside the sandbox are refused too.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
from pathlib import Path

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # the same on every architecture
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

_WRITE_FILE = 1 << 1
_REMOVE_DIR, _REMOVE_FILE = 1 << 4, 1 << 5
_MAKE_ANY = sum(1 << bit for bit in range(6, 13))  # char, dir, reg, sock, fifo, block, sym
_REFER, _TRUNCATE = 1 << 13, 1 << 14                # ABI 2, ABI 3
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2              # ABI 4
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1, 2   # ABI 6


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """Landlock ABI version the kernel offers; 0 where there is none."""
    if platform.system() != "Linux":
        return 0
    try:
        version = _libc().syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0),
                                  ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except (OSError, AttributeError):
        return 0
    return max(0, version)


def restrict(writable: list[str | Path]) -> int:
    """Allow file-system changes only beneath `writable` (and writes to device files) from now on.

    Returns the ABI version applied, or 0 when the kernel has no Landlock (nothing changed).
    Raises OSError when Landlock exists but could not be applied.
    """
    abi = abi_version()
    if abi < 1:
        return 0
    libc = _libc()
    handled_fs = _WRITE_FILE | _REMOVE_DIR | _REMOVE_FILE | _MAKE_ANY
    handled_fs |= (_REFER if abi >= 2 else 0) | (_TRUNCATE if abi >= 3 else 0)
    # struct landlock_ruleset_attr grew with the ABI: fs, then net (v4), then scoped (v6).
    if abi >= 6:
        attr = struct.pack("=QQQ", handled_fs, _NET_BIND_TCP | _NET_CONNECT_TCP,
                           _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL)
    elif abi >= 4:
        attr = struct.pack("=QQ", handled_fs, _NET_BIND_TCP | _NET_CONNECT_TCP)
    else:
        attr = struct.pack("=Q", handled_fs)
    buffer = ctypes.create_string_buffer(attr, len(attr))
    ruleset = libc.syscall(_SYS_CREATE_RULESET, buffer, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}")
    try:
        rules = [(str(p), handled_fs) for p in writable]
        # Device files are opened read-write by GPU drivers and for /dev/null; creating files there is not allowed.
        rules.append(("/dev", _WRITE_FILE | (_TRUNCATE if abi >= 3 else 0)))
        for path, access in rules:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = ctypes.create_string_buffer(struct.pack("=Qi", access, fd), 12)  # packed struct
                if libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, rule, ctypes.c_uint32(0)) < 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule {path}: {os.strerror(ctypes.get_errno())}")
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        if libc.syscall(_SYS_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)) < 0:
            raise OSError(ctypes.get_errno(), f"landlock_restrict_self: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(ruleset)
    return abi
