"""What each part of the harness's training step costs, per step, against the bare step.

Builds one digits (or MNIST) MLP trial through the engine (``harness.engine.loop._prepare``), then
times, on the same batch and in rotation, a bare step written by hand (forward, cross-entropy,
zero_grad, backward, ``optimizer.step()``) and the harness's step with each of its per-step parts
added in turn: the lr schedule write, the ``Step`` object (closure, loss wrapper, after-backward
hook), the loop's callbacks (divergence guard, gradient-norm samples) with the per-layer
diagnostics off, and with them on. Prints microseconds per step (the mean, so the diagnostics'
work every 16th step counts) and each part's share of the bare step: the
figures behind ``benchmarks/overhead.py``'s ratio, with the machine's noise paired away by
interleaving the cases step by step.

    python benchmarks/step_costs.py                 # digits, offline
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from harness.engine.loop import _accelerator, _prepare
from harness.engine.step import set_lr
from harness.spec import Record, TrialSpec
from harness.suite import resolve_trial


def _case(width: int, layers: bool) -> dict:
    raw = {"dataset": {"name": "digits"}, "model": {"name": "mlp", "depth": 2, "width": width},
           "optimizer": {"name": "momentum", "lr": 0.01, "momentum": 0.9}, "batch_size": 128,
           "diagnostics": {"layers": layers}}
    spec = TrialSpec.make("costs", resolve_trial(raw, "bench"), 0)
    record = Record(spec.trial_id, spec.suite, spec.seed, "completed", spec.config, {})
    run, hooks, step, loaders = _prepare(spec.config, 0, record, _accelerator("no"), [], None)
    hooks("on_start", run)
    hooks("on_epoch_start", run)
    x, y = next(iter(loaders.train))
    return {"run": run, "hooks": hooks, "step": step, "x": x, "y": y,
            "base": [g["lr"] for g in run.optimizer.param_groups]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--steps", type=int, default=3000, help="steps of each case, interleaved one by one")
    args = p.parse_args()
    on, off = _case(args.width, True), _case(args.width, False)
    model, opt, x, y = on["run"].model, on["run"].optimizer, on["x"], on["y"]

    def bare() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def with_lr() -> None:
        set_lr(opt, on["base"], on["run"].trial.schedule(0))
        bare()

    def with_step() -> None:
        set_lr(opt, on["base"], on["run"].trial.schedule(0))
        on["step"](x, y)

    def body(case: dict) -> Callable[[], None]:
        run, step, t = case["run"], case["step"], case["run"].trial
        before, after = case["hooks"].bound["before_step"], case["hooks"].bound["after_step"]
        cx, cy = case["x"], case["y"]

        def go() -> None:  # the loop's body: schedule, hooks around the step, the cursor
            set_lr(run.optimizer, case["base"], t.schedule(run.cursor.step))
            for hook in before:
                hook(run)
            run.loss = step(cx, cy)
            run.cursor.step += 1
            run.cursor.batches += 1
            for hook in after:
                hook(run)

        return go

    cases = {"bare step (by hand)": bare, "+ lr schedule": with_lr, "+ Step (closure, loss, hooks)": with_step,
             "+ callbacks, per-layer diagnostics off": body(off), "+ callbacks, per-layer diagnostics on": body(on)}
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for i in range(args.steps + 50):
        for name in names if i % 2 else names[::-1]:  # interleaved step by step: this VM drifts by 50% within a minute
            start = time.perf_counter()
            cases[name]()
            if i >= 50:  # warm-up
                times[name].append(time.perf_counter() - start)
    ref, ref_median = statistics.mean(times[names[0]]), statistics.median(times[names[0]])
    print(f"digits MLP 2x{args.width}, batch 128, threads={torch.get_num_threads()}, {args.steps} steps of each, "
          "interleaved; mean over steps (the sampled steps of the diagnostics included)")
    for name, values in times.items():
        m, med = statistics.mean(values), statistics.median(values)
        print(f"{name:<42} mean {1e6 * m:7.1f} us/step {1e6 * (m - ref):+6.1f} us ({m / ref:.3f}x)   "
              f"median {1e6 * med:7.1f} {1e6 * (med - ref_median):+6.1f} us")


if __name__ == "__main__":
    main()
