"""``swa``: Stochastic Weight Averaging (Izmailov, Podoprikhin, Garipov, Vetrov & Wilson 2018,
"Averaging Weights Leads to Wider Optima and Better Generalization", Algorithm 1).

From epoch ``first = max(1, ceil(start · epochs))`` on, at the end of every epoch's training the
average of the weights seen at epoch ends moves to include the current ones,

    θ_SWA ← (θ_SWA · n + θ) / (n + 1),   n ← n + 1,

an equal-weight mean over those epochs (the paper's cycle of one epoch, for a constant or cyclic
learning rate: the suite's ``schedule`` is SWA's schedule). Evaluation runs on θ_SWA once there
is one, on the trained weights before; BatchNorm statistics are recomputed for θ_SWA by a pass
over the training data (the paper, section 3.2; ``bn_samples`` caps it).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any, ContextManager

if TYPE_CHECKING:
    import torch

from harness.components.averaging import alone, bn_batches, evaluated_on
from harness.registries import REGULARIZERS
from harness.registry import Range
from harness.technique import RegContext, Run, Technique


class SWA(Technique):
    def __init__(self, start: float, bn_samples: int | None) -> None:
        self.start, self.bn_samples = start, bn_samples
        self.average: list[torch.Tensor] | None = None
        self.n = 0

    def on_start(self, run: Run) -> None:
        epochs = run.record.config["budget"]["epochs"]
        self.first = max(1, math.ceil(self.start * epochs))
        self.params = list(run.trial.model.parameters())
        self.bn = bn_batches(run, self.bn_samples)
        if self.average is not None:
            self.average = [a.to(p.device) for a, p in zip(self.average, self.params)]

    def on_epoch_trained(self, run: Run, row: dict[str, Any]) -> None:
        import torch
        if run.cursor.epoch < self.first:
            return
        current = [p.detach() for p in self.params]
        with torch.no_grad():
            if self.average is None:
                self.average = [p.clone() for p in current]
            else:
                torch._foreach_lerp_(self.average, current, 1.0 / (self.n + 1))  # (avg·n + θ)/(n + 1)
        self.n += 1

    def eval_weights(self, run: Run) -> ContextManager[None] | None:
        return evaluated_on(run, self.average, self.bn) if self.average is not None else None

    def state_dict(self) -> dict[str, Any]:
        return {"average": [a.cpu() for a in self.average or []], "n": self.n}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.average, self.n = list(state["average"]) or None, state["n"]


@REGULARIZERS.register("swa", compatible=alone("swa"))
def swa(ctx: RegContext, *, start: Annotated[float, Range(ge=0, le=1)] = 0.75,
        bn_samples: Annotated[int, Range(gt=0)] | None = None) -> SWA:
    """Stochastic weight averaging of the epoch-end weights from start x epochs on, BN recomputed (Izmailov et al. 2018)."""
    return SWA(start, bn_samples)
