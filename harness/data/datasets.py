"""Built-in datasets.

Offline, embedded: ``digits``, the 8×8 handwritten digits of UCI (Alpaydin & Kaynak 1998) that
scikit-learn ships; ``mnist1d`` (Greydanus 2020), generated on this machine by the ``mnist1d``
package from its digit templates (never its downloading path).

Through torchvision's classes, from ``<root>`` (suite ``dataset.root`` → ``--data-root`` →
``$HARNESS_DATA_ROOT`` → ``~/.cache/harness/data``):

===============  ==========================================  ==========================
dataset          files torchvision reads                     reference
===============  ==========================================  ==========================
mnist            ``<root>/MNIST/raw/*-ubyte`` (or ``.gz``)   LeCun et al. 1998
fashion_mnist    ``<root>/FashionMNIST/raw/...``             Xiao et al. 2017
kmnist           ``<root>/KMNIST/raw/...``                   Clanuwat et al. 2018
cifar10          ``<root>/cifar-10-batches-py/``             Krizhevsky 2009
cifar100         ``<root>/cifar-100-python/``                Krizhevsky 2009
svhn             ``<root>/SVHN/{train,test}_32x32.mat``      Netzer et al. 2011
===============  ==========================================  ==========================

Images are kept as uint8, as stored; the validation split is carved from the training set
(seeded, stratified), and normalization statistics come from the training split alone.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import torch

from harness.data.base import (
    DATASETS, ROOT_ENV, DataMissing, DataSplits, make_splits, resolve_root, stratified_split,
)
from harness.errors import UsageError
from harness.registry import Range

ValSize = Annotated[int, Range(gt=0)]
Preprocess = Literal["standardize", "mean_image", "minmax", "pca_whiten", "zca"]
WhitenEps = Annotated[float, Range(gt=0)]
Subset = Annotated[int, Range(gt=0)] | None
_DIGITS_TEST_SEED = 20240  # fixed: the test set is the same for every trial and every split_seed
_HOW = (f"or point {ROOT_ENV} / --data-root / dataset.root at the folder that holds it, "
        f"or set dataset.download: true where the network is reachable")


def _val_check(n_train: int, name: str):
    """A dataset's ``compatible``: the validation split must leave training data."""

    def check(trial: dict[str, Any]) -> str | None:
        config = trial["dataset"]
        if config["val_size"] >= n_train:
            return f"val_size {config['val_size']} leaves no training data ({name} has {n_train} training samples)"
        return None

    return check


# --- embedded ------------------------------------------------------------------------------

def _sized(n_train: int, name: str) -> dict[str, Any]:
    """A dataset's training size, once: its val_size check, and its caps' train_size (slurm.chunk: auto)."""
    return {"compatible": _val_check(n_train, name), "train_size": n_train}


_DIGITS_TRAIN = 1797 - round(0.2 * 1797)  # what is left for train + validation


@DATASETS.register("digits", **_sized(_DIGITS_TRAIN, "digits"), in_shape=(1, 8, 8), num_classes=10)
def digits(
    *, val_size: ValSize = 300, split_seed: int = 0, train_subset: Subset = None,
    preprocess: Preprocess = "standardize", whiten_eps: WhitenEps = 0.1,
) -> DataSplits:
    """UCI 8x8 digits via scikit-learn (1,797 images; Alpaydin & Kaynak 1998), embedded and offline."""
    import torch
    pixels, target = _digits_file()
    x = torch.as_tensor(pixels).to(torch.uint8).reshape(-1, 1, 8, 8)  # values 0..16
    y = torch.as_tensor(target, dtype=torch.long)
    rest, test = stratified_split(y, round(0.2 * len(y)), _DIGITS_TEST_SEED)
    return make_splits(
        "digits", x[rest], y[rest], x[test], y[test], val_size=val_size, split_seed=split_seed,
        train_subset=train_subset, scale=16.0, classes=[str(i) for i in range(10)],
        preprocess=preprocess, whiten_eps=whiten_eps,
    )


def _digits_file() -> tuple[np.ndarray, np.ndarray]:
    """The (pixels, labels) of scikit-learn's ``digits.csv.gz``, read as ``load_digits`` reads it,
    without importing scikit-learn: that import costs ~1.5 s of every process that trains on
    digits (each pool worker, array task and test subprocess). tests/test_data.py checks the
    arrays equal ``load_digits()``'s."""
    spec = importlib.util.find_spec("sklearn")  # locates the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("dataset digits: scikit-learn is not installed (pip install scikit-learn)")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    table = np.loadtxt(path, delimiter=",")
    return table[:, :-1], table[:, -1].astype(int)


def _mnist1d_check(trial: dict[str, Any]) -> str | None:
    n_train = int(trial["dataset"]["num_samples"] // 10 * 10 * 0.8)
    return _val_check(n_train, "mnist1d")(trial)


@DATASETS.register("mnist1d", compatible=_mnist1d_check, in_shape=(1, 40), num_classes=10, train_size=4000)
def mnist1d(
    *, val_size: ValSize = 500, split_seed: int = 0, train_subset: Subset = None,
    preprocess: Preprocess = "standardize", whiten_eps: WhitenEps = 0.1,
    num_samples: Annotated[int, Range(ge=100)] = 5000, generator_seed: int = 42,
) -> DataSplits:
    """MNIST-1D: 40-sample 1-D signals of 10 digit templates (Greydanus 2020), generated offline."""
    import torch
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = num_samples, generator_seed
    # make_dataset seeds the global numpy and random generators; leave them as they were
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    as_x = lambda a: torch.as_tensor(a, dtype=torch.float32).unsqueeze(1)  # noqa: E731  (N, 1, 40)
    import mnist1d as package

    return make_splits(
        "mnist1d", as_x(data["x"]), torch.as_tensor(data["y"]), as_x(data["x_test"]), torch.as_tensor(data["y_test"]),
        val_size=val_size, split_seed=split_seed, train_subset=train_subset, scale=1.0,
        classes=[str(i) for i in range(10)], preprocess=preprocess, whiten_eps=whiten_eps,
        source={"generator": f"mnist1d {getattr(package, '__version__', '')}".strip(),
                "generator_args": {"num_samples": num_samples, "seed": generator_seed}},
    )


# --- torchvision: files, checks, and errors -------------------------------------------------

def _require(name: str, folder: Path, files: list[str], layout: str) -> None:
    missing = [f for f in files if not (folder / f).exists()]
    if missing:
        others = f" ({len(missing)} of {len(files)} files missing: {', '.join(missing)})" if len(missing) > 1 else ""
        raise DataMissing(f"dataset {name}: missing {folder / missing[0]}{others}; put {layout} in {folder}/, {_HOW}")


def _verify(name: str, folder: Path, files: list[tuple[str, str]]) -> None:
    from torchvision.datasets.utils import check_md5

    for filename, md5 in files:
        if not check_md5(str(folder / filename), md5):
            raise DataMissing(
                f"dataset {name}: {folder / filename} fails its md5 checksum (a partial download or a "
                f"different file); delete it and download again, or set dataset.checksum: false for "
                f"files you made yourself")


def _download(name: str, fetch) -> Any:
    try:
        return fetch()
    except Exception as e:  # noqa: BLE001 - urllib, socket and torchvision errors alike
        raise DataMissing(f"dataset {name}: download failed ({type(e).__name__}: {e}); "
                          f"copy the files in by hand instead (see `harness list datasets`)") from None


def _without_md5(cls: type) -> type:
    """The torchvision class with its md5 sums removed, so it checks only that files exist.

    The harness verifies md5 sums itself first (with a message that names the file) unless
    ``checksum: false``; the loading code that runs is torchvision's own."""
    attrs: dict[str, Any] = {}
    if hasattr(cls, "train_list"):
        attrs["train_list"] = [[f, None] for f, _ in cls.train_list]
        attrs["test_list"] = [[f, None] for f, _ in cls.test_list]
        attrs["meta"] = {**cls.meta, "md5": None}
    if hasattr(cls, "split_list"):
        attrs["split_list"] = {k: [url, f, None] for k, (url, f, _) in cls.split_list.items()}
    return type(cls.__name__, (cls,), attrs)


# --- MNIST, Fashion-MNIST, KMNIST -------------------------------------------------------------

def _idx_files(cls: type, raw: Path, name: str, download: bool) -> None:
    """Make sure the four uncompressed files torchvision reads are in ``raw``; unpack .gz in place."""
    from torchvision.datasets.utils import extract_archive

    for gz_name, _md5 in cls.resources:
        plain, gz = raw / gz_name[: -len(".gz")], raw / gz_name
        if plain.exists():
            continue
        if gz.exists():
            try:
                extract_archive(str(gz), str(raw))
            except OSError as e:
                raise DataMissing(f"dataset {name}: cannot unpack {gz} next to itself ({e.strerror}); "
                                  f"unpack it there with gunzip or copy the folder somewhere writable") from None
            continue
        if download:
            return  # torchvision fetches and unpacks everything
        raise DataMissing(f"dataset {name}: missing {plain} (or {gz.name}); put the {cls.__name__} raw "
                          f"files (idx format, gzipped or not) in {raw}/, {_HOW}")


def _idx_dataset(name: str, cls_name: str, reference: str, n_train: int = 60000) -> None:
    def torchvision_class() -> type:
        import torchvision.datasets

        return getattr(torchvision.datasets, cls_name)

    def preflight(config: dict[str, Any]) -> None:
        if not config["download"]:
            cls = torchvision_class()
            _idx_files(cls, resolve_root(config["root"]) / cls.__name__ / "raw", name, download=False)

    def build(
        *, val_size: ValSize = 5000, split_seed: int = 0, train_subset: Subset = None,
        preprocess: Preprocess = "standardize", whiten_eps: WhitenEps = 0.1,
        root: str | None = None, download: bool = False,
    ) -> DataSplits:
        cls = torchvision_class()
        base = resolve_root(root)
        _idx_files(cls, base / cls.__name__ / "raw", name, download)
        fetch = lambda train: cls(str(base), train=train, download=download)  # noqa: E731
        train, test = (_download(name, lambda: fetch(True)), fetch(False)) if download else (fetch(True), fetch(False))
        return make_splits(
            name, train.data.unsqueeze(1), train.targets, test.data.unsqueeze(1), test.targets,
            val_size=val_size, split_seed=split_seed, train_subset=train_subset, scale=255.0,
            classes=list(cls.classes) if name != "mnist" else [str(i) for i in range(10)],
            preprocess=preprocess, whiten_eps=whiten_eps,
        )

    build.__doc__ = reference
    DATASETS.register(name, **_sized(n_train, name), preflight=preflight, in_shape=(1, 28, 28),
                      num_classes=10)(build)


_idx_dataset("mnist", "MNIST", "MNIST (60,000 train / 10,000 test, 28x28; LeCun et al. 1998) via torchvision.")
_idx_dataset("fashion_mnist", "FashionMNIST", "Fashion-MNIST (60,000 / 10,000 28x28 clothing images; Xiao et al. 2017) via torchvision.")
_idx_dataset("kmnist", "KMNIST", "Kuzushiji-MNIST (60,000 / 10,000 28x28 cursive Japanese; Clanuwat et al. 2018) via torchvision.")


# --- CIFAR-10/100 -----------------------------------------------------------------------------

def _cifar_dataset(name: str, cls_name: str, reference: str, classes: int) -> None:
    def torchvision_class() -> type:
        import torchvision.datasets

        return getattr(torchvision.datasets, cls_name)

    def files(cls: type) -> list[tuple[str, str]]:
        return [tuple(f) for f in cls.train_list + cls.test_list] + [(cls.meta["filename"], cls.meta["md5"])]

    layout = f"the {cls_name} python-version batches (the extracted {cls_name.lower()}-python.tar.gz)"

    def preflight(config: dict[str, Any]) -> None:
        if not config["download"]:
            cls = torchvision_class()
            _require(name, resolve_root(config["root"]) / cls.base_folder, [f for f, _ in files(cls)], layout)

    def build(
        *, val_size: ValSize = 5000, split_seed: int = 0, train_subset: Subset = None,
        preprocess: Preprocess = "standardize", whiten_eps: WhitenEps = 0.1,
        root: str | None = None, download: bool = False, checksum: bool = True,
    ) -> DataSplits:
        import torch

        cls = torchvision_class()
        base = resolve_root(root)
        folder = base / cls.base_folder
        if download and not all((folder / f).exists() for f, _ in files(cls)):
            _download(name, lambda: cls(str(base), train=True, download=True))
        _require(name, folder, [f for f, _ in files(cls)], layout)
        if checksum:
            _verify(name, folder, files(cls))
        reader = _without_md5(cls)
        train, test = reader(str(base), train=True), reader(str(base), train=False)
        as_x = lambda d: torch.as_tensor(d.data).permute(0, 3, 1, 2)  # noqa: E731  (N, H, W, C) -> (N, C, H, W)
        return make_splits(
            name, as_x(train), torch.as_tensor(train.targets), as_x(test), torch.as_tensor(test.targets),
            val_size=val_size, split_seed=split_seed, train_subset=train_subset, scale=255.0,
            classes=list(train.classes), preprocess=preprocess, whiten_eps=whiten_eps,
        )

    build.__doc__ = reference
    DATASETS.register(name, **_sized(50000, name), preflight=preflight, in_shape=(3, 32, 32),
                      num_classes=classes)(build)


_cifar_dataset("cifar10", "CIFAR10", "CIFAR-10 (50,000 / 10,000 32x32 colour images, 10 classes; Krizhevsky 2009) via torchvision.", 10)
_cifar_dataset("cifar100", "CIFAR100", "CIFAR-100 (50,000 / 10,000 32x32 colour images, 100 fine classes; Krizhevsky 2009) via torchvision.", 100)


# --- SVHN -------------------------------------------------------------------------------------

def _svhn_folder(base: Path) -> Path:
    """``<root>/SVHN``; files torchvision downloaded straight into ``<root>`` are found there too."""
    folder = base / "SVHN"
    if not (folder / "train_32x32.mat").exists() and (base / "train_32x32.mat").exists():
        return base
    return folder


def _svhn_files(extra: bool) -> list[tuple[str, str]]:
    from torchvision.datasets import SVHN

    splits = ["train", "test"] + (["extra"] if extra else [])
    return [(SVHN.split_list[s][1], SVHN.split_list[s][2]) for s in splits]


_SVHN_LAYOUT = "the cropped-digits .mat files (Format 2) of SVHN"


def _svhn_preflight(config: dict[str, Any]) -> None:
    if not config["download"]:
        base = resolve_root(config["root"])
        _require("svhn", _svhn_folder(base), [f for f, _ in _svhn_files(config["extra"])], _SVHN_LAYOUT)


@DATASETS.register("svhn", **_sized(73257, "svhn"), preflight=_svhn_preflight, in_shape=(3, 32, 32),
                   num_classes=10)
def svhn(
    *, val_size: ValSize = 5000, split_seed: int = 0, train_subset: Subset = None,
    preprocess: Preprocess = "standardize", whiten_eps: WhitenEps = 0.1,
    root: str | None = None, download: bool = False, checksum: bool = True, extra: bool = False,
) -> DataSplits:
    """SVHN house numbers (73,257 / 26,032 32x32 colour digits, +531,131 with extra; Netzer et al. 2011) via torchvision."""
    import torch
    from torchvision.datasets import SVHN

    base = resolve_root(root)
    folder = _svhn_folder(base)
    names = _svhn_files(extra)
    if download:
        for split, (filename, _) in zip(["train", "test", "extra"], names):
            if not (folder / filename).exists():
                _download("svhn", lambda split=split: SVHN(str(folder), split=split, download=True))
    _require("svhn", folder, [f for f, _ in names], _SVHN_LAYOUT)
    if checksum:
        _verify("svhn", folder, names)
    reader = _without_md5(SVHN)
    parts = {split: reader(str(folder), split=split) for split in ["train", "test"] + (["extra"] if extra else [])}
    train_x = np.concatenate([parts[s].data for s in parts if s != "test"])
    train_y = np.concatenate([parts[s].labels for s in parts if s != "test"])
    return make_splits(
        "svhn", torch.as_tensor(train_x), torch.as_tensor(train_y),
        torch.as_tensor(parts["test"].data), torch.as_tensor(parts["test"].labels),
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
