"""FractalNet for CIFAR-10 (Larsson, Maire, Shakhnarovich, arXiv 1605.07648).

A network of N_BLOCKS fractal blocks, each followed by 2x2 max pooling. A block
with C columns is built by the recursive expansion

    f_1(z)     = E(z)
    f_{C+1}(z) = join(f_C(f_C(z)), E(z))

where E is one "element" (an ordered sequence of conv 3x3 / batch norm /
activation / dropout) and join is the element-wise mean of its inputs. While
training, local drop-path drops join inputs at random (keeping at least one)
and global drop-path trains a single column for a whole mini-batch.

The candidate follows the LEMUR contract: supported_hyperparameters(),
Net(in_shape, out_shape, prm, device), train_setup(prm), learn(train_data),
forward(x).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

FAMILY = "FractalNet"

# --- nas-agent: template parameters (begin) ---
N_BLOCKS = 4
N_COLUMNS = 3
BASE_CHANNELS = 32
MAX_CHANNELS = 256
ELEMENT_ORDER = ("conv", "bn", "act", "dropout")
ACTIVATION = "relu"
LOCAL_DROP_PATH = 0.0
GLOBAL_DROP_PATH = 0.0
# --- nas-agent: template parameters (end) ---

# Drop-path is off by default (benchmarks/drop_path.py): FractalNet's paper trains for hundreds of epochs, and at the
# 1-5 epochs of a search it costs accuracy. Measured on 5,000 real CIFAR-10 images, 2 epochs,
# 3 blocks x 4 columns: test accuracy 0.43 without drop-path, 0.30 with local 0.15, and 0.11
# (chance) with local 0.15 + global 0.5. Search strategies may still turn it on.

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
def make_element(c_in, c_out, dropout):
    """One element E: the layers of ELEMENT_ORDER, tracking the channel count."""
    layers = []
    channels = c_in
    for i, kind in enumerate(ELEMENT_ORDER):
        if kind == "conv":
            # A bias is redundant right before batch norm.
            followed_by_bn = i + 1 < len(ELEMENT_ORDER) and ELEMENT_ORDER[i + 1] == "bn"
            layers.append(nn.Conv2d(channels, c_out, 3, padding=1, bias=not followed_by_bn))
            channels = c_out
        elif kind == "bn":
            layers.append(nn.BatchNorm2d(channels))
        elif kind == "act":
            layers.append(ACTIVATIONS[ACTIVATION]())
        elif kind == "dropout":
            layers.append(nn.Dropout(dropout))
        else:
            raise ValueError(f"unknown element kind {kind!r}")
    return nn.Sequential(*layers)
# --- nas-agent: element (end) ---


def join(paths, drop_prob, training):
    """Element-wise mean of the paths; in training each path is dropped with drop_prob (one always survives)."""
    if training and drop_prob > 0 and len(paths) > 1:
        # Draw from torch's CPU generator: seeded with the run, restored by activation
        # checkpointing on recompute, and never a host-device sync.
        draws = torch.rand(len(paths) + 1).tolist()
        keep = [p for p, u in zip(paths, draws) if u >= drop_prob]
        paths = keep or [paths[int(draws[-1] * len(paths))]]
    if len(paths) == 1:
        return paths[0]
    return torch.stack(paths).mean(0)


class Fractal(nn.Module):
    """f_C: returns the list of column outputs that meet at this fractal's final join."""

    def __init__(self, columns, c_in, c_out, dropout):
        super().__init__()
        self.columns = columns
        self.shallow = make_element(c_in, c_out, dropout)
        if columns > 1:
            self.deep_in = Fractal(columns - 1, c_in, c_out, dropout)
            self.deep_out = Fractal(columns - 1, c_out, c_out, dropout)

    def forward(self, x, column=None):
        # column=None: all columns (local drop-path); column=k: only column k (global drop-path),
        # where column 0 is the shallow path and column k>0 runs through column k-1 of both halves.
        if column is None:
            paths = [self.shallow(x)]
            if self.columns > 1:
                middle = join(self.deep_in(x), LOCAL_DROP_PATH, self.training)
                paths += self.deep_out(middle)
            return paths
        if column == 0:
            return [self.shallow(x)]
        middle = self.deep_in(x, column - 1)[0]
        return self.deep_out(middle, column - 1)


class FractalBlock(nn.Module):
    def __init__(self, columns, c_in, c_out, dropout):
        super().__init__()
        self.fractal = Fractal(columns, c_in, c_out, dropout)

    def forward(self, x, column=None):
        return join(self.fractal(x, column), LOCAL_DROP_PATH, self.training)


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device
        self.checkpoint_blocks = bool(prm.get("checkpoint_blocks", False))
        dropout = float(prm.get("dropout", 0.0))
        channels = in_shape[1]
        blocks = []
        for b in range(N_BLOCKS):
            width = min(BASE_CHANNELS * 2**b, MAX_CHANNELS)
            blocks.append(FractalBlock(N_COLUMNS, channels, width, dropout))
            channels = width
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(channels, out_shape[0])

    def forward(self, x):
        # Global drop-path: for a whole mini-batch, train one column only.
        column = None
        if self.training and N_COLUMNS > 1:
            u, v = torch.rand(2).tolist()
            if u < GLOBAL_DROP_PATH:
                column = int(v * N_COLUMNS)
        for block in self.blocks:
            if self.checkpoint_blocks and self.training:
                x = torch.utils.checkpoint.checkpoint(block, x, column, use_reentrant=False)
            else:
                x = block(x, column)
            x = F.max_pool2d(x, 2)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.head(x)

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
