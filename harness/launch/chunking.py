"""``slurm.chunk: auto``: how many trials each array task runs, sized from the plan.

A task pays a start-up cost (Python, torch, the harness and the first optimizer: STARTUP_S, measured
at 3-5 s here) before its first trial. One trial per task wastes that on every small trial; many per
task serialize large ones and risk the time limit. ``auto`` takes

- the trials' expected seconds: from the suite's finished records when there are any (the median
  seconds per epoch, times the pending trials' epochs), else from their budgets (the model's forward
  FLOPs on one sample, counted on the meta device, x3 for a training step, times the samples of the
  budget, at a nominal FLOP rate per CPU or GPU, plus a fixed cost per step, which is most of a small
  model's time: a rough estimate, within a factor of a few);
- the start-up cost, so that it stays within OVERHEAD of a task's time;
- the task's time limit (``slurm.time``), so that a task's trials fill at most half of it;
- the tasks that can run at once (``max_parallel``, else the partition's CPUs / ``cpus_per_task``,
  asked of ``sinfo``), so that chunking never leaves the cluster's slots idle,

and returns the chunk with the reason, which ``harness submit`` prints.
"""
from __future__ import annotations

import math
import re
import shutil
import statistics
import subprocess
from typing import Any

from harness.errors import first_line
from harness.spec import COMPLETED, Record, TrialSpec

STARTUP_S = 5.0  # a task's start before its first trial (python -c "import torch, harness.engine" + first optimizer)
OVERHEAD = 0.1  # the start-up's largest share of a task's time that auto aims for
CPU_FLOPS = 2e10  # nominal training throughput of one CPU core (FLOP/s) for the budget estimate
GPU_FLOPS = 1e13  # and of one GPU
STEP_S = 6e-4  # the fixed cost of one training step of a small model (the loop, the optimizer's dispatch), measured


def parse_time(limit: str | None) -> float | None:
    """SLURM's --time (minutes, MM:SS, HH:MM:SS, D-HH[:MM[:SS]], UNLIMITED) in seconds; None when unlimited."""
    if not limit or limit.upper() in ("UNLIMITED", "INFINITE"):
        return None
    days, _, rest = limit.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:
        h, m, s = (parts + [0, 0])[:3]
    elif len(parts) == 1:
        h, m, s = 0, parts[0], 0
    elif len(parts) == 2:
        h, m, s = 0, parts[0], parts[1]
    else:
        h, m, s = parts
    return ((int(days or 0) * 24 + h) * 60 + m) * 60 + s


def seconds_from_records(records: list[Record], epochs: list[int]) -> float | None:
    """The median pending trial's seconds, from the finished records' seconds per epoch."""
    per_epoch = [((r.timing.get("train_s") or 0) + (r.timing.get("eval_s") or 0)) / len(r.history)
                 for r in records if r.status == COMPLETED and r.history and r.timing.get("train_s")]
    if not per_epoch:
        return None
    return statistics.median(per_epoch) * statistics.median(epochs)


def forward_flops(spec: TrialSpec) -> tuple[float | None, str]:
    """(FLOPs of one sample's forward, "") counted on the meta device, or (None, why) where the model
    cannot be counted (a plugin model that needs real data, say): an estimate never stops a submission.

    The model is counted in eval mode on a batch of two: BatchNorm in training mode refuses a batch of
    one, and eval mode runs the same layers (dropout and drop-path cost nothing either way)."""
    from torch.utils.flop_counter import FlopCounterMode

    import torch

    from harness.registries import MODELS, NORMS
    from harness.models import ModelContext

    config = spec.config
    caps = _dataset_caps(config)
    norm = config["norm"]
    ctx = ModelContext(in_shape=caps.in_shape, num_classes=caps.num_classes,
                       norm=lambda features, dims: NORMS.build(norm, features, dims))
    try:
        with torch.device("meta"):
            model = MODELS.build(config["model"], ctx).eval()
            counter = FlopCounterMode(display=False)
            with counter, torch.no_grad():
                model(torch.zeros((2, *caps.in_shape)))
    except Exception as e:  # noqa: BLE001 -- any model code may fail on the meta device; the estimate falls back
        return None, first_line(e)
    return counter.get_total_flops() / 2, ""


def seconds_from_budget(spec: TrialSpec, cpus: int, gpus: int) -> tuple[float, str]:
    """(seconds, why not counted) of a trial from its budget: training FLOPs (3 x the forward's, per sample)
    over the epochs' samples, plus evaluating the validation and test splits each epoch, at a nominal rate;
    plus STEP_S a step. Where the forward cannot be counted, the per-step cost alone, and the reason."""
    config = spec.config
    caps = _dataset_caps(config)
    forward, why = forward_flops(spec)
    total = caps.train_size or 10_000
    n_train = min(config["dataset"].get("train_subset") or total, total)
    n_eval = config["dataset"].get("val_size", 0) * 2 + 10_000  # validation, the training probe, a test split
    epochs = config["budget"]["epochs"]
    rate = GPU_FLOPS * gpus if gpus else CPU_FLOPS * cpus
    n_train -= min(config["dataset"].get("val_size", 0), n_train // 2)
    steps = math.ceil(n_train / config["batch_size"])
    return epochs * ((forward or 0) * (3 * n_train + n_eval) / rate + steps * STEP_S), why


def _dataset_caps(config: dict[str, Any]):
    from harness.registries import DATASETS

    return DATASETS.get(config["dataset"]["name"]).caps


def partition_slots(slurm: dict[str, Any]) -> int | None:
    """Tasks that can run at once: ``max_parallel``, else the partition's CPUs over ``cpus_per_task`` (sinfo)."""
    if slurm.get("max_parallel"):
        return int(slurm["max_parallel"])
    if not shutil.which("sinfo"):
        return None
    args = ["sinfo", "-h", "-o", "%C"] + (["-p", slurm["partition"]] if slurm.get("partition") else [])
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    totals = [int(m.group(1)) for m in re.finditer(r"\d+/\d+/\d+/(\d+)", out)]
    return sum(totals) // max(int(slurm.get("cpus_per_task") or 1), 1) if totals else None


def auto_chunk(pending: list[TrialSpec], records: list[Record], slurm: dict[str, Any]) -> tuple[int, str]:
    """(chunk, why) for the ``pending`` trials; ``records``: the suite's finished ones."""
    if not pending:
        return 1, "no trials to run"
    cpus, gpus = int(slurm.get("cpus_per_task") or 1), int(slurm.get("gpus_per_task") or 0)
    seconds = seconds_from_records(records, [t.config["budget"]["epochs"] for t in pending])
    source = "the suite's records"
    if seconds is None:
        estimates = [seconds_from_budget(t, cpus, gpus) for t in pending[:8]]
        seconds = statistics.median(s for s, _ in estimates)
        uncounted = [why for _, why in estimates if why]
        source = "their budgets" + (f" (the model's FLOPs not counted, {uncounted[0]}: the per-step cost only)"
                                    if uncounted else "")
    seconds = max(seconds, 0.01)
    chunk = math.ceil(STARTUP_S / (OVERHEAD * seconds))  # the start-up at most OVERHEAD of a task
    why = [f"~{seconds:.3g} s a trial from {source}, {STARTUP_S:g} s to start a task"]
    limit = parse_time(slurm.get("time"))
    if limit is not None and chunk * seconds > limit / 2:
        chunk = max(1, int(limit / 2 // seconds))
        why.append(f"half the time limit {slurm['time']}")
    slots = partition_slots(slurm)
    if slots:
        most = math.ceil(len(pending) / slots)
        if chunk > most:
            chunk = most
            why.append(f"{slots} tasks at once")
    return max(1, min(chunk, len(pending))), ", ".join(why)
