"""Optimizers named by import path, with no plugin (``optimizer: {class: schedulefree.AdamWScheduleFree}``):
the class's ``__init__`` as the schema, what its methods show as capabilities, through the real command
line, held against the loop Schedule-Free's authors document."""
from __future__ import annotations

import json
from importlib import metadata

from conftest import harness_cli, write_suite
from hand_loops import schedule_free_by_hand
import pytest
import torch

from harness.components.optimizer_classes import detect_caps
from harness.engine import run_trial
from harness.errors import ConfigError
from harness.listing import listing
from harness.regress import label_of
from harness.spec import COMPLETED, FAILED, TrialSpec
from harness.store import scan
from harness.suite import load_suite, resolve_trial

SF = "schedulefree.AdamWScheduleFree"


class NeedsLr(torch.optim.SGD):
    """An optimizer whose lr has no default (named by path as test_class_optimizers.NeedsLr)."""

    def __init__(self, params, lr: float, momentum: float = 0.0):
        super().__init__(params, lr=lr, momentum=momentum)


class ClosureReturnsNone(torch.optim.SGD):
    """A step that requires a closure but returns None (as SAM-style optimizers do)."""

    def __init__(self, params, lr: float = 0.1):
        super().__init__(params, lr=lr)

    def step(self, closure):
        closure()
        super().step()
        return None


# --- through the command line ------------------------------------------------------------------

SUITE = f"""
name: by-class
seeds: [0]
budget: {{epochs: 2}}
base:
  dataset: {{name: digits, val_size: 200, train_subset: 400}}
  model: {{name: mlp, depth: 1, width: 32}}
  optimizer: {{class: {SF}, lr: 0.01}}
  batch_size: 50
grid:
  optimizer.lr: [0.01, 0.02]
"""


@pytest.mark.slow
def test_a_class_optimizer_runs_through_the_cli_with_no_plugin_at_its_eval_point(tmp_path):
    r = harness_cli("run", write_suite(tmp_path, SUITE), "--results", tmp_path, "--no-report")
    assert r.returncode == 0, r.stderr[-3000:]
    found = scan(tmp_path / "by-class")
    records = sorted(found.records.values(), key=lambda rec: rec.config["optimizer"]["lr"])
    assert [rec.status for rec in records] == [COMPLETED, COMPLETED], [rec.reason for rec in records]
    record = records[0]
    # every value the class's __init__ took, as the record stores it (a grid axis refined the base's lr)
    assert record.config["optimizer"] == {"name": SF, "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8,
                                          "weight_decay": 0.0, "warmup_steps": 0, "r": 0.0, "weight_lr_power": 2.0,
                                          "foreach": True}
    assert [rec.config["optimizer"]["lr"] for rec in records] == [0.01, 0.02]
    assert record.environment["versions"]["schedulefree"] == metadata.version("schedulefree")
    assert record.environment["plugins"] == []
    assert not record.diagnostics.get("warnings")  # train_eval detected, not patched in while building
    # evaluated at its eval point: the loop its authors document, same config, seed and data
    by_hand = schedule_free_by_hand(record.config, record.seed, call_eval=True)
    assert [h["val_loss"] for h in record.history] == pytest.approx([v for v, _ in by_hand], rel=1e-6)
    assert [h["val_acc"] for h in record.history] == pytest.approx([a for _, a in by_hand], abs=1e-6)
    at_y = schedule_free_by_hand(record.config, record.seed, call_eval=False)  # a loop unaware of eval()
    assert [v for v, _ in at_y] != pytest.approx([h["val_loss"] for h in record.history], rel=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("optimizer, expected", [
    ("{class: schedulefree.AdamWScheduleFree, betaz: [0.9, 0.99]}",
     "base.optimizer.betaz: unknown key of optimizer 'schedulefree.AdamWScheduleFree'; did you mean 'betas'?"),
    ("{class: schedulefree.AdamWScheduleFree, warmup_steps: 1.5}", "base.optimizer.warmup_steps: expected an integer"),
    ("{class: schedulefree.AdamWScheduleFree, betas: [0.9]}", "base.optimizer.betas: expected a list of 2"),
    ("{class: schedulefree.AdamWScheduleFreee}", "base.optimizer.class: cannot import optimizer class"),
    ("{class: no_such_package.Adam}", "base.optimizer.class: cannot import optimizer class 'no_such_package.Adam'"),
    ("{class: torch.nn.Linear}", "base.optimizer.class: 'torch.nn.Linear' is"),
])
def test_a_bad_class_optimizer_is_refused_at_load_with_its_key_path(tmp_path, optimizer, expected):
    suite = SUITE.replace(f"{{class: {SF}, lr: 0.01}}", optimizer).replace("grid:\n  optimizer.lr: [0.01, 0.02]\n", "")
    r = harness_cli("run", write_suite(tmp_path, suite), "--results", tmp_path, "--no-report")
    assert r.returncode == 2, r.stderr[-3000:]
    assert expected in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "by-class").exists()


# --- the schema and the capabilities, in process -----------------------------------------------

def _optimizer(value: dict) -> dict:
    return resolve_trial({"optimizer": value}, "base")["optimizer"]


def test_the_signature_is_the_schema_and_defaults_give_the_same_trial():
    nadam = _optimizer({"class": "torch.optim.NAdam"})
    assert nadam["betas"] == [0.9, 0.999] and nadam["lr"] == 0.002 and nadam["maximize"] is False
    written = _optimizer({"class": "torch.optim.NAdam", "betas": [0.9, 0.999], "weight_decay": 0, "lr": 0.002})
    config = resolve_trial({"optimizer": {"class": "torch.optim.NAdam"}}, "base")
    same = resolve_trial({"optimizer": {"class": "torch.optim.NAdam", "weight_decay": 0}}, "base")
    assert written == nadam and TrialSpec.make("s", config, 0).trial_id == TrialSpec.make("s", same, 0).trial_id
    assert _optimizer({"name": "torch.optim.NAdam"}) == nadam  # the resolved form resolves to itself
    with pytest.raises(ConfigError, match=r"base\.optimizer\.betas\[1\]: expected a number"):
        _optimizer({"class": "torch.optim.NAdam", "betas": [0.9, "high"]})
    with pytest.raises(ConfigError, match=r"base\.optimizer\.lr: required by optimizer 'test_class_optimizers"):
        _optimizer({"class": "test_class_optimizers.NeedsLr"})
    assert _optimizer({"class": "test_class_optimizers.NeedsLr", "lr": 1}) == {
        "name": "test_class_optimizers.NeedsLr", "lr": 1.0, "momentum": 0.0}
    with pytest.raises(ConfigError, match="'base_optimizer'.*cannot be written in a suite"):
        _optimizer({"class": "pytorch_optimizer.SAM"})  # its base optimizer is a class: a plugin's job
    with pytest.raises(ConfigError, match="'name' .* or 'class' .* not both"):
        _optimizer({"class": "torch.optim.NAdam", "name": "adam"})


def test_what_a_class_shows_becomes_its_capabilities():
    import schedulefree

    assert detect_caps(schedulefree.AdamWScheduleFree).train_eval
    assert not detect_caps(schedulefree.AdamWScheduleFree).needs_closure
    lbfgs = detect_caps(torch.optim.LBFGS)  # step(self, closure): no default
    assert lbfgs.needs_closure and lbfgs.step_returns_loss and not lbfgs.train_eval
    adam = detect_caps(torch.optim.Adam)
    assert not adam.needs_closure and not adam.train_eval


def _spec(optimizer: dict) -> TrialSpec:
    raw = {"dataset": {"name": "digits", "val_size": 100, "train_subset": 200},
           "model": {"name": "mlp", "depth": 1, "width": 16}, "optimizer": optimizer,
           "budget": {"epochs": 1}, "batch_size": 50}
    return TrialSpec.make("by-class", resolve_trial(raw, "base"), 0)


def test_a_required_closure_is_passed_and_a_step_returning_none_is_named_in_one_line():
    record = run_trial(_spec({"class": "torch.optim.LBFGS", "lr": 0.5, "max_iter": 2}))
    assert record.status == COMPLETED, record.reason
    failed = run_trial(_spec({"class": "test_class_optimizers.ClosureReturnsNone"}))
    assert failed.status == FAILED and "step_returns_loss" in failed.reason and "\n" not in failed.reason


def test_a_class_axis_is_labelled_by_class_and_listed(tmp_path):
    suite = SUITE.replace("optimizer.lr: [0.01, 0.02]", f"optimizer: [{{class: {SF}, lr: 0.01}}, "
                          "{class: pytorch_optimizer.Lion, lr: 0.001}, {class: pytorch_optimizer.Lion, lr: 0.002}]")
    loaded = load_suite(write_suite(tmp_path, suite))
    labels = [dict(t.axes)["optimizer"] for t in loaded.trials]
    assert labels == ["AdamWScheduleFree", "Lion(lr=0.001)", "Lion(lr=0.002)"]
    assert label_of(loaded.trials[0].config["optimizer"]).startswith("AdamWScheduleFree-")
    excluded = load_suite(write_suite(tmp_path, suite + "exclude: [{optimizer: {class: pytorch_optimizer.Lion}}]\n"))
    assert len(excluded.trials) == 1
    assert "  {class: module.Class, parameters}" in list(listing("optimizers"))
    assert json.dumps(loaded.trials[0].config)  # the resolved config is plain JSON (betas a list, not a tuple)


def test_axes_and_overrides_refine_a_class_base(tmp_path):
    suite = write_suite(tmp_path, """
    name: by-class
    base:
      optimizer: {class: pytorch_optimizer.Lion}
    random:
      n: 2
      space: {optimizer.lr: {loguniform: [1.0e-4, 1.0e-2]}}
    zip:
      optimizer.betas: [[0.9, 0.99], [0.95, 0.98]]
    """)
    loaded = load_suite(suite, ["base.optimizer.weight_decay=0.1"])
    optimizers = [t.config["optimizer"] for t in loaded.trials]
    assert {o["name"] for o in optimizers} == {"pytorch_optimizer.Lion"} and len(optimizers) == 4
    assert {o["weight_decay"] for o in optimizers} == {0.1}
    assert sorted({tuple(o["betas"]) for o in optimizers}) == [(0.9, 0.99), (0.95, 0.98)]
    assert len({o["lr"] for o in optimizers}) == 2
    with pytest.raises(ConfigError, match=r"zip\.optimizer\.betas\[1\]: expected \[float, float\]\|"):
        load_suite(suite, ["zip={optimizer.betas: [[0.9, 0.99], [0.95]]}"])
