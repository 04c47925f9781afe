"""Lion, built in (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Algorithm 2).

With gradient g, momentum m (zero at the start), learning rate η and decoupled weight decay λ:

    c ← β1·m + (1 − β1)·g,   θ ← θ·(1 − ηλ) − η·sign(c),   m ← β2·m + (1 − β2)·g

Each coordinate moves by exactly η (plus the decay), which is why Lion wants a 3–10× smaller η than
AdamW and a larger λ to keep ηλ the same (§3.2); β2 > β1 gives the kept momentum the longer memory.
The steps are the multi-tensor ``torch._foreach_*`` kernels torch's own optimizers use, one call per
parameter group rather than one per tensor. ``examples/plugins/lion.py`` is the same algorithm written
as a plugin (one tensor at a time), and the tests hold the two to the same trajectory.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch


class Lion(torch.optim.Optimizer):
    """Sign-of-interpolated-momentum updates with decoupled weight decay; state ``exp_avg`` per parameter."""

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
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("Lion does not support sparse gradients")
            grads = [p.grad for p in params]
            moms = [self._momentum(p) for p in params]
            # read per step: the harness's schedules rewrite group["lr"]
            lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
            direction = torch._foreach_lerp(moms, grads, 1 - beta1)  # β1·m + (1 − β1)·g
            torch._foreach_sign_(direction)
            if wd:
                torch._foreach_mul_(params, 1 - lr * wd)  # decoupled: the decay never passes through the sign
            torch._foreach_add_(params, direction, alpha=-lr)
            torch._foreach_lerp_(moms, grads, 1 - beta2)  # the kept momentum uses β2, not β1
        return loss

    def _momentum(self, p: torch.Tensor) -> torch.Tensor:
        state = self.state[p]
        if "exp_avg" not in state:
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state["exp_avg"]
