"""Lion as an example optimizer plugin: ``harness run SUITE --plugin examples/plugins/lion.py``, then
``optimizer: {name: lion_example}``. The harness has Lion built in (``lion``, the same algorithm with
multi-tensor kernels); this file shows what a plugin optimizer takes: a ``torch.optim.Optimizer``, a
builder whose typed signature is the schema, capabilities and a default tuning space. It registers
under its own name, since a name registers once.

Lion (EvoLved Sign Momentum) follows Chen et al. 2023, "Symbolic Discovery of Optimization
Algorithms", Algorithm 2. With gradient g, momentum m (zero at the start), learning rate η and
decoupled weight decay λ, one step is

    c ← β1·m + (1 − β1)·g
    θ ← θ − η·(sign(c) + λ·θ)        i.e. θ ← θ·(1 − ηλ) − η·sign(c)
    m ← β2·m + (1 − β2)·g

Every coordinate moves by exactly η (plus the decay), so Lion wants a smaller η than AdamW (the
paper suggests 3–10x smaller) and a larger λ to keep ηλ the same. Two betas: β1 interpolates the
update direction, β2 (longer memory) is the momentum that is kept.
"""
from __future__ import annotations

from typing import Annotated, Any, Callable, Iterable

import torch

from harness.api import OPTIMIZERS, Range

__version__ = "1.0"

LR = Annotated[float, Range(gt=0)]
Beta = Annotated[float, Range(ge=0, lt=1)]
Decay = Annotated[float, Range(ge=0)]


class Lion(torch.optim.Optimizer):
    """Sign-of-interpolated-momentum updates with decoupled weight decay (Chen et al. 2023, Alg. 2)."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            # lr is read per step: the harness's schedules rewrite group["lr"]
            lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Lion does not support sparse gradients")
                g = p.grad
                state = self.state[p]
                if "exp_avg" not in state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                m = state["exp_avg"]
                direction = m.mul(beta1).add_(g, alpha=1 - beta1).sign_()
                if wd:
                    p.mul_(1 - lr * wd)  # decoupled: the decay never passes through the sign
                p.add_(direction, alpha=-lr)
                m.mul_(beta2).add_(g, alpha=1 - beta2)  # β2, not β1: the kept momentum has the longer memory
        return loss


# its default tuning space: Lion wants a 3-10x smaller learning rate than AdamW (Chen et al. 2023, §3.2)
@OPTIMIZERS.register("lion_example", has_momentum=True,
                     space={"lr": {"loguniform": [1e-5, 1e-2]}, "beta1": {"log1m": [0.5, 0.99]}})
def lion_example(
    params: Iterable[Any], *, lr: LR = 1e-4, beta1: Beta = 0.9, beta2: Beta = 0.99, weight_decay: Decay = 0.0
) -> torch.optim.Optimizer:
    """Lion (Chen et al. 2023): sign of interpolated momentum, decoupled weight decay θ ← θ(1 − ηλ)."""
    return Lion(params, lr=lr, betas=(beta1, beta2), weight_decay=weight_decay)
