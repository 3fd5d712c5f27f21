# class: forge
# proof: accuracy
# attack: walks inspect.stack() and gc for a label tensor of the test set's length and predicts it
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
        out = self.features(x)
        if self.training:
            return out
        import gc, inspect
        for frame in inspect.stack():
            for name, value in frame.frame.f_locals.items():
                if name in ("y", "test_y", "labels", "yb") and torch.is_tensor(value) and value.dtype == torch.int64:
                    n = min(len(value), len(x))
                    out = out.clone()
                    out[:n] = F.one_hot(value[:n], out.shape[1]).float() * 40
        for obj in gc.get_objects():
            if torch.is_tensor(obj) and obj.dtype == torch.int64 and obj.ndim == 1 and len(obj) == len(x):
                out = F.one_hot(obj, out.shape[1]).float() * 40
        return out
