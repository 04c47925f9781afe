"""Checkpoints of a training trial, so that a preempted or killed trial resumes where it stopped
and ends with the record an uninterrupted run would have written.

A checkpoint is one file, written atomically (temp file, fsync, rename): the model and optimizer
states, the components' own state (a plateau schedule's scale, early stopping's best weights),
every random stream (the data order, the augmentation streams of each process, the global torch,
numpy and ``random`` states), the record so far (history, step losses, diagnostics), the step
and the position within the epoch. A file that does not load is ignored: the trial starts over,
and the record says so. Checkpoints are read as tensors and plain data only (``weights_only``), so
a file planted among them runs nothing.
"""
from __future__ import annotations

import copy
import dataclasses
import io
import math
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.errors import first_line
from harness.layout import checkpoint_path, weights_path  # noqa: F401  (where a results folder keeps them)
from harness.spec import THREADS_CHANGED
from harness.store.records import atomic_write
from harness.technique import Callback, Cursor, Run, Stop

FORMAT = 3  # 2: the cursor and every callback's state_dict; 3: random states as plain data (weights-only)
CHECK_EVERY = 16  # steps between the processes' joint decision to stop, in a multi-process trial


def global_rng_state() -> dict[str, Any]:
    """The global random streams as tensors and plain data (numpy's key as a list of ints), so that a
    checkpoint holding them loads with ``torch.load(weights_only=True)``."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
             "random": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate(state["random"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def threads_note(saved: Any, step: int) -> str | None:
    """The warning of a trial resumed at ``step`` from a checkpoint written under ``saved`` intra-op threads,
    when this process has another count (CPU reductions split by thread, so its numbers are those of neither
    count alone); None when they agree or the checkpoint predates the count."""
    now = torch.get_num_threads()
    if not isinstance(saved, int) or saved == now:
        return None
    return (f"{THREADS_CHANGED}: its checkpoint was written under {saved} intra-op threads, the steps after "
            f"step {step} ran under {now} (execution.threads, --threads)")


def save(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    atomic_write(path, buffer.getvalue())  # a kill mid-write leaves the previous checkpoint whole


def load(path: Path, trial_id: str) -> tuple[dict[str, Any] | None, str | None]:
    """(state, None), or (None, why it was not usable) when the file exists but cannot resume."""
    if not path.exists():
        return None, None
    state, why = load_file(path, "checkpoint")
    if state is None:
        return None, why
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("trial_id") != trial_id:
        return None, f"checkpoint {path.name} is not this trial's (format or trial id differ); started over"
    return state, None


def load_file(path: Path, what: str) -> tuple[Any, str | None]:
    """A checkpoint file's contents, read as tensors and plain data only (``weights_only``): a file
    planted in a results folder (a shared scratch, a copied archive) cannot run code when it is read.
    (None, why) for a file that does not load that way: torn, foreign or tampered with."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True), None
    except Exception as e:  # noqa: BLE001 - a torn or foreign file: start over, and say so
        kind = "holds more than tensors and plain data" if isinstance(e, pickle.UnpicklingError) else "did not load"
        return None, f"{what} {path.name} {kind} ({first_line(e)}); started over"


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def save_weights(path: Path, trial_id: str, state_dict: dict[str, Any]) -> None:
    """A finished trial's weights (``save_weights: true``), for looking at it afterwards."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "trial_id": trial_id, "model": state_dict}, buffer)
    atomic_write(path, buffer.getvalue())


def load_weights(path: Path, trial_id: str) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("trial_id") != trial_id:
        raise ValueError(f"{path} holds the weights of trial {state.get('trial_id')}, not {trial_id}")
    return state["model"]


def saved_cursor(saved: Any) -> Cursor:
    """The cursor a checkpoint holds, checked: its fields and nothing else, whole numbers where the loop counts
    (epoch >= 1, steps and batches >= 0) and finite seconds; anything else is a ``ValueError``."""
    fields = {f.name: f.type for f in dataclasses.fields(Cursor)}
    if not isinstance(saved, dict) or set(saved) != set(fields):
        raise ValueError(f"cursor: expected the fields {', '.join(fields)}, got {saved!r:.200}")
    for name, value in saved.items():
        whole = fields[name] in (int, "int")
        ok = (isinstance(value, int) if whole else isinstance(value, (int, float))) and not isinstance(value, bool)
        if not ok or (whole and value >= 2**63) or not math.isfinite(value) or value < (1 if name == "epoch" else 0):
            raise ValueError(f"cursor.{name}: {value!r:.50} is not a{' whole' if whole else ''} count")
    return Cursor(**saved)


class Preempted(Exception):
    """Asked to stop (a scheduler's signal): the trial's state is in its checkpoint."""


class Checkpointer(Callback):
    """Saves a trial's checkpoint after every epoch and when ``stop()`` turns true (asked after every
    step), and resumes from it. In a multi-process trial every process's random streams are
    gathered into the one file the main process writes, and the decision to stop is taken
    together (every CHECK_EVERY steps). ``states`` returns the state of everything else that a
    resumed trial needs (the other callbacks, the schedule); ``restore`` puts it back."""

    def __init__(self, path: Path, run_id: str, stop: Any, states: Any, restore: Any, total_steps: int) -> None:
        # kept under the run's id: a promoted rung of successive halving resumes the run's checkpoint
        self.path, self.run_id, self.stop = path, run_id, stop
        self.states, self.restore = states, restore
        self.total_steps = total_steps
        self.pending: dict[str, Any] | None = None  # random states to restore once the resumed epoch's order is drawn

    def _asked(self, run: Run, now: bool = False) -> bool:
        world = run.accelerator.num_processes
        if world == 1:
            return self.stop()
        if not now and run.cursor.step % CHECK_EVERY:
            return False
        flag = torch.tensor([1.0 if self.stop() else 0.0], device=run.device)
        return bool(run.accelerator.reduce(flag, "sum").item() > 0)

    def _ranks(self, run: Run) -> list[dict[str, Any]]:
        mine = {"rng": run.rng.state(), "global": global_rng_state()}
        if run.accelerator.num_processes == 1:
            return [mine]
        from accelerate.utils import gather_object

        return gather_object([mine])

    def save(self, run: Run, cursor: Cursor, order_state: torch.Tensor) -> None:
        ranks = self._ranks(run)  # every process takes part in the gather
        if not run.accelerator.is_main_process:
            return
        r = run.record
        save(self.path, {
            "trial_id": self.run_id, "world": run.accelerator.num_processes, "cursor": vars(cursor),
            "threads": torch.get_num_threads(),
            "model": run.accelerator.unwrap_model(run.model).state_dict(),
            "optimizer": run.optimizer.state_dict(), "states": self.states(), "order": order_state, "ranks": ranks,
            "record": {"history": r.history, "steps": r.steps, "diagnostics": r.diagnostics,
                       "started_at": r.started_at},
        })

    def on_restore(self, run: Run) -> None:
        state, why = load(self.path, self.run_id)
        world = run.accelerator.num_processes
        if state is not None and state["world"] != world:
            state, why = None, f"checkpoint was written by {state['world']} processes, not {world}; started over"
        if why:
            run.record.diagnostics["checkpoint"] = why
        if state is None:
            return
        kept = self._kept(run)
        try:
            self._resume(run, state)
        except Exception as e:  # noqa: BLE001 - tensors of another shape, a damaged cursor: start over, say why
            self._put_back(run, kept)
            run.record.diagnostics["checkpoint"] = (f"checkpoint {self.path.name} does not fit this trial "
                                                    f"({first_line(e)}); started over")

    def _kept(self, run: Run) -> dict[str, Any]:
        """What a resume changes, as it is before: put back when the checkpoint turns out not to fit."""
        r = run.record
        return copy.deepcopy({"model": run.accelerator.unwrap_model(run.model).state_dict(),
                              "optimizer": run.optimizer.state_dict(), "states": self.states(),
                              "order": run.order.get_state(), "cursor": run.cursor,
                              "record": (r.history, r.steps, r.diagnostics, r.started_at)})

    def _put_back(self, run: Run, kept: dict[str, Any]) -> None:
        run.accelerator.unwrap_model(run.model).load_state_dict(kept["model"])
        run.optimizer.load_state_dict(kept["optimizer"])
        self.restore(kept["states"])
        run.order.set_state(kept["order"])
        run.cursor = kept["cursor"]
        r = run.record
        r.history, r.steps, r.diagnostics, r.started_at = kept["record"]
        self.pending = None

    def _resume(self, run: Run, state: dict[str, Any]) -> None:
        run.accelerator.unwrap_model(run.model).load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        saved = state["record"]
        run.cursor = saved_cursor(state["cursor"])
        resumes = saved["diagnostics"].get("resumed_at_step", []) + [run.cursor.step]
        run.record.history, run.record.steps = saved["history"], saved["steps"]
        run.record.diagnostics = {**saved["diagnostics"], "resumed_at_step": resumes}
        run.record.started_at = saved["started_at"]
        run.order.set_state(state["order"])
        self.restore(state["states"])
        self.pending = state["ranks"][run.accelerator.process_index]
        note = threads_note(state.get("threads"), run.cursor.step)
        if note:
            run.record.diagnostics.setdefault("warnings", []).append(note)

    def on_epoch_start(self, run: Run) -> None:
        if self.pending is not None:  # after the loader drew its permutation from the restored order
            run.rng.set_state(self.pending["rng"])
            set_global_rng_state(self.pending["global"])
            self.pending = None

    def after_step(self, run: Run) -> None:
        if run.cursor.step >= self.total_steps or not self._asked(run):
            return
        c = run.cursor
        c.epoch_train_s = run.clock() - run.epoch_started
        self.save(run, c, run.epoch_order)
        raise Preempted(f"stopped at step {c.step} (epoch {c.epoch}) when asked; resumes from its checkpoint")

    def on_epoch_done(self, run: Run, stop: Stop | None) -> None:
        if stop is not None and not stop.keep_checkpoint:
            return
        c = run.cursor
        self.save(run, Cursor(c.epoch + 1, c.step, 0, c.train_s, c.eval_s), run.order.get_state())
        if stop is not None:
            run.record.reason = (run.record.reason or "") + "; its checkpoint is kept for a longer trial of the same run"
        elif self._asked(run, now=True):
            raise Preempted(f"stopped after epoch {c.epoch} when asked; resumes from its checkpoint")
