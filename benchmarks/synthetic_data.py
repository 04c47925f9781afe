"""A harness plugin for speed benchmarks: ``synthetic-cifar``, random CIFAR-shaped images (3x32x32 uint8,
10 classes) made from a seed, so that a GPU machine without the CIFAR files can time CIFAR-sized models.
Nothing learned on it means anything; only its shapes and sizes do.

    harness run SUITE --plugin benchmarks/synthetic_data.py     # dataset: {name: synthetic-cifar}
"""
from __future__ import annotations

import torch

from harness.data.base import DataSplits, make_splits
from harness.registries import DATASETS


@DATASETS.register("synthetic-cifar", in_shape=(3, 32, 32), num_classes=10, train_size=5000)
def synthetic_cifar(*, num_train: int = 5000, num_test: int = 1000, val_size: int = 500, split_seed: int = 0,
                    seed: int = 0) -> DataSplits:
    """``num_train`` + ``num_test`` uniform random uint8 images with uniform random labels, from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (num_train + num_test, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (num_train + num_test,), generator=g)
    return make_splits("synthetic-cifar", x[:num_train], y[:num_train], x[num_train:], y[num_train:],
                       val_size=val_size, split_seed=split_seed, train_subset=None, scale=255.0,
                       classes=[str(i) for i in range(10)])
