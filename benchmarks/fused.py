"""Fused trials: trials/hour of the same sweep run as fused packs and as separate trials.

Each case is a suite of trials (learning rates x seeds of one model), run with ``harness run`` in fresh
results folders, fused and unfused alternating, ``--repeats`` times. The unfused baseline is
``--workers`` equal to the cores (a trial per process, one thread each). Two figures per case, each the
median over the repeats:

- *steady state*, the rate of a long sweep: a suite of ``cores`` x K trials and one with M times as many
  more, each run fused (``--fuse K --workers <cores>``: a pack of K per worker process, one thread each,
  the layout that measured fastest here) and unfused; the extra trials over the extra time. Each
  process's start (Python, torch, the data: ~3.5 s here, and each unfused worker's first trial pays
  torch's ``torch._dynamo`` import on top) is then paid once, as in a sweep of thousands of trials.
- *one command*, as a user sees one small suite of K trials: the whole ``harness run`` (process start,
  data, every epoch's evaluation and diagnostics, checkpoints, the records), fused as one pack
  (``--fuse K --workers 1``, torch on every core), unfused, and ``--fuse auto --workers <cores>``.

Cases: digits MLP (64-128-128-10, batch 32, 8 epochs) at K=16 and K=64; an MNIST MLP (784-256-256-10,
batch 128, 1 epoch of 10,000 samples) at K=8, which needs ``--mnist-root`` (these run on the CPU, any
GPU hidden). Where a GPU is present, on it: ResNet-20 on CIFAR-shaped random data
(``benchmarks/synthetic_data.py``, 10,000 images, 2 epochs) at K = 8, 16, 32, and the MNIST MLP at K=8,
one command each, fused against one trial at a time and against ``--workers-per-gpu K``. The last line is the
headline: ``fused/unfused trials-per-hour ratio = X (digits MLP, K=16; steady state)``. The first line,
``ceiling``, is what fusion can gain here from the training steps alone: a bare torch step of one digits
MLP against a bare stacked step of 16, one thread each, per trial-step.

    python benchmarks/fused.py                                  # digits cases, about 14 minutes here
    python benchmarks/fused.py --mnist-root DIR --repeats 3     # DIR holds MNIST/raw
    python benchmarks/fused.py --cases resnet,mnist8 --mnist-root DIR --repeats 1   # on a GPU machine
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
from typing import Callable

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


RESNET = """
name: fused-bench
seeds: {seeds}
budget: {{epochs: {epochs}}}
base:
  dataset: {{name: synthetic-cifar, num_train: {n}, num_test: 1000, val_size: 500}}
  model: {{name: resnet, depth: {depth}}}
  optimizer: {{name: momentum, momentum: 0.9}}
  batch_size: 128
grid:
  optimizer.lr: {lrs}
"""
PLUGIN = str(REPO / "benchmarks" / "synthetic_data.py")  # synthetic-cifar: CIFAR's shapes, random pixels


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _run(suite: Path, results: Path, *flags: str, device: str = "cpu") -> float:
    """Seconds one ``harness run`` takes; ``device`` "cpu" hides any GPU (the CPU cases stay CPU cases)."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""} if device == "cpu" else None
    start = time.perf_counter()
    # --threads auto: each worker's share of the cores, as every figure in the README was measured (the default
    # since, 1 thread a trial, would give the one-worker pack 1 thread of the cores' 2)
    done = subprocess.run([sys.executable, "-m", "harness", "run", str(suite), "--results", str(results),
                           "--no-report", "--threads", "auto", *flags], cwd=REPO, capture_output=True, text=True, env=env)
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


def case(tmp: Path, name: str, template: str, k: int, more: int, repeats: int, cores: int, **fields: str) -> float:
    """The steady-state fused/unfused ratio of one case (its figures and the one-command ones printed)."""
    one, small, big = (_suite(tmp, template, k, **fields), _suite(tmp, template, k, cores, **fields),
                       _suite(tmp, template, k, cores * (1 + more), **fields))
    extra = cores * more * k
    steady, whole, auto, rows = [], [], [], []
    per_pack = ("--fuse", str(k), "--workers", str(cores))
    alone = ("--fuse", "off", "--workers", str(cores))
    for r in range(repeats):  # alternating, so that drift of the machine hits both alike
        fused_1 = _run(one, tmp / f"{name}-f{r}", "--fuse", str(k), "--workers", "1")
        alone_1 = _run(one, tmp / f"{name}-u{r}", *alone)
        auto_1 = _run(one, tmp / f"{name}-a{r}", "--fuse", "auto", "--workers", str(cores))
        fused_extra = _run(big, tmp / f"{name}-F{r}", *per_pack) - _run(small, tmp / f"{name}-Fs{r}", *per_pack)
        alone_extra = _run(big, tmp / f"{name}-U{r}", *alone) - _run(small, tmp / f"{name}-Us{r}", *alone)
        steady.append(alone_extra / fused_extra if fused_extra > 0 else math.nan)
        whole.append(alone_1 / fused_1)
        auto.append(alone_1 / auto_1)
        rows.append((fused_1, alone_1, auto_1, fused_extra, alone_extra))
    per_hour = lambda n, s: n / s * 3600 if s > 0 else math.nan  # noqa: E731
    for fused_1, alone_1, auto_1, fused_extra, alone_extra in rows:
        print(f"  {name}: steady state, {extra} more trials: fused +{fused_extra:5.1f} s = "
              f"{per_hour(extra, fused_extra):7.0f} trials/h, unfused +{alone_extra:5.1f} s = "
              f"{per_hour(extra, alone_extra):7.0f} | one command of {k}: fused (1 pack) {fused_1:5.1f} s = "
              f"{per_hour(k, fused_1):6.0f} trials/h, unfused {alone_1:5.1f} s = {per_hour(k, alone_1):6.0f}, "
              f"fuse auto {auto_1:5.1f} s = {per_hour(k, auto_1):6.0f}")
    print(f"  {name}: fused/unfused trials-per-hour ratio: steady state {_median(steady):.2f}, one command "
          f"{_median(whole):.2f} (fuse auto {_median(auto):.2f}); medians of {repeats}", flush=True)
    return _median(steady)


def device_case(tmp: Path, name: str, suite: Path, k: int, repeats: int, shared: bool, flags: tuple[str, ...] = ()
                ) -> tuple[float, float]:
    """One command each on the GPU (the device, not the process start, is the cost there): one pack of K
    against the K trials one at a time and, with ``shared``, against ``--workers-per-gpu K`` (K processes
    sharing the GPU)."""
    fused, alone, together = [], [], []
    device = "cpu" if not shared else "cuda"
    for r in range(repeats):
        fused.append(_run(suite, tmp / f"{name}-f{r}", "--fuse", str(k), "--workers", "1", *flags, device=device))
        alone.append(_run(suite, tmp / f"{name}-u{r}", "--fuse", "off", "--workers", "1", *flags, device=device))
        if shared:
            together.append(_run(suite, tmp / f"{name}-w{r}", "--fuse", "off", "--workers", str(k),
                                 "--workers-per-gpu", str(k), *flags, device=device))
    f, a, w = _median(fused), _median(alone), _median(together)
    print(f"  {name}, K={k}: fused (1 pack) {f:6.1f} s = {k / f * 3600:7.0f} trials/h; one at a time {a:6.1f} s = "
          f"{k / a * 3600:7.0f}; --workers-per-gpu {k} " + (f"{w:6.1f} s = {k / w * 3600:7.0f}" if together
                                                           else "not run") +
          f" | fused/unfused ratio {a / f:.2f} (one at a time), {w / f:.2f} (--workers-per-gpu {k})", flush=True)
    return a / f, w / f


def resnet_suite(tmp: Path, k: int, tiny: bool) -> Path:
    """ResNet-20 on 10,000 CIFAR-shaped images, 2 epochs (``tiny``: ResNet-8 on 600, 1 epoch: a CPU smoke run)."""
    seeds = 2 if k < 16 else 4
    lrs = [round(0.01 * 5 ** (i / max(k // seeds - 1, 1)), 5) for i in range(k // seeds)]
    suite = tmp / f"resnet-{k}.yaml"
    suite.write_text(RESNET.format(seeds=seeds, lrs=lrs, epochs=1 if tiny else 2, n=600 if tiny else 10000,
                                   depth=8 if tiny else 20))
    return suite


def ceiling(k: int = 16, steps: int = 1000) -> None:
    """What fusion can gain on this CPU at most: a bare torch step of the digits MLP alone against a bare
    stacked step of K, both on one thread (a worker per core runs either, as in the steady state), per
    trial-step, with no harness around them (no evaluation, diagnostics, checkpoints or records)."""
    import torch
    import torch.nn.functional as F

    from harness.fused.models import stack_models
    from harness.fused.optim import build_fused

    def mlp() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 128),
                                   torch.nn.ReLU(), torch.nn.Linear(128, 10))

    def timed(step: Callable[[], None]) -> float:
        for _ in range(50):
            step()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        return (time.perf_counter() - start) / steps * 1e3

    torch.set_num_threads(1)
    one = mlp()
    opt = torch.optim.SGD(one.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))

    def alone() -> None:
        opt.zero_grad()
        F.cross_entropy(one(x), y).backward()
        opt.step()

    stacked = stack_models([mlp() for _ in range(k)])
    fused = build_fused("momentum", stacked.parameters(), {"lr": 0.01, "momentum": 0.9})
    xs, ys = torch.randn(k, 32, 64), torch.randint(0, 10, (k * 32,))

    def packed() -> None:
        fused.zero_grad()
        F.cross_entropy(stacked(xs).flatten(0, 1), ys).backward()
        fused.step()

    single, pack = timed(alone), timed(packed)
    print(f"  ceiling (one thread each): a bare unfused step {single:.3f} ms; a bare stacked step of {k} {pack:.3f} ms "
          f"= {pack / k:.3f} ms per trial-step; at most {single / (pack / k):.1f}x from the steps alone", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--mnist-root", help="folder holding MNIST/raw (the MNIST case runs only with it)")
    p.add_argument("--cases", default="ceiling,digits16,digits64,mnist8,resnet",
                   help="resnet: ResNet-20 at K = 8, 16, 32 on CIFAR-shaped data, where a GPU is present")
    p.add_argument("--tiny-resnet", action="store_true", help="the resnet case's code path on a CPU: ResNet-8, "
                                                               "600 images, K = 2, one at a time only (no figure)")
    args = p.parse_args()
    cores = _cores()
    wanted = args.cases.split(",")
    print(f"{cores} cores; unfused baseline: --workers {cores}", flush=True)
    with tempfile.TemporaryDirectory(prefix="harness-fused-bench-") as tmp:
        tmp = Path(tmp)
        results = {}
        if "ceiling" in wanted:
            ceiling()
        for k, more in ((16, 2), (64, 1)):  # the steady state from 2 (1) more packs per worker
            if f"digits{k}" in wanted:
                results[f"digits MLP, K={k}"] = case(tmp, f"digits-K{k}", DIGITS, k, more, args.repeats, cores)
        if "mnist8" in wanted:
            if args.mnist_root:
                results["MNIST MLP, K=8"] = case(tmp, "mnist-K8", MNIST, 8, 2, args.repeats, cores,
                                                 root=str(Path(args.mnist_root).resolve()))
            else:
                print("  MNIST MLP: skipped (no --mnist-root)")
        import torch

        gpu = torch.cuda.is_available()
        if "mnist8" in wanted and args.mnist_root and gpu:
            root = str(Path(args.mnist_root).resolve())
            device_case(tmp, "MNIST MLP on the GPU", _suite(tmp, MNIST, 8, root=root), 8, args.repeats, True)
        if "resnet" in wanted:
            if gpu or args.tiny_resnet:
                for k in ((2,) if args.tiny_resnet else (8, 16, 32)):
                    device_case(tmp, f"ResNet-{8 if args.tiny_resnet else 20}", resnet_suite(tmp, k, args.tiny_resnet),
                                k, args.repeats, gpu, ("--plugin", PLUGIN))
            else:
                print("  ResNet-20: skipped (no GPU; on a CPU a residual pack is slower than its trials alone)")
    headline = "digits MLP, K=16" if "digits MLP, K=16" in results else next(iter(results), None)
    if headline is not None:
        print(f"fused/unfused trials-per-hour ratio = {results[headline]:.2f} ({headline.split(', ')[0]}, "
              f"{headline.split(', ')[1]}; steady state)")


if __name__ == "__main__":
    main()
