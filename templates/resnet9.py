"""ResNet-9: the reference network of every leaderboard, a known-good fast CIFAR-10 design.

The residual network of D. Page's DAWNBench entries ("How to train your ResNet", 2018), the
backbone of today's fast CIFAR-10 training records: a prep convolution, three stages that
double the width and halve the resolution (conv, batch norm, activation, 2x2 max pooling),
residual pairs of convolutions after the first and the last stage, global max pooling and a
linear head whose output is scaled down (HEAD_SCALE) so the logits start small.

With the default widths (64-128-256-512, 6.6M parameters) it reaches about 94% on CIFAR-10
in a few dozen epochs of the fast recipe. The search does not mutate it: it is trained once
per recipe as the baseline against which fractal candidates are read. Narrower settings
(BASE_CHANNELS) give a CPU-sized baseline.

The candidate follows the LEMUR contract: supported_hyperparameters(),
Net(in_shape, out_shape, prm, device), train_setup(prm), learn(train_data), forward(x).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

FAMILY = "ResNet9"

# --- nas-agent: template parameters (begin) ---
BASE_CHANNELS = 64
RESIDUAL_STAGES = (1, 3)
ACTIVATION = "relu"
HEAD_SCALE = 0.125
# --- nas-agent: template parameters (end) ---

ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.1),
    "elu": nn.ELU,
}


def supported_hyperparameters():
    return {"lr", "momentum", "dropout"}


# --- nas-agent: element (begin) ---
def conv_bn(c_in, c_out):
    """Conv 3x3 (no bias: batch norm follows), batch norm, activation."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        ACTIVATIONS[ACTIVATION](),
    )
# --- nas-agent: element (end) ---


class Residual(nn.Module):
    """x + f(f(x)) with f = conv_bn at constant width."""

    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(conv_bn(channels, channels), conv_bn(channels, channels))

    def forward(self, x):
        return x + self.body(x)


class Stage(nn.Module):
    """conv_bn to the stage's width, 2x2 max pooling, then a residual pair when asked."""

    def __init__(self, c_in, c_out, residual):
        super().__init__()
        self.down = nn.Sequential(conv_bn(c_in, c_out), nn.MaxPool2d(2))
        self.residual = Residual(c_out) if residual else nn.Identity()

    def forward(self, x):
        return self.residual(self.down(x))


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device
        dropout = float(prm.get("dropout", 0.0))
        self.prep = conv_bn(in_shape[1], BASE_CHANNELS)
        stages = []
        channels = BASE_CHANNELS
        for index in (1, 2, 3):
            stages.append(Stage(channels, channels * 2, index in RESIDUAL_STAGES))
            channels *= 2
        self.stages = nn.Sequential(*stages)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels, out_shape[0], bias=False)

    def forward(self, x):
        x = self.stages(self.prep(x))
        x = F.adaptive_max_pool2d(x, 1).flatten(1)
        return self.head(self.dropout(x)) * HEAD_SCALE

    def train_setup(self, prm):
        self.to(self.device)
        self.criteria = (nn.CrossEntropyLoss().to(self.device),)
        self.optimizer = torch.optim.SGD(self.parameters(), lr=prm["lr"], momentum=prm["momentum"])

    def learn(self, train_data):
        self.train()
        for inputs, labels in train_data:
            inputs, labels = inputs.to(self.device), labels.to(self.device)
            self.optimizer.zero_grad()
            loss = self.criteria[0](self(inputs), labels)
            loss.backward()
            nn.utils.clip_grad_norm_(self.parameters(), 3)
            self.optimizer.step()
