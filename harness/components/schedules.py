"""Learning-rate schedules, stepped once per optimizer step.

A builder returns a function ``factor(step) -> float`` that multiplies the optimizer's base lr;
the engine wraps it in ``torch.optim.lr_scheduler.LambdaLR``. ``total_steps`` is the trial's
whole training budget in optimizer steps.
``cosine`` is SGDR's annealing without restarts (Loshchilov & Hutter 2017, eq. 5):
η_t = η_min + ½(η_max − η_min)(1 + cos(π t / T)).
"""
from __future__ import annotations

import math
from typing import Annotated, Callable

from harness.components._registries import SCHEDULES
from harness.registry import Range

Factor = Callable[[int], float]


@SCHEDULES.register("constant")
def constant(total_steps: int) -> Factor:
    """The base learning rate throughout."""
    return lambda step: 1.0


@SCHEDULES.register("cosine")
def cosine(total_steps: int, *, min_ratio: Annotated[float, Range(ge=0, le=1)] = 0.0) -> Factor:
    """Cosine annealing from the base lr to min_ratio × base lr over the whole budget."""

    def factor(step: int) -> float:
        t = min(step, total_steps) / max(total_steps, 1)
        return min_ratio + 0.5 * (1.0 - min_ratio) * (1.0 + math.cos(math.pi * t))

    return factor
