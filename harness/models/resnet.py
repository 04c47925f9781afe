"""The residual networks' torch modules: the basic block (post- or pre-activation), the CIFAR ResNet and
Wide ResNet body, and stochastic depth (``drop_path``). The models and their papers are registered in
``harness.models.convnets``, which imports this module only when it builds one, so that reading the model
registry does not import torch.
"""
from __future__ import annotations

import torch
from torch import nn

from harness.models.base import ModelContext
from harness.registries import ACTIVATIONS


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Drop whole residual branches per sample with probability p; scale kept ones by 1/(1 - p)."""
    if p == 0 or not training:
        return x
    keep = torch.bernoulli(torch.full((x.shape[0],) + (1,) * (x.dim() - 1), 1 - p, device=x.device, dtype=x.dtype))
    return x * keep / (1 - p)


class DropPath(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p:.4f}"


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)


class Block(nn.Module):
    """A basic residual block; post-activation (ResNet) or pre-activation (ResNet v2, WRN)."""

    def __init__(self, ctx: ModelContext, cin: int, cout: int, stride: int, preact: bool, activation: dict,
                 drop: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.preact = preact
        self.norm1 = ctx.norm(cin if preact else cout, 2)
        self.conv1 = _conv(cin, cout, 3, stride)
        self.norm2 = ctx.norm(cout, 2)
        self.conv2 = _conv(cout, cout, 3)
        self.act1, self.act2 = ACTIVATIONS.build(activation), ACTIVATIONS.build(activation)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if stride == 1 and cin == cout:
            self.shortcut: nn.Module = nn.Identity()
        elif preact:  # the pre-activated input is already normalized
            self.shortcut = _conv(cin, cout, 1, stride)
        else:  # option B of He et al. 2016: a normalized 1x1 projection
            self.shortcut = nn.Sequential(_conv(cin, cout, 1, stride), ctx.norm(cout, 2))
        self.drop_path = DropPath(drop)

    def last_norm(self) -> nn.Module:
        return self.norm2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact:
            out = self.act1(self.norm1(x))
            shortcut = self.shortcut(out) if not isinstance(self.shortcut, nn.Identity) else x
            out = self.conv2(self.dropout(self.act2(self.norm2(self.conv1(out)))))
            return shortcut + self.drop_path(out)
        out = self.act1(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(self.dropout(out)))
        return self.act2(self.shortcut(x) + self.drop_path(out))


class ResNet(nn.Module):
    def __init__(self, ctx: ModelContext, stem: int, widths: list[int], blocks: list[int], preact: bool,
                 activation: dict, zero_init_residual: bool, dropout: float = 0.0) -> None:
        super().__init__()
        self.zero_init_residual = zero_init_residual
        self.stem = _conv(ctx.in_shape[0], stem, 3)
        stem_out = stem
        self.stem_post = nn.Identity() if preact else nn.Sequential(ctx.norm(stem_out, 2), ACTIVATIONS.build(activation))
        total = sum(blocks)
        layers: list[nn.Module] = []
        index, c = 0, stem_out
        for stage, (width, n) in enumerate(zip(widths, blocks)):
            for i in range(n):
                index += 1
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(Block(ctx, c, width, stride, preact, activation, ctx.drop_path * index / total, dropout))
                c = width
        self.blocks = nn.Sequential(*layers)
        self.head_pre = nn.Sequential(ctx.norm(c, 2), ACTIVATIONS.build(activation)) if preact else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, ctx.num_classes)

    def after_init(self) -> None:
        if not self.zero_init_residual:
            return
        for block in self.blocks:
            norm = block.last_norm()
            if getattr(norm, "weight", None) is None:
                raise ValueError("zero_init_residual needs a normalization layer with a scale (not norm: none)")
            nn.init.zeros_(norm.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem_post(self.stem(x)))
        return self.fc(self.pool(self.head_pre(x)).flatten(1))
