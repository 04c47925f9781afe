"""Convolutional models for image inputs (N, C, H, W).

- ``cnn_2c2d`` / ``cnn_3c3d``: the small CNNs of DeepOBS (Schneider et al. 2019): two conv
  layers (32, 64 filters, 5×5 'same', each with 2×2 max-pooling) and two dense layers (1024,
  classes); three conv layers (64 5×5 and 96 3×3 unpadded, 128 3×3 'same', each with 3×3/2
  max-pooling) and three dense layers (512, 256, classes).
- ``resnet``: the CIFAR ResNets of He et al. 2016a, section 4.2: a 3×3 stem, three stages of n
  basic blocks with 16/32/64·width channels (depth 6n + 2: 20, 32, 44, 56, 110), global average
  pooling; ``preact`` uses pre-activation blocks (He et al. 2016b). ``resnet18``: four stages
  of two blocks with 64–512 channels, the CIFAR variant (3×3 stem, no max-pool).
- ``wrn``: Wide ResNets (Zagoruyko & Komodakis 2016): pre-activation blocks, depth 6n + 4,
  widths 16/32/64 × k (WRN-16-4, WRN-28-10), dropout between the two convolutions of a block.

Residual models take stochastic depth from the trial (``ModelContext.drop_path``, Huang et al.
2016): block l of L keeps its residual branch with probability 1 − (l/L)·p_L (the linear decay
rule) in training; kept branches are scaled by 1/keep so that evaluation, which uses every
block unscaled, matches training in expectation. ``zero_init_residual`` sets the last
normalization scale of each block to 0 after init (Goyal et al. 2017), so each block starts as
the identity.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

if TYPE_CHECKING:
    import torch
    from torch import nn

from harness.registries import ACTIVATIONS
from harness.models.base import MODELS, ModelContext, fits_images
from harness.registry import ComponentOf, Range

Activation = Annotated[str | dict, ComponentOf(ACTIVATIONS)]


def _image(ctx: ModelContext, name: str) -> None:
    if len(ctx.in_shape) != 3:
        raise ValueError(f"{name} needs image inputs (C, H, W), got shape {ctx.in_shape}")


@MODELS.register("resnet", compatible=fits_images, residual=True, images=True,
                 norm_widths=lambda c: [16 * c["width"], 32 * c["width"], 64 * c["width"]])
def resnet(
    ctx: ModelContext, *, depth: Literal[8, 14, 20, 32, 44, 56, 110] = 20, width: Annotated[int, Range(gt=0)] = 1,
    preact: bool = False, activation: Activation = "relu", zero_init_residual: bool = False,
) -> nn.Module:
    """CIFAR ResNet-(6n+2) with 16/32/64 x width channels (He et al. 2016); pre-activation option."""
    from harness.models.resnet import ResNet
    _image(ctx, "resnet")
    n = (depth - 2) // 6
    return ResNet(ctx, 16 * width, [16 * width, 32 * width, 64 * width], [n] * 3, preact, activation,
                  zero_init_residual)


@MODELS.register("resnet18", compatible=fits_images, residual=True, images=True, norm_widths=lambda c: [64, 128, 256, 512])
def resnet18(
    ctx: ModelContext, *, preact: bool = False, activation: Activation = "relu", zero_init_residual: bool = False,
) -> nn.Module:
    """ResNet-18 for small images: 3x3 stem, four stages of two blocks, 64-512 channels (He et al. 2016)."""
    from harness.models.resnet import ResNet
    _image(ctx, "resnet18")
    return ResNet(ctx, 64, [64, 128, 256, 512], [2, 2, 2, 2], preact, activation, zero_init_residual)


@MODELS.register("wrn", compatible=fits_images, residual=True, images=True,
                 norm_widths=lambda c: [16, 16 * c["widen"], 32 * c["widen"], 64 * c["widen"]])
def wrn(
    ctx: ModelContext, *, depth: Literal[10, 16, 22, 28, 40] = 16, widen: Annotated[int, Range(gt=0)] = 4,
    dropout: Annotated[float, Range(ge=0, lt=1)] = 0.0, activation: Activation = "relu",
    zero_init_residual: bool = False,
) -> nn.Module:
    """Wide ResNet WRN-depth-widen with pre-activation blocks and dropout inside blocks (Zagoruyko & Komodakis 2016)."""
    from harness.models.resnet import ResNet
    _image(ctx, "wrn")
    n = (depth - 4) // 6
    return ResNet(ctx, 16, [16 * widen, 32 * widen, 64 * widen], [n] * 3, True, activation, zero_init_residual,
                  dropout)


def _cnn(ctx: ModelContext, convs: list[tuple[int, int, int]], pool: tuple[int, int], dense: list[int],
         activation: dict) -> nn.Module:
    """convs: (filters, kernel, padding); pools are 'same'-padded as in DeepOBS's TensorFlow code."""
    import torch
    from torch import nn
    layers: list[nn.Module] = []
    c = ctx.in_shape[0]
    for filters, k, pad in convs:
        layers += [nn.Conv2d(c, filters, k, padding=pad), ctx.norm(filters, 2), ACTIVATIONS.build(activation)]
        layers += [nn.MaxPool2d(pool[0], stride=pool[1], padding=pool[0] // 2 if pool[0] > pool[1] else 0)]
        c = filters
    layers = [m for m in layers if not isinstance(m, nn.Identity)]
    layers.append(nn.Flatten())
    with torch.no_grad():
        fan_in = nn.Sequential(*layers)(torch.zeros(1, *ctx.in_shape)).shape[1]
    for units in dense:
        layers += [nn.Linear(fan_in, units), ACTIVATIONS.build(activation)]
        layers += [make() for make in ctx.hidden]
        fan_in = units
    layers.append(nn.Linear(fan_in, ctx.num_classes))
    return nn.Sequential(*layers)


@MODELS.register("cnn_2c2d", compatible=fits_images, hidden_layers=True, images=True, norm_widths=lambda c: [32, 64])
def cnn_2c2d(ctx: ModelContext, *, activation: Activation = "relu") -> nn.Module:
    """DeepOBS 2c2d: conv 32 5x5, conv 64 5x5 (2x2 max-pool each), dense 1024, classifier (Schneider et al. 2019)."""
    _image(ctx, "cnn_2c2d")
    return _cnn(ctx, [(32, 5, 2), (64, 5, 2)], (2, 2), [1024], activation)


@MODELS.register("cnn_3c3d", compatible=fits_images, hidden_layers=True, images=True, min_size=9, norm_widths=lambda c: [64, 96, 128])
def cnn_3c3d(ctx: ModelContext, *, activation: Activation = "relu") -> nn.Module:
    """DeepOBS 3c3d: conv 64 5x5, 96 3x3, 128 3x3 (3x3/2 max-pool each), dense 512, 256, classifier."""
    _image(ctx, "cnn_3c3d")
    if min(ctx.in_shape[1:]) < 9:
        raise ValueError(f"cnn_3c3d's unpadded convolutions need images of at least 9x9, got {ctx.in_shape}")
    return _cnn(ctx, [(64, 5, 0), (96, 3, 0), (128, 3, 1)], (3, 2), [512, 256], activation)
