"""``sam``: Sharpness-Aware Minimization around the trial's optimizer (Foret, Kleiner, Mobahi &
Neyshabur 2021, "Sharpness-Aware Minimization for Efficiently Improving Generalization", eq. 2
and Algorithm 1; ``adaptive``: ASAM, Kwon et al. 2021, eq. 7).

Each step takes two forward-backward passes. With g = ∇L(w) from the first,

    ε = ρ · g / ‖g‖₂        (ASAM: ε = ρ · w² ⊙ g / ‖w ⊙ g‖₂; the norm over all parameters)

the second pass takes the gradient at w + ε; the weights go back to w and the trial's optimizer
steps from w with that gradient. The record's step loss is the first pass's, L(w). Everything the
step does per pass runs twice: a BatchNorm layer updates its running statistics at w + ε too,
dropout draws a second mask, and the sampled gradient norm of ``grad_norm`` averages both passes.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated, Any, Callable

if TYPE_CHECKING:
    import torch

from harness.registries import OPTIMIZERS, REGULARIZERS, OptimizerCaps
from harness.registry import Range
from harness.technique import RegContext, Technique

EPS = 1e-12  # keeps ε finite at a zero gradient


class SAMOptimizer:
    """The trial's optimizer with SAM's ascent step before each of its steps. It shares the inner
    optimizer's ``param_groups`` and ``state``, so schedules and checkpoints see the inner one."""

    def __init__(self, base: torch.optim.Optimizer, rho: float, adaptive: bool) -> None:
        self.base, self.rho, self.adaptive = base, rho, adaptive
        self.param_groups, self.state, self.defaults = base.param_groups, base.state, base.defaults

    def ascent(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Move every parameter to w + ε; the (parameter, ε) pairs to undo it."""
        import torch
        with torch.no_grad():
            params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
            scaled = [p.grad * p.abs() if self.adaptive else p.grad for p in params]
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(scaled))) if scaled else None
            moves = []
            for p, s in zip(params, scaled):
                e = s * (p.abs() if self.adaptive else 1.0) * (self.rho / (norm + EPS))
                p.add_(e)
                moves.append((p, e))
            return moves

    def step(self, closure: Callable[[], torch.Tensor]) -> None:
        """The first pass's gradients are in ``.grad``; ``closure`` computes the second pass's."""
        import torch
        moves = self.ascent()
        with torch.enable_grad():
            closure()
        with torch.no_grad():
            for p, e in moves:
                p.sub_(e)
        self.base.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return self.base.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base.load_state_dict(state)
        self.param_groups, self.state = self.base.param_groups, self.base.state


class SAM(Technique):
    def __init__(self, rho: float, adaptive: bool) -> None:
        self.rho, self.adaptive = rho, adaptive

    def wrap_optimizer(self, optimizer: torch.optim.Optimizer,
                       caps: OptimizerCaps) -> tuple[Any, OptimizerCaps]:
        wrapped = SAMOptimizer(optimizer, self.rho, self.adaptive)
        return wrapped, dataclasses.replace(caps, needs_closure=True, step_returns_loss=False, passes=2 * caps.passes)


def _plain_steps(config: dict[str, Any]) -> str | None:
    caps = OPTIMIZERS.get(config["optimizer"]["name"]).caps
    if caps.needs_closure or caps.full_batch:
        return f"sam wraps an optimizer that takes plain steps; {config['optimizer']['name']!r} runs its own closure"
    if config["precision"] == "fp16":
        return "sam's second pass is a closure, which fp16's loss scaler cannot step; use bf16 or fp32"
    return None


@REGULARIZERS.register("sam", compatible=_plain_steps)
def sam(ctx: RegContext, *, rho: Annotated[float, Range(gt=0)] = 0.05, adaptive: bool = False) -> SAM:
    """SAM: step from w with the gradient at w + rho g/|g| (Foret et al. 2021); adaptive: ASAM (Kwon et al. 2021)."""
    return SAM(rho, adaptive)
