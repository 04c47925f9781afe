"""The local SLURM cluster (slurm/local-cluster.sh) runs real array jobs and real requeues."""
from __future__ import annotations

import time

from slurm_cluster import job_active, job_fields, sbatch, slurm_cmd, slurm_cluster, wait_until  # noqa: F401


def test_array_of_8_tasks_all_write_their_file(slurm_cluster, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    t0 = time.monotonic()
    wrap = f'echo "task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_JOB_ID" > {out}/task_$SLURM_ARRAY_TASK_ID'
    jobid = sbatch(slurm_cluster, "--array=0-7", f"--chdir={tmp_path}", f"--output={tmp_path}/slurm-%A_%a.out",
                   "--wrap", wrap)
    wait_until(lambda: not job_active(slurm_cluster, jobid), timeout=30, what=f"array job {jobid} to finish")
    elapsed = time.monotonic() - t0
    print(f"\narray of 8: submit to all done in {elapsed:.2f}s")

    assert sorted(p.name for p in out.iterdir()) == [f"task_{i}" for i in range(8)]
    for i in range(8):
        assert (out / f"task_{i}").read_text() == f"task {i} of {jobid}\n"
    records = job_fields(slurm_cluster, jobid)
    assert len(records) == 8
    assert {(r["JobState"], r["ExitCode"]) for r in records} == {("COMPLETED", "0:0")}


JOB = """#!/bin/bash
echo "${{SLURM_RESTART_COUNT:-0}}" >> {runs}
if [ "${{SLURM_RESTART_COUNT:-0}}" -ge 1 ]; then exit 0; fi
sleep 120
"""


def test_requeued_job_runs_again_and_finishes(slurm_cluster, tmp_path):
    runs = tmp_path / "runs"
    script = tmp_path / "job.sh"
    script.write_text(JOB.format(runs=runs))

    def lines() -> list[str]:
        return runs.read_text().split() if runs.exists() else []

    jobid = sbatch(slurm_cluster, "--requeue", f"--chdir={tmp_path}", f"--output={tmp_path}/slurm-%j.out", str(script))
    wait_until(lambda: lines() == ["0"], timeout=15, what=f"job {jobid} to start")
    assert job_fields(slurm_cluster, jobid)[0]["JobState"] == "RUNNING"

    t0 = time.monotonic()
    slurm_cmd(slurm_cluster, "scontrol", "requeue", jobid)
    wait_until(lambda: len(lines()) >= 2, timeout=30, what=f"requeued job {jobid} to run again")
    print(f"\nrequeue to rerun in {time.monotonic() - t0:.2f}s")
    wait_until(lambda: not job_active(slurm_cluster, jobid), timeout=15, what=f"job {jobid} to finish")

    assert lines() == ["0", "1"]
    record = job_fields(slurm_cluster, jobid)[0]
    assert record["JobState"] == "COMPLETED", record
    assert record["ExitCode"] == "0:0", record
    assert record["Restarts"] == "1", record
