# expect: policy
# limit: 5
# why: import shutil and copy a system file to a path under /tmp in __init__
# touches: /tmp/nas_agent_hostile_shutil_import
# sandbox: smoke
import torch
import torch.nn as nn
import shutil


def supported_hyperparameters():
    return {"lr", "momentum", "dropout"}


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device
        self.conv = nn.Conv2d(in_shape[1], 8, 3, padding=1)
        self.head = nn.Linear(8, out_shape[0])
        shutil.copyfile("/etc/hosts", "/tmp/nas_agent_hostile_shutil_import")

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3)))

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
