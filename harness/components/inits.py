"""Weight initialization schemes, applied in place to every Linear and Conv layer; biases start at 0.

``xavier_normal``: Glorot & Bengio 2010, eq. 16 in its normal form, W ~ N(0, gain² · 2/(fan_in+fan_out)).
``kaiming_normal``: He et al. 2015, eq. 10, W ~ N(0, gain²/fan), the gain taken from the model's
activation (√2 for ReLU), which keeps the activation variance constant across depth.
"""
from __future__ import annotations

from typing import Annotated, Literal

from torch import nn

from harness.components._registries import ACTIVATIONS, INITS
from harness.registry import Range

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _layers(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, _WEIGHTED)]


def _zero_bias(layer: nn.Module) -> None:
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


@INITS.register("xavier_normal")
def xavier_normal(model: nn.Module, activation: str, *, gain: Annotated[float, Range(gt=0)] = 1.0) -> None:
    """Glorot/Xavier normal: variance 2/(fan_in + fan_out), times gain²."""
    for layer in _layers(model):
        nn.init.xavier_normal_(layer.weight, gain=gain)
        _zero_bias(layer)


@INITS.register("kaiming_normal")
def kaiming_normal(model: nn.Module, activation: str, *, mode: Literal["fan_in", "fan_out"] = "fan_in") -> None:
    """Kaiming/He normal: variance gain²/fan, gain from the model's activation."""
    nonlinearity = ACTIVATIONS.get(activation).meta.get("gain", "linear")
    for layer in _layers(model):
        nn.init.kaiming_normal_(layer.weight, mode=mode, nonlinearity=nonlinearity)
        _zero_bias(layer)
