"""The torch modules that component builders put into a model: maxout units, vanilla dropout and
DropConnect layers (the papers are cited where the components are registered: ``activations``,
``regularizers``). Kept apart from the registering modules so that reading a registry (``harness
plan``, ``list``) does not import torch; a builder imports this module when it builds.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Maxout(nn.Module):
    def __init__(self, pieces: int) -> None:
        super().__init__()
        self.pieces = pieces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, features = x.shape[0], x.shape[1]
        return x.view(n, features // self.pieces, self.pieces, *x.shape[2:]).amax(dim=2)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


class VanillaDropout(nn.Module):
    """Dropout as first published: no scaling while training, × (1 − p) at evaluation."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0:
            return x
        if self.training:
            return x * torch.bernoulli(torch.full_like(x, 1 - self.p))
        return x * (1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class DropConnectLinear(nn.Linear):
    """A Linear layer whose weights are masked in training; the dense layer at evaluation."""

    p: float = 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return super().forward(x)
        mask = torch.bernoulli(torch.full_like(self.weight, 1 - self.p))
        return F.linear(x, self.weight * mask / (1 - self.p), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", dropconnect_p={self.p}"
