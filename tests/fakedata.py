"""Small dataset files in the exact on-disk formats torchvision reads, so its real loading code runs.

CIFAR: Python pickles of dicts with str keys (as the originals, pickled by Python 2 and read with
``encoding="latin1"``), ``data`` a (n, 3072) uint8 array in R, G, B planes of 32×32.
SVHN: MATLAB .mat files with ``X`` (32, 32, 3, n) uint8 and ``y`` (n, 1) labels 1..10, 10 meaning 0.
MNIST-style: IDX files (big-endian magic 2051/2049, then sizes, then bytes), gzipped.
Pixel values encode the image's index so tests can check that images arrive intact and in order.
"""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np


def images(n: int, offset: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Random uint8 images whose first pixel is (offset + i) % 256, to recognise image i."""
    x = np.random.default_rng(seed + offset).integers(0, 256, size=(n, *shape), dtype=np.uint8)
    x.reshape(n, -1)[:, 0] = (offset + np.arange(n)) % 256
    return x


def write_cifar10(root: Path, per_batch: int, n_test: int, seed: int = 0) -> dict[str, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        n = n_test if name == "test_batch" else per_batch
        data = images(n, i * per_batch, (3072,), seed)
        labels = rng.integers(0, 10, n).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": labels, "data": data,
                         "filenames": [f"{name}_{j}.png" for j in range(n)]}, f, protocol=2)
        written[name] = data
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072}, f, protocol=2)
    return written


def write_cifar100(root: Path, n_train: int, n_test: int, seed: int = 0) -> dict[str, np.ndarray]:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for name, n in (("train", n_train), ("test", n_test)):
        data = images(n, 0 if name == "train" else n_train, (3072,), seed)
        with open(folder / name, "wb") as f:
            pickle.dump({"filenames": [f"{j}.png" for j in range(n)], "fine_labels": rng.integers(0, 100, n).tolist(),
                         "coarse_labels": rng.integers(0, 20, n).tolist(), "data": data}, f, protocol=2)
        written[name] = data
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"class{k}" for k in range(100)],
                     "coarse_label_names": [f"super{k}" for k in range(20)]}, f, protocol=2)
    return written


def write_svhn(folder: Path, n_train: int, n_test: int, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from scipy.io import savemat

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = images(n, 0 if split == "train" else n_train, (3, 32, 32), seed)  # (n, C, H, W)
        y = rng.integers(1, 11, (n, 1)).astype(np.uint8)  # 1..10; 10 is the digit 0
        savemat(folder / f"{split}_32x32.mat", {"X": np.ascontiguousarray(x.transpose(2, 3, 1, 0)), "y": y})
        written[split] = (x, y)
    return written


def write_idx(raw: Path, n_train: int, n_test: int, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The four gzipped IDX files of MNIST, Fashion-MNIST or KMNIST into ``raw``."""
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = images(n, 0 if prefix == "train" else n_train, (28, 28), seed)
        y = np.tile(np.arange(10, dtype=np.uint8), n // 10 + 1)[:n]
        rng.shuffle(y)
        with gzip.open(raw / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">IIII", 2051, n, 28, 28) + x.tobytes())
        with gzip.open(raw / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">II", 2049, n) + y.tobytes())
        written[prefix] = (x, y)
    return written
