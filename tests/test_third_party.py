"""Techniques from packages researchers bring (examples/plugins/*_plugin.py), run through the
harness and checked against their authors' definitions: Schedule-Free against the loop its
authors document, SAM's first step against its two-pass definition (Foret et al. 2021, eq. 2)."""
from __future__ import annotations

import copy
import warnings
from pathlib import Path

from hand_loops import schedule_free_by_hand
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.engine import run_trial
from harness.engine.step import Step
from harness.plugins import load_plugin
from harness.registries import OPTIMIZERS, REGULARIZERS
from harness.spec import COMPLETED, TrialSpec
from harness.suite import resolve_trial
from harness.technique import RegContext

PLUGINS = Path(__file__).resolve().parents[1] / "examples" / "plugins"

# AdaHessian and Sophia-H need backward(create_graph=True), which torch warns about every time
warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")



@pytest.fixture(autouse=True, scope="module")
def _plugins():
    # loaded when the tests run, not at collection, so tests parametrized over a registry
    # (test_components' every-optimizer test) see the built-in components whatever the order
    for plugin in ("pytorch_optimizer_plugin.py", "schedulefree_plugin.py", "prodigyopt_plugin.py"):
        load_plugin(str(PLUGINS / plugin))


def _spec(optimizer: dict, **extra) -> TrialSpec:
    raw = {"dataset": {"name": "digits", "val_size": 100, "train_subset": 400},
           "model": {"name": "mlp", "depth": 1, "width": 32}, "optimizer": optimizer,
           "budget": {"epochs": 3}, "batch_size": 50, **extra}
    return TrialSpec.make("third-party", resolve_trial(raw, "base"), 0)


@pytest.mark.parametrize("optimizer", [
    {"name": "sam_po", "lr": 0.05}, {"name": "adahessian_po", "lr": 0.1}, {"name": "sophiah_po", "lr": 1.0},
    {"name": "adabelief_po", "lr": 0.01}, {"name": "adamw_schedulefree", "lr": 0.01}, {"name": "prodigy"},
])
def test_each_third_party_optimizer_trains_on_digits(optimizer):
    record = run_trial(_spec(optimizer))
    assert record.status == COMPLETED, record.reason
    assert record.final["test_acc"] > 0.5, record.final  # chance is 0.1
    assert record.history[-1]["train_loss"] < record.history[0]["train_loss"]


def test_schedule_free_records_equal_the_loop_its_authors_document():
    spec = _spec({"name": "adamw_schedulefree", "lr": 0.02})
    record = run_trial(spec)
    assert record.status == COMPLETED, record.reason
    losses = [h["val_loss"] for h in record.history]
    by_hand = schedule_free_by_hand(spec.config, spec.seed, call_eval=True)
    assert losses == pytest.approx([v for v, _ in by_hand], rel=1e-6)
    assert [h["val_acc"] for h in record.history] == pytest.approx([a for _, a in by_hand], abs=1e-6)
    # evaluated at the training point y instead, as a loop unaware of train/eval would
    at_y = schedule_free_by_hand(spec.config, spec.seed, call_eval=False)
    assert [v for v, _ in at_y] != pytest.approx(losses, rel=1e-4)


def test_schedule_free_with_batchnorm_recomputes_statistics_at_the_eval_point():
    record = run_trial(_spec({"name": "adamw_schedulefree", "lr": 0.02}, norm="batchnorm"))
    assert record.status == COMPLETED, record.reason
    assert record.final["test_acc"] > 0.5


def _tiny():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    return model, x, y


def _sam_by_hand(model: nn.Module, x, y, lr: float, rho: float) -> list[torch.Tensor]:
    """One SAM step over plain SGD from its definition: ε = ρ g/‖g‖₂ (one norm over every
    parameter), the gradient at w + ε, and w ← w − η ∇L(w + ε)."""
    m = copy.deepcopy(model)
    params = list(m.parameters())
    g = torch.autograd.grad(F.cross_entropy(m(x), y), params)
    norm = torch.sqrt(sum((gi ** 2).sum() for gi in g))
    with torch.no_grad():
        for p, gi in zip(params, g):
            p.add_(rho * gi / norm)
    g2 = torch.autograd.grad(F.cross_entropy(m(x), y), params)
    return [w.detach() - lr * gi for w, gi in zip(model.parameters(), g2)]


def _stepped(model, x, y, optimizer, caps) -> list[torch.Tensor]:
    Step(model, optimizer, caps, lambda m, out, target: F.cross_entropy(out, target))(x, y)
    return [p.detach().clone() for p in model.parameters()]


def test_sam_of_pytorch_optimizer_takes_the_two_pass_step_of_its_definition():
    model, x, y = _tiny()
    expected = _sam_by_hand(model, x, y, lr=0.1, rho=0.05)
    entry = OPTIMIZERS.get("sam_po")
    opt = OPTIMIZERS.build(OPTIMIZERS.resolve({"name": "sam_po", "lr": 0.1, "rho": 0.05, "momentum": 0.0}, "o"),
                           model.parameters())
    got = _stepped(model, x, y, opt, entry.caps)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_builtin_sam_takes_the_same_step_around_any_optimizer():
    model, x, y = _tiny()
    expected = _sam_by_hand(model, x, y, lr=0.1, rho=0.05)
    sam = REGULARIZERS.build(REGULARIZERS.resolve({"name": "sam", "rho": 0.05}, "r"), RegContext(3))
    sgd = OPTIMIZERS.build(OPTIMIZERS.resolve({"name": "sgd", "lr": 0.1}, "o"), model.parameters())
    opt, caps = sam.wrap_optimizer(sgd, OPTIMIZERS.get("sgd").caps)
    assert caps.needs_closure and not caps.step_returns_loss and caps.passes == 2
    got = _stepped(model, x, y, opt, caps)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_a_hessian_optimizer_needs_the_create_graph_its_capabilities_declare():
    model, x, y = _tiny()
    entry = OPTIMIZERS.get("adahessian_po")
    assert entry.caps.create_graph
    opt = OPTIMIZERS.build(OPTIMIZERS.resolve({"name": "adahessian_po"}, "o"), model.parameters())
    without = type(entry.caps)(create_graph=False)
    with pytest.raises(RuntimeError):
        _stepped(model, x, y, opt, without)
    before = [p.detach().clone() for p in model.parameters()]
    after = _stepped(model, x, y, opt, entry.caps)
    assert any(not torch.equal(a, b) for a, b in zip(before, after))


def test_an_optimizer_that_contradicts_what_it_declared_is_handled_or_named_in_one_line():
    """Schedule-Free registered without train_eval was silently evaluated at its training point; SAM declared
    the natural way (needs_closure, its step returning None) failed every trial with
    "'NoneType' object has no attribute 'detach'", no hint of the capability missing."""
    import pytorch_optimizer
    import schedulefree

    if "sf_undeclared" not in OPTIMIZERS:
        OPTIMIZERS.register("sf_undeclared")(lambda params, *, lr=0.02: schedulefree.AdamWScheduleFree(params, lr=lr))
        OPTIMIZERS.register("sam_undeclared", needs_closure=True)(
            lambda params, *, lr=0.05: pytorch_optimizer.SAM(params, torch.optim.SGD, lr=lr))
    spec = _spec({"name": "sf_undeclared", "lr": 0.02})
    record = run_trial(spec)
    assert record.status == COMPLETED, record.reason
    by_hand = schedule_free_by_hand(spec.config, spec.seed, call_eval=True)  # at its eval point, as documented
    assert [h["val_loss"] for h in record.history] == pytest.approx([v for v, _ in by_hand], rel=1e-6)
    assert any("has train() and eval() but was registered without train_eval=True" in w
               for w in record.diagnostics["warnings"])
    sam = run_trial(_spec({"name": "sam_undeclared"}))
    assert sam.status == "failed" and "returned None where a loss was declared" in sam.reason
    assert "step_returns_loss=False" in sam.reason and "\n" not in sam.reason
