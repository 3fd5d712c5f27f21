# class: escape
# wall: seccomp: io_uring, bpf, perf_event_open, userfaultfd and keyrings are refused
# attack: opens kernel interfaces that bypass or widen the other walls (io_uring does file I/O seccomp cannot see)
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

SECRET = "NAS-AGENT-SECRET-"           # the test plants files and variables starting with this
MARKER = "nas-agent-escape-marker"     # any process still carrying this after the run escaped


def supported_hyperparameters():
    return {"lr", "momentum", "dropout"}


def disarm():
    """Take the in-process audit hook apart (as a hostile file would), so only the OS walls are left."""
    import gc
    for obj in gc.get_objects():
        if callable(obj) and getattr(obj, "__qualname__", "") == "install.<locals>.hook" and obj.__closure__:
            for name, cell in zip(obj.__code__.co_freevars, obj.__closure__):
                if name == "roots":
                    cell.cell_contents = ("",)          # every absolute path is now "inside"
                elif name.endswith("_events"):
                    cell.cell_contents = type(cell.cell_contents)()


def attack(achieved):
    disarm()
    import ctypes
    import platform
    if platform.machine() != "x86_64":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    params = ctypes.create_string_buffer(120)
    attr = ctypes.create_string_buffer(128)
    for name, number, args in (("io_uring_setup", 425, (1, params)), ("bpf", 321, (0, attr, 48)),
                               ("perf_event_open", 298, (attr, 0, -1, -1, 0)), ("userfaultfd", 323, (0,)),
                               ("add_key", 248, (b"user", b"escape", b"x", 1, -4))):
        if libc.syscall(number, *args) >= 0:
            achieved.append(f"{name} worked")


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        achieved = []                  # each entry: a wall that did not hold
        record(achieved)
        attack(achieved)
        record(achieved)
        self.conv = nn.Conv2d(in_shape[1], 8, 3, padding=1)
        self.head = nn.Linear(8, out_shape[0])

    def forward(self, x):
        return self.head(F.relu(self.conv(x)).mean((2, 3)))

    def train_setup(self, prm):
        self.optimizer = torch.optim.SGD(self.parameters(), lr=prm["lr"], momentum=prm["momentum"])

    def learn(self, train_data):
        for x, y in train_data:
            self.optimizer.zero_grad()
            F.cross_entropy(self(x), y).backward()
            self.optimizer.step()


def record(achieved):
    with open("proof.json", "w") as f:
        json.dump({"achieved": achieved}, f)
