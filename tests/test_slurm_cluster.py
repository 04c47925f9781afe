"""The local SLURM cluster (slurm/local-cluster.sh) runs real array jobs and real requeues; it refuses bad
arguments and ports in use, and neither a failed start nor stop leaves a daemon, namespace or link behind."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from slurm_cluster import job_active, job_fields, sbatch, slurm_cmd, slurm_cluster, wait_until  # noqa: F401

pytestmark = pytest.mark.slow  # a real SLURM cluster in namespaces


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


# ---- arguments, ports in use, and what a failed start leaves behind --------------------------------------

def _run_script(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    import slurm_cluster as helper  # its SCRIPT at call time (a check of these tests against another script swaps it)

    return subprocess.run(["bash", str(helper.SCRIPT), *args], env={**os.environ, **env}, check=False,
                          capture_output=True, text=True, timeout=timeout)


def _new_state(state: str | None = None) -> tuple[str, dict[str, str]]:
    """A fresh short state dir (the munge socket path must fit), or ``state``, and free ports: (dir, env)."""
    from slurm_cluster import _free_ports

    state = state or tempfile.mkdtemp(prefix="hs-", dir="/tmp")
    ctld_port, slurmd_port = _free_ports(2)
    return state, {"HARNESS_SLURM_DIR": state, "HARNESS_SLURM_CTLD_PORT": str(ctld_port),
                   "HARNESS_SLURM_SLURMD_PORT": str(slurmd_port)}


def _cid(state: str) -> str:
    return hashlib.md5(state.encode()).hexdigest()[:4]


def _procs_of(state: str) -> list[str]:
    """This cluster's processes: munged and the slurm daemons by their command line (all name a file under the
    state dir), job steps by their environment."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"{state}/" in cmdline or f"SLURM_CONF={state}/slurm.conf".encode() in environ:
            found.append(f"{pid} {cmdline}")
    return found


def _netns_of(state: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(f"hs{_cid(state)}")]


def _links_of(state: str) -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], check=False, capture_output=True, text=True).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]
    return [n for n in names if n.startswith(f"hs{_cid(state)}")]


def _leftovers(state: str) -> dict[str, list[str]]:
    return {k: v for k, v in {"processes": _procs_of(state), "namespaces": _netns_of(state),
                              "links": _links_of(state)}.items() if v}


def _scrub(state: str, env: dict[str, str]) -> None:
    """Teardown that does not trust the script under test: its stop, then SIGKILL to whatever of this cluster
    still runs, and its namespaces and links deleted; the state dir removed."""
    try:
        _run_script(env, "stop", timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        pass
    for _ in range(3):
        if not _procs_of(state) and not _netns_of(state):
            break
        for proc in _procs_of(state):
            try:
                os.kill(int(proc.split()[0]), signal.SIGKILL)
            except OSError:
                pass
        for ns in _netns_of(state):
            pids = subprocess.run(["ip", "netns", "pids", ns], check=False, capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
        time.sleep(0.2)
    for link in _links_of(state):
        subprocess.run(["ip", "link", "del", link], check=False, capture_output=True)
    for ns in _netns_of(state):
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
    shutil.rmtree(state, ignore_errors=True)


BAD_ARGUMENTS = [
    (["start", "2"], "'2'"),
    (["start", "--nodes", "2", "--nodes", "3"], "more than once"),
    (["start", "--nodes=2", "--nodes=2"], "more than once"),
    (["start", "--nodes"], "--nodes"),
    (["start", "--nodes="], "--nodes"),
    (["start", "--nodes", "0"], "'0'"),
    (["start", "--nodes=two"], "'two'"),
    (["start", "--node", "2"], "'--node'"),
    (["stop", "now"], "'now'"),
    (["status", "--nodes", "2"], "'--nodes 2'"),
    (["env", "x"], "'x'"),
]


@pytest.mark.parametrize("args,named", BAD_ARGUMENTS, ids=[" ".join(a) for a, _ in BAD_ARGUMENTS])
def test_bad_arguments_are_refused_in_one_line_before_anything_starts(args, named):
    """Only `start [--nodes N|--nodes=N]`, `stop`, `status`, `env`: anything else is one line of error, a
    non-zero exit, and no state dir, no daemon (a bare number or a second --nodes started one node)."""
    parent = tempfile.mkdtemp(prefix="hs-", dir="/tmp")
    os.chmod(parent, 0o755)  # munged wants every directory above its socket searchable by all
    state, env = _new_state(f"{parent}/c")  # not there yet: a refused command must not make it
    try:
        t0 = time.monotonic()
        proc = _run_script(env, *args)
        elapsed = time.monotonic() - t0
        assert proc.returncode != 0, proc.stdout + proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "error" in lines[0] and named in lines[0], proc.stderr
        assert proc.stdout == ""
        assert not os.path.exists(state) and not _procs_of(state)
        assert elapsed < 2, elapsed
    finally:
        _scrub(state, env)
        shutil.rmtree(parent, ignore_errors=True)


def test_nodes_equals_form_starts_that_many_nodes():
    """`start --nodes=2` is `start --nodes 2` (it started one node)."""
    state, env = _new_state()
    try:
        proc = _run_script(env, "start", "--nodes=2")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        env["SLURM_CONF"] = f"{state}/slurm.conf"
        assert slurm_cmd(env, "sinfo", "-h", "-N", "-o", "%N %t").split() == ["node1", "idle", "node2", "idle"]
        assert len(_netns_of(state)) == 2
    finally:
        _scrub(state, env)


class _Listener:
    """Something else on a port, as another cluster's slurmctld would be: a socket listening on every address."""

    def __init__(self, port: int):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", port))
        self.sock.listen()

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("nodes,knob", [(2, "HARNESS_SLURM_CTLD_PORT"), (1, "HARNESS_SLURM_SLURMD_PORT")],
                         ids=["two-nodes-controller-port", "one-node-slurmd-port"])
def test_start_on_a_port_in_use_fails_at_once_naming_it_and_leaves_nothing(nodes, knob):
    """A port held by someone else (another cluster on the defaults): start says which port, which knob moves
    it and who holds it, within seconds, and nothing of this cluster is left: no daemon, namespace or link.
    (It started everything, timed out with 'node not idle', and left the slurmds and the network.)
    Several nodes' slurmds listen inside namespaces of their own, so only one node's slurmd port can collide."""
    state, env = _new_state()
    env["HARNESS_SLURM_TIMEOUT"] = "10"  # bounds a start that does not check its ports
    holder = _Listener(int(env[knob]))
    try:
        t0 = time.monotonic()
        proc = _run_script(env, "start", "--nodes", str(nodes))
        elapsed = time.monotonic() - t0
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0, output
        last = proc.stderr.strip().splitlines()[-1]
        assert f"port {env[knob]}" in last and knob in last, output
        if shutil.which("ss"):
            assert f"pid {os.getpid()}" in last, output
        assert elapsed < 5, (elapsed, output)
        assert not _leftovers(state), (_leftovers(state), output)
    finally:
        holder.close()
        _scrub(state, env)


def test_a_start_that_fails_after_starting_daemons_stops_them_and_removes_its_network():
    """Any failure once daemons run (here: no time at all for the nodes to become idle) stops every daemon this
    start made and removes its namespaces, veths and bridge, then says why; `stop` afterwards has nothing to do."""
    state, env = _new_state()
    env["HARNESS_SLURM_TIMEOUT"] = "0"
    try:
        t0 = time.monotonic()
        proc = _run_script(env, "start", "--nodes", "2")
        elapsed = time.monotonic() - t0
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0, output
        assert "node not idle" in proc.stderr.strip().splitlines()[-1], output
        assert not _leftovers(state), (_leftovers(state), output)
        print(f"\nfailed start and its cleanup: {elapsed:.1f}s")
        stop = _run_script(env, "stop")
        assert stop.returncode == 0 and "stopped" not in stop.stderr, stop.stderr
    finally:
        _scrub(state, env)


def test_stop_removes_all_of_a_two_node_cluster_whatever_the_nodes_file_says():
    """stop does not trust run/nodes nor the pid files: it finds the daemons by their conf and the namespaces,
    veths and bridge by this cluster's name prefix (a start killed half-way leaves both out of step)."""
    state, env = _new_state()
    try:
        proc = _run_script(env, "start", "--nodes", "2")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert len(_netns_of(state)) == 2
        with open(f"{state}/run/nodes", "w") as f:
            f.write("1\n")
        os.remove(f"{state}/run/slurmd-node2.pid")
        t0 = time.monotonic()
        stop = _run_script(env, "stop")
        print(f"\nstop: {time.monotonic() - t0:.1f}s")
        assert stop.returncode == 0, stop.stderr
        assert not _leftovers(state), (_leftovers(state), stop.stderr)
    finally:
        _scrub(state, env)
