"""Max-norm, an example per-step technique plugin: ``--plugin examples/plugins/max_norm.py``.

After every optimizer step, each hidden unit's incoming weight vector is projected back onto the ball
of radius c: w ← w · min(1, c / ‖w‖₂) (Srebro, Rennie & Jaakkola 2005; used with dropout by Srivastava
et al. 2014, §5.1, with c of 3 to 4). A row of a Linear weight (out, in) is one unit's incoming
weights; a convolution's filter (out, in·k·k) is one output channel's. Biases are left free.

It is a ``Technique`` (not ``Parts``) because it acts at an event Parts has no field for:
``after_step``, which sees ``run.model`` after the optimizer has stepped.
"""
from __future__ import annotations

from typing import Annotated

import torch
from torch import nn

from harness.api import REGULARIZERS, Range, RegContext, Run, Technique

__version__ = "1.0"


class MaxNorm(Technique):
    def __init__(self, c: float) -> None:
        self.c = c

    @torch.no_grad()
    def after_step(self, run: Run) -> None:
        for m in run.model.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                rows = m.weight.view(m.weight.shape[0], -1)
                rows.mul_((self.c / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0))


@REGULARIZERS.register("max_norm")
def max_norm(ctx: RegContext, *, c: Annotated[float, Range(gt=0)] = 3.0) -> MaxNorm:
    """Each unit's incoming weights projected onto the ball of radius c after every step (Srebro et al. 2005)."""
    return MaxNorm(c)
