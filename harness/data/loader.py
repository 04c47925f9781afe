"""Batches from tensors that already sit on the training device.

Small datasets live on the device whole; a batch is an index gather, with no worker processes,
no collation and no host-to-device copy per step.
"""
from __future__ import annotations

from typing import Iterator

import torch


def batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator | None = None,
    *, shuffle: bool = True,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of (x, y) batches; the last batch may be smaller. Shuffled by ``generator``."""
    n = len(y)
    if shuffle:
        # The permutation is drawn on the CPU so that a seed gives the same order on every device.
        order = torch.randperm(n, generator=generator).to(x.device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield x.index_select(0, idx), y.index_select(0, idx)
    else:
        for start in range(0, n, batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]
