"""Optimizers, from ``torch.optim``.

Each builder takes the parameter groups to optimize and returns a ``torch.optim.Optimizer``.
``momentum`` is Polyak's heavy ball (Polyak 1964) in PyTorch's form v ← μv + g, θ ← θ − ηv;
``nesterov`` evaluates the gradient at the look-ahead point (Nesterov 1983; Sutskever et al. 2013);
``adam`` is bias-corrected Adam (Kingma & Ba 2015, Algorithm 1).
"""
from __future__ import annotations

from typing import Annotated, Any, Iterable

import torch

from harness.components._registries import OPTIMIZERS
from harness.registry import Range

Params = Iterable[Any]
LR = Annotated[float, Range(gt=0)]
Decay = Annotated[float, Range(ge=0)]
Momentum = Annotated[float, Range(ge=0, lt=1)]


@OPTIMIZERS.register("sgd")
def sgd(params: Params, *, lr: LR = 0.01, weight_decay: Decay = 0.0) -> torch.optim.Optimizer:
    """Plain minibatch stochastic gradient descent, θ ← θ − η∇L."""
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("momentum", has_momentum=True)
def momentum(
    params: Params, *, lr: LR = 0.01, momentum: Momentum = 0.9, dampening: Annotated[float, Range(ge=0, le=1)] = 0.0,
    weight_decay: Decay = 0.0,
) -> torch.optim.Optimizer:
    """SGD with Polyak (heavy-ball) momentum."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay)


@OPTIMIZERS.register("nesterov", has_momentum=True)
def nesterov(
    params: Params, *, lr: LR = 0.01, momentum: Annotated[float, Range(gt=0, lt=1)] = 0.9, weight_decay: Decay = 0.0
) -> torch.optim.Optimizer:
    """SGD with Nesterov accelerated momentum."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)


@OPTIMIZERS.register("adam", has_momentum=True)
def adam(
    params: Params, *, lr: LR = 1e-3, beta1: Annotated[float, Range(ge=0, lt=1)] = 0.9,
    beta2: Annotated[float, Range(ge=0, lt=1)] = 0.999, eps: Annotated[float, Range(gt=0)] = 1e-8,
    weight_decay: Decay = 0.0,
) -> torch.optim.Optimizer:
    """Adam with bias correction; weight_decay is the L2 form coupled into the gradient."""
    return torch.optim.Adam(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)
