"""The one training step: forward, loss (with the techniques' penalties), backward, clip, optimizer
step, as the optimizer's capabilities ask (``harness.registries.OptimizerCaps``). The training loop,
``harness lr-find`` and ``harness diagnose`` all step through it.

- a plain optimizer: one forward-backward, then ``step()``;
- ``closure`` and ``step_returns_loss`` (L-BFGS): ``step(closure)``, which evaluates the loss as
  often as its line search needs and returns the loss at its starting point;
- ``closure`` and not ``step_returns_loss`` (SAM, and most closure-taking optimizers of other
  packages, whose ``step`` returns None): the first forward-backward here, then ``step(closure)``
  for the further passes; the step's loss is the first pass's;
- ``create_graph`` (AdaHessian, Sophia-H): ``backward(create_graph=True)``, so the optimizer can
  take Hessian-vector products of the gradients.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from harness.registries import OptimizerCaps
from harness.technique import LossFn


def plain_backward(loss: torch.Tensor, create_graph: bool = False) -> None:
    loss.backward(create_graph=create_graph)


@dataclass
class Step:
    """What one optimizer step of a trial needs, prepared once."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    caps: OptimizerCaps
    loss: LossFn
    backward: Callable[..., None] = plain_backward  # Accelerate's where it must scale or accumulate
    clip: Callable[[], None] | None = None
    after_backward: list[Callable[[], None]] = field(default_factory=list)  # gradients as the loss gave them

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Take one step on the batch; the loss (at the step's starting point), unsynchronized."""
        model, optimizer, create_graph = self.model, self.optimizer, self.caps.create_graph

        def closure() -> torch.Tensor:
            loss = self.loss(model, model(x), y)
            optimizer.zero_grad(set_to_none=True)
            if create_graph:
                self.backward(loss, create_graph=True)
            else:
                self.backward(loss)
            for hook in self.after_backward:
                hook()
            if self.clip is not None:
                self.clip()
            return loss

        if not self.caps.needs_closure:
            loss = closure()
            optimizer.step()
        elif self.caps.step_returns_loss:
            loss = optimizer.step(closure)
            if loss is None:  # it ran as SAM does (the gradient wanted before step): this step was not its own
                raise TypeError(f"{type(optimizer).__name__}.step(closure) returned None where a loss was declared "
                                "(step_returns_loss=True, the default with needs_closure=True): register it with "
                                "step_returns_loss=False if it wants the gradient computed before step(closure), "
                                "as SAM does")
        else:
            loss = closure()
            optimizer.step(closure)
        if create_graph:  # gradients that hold their graph reference the parameters: break the cycle now
            optimizer.zero_grad(set_to_none=True)
        return loss


def set_lr(optimizer: torch.optim.Optimizer, base_lrs: list[float], factor: float) -> None:
    for group, base in zip(optimizer.param_groups, base_lrs):
        group["lr"] = base * factor


def clipper(accelerator: Any, params: list[torch.Tensor], clip: dict[str, Any]) -> Callable[[], None] | None:
    """Gradient clipping by global norm and/or value, through Accelerate (which unscales fp16 first)."""
    if clip["norm"] is None and clip["value"] is None:
        return None

    def apply() -> None:
        if clip["norm"] is not None:
            accelerator.clip_grad_norm_(params, clip["norm"])
        if clip["value"] is not None:
            accelerator.clip_grad_value_(params, clip["value"])

    return apply
