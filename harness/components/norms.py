"""Normalization layers, built for ``num_features`` channels of a ``dims``-D feature map
(1 for the features of an MLP, 2 for images).

- ``batchnorm``: Ioffe & Szegedy 2015 (Algorithm 1 in training, the running population
  statistics at inference), as ``torch.nn.BatchNorm{1,2}d`` implements it.
- ``layernorm``: Ba et al. 2016, statistics over a sample's features; for images over (C, H, W),
  which is ``GroupNorm`` with one group (affine per channel).
- ``groupnorm``: Wu & He 2018, statistics over groups of channels of one sample.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

if TYPE_CHECKING:
    from torch import nn

from harness.registries import MODELS, NORMS
from harness.registry import Range

Eps = Annotated[float, Range(gt=0)]


def _needs_batches(config: dict[str, Any]) -> str | None:
    if config["batch_size"] < 2:
        return "norm batchnorm needs batch_size >= 2 (batch statistics of one sample are undefined)"
    return None


@NORMS.register("none")
def none(num_features: int, dims: int) -> nn.Module:
    """No normalization."""
    from torch import nn
    return nn.Identity()


@NORMS.register("batchnorm", compatible=_needs_batches)
def batchnorm(
    num_features: int, dims: int, *, momentum: Annotated[float, Range(gt=0, le=1)] = 0.1, eps: Eps = 1e-5,
) -> nn.Module:
    """Batch normalization: batch statistics in training, running ones at eval (Ioffe & Szegedy 2015)."""
    from torch import nn
    cls = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[dims]
    return cls(num_features, eps=eps, momentum=momentum)


@NORMS.register("layernorm")
def layernorm(num_features: int, dims: int, *, eps: Eps = 1e-5) -> nn.Module:
    """Layer normalization over each sample's features (Ba et al. 2016)."""
    from torch import nn
    return nn.LayerNorm(num_features, eps=eps) if dims == 1 else nn.GroupNorm(1, num_features, eps=eps)


def _groups_divide(config: dict[str, Any]) -> str | None:
    widths = MODELS.get(config["model"]["name"]).caps.norm_widths
    groups = config["norm"]["groups"]
    bad = sorted({w for w in (widths(config["model"]) if widths else []) if w % groups})
    if bad:
        return (f"groupnorm: {groups} groups do not divide the {', '.join(map(str, bad))} features that model "
                f"{config['model']['name']!r} normalizes")
    return None


@NORMS.register("groupnorm", compatible=_groups_divide)
def groupnorm(num_features: int, dims: int, *, groups: Annotated[int, Range(gt=0)] = 32, eps: Eps = 1e-5) -> nn.Module:
    """Group normalization over groups of channels of each sample (Wu & He 2018)."""
    from torch import nn
    if num_features % groups:
        raise ValueError(f"groupnorm: {num_features} features do not split into {groups} groups")
    return nn.GroupNorm(groups, num_features, eps=eps)
