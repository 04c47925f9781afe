"""Schedule-Free AdamW from the ``schedulefree`` package (Defazio et al. 2024, "The Road Less Scheduled"):
``harness run SUITE --plugin examples/plugins/schedulefree_plugin.py``. Checked against
schedulefree 1.4.1 with torch 2.14.1 on CPU; tests/test_third_party.py checks the harness's records
against a hand-written loop that calls ``train()``/``eval()`` as the authors document.

The optimizer keeps z (the base AdamW iterate) in its state and leaves the parameters at one of
two points: y = (1 - beta1) z + beta1 x, where gradients are taken, or x, the running average,
which is what should be evaluated. ``.train()`` moves the parameters to y, ``.eval()`` to x
(schedulefree/adamw_schedulefree.py, ``train``/``eval``: both one ``lerp_`` towards z and a
``train_mode`` flag kept in every param group). Hence ``train_eval=True``. The loop's contract:
- call ``optimizer.train()`` where it calls ``model.train()``, before the training steps, and
  ``optimizer.eval()`` where it calls ``model.eval()``, before any evaluation. The optimizer
  starts in eval mode and ``step()`` raises a plain ``Exception`` ("Optimizer was not in train
  mode when step is called") unless it is in train mode; only param_groups[0]'s flag is checked.
- with BatchNorm the running statistics were gathered at y. The README's caveat: just before
  evaluating, call model.train() and optimizer.eval(), forward some training batches (it suggests
  50) under torch.no_grad(), then model.eval(). PreciseBN (reset the statistics and average over
  the batches) does the same job more exactly.
- checkpoints: the README asks for eval mode when saving. ``train_mode`` is in the param groups,
  so a state_dict saved together with the model weights round-trips in either mode (checked);
  call ``.train()`` again after loading, before the next step.
- ``step()`` divides ``p.grad`` in place by the preconditioner (and adds the decay term), so the
  gradients read after a step are not the loss's gradients.
- no schedule is needed. The loop may still write ``group['lr']``: the step reads it each time,
  and a linear warmup written from outside gives bit-for-bit the same run as ``warmup_steps``
  (checked), so use one or the other, not both. The averaging weights are lr_max ** 2, where
  lr_max is the largest lr so far, so a decaying schedule does not reweight the average.
"""
from __future__ import annotations

from importlib import metadata
from typing import Annotated, Any, Iterable
import warnings

import torch

from harness.api import OPTIMIZERS, Range

__version__ = "0.1.0"
TESTED_WITH = {"schedulefree": "1.4.1", "torch": "2.14.1"}

try:
    import schedulefree
except ImportError as e:
    raise ImportError("this plugin needs the schedulefree package: pip install schedulefree") from e

_installed = metadata.version("schedulefree")
if _installed != TESTED_WITH["schedulefree"]:
    warnings.warn(f"schedulefree {_installed} is installed; this plugin was checked against "
                  f"{TESTED_WITH['schedulefree']}", stacklevel=2)

Params = Iterable[Any]
Beta = Annotated[float, Range(ge=0, lt=1)]


# has_momentum left False: beta1 interpolates between z and x, there is no momentum buffer.
@OPTIMIZERS.register("adamw_schedulefree", train_eval=True)
def adamw_schedulefree(
    params: Params, *, lr: Annotated[float, Range(gt=0)] = 0.0025, beta1: Annotated[float, Range(gt=0, lt=1)] = 0.9,
    beta2: Beta = 0.999, eps: Annotated[float, Range(gt=0)] = 1e-8, weight_decay: Annotated[float, Range(ge=0)] = 0.0,
    warmup_steps: Annotated[int, Range(ge=0)] = 0, r: Annotated[float, Range(ge=0)] = 0.0,
    weight_lr_power: Annotated[float, Range(ge=0)] = 2.0,
) -> torch.optim.Optimizer:
    """Schedule-Free AdamW (Defazio et al. 2024): interpolation and iterate averaging in place of a schedule.

    Evaluate only after ``optimizer.eval()``. beta1 is the interpolation weight (0.9; the authors
    suggest 0.95 to 0.98 for long runs) and must be > 0, since eval() divides by it. Weight decay
    is taken at y and added to the preconditioned gradient (AdamW-like). ``warmup_steps`` is a
    linear warmup inside the optimizer; ``r`` and ``weight_lr_power`` set the averaging weights
    (k+1)^r * lr_max^weight_lr_power."""
    return schedulefree.AdamWScheduleFree(
        params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, warmup_steps=warmup_steps,
        r=r, weight_lr_power=weight_lr_power,
    )
