"""The scorer: what the catalog records, computed in the driver from files a child left, never by the child.

A candidate never scores itself. The training child gets the training images with their
labels and the test images without theirs (`write_child_view`); each epoch it leaves the
test logits as raw float32 in its job folder, and a JSON file of its parameters' shapes.
This module reads those files as untrusted bytes (no pickle, no symlinks, exact sizes)
and computes accuracy, loss and parameter count. It never imports candidate code.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LOGITS_FILE = "logits-{epoch}.f32"       # N x classes float32, little-endian, row-major
PARAMETERS_FILE = "parameters.json"      # {name: [shape...]} of torch's own named_parameters
OUTPUT_FILE = "output.f32"               # the smoke run's forward output on the driver's batch
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


def count_parameters(path: Path) -> int:
    """Parameters named in the child's shapes file (an object of name -> list of dimensions)."""
    try:
        shapes = json.loads(read_untrusted(path, _MAX_SHAPES_BYTES))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ScoreError(f"{path.name} is not JSON") from None
    if not isinstance(shapes, dict):
        raise ScoreError(f"{path.name} is not an object of shapes")
    total = 0
    for name, shape in shapes.items():
        if not isinstance(shape, list) or not all(type(d) is int and 0 <= d < 1 << 40 for d in shape):
            raise ScoreError(f"{path.name}: tensor {name[:60]!r} has no valid shape")
        total += math.prod(shape)  # Python ints: no overflow, an empty shape is a scalar (1)
    return total


def write_child_view(cache: str | os.PathLike, train_subset: int, test_subset: int, seed: int,
                     views_dir: Path) -> tuple[Path, np.ndarray]:
    """The data a training child may see, and the test labels it must not.

    Writes (once per cache, subset and seed) a file holding train images, train labels and
    test images; returns its path and the test labels, which stay with the driver.
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
        tmp = views_dir / f".{key}.{os.getpid()}.tmp"
        torch.save({"train_x": data.train_x, "train_y": data.train_y, "test_x": data.test_x,
                    "classes": list(data.classes), "source": data.source}, tmp)
        os.replace(tmp, view)
    return view, data.test_y.numpy()
