"""``ema``: evaluation on an exponential moving average of the weights (Polyak & Juditsky 1992,
"Acceleration of Stochastic Approximation by Averaging"; the exponential form as in TensorFlow's
``ExponentialMovingAverage`` and timm's ``ModelEmaV2``).

After every optimizer step t the average θ̄ of each parameter θ moves toward it:

    θ̄_t = d_t · θ̄_{t−1} + (1 − d_t) · θ_t,   θ̄_0 = θ_0 (the init),
    d_t = min(decay, (1 + t) / (10 + t))  with ``warmup`` (else d_t = decay),

the warm-up keeping the average from being dominated by the init early in a short run. Training
is unchanged; every evaluation (and so the record's metrics, early stopping's view and the saved
weights) uses θ̄. BatchNorm's running statistics belong to the trained weights, not to θ̄, so they
are recomputed for θ̄ from the training data before each evaluation
(``harness.components.averaging``); ``bn_samples`` caps how many training samples that pass reads.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ContextManager

if TYPE_CHECKING:
    import torch

from harness.components.averaging import alone, bn_batches, evaluated_on
from harness.registries import REGULARIZERS
from harness.registry import Range
from harness.technique import RegContext, Run, Technique


class EMA(Technique):
    def __init__(self, decay: float, warmup: bool, bn_samples: int | None) -> None:
        self.decay, self.warmup, self.bn_samples = decay, warmup, bn_samples
        self.average: list[torch.Tensor] | None = None
        self.updates = 0

    def on_start(self, run: Run) -> None:
        self.params = list(run.trial.model.parameters())
        self.bn = bn_batches(run, self.bn_samples)
        if self.average is None:  # not resumed: the average starts at the init
            self.average = [p.detach().clone() for p in self.params]
        else:
            self.average = [a.to(p.device) for a, p in zip(self.average, self.params)]

    def after_step(self, run: Run) -> None:
        import torch
        self.updates += 1
        t = self.updates
        d = min(self.decay, (1 + t) / (10 + t)) if self.warmup else self.decay
        with torch.no_grad():
            torch._foreach_lerp_(self.average, [p.detach() for p in self.params], 1 - d)

    def eval_weights(self, run: Run) -> ContextManager[None]:
        return evaluated_on(run, self.average, self.bn)

    def state_dict(self) -> dict[str, Any]:
        return {"average": [a.cpu() for a in self.average or []], "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.average, self.updates = list(state["average"]) or None, state["updates"]


@REGULARIZERS.register("ema", compatible=alone("ema"))
def ema(ctx: RegContext, *, decay: Annotated[float, Range(gt=0, lt=1)] = 0.999, warmup: bool = True,
        bn_samples: Annotated[int, Range(gt=0)] | None = None) -> EMA:
    """Evaluate on an exponential moving average of the weights, BN statistics recomputed (Polyak & Juditsky 1992)."""
    return EMA(decay, warmup, bn_samples)
