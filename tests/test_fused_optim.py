"""Fused optimizers against torch.optim: K=4 slices, every hyperparameter different per slice, on the
same gradients as 4 separate torch optimizers built by the harness's own builders (HFTA's test)."""
from __future__ import annotations

import io
import math

import pytest
import torch

from harness.errors import ConfigError
from harness.fused.optim import FAMILIES, FusedAdagrad, FusedNAdam, FusedRMSprop, FusedSGD, build_fused
from harness.registries import OPTIMIZERS

K = 4
SHAPES = [(K, 5, 3), (K, 5), (K, 2, 3, 4)]  # a weight, a bias, a conv kernel
BIAS = 1
ADAM = {"lr": [1e-3, 1e-2, 3e-4, 5e-2], "beta1": [0.9, 0.8, 0.0, 0.95], "beta2": [0.999, 0.99, 0.9, 0.98],
        "eps": [1e-8, 1e-6, 1e-3, 1e-10], "weight_decay": [0.0, 1e-2, 0.1, 5e-4]}
RMSPROP = {"lr": [1e-3, 1e-2, 3e-4, 5e-3], "alpha": [0.99, 0.9, 0.5, 0.999], "eps": [1e-8, 1e-6, 1e-3, 1e-10],
           "momentum": [0.0, 0.9, 0.5, 0.0], "weight_decay": [0.0, 1e-2, 0.1, 5e-4]}
CASES = {
    "sgd": ("sgd", {"lr": [0.1, 0.05, 0.02, 0.2], "weight_decay": [0.0, 1e-2, 5e-4, 0.1]}),
    # slice 2 has momentum 0: torch steps on the gradient there, with no buffer
    "momentum": ("momentum", {"lr": [0.1, 0.05, 0.02, 0.2], "momentum": [0.9, 0.5, 0.0, 0.99],
                              "dampening": [0.0, 0.1, 0.5, 0.0], "weight_decay": [0.0, 1e-2, 5e-4, 0.1]}),
    "nesterov": ("nesterov", {"lr": [0.1, 0.05, 0.02, 0.2], "momentum": [0.9, 0.5, 0.7, 0.99],
                              "weight_decay": [0.0, 1e-2, 5e-4, 0.1]}),
    "adam": ("adam", ADAM),
    "adamw": ("adamw", {**ADAM, "weight_decay": [1e-2, 0.1, 0.0, 0.3]}),
    "amsgrad": ("amsgrad", ADAM),
    "rmsprop": ("rmsprop", RMSPROP),
    "rmsprop-centered": ("rmsprop", {**RMSPROP, "centered": True}),
    "adagrad": ("adagrad", {"lr": [0.01, 0.1, 0.003, 0.05], "eps": [1e-10, 1e-6, 1e-3, 1e-8],
                            "initial_accumulator_value": [0.0, 0.1, 1.0, 0.01],
                            "weight_decay": [0.0, 1e-2, 0.1, 5e-4]}),
    "nadam": ("nadam", {**ADAM, "lr": [2e-3, 1e-2, 5e-4, 3e-2]}),
    # ρ_∞ = 2/(1 − β2) − 1: slice 0 and 1 pass ρ_t > 5 within 20 steps, slice 2 late, slice 3 (ρ_∞ = 3) never
    "radam": ("radam", {**ADAM, "beta2": [0.999, 0.9, 0.7, 0.5]}),
}
NAMES = sorted(FAMILIES)


def _slice(hyper: dict, k: int) -> dict:
    return {key: v[k] if isinstance(v, list) else v for key, v in hyper.items()}


def _groups(params: list[torch.Tensor], groups: bool) -> list:
    if not groups:
        return params
    rest = [p for i, p in enumerate(params) if i != BIAS]
    return [{"params": rest}, {"params": [params[BIAS]], "weight_decay": 0.0}]


class Pair:
    """A fused optimizer over [K, ...] parameters and K torch optimizers over their rows."""

    def __init__(self, case: str, groups: bool = False, seed: int = 0) -> None:
        self.name, self.hyper = CASES[case]
        gen = torch.Generator().manual_seed(seed)
        self.fused = [torch.randn(s, generator=gen).requires_grad_() for s in SHAPES]
        self.single = [[p[k].detach().clone().requires_grad_() for p in self.fused] for k in range(K)]
        self.opt = build_fused(self.name, _groups(self.fused, groups), self.hyper)
        self.torch_opts = [OPTIMIZERS.build({"name": self.name, **_slice(self.hyper, k)},
                                            _groups(self.single[k], groups)) for k in range(K)]
        assert all(type(o).__module__.startswith("torch.optim") for o in self.torch_opts)
        self.grads = torch.Generator().manual_seed(seed + 1)

    def step(self, active: list[bool] | None = None, frozen_grad: float | None = None) -> None:
        active = active or [True] * K
        grads = [torch.randn(s, generator=self.grads) for s in SHAPES]
        for p, g in zip(self.fused, grads):
            p.grad = g.clone()
            if frozen_grad is not None:  # what a diverged slice feeds the pack
                p.grad[[not a for a in active]] = frozen_grad
        self.opt.step()
        for k in range(K):
            if active[k]:
                for p, g in zip(self.single[k], grads):
                    p.grad = g[k].clone()
                self.torch_opts[k].step()

    def set_lr(self, lrs: list[float]) -> None:
        self.opt.set_lr(lrs)
        for opt, lr in zip(self.torch_opts, lrs):
            for group in opt.param_groups:
                group["lr"] = lr

    def slice_state(self, k: int) -> list[dict[str, torch.Tensor]]:
        return [{key: v[k].clone() for key, v in self.opt.state[p].items()} for p in self.fused]

    def assert_matches_torch(self, slices: range | list[int] = range(K)) -> float:
        """Assert the given slices equal torch (parameters and every state tensor torch keeps); the largest
        relative difference."""
        worst = 0.0
        for k in slices:
            for j, p in enumerate(self.fused):
                ref = self.single[k][j]
                pairs = [(p[k], ref)] + [(self.opt.state[p][key][k], v)
                                         for key, v in self.torch_opts[k].state[ref].items()]
                for got, want in pairs:
                    torch.testing.assert_close(got, want.reshape(got.shape), rtol=1e-6, atol=1e-7)
                    scale = want.abs().clamp_min(1e-30)
                    worst = max(worst, ((got - want).abs() / scale).max().item())
        return worst


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_slice_matches_torch(case):
    pair = Pair(case)
    for _ in range(20):
        pair.step()
    pair.assert_matches_torch()


@pytest.mark.parametrize("case", NAMES)
def test_a_per_slice_lr_schedule_matches_torch(case):
    pair = Pair(case)
    base = pair.hyper["lr"]
    for t in range(20):  # each slice its own cosine phase, like K schedules
        pair.set_lr([base[k] * 0.5 * (1 + math.cos(math.pi * (t + 3 * k) / 20)) for k in range(K)])
        pair.step()
    pair.assert_matches_torch()


@pytest.mark.parametrize("case", NAMES)
def test_a_frozen_slice_keeps_parameters_and_state_exactly(case):
    pair = Pair(case)
    for _ in range(5):
        pair.step()
    mask = [True, True, False, True]
    pair.opt.set_active(mask)
    params, state = [p[2].clone() for p in pair.fused], pair.slice_state(2)
    for _ in range(10):
        pair.step(mask, frozen_grad=float("nan"))  # a diverged slice's gradients must not leak in
    assert all(torch.equal(p[2], before) for p, before in zip(pair.fused, params))
    for now, before in zip(pair.slice_state(2), state):
        assert now.keys() == before.keys() and all(torch.equal(now[key], before[key]) for key in now)
    pair.assert_matches_torch([0, 1, 3])
    pair.opt.set_active([True] * K)
    for _ in range(5):  # slice 2 resumes at its own step count, like a torch optimizer that skipped 10 steps
        pair.step()
    pair.assert_matches_torch()


@pytest.mark.parametrize("case", NAMES)
def test_state_dict_round_trip_continues_exactly(case):
    straight, resumed = Pair(case), Pair(case)
    for pair in (straight, resumed):
        pair.opt.set_active([True, False, True, True])
        for _ in range(10):
            pair.step()
        pair.set_lr([0.5 * lr for lr in pair.opt.param_groups[0]["lr"].tolist()])
    buffer = io.BytesIO()
    torch.save({"params": [p.detach() for p in resumed.fused], "optimizer": resumed.opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    fresh = [p.clone().requires_grad_() for p in saved["params"]]
    resumed.fused = fresh
    resumed.opt = build_fused(resumed.name, fresh, {})  # harness defaults: the state dict brings the values
    resumed.opt.load_state_dict(saved["optimizer"])
    for _ in range(10):
        straight.step()
        resumed.step()
    assert all(torch.equal(a, b) for a, b in zip(straight.fused, resumed.fused))
    for a, b in zip(straight.fused, resumed.fused):
        sa, sb = straight.opt.state[a], resumed.opt.state[b]
        assert sa.keys() == sb.keys() and all(torch.equal(sa[key], sb[key]) for key in sa)
    assert torch.equal(resumed.opt.active, straight.opt.active)
    straight.assert_matches_torch([0, 2, 3])


@pytest.mark.parametrize("case", NAMES)
def test_param_groups_exempt_the_bias_from_decay(case):
    pair = Pair(case, groups=True)
    assert pair.opt.param_groups[1]["weight_decay"].tolist() == [0.0] * K
    for _ in range(20):
        pair.step()
    pair.assert_matches_torch()


@pytest.mark.parametrize("fused_cls, torch_cls, setting, values", [
    (FusedAdagrad, torch.optim.Adagrad, "lr_decay", [0.0, 0.1, 1e-3, 0.5]),
    (FusedNAdam, torch.optim.NAdam, "momentum_decay", [4e-3, 0.0, 0.1, 1.0]),
])
def test_settings_the_harness_does_not_expose_match_torch(fused_cls, torch_cls, setting, values):
    gen = torch.Generator().manual_seed(0)
    fused = [torch.randn(s, generator=gen).requires_grad_() for s in SHAPES]
    single = [[p[k].detach().clone().requires_grad_() for p in fused] for k in range(K)]
    opt = fused_cls(fused, lr=[0.01, 0.1, 0.003, 0.05], **{setting: values})
    refs = [torch_cls(single[k], lr=[0.01, 0.1, 0.003, 0.05][k], **{setting: values[k]}) for k in range(K)]
    for _ in range(20):
        grads = [torch.randn(s, generator=gen) for s in SHAPES]
        for p, g in zip(fused, grads):
            p.grad = g.clone()
        opt.step()
        for k in range(K):
            for p, g in zip(single[k], grads):
                p.grad = g[k].clone()
            refs[k].step()
    for k in range(K):
        for p, ref in zip(fused, single[k]):
            torch.testing.assert_close(p[k], ref, rtol=1e-6, atol=1e-7)


def test_build_fused_checks_each_slice_like_a_trial():
    params = [torch.zeros(K, 3, requires_grad=True)]
    with pytest.raises(ConfigError, match=r"optimizer\[2\]\.lr"):
        build_fused("adam", params, {"lr": [1e-3, 1e-3, -1.0, 1e-3]})
    with pytest.raises(ConfigError, match="betas"):
        build_fused("adam", params, {"betas": [0.9] * K})
    with pytest.raises(ConfigError, match="lengths"):
        build_fused("adam", params, {"lr": [1e-3] * K, "eps": [1e-8] * 3})
    with pytest.raises(ConfigError, match="no fused form"):
        build_fused("lbfgs", params, {})
    with pytest.raises(ValueError, match="one per slice"):
        build_fused("adam", params, {"lr": [1e-3] * 3})
    with pytest.raises(ValueError, match="same for every slice"):
        FusedRMSprop(params, centered=[True, False, True, True])
    with pytest.raises(ValueError, match="Nesterov"):
        FusedSGD(params, momentum=[0.9, 0.0, 0.9, 0.9], nesterov=True)
    with pytest.raises(ValueError, match="leading dimension"):
        build_fused("sgd", [torch.zeros(K, 3), torch.zeros(K + 1, 3)], {})
    assert build_fused("adam", params, {"lr": 0.1}).param_groups[0]["lr"].tolist() == [0.1] * K
