"""Synthetic datasets on disk: the tensors in the trainer's cache format, a meta.json, a preview grid.

A dataset folder holds `dataset.pt` (uint8 train/test images and labels, the same format as the
CIFAR-10 cache, so the sandboxed trainer loads it unchanged), `meta.json` (how it was made, its
content hash) and `preview.png` (a grid a person can look at: one row per class).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

# The trainer's cache format and atomic writer: the worker reads these files with load_cache().
from nas_agent.data.cifar import CACHE_FORMAT, save_atomically

DATASET_FILE = "dataset.pt"
META_FILE = "meta.json"
PREVIEW_FILE = "preview.png"
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class FractalDataError(ValueError):
    """A dataset or image folder that cannot be used; the message is one line saying what to do."""


@dataclass(frozen=True)
class SyntheticDataset:
    """A synthetic dataset folder as the pipeline sees it."""

    path: Path
    meta: dict

    @property
    def file(self) -> Path:
        return self.path / DATASET_FILE

    @property
    def hash(self) -> str:
        return self.meta["hash"]

    @property
    def classes(self) -> int:
        return int(self.meta["classes"])

    @property
    def stylize(self) -> str | None:
        return (self.meta.get("stylize") or {}).get("method")

    @property
    def variant(self) -> str:
        """`fractal` for raw renders, `stylized-fractal-<method>` for stylized ones."""
        return f"stylized-fractal-{self.stylize}" if self.stylize else "fractal"


def content_hash(x: torch.Tensor, y: torch.Tensor) -> str:
    """sha256 of the images and labels: two datasets with the same hash hold the same data."""
    digest = hashlib.sha256()
    digest.update(str(tuple(x.shape)).encode())
    digest.update(x.contiguous().numpy().tobytes())
    digest.update(y.contiguous().numpy().tobytes())
    return digest.hexdigest()


def split_views(x: torch.Tensor, y: torch.Tensor, test_per_class: int):
    """Hold out the last `test_per_class` views of every class: (train_x, train_y, test_x, test_y)."""
    test = torch.zeros(len(y), dtype=torch.bool)
    for label in y.unique():
        idx = (y == label).nonzero().squeeze(1)
        if test_per_class >= len(idx):
            raise FractalDataError(f"--test-per-class {test_per_class} leaves no training view of class "
                                   f"{int(label)} ({len(idx)} views); lower it or raise --per-class")
        test[idx[len(idx) - test_per_class:]] = True
    return x[~test], y[~test], x[test], y[test]


def write_dataset(out: Path, train_x, train_y, test_x, test_y, meta: dict) -> SyntheticDataset:
    """Write dataset.pt, meta.json (with the content hash added) and preview.png into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    classes = int(meta["classes"])
    x, y = torch.cat([train_x, test_x]), torch.cat([train_y, test_y])
    meta = {**meta, "hash": content_hash(x, y), "train": len(train_x), "test": len(test_x)}
    save_atomically({"format": CACHE_FORMAT, "train_x": train_x.contiguous(), "train_y": train_y.contiguous(),
                      "test_x": test_x.contiguous(), "test_y": test_y.contiguous(),
                      "classes": [f"fractal-{k:04d}" for k in range(classes)],
                      "source": f"{meta.get('kind', 'synthetic')} {meta['hash'][:12]} ({out})"}, out / DATASET_FILE)
    tmp = out / f".{META_FILE}.tmp"
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, out / META_FILE)
    save_preview(train_x, train_y, out / PREVIEW_FILE)
    return SyntheticDataset(out, meta)


def read_dataset(path: str | os.PathLike) -> SyntheticDataset:
    """The dataset folder at `path`; FractalDataError when it is not one."""
    path = Path(path)
    meta_path = path / META_FILE
    if not (path / DATASET_FILE).is_file() or not meta_path.is_file():
        raise FractalDataError(f"{path} is not a fractal dataset (no {DATASET_FILE} and {META_FILE}); "
                               "make one with: nas-agent fractals render --out DIR")
    try:
        meta = json.loads(meta_path.read_text())
        meta["hash"], meta["classes"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FractalDataError(f"{meta_path} is unreadable ({exc}); render the dataset again") from None
    return SyntheticDataset(path, meta)


def load_tensors(dataset: SyntheticDataset) -> dict:
    """The dataset's tensors: train_x, train_y, test_x, test_y."""
    try:
        payload = torch.load(dataset.file, map_location="cpu", weights_only=True)
        return {k: payload[k] for k in ("train_x", "train_y", "test_x", "test_y")}
    except Exception as exc:  # torch.load reports damaged files through many exception types
        raise FractalDataError(f"{dataset.file} is unreadable ({exc}); render the dataset again") from None


def save_preview(x: torch.Tensor, y: torch.Tensor, path: Path, rows: int = 10, per_row: int = 10) -> None:
    """A grid of the first `per_row` images of up to `rows` classes, one class per row, scaled up 2x."""
    from torchvision.io import write_png
    from torchvision.utils import make_grid

    labels = y.unique()[:rows]
    # As wide as the smallest class shown, so no row ends in blank tiles (a class keeps
    # fewer training views than --per-class: a tenth is held out for testing).
    per_row = max(1, min(per_row, min(int((y == label).sum()) for label in labels)))
    picked = []
    for label in labels:
        idx = (y == label).nonzero().squeeze(1)[:per_row]
        picked.append(x[idx])
    grid = make_grid(torch.cat(picked), nrow=per_row, padding=2, pad_value=255)
    grid = torch.nn.functional.interpolate(grid[None].float(), scale_factor=2, mode="nearest")[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(grid.round().clamp(0, 255).to(torch.uint8), str(path))


def load_images(path: str | os.PathLike, count: int, size: int, seed: int = 0) -> tuple[torch.Tensor, str]:
    """Up to `count` real images (uint8 N x 3 x size x size) and a description of where they came from.

    `path` is a folder of .png/.jpg files (searched recursively), a fractal-format `dataset.pt`
    folder, or a CIFAR-10 source as nas_agent.data accepts it (its training split is sampled).
    The pick is seeded; images of another size are resized (antialiased).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FractalDataError(f"no such folder or file: {path}; pass --style-dir with a few hundred real images")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES) if path.is_dir() else []
    generator = torch.Generator().manual_seed(seed)
    if files:
        from torchvision.io import ImageReadMode, decode_image, read_file

        pick = torch.randperm(len(files), generator=generator)[:count].sort().values.tolist()
        images = []
        for i in pick:
            try:
                images.append(_resize(decode_image(read_file(str(files[i])), mode=ImageReadMode.RGB)[None], size))
            except RuntimeError as exc:
                raise FractalDataError(f"cannot decode {files[i]} ({str(exc).splitlines()[0]})") from None
        return torch.cat(images), f"{len(images)} of {len(files)} images in {path}"
    from nas_agent.data import DatasetError, load_cifar10

    try:
        data = load_cifar10(path, download=False)
    except DatasetError as exc:
        raise FractalDataError(f"{path} has no .png/.jpg images and is no CIFAR-10 source ({exc})") from None
    pick = torch.randperm(len(data.train_x), generator=generator)[:count].sort().values
    return _resize(data.train_x[pick], size), f"{len(pick)} CIFAR-10 training images from {path}"


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-2:] == (size, size):
        return x
    out = torch.nn.functional.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True,
                                          align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)
