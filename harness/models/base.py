"""The model registry and the context every model builder receives."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from torch import nn

from harness.registries import DATASETS, MODELS


@dataclass(frozen=True)
class ModelContext:
    """What a model needs from the rest of the trial, resolved before the model is built."""

    in_shape: tuple[int, ...]  # one sample, e.g. (1, 28, 28)
    num_classes: int
    norm: Callable[[int, int], nn.Module]  # (num_features, dims) -> layer
    hidden: tuple[Callable[[], nn.Module], ...] = field(default_factory=tuple)  # after each activation
    drop_path: float = 0.0  # stochastic depth: drop rate of the last residual block


def fits_images(config: dict[str, Any]) -> str | None:
    """``compatible`` of the models that take (C, H, W) images of at least ``min_size`` a side."""
    name = config["model"]["name"]
    caps = MODELS.get(name).caps
    shape = DATASETS.get(config["dataset"]["name"]).caps.in_shape
    if not shape:  # a dataset that does not declare its shape is checked when the model is built
        return None
    if len(shape) != 3:
        return f"model {name!r} needs image inputs (C, H, W); dataset {config['dataset']['name']!r} gives shape {shape}"
    if min(shape[1:]) < caps.min_size:
        return (f"model {name!r} needs images of at least {caps.min_size}x{caps.min_size}; dataset "
                f"{config['dataset']['name']!r} gives {shape[1]}x{shape[2]}")
    return None
