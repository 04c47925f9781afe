"""Seconds to collect 10,000 records (24 epochs of history each) and write the full report.

The records are synthetic but complete (the harness's own Record schema, written by its store):
5 optimizers × 8 learning rates × 5 weight decays × 10 workloads × 5 seeds, with learning curves
and step-loss windows. Timed: ``harness collect`` (parquet) and ``harness report`` with a baseline,
time-to-target and every format (Markdown, HTML with embedded plots, LaTeX, CSV), each in this
process. Target: under 15 s on the 2-core development machine.

    python benchmarks/report.py [--records 10000] [--jobs N]
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from harness.report import collect, write_report
from harness.spec import COMPLETED, DIVERGED, Record, TrialSpec
from harness.store import write_plan, write_record

OPTIMIZERS = ["sgd", "momentum", "nesterov", "adam", "rmsprop"]
LRS = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]
DECAYS = [0.0, 1e-5, 1e-4, 1e-3, 1e-2]
WORKLOADS = [("mnist", "mlp"), ("mnist", "cnn_2c2d"), ("fashion_mnist", "mlp"), ("fashion_mnist", "cnn_2c2d"),
             ("cifar10", "cnn_3c3d"), ("cifar10", "resnet"), ("cifar100", "resnet"), ("svhn", "cnn_3c3d"),
             ("kmnist", "mlp"), ("mnist1d", "mlp")]
EPOCHS = 24


def synthetic(folder: Path, n_records: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    seeds = 5
    specs, records = [], []
    for opt in OPTIMIZERS:
        for lr in LRS:
            for wd in DECAYS:
                for dataset, model in WORKLOADS:
                    for s in range(seeds):
                        if len(specs) >= n_records:
                            break
                        config = {"dataset": {"name": dataset}, "model": {"name": model},
                                  "optimizer": {"name": opt, "lr": lr, "weight_decay": wd}}
                        axes = {"optimizer": opt, "optimizer.lr": lr, "optimizer.weight_decay": wd,
                                "dataset": dataset, "model": model}
                        spec = TrialSpec.make("bench", config, s, axes)
                        specs.append(spec)
                        quality = 0.9 - 0.1 * abs(math.log10(lr) + 2) - 2 * wd + 0.02 * OPTIMIZERS.index(opt)
                        diverged = lr >= 0.3 and rng.random() < 0.3
                        history, steps = [], []
                        for e in range(1, EPOCHS + 1):
                            acc = quality * (1 - math.exp(-e / 5)) + rng.normal(0, 0.01)
                            loss = 2.3 * math.exp(-e / 6) + 0.1 + rng.normal(0, 0.02)
                            history.append({"epoch": e, "step": 100 * e, "lr": lr, "train_loss": loss, "train_acc": acc,
                                            "val_loss": loss * 1.1, "val_acc": acc - 0.01, "test_loss": loss * 1.1,
                                            "test_acc": acc - 0.01, "grad_norm": 1.0, "train_time": 2.0, "eval_time": 0.3})
                            steps.append([100 * e, loss + rng.normal(0, 0.05)])
                        r = Record(spec.trial_id, "bench", s, DIVERGED if diverged else COMPLETED, config, axes,
                                   history=[] if diverged else history, steps=[] if diverged else steps,
                                   reason="loss is nan at step 12" if diverged else None,
                                   environment={"device": "cpu", "torch": "2.14.1", "python": "3.11.7", "host": "bench"})
                        if not diverged:
                            r.final = dict(history[-1])
                            r.best = {k: history[-1][k] for k in ("epoch", "val_acc", "val_loss", "test_acc", "test_loss")}
                            r.timing = {"train_s": 2.0 * EPOCHS, "eval_s": 0.3 * EPOCHS, "steps": 100 * EPOCHS}
                        records.append(r)
    write_plan(folder, {"name": "bench", "description": "synthetic records for the report benchmark",
                        "axes": ["optimizer", "optimizer.lr", "optimizer.weight_decay", "dataset", "model"],
                        "report": {"compare": ["optimizer"], "metric": "test_acc"}}, specs)
    for r in records:
        write_record(folder, r)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=10_000)
    p.add_argument("--jobs", type=int, default=None, help="processes drawing figures (default: the cores, at most 8)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "bench"
        start = time.perf_counter()
        synthetic(folder, args.records)
        print(f"wrote {args.records} records in {time.perf_counter() - start:.1f} s (not timed)")
        start = time.perf_counter()
        c = collect(folder)
        c.runs.to_parquet(folder / "collected.parquet", index=False)
        t_collect = time.perf_counter() - start
        files = write_report(folder, baseline="optimizer=sgd", target=0.5, formats=("md", "html", "latex", "csv"),
                             collected=c, jobs=args.jobs)
        total = time.perf_counter() - start
        html = folder / "report" / "report.html"
        print(f"collect: {t_collect:.1f} s ({len(c.runs)} trials, {len(c.curves)} curve rows, {len(c.steps)} step rows)")
        print(f"collect + full report: {total:.1f} s  (target < 15 s); {len(files)} files, "
              f"report.html {html.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
