# class: escape
# wall: bubblewrap: a new pid namespace hides the driver; the environment is scrubbed
# attack: reads /proc/<pid>/environ and cmdline of every process it can see, looking for the driver's secrets
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



def attack(achieved):
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        for name in ("environ", "cmdline"):
            try:
                with open(f"/proc/{pid}/{name}", "rb") as f:
                    data = f.read(1 << 20)
            except OSError:
                continue
            argv = data.split(b"\0") if name == "cmdline" else []
            if SECRET.encode() in data:
                achieved.append(f"/proc/{pid}/{name} holds the driver's secret")
            elif b"pytest" in argv or any(arg.endswith(b"nas-agent") for arg in argv):
                achieved.append(f"/proc/{pid} is the driver")
    if any(SECRET in value for value in os.environ.values()):
        achieved.append("the driver's secret is in this environment")


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
