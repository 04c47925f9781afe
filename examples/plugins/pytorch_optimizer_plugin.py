"""Optimizers from the ``pytorch-optimizer`` package (import name ``pytorch_optimizer``):
``harness run SUITE --plugin examples/plugins/pytorch_optimizer_plugin.py``. Checked against
pytorch_optimizer 4.1.0 with torch 2.14.1 on CPU; tests/test_third_party.py runs each through the
harness and checks SAM's first step against its definition.

Registered:
- ``sam_po``: Sharpness-Aware Minimization (Foret et al. 2021) around SGD with momentum, and with
  ``adaptive=true`` its scale-invariant variant ASAM (Kwon et al. 2021).
- ``adahessian_po``: AdaHessian (Yao et al. 2021), Adam-like with a Hutchinson estimate of the
  Hessian diagonal in place of the squared gradient.
- ``sophiah_po``: Sophia-H (Liu et al. 2023), momentum divided by an EMA of a Hutchinson Hessian
  diagonal estimate, clipped per coordinate.
- ``adabelief_po``: AdaBelief (Zhuang et al. 2020), Adam whose second moment tracks (g - m)^2.

What the capabilities rest on (line references are to pytorch_optimizer 4.1.0):
- SAM.step (optimizer/sam.py, ``step``) raises NoClosureError without a closure, calls
  ``first_step`` on the gradients already in ``p.grad``, runs the closure once at w + e, restores
  w and steps the base optimizer; it returns None. So the loop does the first forward/backward
  itself (``step_returns_loss=False``) and each step costs two passes. If the loop skips that first
  backward, p.grad is None, nothing is perturbed and the step is plain SGD, with no error.
- The perturbation norm is one global norm over every group (utils/gradient.py,
  ``get_global_gradient_norm``): sqrt(sum_p ||g_p||^2) + perturb_eps (1e-12, added after the
  square root); each group then uses its own ``rho`` over that shared norm.
- SAM shares ``param_groups`` and ``state`` with its base optimizer (the same objects, rebound in
  ``load_state_dict``), so a loop that writes ``group['lr']`` on SAM reaches the SGD step.
- AdaHessian.step / SophiaH.step call ``compute_hutchinson_hessian`` (base/optimizer.py), which
  differentiates ``p.grad`` again with ``torch.autograd.grad``: without
  ``loss.backward(create_graph=True)`` that raises "element 0 of tensors does not require grad".
  A closure is optional; with one, step returns the closure's loss, without one, None.
- The Hutchinson probes come from ``torch.randint_like`` (Rademacher, AdaHessian's default) or
  ``torch.randn_like`` (Gaussian, SophiaH's default) with no generator: they draw from the global
  torch RNG of the parameters' device, on every step for AdaHessian and every ``update_period``
  steps (10 by default) for SophiaH. Runs are reproducible under a fixed global seed, but these
  optimizers shift every later global-RNG draw (dropout masks, for one) relative to other
  optimizers. The optimizer state_dict holds no RNG state; resuming exactly needs the global RNG
  saved alongside it.
"""
from __future__ import annotations

from importlib import metadata
from typing import Annotated, Any, Iterable, Literal
import warnings

import torch

from harness.api import OPTIMIZERS, Range

__version__ = "0.1.0"
TESTED_WITH = {"pytorch_optimizer": "4.1.0", "torch": "2.14.1"}

try:
    import pytorch_optimizer
except ImportError as e:  # the harness reports a failed plugin import as bad input
    raise ImportError("this plugin needs the pytorch-optimizer package: pip install pytorch-optimizer") from e

_installed = metadata.version("pytorch_optimizer")
if _installed != TESTED_WITH["pytorch_optimizer"]:
    warnings.warn(f"pytorch_optimizer {_installed} is installed; this plugin was checked against "
                  f"{TESTED_WITH['pytorch_optimizer']}", stacklevel=2)

Params = Iterable[Any]
LR = Annotated[float, Range(gt=0)]
Decay = Annotated[float, Range(ge=0)]
Beta = Annotated[float, Range(ge=0, lt=1)]
Eps = Annotated[float, Range(gt=0)]
Count = Annotated[int, Range(ge=1)]


@OPTIMIZERS.register("sam_po", needs_closure=True, step_returns_loss=False, passes=2, has_momentum=True)
def sam_po(
    params: Params, *, lr: LR = 0.1, rho: Annotated[float, Range(gt=0)] = 0.05,
    momentum: Annotated[float, Range(ge=0, lt=1)] = 0.9, weight_decay: Decay = 0.0, adaptive: bool = False,
) -> torch.optim.Optimizer:
    """Sharpness-Aware Minimization (Foret et al. 2021) over SGD with momentum; adaptive=true is ASAM (Kwon et al. 2021).

    The step perturbs the weights to w + rho * g / ||g|| (one norm over all parameters), takes
    the gradient there through the closure, and steps SGD from w with it. ``weight_decay`` is
    SGD's coupled L2. With ``adaptive`` the perturbation is rho * w^2 * g / || |w| g ||, and
    Kwon et al. use a larger rho (about 0.5 to 2)."""
    return pytorch_optimizer.SAM(params, torch.optim.SGD, rho=rho, adaptive=adaptive, lr=lr,
                                 momentum=momentum, weight_decay=weight_decay)


@OPTIMIZERS.register("adahessian_po", create_graph=True, has_momentum=True)
def adahessian_po(
    params: Params, *, lr: LR = 0.1, beta1: Beta = 0.9, beta2: Beta = 0.999, eps: Eps = 1e-16,
    weight_decay: Decay = 0.0, hessian_power: Annotated[float, Range(gt=0, le=1)] = 1.0,
    update_period: Count = 1, num_samples: Count = 1,
    hessian_distribution: Literal["rademacher", "gaussian"] = "rademacher",
) -> torch.optim.Optimizer:
    """AdaHessian (Yao et al. 2021): Adam with a Hutchinson Hessian-diagonal estimate as the second moment.

    Needs ``loss.backward(create_graph=True)``: every ``update_period`` steps it draws
    ``num_samples`` probe vectors z from the global torch RNG and adds z * (H z) (one extra
    Hessian-vector product, about one more backward pass, per sample). ``weight_decay`` is
    decoupled (AdamW-style, scaled by lr), the package's default. The package keeps Yao et al.'s
    update but not their spatial averaging of the estimate over conv kernels."""
    return pytorch_optimizer.AdaHessian(
        params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, hessian_power=hessian_power,
        update_period=update_period, num_samples=num_samples, hessian_distribution=hessian_distribution,
    )


@OPTIMIZERS.register("sophiah_po", create_graph=True, has_momentum=True)
def sophiah_po(
    params: Params, *, lr: LR = 0.06, beta1: Beta = 0.96, beta2: Beta = 0.99,
    clip: Annotated[float, Range(gt=0)] = 0.01, eps: Eps = 1e-12, weight_decay: Decay = 0.0,
    update_period: Count = 10, num_samples: Count = 1,
    hessian_distribution: Literal["gaussian", "rademacher"] = "gaussian",
) -> torch.optim.Optimizer:
    """Sophia-H (Liu et al. 2023): momentum over an EMA of a Hutchinson Hessian diagonal, clipped per coordinate.

    The update is lr * clip(m / max(h, eps), clip) (the package's parameter ``p``): the paper's
    clip(m / max(gamma h, eps), 1) with gamma = clip and the 1/gamma folded into lr. The Hessian
    estimate is refreshed every ``update_period`` steps from the global torch RNG; backward must
    still use create_graph=True on every step, because the loop does not know which steps refresh.
    ``weight_decay`` is decoupled (the package's default)."""
    return pytorch_optimizer.SophiaH(
        params, lr=lr, betas=(beta1, beta2), p=clip, eps=eps, weight_decay=weight_decay,
        update_period=update_period, num_samples=num_samples, hessian_distribution=hessian_distribution,
    )


@OPTIMIZERS.register("adabelief_po", has_momentum=True)
def adabelief_po(
    params: Params, *, lr: LR = 1e-3, beta1: Beta = 0.9, beta2: Beta = 0.999, eps: Eps = 1e-16,
    weight_decay: Decay = 0.0, rectify: bool = False,
) -> torch.optim.Optimizer:
    """AdaBelief (Zhuang et al. 2020): Adam with the second moment of (g - m), the gradient's surprise.

    Package defaults: eps 1e-16 (added inside the EMA and again after the square root), decoupled
    weight decay; ``rectify`` adds RAdam's variance rectification."""
    return pytorch_optimizer.AdaBelief(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay,
                                       weight_decouple=True, rectify=rectify)
