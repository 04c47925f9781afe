"""The learning-rate range test (Smith 2017): the loss falls then blows up as the learning rate
grows, the suggested range sits below the blow-up, and a trial at its top trains well while one at
ten times the loss minimum does not."""
from __future__ import annotations

import json

import pytest
from conftest import harness_cli, write_suite

from harness.engine import run_trial
from harness.lrfind import range_test
from harness.spec import TrialSpec
from harness.suite import resolve_trial

RAW = {"dataset": {"name": "digits", "val_size": 300}, "model": {"name": "mlp", "depth": 2, "width": 64},
       "optimizer": {"name": "sgd", "lr": 0.05}, "batch_size": 32, "budget": {"epochs": 3}, "schedule": "constant"}


@pytest.fixture(scope="module")
def found():
    return range_test(resolve_trial(RAW, "base"), seed=0, start=1e-5, end=30.0, steps=150)


def test_the_loss_falls_then_blows_up_and_the_range_sits_below_it(found):
    assert found.stopped_early and len(found.lrs) < 150  # past the useful rates the loss exploded
    assert found.lrs[0] == pytest.approx(1e-5) and all(b > a for a, b in zip(found.lrs, found.lrs[1:]))
    assert min(found.smoothed) < 0.8 * found.smoothed[10]  # it fell on the way
    low, high = found.suggested
    assert low < high <= found.minimum / 10 + 1e-12
    assert found.steepest <= found.minimum


def test_a_trial_at_the_top_of_the_range_trains_and_ten_times_the_minimum_does_not(found):
    def acc(lr):
        record = run_trial(TrialSpec.make("t", resolve_trial({**RAW, "optimizer": {"name": "sgd", "lr": lr}}, "b"), 0))
        return record.final.get("test_acc", 0.0) if record.status == "completed" else 0.0

    assert acc(found.suggested[1]) > 0.9
    assert acc(10 * found.minimum) < 0.5


@pytest.mark.slow
def test_the_command_writes_the_curve_and_refuses_what_it_cannot_do(tmp_path):
    suite = write_suite(tmp_path, """
name: lrf
seeds: [0]
base:
  dataset: {name: digits, val_size: 300}
  model: {name: mlp, depth: 1, width: 32}
grid:
  optimizer: [{name: sgd, lr: 0.1}, lbfgs]
""")
    r = harness_cli("lr-find", suite, "--steps", "60", "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert "suggested lr range:" in r.stdout
    data = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert len(data["lrs"]) == len(data["losses"]) <= 60 and data["config"]["optimizer"]["name"] == "sgd"
    assert next((tmp_path / "out").glob("*.png")).read_bytes()[:4] == b"\x89PNG"
    r = harness_cli("lr-find", suite, "--index", "1")
    assert r.returncode == 2 and "lbfgs searches its own step length" in r.stderr
    r = harness_cli("lr-find", suite, "--index", "5")
    assert r.returncode == 2 and "trials 0..1" in r.stderr
