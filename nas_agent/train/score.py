"""The scorer: what the catalog records, computed in the driver from files a child left, never by the child.

A candidate never scores itself. The training child gets the training images with their
labels and the test images without theirs (`write_child_view`); each epoch it leaves the
test logits as raw float32 in its job folder, and a JSON file of its parameters' shapes.
This module reads those files as untrusted bytes (no pickle, no symlinks, exact sizes)
and computes accuracy, loss and parameter count. It never imports candidate code.

A generator sees its test images (they are its data), so it leaves the log-probability of
each test value under teacher forcing, and the full 256-way logits on a few probe images the
driver chose (`Probes`): the scorer computes bits/dim from the former, and from the latter
checks that the two agree, that no value's distribution changes when that value changes,
and that no two probed values depend on each other (which no factorisation of p(x) allows).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

LOGITS_FILE = "logits-{epoch}.f32"       # N x classes float32, little-endian, row-major
PARAMETERS_FILE = "parameters.json"      # {name: [shape...]} of torch's own named_parameters
OUTPUT_FILE = "output.f32"               # the smoke run's forward output on the driver's batch
LOGPROB_FILE = "logprob-{epoch}.f32"     # generators: N x D log-probability of each test value, float32
PROBE_FILE = "probe-{epoch}.f32"         # generators: probe images x probed positions x 256 logits, float32
VALUES = 256                             # the values a sub-pixel can take
_MAX_SHAPES_BYTES = 16 << 20             # 16 MiB of names and shapes is far beyond any real model


class ScoreError(ValueError):
    """A file the child left is missing or not what it must be; the job fails with this reason."""


def read_untrusted(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file a child wrote, refusing links, devices, FIFOs and files over `max_bytes`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ScoreError(f"{path.name}: cannot open ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ScoreError(f"{path.name} is not a regular file")
        if info.st_size > max_bytes:
            raise ScoreError(f"{path.name} is {info.st_size:,} bytes, more than the {max_bytes:,} expected")
        chunks, left = [], info.st_size
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_float32(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A float32 array of exactly `shape` from a raw file; ScoreError when the size or a value is wrong."""
    expected = int(np.prod(shape)) * 4
    data = read_untrusted(path, expected)
    if len(data) != expected:
        raise ScoreError(f"{path.name} holds {len(data):,} bytes, expected {expected:,} for shape {shape}")
    array = np.frombuffer(data, dtype="<f4").reshape(shape)
    if not np.isfinite(array).all():
        raise ScoreError(f"{path.name} holds NaN or infinite values")
    return array


@dataclass(frozen=True)
class TestScore:
    """Test accuracy and mean cross-entropy, computed from logits and labels the child never saw."""

    accuracy: float
    loss: float


def score_logits(logits: np.ndarray, labels: np.ndarray) -> TestScore:
    """Accuracy (arg-max equals the label) and mean cross-entropy in nats, in float64."""
    if logits.ndim != 2 or len(logits) != len(labels):
        raise ScoreError(f"logits of shape {logits.shape} for {len(labels)} labels")
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = max(len(labels), 1)
    accuracy = float((logits.argmax(axis=1) == labels).sum()) / n
    loss = float(-log_probs[np.arange(len(labels)), labels].sum()) / n
    return TestScore(accuracy, loss)


_LOGPROB_SLACK = 1e-3      # nats: a log-probability above this is no probability at all
_AGREEMENT_NATS = 0.1      # probe logits vs the test file, for one value (autocast on CUDA rounds in bf16)
_DEPENDENCE_TV = 0.02      # total variation between two distributions that counts as a change


def score_log_probs(log_probs: np.ndarray) -> TestScore:
    """Bits per value (in `accuracy`, the task's score) and nats per value from per-value log-probabilities."""
    if log_probs.ndim != 2 or log_probs.size == 0:
        raise ScoreError(f"log-probabilities of shape {log_probs.shape}")
    if (log_probs > _LOGPROB_SLACK).any():
        raise ScoreError(f"a log-probability of {float(log_probs.max()):.4g} > 0: not a distribution")
    nats = float(-log_probs.astype(np.float64).mean())
    return TestScore(accuracy=nats / math.log(2), loss=nats)


@dataclass(frozen=True)
class Probes:
    """Images the driver picks to check a generator on: test images (bases) and one-value edits of them.

    For base b, variant j is test image `bases[b]` with the value at flat position
    `positions[b][j]` (an index into C*H*W) set to `values[b][j]`. The child returns the 256-way
    logits of every image at every probed position.
    """

    bases: tuple[int, ...]
    positions: tuple[tuple[int, ...], ...]
    values: tuple[tuple[int, ...], ...]

    @classmethod
    def pick(cls, test_images: np.ndarray, seed: int, bases: int = 2, per_base: int = 4) -> "Probes":
        """Random bases, distinct positions in each, and a new value for each position."""
        rng = np.random.default_rng([seed, 0x9E0BE])
        n, dims = len(test_images), int(np.prod(test_images.shape[1:]))
        chosen = rng.choice(n, size=min(bases, n), replace=False)
        positions, values = [], []
        for b in chosen:
            where = rng.choice(dims, size=min(per_base, dims), replace=False)
            old = test_images[b].reshape(-1)[where].astype(np.int64)
            positions.append(tuple(int(p) for p in where))
            values.append(tuple(int(v) for v in (old + rng.integers(1, VALUES, size=len(where))) % VALUES))
        return cls(tuple(int(b) for b in chosen), tuple(positions), tuple(values))

    @classmethod
    def from_dict(cls, data: dict) -> "Probes":
        return cls(tuple(data["bases"]), tuple(map(tuple, data["positions"])), tuple(map(tuple, data["values"])))

    def to_dict(self) -> dict:
        return {"bases": list(self.bases), "positions": [list(p) for p in self.positions],
                "values": [list(v) for v in self.values]}

    @property
    def flat_positions(self) -> list[int]:
        """Every probed position, base after base: the second axis of the probe logits."""
        return [p for positions in self.positions for p in positions]

    @property
    def n_images(self) -> int:
        return sum(1 + len(p) for p in self.positions)

    def images(self, test_images):
        """The probe batch (numpy or torch, like `test_images`): per base, the base then its variants."""
        rows = []
        for b, positions, values in zip(self.bases, self.positions, self.values):
            base = test_images[b]
            rows.append(base)
            for p, v in zip(positions, values):
                variant = base.clone() if hasattr(base, "clone") else base.copy()
                variant.reshape(-1)[p] = v
                rows.append(variant)
        return rows


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def check_probes(probes: Probes, probe_logits: np.ndarray, log_probs: np.ndarray, test_images: np.ndarray) -> None:
    """ScoreError unless the probe logits back the test file and respect some order of the values.

    Checks, on the probed values only: the log-softmax at each base's true value equals what the
    log-probability file says; changing a value leaves its own distribution unchanged; and no two
    probed values of one image each change the other's distribution.
    """
    flat = probes.flat_positions
    if probe_logits.shape != (probes.n_images, len(flat), VALUES):
        raise ScoreError(f"probe logits of shape {probe_logits.shape}")
    log_p = _log_softmax(probe_logits)
    probs = np.exp(log_p)
    row, column = 0, 0
    for b, positions in zip(probes.bases, probes.positions):
        base = row
        truth = test_images[b].reshape(-1)
        cols = range(column, column + len(positions))
        for col, p in zip(cols, positions):
            claimed = float(log_probs[b, p])
            backed = float(log_p[base, col, truth[p]])
            if abs(claimed - backed) > _AGREEMENT_NATS:
                raise ScoreError(f"test image {b}, value {p}: the file says log p = {claimed:.4g}, "
                                 f"its logits give {backed:.4g}")
        changed = np.zeros((len(positions), len(positions)), dtype=bool)  # [j, i]: editing j moves i
        for j in range(len(positions)):
            moved = 0.5 * np.abs(probs[base + 1 + j, list(cols)] - probs[base, list(cols)]).sum(-1)
            changed[j] = moved > _DEPENDENCE_TV
        for j, p in enumerate(positions):
            if changed[j, j]:
                raise ScoreError(f"test image {b}: the distribution of value {p} changes when that value "
                                 f"changes (it sees itself)")
            for i in range(j):
                if changed[j, i] and changed[i, j]:
                    raise ScoreError(f"test image {b}: values {positions[i]} and {p} each depend on the other")
        row += 1 + len(positions)
        column += len(positions)


def count_parameters(path: Path) -> int:
    """Parameters named in the child's shapes file (an object of name -> list of dimensions)."""
    try:
        shapes = json.loads(read_untrusted(path, _MAX_SHAPES_BYTES))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ScoreError(f"{path.name} is not JSON (or nested too deeply to read)") from None
    if not isinstance(shapes, dict):
        raise ScoreError(f"{path.name} is not an object of shapes")
    total = 0
    for name, shape in shapes.items():
        if not isinstance(shape, list) or not all(type(d) is int and 0 <= d < 1 << 40 for d in shape):
            raise ScoreError(f"{path.name}: tensor {name[:60]!r} has no valid shape")
        total += math.prod(shape)  # Python ints: no overflow, an empty shape is a scalar (1)
    return total


class ChildView(NamedTuple):
    """The data file a training child may read, and what of the test set stays with the driver."""

    path: Path
    test_labels: np.ndarray      # never in the child's view
    test_images: np.ndarray      # uint8 (N, C, H, W): a generator's probes are built from these


def write_child_view(cache: str | os.PathLike, train_subset: int, test_subset: int, seed: int,
                     views_dir: Path) -> ChildView:
    """The data a training child may see, and the test labels it must not.

    Writes (once per cache, subset and seed) a file holding train images, train labels and
    test images; returns its path with the test labels and images, which stay with the driver.
    """
    import torch

    from nas_agent.data import load_cache

    source = Path(cache).resolve()
    info = source.stat()
    key = hashlib.sha256(json.dumps([str(source), info.st_size, info.st_mtime_ns, train_subset, test_subset,
                                     seed]).encode()).hexdigest()[:24]
    data = load_cache(source).subset(train_subset or None, test_subset or None, seed=seed)
    view = views_dir / f"{key}.pt"
    if not view.exists():
        views_dir.mkdir(parents=True, exist_ok=True)
        # Jobs of one sweep run in threads of one process: the temporary name must be this writer's alone.
        tmp = views_dir / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
        torch.save({"train_x": data.train_x, "train_y": data.train_y, "test_x": data.test_x,
                    "classes": list(data.classes), "source": data.source}, tmp)
        os.replace(tmp, view)
    return ChildView(view, data.test_y.numpy(), data.test_x.numpy())
