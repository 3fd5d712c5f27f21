"""CIFAR-10 as uint8 tensors: find the data, decode it once, cache the tensors.

Sources, in order: an explicit ``data_dir``, the ``NAS_AGENT_DATA`` variable,
then a torchvision download into the cache folder. ``data_dir`` may be a
``.tar.gz``/``.tgz``/``.tar`` archive or a folder with ``train/<class>/*.jpg``
and ``test/<class>/*.jpg``, or a torchvision CIFAR-10 root. Whatever the
source, the result is one cache file of decoded tensors, so every later load
is a single ``torch.load``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from torchvision.datasets import CIFAR10
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

from nas_agent.errors import UserError

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)

_SPLITS = ("train", "test")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_IMAGE_SHAPE = (3, 32, 32)
_TORCHVISION_FOLDER = "cifar-10-batches-py"
_TORCHVISION_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_TORCHVISION_TEST = ("test_batch",)
_TORCHVISION_META = "batches.meta"
# Bump when the cache layout or decoding changes, so old cache files are not reused.
CACHE_FORMAT = 1
_DECODE_BATCH = 2048
_HINT = (
    "pass --data-dir PATH (a torchvision CIFAR-10 root, or a folder/.tar.gz with "
    "train/<class>/*.jpg) or set NAS_AGENT_DATA"
)


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensors with == has no single truth value
class ImageDataset:
    """A train/test split of uint8 images (N x 3 x H x W) with int64 labels indexing ``classes``."""

    train_x: torch.Tensor = field(repr=False)
    train_y: torch.Tensor = field(repr=False)
    test_x: torch.Tensor = field(repr=False)
    test_y: torch.Tensor = field(repr=False)
    classes: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        for split in _SPLITS:
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
                raise ValueError(f"{split}_x must be uint8 N x 3 x H x W, got {x.dtype} {tuple(x.shape)}")
            if y.dtype != torch.int64 or tuple(y.shape) != (x.shape[0],):
                raise ValueError(f"{split}_y must be int64 of shape ({x.shape[0]},), got {y.dtype} {tuple(y.shape)}")

    def subset(self, train: int | None, test: int | None, seed: int = 0) -> ImageDataset:
        """Return a class-balanced random subset (``None`` or 0 keeps a split whole).

        Per-class counts differ by at most one; the same seed always picks the
        same images, kept in their original order.
        """
        generator = torch.Generator().manual_seed(seed)
        train_idx = _balanced_indices(self.train_y, train, len(self.classes), generator)
        test_idx = _balanced_indices(self.test_y, test, len(self.classes), generator)

        def take(t: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
            return t if idx is None else t[idx]

        return ImageDataset(
            train_x=take(self.train_x, train_idx),
            train_y=take(self.train_y, train_idx),
            test_x=take(self.test_x, test_idx),
            test_y=take(self.test_y, test_idx),
            classes=self.classes,
            source=f"{self.source} (subset train={train or 'all'} test={test or 'all'} seed={seed})",
        )


class DatasetError(UserError):
    """CIFAR-10 could not be found or read; the message is one line: what failed, paths tried, what to pass."""


def default_cache_dir() -> Path:
    """Where decoded datasets are cached: ``$NAS_AGENT_CACHE`` or ``~/.cache/nas-agent``."""
    return Path(os.environ.get("NAS_AGENT_CACHE") or "~/.cache/nas-agent").expanduser()


def resolve_cifar10(
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> Path:
    """Return the path of the decoded uint8 tensor cache file (creating it if needed).

    Raises DatasetError when no source is usable.
    """
    cache_root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    source = _find_source(data_dir, cache_root, download)
    cache_path = cache_root / f"cifar10-{_cache_key(source)}.pt"
    if cache_path.exists():
        # Writes are atomic, so a bad file here was damaged from outside; the
        # zip check is cheap and catches truncation without reading the tensors.
        if zipfile.is_zipfile(cache_path):
            return cache_path
        cache_path.unlink()
    tensors = _read_source(source)
    cache_root.mkdir(parents=True, exist_ok=True)
    save_atomically(
        {"format": CACHE_FORMAT, **tensors, "classes": list(CIFAR10_CLASSES), "source": source.description},
        cache_path,
    )
    return cache_path


def load_cifar10(
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> ImageDataset:
    """Load CIFAR-10 as uint8 tensors; decoding happens once, then reads come from the cache (< 2 s)."""
    cache_path = resolve_cifar10(data_dir, cache_dir, download)
    try:
        return load_cache(cache_path)
    except DatasetError:
        # Damaged in a way the cheap check in resolve_cifar10 cannot see: rebuild once.
        cache_path.unlink(missing_ok=True)
        return load_cache(resolve_cifar10(data_dir, cache_dir, download))


def load_cache(path: str | os.PathLike) -> ImageDataset:
    """Load a cache file written by ``resolve_cifar10``; DatasetError if it is missing or damaged."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") != CACHE_FORMAT:
            raise ValueError(f"cache format {payload.get('format')!r}, expected {CACHE_FORMAT}")
        return ImageDataset(
            train_x=payload["train_x"],
            train_y=payload["train_y"],
            test_x=payload["test_x"],
            test_y=payload["test_y"],
            classes=tuple(payload["classes"]),
            source=payload["source"],
        )
    except Exception as exc:  # torch.load reports damaged files through many exception types
        raise DatasetError(
            _one_line(f"cache file {path} is unreadable ({exc}); delete it and load the dataset again")
        ) from exc


# --- where the data comes from ------------------------------------------------


class _Source(NamedTuple):
    kind: str  # "archive", "folder" or "torchvision"
    path: Path  # the archive, the folder with train/ and test/, or the cifar-10-batches-py folder
    tried: str  # how the user named it, for error messages

    @property
    def description(self) -> str:
        what = {"archive": "image archive", "folder": "image folder", "torchvision": "torchvision batches"}
        return f"CIFAR-10 {what[self.kind]} {self.path}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _error(reason: str, tried: Iterable[str]) -> DatasetError:
    return DatasetError(_one_line(f"{reason}; tried: {', '.join(tried)}; {_HINT}"))


def _find_source(data_dir: str | os.PathLike | None, cache_root: Path, download: bool) -> _Source:
    if data_dir is not None:
        return _classify(Path(data_dir), f"data_dir={data_dir}")
    env = os.environ.get("NAS_AGENT_DATA")
    if env:
        return _classify(Path(env), f"NAS_AGENT_DATA={env}")

    torchvision_root = cache_root / "torchvision"
    source = _Source("torchvision", torchvision_root / _TORCHVISION_FOLDER, f"download into {torchvision_root}")
    tried = ["data_dir (not given)", "NAS_AGENT_DATA (unset)", source.tried]
    if _has_torchvision_batches(source.path):
        return source  # downloaded earlier
    if not download:
        raise _error("no CIFAR-10 source and download is disabled", tried)
    _download(torchvision_root, tried)
    return source


def _classify(path: Path, tried: str) -> _Source:
    path = path.expanduser()
    if not path.exists():
        raise _error(f"no such file or folder: {path}", [tried])
    path = path.resolve()
    if path.is_file():
        if path.name.endswith(_ARCHIVE_SUFFIXES):
            return _Source("archive", path, tried)
        raise _error(f"{path} is a file but not a .tar.gz/.tgz/.tar archive", [tried])
    if (path / _TORCHVISION_FOLDER).is_dir():
        return _Source("torchvision", path / _TORCHVISION_FOLDER, tried)
    if path.name == _TORCHVISION_FOLDER:
        return _Source("torchvision", path, tried)
    if all((path / split).is_dir() for split in _SPLITS):
        return _Source("folder", path, tried)
    raise _error(
        f"{path} has neither train/<class>/ and test/<class>/ image folders nor {_TORCHVISION_FOLDER}/", [tried]
    )


def _has_torchvision_batches(folder: Path) -> bool:
    names = _TORCHVISION_TRAIN + _TORCHVISION_TEST + (_TORCHVISION_META,)
    return all((folder / name).is_file() for name in names)


def _download(torchvision_root: Path, tried: list[str]) -> None:
    try:
        CIFAR10(torchvision_root, train=True, download=True)
    except Exception as exc:  # network, HTTP, checksum and extraction failures all need the same advice
        raise _error(f"downloading CIFAR-10 into {torchvision_root} failed ({exc})", tried) from exc
    # The extracted batches are all we read; the 170 MB archive is dead weight.
    (torchvision_root / CIFAR10.filename).unlink(missing_ok=True)


def _cache_key(source: _Source) -> str:
    """Short hash of what the source is and its current state, so a changed source is decoded again."""
    digest = hashlib.sha256(f"{CACHE_FORMAT}\n{source.kind}\n{source.path}\n".encode())
    if source.path.is_file():
        stat = source.path.stat()
        digest.update(f"{stat.st_size} {stat.st_mtime_ns}\n".encode())
    else:
        for path in _walk_files(source.path):
            stat = path.stat()
            digest.update(f"{path.relative_to(source.path)} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _walk_files(root: Path) -> Iterator[Path]:
    """Every file under ``root``, in a fixed order."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath, name)


# --- reading and decoding -----------------------------------------------------


class _ImageFile(NamedTuple):
    split: int  # index into _SPLITS
    label: int  # index into CIFAR10_CLASSES
    name: str  # "train/cat/0001.jpg", for sorting and messages
    data: torch.Tensor  # the encoded file bytes, uint8


def _read_source(source: _Source) -> dict[str, torch.Tensor]:
    if source.kind == "torchvision":
        return _read_torchvision_batches(source)
    with _progress() as progress:
        files = _archive_files(source, progress) if source.kind == "archive" else _folder_files(source, progress)
        return _decode_files(files, source, progress)


def _progress() -> Progress:
    # stderr keeps stdout clean for machine-readable output; off when not a terminal.
    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    )


def _parse_member(name: str, source: _Source) -> tuple[int, int, str] | None:
    """(split, label, "split/class/file") for an image in the expected layout, else None.

    One leading folder is allowed (``cifar10/train/cat/1.jpg``), as archives are often made that way.
    """
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if len(parts) == 4:
        parts = parts[1:]
    if len(parts) != 3 or parts[0] not in _SPLITS:
        return None
    split, class_name, filename = parts
    if filename.startswith(".") or not filename.lower().endswith(_IMAGE_SUFFIXES):
        return None  # e.g. macOS "._" resource forks, READMEs
    if class_name not in CIFAR10_CLASSES:
        raise _error(
            f"unknown class folder {split}/{class_name} in {source.path} (expected {', '.join(CIFAR10_CLASSES)})",
            [source.tried],
        )
    return _SPLITS.index(split), CIFAR10_CLASSES.index(class_name), "/".join(parts)


def _archive_files(source: _Source, progress: Progress) -> list[_ImageFile]:
    files = []
    task = progress.add_task(f"reading {source.path.name}", total=source.path.stat().st_size)
    try:
        # Streaming mode ("r|*") reads the archive once, front to back, without extracting to disk.
        with open(source.path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as archive:
            for member in archive:
                parsed = _parse_member(member.name, source) if member.isfile() else None
                if parsed is not None:
                    data = archive.extractfile(member).read()
                    files.append(_ImageFile(*parsed, torch.frombuffer(bytearray(data), dtype=torch.uint8)))
                progress.update(task, completed=raw.tell())
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise _error(f"cannot read archive {source.path} ({exc})", [source.tried]) from exc
    return files


def _folder_files(source: _Source, progress: Progress) -> list[_ImageFile]:
    found = []
    for split in _SPLITS:
        for path in _walk_files(source.path / split):
            parsed = _parse_member(path.relative_to(source.path).as_posix(), source)
            if parsed is not None:
                found.append((parsed, path))
    files = []
    for parsed, path in progress.track(found, description=f"reading {source.path.name}"):
        files.append(_ImageFile(*parsed, torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)))
    return files


def _decode_files(files: list[_ImageFile], source: _Source, progress: Progress) -> dict[str, torch.Tensor]:
    files.sort(key=lambda f: (f.split, f.label, f.name))  # the same order every time, whatever the source
    present = {(f.split, f.label) for f in files}
    for split in range(len(_SPLITS)):
        missing = [name for label, name in enumerate(CIFAR10_CLASSES) if (split, label) not in present]
        if missing:
            raise _error(
                f"no images for {_SPLITS[split]}/{{{','.join(missing)}}} in {source.path}", [source.tried]
            )

    images: list[torch.Tensor] = []
    task = progress.add_task("decoding images", total=len(files))
    for start in range(0, len(files), _DECODE_BATCH):
        chunk = files[start : start + _DECODE_BATCH]
        images.extend(_decode_chunk(chunk, source))
        progress.advance(task, len(chunk))

    y = torch.tensor([f.label for f in files], dtype=torch.int64)
    n_train = sum(f.split == 0 for f in files)  # sorted: train images come first
    return {
        "train_x": torch.stack(images[:n_train]),
        "train_y": y[:n_train].clone(),  # clone: a slice would save the whole label storage
        "test_x": torch.stack(images[n_train:]),
        "test_y": y[n_train:].clone(),
    }


def _decode_chunk(chunk: list[_ImageFile], source: _Source) -> list[torch.Tensor]:
    try:
        # torchvision's libjpeg path decodes these ~4x faster than PIL, with identical pixels.
        images = decode_jpeg([f.data for f in chunk], mode=ImageReadMode.RGB)
    except RuntimeError:
        # A PNG or a damaged file fails the whole batch; decode one by one to
        # accept the PNGs and name the damaged file.
        images = [_decode_one(f, source) for f in chunk]
    for f, image in zip(chunk, images):
        if tuple(image.shape) != _IMAGE_SHAPE:
            raise _error(
                f"{f.name} in {source.path} is {'x'.join(map(str, image.shape))}, "
                f"expected {'x'.join(map(str, _IMAGE_SHAPE))} (CIFAR-10 images are 32x32 RGB)",
                [source.tried],
            )
    return images


def _decode_one(f: _ImageFile, source: _Source) -> torch.Tensor:
    try:
        return decode_image(f.data, mode=ImageReadMode.RGB)
    except RuntimeError as exc:
        # torchvision prefixes its messages with "function, file.cpp:line, "; keep the readable part.
        detail = re.sub(r"^\w+, \S+:\d+, ", "", str(exc))
        raise _error(f"cannot decode {f.name} in {source.path} ({detail})", [source.tried]) from exc


def _read_torchvision_batches(source: _Source) -> dict[str, torch.Tensor]:
    """Read the pickled batches of torchvision's CIFAR-10 layout straight to N x 3 x 32 x 32.

    ``torchvision.datasets.CIFAR10`` itself refuses any batch file whose md5
    differs from the official one (re-saved or trimmed copies); the format is
    what matters here, so the batches are read directly, the way it reads them.
    """

    def load(name: str) -> dict:
        path = source.path / name
        try:
            with open(path, "rb") as f:
                return pickle.load(f, encoding="latin1")  # written by Python 2
        except Exception as exc:  # unpickling reports damage through many exception types
            raise _error(f"cannot read {path} ({exc})", [source.tried]) from exc

    meta = load(_TORCHVISION_META)
    if tuple(meta.get("label_names", ())) != CIFAR10_CLASSES:
        raise _error(
            f"{source.path / _TORCHVISION_META} lists classes {meta.get('label_names')}, not CIFAR-10's",
            [source.tried],
        )
    tensors = {}
    for split, names in (("train", _TORCHVISION_TRAIN), ("test", _TORCHVISION_TEST)):
        try:
            batches = [load(name) for name in names]
            # Rows are already channel-major (1024 red, 1024 green, 1024 blue).
            x = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches]).reshape(-1, *_IMAGE_SHAPE)
            y = np.concatenate([np.asarray(b["labels"], dtype=np.int64) for b in batches])
        except (KeyError, TypeError, ValueError) as exc:
            raise _error(f"malformed {split} batches in {source.path} ({exc})", [source.tried]) from exc
        if len(x) != len(y) or len(y) == 0 or y.min() < 0 or y.max() >= len(CIFAR10_CLASSES):
            raise _error(
                f"{split} batches in {source.path} have {len(x)} images but {len(y)} labels "
                f"or labels outside 0..{len(CIFAR10_CLASSES) - 1}",
                [source.tried],
            )
        tensors[f"{split}_x"] = torch.from_numpy(np.ascontiguousarray(x))
        tensors[f"{split}_y"] = torch.from_numpy(y)
    return tensors


def _balanced_indices(
    labels: torch.Tensor, n: int | None, num_classes: int, generator: torch.Generator
) -> torch.Tensor | None:
    """Sorted indices of ``n`` items spread evenly over classes, or None to keep all."""
    if not n:
        return None
    if n > len(labels):
        raise ValueError(f"asked for {n} items but the split has only {len(labels)}")
    per_class = torch.full((num_classes,), n // num_classes)
    # The leftover items go to randomly chosen classes, not always the first ones.
    per_class[torch.randperm(num_classes, generator=generator)[: n % num_classes]] += 1
    picked = []
    for label, count in enumerate(per_class.tolist()):
        members = (labels == label).nonzero().squeeze(1)
        if count > len(members):
            raise ValueError(f"class {label} has {len(members)} items, fewer than the {count} a balanced subset needs")
        picked.append(members[torch.randperm(len(members), generator=generator)[:count]])
    return torch.cat(picked).sort().values


def save_atomically(payload: dict, path: Path) -> None:
    """Write via a temporary file and rename, so a killed process never leaves half a cache file."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp makes it owner-only; a shared cache folder must stay readable
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
