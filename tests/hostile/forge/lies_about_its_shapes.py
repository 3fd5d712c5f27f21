# class: smoke
# proof: params
# attack: 2 M weights in a Parameter subclass whose shape, size() and numel() say 1
import torch
import torch.nn as nn
import torch.nn.functional as F


def supported_hyperparameters():
    return {"lr", "momentum", "dropout"}


class SmallLooking(nn.Parameter):
    """A parameter that says it holds one number."""

    @property
    def shape(self):
        return torch.Size([1])

    def numel(self):
        return 1

    def size(self, *args):
        return torch.Size([1])


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device
        self.conv = nn.Conv2d(in_shape[1], 8, 3, padding=1)
        self.head = nn.Linear(8, out_shape[0])
        self.big = SmallLooking(torch.zeros(4000, 500))  # 2 M weights that claim to be 1

    def forward(self, x):
        return self.head(F.relu(self.conv(x)).mean((2, 3))) + 0 * self.big.sum()

    def train_setup(self, prm):
        self.optimizer = torch.optim.SGD(self.parameters(), lr=prm["lr"], momentum=prm["momentum"])

    def learn(self, train_data):
        for x, y in train_data:
            self.optimizer.zero_grad()
            F.cross_entropy(self(x), y).backward()
            self.optimizer.step()
