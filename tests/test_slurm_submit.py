"""`harness submit` on the real local SLURM cluster (slurm/local-cluster.sh): a small suite becomes an
array job whose tasks write every record; `harness status` sees the tasks; a task requeued while it
trains (preemption: `scontrol requeue`) or warned before its time limit (USR1) resumes its trial
from the checkpoint and finishes with exactly one record."""
from __future__ import annotations

import re

import pytest
from conftest import SLOW, harness_cli, write_suite
from slurm_cluster import job_active, job_fields, slurm_cmd, slurm_cluster, wait_until  # noqa: F401

from harness.engine.checkpoint import checkpoint_path
from harness.spec import COMPLETED
from harness.store import scan

SMALL = """
name: array
seeds: 2
budget: {epochs: 2}
base:
  dataset: {name: digits, val_size: 200, train_subset: 300}
  model: {name: mlp, depth: 1, width: 16}
  batch_size: 50
grid:
  optimizer: [{name: sgd, lr: 0.1}, {name: nesterov, lr: 0.05, momentum: 0.9}, {name: adam, lr: 0.003}]
slurm: {chunk: 2, max_parallel: 1}
"""



def _submit(env, tmp_path, text):
    r = harness_cli("submit", write_suite(tmp_path, text), "--results", tmp_path / "res", env=env)
    assert r.returncode == 0, r.stderr
    job = re.search(r"job (\d+)", r.stdout)
    assert job, r.stdout + r.stderr
    return job.group(1), r.stdout


def test_an_array_job_writes_every_record_and_resubmitting_submits_nothing(slurm_cluster, tmp_path):
    job, said = _submit(slurm_cluster, tmp_path, SMALL)
    assert "3 array tasks" in said  # 6 trials, 2 per task
    results = tmp_path / "res" / "array"
    status = harness_cli("status", results, env=slurm_cluster)
    # %1: one task at a time, so right after submission the others wait
    assert "SLURM array tasks:" in status.stdout and "pending" in status.stdout, status.stdout
    wait_until(lambda: not job_active(slurm_cluster, job), timeout=180, interval=0.5, what=f"array {job}")
    tasks = job_fields(slurm_cluster, job)
    assert len(tasks) == 3 and {(t["JobState"], t["ExitCode"]) for t in tasks} == {("COMPLETED", "0:0")}, tasks
    found = scan(results)
    assert len(found.records) == 6 and {r.status for r in found.records.values()} == {COMPLETED}
    for r in found.records.values():  # records say where they ran
        assert r.environment["slurm"]["job_id"] and r.environment["slurm"]["array_task_id"] in {"0", "1", "2"}
        assert r.environment["torch_threads"] == 1  # cpus_per_task, not the node's cores
    again = harness_cli("submit", tmp_path / "suite.yaml", "--results", tmp_path / "res", env=slurm_cluster)
    assert again.returncode == 0 and "nothing to submit" in again.stdout
    done = harness_cli("status", results, env=slurm_cluster)
    assert re.search(r"completed\s+6\n", done.stdout) and "none pending or running" in done.stdout, done.stdout


@pytest.mark.parametrize("how", ["requeue", "usr1"])
def test_a_requeued_or_warned_task_resumes_its_trial_to_one_record(slurm_cluster, tmp_path, how):
    job, _ = _submit(slurm_cluster, tmp_path, SLOW)
    results = tmp_path / "res" / "slow"
    trial_id = _only_trial(results)
    wait_until(lambda: checkpoint_path(results, trial_id).exists(), timeout=120, what="the first epoch's checkpoint")
    task = f"{job}_0"
    if how == "requeue":  # preemption: SLURM sends SIGTERM, then requeues the task itself
        slurm_cmd(slurm_cluster, "scontrol", "requeue", task)
    else:  # the warning before the time limit (--signal=B:USR1@T): the worker requeues its own task
        slurm_cmd(slurm_cluster, "scancel", "--batch", "--signal=USR1", task)
    wait_until(lambda: job_fields(slurm_cluster, job)[0].get("Restarts") == "1", timeout=60, what="the requeue")
    wait_until(lambda: not job_active(slurm_cluster, job), timeout=240, interval=0.5, what=f"job {job} to finish")
    info = job_fields(slurm_cluster, job)[0]
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", info
    found = scan(results)
    assert list(found.records) == [trial_id] and not found.corrupt
    record = found.records[trial_id]
    assert record.status == COMPLETED and record.diagnostics["resumed_at_step"], record.reason
    assert [h["epoch"] for h in record.history] == [1, 2, 3, 4]
    assert not checkpoint_path(results, trial_id).exists()
    log = next((results / "slurm" / "logs").glob("*.out")).read_text()
    assert "interrupted" in log and "completed" in log, log


def _only_trial(results):
    import json

    plan = next((results / "plans").glob("plan-*.json"))
    trials = json.loads(plan.read_text())["trials"]
    assert len(trials) == 1
    return trials[0]["trial_id"]
