"""Regularizers. A builder returns ``Parts``: the places where the technique enters a trial.

``hidden`` is a module factory the model inserts after each hidden activation (dropout, ...);
``batch`` is an on-device ``(x, y) -> (x, y)`` transform of each training batch (augmentation,
mixup, ...); ``penalty`` is a term added to the training loss (L1/L2, ...). The engine composes
the parts of every regularizer of a trial, so the loop itself has no per-technique branches.

``dropout``: Srivastava et al. 2014, in its inverted form (``torch.nn.Dropout``): units are kept
with probability 1 − p and scaled by 1/(1 − p) in training, so the expected activation equals
the evaluation-time activation and evaluation uses the network unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Callable

import torch
from torch import nn

from harness.components._registries import REGULARIZERS
from harness.registry import Range

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Parts:
    hidden: Callable[[], nn.Module] | None = None
    batch: Callable[[torch.Tensor, torch.Tensor], Batch] | None = None
    penalty: Callable[[nn.Module], torch.Tensor] | None = None


@REGULARIZERS.register("dropout")
def dropout(*, p: Annotated[float, Range(ge=0, lt=1)] = 0.5) -> Parts:
    """Inverted dropout after every hidden activation: drop with prob p, scale kept units by 1/(1-p)."""
    return Parts(hidden=lambda: nn.Dropout(p))
