"""Prodigy from the ``prodigyopt`` package (Mishchenko & Defazio 2024, "Prodigy: An Expeditiously
Adaptive Parameter-Free Learner"): ``harness run SUITE --plugin examples/plugins/prodigyopt_plugin.py``.
Checked against prodigyopt 1.1.2 with torch 2.14.1 on CPU.

Prodigy is Adam whose step size d is estimated online (D-Adaptation's distance estimate with
Prodigy's weighting), starting from d0 and growing only. ``lr`` is a multiplier on that estimate
and is meant to stay 1.0; a schedule on it (cosine, say) multiplies d * lr, and the loop may write
``group['lr']`` each step. What the loop must know (prodigyopt/prodigy.py, ``Prodigy.step``):
- one d, betas and step count for all groups, read from param_groups[0]; every group's lr must be
  the same or 0.0, otherwise step raises RuntimeError ("Setting different lr values in different
  parameter groups is only supported for values of 0"). Groups that differ only in
  weight_decay, as the harness makes them, are fine.
- when every lr is 0.0 the step returns early and nothing moves (not even the step count).
- step(closure) calls the closure, not under enable_grad, and returns its loss; step() returns
  None. No capability flag is needed.
- weight_decay is decoupled by default (``decouple``), scaled by d * lr. With weight_decay > 0
  the constructor prints "Using decoupled weight decay" to stdout; the builder swallows it.
- each step calls ``.item()`` per parameter (host syncs on a GPU).
- state_dict round-trips exactly (d, d_max, d_numerator and k live in the param groups).
"""
from __future__ import annotations

import contextlib
import io
from importlib import metadata
from typing import Annotated, Any, Iterable
import warnings

import torch

from harness.api import OPTIMIZERS, Range

__version__ = "0.1.0"
TESTED_WITH = {"prodigyopt": "1.1.2", "torch": "2.14.1"}

try:
    import prodigyopt
except ImportError as e:
    raise ImportError("this plugin needs the prodigyopt package: pip install prodigyopt") from e

_installed = metadata.version("prodigyopt")
if _installed != TESTED_WITH["prodigyopt"]:
    warnings.warn(f"prodigyopt {_installed} is installed; this plugin was checked against "
                  f"{TESTED_WITH['prodigyopt']}", stacklevel=2)

Params = Iterable[Any]
Beta = Annotated[float, Range(ge=0, lt=1)]


@OPTIMIZERS.register("prodigy", has_momentum=True)
def prodigy(
    params: Params, *, lr: Annotated[float, Range(gt=0)] = 1.0, beta1: Beta = 0.9, beta2: Beta = 0.999,
    beta3: Annotated[float, Range(ge=0, lt=1)] | None = None, eps: Annotated[float, Range(gt=0)] = 1e-8,
    weight_decay: Annotated[float, Range(ge=0)] = 0.0, d0: Annotated[float, Range(gt=0)] = 1e-6,
    d_coef: Annotated[float, Range(gt=0)] = 1.0, growth_rate: Annotated[float, Range(ge=1)] | None = None,
    use_bias_correction: bool = False, safeguard_warmup: bool = False,
) -> torch.optim.Optimizer:
    """Prodigy (Mishchenko & Defazio 2024): Adam with a learned step size d; keep lr at 1.0 and tune d_coef.

    beta3 (None: sqrt(beta2)) averages the d estimate; growth_rate caps d's growth per step
    (None: no cap; about 1.02 acts like a warmup); safeguard_warmup keeps lr out of the d estimate's
    denominator, meant for lr warmups. Weight decay is decoupled."""
    groups = list(params)
    lrs = {g.get("lr", lr) for g in groups if isinstance(g, dict)} - {0.0}
    if len(lrs) > 1:
        raise ValueError(f"Prodigy needs one lr for all parameter groups (or 0.0), got {sorted(lrs)}")
    with contextlib.redirect_stdout(io.StringIO()):  # it prints a notice when weight_decay > 0
        return prodigyopt.Prodigy(
            groups, lr=lr, betas=(beta1, beta2), beta3=beta3, eps=eps, weight_decay=weight_decay, decouple=True,
            use_bias_correction=use_bias_correction, safeguard_warmup=safeguard_warmup, d0=d0, d_coef=d_coef,
            growth_rate=float("inf") if growth_rate is None else growth_rate,
        )
