"""Draw samples from a trained generative candidate, in the sandbox, and write them as an image grid.

The driver never imports candidate code: `sample_images` starts the sandboxed child
(nas_agent.train.sample_worker), which loads the candidate and its checkpoint and writes
raw uint8 bytes; the driver checks their size and shape and turns them into a PNG.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nas_agent.tasks import GENERATION_OUT_SHAPE
from nas_agent.train.job import CANDIDATE_FILE
from nas_agent.train.sample_worker import SAMPLES_FILE
from nas_agent.train.sandbox import ChildLimits, run_child
from nas_agent.train.score import ScoreError, read_untrusted


class SampleError(RuntimeError):
    """Sampling could not produce images; the message is one line saying why."""


@dataclass(frozen=True)
class Samples:
    """Images drawn from a model, uint8 (n, C, H, W), and how long drawing them took in the child."""

    images: np.ndarray
    seconds: float

    @property
    def seconds_per_image(self) -> float:
        return self.seconds / max(len(self.images), 1)


def sample_images(source: str, checkpoint: str | Path, n: int, workdir: str | Path, *,
                  in_shape: tuple[int, ...] = (1, 3, 32, 32), seed: int = 0, temperature: float = 1.0,
                  device: str = "cpu", seconds: float = 1800.0, memory_mb: int = 8192, threads: int = 0) -> Samples:
    """Run `source`'s Net.sample(n) with the weights of `checkpoint` in a sandboxed child in `workdir`."""
    if n < 1:
        raise SampleError(f"the number of samples must be at least 1, not {n}")
    if temperature <= 0:
        raise SampleError(f"the temperature must be positive, not {temperature}")
    workdir = Path(workdir)
    job = {"checkpoint": str(Path(checkpoint).resolve()), "n": n, "in_shape": list(in_shape),
           "out_shape": list(GENERATION_OUT_SHAPE), "seed": seed, "temperature": temperature,
           "device": device, "threads": threads}
    limits = ChildLimits(seconds=seconds, memory_mb=memory_mb, threads=threads, file_mb=256, folder_mb=512,
                         seconds_key="limits.seconds", memory_key="limits.memory_mb")
    result = run_child("nas_agent.train.sample_worker",
                       {CANDIDATE_FILE: source, "job.json": json.dumps(job)}, workdir, limits, device=device,
                       readable=[job["checkpoint"]])
    failure = result.failure()
    if failure is not None:
        raise SampleError(f"sampling failed: {failure}")
    done = next(e for e in result.events if e.get("event") == "done")
    return Samples(read_samples(workdir / SAMPLES_FILE, (n, *in_shape[1:])), float(done.get("seconds", result.seconds)))


def read_samples(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """The uint8 images of `shape` the child wrote; SampleError for a link, a FIFO, a device or a wrong size.

    The child reports its shape, but only the bytes of a regular file of exactly that size are taken.
    """
    expected = math.prod(shape)
    try:
        data = read_untrusted(path, expected)
    except ScoreError as exc:
        raise SampleError(f"sampling left no readable images: {exc}") from None
    if len(data) != expected:
        raise SampleError(f"sampling wrote {len(data)} bytes, expected {expected} for images {shape}")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def write_grid(images: np.ndarray, path: str | Path, nrow: int | None = None, padding: int = 2) -> Path:
    """Save uint8 images (n, C, H, W) as one PNG grid, `nrow` images per row (default: a square)."""
    from PIL import Image

    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + padding) + padding, nrow * (w + padding) + padding, c), 255, dtype=np.uint8)
    for i, image in enumerate(images):
        top, left = padding + (i // nrow) * (h + padding), padding + (i % nrow) * (w + padding)
        grid[top:top + h, left:left + w] = image.transpose(1, 2, 0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid[..., 0] if c == 1 else grid).save(path)
    return path
