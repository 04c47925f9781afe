"""Activation functions.

``gain`` metadata names the nonlinearity for ``torch.nn.init.calculate_gain`` (Kaiming/Xavier
gains); ELU and GELU have no closed-form gain there and use ReLU's, their closest shape.
``maxout`` (Goodfellow et al. 2013, eq. 1): h_i = max_j z_ij over k linear pieces; a model puts
k·width units before it (``pieces``) and gets width units out.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

from harness.registries import ACTIVATIONS
from harness.registry import Range


@ACTIVATIONS.register("relu", gain="relu")
def relu() -> nn.Module:
    """Rectified linear unit, max(0, x) (Nair & Hinton 2010)."""
    from torch import nn
    return nn.ReLU()


@ACTIVATIONS.register("tanh", gain="tanh")
def tanh() -> nn.Module:
    """Hyperbolic tangent (LeCun et al. 1998, Efficient BackProp)."""
    from torch import nn
    return nn.Tanh()


@ACTIVATIONS.register("sigmoid", gain="sigmoid")
def sigmoid() -> nn.Module:
    """Logistic sigmoid 1/(1 + e^-x) (LeCun et al. 1998, Efficient BackProp)."""
    from torch import nn
    return nn.Sigmoid()


@ACTIVATIONS.register("leaky_relu", gain="leaky_relu")
def leaky_relu(*, slope: Annotated[float, Range(ge=0, lt=1)] = 0.01) -> nn.Module:
    """Leaky ReLU, max(x, slope*x) (Maas et al. 2013)."""
    from torch import nn
    return nn.LeakyReLU(slope)


@ACTIVATIONS.register("elu", gain="relu")
def elu(*, alpha: Annotated[float, Range(gt=0)] = 1.0) -> nn.Module:
    """ELU, x for x > 0 else alpha(e^x - 1) (Clevert et al. 2016)."""
    from torch import nn
    return nn.ELU(alpha)


@ACTIVATIONS.register("selu", gain="selu")
def selu() -> nn.Module:
    """SELU, the self-normalizing scaled ELU (Klambauer et al. 2017)."""
    from torch import nn
    return nn.SELU()


@ACTIVATIONS.register("gelu", gain="relu")
def gelu() -> nn.Module:
    """GELU, x * Phi(x) (Hendrycks & Gimpel 2016)."""
    from torch import nn
    return nn.GELU()


@ACTIVATIONS.register("maxout", gain="linear")
def maxout(*, pieces: Annotated[int, Range(ge=2)] = 2) -> nn.Module:
    """Maxout: the max over `pieces` linear units per output unit (Goodfellow et al. 2013)."""
    from harness.components.layers import Maxout
    return Maxout(pieces)


def init_gain(activation: dict[str, Any] | None) -> tuple[str, float | None]:
    """(nonlinearity, param) for torch.nn.init of the layers feeding ``activation``."""
    if activation is None:
        return "linear", None
    gain = ACTIVATIONS.get(activation["name"]).caps.gain
    return gain, activation.get("slope") if gain == "leaky_relu" else None
