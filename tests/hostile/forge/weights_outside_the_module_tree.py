# class: smoke
# proof: params
# attack: keeps 2 M trainable weights in a module-level list instead of registering them, so no module walk finds them
import torch
import torch.nn as nn
import torch.nn.functional as F

_HIDDEN = []


def supported_hyperparameters():
    return {"lr", "momentum", "dropout"}


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device
        self.conv = nn.Conv2d(in_shape[1], 8, 3, padding=1)
        self.head = nn.Linear(8, out_shape[0])
        _HIDDEN.append(torch.zeros(8, 250_000, requires_grad=True))

    def forward(self, x):
        features = F.relu(self.conv(x)).mean((2, 3))
        return self.head(features) + (features @ _HIDDEN[0]).mean(1, keepdim=True) * 0

    def train_setup(self, prm):
        self.optimizer = torch.optim.SGD(list(self.parameters()) + _HIDDEN, lr=prm["lr"], momentum=prm["momentum"])

    def learn(self, train_data):
        for x, y in train_data:
            self.optimizer.zero_grad()
            F.cross_entropy(self(x), y).backward()
            self.optimizer.step()
