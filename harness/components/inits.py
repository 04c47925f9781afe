"""Weight initialization schemes, applied in place to every Linear and Conv layer.

Biases start at ``bias`` (0 unless configured); normalization layers keep their own init
(scale 1, shift 0). Gains come from the model's activation (``activations.init_gain``).

- ``normal`` / ``uniform``: W ~ N(0, std²) / U(−a, a); small std (0.01, 0.05) reproduces the
  vanishing activations of deep tanh nets (Glorot & Bengio 2010, section 4.2).
- ``zeros`` / ``constant``: every unit of a layer computes the same thing and gets the same
  gradient, so symmetry never breaks.
- ``xavier_*``: Glorot & Bengio 2010, eq. 16: Var W = gain² · 2/(fan_in + fan_out).
- ``kaiming_*``: He et al. 2015, eq. 10: Var W = gain²/fan (fan_in or fan_out), which keeps the
  activation variance constant across depth (√2 gain for ReLU).
- ``orthogonal``: Saxe et al. 2014: W a (scaled) orthogonal matrix.
- ``lsuv``: Mishkin & Matas 2016, Algorithm 1: orthogonal init, then, layer by layer in forward
  order, rescale W until the layer's output variance on a training batch is 1 ± tol.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

if TYPE_CHECKING:
    import torch
    from torch import nn

from harness.registries import INITS
from harness.components.activations import init_gain
from harness.registry import Range

Gain = Annotated[float, Range(gt=0)]
Fan = Literal["fan_in", "fan_out"]


@dataclass(frozen=True)
class InitContext:
    activation: dict[str, Any] | None  # the resolved activation config of the model, if it has one
    sample: torch.Tensor | None = None  # a batch of training inputs, for data-dependent inits


def _layers(model: nn.Module) -> list[nn.Module]:
    from torch import nn
    weighted = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    return [m for m in model.modules() if isinstance(m, weighted)]


def _apply(model: nn.Module, bias: float, fn) -> None:
    import torch
    from torch import nn
    with torch.no_grad():
        for layer in _layers(model):
            fn(layer.weight)
            if layer.bias is not None:
                nn.init.constant_(layer.bias, bias)


@INITS.register("normal")
def normal(model: nn.Module, ctx: InitContext, *, std: Annotated[float, Range(ge=0)] = 0.01, bias: float = 0.0) -> None:
    """Gaussian N(0, std^2); 0.01 and 0.05 reproduce the classic small-init failures."""
    from torch import nn
    _apply(model, bias, lambda w: nn.init.normal_(w, 0.0, std))


@INITS.register("uniform")
def uniform(model: nn.Module, ctx: InitContext, *, a: Annotated[float, Range(ge=0)] = 0.05, bias: float = 0.0) -> None:
    """Uniform U(-a, a)."""
    from torch import nn
    _apply(model, bias, lambda w: nn.init.uniform_(w, -a, a))


@INITS.register("zeros")
def zeros(model: nn.Module, ctx: InitContext, *, bias: float = 0.0) -> None:
    """All weights zero: symmetry never breaks."""
    from torch import nn
    _apply(model, bias, nn.init.zeros_)


@INITS.register("constant")
def constant(model: nn.Module, ctx: InitContext, *, value: float = 0.01, bias: float = 0.0) -> None:
    """All weights one constant: symmetry never breaks."""
    from torch import nn
    _apply(model, bias, lambda w: nn.init.constant_(w, value))


@INITS.register("xavier_normal")
def xavier_normal(model: nn.Module, ctx: InitContext, *, gain: Gain = 1.0, bias: float = 0.0) -> None:
    """Glorot/Xavier normal: variance gain^2 * 2/(fan_in + fan_out) (Glorot & Bengio 2010)."""
    from torch import nn
    _apply(model, bias, lambda w: nn.init.xavier_normal_(w, gain=gain))


@INITS.register("xavier_uniform")
def xavier_uniform(model: nn.Module, ctx: InitContext, *, gain: Gain = 1.0, bias: float = 0.0) -> None:
    """Glorot/Xavier uniform: U(-b, b), b = gain * sqrt(6/(fan_in + fan_out)) (Glorot & Bengio 2010)."""
    from torch import nn
    _apply(model, bias, lambda w: nn.init.xavier_uniform_(w, gain=gain))


@INITS.register("kaiming_normal")
def kaiming_normal(model: nn.Module, ctx: InitContext, *, mode: Fan = "fan_in", bias: float = 0.0) -> None:
    """Kaiming/He normal: variance gain^2/fan, gain from the model's activation (He et al. 2015)."""
    from torch import nn
    nonlinearity, a = init_gain(ctx.activation)
    _apply(model, bias, lambda w: nn.init.kaiming_normal_(w, a=a or 0, mode=mode, nonlinearity=nonlinearity))


@INITS.register("kaiming_uniform")
def kaiming_uniform(model: nn.Module, ctx: InitContext, *, mode: Fan = "fan_in", bias: float = 0.0) -> None:
    """Kaiming/He uniform: U(-b, b), b = gain * sqrt(3/fan) (He et al. 2015)."""
    from torch import nn
    nonlinearity, a = init_gain(ctx.activation)
    _apply(model, bias, lambda w: nn.init.kaiming_uniform_(w, a=a or 0, mode=mode, nonlinearity=nonlinearity))


@INITS.register("orthogonal")
def orthogonal(model: nn.Module, ctx: InitContext, *, gain: Gain = 1.0, bias: float = 0.0) -> None:
    """(Semi-)orthogonal weight matrices scaled by gain (Saxe et al. 2014)."""
    from torch import nn
    _apply(model, bias, lambda w: nn.init.orthogonal_(w, gain=gain))


@INITS.register("lsuv")
def lsuv(
    model: nn.Module, ctx: InitContext, *, tol: Annotated[float, Range(gt=0, lt=1)] = 0.1,
    max_iter: Annotated[int, Range(gt=0)] = 10, bias: float = 0.0,
) -> None:
    """Layer-sequential unit-variance: orthogonal, then each layer scaled to unit output variance on data (Mishkin & Matas 2016)."""
    import torch
    from torch import nn
    if ctx.sample is None:
        raise ValueError("lsuv needs a batch of training inputs")
    _apply(model, bias, nn.init.orthogonal_)
    was_training = model.training
    model.eval()  # dropout off; running statistics are left alone in eval
    with torch.no_grad():
        for layer in _layers(model):
            seen: dict[str, torch.Tensor] = {}
            handle = layer.register_forward_hook(lambda m, i, out: seen.__setitem__("out", out))
            for _ in range(max_iter):
                model(ctx.sample)
                var = seen["out"].var().item()
                if abs(var - 1.0) < tol or var == 0:
                    break
                layer.weight.div_(var ** 0.5)
            handle.remove()
    model.train(was_training)
