"""The dataset registry, the splits every dataset builder returns, and where data lives.

A builder loads its data (any way it likes) and hands the arrays to ``make_splits``, which carves
a seeded, stratified validation split from the training set and normalizes with statistics of
the training split only. The test set is never used for anything but the reported test metrics.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.errors import UsageError
from harness.registry import Registry

DATASETS = Registry("dataset")
ROOT_ENV = "HARNESS_DATA_ROOT"
DEFAULT_ROOT = Path("~/.cache/harness/data")


class DataMissing(UsageError):
    """Dataset files are not where they should be and cannot be downloaded."""


def resolve_root(root: str | None) -> Path:
    """The suite's ``dataset.root``, else ``--data-root``/$HARNESS_DATA_ROOT, else the default."""
    chosen = root or os.environ.get(ROOT_ENV) or str(DEFAULT_ROOT)
    return Path(chosen).expanduser()


@dataclass(frozen=True)
class DataSplits:
    """Normalized float32 tensors, one sample per row of the leading dimension."""

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    meta: dict[str, Any]

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.train[0].shape[1:])

    @property
    def num_classes(self) -> int:
        return int(self.meta["num_classes"])

    def to(self, device: torch.device) -> "DataSplits":
        move = lambda pair: (pair[0].to(device), pair[1].to(device))  # noqa: E731
        return DataSplits(move(self.train), move(self.val), move(self.test), self.meta)


def stratified_split(y: torch.Tensor, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (rest, held_out): ``size`` samples held out, each class in proportion to its count."""
    if not 0 < size < len(y):
        raise ValueError(f"split size must be between 1 and {len(y) - 1}, got {size}")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    classes, counts = torch.unique(y, return_counts=True)
    exact = counts.double() * size / len(y)
    take = exact.floor().long()
    # Largest remainders get the samples that flooring left over, so the total is exactly `size`.
    order = torch.argsort(exact - take.double(), descending=True, stable=True)
    take[order[: size - int(take.sum())]] += 1
    held = [perm[y[perm] == c][:k] for c, k in zip(classes.tolist(), take.tolist())]
    held_idx = torch.sort(torch.cat(held)).values
    mask = torch.ones(len(y), dtype=torch.bool)
    mask[held_idx] = False
    return torch.nonzero(mask).squeeze(1), held_idx


def make_splits(
    name: str, x: torch.Tensor, y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, *,
    val_size: int, split_seed: int, train_subset: int | None, scale: float, classes: list[str],
) -> DataSplits:
    """``x`` is (N, C, H, W) or (N, C, L) raw values; ``scale`` maps them to [0, 1]."""
    if val_size >= len(y):
        raise DataMissing(f"dataset {name}: val_size {val_size} leaves no training data ({len(y)} samples)")
    train_idx, val_idx = stratified_split(y, val_size, split_seed)
    if train_subset is not None and train_subset < len(train_idx):
        _, keep = stratified_split(y[train_idx], train_subset, split_seed + 1)
        train_idx = train_idx[keep]
    xf = x.float() / scale
    train_x = xf[train_idx]
    dims = [0] + list(range(2, train_x.dim()))  # per channel
    mean = train_x.mean(dim=dims, keepdim=True)
    std = train_x.std(dim=dims, keepdim=True).clamp_min(1e-8)
    norm = lambda t: ((t.float() / scale - mean) / std).contiguous()  # noqa: E731
    meta = {
        "name": name, "num_classes": len(classes), "classes": classes, "shape": list(x.shape[1:]),
        "n_train": len(train_idx), "n_val": len(val_idx), "n_test": len(test_y),
        "mean": mean.flatten().tolist(), "std": std.flatten().tolist(),
    }
    return DataSplits(
        ((train_x - mean) / std, y[train_idx].long()),
        (norm(x[val_idx]), y[val_idx].long()),
        (norm(test_x), test_y.long()),
        meta,
    )

