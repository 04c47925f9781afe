"""Learning-rate schedules: a factor of the optimizer's base lr for every optimizer step.

A builder gets the trial's ``ScheduleContext`` and returns a ``Schedule``: ``factor(step)`` is
the multiplier for step ``step`` (0-based); ``observe(metrics)``, if present, is called after each
epoch's evaluation (reduce-on-plateau). Per-epoch schedules (step, multistep) change at epoch
boundaries, ``epoch = step // steps_per_epoch``; continuous ones take t = step / steps_per_epoch
in epochs. A trial's ``warmup: {epochs: w}`` multiplies any schedule by min(1, (step+1)/W) for
W = w · steps_per_epoch steps (linear warm-up, Goyal et al. 2017).

- ``cosine``: SGDR without restarts (Loshchilov & Hutter 2017, eq. 5),
  η_t = η_min + ½(η_max − η_min)(1 + cos(π t / T)).
- ``step``: ×γ every k epochs; ``multistep``: ×γ at each listed epoch.
- ``exponential``: η₀·e^(−kt); ``inverse_time``: η₀/(1 + kt), t in epochs.
- ``one_cycle``: Smith & Topping 2019, cosine form as ``torch.optim.lr_scheduler.OneCycleLR``:
  from η_max/div up to η_max over ``pct_start`` of the steps, then down to η_max/(div·final_div);
  the base lr is η_max.
- ``plateau``: ×factor when the validation metric has not improved (relative threshold) for
  ``patience`` epochs, as ``torch.optim.lr_scheduler.ReduceLROnPlateau`` in ``rel`` mode.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal

from harness.registries import SCHEDULES
from harness.registry import Range

Ratio = Annotated[float, Range(ge=0, le=1)]
Rate = Annotated[float, Range(ge=0)]


@dataclass(frozen=True)
class ScheduleContext:
    total_steps: int
    steps_per_epoch: int


@dataclass
class Schedule:
    factor: Callable[[int], float]
    observe: Callable[[dict[str, Any]], None] | None = None
    state: dict[str, Any] | None = None  # what observe changes: saved in checkpoints and restored on resume


@SCHEDULES.register("constant")
def constant(ctx: ScheduleContext) -> Schedule:
    """The base learning rate throughout."""
    return Schedule(lambda step: 1.0)


@SCHEDULES.register("cosine")
def cosine(ctx: ScheduleContext, *, min_ratio: Ratio = 0.0) -> Schedule:
    """Cosine annealing from the base lr to min_ratio x base lr over the whole budget (Loshchilov & Hutter 2017)."""
    total = max(ctx.total_steps, 1)

    def factor(step: int) -> float:
        return min_ratio + 0.5 * (1.0 - min_ratio) * (1.0 + math.cos(math.pi * min(step, total) / total))

    return Schedule(factor)


@SCHEDULES.register("step")
def step_decay(ctx: ScheduleContext, *, every: Annotated[int, Range(gt=0)] = 30, gamma: Ratio = 0.1) -> Schedule:
    """Step decay: multiply by gamma every `every` epochs (as Krizhevsky et al. 2012)."""
    return Schedule(lambda step: gamma ** (step // ctx.steps_per_epoch // every))


@SCHEDULES.register("multistep")
def multistep(ctx: ScheduleContext, *, milestones: list[int] = (30, 60, 90), gamma: Ratio = 0.1) -> Schedule:
    """Multiply by gamma at each milestone epoch (as He et al. 2016)."""
    marks = sorted(milestones)
    return Schedule(lambda step: gamma ** sum(1 for m in marks if step // ctx.steps_per_epoch >= m))


@SCHEDULES.register("exponential")
def exponential(ctx: ScheduleContext, *, k: Rate = 0.1) -> Schedule:
    """Exponential decay lr0 * exp(-k t), t in epochs."""
    return Schedule(lambda step: math.exp(-k * step / ctx.steps_per_epoch))


@SCHEDULES.register("inverse_time")
def inverse_time(ctx: ScheduleContext, *, k: Rate = 0.5) -> Schedule:
    """1/t decay lr0 / (1 + k t), t in epochs (Bottou 2012, SGD tricks)."""
    return Schedule(lambda step: 1.0 / (1.0 + k * step / ctx.steps_per_epoch))


@SCHEDULES.register("one_cycle")
def one_cycle(
    ctx: ScheduleContext, *, pct_start: Annotated[float, Range(gt=0, lt=1)] = 0.3,
    div: Annotated[float, Range(ge=1)] = 25.0, final_div: Annotated[float, Range(ge=1)] = 1e4,
) -> Schedule:
    """One-cycle (Smith & Topping 2019): cosine up from base/div to base, then down to base/(div*final_div)."""
    up_end = pct_start * ctx.total_steps - 1
    down_end = ctx.total_steps - 1
    start, peak, end = 1.0 / div, 1.0, 1.0 / (div * final_div)

    def anneal(a: float, b: float, pct: float) -> float:
        return b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1)

    def factor(step: int) -> float:
        if step <= up_end:
            return anneal(start, peak, step / up_end if up_end > 0 else 1.0)
        return anneal(peak, end, min((step - up_end) / max(down_end - up_end, 1e-12), 1.0))

    return Schedule(factor)


@SCHEDULES.register("plateau")
def plateau(
    ctx: ScheduleContext, *, metric: Literal["val_loss", "val_acc"] = "val_loss", factor: Ratio = 0.1,
    patience: Annotated[int, Range(ge=0)] = 10, threshold: Rate = 1e-4, min_ratio: Ratio = 0.0,
) -> Schedule:
    """Reduce on plateau: x factor after `patience` epochs without relative improvement of the validation metric."""
    state = {"scale": 1.0, "best": None, "bad": 0}
    maximize = metric.endswith("acc")

    def improved(value: float, best: float) -> bool:
        return value > best * (1 + threshold) if maximize else value < best * (1 - threshold)

    def observe(metrics: dict[str, Any]) -> None:
        value = metrics[metric]
        if state["best"] is None or improved(value, state["best"]):
            state["best"], state["bad"] = value, 0
            return
        state["bad"] += 1
        if state["bad"] > patience:
            state["scale"] = max(state["scale"] * factor, min_ratio)
            state["bad"] = 0

    return Schedule(lambda step: state["scale"], observe, state)
