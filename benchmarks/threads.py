"""Time per training step of one small trial under 1 and 2 intra-op threads (``execution.threads``).

The same trial (a digits MLP, the data held on the device) through ``run_trial``, the thread counts
alternated so that machine noise hits both alike; prints each count's median ``train_step_ms`` over the
repeats (the engine's own per-step figure: optimization steps only, no evaluation), their range, and whether
the records' numbers agree (they need not: a sum split over 2 threads rounds differently).

    python benchmarks/threads.py                         # width 32, batch 64 (the tests' TINY trial)
    python benchmarks/threads.py --width 512 --batch 128 --repeats 7
"""
from __future__ import annotations

import argparse
import statistics

from harness.engine import run_trial
from harness.spec import TrialSpec
from harness.suite import resolve_trial


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--depth", type=int, default=1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()
    config = resolve_trial({"dataset": {"name": "digits", "val_size": 200}, "batch_size": args.batch,
                            "model": {"name": "mlp", "depth": args.depth, "width": args.width},
                            "optimizer": {"name": "adam", "lr": 0.003}, "budget": {"epochs": args.epochs},
                            "diagnostics": {"layers": False}}, "base")
    spec = TrialSpec.make("threads", config, 0, {})
    run_trial(spec, threads=1)  # warm-up: imports, the data's first load
    times: dict[int, list[float]] = {n: [] for n in args.threads}
    losses: dict[int, set[float]] = {n: set() for n in args.threads}
    for _ in range(args.repeats):
        for n in args.threads:
            record = run_trial(spec, threads=n)
            assert record.environment["torch_threads"] == n, record.environment
            times[n].append(record.timing["train_step_ms"])
            losses[n].add(record.final["train_loss"])
    steps = record.timing["steps"]
    print(f"digits MLP depth {args.depth} width {args.width}, batch {args.batch}, {steps} steps a run, "
          f"{args.repeats} runs per thread count")
    base = statistics.median(times[args.threads[0]])
    for n in args.threads:
        median = statistics.median(times[n])
        print(f"  {n} thread{'s' * (n > 1)}: {median:8.3f} ms a step (median; {min(times[n]):.3f}-{max(times[n]):.3f}), "
              f"{median / base:6.1f}x the {args.threads[0]}-thread time; final train_loss {sorted(losses[n])}")


if __name__ == "__main__":
    main()
