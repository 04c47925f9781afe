"""The dataset registry, the splits every dataset builder returns, and where data lives.

A builder loads its data (any way it likes) and hands the arrays to ``make_splits``, which carves
a seeded, stratified validation split from the training set and normalizes with statistics of
the training split only. The test set is never used for anything but the reported test metrics.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from harness.errors import UsageError
from harness.registries import DATASETS
ROOT_ENV = "HARNESS_DATA_ROOT"
DEFAULT_ROOT = Path("~/.cache/harness/data")


class DataMissing(UsageError):
    """Dataset files are not where they should be and cannot be downloaded."""


def resolve_root(root: str | None) -> Path:
    """The suite's ``dataset.root``, else ``--data-root``/$HARNESS_DATA_ROOT, else the default."""
    chosen = root or os.environ.get(ROOT_ENV) or str(DEFAULT_ROOT)
    return Path(chosen).expanduser()


@dataclass(frozen=True)
class Normalizer:
    """Raw stored values (uint8 pixels, or floats) to the network's inputs, applied per batch on
    the device. Per-channel and per-pixel kinds are ``x·mul + add``; whitening kinds are
    ``(flatten(x)/scale − mu) @ w``."""

    kind: str
    mul: torch.Tensor | None = None
    add: torch.Tensor | None = None
    mu: torch.Tensor | None = None
    w: torch.Tensor | None = None
    scale: float = 1.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch
        if self.kind == "tokens":  # token ids (harness.data.text): inputs as they are
            return x
        # a fresh float copy always: x.float() of float32 data (MNIST-1D) is x itself, and the in-place
        # passes would then rewrite the stored split, so that every later trial of the process (the
        # data are cached) trained on inputs normalized once more
        fresh = x.to(torch.float32, copy=True)
        if self.w is None:
            # two in-place passes over the copy: ~2.5x faster on CPU than one addcmul
            return fresh.mul_(self.mul).add_(self.add)
        flat = fresh.reshape(len(x), -1).div_(self.scale).sub_(self.mu)
        return (flat @ self.w).reshape(x.shape)

    def to(self, device: torch.device) -> "Normalizer":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Normalizer(self.kind, move(self.mul), move(self.add), move(self.mu), move(self.w), self.scale)


Pair = tuple["torch.Tensor", "torch.Tensor"]


@dataclass(frozen=True)
class DataSplits:
    """The stored splits (inputs as loaded: uint8 for images, float otherwise; one sample per row)
    and the normalizer, fitted on the training split, that turns a batch of them into inputs."""

    train: Pair
    val: Pair
    test: Pair
    normalize: Normalizer
    meta: dict[str, Any]

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.train[0].shape[1:])

    @property
    def num_classes(self) -> int:
        return int(self.meta["num_classes"])

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for pair in (self.train, self.val, self.test) for t in pair)

    def inputs(self, split: str, n: int | None = None) -> torch.Tensor:
        """The first ``n`` (default all) samples of a split, normalized."""
        x = getattr(self, split)[0]
        return self.normalize(x if n is None else x[:n])

    def to(self, device: torch.device) -> "DataSplits":
        move = lambda pair: (pair[0].to(device), pair[1].to(device))  # noqa: E731
        return DataSplits(move(self.train), move(self.val), move(self.test), self.normalize.to(device), self.meta)


def stratified_split(y: torch.Tensor, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (rest, held_out): ``size`` samples held out, each class in proportion to its count."""
    import torch
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


def fit_preprocess(train: torch.Tensor, kind: str, eps: float, scale: float = 1.0) -> Normalizer:
    """A normalizer fitted on the (raw) training split only, then applied to every split.

    ``scale`` maps raw values to [0, 1] first (255 for uint8 pixels).
    standardize: per-channel (x − μ_c)/σ_c. mean_image: x − the mean training image.
    minmax: per-channel (x − min_c)/(max_c − min_c). pca_whiten: rotate the centred, flattened
    input onto the covariance's eigenvectors and divide by √(λ + eps) (the shape is kept, its
    axes are no longer pixels: for MLPs). zca: the same whitening rotated back,
    U diag(1/√(λ + eps)) Uᵀ, so images stay images (Bell & Sejnowski 1997; Krizhevsky 2009).
    """
    import torch
    xf = train.float() / scale
    channel_shape = (1, -1) + (1,) * (train.dim() - 2)
    if kind == "standardize":
        dims = [0] + list(range(2, train.dim()))
        mean, std = xf.mean(dims).view(channel_shape), xf.std(dims).clamp_min(1e-8).view(channel_shape)
        return Normalizer(kind, mul=1 / (scale * std), add=-mean / std)
    if kind == "mean_image":
        return Normalizer(kind, mul=torch.tensor(1 / scale), add=-xf.mean(0, keepdim=True))
    if kind == "minmax":
        flat = xf.transpose(0, 1).reshape(train.shape[1], -1)
        low, high = flat.min(1).values.view(channel_shape), flat.max(1).values.view(channel_shape)
        span = (high - low).clamp_min(1e-8)
        return Normalizer(kind, mul=1 / (scale * span), add=-low / span)
    flat = xf.reshape(len(xf), -1).double()
    mu = flat.mean(0, keepdim=True)
    values, vectors = torch.linalg.eigh(torch.cov((flat - mu).T))
    inv_sqrt = (values.clamp_min(0) + eps).rsqrt()
    w = vectors * inv_sqrt if kind == "pca_whiten" else (vectors * inv_sqrt) @ vectors.T
    return Normalizer(kind, mu=mu.float(), w=w.float(), scale=scale)


def make_splits(
    name: str, x: torch.Tensor, y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, *,
    val_size: int, split_seed: int, train_subset: int | None, scale: float, classes: list[str],
    preprocess: str = "standardize", whiten_eps: float = 0.1, source: dict[str, Any] | None = None,
) -> DataSplits:
    """``x`` is (N, C, H, W) or (N, C, L) raw values, kept as they are (uint8 pixels stay uint8:
    4x less memory on the device); ``scale`` maps them to [0, 1]."""
    if val_size >= len(y):
        raise DataMissing(f"dataset {name}: val_size {val_size} leaves no training data ({len(y)} samples)")
    train_idx, val_idx = stratified_split(y, val_size, split_seed)
    if train_subset is not None and train_subset < len(train_idx):
        _, keep = stratified_split(y[train_idx], train_subset, split_seed + 1)
        train_idx = train_idx[keep]
    train_x = x[train_idx].contiguous()
    dims = [0] + list(range(2, train_x.dim()))
    stats = train_x.float() / scale
    meta = {
        "name": name, "num_classes": len(classes), "classes": classes, "shape": list(x.shape[1:]),
        "n_train": len(train_idx), "n_val": len(val_idx), "n_test": len(test_y),
        "mean": stats.mean(dims).tolist(), "std": stats.std(dims).tolist(), "preprocess": preprocess,
        "storage": str(x.dtype).removeprefix("torch."), **(source or {}),
    }
    return DataSplits(
        (train_x, y[train_idx].long()), (x[val_idx].contiguous(), y[val_idx].long()),
        (test_x.contiguous(), test_y.long()), fit_preprocess(train_x, preprocess, whiten_eps, scale), meta,
    )
