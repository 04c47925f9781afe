"""Fused trials: trials/hour of the same sweep run as fused packs and as separate trials.

Each case is a suite of K trials (learning rates x seeds of one model), run with ``harness run`` in
fresh results folders, fused and unfused alternating, ``--repeats`` times. The unfused baseline is
``--workers`` equal to the cores (a trial per process, one thread each); fused is one pack of K per
command (``--fuse K --workers 1``, torch on every core); ``--fuse auto --workers <cores>`` (a pack
per worker) is shown beside it. Two figures per case, each the median over the repeats:

- *steady state*: the same suite with M·K more trials (M more packs), run the same way; the extra
  trials over the extra time. This is the rate of a long sweep, where each process's start (Python,
  torch, the data; ~4 s here, paid again by each unfused worker process) is paid once.
- *one command*: K trials over the whole command's wall clock, as a user sees one small suite (process
  start, data, every epoch's evaluation and diagnostics, the records).

Cases: digits MLP (64-128-128-10, batch 32, 8 epochs) at K=16 and K=64; an MNIST MLP (784-256-256-10,
batch 128, 1 epoch of 10,000 samples) at K=8, which needs ``--mnist-root``. The last line is the
headline: ``fused/unfused trials-per-hour ratio = X (digits MLP, K=16)``, the steady-state figure.

    python benchmarks/fused.py                                  # digits cases, about 8 minutes here
    python benchmarks/fused.py --mnist-root DIR --repeats 3     # DIR holds MNIST/raw
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

DIGITS = """
name: fused-bench
seeds: {seeds}
budget: {{epochs: 8}}
base:
  dataset: {{name: digits, val_size: 300}}
  model: {{name: mlp, depth: 2, width: 128, activation: relu}}
  optimizer: {{name: momentum, momentum: 0.9}}
  schedule: cosine
  batch_size: 32
grid:
  optimizer.lr: {lrs}
"""

MNIST = """
name: fused-bench
seeds: {seeds}
budget: {{epochs: 1}}
base:
  dataset: {{name: mnist, val_size: 2000, train_subset: 10000, root: {root}}}
  model: {{name: mlp, depth: 2, width: 256, activation: relu}}
  optimizer: {{name: momentum, momentum: 0.9}}
  batch_size: 128
grid:
  optimizer.lr: {lrs}
"""


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _run(suite: Path, results: Path, *flags: str) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "harness", "run", str(suite), "--results", str(results),
                           "--no-report", *flags], cwd=REPO, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode not in (0, 1):  # 1: some trial diverged or failed, which is a result too
        raise SystemExit(f"harness run {' '.join(flags)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return took


def _suite(tmp: Path, template: str, k: int, packs: int = 1, **fields: str) -> Path:
    """K·packs trials: 4 seeds (2 for K < 16) x K/seeds learning rates per pack, every pack its own lrs."""
    seeds = 4 if k >= 16 else 2
    n = (k // seeds) * packs
    lrs = [round(0.002 * 25 ** (i / max(n - 1, 1)), 5) for i in range(n)]  # 0.002 .. 0.05: none diverges
    path = tmp / f"suite-{k}x{packs}.yaml"
    path.write_text(template.format(seeds=seeds, lrs=lrs, **fields))
    return path


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def case(tmp: Path, name: str, suites: tuple[Path, Path], k: int, more: int, repeats: int, cores: int) -> float:
    """The steady-state fused/unfused ratio of one case (and its one-command figures, printed)."""
    small, big = suites
    steady, whole, auto, rows = [], [], [], []
    for r in range(repeats):  # alternating, so that drift of the machine hits both alike
        fused = _run(small, tmp / f"{name}-f{r}", "--fuse", str(k), "--workers", "1")
        alone = _run(small, tmp / f"{name}-u{r}", "--fuse", "off", "--workers", str(cores))
        fused_big = _run(big, tmp / f"{name}-F{r}", "--fuse", str(k), "--workers", "1")
        alone_big = _run(big, tmp / f"{name}-U{r}", "--fuse", "off", "--workers", str(cores))
        packed = _run(small, tmp / f"{name}-a{r}", "--fuse", "auto", "--workers", str(cores))
        extra_fused, extra_alone = fused_big - fused, alone_big - alone
        steady.append(extra_alone / extra_fused if extra_fused > 0 else math.nan)
        whole.append(alone / fused)
        auto.append(alone / packed)
        rows.append((fused, alone, packed, extra_fused, extra_alone))
    per_hour = lambda n, s: n / s * 3600 if s > 0 else math.nan  # noqa: E731
    extra = more * k
    for fused, alone, packed, extra_fused, extra_alone in rows:
        print(f"  {name}: one command: fused (1 pack of {k}) {fused:5.1f} s = {per_hour(k, fused):7.0f} trials/h; "
              f"unfused (--workers {cores}) {alone:5.1f} s = {per_hour(k, alone):7.0f}; fuse auto {packed:5.1f} s = "
              f"{per_hour(k, packed):7.0f} | {extra} more trials: fused +{extra_fused:5.1f} s = "
              f"{per_hour(extra, extra_fused):7.0f} trials/h; unfused +{extra_alone:5.1f} s = "
              f"{per_hour(extra, extra_alone):7.0f}")
    print(f"  {name}: fused/unfused trials-per-hour ratio: steady state {_median(steady):.2f}, one command "
          f"{_median(whole):.2f} (fuse auto {_median(auto):.2f}); medians of {repeats}", flush=True)
    return _median(steady)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--mnist-root", help="folder holding MNIST/raw (the MNIST case runs only with it)")
    p.add_argument("--cases", default="digits16,digits64,mnist8")
    args = p.parse_args()
    cores = _cores()
    wanted = args.cases.split(",")
    print(f"{cores} cores; unfused baseline: --workers {cores}", flush=True)
    with tempfile.TemporaryDirectory(prefix="harness-fused-bench-") as tmp:
        tmp = Path(tmp)
        results = {}
        for k, more in ((16, 3), (64, 1)):  # the steady state from 3 (1) more packs
            if f"digits{k}" in wanted:
                suites = (_suite(tmp, DIGITS, k), _suite(tmp, DIGITS, k, 1 + more))
                results[f"digits MLP, K={k}"] = case(tmp, f"digits-K{k}", suites, k, more, args.repeats, cores)
        if "mnist8" in wanted:
            if args.mnist_root:
                root = str(Path(args.mnist_root).resolve())
                suites = (_suite(tmp, MNIST, 8, root=root), _suite(tmp, MNIST, 8, 3, root=root))
                results["MNIST MLP, K=8"] = case(tmp, "mnist-K8", suites, 8, 2, args.repeats, cores)
            else:
                print("  MNIST MLP: skipped (no --mnist-root)")
    headline = "digits MLP, K=16" if "digits MLP, K=16" in results else next(iter(results), None)
    if headline is not None:
        print(f"fused/unfused trials-per-hour ratio = {results[headline]:.2f} ({headline.split(', ')[0]}, "
              f"{headline.split(', ')[1]}; steady state)")


if __name__ == "__main__":
    main()
