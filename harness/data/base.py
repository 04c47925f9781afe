"""The dataset registry, the splits every dataset builder returns, and where data lives.

A builder loads its data (any way it likes) and hands the arrays to ``make_splits``, which carves
a seeded, stratified validation split from the training set and normalizes with statistics of
the training split only. The test set is never used for anything but the reported test metrics.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

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


PREPROCESS = ("standardize", "mean_image", "minmax", "pca_whiten", "zca")


def fit_preprocess(train: torch.Tensor, kind: str, eps: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """A transform fitted on the training split only, then applied to every split.

    standardize: per-channel (x − μ_c)/σ_c. mean_image: x − the mean training image.
    minmax: per-channel (x − min_c)/(max_c − min_c). pca_whiten: rotate the centred, flattened
    input onto the covariance's eigenvectors and divide by √(λ + eps) (the shape is kept, its
    axes are no longer pixels: for MLPs). zca: the same whitening rotated back,
    U diag(1/√(λ + eps)) Uᵀ, so images stay images (Bell & Sejnowski 1997; Krizhevsky 2009).
    """
    if kind == "standardize":
        dims = [0] + list(range(2, train.dim()))  # per channel
        mean, std = train.mean(dims, keepdim=True), train.std(dims, keepdim=True).clamp_min(1e-8)
        return lambda t: (t - mean) / std
    if kind == "mean_image":
        mean = train.mean(0, keepdim=True)
        return lambda t: t - mean
    if kind == "minmax":
        flat = train.transpose(0, 1).reshape(train.shape[1], -1)
        shape = (1, -1) + (1,) * (train.dim() - 2)
        low, high = flat.min(1).values.view(shape), flat.max(1).values.view(shape)
        return lambda t: (t - low) / (high - low).clamp_min(1e-8)
    flat = train.reshape(len(train), -1).double()
    mu = flat.mean(0, keepdim=True)
    values, vectors = torch.linalg.eigh(torch.cov((flat - mu).T))
    scale = (values.clamp_min(0) + eps).rsqrt()
    w = vectors * scale if kind == "pca_whiten" else (vectors * scale) @ vectors.T
    w, mu = w.float(), mu.float()
    return lambda t: ((t.reshape(len(t), -1) - mu) @ w).reshape(t.shape)


def make_splits(
    name: str, x: torch.Tensor, y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, *,
    val_size: int, split_seed: int, train_subset: int | None, scale: float, classes: list[str],
    preprocess: str = "standardize", whiten_eps: float = 0.1,
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
    dims = [0] + list(range(2, train_x.dim()))
    transform = fit_preprocess(train_x, preprocess, whiten_eps)
    meta = {
        "name": name, "num_classes": len(classes), "classes": classes, "shape": list(x.shape[1:]),
        "n_train": len(train_idx), "n_val": len(val_idx), "n_test": len(test_y),
        "mean": train_x.mean(dims).tolist(), "std": train_x.std(dims).tolist(), "preprocess": preprocess,
    }
    return DataSplits(
        (transform(train_x).contiguous(), y[train_idx].long()),
        (transform(xf[val_idx]).contiguous(), y[val_idx].long()),
        (transform(test_x.float() / scale).contiguous(), test_y.long()),
        meta,
    )
