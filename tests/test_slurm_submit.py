"""`harness submit` on the real local SLURM cluster (slurm/local-cluster.sh): the smoke suite becomes an
array job whose tasks write every record; `harness status` sees the tasks; a task requeued while it
trains (preemption: `scontrol requeue`) or warned before its time limit (USR1) resumes its trial
from the checkpoint and finishes with exactly one record."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import REPO, SLOW, harness_cli, write_suite
from slurm_cluster import job_active, job_fields, slurm_cmd, slurm_cluster, wait_until  # noqa: F401

from harness.engine.checkpoint import checkpoint_path
from harness.spec import COMPLETED
from harness.store import scan

pytestmark = pytest.mark.slow  # jobs on a real SLURM cluster

def _submit(env, tmp_path, text):
    """Submitted as `nice -n 3 harness submit ... --plugin noop.py` from the suite's folder (a relative plugin
    path): the tasks run at nice 3 and find the plugin wherever sbatch starts them."""
    (tmp_path / "noop.py").write_text("MARK = 'a plugin that adds nothing'\n")
    r = subprocess.run(["nice", "-n", "3", sys.executable, "-m", "harness", "submit", write_suite(tmp_path, text),
                        "--results", "res", "--plugin", "noop.py"], cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, **env, "PYTHONPATH": str(REPO)}, timeout=120)
    assert r.returncode == 0, r.stderr
    script = next((tmp_path / "res").glob("*/slurm/*.sbatch")).read_text()
    assert f"--plugin {tmp_path / 'noop.py'}" in script
    job = re.search(r"job (\d+)", r.stdout)
    assert job, r.stdout + r.stderr
    return job.group(1), r.stdout


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
    assert "interrupted" in log and "running at nice 3, as submitted" in log, log
    assert re.search(rf"harness worker: {trial_id} completed test_acc=0\.\d+ in \d+\.\d s", log), log


def _only_trial(results):
    import json

    plan = next((results / "plans").glob("plan-*.json"))
    trials = json.loads(plan.read_text())["trials"]
    assert len(trials) == 1
    return trials[0]["trial_id"]


def test_the_smoke_suite_submitted_as_the_readme_shows_writes_every_record_and_resubmitting_submits_nothing(
        slurm_cluster, tmp_path):
    """`harness submit suites/smoke.yaml` (issue 27: its BatchNorm half crashed the chunk estimate before
    anything was submitted): the array's tasks write a completed record for each of its 16 trials, each
    saying where it ran; `harness status` sees the tasks; submitting again submits nothing."""
    suite = REPO / "suites" / "smoke.yaml"
    r = harness_cli("submit", suite, "--results", tmp_path / "res", env=slurm_cluster)
    assert r.returncode == 0, r.stderr
    assert re.search(r"\d+ trials a task: ~\S+ s a trial from their budgets", r.stdout), r.stdout
    job = re.search(r"job (\d+)", r.stdout).group(1)
    results = tmp_path / "res" / "smoke"
    status = harness_cli("status", results, env=slurm_cluster)
    assert "SLURM array tasks:" in status.stdout, status.stdout
    wait_until(lambda: not job_active(slurm_cluster, job), timeout=300, interval=1, what=f"array {job}")
    tasks = job_fields(slurm_cluster, job)
    assert {(t["JobState"], t["ExitCode"]) for t in tasks} == {("COMPLETED", "0:0")}, tasks
    found = scan(results)
    assert len(found.records) == 16 and {r.status for r in found.records.values()} == {COMPLETED}
    assert {r.config["norm"]["name"] for r in found.records.values()} == {"none", "batchnorm"}
    for record in found.records.values():  # records say where they ran
        assert record.environment["slurm"]["job_id"] and record.environment["slurm"]["array_task_id"]
        assert record.environment["torch_threads"] == 1  # execution.threads (default 1), not the node's cores
    again = harness_cli("submit", suite, "--results", tmp_path / "res", env=slurm_cluster)
    assert again.returncode == 0 and "nothing to submit" in again.stdout
    done = harness_cli("status", results, env=slurm_cluster)
    assert re.search(r"completed\s+16\n", done.stdout) and "none pending or running" in done.stdout, done.stdout
