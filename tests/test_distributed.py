"""Multi-process trials (``resources.processes``) through a real ``accelerate launch`` over gloo, and the
speed switches (precision, compile, channels_last) on the CPU.

Why a tolerance of 1e-5 (relative) between 2 processes and 1: with equal shards and no stochastic
regularizer, both compute the same global-batch gradient. Two processes sum two half-batch mean
gradients through gloo's all-reduce and divide by 2, one process takes one mean over the whole
batch; float32 summation in a different order differs by a few ulps (~1e-7 relative) per step. Over
the 2 epochs (14 steps at a small learning rate) such rounding grows slowly, and measured
differences are around 1e-7; a real mistake (a shard seen twice, gradients summed instead of
averaged, per-process batches of the full size) changes the epoch loss by percent."""
from __future__ import annotations

import pytest
from conftest import harness_cli, write_suite

from harness.spec import COMPLETED, Record, trial_id_of
from harness.store import scan

DDP = """
name: ddp
seeds: [0]
budget: {epochs: 2}
base:
  dataset: {name: digits, val_size: 197, train_subset: 448}
  model: {name: mlp, depth: 2, width: 64}
  optimizer: {name: momentum, lr: 0.05, momentum: 0.9}
  batch_size: 64
"""


def _record(results) -> Record:
    records = list(scan(results).records.values())
    assert len(records) == 1
    return records[0]


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    suite = write_suite(tmp, DDP)
    out = {}
    for p in (1, 2):
        r = harness_cli("run", suite, "--results", tmp / f"p{p}", "--no-report", f"base.resources.processes={p}")
        assert r.returncode == 0, r.stderr[-3000:]
        out[p] = _record(tmp / f"p{p}" / "ddp")
    return out


@pytest.mark.slow
def test_two_processes_give_the_one_process_training_loss(one_and_two):
    one, two = one_and_two[1], one_and_two[2]
    assert one.status == two.status == COMPLETED, (one.reason, two.reason)
    assert one.trial_id == two.trial_id  # the process count does not change the trial
    assert one.environment["processes"] == 1 and two.environment["processes"] == 2
    assert one.timing["steps"] == two.timing["steps"] == 14  # 448 / 64 global batches per epoch
    for a, b in zip(one.history, two.history, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)


def test_a_shard_seen_twice_would_be_caught(one_and_two, tmp_path):
    # The test above can fail: half the global batch per process (batch 32 in one process) is a
    # different trajectory, far outside the tolerance.
    r = harness_cli("run", write_suite(tmp_path, DDP.replace("batch_size: 64", "batch_size: 32")),
                    "--results", tmp_path, "--no-report")
    assert r.returncode == 0, r.stderr[-2000:]
    half = _record(tmp_path / "ddp")
    assert half.history[-1]["train_loss"] != pytest.approx(one_and_two[2].history[-1]["train_loss"], rel=1e-3)


@pytest.mark.slow
def test_a_multi_process_trial_that_raises_is_recorded_failed(tmp_path):
    # Every process raises at once (a bad learning rate: NaN at the first check) → one diverged
    # record from the main process; a crash of the launch itself → failed with its log.
    r = harness_cli("run", write_suite(tmp_path, DDP), "--results", tmp_path, "--no-report",
                    "base.resources.processes=2", "base.optimizer.lr=1.0e+12")
    assert r.returncode == 1
    record = _record(tmp_path / "ddp")
    assert record.status == "diverged" and record.diverged_step is not None


@pytest.mark.slow
@pytest.mark.parametrize("switch,expect", [
    ("base.precision=bf16", {"precision": "bf16"}),
    ("base.channels_last=true", {"channels_last": True}),
])
def test_speed_switches_run_on_cpu_and_are_recorded(tmp_path, switch, expect):
    suite = write_suite(tmp_path, DDP.replace("name: mlp, depth: 2, width: 64", "name: cnn_2c2d"))
    r = harness_cli("run", suite, "--results", tmp_path, "--no-report", "budget.max_steps=3", switch)
    assert r.returncode == 0, r.stderr[-2000:]
    record = _record(tmp_path / "ddp")
    assert record.status == COMPLETED, record.reason
    for key, value in expect.items():
        assert record.environment[key] == value
        assert record.config[key] == value


def test_bf16_changes_the_trial_and_fp32_keeps_old_ids(tmp_path):
    from harness.suite import load_suite

    suite = write_suite(tmp_path, DDP)
    fp32 = load_suite(suite).trials[0]
    bf16 = load_suite(suite, ["base.precision=bf16"]).trials[0]
    fast = load_suite(suite, ["base.channels_last=true", "base.compile=true", "base.resources.processes=4"]).trials[0]
    assert fp32.trial_id != bf16.trial_id  # mixed precision changes the numbers
    assert fp32.trial_id == fast.trial_id  # memory format, compilation and process count do not
    # fp32 is left out of the hash, so records written before the switch existed keep their ids
    assert fp32.trial_id == trial_id_of({k: v for k, v in fp32.config.items() if k != "precision"}, fp32.seed)


@pytest.mark.slow
def test_compile_runs_on_cpu(tmp_path):
    r = harness_cli("run", write_suite(tmp_path, DDP), "--results", tmp_path, "--no-report", "budget.max_steps=3",
                    "base.compile=true")
    assert r.returncode == 0, r.stderr[-2000:]
    record = _record(tmp_path / "ddp")
    assert record.status == COMPLETED, record.reason
    assert record.environment["compiled"] is True


def test_fp16_without_a_gpu_is_bad_input(tmp_path):
    r = harness_cli("run", write_suite(tmp_path, DDP), "--results", tmp_path, "base.precision=fp16",
                    env={"CUDA_VISIBLE_DEVICES": ""})
    assert r.returncode == 2 and "precision: fp16 needs a GPU" in r.stderr, r.stderr
    assert not (tmp_path / "ddp").exists()  # nothing written
