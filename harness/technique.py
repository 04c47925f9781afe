"""The technique interface: where a regularizer, an optimizer wrapper or an engine feature acts.

The training loop (``harness.engine.loop``) knows no technique by name. It calls **callbacks** at
named points of a trial (after the style of Composer's events and Hugging Face's
``TrainerCallback``); a **technique** is a callback that may also change the trial while it is
built. Every hook is a no-op here; a subclass overrides the ones it needs, and the loop calls only
those (``uses``), so an unused hook costs nothing per step.

Build time (``harness.engine.build``), in the order of the suite's list:

- ``configure_model(ctx)``: the model's context before the model exists (layers to insert after
  each hidden activation, a stochastic-depth rate);
- ``modify_model(model)``: the built model, before its init;
- ``wrap_optimizer(optimizer, caps)``: the optimizer and its capabilities (SAM's two passes);
- ``transform_batch(x, y, rng)``: each training batch, on the device (cutout, mixup);
- ``wrap_loss(loss)``: the training loss ``(model, logits, targets) -> tensor`` (a penalty).

Run time, with the trial's ``Run``:

- ``on_restore`` (a checkpoint puts the trial's state back), then ``on_start``; ``on_epoch_start`` (the epoch's order is drawn; ``cursor.batches`` are done already
  when a trial resumes mid-epoch); ``before_step``; ``after_backward`` (gradients as the loss gave
  them, before clipping; once per forward-backward pass); ``after_step`` (``run.loss``);
  ``on_epoch_trained`` (the epoch's batches are done, before evaluation);
- ``train_mode`` / ``eval_mode``: the switch before training and before evaluation
  (Schedule-Free's ``optimizer.train()``/``eval()``);
- ``eval_weights``: a context manager under which evaluation runs on other weights (an average);
- ``on_evaluate(run, outputs)``: the evaluated splits' probabilities, for callbacks that set
  ``wants_probs``;
- ``on_epoch_end(run, row)``: the epoch's history row; return a ``Stop`` to end training;
- ``on_epoch_done(run, stop)``: after every callback saw the epoch (checkpoints);
- ``state_dict`` / ``load_state_dict``: what a checkpoint keeps, so a resumed trial continues
  exactly where it stopped.
"""
from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterator

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator
    from torch import nn

    from harness.data import Rng
    from harness.engine.build import Trial
    from harness.models import ModelContext
    from harness.registries import OptimizerCaps
    from harness.spec import Record

Batch = tuple["torch.Tensor", "torch.Tensor"]


@dataclass(frozen=True)
class RegContext:
    """What a technique's builder is given: the data's class count and a sample of it."""

    num_classes: int
    train_x: torch.Tensor | None = None  # normalized training inputs, for data statistics (PCA lighting)


LossFn = Callable[["nn.Module", "torch.Tensor", "torch.Tensor"], "torch.Tensor"]  # (model, logits, targets) -> loss

EVENTS = ("on_restore", "on_start", "on_epoch_start", "before_step", "after_backward", "after_step", "on_epoch_trained",
          "train_mode", "eval_mode", "eval_weights", "on_evaluate", "on_epoch_end", "on_epoch_done", "on_end")


@dataclass
class Cursor:
    """Where a trial stands: saved in its checkpoints, so that a resumed trial continues mid-epoch."""

    epoch: int = 1
    step: int = 0  # optimizer steps taken
    batches: int = 0  # batches of this epoch done
    train_s: float = 0.0  # train time of the finished epochs
    eval_s: float = 0.0
    epoch_train_s: float = 0.0  # train time of this epoch before a mid-epoch checkpoint


@dataclass(frozen=True)
class Stop:
    """Why training ends after this epoch. ``status`` replaces the record's; ``keep_checkpoint``
    saves one all the same (a rung of successive halving that a longer trial of the run resumes)."""

    reason: str
    status: str | None = None
    keep_checkpoint: bool = False


@dataclass
class Run:
    """What hooks see: the trial as built, the prepared model and optimizer, and where it stands."""

    trial: "Trial"
    model: nn.Module  # as trained: a DDP or compiled wrapper of trial.model where there is one
    optimizer: torch.optim.Optimizer
    accelerator: "Accelerator"
    record: "Record"
    rng: "Rng"  # the augmentation streams
    order: torch.Generator  # the data order
    cursor: Cursor = field(default_factory=Cursor)
    loss: torch.Tensor | None = None  # the last step's loss, on the device
    epoch_order: torch.Tensor | None = None  # the order generator's state before this epoch's permutation
    final_epoch: int | None = None  # the epoch whose weights the model ends with (early stopping's restore)
    epoch_started: float = 0.0  # clock() when this epoch's training (re)started, less its time before a resume

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def clock(self) -> float:
        """Seconds, after the device has finished its queued work."""
        import torch
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()


class Callback:
    """A feature of the loop. Override the hooks you need (see the module docstring)."""

    wants_probs = False  # on_evaluate receives the val/test probabilities

    def uses(self, event: str) -> bool:
        return getattr(type(self), event) is not getattr(Callback, event)

    def on_restore(self, run: Run) -> None: ...
    def on_start(self, run: Run) -> None: ...
    def on_epoch_start(self, run: Run) -> None: ...
    def before_step(self, run: Run) -> None: ...
    def after_backward(self, run: Run) -> None: ...
    def after_step(self, run: Run) -> None: ...
    def on_epoch_trained(self, run: Run, row: dict[str, Any]) -> None: ...
    def train_mode(self, run: Run) -> None: ...
    def eval_mode(self, run: Run) -> None: ...

    def eval_weights(self, run: Run) -> ContextManager[None] | None:
        return None

    def on_evaluate(self, run: Run, outputs: dict[str, torch.Tensor]) -> None: ...

    def on_epoch_end(self, run: Run, row: dict[str, Any]) -> Stop | None:
        return None

    def on_epoch_done(self, run: Run, stop: Stop | None) -> None: ...
    def on_end(self, run: Run) -> None: ...

    def state_dict(self) -> dict[str, Any] | None:
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Technique(Callback):
    """A callback that may also change the trial while it is built."""

    def uses(self, event: str) -> bool:
        return getattr(type(self), event) is not getattr(Technique, event)

    def configure_model(self, ctx: "ModelContext") -> "ModelContext":
        return ctx

    def modify_model(self, model: nn.Module) -> None: ...

    def wrap_optimizer(self, optimizer: torch.optim.Optimizer,
                       caps: "OptimizerCaps") -> tuple[torch.optim.Optimizer, "OptimizerCaps"]:
        return optimizer, caps

    def transform_batch(self, x: torch.Tensor, y: torch.Tensor, rng: "Rng") -> Batch:
        return x, y

    def wrap_loss(self, loss: LossFn) -> LossFn:
        return loss

    def changes_batches(self) -> bool:
        """Whether it transforms batches or the loss (``harness diagnose`` leaves those out)."""
        return self.uses("transform_batch") or self.uses("wrap_loss")


@dataclass(frozen=True, eq=False)
class Parts(Technique):
    """A technique made of plain functions, for the many that need one or two insertion points.

    ``configure``/``modify``: the model's context and the built model; ``batch``: an on-device
    ``(x, y, rng) -> (x, y)`` transform; ``penalty``: a term added to the training loss;
    ``epoch_end``: sees each epoch's validation metrics and may stop training (returns None to go
    on, or ``{"restored_epoch": k or None}``); ``state``: what it keeps between epochs, saved in
    checkpoints and restored on resume (updated in place).
    """

    configure: Callable[["ModelContext"], "ModelContext"] | None = None
    modify: Callable[[nn.Module], None] | None = None
    batch: Callable[[torch.Tensor, torch.Tensor, "Rng"], Batch] | None = None
    penalty: Callable[[nn.Module], torch.Tensor] | None = None
    epoch_end: Callable[[nn.Module, dict[str, float]], dict[str, Any] | None] | None = None
    state: dict[str, Any] | None = None

    _FIELDS = {"configure_model": "configure", "modify_model": "modify", "transform_batch": "batch",
               "wrap_loss": "penalty", "on_epoch_end": "epoch_end"}

    def uses(self, event: str) -> bool:
        name = self._FIELDS.get(event)
        return name is not None and getattr(self, name) is not None

    def configure_model(self, ctx: "ModelContext") -> "ModelContext":
        return self.configure(ctx) if self.configure else ctx

    def modify_model(self, model: nn.Module) -> None:
        if self.modify:
            self.modify(model)

    def transform_batch(self, x: torch.Tensor, y: torch.Tensor, rng: "Rng") -> Batch:
        return self.batch(x, y, rng) if self.batch else (x, y)

    def wrap_loss(self, loss: LossFn) -> LossFn:
        if self.penalty is None:
            return loss
        penalty = self.penalty
        return lambda model, out, y: loss(model, out, y) + penalty(model)

    def on_epoch_end(self, run: Run, row: dict[str, Any]) -> Stop | None:
        if self.epoch_end is None:
            return None
        stop = self.epoch_end(run.trial.model, {"epoch": row["epoch"], "val_loss": row["val_loss"],
                                                "val_acc": row["val_acc"]})
        if stop is None:
            return None
        run.record.diagnostics["early_stopping"] = {"stopped_after_epoch": row["epoch"], **stop}
        if stop.get("restored_epoch"):
            run.final_epoch = stop["restored_epoch"]  # the model holds that epoch's weights
        return Stop("early stopping")

    def state_dict(self) -> dict[str, Any] | None:
        return self.state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.state is not None:
            self.state.clear()
            self.state.update(state)


class Hooks:
    """The callbacks of one trial, each event bound to the callbacks that use it."""

    def __init__(self, callbacks: list[Callback]) -> None:
        self.callbacks = callbacks
        self.bound = {e: [getattr(c, e) for c in callbacks if c.uses(e)] for e in EVENTS}
        self.wants_probs = any(c.wants_probs for c in callbacks)

    def bound_run(self, event: str, run: Run) -> list[Callable[[], None]]:
        """The event's hooks with ``run`` bound, for a caller that has no run to hand (the step)."""
        return [functools.partial(hook, run) for hook in self.bound[event]]

    def __call__(self, event: str, run: Run, *args: Any) -> None:
        for hook in self.bound[event]:
            hook(run, *args)

    def first_stop(self, run: Run, row: dict[str, Any]) -> Stop | None:
        """Every callback sees the epoch's row; the first Stop returned wins."""
        stops = [hook(run, row) for hook in self.bound["on_epoch_end"]]
        return next((s for s in stops if s is not None), None)

    @contextlib.contextmanager
    def evaluation(self, run: Run) -> Iterator[None]:
        self("eval_mode", run)
        with contextlib.ExitStack() as stack:
            for hook in self.bound["eval_weights"]:
                context = hook(run)
                if context is not None:
                    stack.enter_context(context)
            yield

    def state_dict(self) -> list[dict[str, Any] | None]:
        return [c.state_dict() for c in self.callbacks]

    def load_state_dict(self, states: list[dict[str, Any] | None]) -> None:
        for c, state in zip(self.callbacks, states):
            if state is not None:
                c.load_state_dict(state)
