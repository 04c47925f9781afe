"""The model registry and the context every model builder receives."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from harness.registry import Registry

MODELS = Registry("model")


@dataclass(frozen=True)
class ModelContext:
    """What a model needs from the rest of the trial, resolved before the model is built."""

    in_shape: tuple[int, ...]  # one sample, e.g. (1, 28, 28)
    num_classes: int
    norm: Callable[[int, int], nn.Module]  # (num_features, dims) -> layer
    hidden: tuple[Callable[[], nn.Module], ...] = field(default_factory=tuple)  # after each activation
    drop_path: float = 0.0  # stochastic depth: drop rate of the last residual block
