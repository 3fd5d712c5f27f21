"""The `__main__` of an exported candidate: CIFAR-10 training with plain PyTorch and torchvision.

`nas_agent.export` appends the text below the marker to a candidate's code, after an
`EXPORT_RECIPE = {...}` line, so this file never runs as part of nas-agent itself. It repeats
nas-agent's fast training path step by step (data order, class-balanced subset, seeded
crop/flip per epoch, SGD + one-cycle, label smoothing, evaluation), so an exported winner
trained on the same images and device lands where the catalog says it did. Every top-level
name starts with `_export_` so it cannot shadow a name the candidate's code uses.
"""

# --- nas-agent standalone runner (begin) ---
_EXPORT_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_EXPORT_MEAN = (0.4914, 0.4822, 0.4465)
_EXPORT_STD = (0.2470, 0.2435, 0.2616)


def _export_read_cifar10(path):
    """CIFAR-10 as uint8 tensors: {"train": (x, y), "test": (x, y)}, in nas-agent's image order.

    `path`: a .tar.gz/.tgz/.tar archive or a folder laid out as train/<class>/*.jpg and
    test/<class>/*.jpg (one leading folder allowed), or a torchvision root holding
    cifar-10-batches-py/. Returns undecoded files for the image layouts (decoded later, only
    those a subset keeps).
    """
    import pickle
    import tarfile
    from pathlib import Path

    import numpy as np
    import torch

    path = Path(path)
    batches = path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path
    if (batches / "data_batch_1").is_file():
        def load(name):
            with open(batches / name, "rb") as f:
                return pickle.load(f, encoding="latin1")

        out = {}
        for split, names in (("train", [f"data_batch_{i}" for i in range(1, 6)]), ("test", ["test_batch"])):
            parts = [load(n) for n in names]
            x = np.concatenate([np.asarray(p["data"], dtype=np.uint8) for p in parts]).reshape(-1, 3, 32, 32)
            y = np.concatenate([np.asarray(p["labels"], dtype=np.int64) for p in parts])
            out[split] = (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y))
        return out

    files = []  # (split, label, "split/class/file", bytes)

    def add(name, read):
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if len(parts) == 4:
            parts = parts[1:]
        if len(parts) != 3 or parts[0] not in ("train", "test") or parts[1] not in _EXPORT_CLASSES:
            return
        if parts[2].startswith(".") or not parts[2].lower().endswith((".jpg", ".jpeg", ".png")):
            return
        files.append((("train", "test").index(parts[0]), _EXPORT_CLASSES.index(parts[1]), "/".join(parts), read()))

    if path.is_file():
        with tarfile.open(path, mode="r|*") as archive:
            for member in archive:
                if member.isfile():
                    add(member.name, lambda: archive.extractfile(member).read())
    elif path.is_dir():
        for file in sorted(path.rglob("*")):
            if file.is_file():
                add(file.relative_to(path).as_posix(), file.read_bytes)
    else:
        raise SystemExit(f"error: no CIFAR-10 at {path} (give an archive, an image folder or a torchvision root)")
    files.sort(key=lambda f: f[:3])
    out = {}
    for index, split in enumerate(("train", "test")):
        chosen = [f for f in files if f[0] == index]
        if not chosen:
            raise SystemExit(f"error: no {split}/<class>/*.jpg images in {path}")
        out[split] = ([f[3] for f in chosen], torch.tensor([f[1] for f in chosen], dtype=torch.int64))
    return out


def _export_balanced(labels, n, generator):
    """Sorted indices of n items spread evenly over the 10 classes (None: all), as nas-agent picks them."""
    import torch

    if not n:
        return None
    if n > len(labels):
        raise SystemExit(f"error: asked for {n} images but the split has only {len(labels)}")
    per_class = torch.full((10,), n // 10)
    per_class[torch.randperm(10, generator=generator)[: n % 10]] += 1
    picked = []
    for label, count in enumerate(per_class.tolist()):
        members = (labels == label).nonzero().squeeze(1)
        picked.append(members[torch.randperm(len(members), generator=generator)[:count]])
    return torch.cat(picked).sort().values


def _export_data(path, train_subset, test_subset, seed):
    """(train_x, train_y, test_x, test_y): uint8 N x 3 x 32 x 32 images and int64 labels."""
    import torch
    from torchvision.io import ImageReadMode, decode_image

    splits = _export_read_cifar10(path)
    generator = torch.Generator().manual_seed(seed)
    tensors = []
    for split, n in (("train", train_subset), ("test", test_subset)):
        x, y = splits[split]
        idx = _export_balanced(y, n, generator)
        if idx is not None:
            x = x[idx] if torch.is_tensor(x) else [x[i] for i in idx.tolist()]
            y = y[idx]
        if not torch.is_tensor(x):
            x = torch.stack([decode_image(torch.frombuffer(bytearray(b), dtype=torch.uint8), mode=ImageReadMode.RGB)
                             for b in x])
        tensors += [x, y]
    return tuple(tensors)


def _export_augment(x, crop_padding, flip, generator):
    """Reflect-padded random crop and horizontal flip of a uint8 batch, then normalisation (float32)."""
    import torch

    n, _, h, w = x.shape
    if crop_padding:
        def reflect(index, size):
            last = size - 1
            return last - (last - index.abs()).abs()

        offsets = torch.randint(0, 2 * crop_padding + 1, (2, n), device=x.device, generator=generator)
        rows = reflect(torch.arange(h, device=x.device) + offsets[0, :, None] - crop_padding, h)
        cols = reflect(torch.arange(w, device=x.device) + offsets[1, :, None] - crop_padding, w)
        x = x.gather(2, rows[:, None, :, None].expand(x.shape))
        x = x.gather(3, cols[:, None, None, :].expand(x.shape))
    if flip:
        flips = torch.rand(n, device=x.device, generator=generator) < 0.5
        x = torch.where(flips[:, None, None, None], x.flip(-1), x)
    return _export_normalize(x)


def _export_normalize(x):
    import torch

    mean = torch.tensor(_EXPORT_MEAN, dtype=torch.float32, device=x.device).view(-1, 1, 1)
    std = torch.tensor(_EXPORT_STD, dtype=torch.float32, device=x.device).view(-1, 1, 1)
    return (x.to(torch.float32) / 255 - mean) / std


def _export_run(recipe, data_path, device_name="auto", log=print):
    """Build Net, train it by `recipe` on CIFAR-10 from `data_path`, evaluate after each epoch; the history."""
    import math
    import time
    from contextlib import nullcontext

    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    r = recipe
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device_name == "auto" else device_name)
    torch.manual_seed(r["seed"])
    torch.cuda.manual_seed_all(r["seed"])
    train_x, train_y, test_x, test_y = (t.to(device) for t in _export_data(
        data_path, r["train_subset"], r["test_subset"], r["seed"]))
    prm = {"lr": r["lr"], "momentum": r["momentum"], "dropout": r["dropout"],
           "checkpoint_blocks": r.get("checkpoint_blocks", False)}
    model = Net((1, 3, 32, 32), (10,), prm, device)  # noqa: F821 - defined above in the exported file
    model.to(device)
    cuda = device.type == "cuda"
    channels_last = r["channels_last"] == "on" or (r["channels_last"] == "auto" and cuda)
    if channels_last:
        model.to(memory_format=torch.channels_last)

    def autocast():
        if r["amp"] == "auto" and cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
        return nullcontext()

    steps = r["epochs"] * math.ceil(len(train_x) / r["batch_size"])
    if r["loop"] == "contract":
        model.train_setup(prm)
    else:
        params = [p for p in model.parameters() if p.requires_grad]
        if r["optimizer"] == "adamw":
            fast = {"fused": True} if cuda else {"foreach": True}
            optimizer = torch.optim.AdamW(params, lr=r["lr"], weight_decay=r["weight_decay"], **fast)
        else:
            optimizer = torch.optim.SGD(params, lr=r["lr"], momentum=r["momentum"],
                                        nesterov=r["nesterov"] and r["momentum"] > 0,
                                        weight_decay=r["weight_decay"], foreach=True)
        if r["schedule"] == "onecycle" and steps >= 4:
            # At least two warm-up steps: OneCycleLR divides by zero on a one-step phase.
            warmup = min(max(r["warmup_fraction"], 2 / steps), 1 - 2 / steps)
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=r["lr"], total_steps=steps, pct_start=warmup,
                anneal_strategy="linear", div_factor=10.0, final_div_factor=100.0, cycle_momentum=False)
        elif r["schedule"] == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        else:
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        criterion = nn.CrossEntropyLoss(label_smoothing=r["label_smoothing"])

    def batches(generator):
        order = torch.randperm(len(train_x), device=device, generator=generator)
        for start in range(0, len(train_x), r["batch_size"]):
            idx = order[start:start + r["batch_size"]]
            xb = _export_augment(train_x[idx], r["crop_padding"], r["flip"], generator)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yield xb, train_y[idx]

    @torch.no_grad()
    def recalibrate_batchnorm():
        # As nas-agent scores: re-estimate BatchNorm statistics on the first training images
        # (reset, cumulative average, no gradient, only the normalization layers in train mode).
        n = min(r.get("bn_recalibration", 0), len(train_x))
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)
                 and m.track_running_stats and m.running_mean is not None]
        if n <= 0 or not norms:
            return
        model.eval()
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        for start in range(0, n, r["batch_size"]):
            xb = _export_normalize(train_x[start:min(start + r["batch_size"], n)])
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast():
                model(xb)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
            m.eval()

    @torch.no_grad()
    def evaluate():
        recalibrate_batchnorm()
        model.eval()
        correct, loss_sum = 0, 0.0
        size = r.get("eval_batch_size") or (1000 if cuda else 64)
        for start in range(0, len(test_x), size):
            xb = _export_normalize(test_x[start:start + size])
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yb = test_y[start:start + size]
            with autocast():
                out = model(xb)
            loss_sum += F.cross_entropy(out.float(), yb, reduction="sum").item()
            correct += (out.argmax(1) == yb).sum().item()
        return correct / max(len(test_x), 1), loss_sum / max(len(test_x), 1)

    history = []
    for epoch in range(1, r["epochs"] + 1):
        generator = torch.Generator(device=device)
        generator.manual_seed(r["seed"] * 1000 + epoch)  # as nas-agent seeds each epoch
        started = time.perf_counter()
        train_loss = None
        if r["loop"] == "contract":
            model.learn(batches(generator))
        else:
            model.train()
            loss_sum, seen = 0.0, 0
            for xb, yb in batches(generator):
                with autocast():
                    loss = criterion(model(xb).float(), yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if r["grad_clip"] > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), r["grad_clip"], foreach=True)
                optimizer.step()
                scheduler.step()
                loss_sum += loss.item() * len(yb)
                seen += len(yb)
            train_loss = loss_sum / seen
        accuracy, test_loss = evaluate()
        history.append({"epoch": epoch, "test_accuracy": accuracy, "test_loss": test_loss,
                        "train_loss": train_loss, "seconds": time.perf_counter() - started})
        log(f"epoch {epoch}/{r['epochs']}  test accuracy {accuracy:.4f}  test loss {test_loss:.4f}"
            + (f"  train loss {train_loss:.4f}" if train_loss is not None else "")
            + f"  {history[-1]['seconds']:.1f} s")
    return history


def _export_main(argv=None):
    """Command line: train and evaluate this network on CIFAR-10 with the recipe it was catalogued with."""
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(description=f"Train {EXPORT_NAME} on CIFAR-10 with its catalogued recipe.")  # noqa: F821
    parser.add_argument("data", help="CIFAR-10: a .tar.gz of train/<class>/*.jpg + test/<class>/*.jpg, "
                                     "such a folder, or a torchvision root (cifar-10-batches-py/)")
    parser.add_argument("--epochs", type=int, help="epochs (default: the recipe's)")
    parser.add_argument("--train-subset", type=int, help="train on N class-balanced images (0: all)")
    parser.add_argument("--test-subset", type=int, help="test on M class-balanced images (0: all)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    args = parser.parse_args(argv)
    recipe = dict(EXPORT_RECIPE)  # noqa: F821 - defined above in the exported file
    for key in ("epochs", "train_subset", "test_subset"):
        if getattr(args, key) is not None:
            if getattr(args, key) < (1 if key == "epochs" else 0):
                parser.error(f"--{key.replace('_', '-')} must be {'positive' if key == 'epochs' else '>= 0'}")
            recipe[key] = getattr(args, key)
    history = _export_run(recipe, args.data, args.device, log=lambda line: print(line, file=sys.stderr))
    print(json.dumps({"model": EXPORT_NAME, "epochs": recipe["epochs"],  # noqa: F821
                      "test_accuracy": history[-1]["test_accuracy"],
                      "best_test_accuracy": max(h["test_accuracy"] for h in history), "history": history}))


if __name__ == "__main__":
    _export_main()
