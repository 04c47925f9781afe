"""Intra-op threads per trial as an execution setting (issue 30, item 7): a trial's record is the same whatever
``--workers`` is, says how many threads computed it, and a trial resumed under another thread count than its
checkpoint's says so, in its record and on the terminal."""
import io

import pytest
import torch
from conftest import harness_cli, write_suite

from harness.arguments import execution_flags, parser
from harness.engine import run_trial
from harness.engine.loop import Checkpointing
from harness.errors import ConfigError
from harness.fused.pack import run_pack
from harness.launch import run_local
from harness.launch.slurm import work
from harness.layout import checkpoint_path
from harness.spec import COMPLETED, INTERRUPTED, THREADS_CHANGED
from harness.store import scan
from harness.store.records import write_plan_file
from harness.suite import load_suite
from harness.sweep import Pool, run_suite

# 512 wide: wide enough that torch splits its matmuls and sums between 2 threads, so that 1 and 2 threads give
# other last bits of the training loss (measured here: 0.282948442867824 against 0.282948408808027)
WIDE = """
name: wide
seeds: 2
budget: {epochs: 2}
base:
  dataset: {name: digits, val_size: 200, train_subset: 800}
  model: {name: mlp, depth: 2, width: 512}
  batch_size: 128
  optimizer: {name: adam, lr: 0.003}
"""
SMALL = WIDE.replace("width: 512", "width: 32").replace("seeds: 2", "seeds: 1")


def _numbers(record):
    history = [{k: v for k, v in h.items() if not k.endswith("_time")} for h in record.history]
    return history, record.steps, record.final, record.best


def test_a_trial_gives_the_same_record_with_one_worker_or_two_and_the_record_names_its_threads(tmp_path):
    # Before: one worker ran its trials in the runner's process with torch's threads (the cores), two workers with
    # cores // 2 each, so that on this 2-core machine one trial id had two sets of numbers.
    suite = write_suite(tmp_path, WIDE)
    records = {}
    for workers in ("1", "2"):
        r = harness_cli("run", suite, "--results", tmp_path / workers, "--workers", workers, "--no-report")
        assert r.returncode == 0, r.stderr
        records[workers] = scan(tmp_path / workers / "wide").records
    assert len(records["1"]) == 2 and records["1"].keys() == records["2"].keys()
    for trial_id, one in records["1"].items():
        two = records["2"][trial_id]
        assert one.status == two.status == COMPLETED
        assert one.environment["torch_threads"] == two.environment["torch_threads"] == 1
        assert _numbers(one) == _numbers(two)


def test_the_thread_count_set_is_the_one_each_record_names_and_the_caller_keeps_its_own(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # not the count asked for, on any machine
    try:
        specs = list(load_suite(write_suite(tmp_path, SMALL)).trials)
        run_local(specs, tmp_path / "res", threads=3, stream=io.StringIO())
        assert [r.environment["torch_threads"] for r in scan(tmp_path / "res").records.values()] == [3]
        record = run_pack(list(load_suite(write_suite(tmp_path, SMALL), ["seeds=2"]).trials), threads=3)[0]
        assert record.environment["fused"]["size"] == 2 and record.environment["torch_threads"] == 3
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_threads_are_checked_where_they_are_given_and_reach_the_array_tasks(tmp_path):
    args = parser().parse_args(["run", "s.yaml", "--threads", "2", "--fuse", "auto"])
    assert execution_flags(args) == ["execution.fuse=auto", "execution.threads=2"]
    assert execution_flags(parser().parse_args(["run", "s.yaml"])) == []
    for bad in ("0", "two", ""):
        with pytest.raises(SystemExit):
            parser().parse_args(["run", "s.yaml", "--threads", bad])
    with pytest.raises(ConfigError, match="execution.threads"):
        load_suite(write_suite(tmp_path, SMALL + "execution: {threads: 0}\n"))
    assert load_suite(write_suite(tmp_path, SMALL)).execution["threads"] == 1
    suite = load_suite(write_suite(tmp_path, SMALL), ["execution.threads=2"])  # as `submit --threads 2` writes it
    plan = write_plan_file(tmp_path / "res", suite.to_dict(), suite.trials)
    log = io.StringIO()
    assert work(plan, 0, 1, log) == 0
    assert [r.environment["torch_threads"] for r in scan(tmp_path / "res").records.values()] == [2]


def _interrupt(spec, path, threads):
    asked = {"n": 0}

    def stop():  # asked after every step: after the 3rd of the first epoch's 7
        asked["n"] += 1
        return asked["n"] == 3

    part = run_trial(spec, checkpointing=Checkpointing(path, stop), threads=threads)
    assert part.status == INTERRUPTED and path.exists()


def test_a_trial_resumed_under_another_thread_count_says_so_and_one_under_the_same_does_not(tmp_path):
    spec = load_suite(write_suite(tmp_path, SMALL)).trials[0]
    results = tmp_path / "res"
    _interrupt(spec, checkpoint_path(results, spec.run_id), threads=1)
    same = io.StringIO()
    run_local([spec], results, threads=1, stream=same)
    record = scan(results).records[spec.trial_id]
    assert record.status == COMPLETED and record.diagnostics["resumed_at_step"] == [3]
    assert not any(THREADS_CHANGED in w for w in record.diagnostics.get("warnings", []))
    assert THREADS_CHANGED not in same.getvalue()

    other = tmp_path / "other"
    _interrupt(spec, checkpoint_path(other, spec.run_id), threads=1)
    log = io.StringIO()
    run_local([spec], other, threads=2, stream=log)
    record = scan(other).records[spec.trial_id]
    assert record.status == COMPLETED and record.environment["torch_threads"] == 2
    notes = [w for w in record.diagnostics["warnings"] if w.startswith(THREADS_CHANGED)]
    assert notes == [f"{THREADS_CHANGED}: its checkpoint was written under 1 intra-op threads, the steps after "
                     "step 3 ran under 2 (execution.threads, --threads)"]
    assert f"{spec.trial_id}  {notes[0]}" in log.getvalue().splitlines()


def test_a_pack_resumed_under_another_thread_count_says_so_in_each_record(tmp_path):
    specs = list(load_suite(write_suite(tmp_path, SMALL), ["seeds=2"]).trials)
    path = tmp_path / "pack.pt"
    asked = {"n": 0}

    def stop():
        asked["n"] += 1
        return asked["n"] == 3

    assert {r.status for r in run_pack(specs, path, stop, threads=1)} == {INTERRUPTED}
    resumed = run_pack(specs, path, threads=2)
    for r in resumed:
        assert r.status == COMPLETED and r.environment["torch_threads"] == 2
        assert [w for w in r.diagnostics["warnings"] if w.startswith(THREADS_CHANGED)], r.diagnostics


def test_a_rerun_that_keeps_records_of_another_thread_count_says_so(tmp_path):
    results = tmp_path / "res"
    run_suite(load_suite(write_suite(tmp_path, SMALL), ["execution.threads=2"]), results, Pool())
    said = []
    run_suite(load_suite(write_suite(tmp_path, SMALL), ["seeds=2"]), results, Pool(), said.append)
    assert ("1 of them were computed under another thread count (1 under 2) than this run's 1 a trial "
            "(environment.torch_threads); they are kept as they are") in said, said
    said.clear()  # 2 kept: the one of 2 threads is named, the one of 1 is not
    run_suite(load_suite(write_suite(tmp_path, SMALL), ["seeds=3"]), results, Pool(), said.append)
    assert any(line.startswith("1 of them were computed under another thread count (1 under 2)") for line in said)
