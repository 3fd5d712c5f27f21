# expect: smoke
# limit: 60
# why: forward upsamples to 2048x2048 and runs 64-channel convs (~1.3e12 FLOPs, 2 GB activations): FLOPs, memory or time limit
import torch
import torch.nn as nn


def supported_hyperparameters():
    return {"lr", "momentum", "dropout"}


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device
        self.conv = nn.Conv2d(in_shape[1], 8, 3, padding=1)
        self.head = nn.Linear(8, out_shape[0])
        self.wide = nn.Conv2d(8, 64, 3, padding=1)
        self.wider = nn.Conv2d(64, 64, 3, padding=1)

    def forward(self, x):
        x = nn.functional.interpolate(self.conv(x), size=(2048, 2048))
        x = self.wider(self.wider(self.wide(x)))
        return self.head(x.mean((2, 3))[:, :8])

    def train_setup(self, prm):
        self.to(self.device)
        self.criteria = (nn.CrossEntropyLoss(),)
        self.optimizer = torch.optim.SGD(self.parameters(), lr=prm["lr"], momentum=prm["momentum"])

    def learn(self, train_data):
        self.train()
        for inputs, labels in train_data:
            self.optimizer.zero_grad()
            self.criteria[0](self(inputs), labels).backward()
            self.optimizer.step()
