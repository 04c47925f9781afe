"""Multi-node trials on a real two-node SLURM cluster on this machine (``slurm/local-cluster.sh start
--nodes 2``: each slurmd in a network namespace of its own, node1 and node2 on a private bridge).

A trial with ``resources: {nodes: 2, processes: 1}`` goes through ``harness submit`` and
``slurm/multinode.sbatch``: one array task, ``srun`` over both nodes, ``accelerate launch`` over gloo
with the rendezvous on node1. Its record must equal the same trial as 1 node x 2 processes (the same
world of 2 ranks: the all-reduce of two summands is exact in either layout, so the tolerance of
tests/test_distributed.py is more than enough), name both hosts, and come out whole after each way a
trial is cut: the USR1 warning before the time limit (the stop file every node's process reads),
``scontrol requeue``, and the training process on node2 killed."""
from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import time

import pytest
from conftest import harness_cli, write_suite
from slurm_cluster import job_active, job_fields, make_slurm_cluster_fixture, slurm_cmd, wait_until

from harness.spec import COMPLETED, Record
from harness.store import scan

pytestmark = pytest.mark.slow  # a two-node SLURM cluster in namespaces

two_nodes = make_slurm_cluster_fixture("two_nodes", scope="module", nodes=2)

# several seconds of training on 2 ranks here: long enough to cut it after its first checkpoint
SUITE = """
name: multinode
seeds: [0]
budget: {epochs: 5}
base:
  dataset: {name: digits, val_size: 297}
  model: {name: mlp, depth: 2, width: 256}
  optimizer: {name: momentum, lr: 0.02, momentum: 0.9}
  batch_size: 50
  diagnostics: {layers: false}
  resources: {nodes: 2, processes: 1}
slurm: {time: "00:20:00"}
"""


def _record(results) -> Record:
    records = list(scan(results).records.values())
    assert len(records) == 1, [r.status for r in records]
    return records[0]


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    return write_suite(tmp_path_factory.mktemp("multinode"), SUITE)


@pytest.fixture(scope="module")
def one_node(suite):
    """The same trial as 1 node x 2 processes, run locally (accelerate launch on this machine)."""
    results = suite.parent / "one-node"
    r = harness_cli("run", suite, "base.resources.nodes=1", "base.resources.processes=2", "--results", results,
                    "--no-report")
    assert r.returncode == 0, r.stderr[-3000:]
    record = _record(results / "multinode")
    assert record.status == COMPLETED and record.environment["processes"] == 2
    return record


def _submit(env, suite, results) -> str:
    r = harness_cli("submit", suite, "--results", results, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return re.search(r"job (\d+)", r.stdout).group(1)


def _checkpointed(results) -> bool:
    folder = results / "multinode" / "checkpoints"
    return folder.is_dir() and any(folder.glob("*.pt"))


def _netns(env, node: int) -> str:
    return f"hs{hashlib.md5(env['HARNESS_SLURM_DIR'].encode()).hexdigest()[:4]}n{node}"


def _trainer_on(env, node: int) -> int | None:
    """The pid of a training process in node ``node``'s network namespace whose command names ``plan``."""
    pids = subprocess.run(["ip", "netns", "pids", _netns(env, node)], capture_output=True, text=True).stdout.split()
    for pid in pids:
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "harness.launch.trial" in cmdline and "accelerate" not in cmdline and "/kill/" in cmdline:
            return int(pid)
    return None


def _usr1(env, job, results) -> None:  # what --signal=B:USR1@N sends the batch shell before the time limit
    slurm_cmd(env, "scancel", "--signal=USR1", "--batch", job)


def _requeue(env, job, results) -> None:
    slurm_cmd(env, "scontrol", "requeue", job)


def _kill_on_node2(env, job, results) -> None:
    pid = _trainer_on(env, 2)
    assert pid is not None, "no training process of this trial in node2's namespace"
    os.kill(pid, signal.SIGKILL)


CUTS = {"usr1": _usr1, "requeue": _requeue, "kill": _kill_on_node2}


@pytest.fixture(scope="module")
def cut(two_nodes, suite, one_node):
    """The trial submitted three times at once (three results folders), each cut one way after its first
    checkpoint; the scontrol fields of each job once all have ended."""
    jobs = {name: _submit(two_nodes, suite, suite.parent / name) for name in CUTS}
    todo = dict(CUTS)
    deadline = time.monotonic() + 180
    while todo and time.monotonic() < deadline:
        for name in [n for n in todo if _checkpointed(suite.parent / n)]:
            assert not list((suite.parent / name / "multinode").glob("trials/*.json")), f"{name}: ended too soon"
            todo.pop(name)(two_nodes, jobs[name], suite.parent / name)
        time.sleep(0.1)
    assert not todo, f"no checkpoint in time for {list(todo)}"
    for job in jobs.values():
        wait_until(lambda: not job_active(two_nodes, job), timeout=300, interval=0.5, what=f"job {job}")
    return {name: job_fields(two_nodes, job)[0] for name, job in jobs.items()}


def _whole(results, one_node: Record) -> Record:
    """The trial's one record, completed over both nodes, equal to the uninterrupted 2-rank run."""
    logs = "".join(p.read_text() for p in (results / "multinode" / "slurm" / "logs").glob("*.out"))
    record = _record(results / "multinode")
    assert record.status == COMPLETED, (record.status, record.reason, logs[-3000:])
    assert record.environment["hosts"] == ["node1", "node2"] and record.environment["hostname"] == "node1"
    assert record.environment["slurm"]["nodelist"] == "node[1-2]"
    assert record.diagnostics["resumed_at_step"], "it did not resume from a checkpoint"
    assert len(record.history) == len(one_node.history) == 5
    for a, b in zip(one_node.history, record.history):  # epoch by epoch, the interrupted epoch included
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)
    assert record.final["test_acc"] == pytest.approx(one_node.final["test_acc"], abs=1e-9)
    return record


def test_the_warning_before_the_time_limit_stops_both_nodes_and_the_task_resumes(cut, suite, one_node):
    """USR1 to the batch shell: the stop file reaches the processes on both nodes, which checkpoint and stop
    together (the main process records the trial interrupted); the task requeues itself and resumes."""
    _whole(suite.parent / "usr1", one_node)
    assert cut["usr1"]["Restarts"] == "1" and cut["usr1"]["ExitCode"] == "0:0", cut["usr1"]


def test_a_requeued_two_node_trial_resumes_from_its_checkpoint(cut, suite, one_node):
    _whole(suite.parent / "requeue", one_node)
    assert cut["requeue"]["Restarts"] == "1", cut["requeue"]


def test_a_training_process_killed_on_the_second_node_is_requeued_and_resumes(cut, suite, one_node):
    """srun ends the step when node2's process dies; the template requeues the task (the trial has no
    record), counting the failure next to the trial's lock, and the trial resumes."""
    _whole(suite.parent / "kill", one_node)
    assert cut["kill"]["Restarts"] == "1", cut["kill"]
    failures = list((suite.parent / "kill" / "multinode" / "locks").glob("*.step-failures"))
    assert [len(f.read_text().splitlines()) for f in failures] == [1]
