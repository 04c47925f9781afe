"""Fused optimizers: the optimizers of K trials as one, every numeric hyperparameter a per-slice tensor.

Row k of a fused ``[K, ...]`` parameter (and of its gradient) is trial k's copy of one model parameter;
a hyperparameter is a ``[K]`` tensor broadcast as ``view(K, 1, ..., 1)``, so one elementwise kernel
updates all K trials, each with its own lr, momentum, betas, eps and weight decay. The idea, and testing
each fused optimizer against K separate ones on the same gradients, is HFTA's (Wang et al.,
"Horizontally Fused Training Array", MLSys 2021; ``hfta/optim/_functional.py``).

Each update rule follows torch's single-tensor implementation (the one ``torch.optim`` runs on the
CPU) operation by operation, with the same order and eps placement, so slice k equals the torch
optimizer given slice k's rows and values (bit for bit on the CPU in ``tests/test_fused_optim.py``):

- ``sgd``: Robbins & Monro 1951; heavy-ball momentum with dampening, Polyak 1964; Nesterov momentum,
  Nesterov 1983 in the form of Sutskever et al. 2013. Weight decay is coupled L2 (g ← g + λθ).
- ``adam``: Kingma & Ba 2015, Algorithm 1 with bias correction; ``amsgrad``: Reddi et al. 2018;
  ``adamw``: decoupled weight decay θ ← θ(1 − ηλ), Loshchilov & Hutter 2019.
- ``rmsprop``: Tieleman & Hinton 2012, with torch's centered and momentum variants.
- ``adagrad``: Duchi et al. 2011, with torch's lr_decay and initial_accumulator_value.
- ``nadam``: Dozat 2016, with torch's schedule μ_t = β1(1 − ½·0.96^(t·momentum_decay)).
- ``radam``: Liu et al. 2020, the rectified step once the SMA length ρ_t exceeds 5, else plain momentum.

Precision follows torch's, which computes its scalar coefficients (1 − β, bias corrections, step sizes)
as Python floats (float64) and rounds each to the parameter dtype where a kernel takes it: here they are
float64 ``[K]`` tensors (float32 on MPS) cast to the parameter dtype just before use. Step counts and
NAdam's μ product are ``[K]`` tensors of torch's scalar dtype (float32), as torch keeps them.

A ``[K]`` boolean ``active`` mask freezes slices (every write through ``torch.where``: a frozen slice's
state stays bit for bit as it was). The booleans that choose a code path (``nesterov``, ``amsgrad``,
``centered``) are shared by the pack; every number may differ per slice.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import Tensor

import harness.components.optimizers  # noqa: F401  registers the optimizers build_fused reads
from harness.errors import ConfigError
from harness.registries import OPTIMIZERS
from harness.registry import resolve_params

PerSlice = float | Sequence[float] | Tensor  # one value for all K slices, or K values
State = dict[str, Tensor]
Zeros = dict[str, list[bool]]  # per hyperparameter, which slices have it 0 (known on the host)


def _rows(t: Tensor, like: Tensor) -> Tensor:
    """A ``[K]`` tensor viewed as ``[K, 1, ..., 1]`` against ``like`` (``[K, ...]``)."""
    return t.view(-1, *([1] * (like.dim() - 1)))


def _c(h: Tensor, like: Tensor) -> Tensor:
    """A ``[K]`` coefficient rounded to ``like``'s dtype, as torch rounds a Python float for a kernel."""
    return _rows(h.to(like.dtype), like)


def _commit(dst: Tensor, new: Tensor, active: Tensor | None) -> None:
    """Write ``new`` into ``dst`` on the active slices (every slice when ``active`` is None); frozen slices
    keep their values exactly."""
    dst.copy_(new if active is None else torch.where(_rows(active, dst), new, dst))


def _sgd(params: list[Tensor], grads: list[Tensor], states: list[State], active: Tensor | None, *, lr: Tensor,
         momentum: Tensor, dampening: Tensor, weight_decay: Tensor, nesterov: bool, decay: bool, buffered: bool,
         momentum_off: Tensor | None, fresh: bool = True) -> None:
    """g ← g + λθ; b ← g on a slice's first step, else μb + (1 − τ)g; θ ← θ − η(g + μb if Nesterov else b)."""
    if active is None and not fresh and momentum_off is None:  # every slice steps: the same ops, in place
        rounded = {t: [h.to(t) for h in (weight_decay, momentum, 1 - dampening, -lr)]  # as _c rounds, once a step
                   for t in {p.dtype for p in params}}
        for p, g, s in zip(params, grads, states):
            wd, mu, keep, step = rounded[p.dtype]
            if decay:
                g = g.addcmul(p, _rows(wd, p))
            d = g
            if buffered:
                buf = s["momentum_buffer"].mul_(_rows(mu, p)).addcmul_(g, _rows(keep, p))
                d = g.addcmul(buf, _rows(mu, p)) if nesterov else buf
            p.addcmul_(d, _rows(step, p))
            s["step"].add_(1)
        return
    for p, g, s in zip(params, grads, states):
        if decay:
            g = g.addcmul(p, _c(weight_decay, p))
        d = g
        if buffered:
            later = s["momentum_buffer"].mul(_c(momentum, p)).addcmul(g, _c(1 - dampening, p))
            buf = torch.where(_rows(s["step"] == 0, p), g, later) if fresh else later
            _commit(s["momentum_buffer"], buf, active)
            d = g.addcmul(buf, _c(momentum, p)) if nesterov else buf
            if momentum_off is not None:  # slices with momentum 0 step on g itself, as torch does
                d = torch.where(_rows(momentum_off, p), g, d)
        _commit(p, p.addcmul(d, _c(-lr, p)), active)
        _commit(s["step"], s["step"] + 1, active)


def _adam(params: list[Tensor], grads: list[Tensor], states: list[State], active: Tensor | None, *, lr: Tensor,
          beta1: Tensor, beta2: Tensor, eps: Tensor, weight_decay: Tensor, amsgrad: bool, decoupled: bool,
          decay: bool) -> None:
    """m ← lerp(m, g, 1 − β1); v ← β2v + (1 − β2)g²; θ ← θ − η/(1 − β1ᵗ) · m / (√v̂/√(1 − β2ᵗ) + ε)."""
    for p, g, s in zip(params, grads, states):
        step = s["step"] + 1
        t = step.to(lr.dtype)
        new_p = p
        if decay and decoupled:
            new_p = p.mul(_c(1 - lr * weight_decay, p))
        elif decay:
            g = g.addcmul(p, _c(weight_decay, p))
        exp_avg = s["exp_avg"].lerp(g, _c(1 - beta1, p))
        exp_avg_sq = s["exp_avg_sq"].mul(_c(beta2, p)).addcmul(g * _c(1 - beta2, p), g)
        bias1, bias2 = 1 - beta1**t, 1 - beta2**t
        second = exp_avg_sq
        if amsgrad:
            second = torch.maximum(s["max_exp_avg_sq"], exp_avg_sq)
            _commit(s["max_exp_avg_sq"], second, active)
        denom = (second.sqrt() / _c(bias2**0.5, p)).add_(_c(eps, p))
        if active is None:  # every slice steps: write in place
            (p.copy_(new_p) if new_p is not p else p).addcdiv_(exp_avg * _c(-(lr / bias1), p), denom)
            s["exp_avg"], s["exp_avg_sq"], s["step"] = exp_avg, exp_avg_sq, step
            continue
        _commit(p, new_p.addcdiv(exp_avg * _c(-(lr / bias1), p), denom), active)
        _commit(s["exp_avg"], exp_avg, active)
        _commit(s["exp_avg_sq"], exp_avg_sq, active)
        _commit(s["step"], step, active)


def _rmsprop(params: list[Tensor], grads: list[Tensor], states: list[State], active: Tensor | None, *, lr: Tensor,
             alpha: Tensor, eps: Tensor, momentum: Tensor, weight_decay: Tensor, centered: bool, decay: bool,
             buffered: bool, momentum_off: Tensor | None) -> None:
    """v ← αv + (1 − α)g²; a = √(v − ḡ²) (centered) or √v, plus ε; θ ← θ − ηb with b ← μb + g/a, or θ − ηg/a."""
    for p, g, s in zip(params, grads, states):
        if decay:
            g = g.addcmul(p, _c(weight_decay, p))
        square_avg = s["square_avg"].mul(_c(alpha, p)).addcmul(g * _c(1 - alpha, p), g)
        if centered:
            grad_avg = s["grad_avg"].lerp(g, _c(1 - alpha, p))
            _commit(s["grad_avg"], grad_avg, active)
            avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
        else:
            avg = square_avg.sqrt()
        avg = avg.add_(_c(eps, p))
        if buffered:
            buf = s["momentum_buffer"].mul(_c(momentum, p)).addcdiv(g, avg)
            _commit(s["momentum_buffer"], buf, active)
            new_p = p.addcmul(buf, _c(-lr, p))
            if momentum_off is not None:  # slices with momentum 0 take torch's step without a buffer
                new_p = torch.where(_rows(momentum_off, p), p.addcdiv(g * _c(-lr, p), avg), new_p)
        else:
            new_p = p.addcdiv(g * _c(-lr, p), avg)
        _commit(p, new_p, active)
        _commit(s["square_avg"], square_avg, active)
        _commit(s["step"], s["step"] + 1, active)


def _adagrad(params: list[Tensor], grads: list[Tensor], states: list[State], active: Tensor | None, *, lr: Tensor,
             lr_decay: Tensor, eps: Tensor, weight_decay: Tensor, decay: bool) -> None:
    """G ← G + g²; θ ← θ − η/(1 + (t − 1)·lr_decay) · g / (√G + ε)."""
    for p, g, s in zip(params, grads, states):
        step = s["step"] + 1
        if decay:
            g = g.addcmul(p, _c(weight_decay, p))
        clr = lr / (1 + (step.to(lr.dtype) - 1) * lr_decay)
        total = s["sum"].addcmul(g, g)
        std = total.sqrt().add_(_c(eps, p))
        _commit(p, p.addcdiv(g * _c(-clr, p), std), active)
        _commit(s["sum"], total, active)
        _commit(s["step"], step, active)


def _nadam(params: list[Tensor], grads: list[Tensor], states: list[State], active: Tensor | None, *, lr: Tensor,
           beta1: Tensor, beta2: Tensor, eps: Tensor, weight_decay: Tensor, momentum_decay: Tensor,
           decay: bool) -> None:
    """Adam's moments, Nesterov's look-ahead: θ ← θ − η(1 − μ_t)/(1 − Πμ)·g/d − ημ_{t+1}/(1 − Πμ·μ_{t+1})·m/d."""
    for p, g, s in zip(params, grads, states):
        step = s["step"] + 1
        t = step.to(lr.dtype)
        bias2 = 1 - beta2**t
        if decay:
            g = g.addcmul(p, _c(weight_decay, p))
        mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay))
        mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
        mu_product = s["mu_product"] * mu.to(s["mu_product"].dtype)  # torch keeps the product in float32
        prod = mu_product.to(lr.dtype)
        exp_avg = s["exp_avg"].lerp(g, _c(1 - beta1, p))
        exp_avg_sq = s["exp_avg_sq"].mul(_c(beta2, p)).addcmul(g * _c(1 - beta2, p), g)
        denom = exp_avg_sq.div(_c(bias2, p)).sqrt().add_(_c(eps, p))
        new_p = p.addcdiv(g * _c(-lr * (1.0 - mu) / (1.0 - prod), p), denom)
        new_p = new_p.addcdiv(exp_avg * _c(-lr * mu_next / (1.0 - prod * mu_next), p), denom)
        _commit(p, new_p, active)
        _commit(s["exp_avg"], exp_avg, active)
        _commit(s["exp_avg_sq"], exp_avg_sq, active)
        _commit(s["mu_product"], mu_product, active)
        _commit(s["step"], step, active)


def _radam(params: list[Tensor], grads: list[Tensor], states: list[State], active: Tensor | None, *, lr: Tensor,
           beta1: Tensor, beta2: Tensor, eps: Tensor, weight_decay: Tensor, decay: bool) -> None:
    """θ ← θ − η·m̂·r_t·√(1 − β2ᵗ)/(√v + ε) where ρ_t > 5, else θ − η·m̂ (Liu et al. 2020, Algorithm 2)."""
    for p, g, s in zip(params, grads, states):
        step = s["step"] + 1
        t = step.to(lr.dtype)
        if decay:
            g = g.addcmul(p, _c(weight_decay, p))
        exp_avg = s["exp_avg"].lerp(g, _c(1 - beta1, p))
        exp_avg_sq = s["exp_avg_sq"].mul(_c(beta2, p)).addcmul(g * _c(1 - beta2, p), g)
        bias1, bias2 = 1 - beta1**t, 1 - beta2**t
        corrected = exp_avg / _c(bias1, p)
        rho_inf = 2 / (1 - beta2) - 1
        rho = rho_inf - 2 * t * beta2**t / bias2
        # NaN where ρ_t ≤ 5, where it is not used
        rect = ((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho)) ** 0.5
        adaptive = exp_avg_sq.sqrt().add_(_c(eps, p)).reciprocal() * _c(bias2**0.5, p)  # torch's float / tensor
        plain = corrected * _c(lr, p)
        update = torch.where(_rows(rho > 5.0, p), plain * adaptive * _c(rect, p), plain)
        _commit(p, p.sub(update), active)
        _commit(s["exp_avg"], exp_avg, active)
        _commit(s["exp_avg_sq"], exp_avg_sq, active)
        _commit(s["step"], step, active)


def _coef_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


def _scalar_dtype() -> torch.dtype:
    """torch.optim's dtype for step counts: float32 unless the default dtype is float64."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _per_slice(value: PerSlice, k: int, device: torch.device, dtype: torch.dtype, name: str) -> Tensor:
    if isinstance(value, Tensor):
        out = value.detach().to(device=device, dtype=dtype).expand(k if value.dim() == 0 else -1).clone()
    elif isinstance(value, (int, float)):
        out = torch.full((k,), float(value), dtype=dtype, device=device)
    else:
        out = torch.tensor([float(v) for v in value], dtype=dtype, device=device)
    if tuple(out.shape) != (k,):
        raise ValueError(f"{name}: expected one value or {k} (one per slice), got shape {tuple(out.shape)}")
    return out


def _shared(value: bool | Sequence[bool], name: str) -> bool:
    values = {bool(v) for v in value} if isinstance(value, (list, tuple)) else {bool(value)}
    if len(values) != 1:
        raise ValueError(f"{name} chooses the code path and must be the same for every slice of a pack")
    return values.pop()


class FusedOptimizer(torch.optim.Optimizer):
    """K stacked trials: ``[K]`` hyperparameters per group, a ``[K]`` ``active`` mask, ``[K]`` step counts.

    ``params`` are ``[K, ...]`` tensors or torch-style groups (dicts with ``params`` and overrides,
    e.g. ``weight_decay: 0.0`` for biases). A subclass names its per-slice ``hypers`` and shared
    ``flags`` with torch's defaults, its update ``rule`` (called with them by name) and its state.
    """

    hypers: dict[str, float] = {}
    flags: dict[str, bool] = {}
    zero_paths: tuple[str, ...] = ("weight_decay",)  # hyperparameters whose zeros change the code path
    init_only: tuple[str, ...] = ()  # hyperparameters only the state's creation reads
    rule: Callable[..., None]

    def __init__(self, params: Iterable[Any], *, active: Sequence[bool] | Tensor | None = None,
                 **settings: PerSlice | bool) -> None:
        unknown = sorted(set(settings) - set(self.hypers) - set(self.flags))
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown settings {unknown}")
        self.K = 0
        self._zeros: list[Zeros] = []
        super().__init__(params, {**self.hypers, **self.flags, **settings})
        first = self.param_groups[0]["params"][0]
        self.active = torch.ones(self.K, dtype=torch.bool, device=first.device)
        self.all_active = True  # known on the host: the rules then write without masking
        self.stepped = False  # every slice has taken a step (SGD's first-step buffer rule is then off)
        if active is not None:
            self.set_active(active)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        group = dict(param_group)
        raw = group["params"]
        group["params"] = [raw] if isinstance(raw, Tensor) else list(raw)
        tensors = [p[1] if isinstance(p, tuple) else p for p in group["params"]]
        if not tensors or any(p.dim() == 0 for p in tensors):
            raise ValueError("a fused parameter group needs [K, ...] tensors")
        self.K = self.K or tensors[0].shape[0]
        device = tensors[0].device
        if any(p.shape[0] != self.K or p.device != device for p in tensors):
            raise ValueError(f"every fused parameter needs leading dimension K={self.K} and a group's one device")
        super().add_param_group(group)
        group = self.param_groups[-1]
        for name in self.hypers:
            group[name] = _per_slice(group[name], self.K, device, _coef_dtype(device), name)
        for name in self.flags:
            group[name] = _shared(group[name], name)
        try:
            self._zeros.append(self._check(group))
        except ValueError:
            self.param_groups.pop()
            raise

    def _check(self, group: dict[str, Any]) -> Zeros:
        """Validate a group; return which slices have each of ``zero_paths`` at 0 (one host sync per group)."""
        return {name: (group[name] == 0).tolist() for name in self.zero_paths}

    def set_lr(self, lr: PerSlice, group: int | None = None) -> None:
        """Set the learning rate, one value or K (e.g. base lr × each slice's schedule factor), of every group
        or of group ``group``."""
        for g in self.param_groups if group is None else [self.param_groups[group]]:
            g["lr"] = _per_slice(lr, self.K, g["lr"].device, g["lr"].dtype, "lr")

    def set_active(self, mask: Sequence[bool] | Tensor) -> None:
        """Freeze the slices where ``mask`` is False: their parameters and state stay as they are."""
        device = self.param_groups[0]["params"][0].device
        active = torch.as_tensor(mask, device=device).to(torch.bool).clone()
        if tuple(active.shape) != (self.K,):
            raise ValueError(f"active: expected {self.K} booleans, got shape {tuple(active.shape)}")
        self.active = active
        self.all_active = bool(active.all())

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group, zeros in zip(self.param_groups, self._zeros):
            params = [p for p in group["params"] if p.grad is not None]
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            if params:
                states = [self._state(p, group, zeros) for p in params]
                settings = {name: group[name] for name in (*self.hypers, *self.flags) if name not in self.init_only}
                type(self).rule(params, [p.grad for p in params], states, None if self.all_active else self.active,
                                **settings, **self._paths(group, zeros))
        self.stepped = self.stepped or self.all_active
        return loss

    def _state(self, p: Tensor, group: dict[str, Any], zeros: Zeros) -> State:
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros(self.K, dtype=_scalar_dtype(), device=p.device)
            state.update(self._init_state(p, group, zeros))
        return state

    def _init_state(self, p: Tensor, group: dict[str, Any], zeros: Zeros) -> State:
        raise NotImplementedError

    def _paths(self, group: dict[str, Any], zeros: Zeros) -> dict[str, Any]:
        """The rule's code-path choices, from the host's view of which slices have a hyperparameter at 0."""
        return {"decay": not all(zeros["weight_decay"])}

    def state_dict(self) -> dict[str, Any]:
        """torch's layout (state by parameter index; groups hold the ``[K]`` hyperparameter tensors and the
        shared flags) plus ``active``: tensors and plain data, readable by ``torch.load(weights_only=True)``."""
        out = super().state_dict()
        out["active"] = self.active
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore exactly (tensors copied, dtypes kept) onto this optimizer's parameters and devices."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups) or any(
                len(s["params"]) != len(g["params"]) for s, g in zip(saved_groups, self.param_groups)):
            raise ValueError("the saved optimizer's parameter groups do not match this one's")
        by_index: dict[int, Tensor] = {}
        for group, saved in zip(self.param_groups, saved_groups):
            device = group["params"][0].device
            by_index.update(zip(saved["params"], group["params"]))
            for key, value in saved.items():
                if key not in ("params", "param_names"):
                    tensor = isinstance(value, Tensor)
                    group[key] = _per_slice(value, self.K, device, _coef_dtype(device), key) if tensor else value
        self.state = defaultdict(dict)
        for index, saved_state in state_dict["state"].items():
            p = by_index[index]
            self.state[p] = {key: value.to(device=p.device, copy=True) for key, value in saved_state.items()}
        self.set_active(state_dict["active"])
        self._zeros = [self._check(g) for g in self.param_groups]
        self.stepped = all(bool((s["step"] > 0).all()) for s in self.state.values()) and bool(self.state)


def _momentum_paths(group: dict[str, Any], zeros: Zeros) -> dict[str, Any]:
    """Buffers exist unless every slice has momentum 0; slices at 0 then step without theirs, like torch."""
    off = zeros["momentum"]
    return {"decay": not all(zeros["weight_decay"]), "buffered": not all(off),
            "momentum_off": group["momentum"] == 0 if any(off) else None}


class FusedSGD(FusedOptimizer):
    """``torch.optim.SGD`` per slice; ``nesterov`` is shared by the pack."""

    hypers = {"lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0}
    flags = {"nesterov": False}
    zero_paths = ("weight_decay", "momentum")
    rule = staticmethod(_sgd)

    def _check(self, group: dict[str, Any]) -> Zeros:
        zeros = super()._check(group)
        if group["nesterov"] and (any(zeros["momentum"]) or bool((group["dampening"] != 0).any())):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening on every slice")
        return zeros

    def _init_state(self, p: Tensor, group: dict[str, Any], zeros: Zeros) -> State:
        return {} if all(zeros["momentum"]) else {"momentum_buffer": torch.zeros_like(p)}

    def _paths(self, group: dict[str, Any], zeros: Zeros) -> dict[str, Any]:
        return {**_momentum_paths(group, zeros), "fresh": not self.stepped}


class FusedAdam(FusedOptimizer):
    """``torch.optim.Adam`` per slice (coupled L2 weight decay); ``amsgrad`` is shared by the pack."""

    hypers = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
    flags = {"amsgrad": False}
    rule = staticmethod(_adam)
    decoupled = False

    def _paths(self, group: dict[str, Any], zeros: Zeros) -> dict[str, Any]:
        return {**super()._paths(group, zeros), "decoupled": self.decoupled}

    def _init_state(self, p: Tensor, group: dict[str, Any], zeros: Zeros) -> State:
        state = {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = torch.zeros_like(p)
        return state


class FusedAdamW(FusedAdam):
    """``torch.optim.AdamW`` per slice: decoupled weight decay, torch's default 0.01."""

    hypers = {**FusedAdam.hypers, "weight_decay": 1e-2}
    decoupled = True


class FusedRMSprop(FusedOptimizer):
    """``torch.optim.RMSprop`` per slice; ``centered`` is shared by the pack."""

    hypers = {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "weight_decay": 0.0}
    flags = {"centered": False}
    zero_paths = ("weight_decay", "momentum")
    rule = staticmethod(_rmsprop)

    def _init_state(self, p: Tensor, group: dict[str, Any], zeros: Zeros) -> State:
        state = {"square_avg": torch.zeros_like(p)}
        if not all(zeros["momentum"]):
            state["momentum_buffer"] = torch.zeros_like(p)
        if group["centered"]:
            state["grad_avg"] = torch.zeros_like(p)
        return state

    def _paths(self, group: dict[str, Any], zeros: Zeros) -> dict[str, Any]:
        return _momentum_paths(group, zeros)


class FusedAdagrad(FusedOptimizer):
    """``torch.optim.Adagrad`` per slice (dense gradients)."""

    hypers = {"lr": 1e-2, "lr_decay": 0.0, "eps": 1e-10, "initial_accumulator_value": 0.0, "weight_decay": 0.0}
    rule = staticmethod(_adagrad)
    init_only = ("initial_accumulator_value",)

    def _init_state(self, p: Tensor, group: dict[str, Any], zeros: Zeros) -> State:
        return {"sum": torch.empty_like(p).copy_(_c(group["initial_accumulator_value"], p).expand_as(p))}


class FusedNAdam(FusedOptimizer):
    """``torch.optim.NAdam`` per slice (coupled L2 weight decay)."""

    hypers = {"lr": 2e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0, "momentum_decay": 4e-3}
    rule = staticmethod(_nadam)

    def _init_state(self, p: Tensor, group: dict[str, Any], zeros: Zeros) -> State:
        return {"mu_product": torch.ones(self.K, dtype=_scalar_dtype(), device=p.device),
                "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}


class FusedRAdam(FusedOptimizer):
    """``torch.optim.RAdam`` per slice (coupled L2 weight decay)."""

    hypers = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
    rule = staticmethod(_radam)

    def _init_state(self, p: Tensor, group: dict[str, Any], zeros: Zeros) -> State:
        return {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}


# harness optimizer name -> fused class and the flags the name fixes
FAMILIES: dict[str, tuple[type[FusedOptimizer], dict[str, bool]]] = {
    "sgd": (FusedSGD, {}),
    "momentum": (FusedSGD, {}),
    "nesterov": (FusedSGD, {"nesterov": True}),
    "adam": (FusedAdam, {}),
    "amsgrad": (FusedAdam, {"amsgrad": True}),
    "adamw": (FusedAdamW, {}),
    "rmsprop": (FusedRMSprop, {}),
    "adagrad": (FusedAdagrad, {}),
    "nadam": (FusedNAdam, {}),
    "radam": (FusedRAdam, {}),
}


def build_fused(name: str, params: Iterable[Any], hyper: Mapping[str, Any],
                active: Sequence[bool] | Tensor | None = None) -> FusedOptimizer:
    """The fused form of harness optimizer ``name``. ``hyper`` maps its settings (names and defaults as in
    ``harness.components.optimizers``) to K values, or one for every slice; each slice's values are checked
    like one trial's config (unknown keys, types, ranges) and a ``ConfigError`` names the slice."""
    if name not in FAMILIES:
        raise ConfigError("optimizer.name", f"no fused form of {name!r}; fused: {', '.join(sorted(FAMILIES))}")
    entry = OPTIMIZERS.get(name, "optimizer.name")
    lengths = {len(v) for v in hyper.values() if isinstance(v, (list, tuple))}
    if len(lengths) > 1:
        raise ConfigError("optimizer", f"per-slice lists of different lengths {sorted(lengths)}")
    n = max(lengths, default=1)
    slices = [resolve_params(entry.params, {key: v[k] if isinstance(v, (list, tuple)) else v
                                            for key, v in hyper.items()}, f"optimizer[{k}]", f"optimizer {name!r}")
              for k in range(n)]
    settings = {key: [s[key] for s in slices] if lengths else slices[0][key] for key in entry.params}
    cls, fixed = FAMILIES[name]
    return cls(params, active=active, **settings, **fixed)
