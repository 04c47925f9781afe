"""Datasets and the batch pipeline. Importing this package registers the built-in datasets; the
loader (a torch ``Dataset``, so torch's import) comes in on first use of its names, so that reading
the dataset registry (``harness plan``, ``list``) does not import torch."""
from harness.data.augment import Rng
from harness.data.base import DATASETS, DataMissing, DataSplits, resolve_root
from harness.data import datasets, text  # noqa: F401
from harness.data.datasets import load

__all__ = ["DATASETS", "DataMissing", "DataSplits", "Rng", "Shard", "load", "make_loader", "place", "resolve_root"]

_LOADER = ("Shard", "make_loader", "place")


def __getattr__(name: str):
    if name in _LOADER:
        from harness.data import loader

        return getattr(loader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
