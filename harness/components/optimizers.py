"""Optimizers, from ``torch.optim``.

Each builder takes the parameter groups to optimize and returns a ``torch.optim.Optimizer``.
Capabilities are typed data (``harness.registries.OptimizerCaps``): ``full_batch`` (one step per
epoch on the whole training split) and ``closure`` (the step re-evaluates the loss).
``weight_decay`` is the optimizer's own: coupled L2 in the gradient for all but ``adamw``.
``momentum`` is Polyak's heavy ball (Polyak 1964) in PyTorch's form v ← μv + g, θ ← θ − ηv;
``nesterov`` evaluates the gradient at the look-ahead point (Nesterov 1983; Sutskever et al. 2013);
``adam`` is bias-corrected Adam (Kingma & Ba 2015, Algorithm 1). Also the others torch ships: ``adamax``,
``adafactor`` (a relative step on a factored second moment), ``asgd`` (averaged SGD) and ``rprop``
(sign-based per-weight step sizes). ``lion`` (Chen et al. 2023) steps by the sign of interpolated
momentum (``harness.components.lion``). ``muon`` (Jordan et al. 2024; Liu et al. 2025) orthogonalizes the
momentum of each hidden weight matrix and leaves the other parameters to AdamW, by its own
parameter-group rule (``harness.param_rules``).

Each declares the default ``space`` a tuned comparison (``harness.tune``) searches when a suite gives
none: the learning rate log-uniform over three to four decades around the usual values, momenta and
betas as 1 − value on a log scale (``log1m``), and AdamW's decoupled decay log-uniform, as the search
spaces of Choi et al. 2019 ("On Empirical Comparisons of Optimizers for Deep Learning", App. D) are
built. They are a starting point for small workloads, not a tuned ruleset: a study states its own.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Iterable, Literal

if TYPE_CHECKING:
    import torch

from harness.param_rules import rule
from harness.registries import OPTIMIZERS
from harness.registry import Range

Params = Iterable[Any]
LR = Annotated[float, Range(gt=0)]
Decay = Annotated[float, Range(ge=0)]
Momentum = Annotated[float, Range(ge=0, lt=1)]

_LR = lambda low, high: {"lr": {"loguniform": [low, high]}}  # noqa: E731
SGD_SPACE = _LR(1e-3, 1.0)
MOMENTUM_SPACE = {**SGD_SPACE, "momentum": {"log1m": [0.5, 0.999]}}
ADAM_SPACE = {**_LR(1e-5, 1e-1), "beta1": {"log1m": [0.5, 0.99]}}


@OPTIMIZERS.register("sgd", space=SGD_SPACE)
def sgd(params: Params, *, lr: LR = 0.01, weight_decay: Decay = 0.0) -> torch.optim.Optimizer:
    """Minibatch stochastic gradient descent, θ ← θ − η∇L (Robbins & Monro 1951)."""
    import torch
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("momentum", has_momentum=True, space=MOMENTUM_SPACE)
def momentum(
    params: Params, *, lr: LR = 0.01, momentum: Momentum = 0.9, dampening: Annotated[float, Range(ge=0, le=1)] = 0.0,
    weight_decay: Decay = 0.0,
) -> torch.optim.Optimizer:
    """SGD with heavy-ball momentum (Polyak 1964)."""
    import torch
    return torch.optim.SGD(params, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay)


@OPTIMIZERS.register("nesterov", has_momentum=True, space=MOMENTUM_SPACE)
def nesterov(
    params: Params, *, lr: LR = 0.01, momentum: Annotated[float, Range(gt=0, lt=1)] = 0.9, weight_decay: Decay = 0.0
) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum (Nesterov 1983; Sutskever et al. 2013)."""
    import torch
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)


@OPTIMIZERS.register("adam", has_momentum=True, space=ADAM_SPACE)
def adam(
    params: Params, *, lr: LR = 1e-3, beta1: Annotated[float, Range(ge=0, lt=1)] = 0.9,
    beta2: Annotated[float, Range(ge=0, lt=1)] = 0.999, eps: Annotated[float, Range(gt=0)] = 1e-8,
    weight_decay: Decay = 0.0,
) -> torch.optim.Optimizer:
    """Adam with bias correction (Kingma & Ba 2015); weight_decay is coupled L2."""
    import torch
    return torch.optim.Adam(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)


Beta = Annotated[float, Range(ge=0, lt=1)]
Eps = Annotated[float, Range(gt=0)]


@OPTIMIZERS.register("gd", full_batch=True, space=_LR(1e-2, 10.0))
def gd(params: Params, *, lr: LR = 0.1, weight_decay: Decay = 0.0) -> torch.optim.Optimizer:
    """Full-batch gradient descent: one step per epoch on the whole training split."""
    import torch
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("adagrad", space=_LR(1e-3, 1.0))
def adagrad(
    params: Params, *, lr: LR = 0.01, eps: Eps = 1e-10, initial_accumulator_value: Decay = 0.0,
    weight_decay: Decay = 0.0,
) -> torch.optim.Optimizer:
    """AdaGrad (Duchi et al. 2011): per-coordinate lr / sqrt(sum of squared gradients)."""
    import torch
    return torch.optim.Adagrad(params, lr=lr, eps=eps, initial_accumulator_value=initial_accumulator_value,
                               weight_decay=weight_decay)


@OPTIMIZERS.register("rmsprop", space={**_LR(1e-5, 1e-1), "alpha": {"log1m": [0.9, 0.999]}})
def rmsprop(
    params: Params, *, lr: LR = 1e-3, alpha: Beta = 0.99, eps: Eps = 1e-8, momentum: Momentum = 0.0,
    centered: bool = False, weight_decay: Decay = 0.0,
) -> torch.optim.Optimizer:
    """RMSProp (Tieleman & Hinton 2012): lr / sqrt(EMA of squared gradients); centered and momentum variants."""
    import torch
    return torch.optim.RMSprop(params, lr=lr, alpha=alpha, eps=eps, momentum=momentum, centered=centered,
                               weight_decay=weight_decay)


@OPTIMIZERS.register("adadelta", space={**_LR(1e-2, 10.0), "rho": {"log1m": [0.8, 0.999]}})
def adadelta(
    params: Params, *, lr: LR = 1.0, rho: Beta = 0.9, eps: Eps = 1e-6, weight_decay: Decay = 0.0
) -> torch.optim.Optimizer:
    """AdaDelta (Zeiler 2012): step = RMS[Δθ]/RMS[g] · g, scaled by lr (1.0 is the paper's form)."""
    import torch
    return torch.optim.Adadelta(params, lr=lr, rho=rho, eps=eps, weight_decay=weight_decay)


@OPTIMIZERS.register("amsgrad", has_momentum=True, space=ADAM_SPACE)
def amsgrad(
    params: Params, *, lr: LR = 1e-3, beta1: Beta = 0.9, beta2: Beta = 0.999, eps: Eps = 1e-8,
    weight_decay: Decay = 0.0,
) -> torch.optim.Optimizer:
    """AMSGrad (Reddi et al. 2018): Adam with the running maximum of the second moment."""
    import torch
    return torch.optim.Adam(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, amsgrad=True)


@OPTIMIZERS.register("adamw", has_momentum=True,
                     space={**ADAM_SPACE, "weight_decay": {"loguniform": [1e-4, 1.0]}})
def adamw(
    params: Params, *, lr: LR = 1e-3, beta1: Beta = 0.9, beta2: Beta = 0.999, eps: Eps = 1e-8,
    weight_decay: Decay = 0.01,
) -> torch.optim.Optimizer:
    """AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay θ ← θ − ηλθ."""
    import torch
    return torch.optim.AdamW(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)


@OPTIMIZERS.register("nadam", has_momentum=True, space=ADAM_SPACE)
def nadam(
    params: Params, *, lr: LR = 2e-3, beta1: Beta = 0.9, beta2: Beta = 0.999, eps: Eps = 1e-8,
    weight_decay: Decay = 0.0,
) -> torch.optim.Optimizer:
    """NAdam (Dozat 2016): Adam with Nesterov momentum."""
    import torch
    return torch.optim.NAdam(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)


@OPTIMIZERS.register("radam", has_momentum=True, space=ADAM_SPACE)
def radam(
    params: Params, *, lr: LR = 1e-3, beta1: Beta = 0.9, beta2: Beta = 0.999, eps: Eps = 1e-8,
    weight_decay: Decay = 0.0,
) -> torch.optim.Optimizer:
    """RAdam (Liu et al. 2020): Adam with the variance of the adaptive lr rectified early on."""
    import torch
    return torch.optim.RAdam(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)


@OPTIMIZERS.register("adamax", has_momentum=True, space=ADAM_SPACE)
def adamax(
    params: Params, *, lr: LR = 2e-3, beta1: Beta = 0.9, beta2: Beta = 0.999, eps: Eps = 1e-8,
    weight_decay: Decay = 0.0,
) -> torch.optim.Optimizer:
    """Adamax (Kingma & Ba 2015, §7.1): Adam with the infinity norm, u ← max(β₂u, |g|), θ ← θ − η/(1−β₁ᵗ)·m/u."""
    import torch
    return torch.optim.Adamax(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)


@OPTIMIZERS.register("adafactor", space=_LR(1e-4, 1e-1))
def adafactor(
    params: Params, *, lr: LR = 1e-2, beta2_decay: Annotated[float, Range(lt=0)] = -0.8, eps1: Eps | None = None,
    eps2: Eps = 1e-3, d: Annotated[float, Range(gt=0)] = 1.0, weight_decay: Decay = 0.0,
) -> torch.optim.Optimizer:
    """Adafactor (Shazeer & Stern 2018, Alg. 4-5): second moment of a matrix as row x column means, β₂ = 1 − t^decay,
    update clipped to RMS d, step ρ·max(ε₂, RMS(θ)) relative to the weights with ρ = min(lr, 1/√t); no first moment."""
    import torch
    return torch.optim.Adafactor(params, lr=lr, beta2_decay=beta2_decay, eps=(eps1, eps2), d=d,
                                 weight_decay=weight_decay)


@OPTIMIZERS.register("asgd", space=_LR(1e-3, 1.0))
def asgd(
    params: Params, *, lr: LR = 1e-2, lambd: Decay = 1e-4, alpha: Annotated[float, Range(ge=0)] = 0.75,
    t0: Annotated[float, Range(ge=0)] = 1e6, weight_decay: Decay = 0.0,
) -> torch.optim.Optimizer:
    """Averaged SGD (Polyak & Juditsky 1992): η_t = lr/(1 + λ·lr·t)^α, θ ← θ(1 − λη_t) − η_t g, and the running
    average of the iterates kept from step t0 on (torch's weight 1/(t − t0) lags a step; the average stays in the
    optimizer's state, the model trains and is evaluated at θ)."""
    import torch
    return torch.optim.ASGD(params, lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=weight_decay)


@OPTIMIZERS.register("rprop", space=_LR(1e-4, 1e-1))
def rprop(
    params: Params, *, lr: LR = 1e-2, eta_minus: Annotated[float, Range(gt=0, lt=1)] = 0.5,
    eta_plus: Annotated[float, Range(gt=1)] = 1.2, step_min: Decay = 1e-6, step_max: LR = 50.0,
) -> torch.optim.Optimizer:
    """Rprop (Riedmiller & Braun 1993): per-weight step sizes from lr, ×η₊ while the gradient keeps its sign,
    ×η₋ (and no step) when it flips, θ ← θ − sign(g)·Δ; meant for full batches, its sign test is noisy on minibatches."""
    import torch
    return torch.optim.Rprop(params, lr=lr, etas=(eta_minus, eta_plus), step_sizes=(step_min, step_max))


# Lion wants a 3-10x smaller learning rate than AdamW (Chen et al. 2023, §3.2)
@OPTIMIZERS.register("lion", has_momentum=True,
                     space={**_LR(1e-5, 1e-2), "beta1": {"log1m": [0.5, 0.99]}})
def lion(params: Params, *, lr: LR = 1e-4, beta1: Beta = 0.9, beta2: Beta = 0.99,
         weight_decay: Decay = 0.0) -> torch.optim.Optimizer:
    """Lion (Chen et al. 2023, Alg. 2): c = β1·m + (1 − β1)·g, θ ← θ(1 − ηλ) − η·sign(c), m ← β2·m + (1 − β2)·g."""
    from harness.components.lion import Lion  # a torch class: imported when one is built

    return Lion(params, lr=lr, betas=(beta1, beta2), weight_decay=weight_decay)


@OPTIMIZERS.register("lbfgs", full_batch=True, needs_closure=True)
def lbfgs(
    params: Params, *, lr: LR = 1.0, max_iter: Annotated[int, Range(gt=0)] = 20,
    history_size: Annotated[int, Range(gt=0)] = 10, line_search: Literal["strong_wolfe", "none"] = "strong_wolfe",
) -> torch.optim.Optimizer:
    """L-BFGS (Liu & Nocedal 1989), full batch and deterministic; each step re-evaluates the loss via a closure."""
    import torch
    return torch.optim.LBFGS(params, lr=lr, max_iter=max_iter, history_size=history_size,
                             line_search_fn=None if line_search == "none" else line_search)


@OPTIMIZERS.register("lbfgs_minibatch", needs_closure=True)
def lbfgs_minibatch(
    params: Params, *, lr: LR = 1.0, max_iter: Annotated[int, Range(gt=0)] = 20,
    history_size: Annotated[int, Range(gt=0)] = 10, line_search: Literal["strong_wolfe", "none"] = "strong_wolfe",
) -> torch.optim.Optimizer:
    """L-BFGS stepping on each mini-batch (its curvature pairs then mix batches): what the cs231n notes warn
    does not transfer to the mini-batch setting; for comparing with full-batch lbfgs."""
    return lbfgs(params, lr=lr, max_iter=max_iter, history_size=history_size, line_search=line_search)


def _muon_rules(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Muon's own rule (Jordan et al. 2024): it steps the hidden 2-D weight matrices; AdamW, with the adam_*
    settings, steps the embeddings, the output layer, norms, biases and conv kernels (torch.optim.Muon takes
    2-D tensors only; Jordan's CIFAR-10 runs flatten kernels to 2-D, which this does not do)."""
    adamw = {"name": "adamw", "lr": spec["adam_lr"], "beta1": spec["adam_beta1"], "beta2": spec["adam_beta2"],
             "weight_decay": spec["adam_weight_decay"]}
    return [rule("muon", kind="hidden", ndim=2), rule("muon", optimizer=adamw)]


@OPTIMIZERS.register("muon", has_momentum=True, rules=_muon_rules,
                     space={**_LR(2e-3, 0.2), "momentum": {"log1m": [0.8, 0.99]},
                            "adam_lr": {"loguniform": [1e-5, 1e-2]}})
def muon(
    params: Params, *, lr: LR = 0.02, momentum: Momentum = 0.95, nesterov: bool = True, weight_decay: Decay = 0.01,
    ns_steps: Annotated[int, Range(gt=0, lt=100)] = 5,
    adjust_lr: Literal["original", "match_rms_adamw", "spectral_unclamped"] = "original",
    adam_lr: LR = 3e-4, adam_beta1: Beta = 0.9, adam_beta2: Beta = 0.95, adam_weight_decay: Decay = 0.01,
) -> torch.optim.Optimizer:
    """Muon (Jordan et al. 2024) for hidden matrices, AdamW for the other parameters: B <- mu*B + (1-mu)*g, the
    Nesterov mix or B, orthogonalized by 5 quintic Newton-Schulz steps, theta <- theta(1 - lr*wd) - lr'*O."""
    # lr 0.02, momentum 0.95, Nesterov, wd 0.01 and the AdamW side's 3e-4, betas (0.9, 0.95), wd 0.01 are Jordan's
    # reference example (KellerJordan/Muon, MuonWithAuxAdam); torch's own defaults (lr 1e-3, wd 0.1) are the
    # Moonlight setting (Liu et al. 2025), meant with adjust_lr=match_rms_adamw and AdamW's lr. lr' is lr scaled
    # by adjust_lr: "original" sqrt(max(1, fan_out/fan_in)) as Jordan's. The adam_* keys are read by _muon_rules.
    import torch
    return torch.optim.Muon(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                            ns_steps=ns_steps, adjust_lr_fn=adjust_lr)
