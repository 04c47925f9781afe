"""Datasets and the batch pipeline. Importing this package registers the built-in datasets."""
from harness.data.augment import Rng
from harness.data.base import DATASETS, DataMissing, DataSplits, resolve_root
from harness.data import datasets, text  # noqa: F401
from harness.data.datasets import load
from harness.data.loader import Shard, make_loader, place

__all__ = ["DATASETS", "DataMissing", "DataSplits", "Rng", "Shard", "load", "make_loader", "place", "resolve_root"]
