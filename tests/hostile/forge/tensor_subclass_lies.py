# class: forge
# proof: accuracy
# attack: forward returns a tensor subclass whose __torch_function__ makes argmax and == agree with any label
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

    def setup_attack(self):
        pass

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

    def forward(self, x):
        return Liar(self.features(x))


class Liar(torch.Tensor):
    @staticmethod
    def __new__(cls, data):
        return torch.Tensor._make_subclass(cls, data.detach(), data.requires_grad)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in ("eq", "__eq__"):
            return torch.ones(torch.Tensor.as_subclass(args[0], torch.Tensor).shape, dtype=torch.bool)
        if name == "cross_entropy":
            return torch.zeros(())
        return super().__torch_function__(func, types, args, kwargs)
