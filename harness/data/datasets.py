"""Built-in datasets.

``digits``: the 8×8 handwritten digits of UCI (Alpaydin & Kaynak 1998) that scikit-learn ships,
so a fresh machine can run a suite with no download; its fixed test split is 20%, stratified.
``mnist``: LeCun et al. 1998 through ``torchvision.datasets.MNIST``, read from
``<root>/MNIST/raw``. Files that sit there gzipped, as distributed, are unpacked in place first.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import torch

from harness.data.base import (
    DATASETS, ROOT_ENV, DataMissing, DataSplits, make_splits, resolve_root, stratified_split,
)
from harness.registry import Range

ValSize = Annotated[int, Range(gt=0)]
Preprocess = Literal["standardize", "mean_image", "minmax", "pca_whiten", "zca"]
WhitenEps = Annotated[float, Range(gt=0)]
Subset = Annotated[int, Range(gt=0)] | None
_DIGITS_TEST_SEED = 20240  # fixed: the test set is the same for every trial and every split_seed


_DIGITS_TRAIN = 1797 - round(0.2 * 1797)  # what is left for train + validation


def _digits_fits(config: dict[str, Any]) -> str | None:
    if config["val_size"] >= _DIGITS_TRAIN:
        return f"val_size {config['val_size']} leaves no training data (digits has {_DIGITS_TRAIN} training samples)"
    return None


@DATASETS.register("digits", check=_digits_fits)
def digits(
    *, val_size: ValSize = 300, split_seed: int = 0, train_subset: Subset = None,
    preprocess: Preprocess = "standardize", whiten_eps: WhitenEps = 0.1,
) -> DataSplits:
    """UCI 8x8 digits via scikit-learn (1,797 images; Alpaydin & Kaynak 1998), embedded and offline."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1)  # (N, 1, 8, 8), values 0..16
    y = torch.as_tensor(bunch.target, dtype=torch.long)
    rest, test = stratified_split(y, round(0.2 * len(y)), _DIGITS_TEST_SEED)
    return make_splits(
        "digits", x[rest], y[rest], x[test], y[test], val_size=val_size, split_seed=split_seed,
        train_subset=train_subset, scale=16.0, classes=[str(i) for i in range(10)],
        preprocess=preprocess, whiten_eps=whiten_eps,
    )


def _mnist_files(raw: Path, download: bool) -> None:
    """Make sure the four uncompressed files torchvision reads are in ``raw``."""
    from torchvision.datasets import MNIST
    from torchvision.datasets.utils import extract_archive

    for gz_name, _md5 in MNIST.resources:
        plain = raw / gz_name[: -len(".gz")]
        gz = raw / gz_name
        if plain.exists():
            continue
        if gz.exists():
            try:
                extract_archive(str(gz), str(raw))
            except OSError as e:
                raise DataMissing(f"dataset mnist: cannot unpack {gz} next to itself ({e.strerror}); "
                                  f"unpack it there with gunzip or copy the folder somewhere writable") from None
            continue
        if download:
            return  # torchvision fetches and unpacks everything
        raise DataMissing(
            f"dataset mnist: missing {plain} (or {gz.name}); put the MNIST raw files in {raw}/, "
            f"or point {ROOT_ENV} / --data-root / dataset.root at the folder that holds MNIST/raw, "
            f"or set dataset.download: true where the network is reachable"
        )


def _mnist_preflight(config: dict[str, Any]) -> None:
    if not config["download"]:
        _mnist_files(resolve_root(config["root"]) / "MNIST" / "raw", download=False)


def _mnist_fits(config: dict[str, Any]) -> str | None:
    if config["val_size"] >= 60000:
        return f"val_size {config['val_size']} leaves no training data (MNIST has 60000 training images)"
    return None


@DATASETS.register("mnist", preflight=_mnist_preflight, check=_mnist_fits)
def mnist(
    *, val_size: ValSize = 5000, split_seed: int = 0, train_subset: Subset = None,
    preprocess: Preprocess = "standardize", whiten_eps: WhitenEps = 0.1,
    root: str | None = None, download: bool = False,
) -> DataSplits:
    """MNIST (60,000 train / 10,000 test, 28x28; LeCun et al. 1998) via torchvision."""
    from torchvision.datasets import MNIST

    base = resolve_root(root)
    _mnist_files(base / "MNIST" / "raw", download)
    train = MNIST(str(base), train=True, download=download)
    test = MNIST(str(base), train=False, download=download)
    return make_splits(
        "mnist", train.data.unsqueeze(1), train.targets, test.data.unsqueeze(1), test.targets,
        val_size=val_size, split_seed=split_seed, train_subset=train_subset, scale=255.0,
        classes=[str(i) for i in range(10)], preprocess=preprocess, whiten_eps=whiten_eps,
    )


@functools.lru_cache(maxsize=4)
def _load_cached(config_json: str, resolved_root: str) -> DataSplits:
    return DATASETS.build(json.loads(config_json))


def load(config: dict[str, Any]) -> DataSplits:
    """Build a dataset, reusing it across the trials a worker runs in one process.
    The resolved root is part of the key: the same config may point elsewhere via the environment."""
    root = str(resolve_root(config["root"])) if "root" in config else ""
    return _load_cached(json.dumps(config, sort_keys=True), root)
