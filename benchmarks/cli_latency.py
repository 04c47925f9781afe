"""Start-up latency of the commands that train nothing (``plan``, ``plan --count``, ``status``, ``list``,
``verify``): what a user waits for on a cluster's login node before anything is printed.

Each command runs as a fresh subprocess (``python -m harness ...``), as a user types it, on a shipped suite
and the committed results under ``results/``; ``python -c pass`` runs in the same way in the same run, so
the ratio says how much of the time is the harness and not the interpreter or a busy machine. Commands are
interleaved round by round so that machine noise hits all alike. Prints the median wall time over the
repeats and ratio = command / ``python -c pass``. A figure to read, never asserted in a test (the test that
guards these commands checks that they do not import torch: ``tests/test_cli_latency.py``).

    python benchmarks/cli_latency.py              # 7 repeats
    python benchmarks/cli_latency.py --repeats 15
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "python -c 'import torch'": ["-c", "import torch"],
    "plan suites/smoke.yaml": ["-m", "harness", "plan", "suites/smoke.yaml"],
    "plan suites/smoke.yaml --count": ["-m", "harness", "plan", "suites/smoke.yaml", "--count"],
    "status results/repro/repro-ema": ["-m", "harness", "status", "results/repro/repro-ema"],
    "list": ["-m", "harness", "list"],
    "verify suites/repro/ema.yaml --results results/repro":
        ["-m", "harness", "verify", "suites/repro/ema.yaml", "--results", "results/repro"],
}


def _once(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):  # verify exits 1 when a claim fails: a figure all the same
        raise SystemExit(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-400:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for name, command in COMMANDS.items():  # one untimed run each: files in the page cache, .pyc written
        _once(command, env)
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            times[name].append(_once(command, env))
    base = statistics.median(times["python -c pass"])
    print(f"median of {args.repeats} runs each, {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    print(f"{'command':<56}{'seconds':>9}{'x pass':>9}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<56}{median:>9.3f}{median / base:>9.1f}")


if __name__ == "__main__":
    main()
