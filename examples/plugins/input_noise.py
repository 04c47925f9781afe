"""Gaussian input noise, an example batch-transform plugin: ``--plugin examples/plugins/input_noise.py``.

Adding zero-mean Gaussian noise of standard deviation σ to every training input is Tikhonov
regularization to first order (Bishop 1995, "Training with Noise is Equivalent to Tikhonov
Regularization"): x ← x + σ·ε, ε ~ N(0, I), drawn afresh for every sample of every batch, training
batches only (evaluation sees clean inputs). The noise comes from the trial's own device stream
(``rng.device``), so the same seed gives the same noise on a re-run and on resume, independently of
dropout or init drawing from the global generator.
"""
from __future__ import annotations

from typing import Annotated

import torch

from harness.api import REGULARIZERS, Parts, Range, RegContext

__version__ = "1.0"


def add_noise(x: torch.Tensor, y: torch.Tensor, rng, std: float) -> tuple[torch.Tensor, torch.Tensor]:
    """x + std·ε with ε ~ N(0, I) from the trial's device stream; the targets as they are."""
    noise = torch.randn(x.shape, generator=rng.device, device=x.device, dtype=x.dtype)
    return x + std * noise, y


@REGULARIZERS.register("input_noise")
def input_noise(ctx: RegContext, *, std: Annotated[float, Range(ge=0)] = 0.1) -> Parts:
    """Gaussian noise of standard deviation std added to every training input (Bishop 1995)."""
    return Parts(batch=lambda x, y, rng: add_noise(x, y, rng, std))
