"""The loop's own callbacks: the divergence guard over the step losses, the budget, live tracking,
and the capture of an ensemble member's probabilities. (Checkpoints are ``checkpoint.Checkpointer``,
the per-layer diagnostics ``diagnostics.Diagnostics``.)"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch

from harness.components.averaging import recompute_batchnorm
from harness.spec import STOPPED
from harness.technique import Callback, Run, Stop

CHECK_EVERY = 16  # steps between divergence checks: one host sync per window, not per step


class Diverged(Exception):
    def __init__(self, step: int, reason: str) -> None:
        super().__init__(reason)
        self.step, self.reason = step, reason


class Guard(Callback):
    """Step losses, checked a window of CHECK_EVERY at a time in one host sync: a NaN/Inf loss, or
    one above ``loss_ratio`` × the first, raises ``Diverged`` at its step. Each window's mean goes
    to ``record.steps``; the epoch's mean batch loss is the row's ``train_loss``."""

    def __init__(self, loss_ratio: float, device: torch.device) -> None:
        self.loss_ratio, self.device = loss_ratio, device
        self.first: float | None = None
        self.losses: list[torch.Tensor] = []
        self.loss_sum, self.window_start, self.epoch_first_step = 0.0, 0, 0
        self.processes = 1

    def on_start(self, run: Run) -> None:
        self.processes = run.accelerator.num_processes

    def on_epoch_start(self, run: Run) -> None:
        if run.cursor.batches == 0:  # a fresh epoch (a resumed one kept its counts)
            self.losses, self.loss_sum = [], 0.0
            self.window_start = self.epoch_first_step = run.cursor.step

    def after_step(self, run: Run) -> None:
        self.losses.append(run.loss.detach())
        # A multi-process trial may stop (and checkpoint) at a step that is a multiple of CHECK_EVERY
        # (Checkpointer._asked). The pending losses are each process's own, and a checkpoint keeps the main
        # process's callbacks alone: flush them there first, so that a resumed epoch's mean loss is right.
        if len(self.losses) == CHECK_EVERY or (self.processes > 1 and run.cursor.step % CHECK_EVERY == 0):
            self._flush(run)

    def _flush(self, run: Run) -> None:
        window_sum = self.check(run, self.losses, self.window_start)
        self.loss_sum += window_sum
        run.record.steps.append([run.cursor.step, window_sum / len(self.losses)])
        self.losses, self.window_start = [], run.cursor.step

    def check(self, run: Run, losses: list[torch.Tensor], first_step: int) -> float:
        """Sum of the window's losses (averaged over the processes of a multi-process trial, so
        every process sees the same numbers and stops together); raises Diverged at the first bad step."""
        window = torch.stack(losses).float()
        if run.accelerator.num_processes > 1:
            window = run.accelerator.reduce(window, "mean")
        if self.first is None:
            self.first = window[0].item()
            if not math.isfinite(self.first):
                raise Diverged(first_step, f"loss is {self.first} at step {first_step}")
        limit = self.loss_ratio * max(self.first, 1e-8)
        bad = ~torch.isfinite(window) | (window > limit)
        if bad.any():
            i = int(bad.nonzero()[0])
            value = window[i].item()
            step = first_step + i
            if not math.isfinite(value):
                raise Diverged(step, f"loss is {value} at step {step}")
            raise Diverged(step, f"loss {value:.4g} at step {step} exceeds {self.loss_ratio:g}× the first loss {self.first:.4g}")
        return window.sum().item()

    def on_epoch_trained(self, run: Run, row: dict[str, Any]) -> None:
        if self.losses:
            self._flush(run)
        if self.first is not None and "initial_loss" not in run.record.diagnostics:
            run.record.diagnostics["initial_loss"] = self.first
        row["train_loss"] = self.loss_sum / max(run.cursor.step - self.epoch_first_step, 1)  # mean of the batch losses

    def state_dict(self) -> dict[str, Any]:
        return {"first": self.first, "losses": [v.item() for v in self.losses], "loss_sum": self.loss_sum,
                "window_start": self.window_start, "epoch_first_step": self.epoch_first_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.first, self.loss_sum = state["first"], state["loss_sum"]
        self.losses = [torch.tensor(v, device=self.device) for v in state["losses"]]
        self.window_start, self.epoch_first_step = state["window_start"], state["epoch_first_step"]


class Budget(Callback):
    """Training ends after ``epochs`` epochs or ``total_steps`` steps; with ``stop_after``, the trial
    stops after that epoch as ``stopped`` and keeps its checkpoint, so that a longer trial of the
    same run resumes from it (schedules still see the whole budget)."""

    def __init__(self, epochs: int, stop_after: int | None, total_steps: int) -> None:
        self.epochs, self.stop_after, self.total_steps = epochs, stop_after, total_steps

    def on_epoch_end(self, run: Run, row: dict[str, Any]) -> Stop | None:
        epoch = run.cursor.epoch
        if run.cursor.step >= self.total_steps or epoch == self.epochs:
            return Stop("budget")
        if epoch == self.stop_after:
            return Stop(f"stopped after epoch {epoch} of {self.epochs} (budget.stop_after)", STOPPED, keep_checkpoint=True)
        return None


class Log(Callback):
    """Each epoch's row to live trackers, as it comes."""

    def __init__(self, log: Callable[[dict[str, Any], int], None]) -> None:
        self.log = log

    def on_epoch_end(self, run: Run, row: dict[str, Any]) -> Stop | None:
        self.log(row, row["epoch"])
        return None


class Capture(Callback):
    """Each epoch's validation and test probabilities, kept on the CPU (an ensemble's member)."""

    wants_probs = True

    def __init__(self, into: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.into = into

    def on_evaluate(self, run: Run, outputs: dict[str, torch.Tensor]) -> None:
        self.into.append((outputs["val"], outputs["test"]))


class OptimizerModes(Callback):
    """``optimizer.train()`` before training and ``optimizer.eval()`` before evaluation, for the
    optimizers that evaluate on other weights than they train (``OptimizerCaps.train_eval``:
    Schedule-Free, Defazio et al. 2024, whose authors document exactly these two calls). With
    BatchNorm, its statistics are then recomputed at the evaluation weights from the first
    ``bn_batches`` training batches, the authors' remedy (the running statistics were gathered at
    the training weights)."""

    def __init__(self, batches: Callable[[], Any] | None) -> None:
        self.batches = batches

    def train_mode(self, run: Run) -> None:
        run.optimizer.train()

    def eval_mode(self, run: Run) -> None:
        run.optimizer.eval()
        if self.batches is not None:
            recompute_batchnorm(run.trial.model, self.batches())
