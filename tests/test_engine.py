"""The training loop: outcomes, reproducibility, divergence, failures."""
import math

import pytest

from harness.engine import run_trial
from harness.spec import COMPLETED, DIVERGED, FAILED, TrialSpec
from harness.suite import resolve_trial


def _spec(seed=0, **overrides):
    raw = {
        "dataset": {"name": "digits", "val_size": 200, "train_subset": 500},
        "model": {"name": "mlp", "depth": 1, "width": 32},
        "optimizer": {"name": "sgd", "lr": 0.1},
        "budget": {"epochs": 3},
        "batch_size": 50,
    }
    raw.update(overrides)
    return TrialSpec.make("t", resolve_trial(raw, "base"), seed, {})


def test_a_trial_records_history_best_final_timing_and_environment():
    r = run_trial(_spec())
    assert r.status == COMPLETED, r.reason
    assert [h["epoch"] for h in r.history] == [1, 2, 3]
    assert r.history[-1]["step"] == 30  # 500 samples / 50 per batch x 3 epochs
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "lr", "grad_norm"):
        assert all(math.isfinite(h[key]) for h in r.history), key
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"]
    assert r.final["test_acc"] > 0.7
    assert r.best["val_acc"] == max(h["val_acc"] for h in r.history)
    assert r.timing["train_s"] > 0 and r.timing["eval_s"] > 0 and r.timing["steps"] == 30
    assert r.environment["versions"]["torch"] and r.environment["device"] == "cpu"
    assert r.dataset["n_train"] == 500
    assert r.diagnostics["initial_loss"] == pytest.approx(math.log(10), rel=0.5)


def test_same_seed_same_record_and_other_seed_differs():
    a, b, c = run_trial(_spec(0)), run_trial(_spec(0)), run_trial(_spec(1))
    strip = lambda r: [{k: v for k, v in h.items() if not k.endswith("_time")} for h in r.history]  # noqa: E731
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)


def test_dropout_trial_is_reproducible_too():
    spec = _spec(regularizers=[{"name": "dropout", "p": 0.3}])
    assert run_trial(spec).history[-1]["train_loss"] == run_trial(spec).history[-1]["train_loss"]


def test_cosine_schedule_reaches_its_floor_at_the_end_of_the_budget():
    r = run_trial(_spec(schedule={"name": "cosine", "min_ratio": 0.0}))
    assert r.history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert r.history[0]["lr"] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi / 3)))


def test_nan_loss_is_diverged_with_the_step():
    r = run_trial(_spec(optimizer={"name": "sgd", "lr": 1e6}))
    assert r.status == DIVERGED
    assert r.diverged_step is not None and r.diverged_step < 30
    assert f"step {r.diverged_step}" in r.reason


def test_exploding_loss_is_diverged_before_it_reaches_nan():
    r = run_trial(_spec(optimizer={"name": "sgd", "lr": 50.0}, divergence={"loss_ratio": 3.0}))
    assert r.status == DIVERGED
    assert "exceeds 3×" in r.reason or "nan" in r.reason.lower()


def test_an_exception_is_recorded_as_failed_with_the_message(tmp_path):
    r = run_trial(_spec(dataset={"name": "mnist", "root": str(tmp_path)}))
    assert r.status == FAILED
    assert r.reason.startswith("DataMissing: dataset mnist: missing")
    assert "Traceback" in r.diagnostics["traceback"]


def test_max_steps_cuts_the_budget():
    r = run_trial(_spec(budget={"epochs": 3, "max_steps": 15}))
    assert r.timing["steps"] == 15 and len(r.history) == 2


def test_full_batch_optimizers_take_one_step_per_epoch():
    r = run_trial(_spec(optimizer={"name": "gd", "lr": 0.5}))
    assert r.status == COMPLETED and r.timing["steps"] == 3
    lb = run_trial(_spec(optimizer={"name": "lbfgs", "max_iter": 5}, budget={"epochs": 2}))
    assert lb.status == COMPLETED, lb.reason
    assert lb.timing["steps"] == 2 and lb.history[-1]["train_loss"] < lb.history[0]["train_loss"] * 1.01
    again = run_trial(_spec(optimizer={"name": "lbfgs", "max_iter": 5}, budget={"epochs": 2}))
    assert again.history[-1]["val_loss"] == lb.history[-1]["val_loss"]  # deterministic


def test_warmup_multiplies_the_schedule_linearly():
    r = run_trial(_spec(warmup={"epochs": 2}, budget={"epochs": 3}))  # 10 steps per epoch
    # the lr recorded after epoch 1 is the one for step 10: (10 + 1) / 20 of the base lr
    assert r.history[0]["lr"] == pytest.approx(0.1 * 11 / 20)
    assert r.history[2]["lr"] == pytest.approx(0.1)


def test_biases_and_norm_parameters_can_be_exempt_from_weight_decay():
    import torch
    from torch import nn

    from harness.engine.loop import param_groups

    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    groups = param_groups(model, decay_biases=False, decay_norm=False)
    assert [len(g["params"]) for g in groups] == [2, 4] and groups[1]["weight_decay"] == 0.0
    opt = torch.optim.SGD(groups, lr=0.1, weight_decay=1.0)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    changed = [not torch.equal(a, b) for a, b in zip(before, model.parameters())]
    assert changed == [True, False, False, False, True, False]  # only the two Linear weights decay
    assert len(param_groups(model, True, True)) == 1


def test_gradient_clipping_by_norm_bounds_the_step():
    free = run_trial(_spec(optimizer={"name": "sgd", "lr": 0.1}, budget={"epochs": 1}))
    clipped = run_trial(_spec(optimizer={"name": "sgd", "lr": 0.1}, clip={"norm": 0.01}, budget={"epochs": 1}))
    assert clipped.status == COMPLETED
    # grad_norm is recorded before clipping, so both runs start from the same first gradient
    assert clipped.diagnostics["initial_loss"] == free.diagnostics["initial_loss"]
    assert clipped.history[0]["train_loss"] > free.history[0]["train_loss"]  # tiny steps learn less


def test_plateau_schedule_reads_the_validation_metric_each_epoch():
    r = run_trial(_spec(schedule={"name": "plateau", "metric": "val_acc", "patience": 0, "factor": 0.5,
                                  "threshold": 10.0}, budget={"epochs": 3}))
    # with an impossible threshold nothing counts as improvement: halved after epochs 2 and 3
    assert [h["lr"] for h in r.history] == pytest.approx([0.1, 0.05, 0.025])


@pytest.mark.slow
def test_ensemble_averages_member_probabilities():
    single = run_trial(_spec(seed=3))
    r = run_trial(_spec(seed=3, ensemble={"members": 3}))
    assert r.status == COMPLETED, r.reason
    members = r.diagnostics["members"]
    assert [m["seed"] for m in members] == [3, 10_003, 20_003]
    assert members[0]["final"] == single.final  # member 0 is the single model of the same seed
    for h in r.history:
        # Jensen: the NLL of averaged probabilities is at most the members' mean NLL
        assert h["test_loss"] <= h["member_test_loss"] + 1e-9 and h["val_loss"] <= h["member_val_loss"] + 1e-9
    assert r.final["member_test_acc"] == pytest.approx(sum(m["final"]["test_acc"] for m in members) / 3)
    assert r.timing["steps"] == 3 * single.timing["steps"]


def test_ensemble_with_early_stopping_is_rejected_at_load_time():
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="members"):
        resolve_trial({"ensemble": {"members": 2}, "regularizers": ["early_stopping"]}, "base")
