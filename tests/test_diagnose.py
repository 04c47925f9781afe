"""`harness diagnose`: the babysitting checks (CS231n) on known-good and known-broken configs of
the offline digits set: a sane MLP memorizes 32 samples with no flag raised, a learning rate that
does not move fails the overfit test, and broken inits raise the specific warning or flag."""
from __future__ import annotations

import json
import math

import pytest
from conftest import write_suite

from harness.diagnose import diagnose, plot, resolve_target, verdict
from harness.errors import UsageError
from harness.spec import COMPLETED, Record
from harness.suite import load_suite, resolve_trial

STEPS = 60  # enough for the healthy nets here (they need about 10-25), and the broken ones stay short


def _diagnose(max_steps=STEPS, model=None, **raw):
    config = {"dataset": {"name": "digits", "val_size": 300}, "batch_size": 32,
              "model": {"name": "mlp", "depth": 2, "width": 64, **(model or {})},
              "init": "kaiming_normal", "optimizer": {"name": "sgd", "lr": 0.05}, **raw}
    return diagnose(resolve_trial(config, "base"), seed=0, samples=32, max_steps=max_steps, label="t")


@pytest.fixture(scope="module")
def healthy():
    # the schedule (a warmup of 1000 epochs would start near lr 0) and the regularizers that
    # fight memorization (a strong L2 penalty alone holds it at 16%) must be off in the run
    return _diagnose(schedule="cosine", warmup={"epochs": 1000},
                     regularizers=[{"name": "mixup", "alpha": 1.0}, {"name": "l2", "strength": 1.0}])


def test_a_healthy_mlp_memorizes_32_samples_and_raises_nothing(healthy):
    o = healthy.overfit
    assert o.reached and 0 < o.steps < STEPS and o.accs[-1] == 1.0 and o.accs[0] < 0.5
    assert len(o.losses) == len(o.accs) == o.steps + 1 and o.final_loss < o.losses[0]
    assert o.lr == 0.05 and o.disabled == ["mixup", "l2"]
    assert healthy.passed and not healthy.warnings and not healthy.flags
    assert abs(healthy.init["loss"] - math.log(10)) < 0.5 * math.log(10)
    assert set(healthy.after["update_ratio"]) == set(healthy.init["grad_norm"]) == {"1.weight", "3.weight", "5.weight"}
    text = verdict(healthy)
    assert f"overfits 32 samples to 100% train accuracy in {STEPS} steps: yes, at step {o.steps}" in text
    assert "not applied: mixup, l2" in text and "2 (ReLU)" in text and "5.weight" in text
    assert text.splitlines()[-1] == "no problems found"


def test_the_result_saves_as_json_and_a_plot(healthy, tmp_path):
    data = json.loads(json.dumps(healthy.as_dict(), allow_nan=False))
    assert data["passed"] and data["overfit"]["reached"] and data["ln_classes"] == pytest.approx(math.log(10))
    png = plot(healthy, tmp_path / "d" / "t.png", "t")
    assert png.read_bytes()[:4] == b"\x89PNG" and [p.name for p in png.parent.iterdir()] == ["t.png"]


def test_a_learning_rate_that_does_not_move_fails_the_overfit_test():
    d = _diagnose(optimizer={"name": "sgd", "lr": 1e-7})
    assert not d.overfit.reached and d.overfit.steps == STEPS and d.overfit.final_acc < 0.5
    assert not d.passed and d.problems == [d.overfit.summary()]
    text = verdict(d)
    assert f"in {STEPS} steps: no," in text and text.splitlines()[-1] == "1 problem found"


def test_a_diverging_run_stops_at_the_nan_and_still_saves():
    d = _diagnose(optimizer={"name": "sgd", "lr": 1e4})
    assert not d.overfit.reached and "the loss is nan" in (d.overfit.stopped or "")
    assert d.overfit.steps < STEPS
    json.dumps(d.as_dict(), allow_nan=False)


def test_lbfgs_memorizes_in_a_few_steps_without_a_large_update_flag():
    d = _diagnose(optimizer={"name": "lbfgs"})
    assert d.overfit.reached and d.overfit.steps <= 3 and d.passed
    assert max(d.after["update_ratio"].values()) > 0.1  # a step is a whole line search: not flagged


def test_a_large_init_warns_of_the_initial_loss_and_saturates_tanh():
    d = _diagnose(model={"activation": "tanh"}, init={"name": "normal", "std": 10.0})
    assert d.init["loss"] > 10 * math.log(10)
    assert len(d.warnings) == 1 and d.warnings[0].startswith(f"initial loss {d.init['loss']:.3g} is far from ln C")
    assert any(f.startswith("saturated units at init") for f in d.flags)
    assert "FAR FROM IT" in verdict(d)


def test_a_deep_sigmoid_net_with_a_tiny_init_flags_vanishing_gradients():
    d = _diagnose(model={"depth": 6, "activation": "sigmoid"}, init={"name": "normal", "std": 0.01})
    assert any(f.startswith("vanishing gradients at init: gradient RMS of 1.weight") for f in d.flags)


def test_a_deep_tanh_net_with_a_tiny_init_flags_collapsing_activations_and_does_not_learn():
    # its weight gradients shrink together (no gradient flag at init), but the signal is gone by the top layer
    d = _diagnose(model={"depth": 6, "activation": "tanh"}, init={"name": "normal", "std": 0.01})
    assert not d.warnings  # the initial loss is ln C exactly: the logits are all but zero
    assert any(f.startswith("collapsing activations at init: std of 12") for f in d.flags)
    assert not any(f.startswith("vanishing gradients at init") for f in d.flags)
    assert not d.overfit.reached


def test_a_large_negative_bias_kills_the_relus_and_the_net_cannot_memorize():
    d = _diagnose(init={"name": "kaiming_normal", "bias": -5.0})
    assert d.init["activations"]["2"]["dead"] == 1.0
    assert any(f.startswith("dead units at init: 100% of the units of 2") for f in d.flags)
    assert not d.overfit.reached
    assert "100%" in verdict(d).split("activation")[1]


SUITE = """
name: diag
seeds: [0, 1]
base:
  dataset: {name: digits, val_size: 300}
  model: {name: mlp, depth: 1, width: 32}
grid:
  optimizer: [{name: sgd, lr: 0.1}, {name: adam, lr: 0.001}]
"""


def test_a_target_is_a_suite_trial_or_a_trial_record(tmp_path):
    path = write_suite(tmp_path, SUITE)
    suite = load_suite(path, ["base.model.width=16"])
    spec, label = resolve_target(str(path), ["base.model.width=16"], index=3)
    assert spec == suite.trials[3] and spec.config["model"]["width"] == 16
    assert label == f"diag: {spec.label()}" and "optimizer=adam" in label and "seed=1" in label
    with pytest.raises(UsageError, match=r"--index 4: the suite has trials 0\.\.3"):
        resolve_target(str(path), index=4)

    trials = tmp_path / "results" / "diag" / "trials"
    trials.mkdir(parents=True)
    record = Record(spec.trial_id, "diag", spec.seed, COMPLETED, spec.config, dict(spec.axes))
    (trials / f"{spec.trial_id}.json").write_text(record.to_json())
    again, label = resolve_target(str(trials / f"{spec.trial_id}.json"), [])
    assert again.trial_id == spec.trial_id and again.seed == 1 and label == f"diag: {spec.label()}"
    changed, _ = resolve_target(str(trials / f"{spec.trial_id}.json"), ["base.optimizer.lr=0.5"])
    assert changed.config["optimizer"] == {**spec.config["optimizer"], "lr": 0.5}
    with pytest.raises(UsageError, match="on a record, override its config with base.KEY=VALUE"):
        resolve_target(str(trials / f"{spec.trial_id}.json"), ["optimizer.lr=0.5"])


def test_bad_targets_say_what_was_expected(tmp_path):
    with pytest.raises(UsageError, match=r"nope\.yaml: no such file \(expected a suite \.yaml or a trial record"):
        resolve_target(str(tmp_path / "nope.yaml"))
    (tmp_path / "x.json").write_text('{"rows": []}')
    with pytest.raises(UsageError, match=r"x\.json: not a trial record"):
        resolve_target(str(tmp_path / "x.json"))
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(UsageError, match=r"expected a suite \(\.yaml\) or a trial record \(\.json\)"):
        resolve_target(str(tmp_path / "x.txt"))
    with pytest.raises(UsageError, match="a folder"):
        resolve_target(str(tmp_path))
    mnist = {"dataset": {"name": "mnist", "root": str(tmp_path)}, "model": {"name": "mlp", "depth": 1, "width": 8}}
    with pytest.raises(UsageError, match=r"dataset mnist: missing .*train-images-idx3-ubyte"):
        diagnose(resolve_trial(mnist, "base"), 0)
    with pytest.raises(UsageError, match="--samples 1: need at least 2"):
        diagnose({}, 0, samples=1)  # checked before anything is built


def test_the_command_exits_0_on_a_healthy_trial_and_1_when_a_check_fails(tmp_path, capsys):
    from harness.cli import main

    suite = write_suite(tmp_path, SUITE)
    assert main(["diagnose", str(suite), "--out", str(tmp_path / "ok"), "--steps", "100"]) == 0
    said = capsys.readouterr().out
    assert "no problems found" in said and (tmp_path / "ok").glob("*.png")
    stuck = main(["diagnose", str(suite), "grid.optimizer=[{name: sgd, lr: 1.0e-7}]", "--out", str(tmp_path / "stuck"),
                  "--steps", "100"])
    assert stuck == 1 and ": no" in capsys.readouterr().out
    assert main(["diagnose", str(tmp_path / "missing.yaml")]) == 2
