"""Weight averaging and Lookahead against their definitions: ``ema`` (Polyak & Juditsky 1992),
``swa`` (Izmailov et al. 2018), ``lookahead`` (Zhang et al. 2019); each evaluates on its own
weights and leaves the trained ones as they were."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from harness.data import load
from harness.engine import run_trial
from harness.registries import REGULARIZERS
from harness.spec import COMPLETED, TrialSpec
from harness.suite import resolve_trial
from harness.technique import Cursor, RegContext, Run

CPU = torch.device("cpu")


def _technique(config):
    return REGULARIZERS.build(REGULARIZERS.resolve(config, "r"), RegContext(10))


def _run(model, data=None):
    trial = SimpleNamespace(model=model, data=data, pipeline="device")
    accelerator = SimpleNamespace(device=CPU, num_processes=1)
    record = SimpleNamespace(config={"budget": {"epochs": 4}}, diagnostics={})
    return Run(trial=trial, model=model, optimizer=None, accelerator=accelerator, record=record, rng=None,
               order=torch.Generator(), cursor=Cursor())


def _set(model, value):
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)


def test_ema_is_the_exponential_average_of_the_weights_and_evaluation_uses_it():
    model = nn.Linear(3, 2)
    _set(model, 0.0)
    ema = _technique({"name": "ema", "decay": 0.5, "warmup": False})
    run = _run(model)
    ema.on_start(run)
    expected = 0.0
    for value in (1.0, 2.0, 4.0):
        _set(model, value)
        ema.after_step(run)
        expected = 0.5 * expected + 0.5 * value  # θ̄ ← d θ̄ + (1 − d) θ
    with ema.eval_weights(run):
        assert all(torch.allclose(p, torch.full_like(p, expected)) for p in model.parameters())
    assert all(torch.equal(p, torch.full_like(p, 4.0)) for p in model.parameters())  # trained weights back


def test_ema_warmup_follows_min_decay_one_plus_t_over_ten_plus_t():
    model = nn.Linear(2, 1)
    _set(model, 0.0)
    ema = _technique({"name": "ema", "decay": 0.999})
    run = _run(model)
    ema.on_start(run)
    _set(model, 1.0)
    ema.after_step(run)  # t = 1: d = 2/11
    with ema.eval_weights(run):
        assert next(model.parameters()).flatten()[0].item() == pytest.approx(1 - 2 / 11)


def test_averaged_weights_get_batchnorm_statistics_of_their_own():
    data = load(resolve_trial({"dataset": {"name": "digits"}}, "b")["dataset"])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))
    ema = _technique({"name": "ema", "decay": 0.5, "warmup": False})
    run = _run(model, data)
    ema.on_start(run)
    with torch.no_grad():
        model[1].weight.mul_(3.0)  # the trained weights move away from the average
    ema.after_step(run)
    trained_mean = model[2].running_mean.clone()
    with ema.eval_weights(run):
        inside = model[2].running_mean.clone()
        with torch.no_grad():  # by hand: the mean over every training sample of the BN layer's input
            by_hand = model[1](data.inputs("train").flatten(1)).mean(0)
    torch.testing.assert_close(inside, by_hand, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(inside, trained_mean)
    assert torch.equal(model[2].running_mean, trained_mean)  # the trained model's statistics are back


def test_swa_averages_the_epoch_end_weights_from_its_start_epoch():
    model = nn.Linear(2, 2)
    swa = _technique({"name": "swa", "start": 0.5})  # 4 epochs: averages epochs 2, 3, 4
    run = _run(model)
    swa.on_start(run)
    for epoch, value in zip((1, 2, 3, 4), (10.0, 1.0, 2.0, 6.0)):
        run.cursor.epoch = epoch
        _set(model, value)
        swa.on_epoch_trained(run, {})
    with swa.eval_weights(run):
        assert all(torch.allclose(p, torch.full_like(p, 3.0)) for p in model.parameters())
    assert all(torch.equal(p, torch.full_like(p, 6.0)) for p in model.parameters())


def test_swa_evaluates_the_trained_weights_before_it_starts():
    swa = _technique({"name": "swa", "start": 1.0})
    run = _run(nn.Linear(2, 2))
    swa.on_start(run)
    assert swa.eval_weights(run) is None


def test_lookahead_pulls_the_slow_weights_alpha_toward_the_fast_every_k_steps():
    model = nn.Linear(2, 2)
    _set(model, 0.0)
    la = _technique({"name": "lookahead", "k": 2, "alpha": 0.25})
    run = _run(model)
    la.on_start(run)
    _set(model, 4.0)
    la.after_step(run)  # step 1 of 2: nothing yet
    assert all(torch.equal(p, torch.full_like(p, 4.0)) for p in model.parameters())
    _set(model, 8.0)
    la.after_step(run)  # φ ← 0 + 0.25 (8 − 0) = 2, θ ← φ
    assert all(torch.equal(p, torch.full_like(p, 2.0)) for p in model.parameters())
    _set(model, 3.0)
    with la.eval_weights(run):  # mid inner loop: evaluation on the slow weights
        assert all(torch.equal(p, torch.full_like(p, 2.0)) for p in model.parameters())
    assert all(torch.equal(p, torch.full_like(p, 3.0)) for p in model.parameters())


def _trial(regularizers, epochs=3):
    raw = {"dataset": {"name": "digits", "val_size": 100, "train_subset": 400}, "norm": "batchnorm",
           "model": {"name": "mlp", "depth": 1, "width": 32}, "optimizer": {"name": "momentum", "lr": 0.05},
           "budget": {"epochs": epochs}, "batch_size": 50, "regularizers": regularizers}
    return TrialSpec.make("avg", resolve_trial(raw, "base"), 0)


def test_an_ema_trial_trains_the_same_weights_and_reports_the_average():
    plain = run_trial(_trial([]))
    near_copy = run_trial(_trial([{"name": "ema", "decay": 1e-9, "warmup": False}]))
    slow = run_trial(_trial([{"name": "ema", "decay": 0.999, "warmup": False}]))
    for r in (plain, near_copy, slow):
        assert r.status == COMPLETED, r.reason
    # training is untouched: the step losses are the same
    assert [s[1] for s in near_copy.steps] == [s[1] for s in plain.steps] == [s[1] for s in slow.steps]
    # an average that is the current weights evaluates like no average (BN recomputed, so close, not equal)
    assert near_copy.final["test_acc"] == pytest.approx(plain.final["test_acc"], abs=0.03)
    # an average that has hardly left the init evaluates like an untrained net
    assert slow.final["test_acc"] < plain.final["test_acc"] - 0.3
