"""Fused packs against the same trials run alone (harness/fused/pack.py, plan.py).

The equivalence the fused-trials issue asks for: a digits suite of 4 optimizers x 2 learning rates x
2 seeds with BatchNorm and dropout, run through the sweep fused and unfused, gives every trial the
same epoch-1 training loss (rtol 1e-4) and final test accuracy (within 0.01). A slice that diverges
or fails leaves the other slices' records equal to their runs alone; a pack stopped mid-epoch, or
killed with SIGKILL, resumes to the records of an uninterrupted pack. The plan says why a trial is
not fused."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, harness_cli, write_suite

from harness.components import REGULARIZERS
from harness.components.regularizers import Parts
from harness.engine import run_trial
from harness.errors import ConfigError
from harness.fused.pack import run_pack
from harness.fused.plan import describe, pack_id, parse_fuse, plan_packs, why_not
from harness.launch import run_local
from harness.spec import COMPLETED, DIVERGED, FAILED, INTERRUPTED
from harness.store import scan
from harness.suite import load_suite

EQUIVALENCE = """
name: fused-eq
seeds: 2
budget: {epochs: 2}
base:
  dataset: {name: digits, val_size: 300, train_subset: 600}
  model: {name: mlp, depth: 2, width: 32, activation: relu}
  norm: batchnorm
  regularizers: [{name: dropout, p: 0.2}]
  schedule: cosine
  batch_size: 50
grid:
  optimizer:
    - {name: sgd, lr: 0.05}
    - {name: sgd, lr: 0.2}
    - {name: momentum, lr: 0.02, momentum: 0.9}
    - {name: momentum, lr: 0.05, momentum: 0.8}
    - {name: adam, lr: 0.001}
    - {name: adam, lr: 0.003, beta1: 0.8, beta2: 0.99}
    - {name: rmsprop, lr: 0.001}
    - {name: rmsprop, lr: 0.003, weight_decay: 0.001}
"""

SMALL = """
name: fused-small
seeds: 1
budget: {epochs: 3}
base:
  dataset: {name: digits, val_size: 200, train_subset: 400}
  model: {name: mlp, depth: 1, width: 24}
  batch_size: 40
grid:
  optimizer: [{name: sgd, lr: 0.05}, {name: sgd, lr: 1.0e+6}, {name: sgd, lr: 0.2}]
"""


@pytest.mark.slow
def test_a_fused_sweep_gives_every_trial_the_record_of_its_run_alone(tmp_path):
    suite = load_suite(write_suite(tmp_path, EQUIVALENCE))
    assert len(suite.trials) == 16
    run_local(list(suite.trials), tmp_path / "fused", fuse="auto")
    run_local(list(suite.trials), tmp_path / "alone", fuse="off")
    fused, alone = scan(tmp_path / "fused").records, scan(tmp_path / "alone").records
    packs = {r.environment["fused"]["pack"] for r in fused.values()}
    assert len(packs) == 4 and all(r.environment["fused"]["size"] == 4 for r in fused.values())  # one per optimizer
    assert not any("fused" in r.environment for r in alone.values())
    for trial_id, a in alone.items():
        f = fused[trial_id]
        assert f.status == a.status == COMPLETED
        assert f.history[0]["train_loss"] == pytest.approx(a.history[0]["train_loss"], rel=1e-4)
        assert abs(f.final["test_acc"] - a.final["test_acc"]) <= 0.01
        assert f.diagnostics["init_loss"] == pytest.approx(a.diagnostics["init_loss"], rel=1e-6)
        assert f.config == a.config and f.seed == a.seed and len(f.steps) == len(a.steps)
        assert f.diagnostics["layers"]["epochs"][-1].keys() == a.diagnostics["layers"]["epochs"][-1].keys()
        # the pack profiles every slice in one stacked forward (dropout masks from each slice's stream,
        # BatchNorm in train mode): each slice's profile is its run's, to the 4 digits a profile keeps
        for fe, ae in zip(f.diagnostics["layers"]["epochs"], a.diagnostics["layers"]["epochs"]):
            assert fe["activations"].keys() == ae["activations"].keys() and fe["activations"]
            for layer, stats in ae["activations"].items():
                assert fe["activations"][layer] == pytest.approx(stats, rel=2e-3, abs=1e-4), (trial_id, layer)
    from harness.report import write_report  # the report reads fused records as it reads any

    report = write_report(tmp_path / "fused", formats=("md",), jobs=1)[0].read_text()
    assert "adam" in report and "rmsprop" in report and "missing" not in report


def _specs(tmp_path, text, overrides=()):
    return list(load_suite(write_suite(tmp_path, text), list(overrides)).trials)


def _same_as_alone(fused, spec, rel=1e-5):
    alone = run_trial(spec)
    assert fused.status == alone.status
    assert len(fused.history) == len(alone.history)
    for f, a in zip(fused.history, alone.history):
        assert f["train_loss"] == pytest.approx(a["train_loss"], rel=rel)
        assert f["test_acc"] == pytest.approx(a["test_acc"], abs=1e-9)
        assert f["val_loss"] == pytest.approx(a["val_loss"], rel=rel)
    return alone


@pytest.mark.slow
def test_a_diverging_slice_is_recorded_at_its_step_and_the_others_train_on(tmp_path):
    specs = _specs(tmp_path, SMALL)
    records = run_pack(specs)
    assert [r.status for r in records] == [COMPLETED, DIVERGED, COMPLETED]
    alone = run_trial(specs[1])
    assert alone.status == DIVERGED and records[1].diverged_step == alone.diverged_step
    assert records[1].reason == alone.reason
    _same_as_alone(records[0], specs[0])
    _same_as_alone(records[2], specs[2])


def _raising(ctx, *, step: int = 4) -> Parts:
    """Raises in its batch transform after ``step`` batches, as a buggy technique would."""
    seen = {"n": 0}

    def batch(x, y, rng):
        seen["n"] += 1
        if seen["n"] > step:
            raise RuntimeError(f"boom after {step} batches")
        return x, y

    return Parts(batch=batch)


@pytest.fixture
def raising_technique():
    """Registered for one test only: the registry-wide tests must not see it."""
    REGULARIZERS.register("fused_test_raise")(_raising)
    yield
    del REGULARIZERS._entries["fused_test_raise"]


def test_a_failing_slice_is_recorded_failed_and_the_pack_goes_on(tmp_path, raising_technique):
    specs = _specs(tmp_path, SMALL, ["grid.optimizer=[{name: sgd, lr: 0.05}]", "seeds=2",
                                     "grid.regularizers=[[], [fused_test_raise], [{name: l2, strength: 0.01}]]"])
    raising = [s for s in specs if [r["name"] for r in s.config["regularizers"]] == ["fused_test_raise"]]
    assert len(raising) == 2
    assert why_not(raising[0].config) == "technique 'fused_test_raise' does not run per slice of a pack"
    records = run_pack(specs)
    statuses = [r.status for r in records]
    assert statuses.count(FAILED) == 2 and statuses.count(COMPLETED) == 4
    for spec, r in zip(specs, records):
        if spec in raising:
            assert r.status == FAILED and "boom after 4 batches" in r.reason and "traceback" in r.diagnostics
        else:  # with an L2 penalty too: its gradient reaches the slice through the unfused model's views
            _same_as_alone(r, spec)


@pytest.mark.slow
def test_a_pack_stopped_mid_epoch_resumes_to_the_uninterrupted_records(tmp_path):
    specs = _specs(tmp_path, SMALL, ["base.norm=batchnorm", "base.regularizers=[{name: dropout, p: 0.3}]"])
    whole = run_pack(specs)
    path = tmp_path / "pack.pt"
    calls = {"n": 0}

    def stop():  # asked after every step and every epoch: the 15th time is after step 14, mid-epoch 2 (10 an epoch)
        calls["n"] += 1
        return calls["n"] == 15

    first = run_pack(specs, path, stop)
    assert [r.status for r in first] == [INTERRUPTED] * 3 and path.exists()
    resumed = run_pack(specs, path)
    for a, b in zip(whole, resumed):
        assert b.status == a.status
        assert b.diagnostics.get("resumed_at_step") == (None if a.status == DIVERGED else [14])
        assert [h["train_loss"] for h in b.history] == [h["train_loss"] for h in a.history]
        assert [h["test_acc"] for h in b.history] == [h["test_acc"] for h in a.history]
        assert b.steps == a.steps and b.diverged_step == a.diverged_step


@pytest.mark.slow
def test_a_pack_killed_with_sigkill_resumes_from_its_checkpoint(tmp_path):
    suite = write_suite(tmp_path, SMALL.replace("epochs: 3", "epochs: 6").replace("seeds: 1", "seeds: 2")
                        .replace("train_subset: 400", "train_subset: 1200").replace("1.0e+6", "0.1"))
    results = tmp_path / "res"
    cmd = [sys.executable, "-m", "harness.cli", "run", str(suite), "--results", str(results), "--fuse", "auto",
           "--no-report"]
    child = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    checkpoints = results / "fused-small" / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and not any(checkpoints.glob("pack-*.pt")) and child.poll() is None:
        time.sleep(0.05)
    assert child.poll() is None, "the run ended before its first pack checkpoint"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not scan(results / "fused-small").records  # nothing final was written
    assert harness_cli("run", suite, "--results", results, "--fuse", "auto", "--no-report").returncode == 0
    resumed = scan(results / "fused-small").records
    assert all("resumed_at_step" in r.diagnostics for r in resumed.values() if r.status == COMPLETED)
    fresh = tmp_path / "fresh"
    assert harness_cli("run", suite, "--results", fresh, "--fuse", "auto", "--no-report").returncode == 0
    for trial_id, a in scan(fresh / "fused-small").records.items():
        b = resumed[trial_id]
        assert (b.status, b.diverged_step, b.steps) == (a.status, a.diverged_step, a.steps)
        assert [h["test_acc"] for h in b.history] == [h["test_acc"] for h in a.history]
    assert not any(checkpoints.glob("pack-*.pt"))  # removed once the pack ended


def test_the_plan_packs_compatible_trials_and_says_why_the_others_train_alone(tmp_path):
    suite = load_suite(write_suite(tmp_path, EQUIVALENCE), [
        "grid.optimizer=[{name: sgd, lr: 0.1}, {name: sgd, lr: 0.2}, lbfgs]",
        "grid.ensemble=[{members: 1}, {members: 2}]"])
    units, reasons = plan_packs(list(suite.trials), "auto")
    packs = [u for u in units if len(u) > 1]
    assert [len(u) for u in packs] == [4]  # sgd x 2 lrs x 2 seeds, one member
    assert len(units) == 1 + 8
    assert sum("no fused form" in why for why in reasons.values()) == 4
    assert sum("ensemble" in why for why in reasons.values()) == 4
    assert [len(u) for u in plan_packs(list(packs[0]), 3)[0]] == [3, 1]
    assert [len(u) for u in plan_packs(list(packs[0]), "auto", workers=2)[0]] == [2, 2]  # shared by the workers
    assert all(len(u) == 1 for u in plan_packs(list(suite.trials), "off")[0])
    assert pack_id(packs[0]) == pack_id(list(reversed(packs[0])))
    wide = load_suite(write_suite(tmp_path, EQUIVALENCE), ["grid.model=[{name: mlp, width: 32}, {name: mlp, width: 64}]",
                                                          "grid.optimizer=[sgd]"])
    assert [len(u) for u in plan_packs(list(wide.trials), "auto")[0]] == [2, 2]  # widths differ: two packs
    resnet = list(load_suite(write_suite(tmp_path, EQUIVALENCE), ["base.model={name: resnet, depth: 8}",
                                                                 "base.regularizers=[]"]).trials)
    assert why_not(resnet[0].config) is None
    units, reasons = plan_packs(resnet, "auto")  # on a CPU, auto fuses MLPs only
    assert len(units) == 16 and all("grouped convolution runs slower" in why for why in reasons.values())
    assert [len(u) for u in plan_packs(resnet, 4)[0]] == [4] * 4 and len(plan_packs(resnet, "auto", cuda=True)[0]) == 4
    wrn = load_suite(write_suite(tmp_path, EQUIVALENCE), ["base.model={name: wrn, depth: 10, dropout: 0.3}",
                                                         "base.regularizers=[]"])
    assert "convolutional feature maps" in why_not(wrn.trials[0].config)
    out = harness_cli("plan", write_suite(tmp_path, EQUIVALENCE), "--fuse", "auto", "grid.optimizer=[sgd, lbfgs]")
    assert out.returncode == 0
    assert "fuse: auto: 2 trials in 1 packs, 2 alone" in out.stdout
    assert "alone" in out.stdout and "optimizer 'lbfgs' has no fused form" in out.stdout
    # lone trials grouped by reason, one line each (it was a near-identical line per trial); the packs
    # as run --workers 2 forms them, with the reason a compatible trial ends up alone
    lines = describe(list(suite.trials), "auto", workers=4)
    alone = [line for line in lines if " alone: " in line]
    assert len(alone) == 3, lines  # lbfgs, the ensembles, the sgd trials spread over the workers
    assert any(line.startswith("  4 alone: optimizer 'lbfgs' has no fused form") for line in alone)
    assert any("its 4 compatible trials are spread over 4 workers" in line for line in alone)
    many = describe(list(load_suite(write_suite(tmp_path, EQUIVALENCE), ["grid.optimizer=[lbfgs]", "seeds=12"]).trials),
                    "auto")
    assert len(many) == 2 and many[1].startswith("  12 alone: ") and many[1].endswith(" and 4 more")


def test_fuse_settings_are_checked_where_they_are_given(tmp_path):
    assert parse_fuse("8") == 8 and parse_fuse("auto") == "auto" and parse_fuse("off") == parse_fuse(False) == "off"
    assert load_suite(write_suite(tmp_path, EQUIVALENCE + "execution: {fuse: off}\n")).execution["fuse"] == "off"
    for bad in (0, -1, "many", 2.5, True):
        with pytest.raises(ConfigError):
            parse_fuse(bad)
    with pytest.raises(ConfigError, match="execution.fuse"):
        load_suite(write_suite(tmp_path, EQUIVALENCE + "execution: {fuse: 0}\n"))
    out = harness_cli("run", write_suite(tmp_path, EQUIVALENCE), "--fuse", "lots", "--results", tmp_path / "r")
    assert out.returncode == 2 and "--fuse: expected auto, off or a pack size >= 1, got 'lots'" in out.stderr


@pytest.mark.slow
def test_each_slice_runs_its_own_techniques_as_it_would_alone(tmp_path):
    """Weight averages (their BatchNorm statistics recomputed on the slice), batch transforms, penalties,
    early stopping and label smoothing, one per slice of one pack."""
    specs = _specs(tmp_path, SMALL, [
        "grid.optimizer=[{name: momentum, lr: 0.05}]", "base.norm=batchnorm", "budget.epochs=3",
        "grid.regularizers=[[{name: ema, decay: 0.8}], [{name: swa, start: 0.3}], [{name: mixup, alpha: 0.4}], "
        "[{name: cutout, size: 3}], [{name: l1, strength: 0.001}], [{name: early_stopping, patience: 0, "
        "min_delta: 5.0}]]",
        "grid.loss=[{name: cross_entropy}, {name: cross_entropy, label_smoothing: 0.1}]"])
    assert len(specs) == 12 and len(plan_packs(specs, "auto")[0]) == 1
    records = run_pack(specs)
    stopped = [r for r in records if "early_stopping" in r.diagnostics]
    assert [(len(r.history), r.final["epoch"]) for r in stopped] == [(2, 1), (2, 1)], [r.diagnostics["early_stopping"] for r in stopped]
    for spec, record in zip(specs, records):
        alone = run_trial(spec)
        assert record.status == alone.status == COMPLETED
        assert len(record.history) == len(alone.history)
        for f, a in zip(record.history, alone.history):
            assert f["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)
            assert abs(f["val_acc"] - a["val_acc"]) <= 0.01 and abs(f["test_acc"] - a["test_acc"]) <= 0.01
        assert record.history[0]["train_loss"] == pytest.approx(alone.history[0]["train_loss"], rel=1e-4)
        assert record.final == pytest.approx(alone.final, rel=1e-2)
        assert record.diagnostics.get("early_stopping") == alone.diagnostics.get("early_stopping")


@pytest.mark.slow
def test_an_array_task_runs_its_chunk_as_a_pack_stops_on_usr1_and_resumes(tmp_path):
    """``harness worker`` (what a SLURM array task runs) with the suite's ``execution.fuse``: a chunk of 4
    is one pack; USR1 (the time limit is near) stops it at a step with every record ``interrupted`` and its
    checkpoint kept; the task run again resumes the pack to the records of an uninterrupted one."""
    text = (SMALL.replace("epochs: 3", "epochs: 40").replace("train_subset: 400", "train_subset: 1200")
            .replace("1.0e+6", "0.1").replace("seeds: 1", "seeds: 2") + "execution: {fuse: auto}\n")
    suite = write_suite(tmp_path, text)
    assert harness_cli("submit", suite, "--results", tmp_path / "res", "--dry-run").returncode == 0
    plan = next((tmp_path / "res").glob("*/plans/plan-*.json"))
    results = plan.parent.parent
    cmd = [sys.executable, "-m", "harness", "worker", str(plan), "--index", "0", "--chunk", "4"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not any((results / "checkpoints").glob("pack-*.pt")) and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGUSR1)  # in epoch 2 of 40
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "(pack of 4)" in err
    parts = scan(results).records
    assert len(parts) == 4 and {r.status for r in parts.values()} == {INTERRUPTED}
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    resumed = scan(results).records
    specs = load_suite(suite).trials[:4]
    whole = {r.trial_id: r for r in run_pack(list(specs))}
    for trial_id, r in resumed.items():
        assert r.status == COMPLETED and r.diagnostics["resumed_at_step"]
        assert r.environment["fused"]["size"] == 4
        assert [h["train_loss"] for h in r.history] == [h["train_loss"] for h in whole[trial_id].history]
        assert r.steps == whole[trial_id].steps and r.final["test_acc"] == whole[trial_id].final["test_acc"]
    assert not any((results / "checkpoints").glob("pack-*.pt"))


@pytest.mark.slow
def test_a_residual_pack_gives_each_trial_the_record_of_its_run_alone(tmp_path):
    """ResNet-8 (BatchNorm, a projection shortcut per stage) and a pre-activation WRN as stacked models: the
    model's own forward over stacked layers in the grouped layout."""
    for model in ("{name: resnet, depth: 8}", "{name: wrn, depth: 10, widen: 1}"):
        specs = _specs(tmp_path, SMALL, [f"base.model={model}", "base.norm=batchnorm", "seeds=2", "budget.epochs=1",
                                         "grid.optimizer=[{name: momentum, lr: 0.02}, {name: momentum, lr: 0.01}]"])
        for spec, record in zip(specs, run_pack(specs)):
            assert record.environment["fused"]["size"] == 4
            _same_as_alone(record, spec, rel=1e-4)


@pytest.mark.slow
def test_a_pack_that_keeps_ending_its_process_trains_its_trials_alone(tmp_path):
    """After ``execution.crashes`` deaths of its process (here 1: a SIGKILL, as the OOM killer would), a
    pack's trials run alone, so that a crash is pinned on the trial that causes it."""
    suite = write_suite(tmp_path, SMALL.replace("epochs: 3", "epochs: 6").replace("train_subset: 400", "train_subset: 1200")
                        .replace("1.0e+6", "0.1") + "execution: {fuse: auto, crashes: 1}\n")
    results = tmp_path / "res"
    cmd = [sys.executable, "-m", "harness", "run", str(suite), "--results", str(results), "--no-report"]
    child = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    locks = results / "fused-small" / "locks"
    deadline = time.time() + 120
    while time.time() < deadline and not any(locks.glob("pack-*.started")) and child.poll() is None:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert any(locks.glob("pack-*.started"))  # the pack's start mark outlived its process
    again = harness_cli("run", suite, "--results", results, "--no-report")
    assert again.returncode == 0, again.stderr
    records = scan(results / "fused-small").records.values()
    assert len(records) == 3 and all(r.status == COMPLETED and "fused" not in r.environment for r in records)


def _interrupted_pack(specs, path, at: int = 15):
    calls = {"n": 0}

    def stop():  # the 15th question is after step 14, mid-epoch 2 (10 steps an epoch)
        calls["n"] += 1
        return calls["n"] == at

    assert [r.status for r in run_pack(specs, path, stop)] == [INTERRUPTED] * len(specs) and path.exists()


def _same_records(got, want):
    for a, b in zip(want, got):
        assert b.trial_id == a.trial_id and b.config == a.config and b.status == a.status
        assert [h["train_loss"] for h in b.history] == [h["train_loss"] for h in a.history], b.config["optimizer"]
        assert [h["test_acc"] for h in b.history] == [h["test_acc"] for h in a.history]


def test_a_pack_resumed_with_its_trials_in_another_order_gives_each_trial_its_own_state(tmp_path):
    """The same trials in another order (a suite's grid values or seeds reordered) make the same pack; each
    trial resumes from its own slice, by trial id, and ends with its uninterrupted record (issue 29.1: slices
    were matched by position, and every record after the resume was another trial's)."""
    specs = _specs(tmp_path, SMALL.replace("1.0e+6", "0.1"), ["base.norm=batchnorm"])
    whole = run_pack(specs)
    path = tmp_path / "pack.pt"
    _interrupted_pack(specs, path)
    turned = [specs[2], specs[0], specs[1]]
    assert pack_id(turned) == pack_id(specs)
    resumed = run_pack(turned, path)
    assert [r.trial_id for r in resumed] == [s.trial_id for s in turned]  # in the order asked
    assert all(r.diagnostics.get("resumed_at_step") == [14] for r in resumed)
    _same_records(resumed, [whole[2], whole[0], whole[1]])


def test_a_damaged_pack_checkpoint_starts_the_pack_over_and_says_why(tmp_path):
    """A checkpoint of the right format and pack whose cursor is damaged (issue 29.12: a TypeError on every
    run until deleted) or whose tensors do not fit the pack: the pack starts over, each record says why."""
    import torch

    specs = _specs(tmp_path, SMALL.replace("1.0e+6", "0.1"))
    whole = run_pack(specs)
    path = tmp_path / "pack.pt"
    for damage in ("cursor", "tensors"):
        path.unlink(missing_ok=True)  # run_pack leaves its last checkpoint; execute_unit removes it
        _interrupted_pack(specs, path)
        state = torch.load(path, weights_only=True)
        if damage == "cursor":
            state["cursor"] = {**state["cursor"], "batches": "four"}
        else:
            key = next(k for k in state["model"] if k.endswith("weight"))
            state["model"][key] = torch.zeros(3, 2, 2)
        torch.save(state, path)
        again = run_pack(specs, path)
        _same_records(again, whole)
        for r in again:
            assert "does not fit this pack" in r.diagnostics["checkpoint"] and "started over" in r.diagnostics["checkpoint"]
            assert "resumed_at_step" not in r.diagnostics


class _BackwardFails(torch.autograd.Function):
    """The identity whose backward raises, as a plugin loss's custom gradient might."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("backward refused")


def _plugin_loss(*, fails: str = "no") -> torch.nn.Module:
    """Cross-entropy that, when ``fails`` says so, raises in its backward or returns one loss per sample."""
    plain = torch.nn.CrossEntropyLoss(reduction="none" if fails == "shape" else "mean")

    class Loss(torch.nn.Module):
        def forward(self, out, y):
            return plain(_BackwardFails.apply(out) if fails == "backward" else out, y)

    return Loss()


def _plugin_schedule(ctx, *, fails: bool = False):
    """Constant, or raising from step 5 on."""
    from harness.components.schedules import Schedule

    def factor(step):
        if fails and step >= 5:
            raise ValueError(f"no learning rate for step {step}")
        return 1.0

    return Schedule(factor)


@pytest.fixture
def plugin_parts():
    from harness.components import LOSSES, SCHEDULES

    LOSSES.register("fused_test_loss")(_plugin_loss)
    SCHEDULES.register("fused_test_schedule")(_plugin_schedule)
    yield
    del LOSSES._entries["fused_test_loss"], SCHEDULES._entries["fused_test_schedule"]


def test_a_slice_whose_schedule_loss_or_backward_raises_fails_alone_and_the_pack_goes_on(tmp_path, plugin_parts):
    """Each of these killed the whole pack (a traceback and no record, on every rerun); a trial alone is
    failed with the same reason and the others complete as they would alone."""
    specs = _specs(tmp_path, SMALL, [
        "grid.optimizer=[{name: sgd, lr: 0.05}]", "budget.epochs=2",
        "grid.loss=[fused_test_loss, {name: fused_test_loss, fails: backward}, {name: fused_test_loss, fails: shape}]",
        "grid.schedule=[fused_test_schedule, {name: fused_test_schedule, fails: true}]"])
    assert len(specs) == 6 and all(why_not(s.config) is None for s in specs)
    assert len(plan_packs(specs, "auto")[0]) == 1  # one pack of six
    records = run_pack(specs)
    for spec, record in zip(specs, records):
        loss, schedule = spec.config["loss"]["fails"], spec.config["schedule"]["fails"]
        if loss == "no" and not schedule:
            _same_as_alone(record, spec)
            continue
        assert record.status == FAILED, (loss, schedule, record.status)
        if loss == "backward":
            assert "backward refused" in record.reason
        elif loss == "shape":
            assert "0-d tensor" in record.reason
        else:
            assert "no learning rate for step 5" in record.reason and run_trial(spec).status == FAILED


def test_a_fused_trial_reports_its_share_of_the_packs_time_and_the_report_marks_it(tmp_path):
    """Each record held the whole pack's wall time, so a fused trial looked K times slower than it was and
    nothing in the report said which trials were fused."""
    import time

    from harness.report import write_report
    from harness.store import write_plan, write_record

    specs = _specs(tmp_path, SMALL, ["grid.optimizer=[{name: sgd, lr: 0.05}, {name: sgd, lr: 0.2}]", "seeds=2"])
    t0 = time.perf_counter()
    records = run_pack(specs)
    wall = time.perf_counter() - t0
    assert all(r.environment["fused"]["size"] == 4 for r in records)
    spent = sum(r.timing["train_s"] + r.timing["eval_s"] for r in records)
    assert 0 < spent <= wall, (spent, wall)  # shares of one wall clock, not four copies of it
    for r in records:
        assert r.timing["train_s"] == pytest.approx(sum(h["train_time"] for h in r.history))
    results = tmp_path / "r"
    write_plan(results, load_suite(write_suite(tmp_path, SMALL), ["grid.optimizer=[{name: sgd, lr: 0.05}, "
                                                                   "{name: sgd, lr: 0.2}]", "seeds=2"]).to_dict(), specs)
    for r in records:
        write_record(results, r)
    report = write_report(results, formats=("md",), jobs=1)[0].read_text()
    assert "train time (s; fused: share of the pack's) | fused |" in report and "| 2 of 2 |" in report
