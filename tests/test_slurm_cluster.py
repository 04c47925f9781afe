"""The local SLURM cluster (slurm/local-cluster.sh) runs real array jobs and real requeues."""
from __future__ import annotations

import hashlib
import os
import subprocess
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


def _ours(conf: str) -> list[str]:
    """Processes started with this cluster's config: its daemons by their command line, job steps by their
    environment (a slurmstepd outlives slurmd unless stop ends it)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
            environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if conf in cmdline or f"SLURM_CONF={conf}".encode() in environ:
            found.append(f"{pid} {cmdline}")
    return found


def test_two_nodes_each_in_its_own_namespace_and_stop_removes_all_it_made(tmp_path):
    """start --nodes 2: srun -N2 runs a task on each node, with its own host name and address, and node1
    resolves to the same address on both. stop removes the daemons, the steps of a job still running,
    the namespaces and the bridge."""
    from slurm_cluster import _cluster

    cluster = _cluster(nodes=2)
    env = next(cluster)
    cid = hashlib.md5(env["HARNESS_SLURM_DIR"].encode()).hexdigest()[:4]
    namespaces = [f"/run/netns/hs{cid}n1", f"/run/netns/hs{cid}n2"]
    try:
        assert all(os.path.exists(p) for p in namespaces)
        out = slurm_cmd(env, "srun", "-N2", f"--chdir={tmp_path}", "bash", "-c",
                        'echo "$SLURM_NODEID $(hostname) $(hostname -I) $(getent hosts node1 | cut -d" " -f1)"')
        rows = sorted(line.split() for line in out.splitlines())
        assert [r[:2] for r in rows] == [["0", "node1"], ["1", "node2"]], out
        assert rows[0][2] != rows[1][2] and rows[0][3] == rows[1][3] == rows[0][2], out
        sleeper = sbatch(env, "-N2", f"--chdir={tmp_path}", f"--output={tmp_path}/s.out", "--wrap", "srun sleep 300")
        wait_until(lambda: job_fields(env, sleeper)[0]["JobState"] == "RUNNING", timeout=20, what="the sleeper")
        wait_until(lambda: len(_ours(env["SLURM_CONF"])) > 4, timeout=10, what="the sleeper's steps")
    finally:
        cluster.close()  # the fixture's teardown: local-cluster.sh stop, the state folder removed
    assert not _ours(env["SLURM_CONF"])
    assert not any(os.path.exists(p) for p in namespaces)
    assert subprocess.run(["ip", "link", "show", f"hs{cid}br"], capture_output=True).returncode != 0


def test_stop_ends_the_steps_of_a_job_still_running_on_one_node(tmp_path):
    """A running job's slurmstepd outlives slurmd; stop ends those started with this cluster's config."""
    from slurm_cluster import _cluster

    cluster = _cluster()
    env = next(cluster)
    try:
        sleeper = sbatch(env, f"--chdir={tmp_path}", f"--output={tmp_path}/s.out", "--wrap", "srun sleep 300")
        wait_until(lambda: job_fields(env, sleeper)[0]["JobState"] == "RUNNING", timeout=20, what="the sleeper")
        wait_until(lambda: any("slurmstepd" in p for p in _ours(env["SLURM_CONF"])), timeout=10,
                   what="the sleeper's steps")
    finally:
        cluster.close()
    assert not _ours(env["SLURM_CONF"])
