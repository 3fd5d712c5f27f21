"""Datasets as uint8 tensors (CIFAR-10 loading and caching) and batched augmentation."""

from nas_agent.data.augment import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    augment_batch,
    normalize,
    random_crop,
    random_flip,
)
from nas_agent.data.cifar import (
    CIFAR10_CLASSES,
    DatasetError,
    ImageDataset,
    default_cache_dir,
    load_cache,
    load_cifar10,
    resolve_cifar10,
)

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DatasetError",
    "ImageDataset",
    "augment_batch",
    "default_cache_dir",
    "load_cache",
    "load_cifar10",
    "normalize",
    "random_crop",
    "random_flip",
    "resolve_cifar10",
]
