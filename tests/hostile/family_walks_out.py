# expect: contract
# limit: 5
# why: a FAMILY that walks out of the run folder: it names the model, and the model names its job and checkpoint folders
import torch
import torch.nn as nn

FAMILY = "../../../../../../../../tmp/nas-agent-family-escape/x"


def supported_hyperparameters():
    return {"lr", "momentum", "dropout"}


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device
        self.conv = nn.Conv2d(in_shape[1], 8, 3, padding=1)
        self.head = nn.Linear(8, out_shape[0])

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3)))

    def train_setup(self, prm):
        self.to(self.device)
        self.criteria = (nn.CrossEntropyLoss(),)
        self.optimizer = torch.optim.SGD(self.parameters(), lr=prm["lr"], momentum=prm["momentum"])

    def learn(self, train_data):
        for x, y in train_data:
            self.optimizer.zero_grad()
            self.criteria[0](self(x), y).backward()
            self.optimizer.step()
