"""Fused trials: trials/hour of the same sweep run as fused packs and as separate trials.

Each case is one suite of K trials (learning rates x seeds of one model), run with ``harness run`` in
fresh results folders, alternating fused and unfused ``--repeats`` times; the figure is the median of
the trials/hour ratio over the repeats. The unfused baseline is ``--workers`` equal to the cores (each
trial its own process, one thread); fused is one pack of K (``--fuse K --workers 1``, torch on every
core) and, for comparison, ``--fuse auto --workers <cores>`` (one pack per worker). Times are wall
clock from the command's start to its end, as a user sees them (process start, data, every epoch's
evaluation and diagnostics included).

Cases: digits MLP (64-128-128-10, batch 32, 8 epochs) at K=16 and K=64; an MNIST MLP (784-256-256-10,
batch 128, 1 epoch of 10,000 samples) at K=8, which needs ``--mnist-root``; on a GPU, ResNet-20-shaped
trials are not fusable yet (residual models have no stacked form), so only the MLP cases run there.

    python benchmarks/fused.py                                  # digits cases, about 3 minutes here
    python benchmarks/fused.py --mnist-root DIR --repeats 1     # DIR holds MNIST/raw
"""
from __future__ import annotations

import argparse
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


def _suite(tmp: Path, template: str, k: int, **fields: str) -> Path:
    seeds = 4 if k >= 16 else 2
    n = k // seeds
    lrs = [round(0.002 * 25 ** (i / max(n - 1, 1)), 5) for i in range(n)]  # 0.002 .. 0.05: none diverges
    path = tmp / f"suite-{k}.yaml"
    path.write_text(template.format(seeds=seeds, lrs=lrs, **fields))
    return path


def case(tmp: Path, name: str, suite: Path, k: int, repeats: int, cores: int) -> float:
    ratios, auto_ratios, rows = [], [], []
    for r in range(repeats):  # alternating, so that drift of the machine hits both alike
        fused = _run(suite, tmp / f"{name}-f{r}", "--fuse", str(k), "--workers", "1")
        alone = _run(suite, tmp / f"{name}-u{r}", "--fuse", "off", "--workers", str(cores))
        auto = _run(suite, tmp / f"{name}-a{r}", "--fuse", "auto", "--workers", str(cores))
        ratios.append(alone / fused)
        auto_ratios.append(alone / auto)
        rows.append((fused, alone, auto))
    per_hour = lambda s: k / s * 3600  # noqa: E731
    for fused, alone, auto in rows:
        print(f"  {name}: fused (1 pack of {k}) {fused:6.1f} s = {per_hour(fused):8.0f} trials/h;  "
              f"unfused (--workers {cores}) {alone:6.1f} s = {per_hour(alone):8.0f} trials/h;  "
              f"fuse auto (--workers {cores}) {auto:6.1f} s = {per_hour(auto):8.0f} trials/h")
    ratio = statistics.median(ratios)
    print(f"  {name}: fused/unfused trials-per-hour ratio {ratio:.2f} (median of {repeats}; "
          f"fuse auto {statistics.median(auto_ratios):.2f})", flush=True)
    return ratio


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--mnist-root", help="folder holding MNIST/raw (the MNIST case runs only with it)")
    p.add_argument("--cases", default="digits16,digits64,mnist8")
    args = p.parse_args()
    cores = _cores()
    wanted = args.cases.split(",")
    print(f"{cores} cores; unfused baseline: --workers {cores}", flush=True)
    with tempfile.TemporaryDirectory(prefix="harness-fused-bench-") as tmp:
        tmp = Path(tmp)
        results = {}
        for k in (16, 64):
            if f"digits{k}" in wanted:
                results[f"digits MLP, K={k}"] = case(tmp, f"digits-K{k}", _suite(tmp, DIGITS, k), k, args.repeats,
                                                     cores)
        if "mnist8" in wanted:
            if args.mnist_root:
                root = Path(args.mnist_root).resolve()
                results["MNIST MLP, K=8"] = case(tmp, "mnist-K8", _suite(tmp, MNIST, 8, root=str(root)), 8,
                                                 args.repeats, cores)
            else:
                print("  MNIST MLP: skipped (no --mnist-root)")
    headline = "digits MLP, K=16" if "digits MLP, K=16" in results else next(iter(results), None)
    if headline is not None:
        print(f"fused/unfused trials-per-hour ratio = {results[headline]:.2f} ({headline.split(', ')[0]}, "
              f"{headline.split(', ')[1]})")


if __name__ == "__main__":
    main()
