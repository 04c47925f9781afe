"""Multi-layer perceptron: ``depth`` hidden layers of ``width`` units, each Linear → norm →
activation → (regularizer layers), then a linear classifier. Normalization sits before the
activation as in Ioffe & Szegedy 2015, section 3.2.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated

if TYPE_CHECKING:
    from torch import nn

from harness.registries import ACTIVATIONS
from harness.models.base import MODELS, ModelContext
from harness.registry import ComponentOf, Range


def _widths(config: dict) -> list[int]:
    activation = config["activation"]
    return [config["width"] * (activation.get("pieces", 1) if activation["name"] == "maxout" else 1)]


@MODELS.register("mlp", hidden_layers=True, norm_widths=_widths)
def mlp(
    ctx: ModelContext, *, depth: Annotated[int, Range(ge=0)] = 2, width: Annotated[int, Range(gt=0)] = 256,
    activation: Annotated[str | dict, ComponentOf(ACTIVATIONS)] = "relu",
) -> nn.Module:
    """Fully connected network on flattened inputs (Rumelhart et al. 1986)."""
    from torch import nn
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = math.prod(ctx.in_shape)
    for _ in range(depth):
        act = ACTIVATIONS.build(activation)
        units = width * getattr(act, "pieces", 1)  # maxout takes k pieces per output unit
        # The norm's own shift makes the Linear bias redundant, but keeping it keeps "none" and
        # "batchnorm" the same architecture otherwise.
        layers += [nn.Linear(fan_in, units), ctx.norm(units, 1), act]
        layers = [m for m in layers if not isinstance(m, nn.Identity)]  # "no norm" costs no call
        layers += [make() for make in ctx.hidden]
        fan_in = width
    layers.append(nn.Linear(fan_in, ctx.num_classes))
    return nn.Sequential(*layers)
