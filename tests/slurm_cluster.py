"""A real single-node SLURM cluster for tests (helper module, not a test file).

Use the fixture from a conftest or a test module:

    from slurm_cluster import slurm_cluster  # noqa: F401

`slurm_cluster` (session scope) runs `slurm/local-cluster.sh start` in a fresh, short temporary state
directory on free ports, yields the environment variables a subprocess needs to reach that cluster
(SLURM_CONF, HARNESS_SLURM_DIR), and runs `stop` at teardown. When the cluster cannot start (not root,
no apt, ...) the tests using it are skipped, or fail when CI=1/true is set.

`make_slurm_cluster_fixture(name=..., scope=..., nodes=...)` makes the same fixture under another name or
scope, or with several nodes (`start --nodes N`: each slurmd in a network namespace of its own).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "slurm" / "local-cluster.sh"
START_TIMEOUT = 900  # the first start may apt-get install slurm-wlm and munge


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _cluster(nodes: int = 1) -> Iterator[dict[str, str]]:
    # a short path: the munge socket inside must fit a unix socket path (~108 bytes)
    state = tempfile.mkdtemp(prefix="hs-", dir="/tmp")
    ctld_port, slurmd_port = _free_ports(2)
    env = {
        "HARNESS_SLURM_DIR": state,
        "HARNESS_SLURM_CTLD_PORT": str(ctld_port),
        "HARNESS_SLURM_SLURMD_PORT": str(slurmd_port),
    }
    full_env = {**os.environ, **env}
    t0 = time.monotonic()
    try:
        proc = subprocess.run(["bash", str(SCRIPT), "start", "--nodes", str(nodes)], env=full_env,
                              capture_output=True, text=True, timeout=START_TIMEOUT)
        ok, output = proc.returncode == 0, proc.stdout + proc.stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        ok, output = False, f"{type(exc).__name__}: {exc}"
    if not ok:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=full_env, capture_output=True, timeout=60)
        shutil.rmtree(state, ignore_errors=True)
        message = f"local SLURM cluster did not start ({SCRIPT} start):\n{output}"
        if _in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message.splitlines()[0] + " " + (output.strip().splitlines() or [""])[-1])
    print(f"\nlocal SLURM cluster ready in {time.monotonic() - t0:.1f}s at {state}")
    env["SLURM_CONF"] = str(Path(state) / "slurm.conf")
    try:
        yield env
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=full_env, capture_output=True, timeout=120)
        shutil.rmtree(state, ignore_errors=True)


def make_slurm_cluster_fixture(name: str = "slurm_cluster", scope: str = "session", nodes: int = 1):
    """A pytest fixture (named `name`) that starts a private local SLURM cluster of ``nodes`` nodes and
    yields its env vars."""
    def fixture() -> Iterator[dict[str, str]]:
        yield from _cluster(nodes)
    return pytest.fixture(scope=scope, name=name)(fixture)


slurm_cluster = make_slurm_cluster_fixture()


# ---- small helpers for tests that talk to the cluster -------------------------------------------------

def slurm_cmd(env: dict[str, str], *args: str, timeout: float = 30) -> str:
    """Run a SLURM client command against the cluster; its stdout, or an AssertionError with its output."""
    proc = subprocess.run([str(a) for a in args], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def sbatch(env: dict[str, str], *args: str) -> str:
    """Submit with `sbatch --parsable ARGS`; the job id."""
    return slurm_cmd(env, "sbatch", "--parsable", *args).strip().split(";")[0]


def job_active(env: dict[str, str], jobid: str) -> bool:
    """Whether squeue still lists the job (or any task of an array) as pending/running/completing."""
    proc = subprocess.run(["squeue", "-h", "-j", jobid, "-o", "%i %T"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        if "Invalid job id" in proc.stderr:  # already purged
            return False
        raise AssertionError(f"squeue failed: {proc.stderr}")
    return bool(proc.stdout.strip())


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition") -> float:
    """Poll until predicate() is true; seconds waited. AssertionError after timeout."""
    t0 = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def job_fields(env: dict[str, str], jobid: str) -> list[dict[str, str]]:
    """`scontrol show job -o` as one dict of Key=Value per job record (array tasks each get one)."""
    out = slurm_cmd(env, "scontrol", "show", "job", "-o", jobid)
    records = []
    for line in out.splitlines():
        rec = {}
        for word in line.split():
            key, sep, value = word.partition("=")
            if sep:
                rec[key] = value
        records.append(rec)
    return records
