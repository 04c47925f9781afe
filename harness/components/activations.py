"""Activation functions. ``gain`` names the nonlinearity ``torch.nn.init.calculate_gain`` knows."""
from __future__ import annotations

from torch import nn

from harness.components._registries import ACTIVATIONS


@ACTIVATIONS.register("relu", gain="relu")
def relu() -> nn.Module:
    """Rectified linear unit, max(0, x)."""
    return nn.ReLU()


@ACTIVATIONS.register("tanh", gain="tanh")
def tanh() -> nn.Module:
    """Hyperbolic tangent."""
    return nn.Tanh()
