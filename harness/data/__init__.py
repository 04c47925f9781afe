"""Datasets. Importing this package registers the built-in datasets."""
from harness.data.base import DATASETS, DataMissing, DataSplits, resolve_root
from harness.data import datasets  # noqa: F401
from harness.data.datasets import load
from harness.data.loader import batches

__all__ = ["DATASETS", "DataMissing", "DataSplits", "batches", "load", "resolve_root"]
