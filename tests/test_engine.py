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
