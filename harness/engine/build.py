"""``build(config) -> Trial``: data, model, init, optimizer, schedule and techniques of one trial.

The techniques of ``regularizers`` act through the generic insertion points of
``harness.technique.Technique``, in the suite's order: they configure the model's context, modify
the built model (before its init, so the init sees the final layers), wrap the optimizer, and
transform batches or wrap the loss at every step.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from harness.components.schedules import Schedule, ScheduleContext
from harness.components.inits import InitContext
from harness.components.optimizer_classes import has_train_eval
from harness.data import DataSplits, Rng, Shard, load, place
from harness.data.loader import count_batches
from harness.engine.groups import build_optimizer, param_groups  # noqa: F401  (param_groups: the engine's API)
from harness.models import ModelContext
from harness.registries import INITS, LOSSES, MODELS, NORMS, OPTIMIZERS, REGULARIZERS, SCHEDULES, OptimizerCaps
from harness.technique import Batch, LossFn, RegContext, Technique


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass(kw_only=True)
class Trial:
    """Everything built from a spec, ready to train."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    caps: OptimizerCaps  # the optimizer's, after any technique wrapped it
    schedule: Callable[[int], float]  # lr factor of an optimizer step, warm-up included
    observe: Callable[[dict[str, Any]], None] | None  # the schedule's view of each epoch's metrics
    schedule_state: dict[str, Any] | None
    loss_fn: nn.Module  # the configured loss of (logits, targets)
    loss: LossFn  # the training loss of (model, logits, targets): loss_fn wrapped by the techniques
    transform: Callable[[torch.Tensor, torch.Tensor, Rng], Batch] | None  # the techniques' batch transforms
    techniques: list[Technique]
    data: DataSplits  # placed: on the device, or in host memory for the DataLoader path
    pipeline: str  # "device" or "dataloader"
    pipeline_reason: str | None  # why auto chose the DataLoader path
    total_steps: int
    steps_per_epoch: int
    batch_size: int  # the whole training split for full-batch optimizers
    warnings: list[str] = field(default_factory=list)  # for the record: what the build found and handled
    groups: list[dict[str, Any]] = field(default_factory=list)  # for the record: each parameter's rule, if any


def _warmed(schedule: Schedule, warmup_steps: float) -> Callable[[int], float]:
    if warmup_steps <= 0:
        return schedule.factor
    return lambda step: min(1.0, (step + 1) / warmup_steps) * schedule.factor(step)


def _chain(techniques: list[Technique]) -> Callable[[torch.Tensor, torch.Tensor, Rng], Batch] | None:
    transforms = [t.transform_batch for t in techniques if t.uses("transform_batch")]
    if not transforms:
        return None

    def transform(x: torch.Tensor, y: torch.Tensor, rng: Rng) -> Batch:
        for apply in transforms:
            x, y = apply(x, y, rng)
        return x, y

    return transform


def build(config: dict[str, Any], seed: int, device: torch.device, shard: Shard = Shard()) -> Trial:
    """Data, model, init, optimizer, schedule and techniques from a resolved config."""
    stored = load(config["dataset"])
    seed_everything(seed)  # after loading, so cached and fresh data give the same init
    techniques: list[Technique] = [
        REGULARIZERS.build(r, RegContext(stored.num_classes, stored.inputs("train", 2000)))
        for r in config["regularizers"]]
    norm = config["norm"]
    ctx = ModelContext(in_shape=stored.in_shape, num_classes=stored.num_classes,
                       norm=lambda features, dims: NORMS.build(norm, features, dims))
    for technique in techniques:
        ctx = technique.configure_model(ctx)
    model = MODELS.build(config["model"], ctx)
    for technique in techniques:
        technique.modify_model(model)  # before init, so the init sees the final layers
    sample = stored.inputs("train", config["batch_size"])  # on the CPU, like the model at init
    if not MODELS.get(config["model"]["name"]).caps.self_init:
        INITS.build(config["init"], model, InitContext(config["model"].get("activation"), sample))
    after_init = getattr(model, "after_init", None)
    if after_init is not None:
        after_init()  # e.g. zero-init of each residual block's last norm scale
    model.to(device)

    optimizer, groups = build_optimizer(model, config)
    caps = OPTIMIZERS.get(config["optimizer"]["name"]).caps
    for technique in techniques:
        optimizer, caps = technique.wrap_optimizer(optimizer, caps)
    warnings = []
    if not caps.train_eval and has_train_eval(optimizer):
        # its weights at evaluation are not its training weights (Schedule-Free): evaluated as its authors say
        caps = dataclasses.replace(caps, train_eval=True)
        warnings.append(f"optimizer {config['optimizer']['name']!r} has train() and eval() but was registered without "
                        "train_eval=True: it is switched to eval() for every evaluation, as if declared")

    n_train = len(stored.train[1])
    batch_size = n_train if caps.full_batch else config["batch_size"]
    steps_per_epoch = count_batches(n_train, batch_size, shard.world)
    total = config["budget"]["epochs"] * steps_per_epoch
    if config["budget"]["max_steps"] is not None:
        total = min(total, config["budget"]["max_steps"])
    schedule = SCHEDULES.build(config["schedule"], ScheduleContext(total, steps_per_epoch))
    loss_fn = LOSSES.build(config["loss"])
    loss: LossFn = lambda model, out, y: loss_fn(out, y)  # noqa: E731
    for technique in techniques:
        loss = technique.wrap_loss(loss)
    data, pipeline, reason = place(stored, device, config["loader"]["mode"], config["loader"]["device_fraction"])
    return Trial(
        model=model, optimizer=optimizer, caps=caps,
        schedule=_warmed(schedule, config["warmup"]["epochs"] * steps_per_epoch), observe=schedule.observe,
        schedule_state=schedule.state, loss_fn=loss_fn, loss=loss, transform=_chain(techniques),
        techniques=techniques, data=data, pipeline=pipeline, pipeline_reason=reason, total_steps=total,
        steps_per_epoch=steps_per_epoch, batch_size=batch_size, warnings=warnings, groups=groups,
    )
