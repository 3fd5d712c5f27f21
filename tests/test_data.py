"""Tests for nas_agent.data: CIFAR-10 loading/caching from real images, and batched augmentation."""

from __future__ import annotations

import pickle
import shutil
import socket
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from nas_agent.data import (
    CIFAR10_CLASSES,
    CIFAR10_MEAN,
    CIFAR10_STD,
    DatasetError,
    ImageDataset,
    augment_batch,
    default_cache_dir,
    load_cache,
    load_cifar10,
    normalize,
    random_crop,
    random_flip,
    resolve_cifar10,
)

REPO = Path(__file__).resolve().parents[1]
PER_CLASS_SMALL = 20  # images per class and split in the extracted folder


# --- fixtures -------------------------------------------------------------------


@pytest.fixture(scope="session")
def archive(cifar_archive) -> Path:
    return cifar_archive


@pytest.fixture(scope="session")
def cache_dir(data_cache_dir) -> Path:
    """The session's shared cache folder (conftest), so the archive is decoded once per session."""
    return data_cache_dir


@pytest.fixture(scope="session")
def full(archive, cache_dir) -> ImageDataset:
    """The whole archive, decoded once per session."""
    return load_cifar10(archive, cache_dir=cache_dir)


@pytest.fixture(scope="session")
def small_folder(archive, tmp_path_factory) -> Path:
    """The first PER_CLASS_SMALL files (by name) of every split/class, extracted into a folder."""
    root = tmp_path_factory.mktemp("small")
    with tarfile.open(archive) as tf:
        by_folder: dict[tuple[str, str], list[tarfile.TarInfo]] = {}
        for member in tf.getmembers():
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 3:
                by_folder.setdefault((parts[0], parts[1]), []).append(member)
        chosen = [m for members in by_folder.values() for m in sorted(members, key=lambda m: m.name)[:PER_CLASS_SMALL]]
        # In archive order: a backward seek in a .gz restarts decompression from the start.
        tf.extractall(root, members=sorted(chosen, key=lambda m: m.offset), filter="data")
    return root


@pytest.fixture(autouse=True)
def no_data_env(monkeypatch):
    """A NAS_AGENT_DATA in the developer's shell must not change what these tests load."""
    monkeypatch.delenv("NAS_AGENT_DATA", raising=False)


def assert_same(a: ImageDataset, b: ImageDataset) -> None:
    for name in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.classes == b.classes


def save_image(path: Path, size: int = 32, seed: int = 0, fmt: str = "JPEG") -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path, fmt)


def make_image_folder(root: Path) -> Path:
    """One small valid image per split and class (PNG in train, JPEG in test)."""
    for split, fmt, ext in (("train", "PNG", "png"), ("test", "JPEG", "jpg")):
        for label, name in enumerate(CIFAR10_CLASSES):
            save_image(root / split / name / f"0000.{ext}", seed=label, fmt=fmt)
    return root


def assert_one_line_error(exc: pytest.ExceptionInfo, path: Path) -> None:
    message = str(exc.value)
    assert "\n" not in message
    assert str(path) in message
    assert "--data-dir" in message and "NAS_AGENT_DATA" in message


# --- loading the real archive -----------------------------------------------------


def test_archive_loads_full_cifar10(full, archive):
    assert full.train_x.shape == (50000, 3, 32, 32)
    assert full.test_x.shape == (10000, 3, 32, 32)
    assert full.train_x.dtype == full.test_x.dtype == torch.uint8
    assert full.train_y.dtype == full.test_y.dtype == torch.int64
    assert full.train_x.is_contiguous() and full.test_x.is_contiguous()
    assert full.train_y.bincount().tolist() == [5000] * 10
    assert full.test_y.bincount().tolist() == [1000] * 10
    assert full.classes == CIFAR10_CLASSES
    assert str(archive.resolve()) in full.source
    # Real photographs: pixel values spread over the range, and images differ.
    assert full.train_x.min() < 20 and full.train_x.max() > 235
    assert not torch.equal(full.train_x[0], full.train_x[1])
    assert 90 < full.train_x.float().mean() < 150


def test_second_load_comes_from_cache(full, archive, cache_dir):
    cache_path = resolve_cifar10(archive, cache_dir=cache_dir)
    assert cache_path.is_file() and cache_path.parent == cache_dir
    assert list(cache_dir.glob("cifar10-*.pt")) == [cache_path]
    written = cache_path.stat().st_mtime_ns

    again = load_cifar10(archive, cache_dir=cache_dir)

    assert_same(again, full)
    assert_same(load_cache(cache_path), full)
    assert cache_path.stat().st_mtime_ns == written  # read, not rewritten
    assert list(cache_dir.glob("*")) == [cache_path]  # no temporary files left behind


def test_folder_layout_matches_archive_pixels(full, small_folder, tmp_path):
    folder = load_cifar10(small_folder, cache_dir=tmp_path)

    assert folder.train_x.shape == (10 * PER_CLASS_SMALL, 3, 32, 32)
    assert folder.test_x.shape == (10 * PER_CLASS_SMALL, 3, 32, 32)
    for split in ("train", "test"):
        x, y = getattr(folder, f"{split}_x"), getattr(folder, f"{split}_y")
        full_x, full_y = getattr(full, f"{split}_x"), getattr(full, f"{split}_y")
        for label in range(10):
            # Both are sorted by file name within a class, so these are the same files.
            assert torch.equal(x[y == label], full_x[full_y == label][:PER_CLASS_SMALL]), (split, label)


def test_archive_with_leading_folder_and_env_variable(small_folder, tmp_path, monkeypatch):
    packed = tmp_path / "cifar-small.tgz"
    with tarfile.open(packed, "w:gz") as tf:
        for split in ("train", "test"):
            tf.add(small_folder / split, arcname=f"cifar10-jpeg/{split}")
    from_folder = load_cifar10(small_folder, cache_dir=tmp_path / "cache")

    monkeypatch.setenv("NAS_AGENT_DATA", str(packed))
    from_archive = load_cifar10(cache_dir=tmp_path / "cache")

    assert_same(from_archive, from_folder)
    assert str(packed) in from_archive.source


def test_changed_source_is_decoded_again(small_folder, tmp_path):
    folder = shutil.copytree(small_folder, tmp_path / "data")
    first_path = resolve_cifar10(folder, cache_dir=tmp_path / "cache")
    before = load_cache(first_path)

    target = sorted((folder / "train" / "airplane").iterdir())[0]
    target.write_bytes(sorted((folder / "train" / "truck").iterdir())[0].read_bytes())
    second_path = resolve_cifar10(folder, cache_dir=tmp_path / "cache")
    after = load_cache(second_path)

    assert second_path != first_path
    assert not torch.equal(after.train_x[0], before.train_x[0])
    assert torch.equal(after.train_x[0], after.train_x[after.train_y == 9][0])


@pytest.mark.parametrize("damage", [b"not a cache file", "valid zip, wrong content"])
def test_corrupt_cache_is_rebuilt(small_folder, tmp_path, damage):
    cache = tmp_path / "cache"
    good = load_cifar10(small_folder, cache_dir=cache)
    cache_path = resolve_cifar10(small_folder, cache_dir=cache)
    if isinstance(damage, bytes):
        cache_path.write_bytes(damage)
    else:
        # Passes the cheap zip check in resolve_cifar10; only a full load notices.
        with zipfile.ZipFile(cache_path, "w") as zf:
            zf.writestr("junk.txt", "junk")

    with pytest.raises(DatasetError) as exc:
        load_cache(cache_path)
    assert str(cache_path) in str(exc.value)
    assert_same(load_cifar10(small_folder, cache_dir=cache), good)


# --- torchvision layout -----------------------------------------------------------


def write_torchvision_batches(root: Path, rows: int) -> tuple[np.ndarray, list[int], np.ndarray, list[int]]:
    """A tiny cifar-10-batches-py in torchvision's pickle format; returns the train/test data and labels."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def write(name: str, payload: dict) -> None:
        with open(folder / name, "wb") as f:
            pickle.dump(payload, f, protocol=2)

    train_data, train_labels = [], []
    for i in range(1, 6):
        data = rng.integers(0, 256, (rows, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, rows).tolist()
        write(f"data_batch_{i}", {"batch_label": f"training batch {i} of 5", "data": data, "labels": labels,
                                  "filenames": [f"{i}_{r}.png" for r in range(rows)]})
        train_data.append(data)
        train_labels += labels
    test_data = rng.integers(0, 256, (rows, 3072), dtype=np.uint8)
    test_labels = list(range(10)) * (rows // 10)
    write("test_batch", {"batch_label": "testing batch 1 of 1", "data": test_data, "labels": test_labels,
                         "filenames": [f"t_{r}.png" for r in range(rows)]})
    write("batches.meta", {"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": rows, "num_vis": 3072})
    return np.concatenate(train_data), train_labels, test_data, test_labels


@pytest.mark.parametrize("point_at", ["root", "batches folder"])
def test_torchvision_layout_round_trips(tmp_path, point_at):
    train_data, train_labels, test_data, test_labels = write_torchvision_batches(tmp_path / "tv", rows=20)
    data_dir = tmp_path / "tv" if point_at == "root" else tmp_path / "tv" / "cifar-10-batches-py"

    ds = load_cifar10(data_dir, cache_dir=tmp_path / "cache")

    assert ds.train_x.shape == (100, 3, 32, 32) and ds.test_x.shape == (20, 3, 32, 32)
    assert ds.train_x.dtype == torch.uint8 and ds.train_x.is_contiguous()
    assert ds.train_y.tolist() == train_labels and ds.test_y.tolist() == test_labels
    # torchvision's .data is the rows reshaped to NCHW then moved to NHWC; we keep NCHW.
    nhwc = train_data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    assert torch.equal(ds.train_x, torch.from_numpy(nhwc).permute(0, 3, 1, 2))
    assert torch.equal(ds.test_x, torch.from_numpy(test_data.reshape(-1, 3, 32, 32)))
    assert ds.train_x[0, 0, 0, 0] == train_data[0, 0] and ds.train_x[0, 1, 0, 0] == train_data[0, 1024]


# --- errors ---------------------------------------------------------------------------


def test_missing_path_is_a_one_line_error(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as exc:
        load_cifar10(missing, cache_dir=tmp_path / "cache")
    assert_one_line_error(exc, missing)


def test_empty_folder_is_a_one_line_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError) as exc:
        load_cifar10(empty, cache_dir=tmp_path / "cache")
    assert_one_line_error(exc, empty)


@pytest.mark.parametrize("kind", ["random bytes", "truncated"])
def test_corrupt_archive_is_a_one_line_error(tmp_path, archive, kind):
    bad = tmp_path / "cifar.tar.gz"
    if kind == "random bytes":
        bad.write_bytes(np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8).tobytes())
    else:
        with open(archive, "rb") as f:
            bad.write_bytes(f.read(1_000_000))
    with pytest.raises(DatasetError) as exc:
        load_cifar10(bad, cache_dir=tmp_path / "cache")
    assert_one_line_error(exc, bad)
    assert not list((tmp_path / "cache").glob("*.pt"))


def test_wrong_size_image_is_a_one_line_error(tmp_path):
    folder = make_image_folder(tmp_path / "data")
    save_image(folder / "train" / "cat" / "big.jpg", size=40)
    with pytest.raises(DatasetError) as exc:
        load_cifar10(folder, cache_dir=tmp_path / "cache")
    assert_one_line_error(exc, folder)
    assert "train/cat/big.jpg" in str(exc.value) and "3x40x40" in str(exc.value)


def test_undecodable_image_is_a_one_line_error(tmp_path):
    folder = make_image_folder(tmp_path / "data")
    (folder / "test" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    with pytest.raises(DatasetError) as exc:
        load_cifar10(folder, cache_dir=tmp_path / "cache")
    assert_one_line_error(exc, folder)
    assert "test/dog/broken.jpg" in str(exc.value)


@pytest.mark.parametrize("damage", ["unknown class", "missing class"])
def test_wrong_class_folders_are_a_one_line_error(tmp_path, damage):
    folder = make_image_folder(tmp_path / "data")
    if damage == "unknown class":
        save_image(folder / "train" / "cats" / "0000.png", fmt="PNG")
    else:
        shutil.rmtree(folder / "test" / "frog")
    with pytest.raises(DatasetError) as exc:
        load_cifar10(folder, cache_dir=tmp_path / "cache")
    assert_one_line_error(exc, folder)
    assert ("cats" if damage == "unknown class" else "frog") in str(exc.value)


def test_png_and_jpeg_folder_loads(tmp_path):
    ds = load_cifar10(make_image_folder(tmp_path / "data"), cache_dir=tmp_path / "cache")
    assert ds.train_x.shape == ds.test_x.shape == (10, 3, 32, 32)
    assert ds.train_y.tolist() == ds.test_y.tolist() == list(range(10))
    # PNG is lossless: the pixels are exactly those written.
    expected = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert torch.equal(ds.train_x[3], torch.from_numpy(expected).permute(2, 0, 1))


def test_no_source_and_failed_download_is_a_one_line_error(tmp_path):
    cache = tmp_path / "cache"
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(5)  # no network here; never hang on it
    try:
        with pytest.raises(DatasetError) as exc:
            load_cifar10(None, cache_dir=cache, download=True)
    finally:
        socket.setdefaulttimeout(previous)
    assert_one_line_error(exc, cache / "torchvision")
    assert "download" in str(exc.value)


def test_no_source_without_download_is_a_one_line_error(tmp_path):
    with pytest.raises(DatasetError) as exc:
        load_cifar10(None, cache_dir=tmp_path / "cache", download=False)
    assert_one_line_error(exc, tmp_path / "cache" / "torchvision")


def test_default_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("NAS_AGENT_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("NAS_AGENT_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "nas-agent"


# --- subsets ----------------------------------------------------------------------------


def test_subset_is_class_balanced_and_seeded(full):
    sub = full.subset(1000, 200, seed=0)
    assert sub.train_x.shape == (1000, 3, 32, 32) and sub.test_x.shape == (200, 3, 32, 32)
    assert sub.train_y.bincount().tolist() == [100] * 10
    assert sub.test_y.bincount().tolist() == [20] * 10
    assert sub.train_x.is_contiguous() and sub.classes == full.classes

    assert_same(full.subset(1000, 200, seed=0), sub)
    other = full.subset(1000, 200, seed=1)
    assert not torch.equal(other.train_x, sub.train_x)
    assert not torch.equal(other.test_x, sub.test_x)

    # The chosen images are real members of the full set with their own labels.
    first = sub.train_x[0]
    matches = (full.train_x == first).flatten(1).all(1).nonzero().flatten()
    assert len(matches) >= 1 and full.train_y[matches[0]] == sub.train_y[0]


def test_subset_uneven_and_keep_all(full):
    sub = full.subset(1005, None, seed=3)
    counts = sub.train_y.bincount().tolist()
    assert sum(counts) == 1005 and set(counts) == {100, 101}
    assert sub.test_x is full.test_x  # None keeps the split as it is
    assert full.subset(0, 0).train_x is full.train_x
    with pytest.raises(ValueError):
        full.subset(50001, None)


# --- augmentation ------------------------------------------------------------------------


def noise_batch(n: int = 64, seed: int = 0) -> torch.Tensor:
    # Random pixels make every window and every flip distinguishable.
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_normalize_matches_formula():
    x = noise_batch()
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    out = normalize(x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert torch.allclose(out, (x.float() / 255 - mean) / std, atol=1e-6)
    assert normalize(x, dtype=torch.float64).dtype == torch.float64
    assert normalize(x, dtype=torch.bfloat16).dtype == torch.bfloat16
    with pytest.raises(TypeError):
        normalize(x.float())


def test_normalize_of_real_data_is_roughly_standard(full):
    # A balanced sample: the data is sorted by class, and airplanes alone are mostly blue sky.
    out = normalize(full.subset(5000, None).train_x)
    per_channel_mean = out.mean(dim=(0, 2, 3))
    per_channel_std = out.std(dim=(0, 2, 3))
    assert per_channel_mean.abs().max() < 0.1
    assert (per_channel_std - 1).abs().max() < 0.1


def test_flip_flips_about_half_exactly():
    x = noise_batch(1000)
    out = random_flip(x, torch.Generator().manual_seed(0))
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert torch.all(flipped ^ kept)  # every sample is exactly one of the two
    assert 400 < int(flipped.sum()) < 600
    assert out.dtype == x.dtype and out.shape == x.shape


def test_crop_with_zero_padding_is_identity():
    x = noise_batch()
    assert torch.equal(random_crop(x, 0, torch.Generator().manual_seed(0)), x)


def test_crop_yields_windows_of_reflect_padded_input():
    x = noise_batch(64)
    out = random_crop(x, 4, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = F.pad(x.float(), (4, 4, 4, 4), mode="reflect")
    offsets = set()
    for i in range(len(x)):
        found = [
            (dy, dx)
            for dy in range(9)
            for dx in range(9)
            if torch.equal(padded[i, :, dy : dy + 32, dx : dx + 32], out[i].float())
        ]
        assert len(found) == 1, f"sample {i}: {found}"
        offsets.add(found[0])
    assert len(offsets) > 20  # offsets are drawn per sample, not once per batch
    with pytest.raises(ValueError):
        random_crop(x, 32)


def test_augment_batch_is_deterministic_for_a_seed():
    x = noise_batch()
    a = augment_batch(x, crop_padding=4, flip=True, generator=torch.Generator().manual_seed(7))
    b = augment_batch(x, crop_padding=4, flip=True, generator=torch.Generator().manual_seed(7))
    c = augment_batch(x, crop_padding=4, flip=True, generator=torch.Generator().manual_seed(8))
    assert a.dtype == torch.float32 and a.shape == x.shape
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(augment_batch(x), normalize(x))
    assert augment_batch(x, dtype=torch.float16).dtype == torch.float16
