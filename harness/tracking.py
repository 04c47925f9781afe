"""Live tracking of a sweep: every trial logs its config and per-epoch curves to the suite's
trackers through Accelerate's tracker API (``accelerate.tracking``), so all the trials of a
sweep can be watched side by side while it runs (TensorBoard's run selector, a wandb or MLflow
project). Off unless a suite names ``trackers: [tensorboard|wandb|mlflow]``.

Runs are written under ``<results>/tracking/``: TensorBoard event files in a folder per trial,
wandb in offline mode (``wandb sync`` uploads later), MLflow to a local ``mlruns`` store. A run
is named by its axes, seed and trial id.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",)}


def tracker_missing(name: str) -> str | None:
    """Why a tracker cannot run here (its package is missing), or None."""
    packages = PACKAGES[name]
    if all(importlib.util.find_spec(p) is None for p in packages):
        return f"tracker {name!r} needs the {packages[0]} package, which is not installed (pip install {packages[0]})"
    return None


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys with scalar values: what hyperparameter views can show."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            out[name] = ",".join(str(v.get("name", v)) if isinstance(v, dict) else str(v) for v in value)
        elif value is None:
            out[name] = "none"
        else:
            out[name] = value
    return out


class Trackers:
    """The trackers of one trial: ``start`` with its config, ``log`` each epoch, ``finish``."""

    def __init__(self, names: list[str], folder: Path, suite: str, run_name: str) -> None:
        from accelerate.tracking import MLflowTracker, TensorBoardTracker, WandBTracker

        folder.mkdir(parents=True, exist_ok=True)
        safe = run_name.replace("/", "_")
        self.trackers = []
        for name in names:
            if name == "tensorboard":
                tracker = TensorBoardTracker(safe, folder / "tensorboard")
            elif name == "wandb":
                os.environ.setdefault("WANDB_MODE", "offline")  # never blocks a sweep on the network
                tracker = WandBTracker(suite, name=safe, dir=str(folder), mode=os.environ["WANDB_MODE"], reinit=True)
            else:
                tracker = MLflowTracker(experiment_name=suite, logging_dir=str(folder / "mlruns"), run_name=safe)
            self.trackers.append(tracker)

    def start(self, config: dict[str, Any]) -> None:
        flat = _flat(config)
        for t in self.trackers:
            t.start()
            t.store_init_configuration(flat)

    def log(self, values: dict[str, Any], step: int) -> None:
        numbers = {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for t in self.trackers:
            t.log(numbers, step=step)

    def finish(self) -> None:
        for t in self.trackers:
            t.finish()
