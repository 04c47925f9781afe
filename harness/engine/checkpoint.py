"""Checkpoints of a training trial, so that a preempted or killed trial resumes where it stopped
and ends with the record an uninterrupted run would have written.

A checkpoint is one file, written atomically (temp file, fsync, rename): the model and optimizer
states, the components' own state (a plateau schedule's scale, early stopping's best weights),
every random stream (the data order, the augmentation streams of each process, the global torch,
numpy and ``random`` states), the record so far (history, step losses, diagnostics), the step
and the position within the epoch. A file that does not load is ignored: the trial starts over,
and the record says so.
"""
from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.store.records import atomic_write

CHECKPOINT_DIR = "checkpoints"
WEIGHTS_DIR = "weights"
FORMAT = 1


def checkpoint_path(results: Path, trial_id: str) -> Path:
    return Path(results) / CHECKPOINT_DIR / f"{trial_id}.pt"


def global_rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "random": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["random"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    atomic_write(path, buffer.getvalue())  # a kill mid-write leaves the previous checkpoint whole


def load(path: Path, trial_id: str) -> tuple[dict[str, Any] | None, str | None]:
    """(state, None), or (None, why it was not usable) when the file exists but cannot resume."""
    if not path.exists():
        return None, None
    try:
        # Our own file, holding numpy and random states besides tensors: not weights-only.
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - a torn or foreign file: start over, and say so
        return None, f"checkpoint {path.name} did not load ({type(e).__name__}: {str(e)[:200]}); started over"
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("trial_id") != trial_id:
        return None, f"checkpoint {path.name} is not this trial's (format or trial id differ); started over"
    return state, None


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def weights_path(results: Path, trial_id: str) -> Path:
    return Path(results) / WEIGHTS_DIR / f"{trial_id}.pt"


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
