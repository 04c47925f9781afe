"""Sweep throughput: trials/hour of a fixed small suite with 1 vs 2 local workers, and the overhead of
running the same trials as a SLURM array on the local cluster (slurm/local-cluster.sh).

1. ``harness run --workers 1`` and ``--workers 2`` on the same 16 trials (digits MLPs, about 5 s
   each), in fresh results folders, alternated ``--repeats`` times; the figure is the ratio of
   trials/hour (target >= 1.7 on 2 cores).
2. ``harness submit`` of the same 16 trials to a private local SLURM cluster declaring as many
   CPUs as ``--workers`` (so it runs as many tasks at once as the local pool has workers), timed
   from the command's start to the last record on disk. The overhead is that time minus the
   2-worker local run's (the trials' own run time on this machine); target <= 20 s. Measured for
   one trial per task (``chunk 1``: 16 processes that each start Python and torch), 4 per task, and
   with no chunk set (``slurm.chunk: auto``, the default: sized by harness/launch/chunking.py).

    python benchmarks/sweep_throughput.py            # both parts, ~10 minutes here
    python benchmarks/sweep_throughput.py --no-slurm
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUITE = """
name: throughput
seeds: 4
budget: {epochs: 100}
base:
  dataset: {name: digits, val_size: 300}
  model: {name: mlp, depth: 2, width: 64}  # small: faster on 1 thread than on 2, as small trials are
  batch_size: 16
grid:
  optimizer: [{name: sgd, lr: 0.05}, {name: nesterov, lr: 0.02, momentum: 0.9}, {name: adam, lr: 0.001},
              {name: rmsprop, lr: 0.001}]
"""
TRIALS = 16


def _harness(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise SystemExit(f"harness {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


def _records(results: Path) -> int:
    return len(list((results / "trials").glob("*.json"))) if (results / "trials").is_dir() else 0


def local_run(tmp: Path, suite: Path, workers: int, tag: str) -> float:
    results = tmp / f"local-{tag}-w{workers}"
    start = time.perf_counter()
    _harness("run", str(suite), "--results", str(results), "--workers", str(workers), "--no-report")
    took = time.perf_counter() - start
    assert _records(results / "throughput") == TRIALS
    return took


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def slurm_run(tmp: Path, suite: Path, cpus: int, chunk: int | None) -> tuple[float, str]:
    """Seconds from ``harness submit`` to the last record, and what submit said of the chunk."""
    state = tempfile.mkdtemp(prefix="hs-", dir="/tmp")  # short: the munge socket path has a length limit
    ctld, slurmd = _free_ports(2)
    env = {"HARNESS_SLURM_DIR": state, "HARNESS_SLURM_CTLD_PORT": str(ctld), "HARNESS_SLURM_SLURMD_PORT": str(slurmd),
           "HARNESS_SLURM_CPUS": str(cpus), "SLURM_CONF": f"{state}/slurm.conf"}
    script = str(REPO / "slurm" / "local-cluster.sh")
    subprocess.run(["bash", script, "start"], env={**os.environ, **env}, check=True, capture_output=True)
    try:
        results = tmp / f"slurm-chunk{chunk or 'auto'}"
        start = time.perf_counter()
        said = _harness("submit", str(suite), "--results", str(results), *([f"slurm.chunk={chunk}"] if chunk else []),
                        env=env).stdout
        while _records(results / "throughput") < TRIALS:
            if time.perf_counter() - start > 900:
                raise SystemExit(f"SLURM run did not finish in 900 s; logs under {results}/throughput/slurm/logs")
            time.sleep(0.1)
        return time.perf_counter() - start, said.split("(", 1)[1].split(")")[0] if "(" in said else said
    finally:
        subprocess.run(["bash", script, "stop"], env={**os.environ, **env}, capture_output=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2, help="alternated 1- and 2-worker runs (median)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-slurm", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        suite = tmp / "throughput.yaml"
        suite.write_text(SUITE)
        one, many = [], []
        for r in range(args.repeats):
            one.append(local_run(tmp, suite, 1, str(r)))
            many.append(local_run(tmp, suite, args.workers, str(r)))
        t1, tn = statistics.median(one), statistics.median(many)
        print(f"{TRIALS} trials, {os.cpu_count()} cores, median of {args.repeats}")
        print(f"1 worker:  {t1:6.1f} s  {3600 * TRIALS / t1:7.0f} trials/hour   (runs: {', '.join(f'{t:.1f}' for t in one)})")
        print(f"{args.workers} workers: {tn:6.1f} s  {3600 * TRIALS / tn:7.0f} trials/hour   "
              f"(runs: {', '.join(f'{t:.1f}' for t in many)})")
        print(f"speed-up: {t1 / tn:.2f}x  (target >= 1.7x)")
        if args.no_slurm:
            return
        overheads = {}
        for chunk in (1, 4, None):
            took, said = slurm_run(tmp, suite, args.workers, chunk)
            overheads[chunk] = took - tn
            print(f"SLURM array, chunk {chunk or 'auto'} ({said}), {args.workers} at once: submit to last record "
                  f"{took:6.1f} s; overhead over the {args.workers}-worker local run {took - tn:+5.1f} s")
        print(f"SLURM overhead with no chunk set (auto) = {overheads[None]:+.1f} s, with chunk 1 = {overheads[1]:+.1f} s "
              f"(target <= 20 s)")


if __name__ == "__main__":
    main()
