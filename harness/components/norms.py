"""Normalization layers, built for ``num_features`` channels of a ``dims``-D feature map
(1 for the features of an MLP, 2 for images).

``batchnorm`` follows Ioffe & Szegedy 2015 (Algorithm 1 in training, the running population
statistics at inference), as ``torch.nn.BatchNorm{1,2}d`` implements it.
"""
from __future__ import annotations

from typing import Annotated, Any

from torch import nn

from harness.components._registries import NORMS
from harness.registry import Range


def _needs_batches(config: dict[str, Any]) -> str | None:
    if config["batch_size"] < 2:
        return "norm batchnorm needs batch_size >= 2 (batch statistics of one sample are undefined)"
    return None


@NORMS.register("none")
def none(num_features: int, dims: int) -> nn.Module:
    """No normalization."""
    return nn.Identity()


@NORMS.register("batchnorm", trial_check=_needs_batches)
def batchnorm(
    num_features: int, dims: int, *, momentum: Annotated[float, Range(gt=0, le=1)] = 0.1,
    eps: Annotated[float, Range(gt=0)] = 1e-5,
) -> nn.Module:
    """Batch normalization: batch statistics in training, running statistics in evaluation."""
    cls = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[dims]
    return cls(num_features, eps=eps, momentum=momentum)
