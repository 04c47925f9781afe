"""Ensembles: M independently seeded members, predictions averaged as probabilities.

Member m trains with seed ``trial_seed + MEMBER_SEED_STRIDE · m`` (member 0 is exactly the
single-model trial of the same seed) on the same data split. After every epoch the members'
softmax probabilities on the validation and test sets are averaged; the ensemble's loss is the
cross-entropy of that average and its accuracy the argmax of it (Lakshminarayanan et al. 2017,
section 2.4). The record's val/test metrics are the ensemble's; ``member_*`` fields hold the
members' mean, so both are reported side by side.
"""
from __future__ import annotations

from typing import Callable

import torch

from harness.data import load
from harness.engine.callbacks import Diverged
from harness.spec import COMPLETED, Record, TrialSpec, summarize_history

MEMBER_SEED_STRIDE = 10_000  # far apart, so member seeds never collide with a suite's other seeds

Fit = Callable[[int, Record, list], None]


def _metrics(probs: list[torch.Tensor], y: torch.Tensor) -> tuple[float, float]:
    mean = torch.stack(probs).mean(0)
    loss = torch.nn.functional.nll_loss(mean.clamp_min(1e-12).log(), y).item()
    return loss, (mean.argmax(1) == y).float().mean().item()


def train_ensemble(spec: TrialSpec, record: Record, members: int, fit: Fit) -> None:
    """Train every member with ``fit(seed, member_record, probs)``; combine into ``record``."""

    runs: list[tuple[Record, list[tuple[torch.Tensor, torch.Tensor]]]] = []
    for m in range(members):
        member = Record(spec.trial_id, spec.suite, spec.seed, COMPLETED, spec.config, dict(spec.axes))
        probs: list[tuple[torch.Tensor, torch.Tensor]] = []
        try:
            fit(spec.seed + MEMBER_SEED_STRIDE * m, member, probs)
        except Diverged as e:
            raise Diverged(e.step, f"member {m}: {e.reason}") from None
        runs.append((member, probs))

    data = load(spec.config["dataset"])
    first = runs[0][0]
    record.environment, record.dataset = first.environment, first.dataset
    record.diagnostics = {**first.diagnostics, "members": [
        {"seed": spec.seed + MEMBER_SEED_STRIDE * m, "final": r.final, "best": r.best} for m, (r, _) in enumerate(runs)
    ]}
    for e, entry in enumerate(first.history):
        row = dict(entry)
        for key in ("train_loss", "train_acc", "grad_norm", "val_loss", "val_acc", "test_loss", "test_acc"):
            values = [r.history[e][key] for r, _ in runs if r.history[e].get(key) is not None]
            row[f"member_{key}" if key.startswith(("val", "test")) else key] = sum(values) / len(values)
        row["val_loss"], row["val_acc"] = _metrics([p[e][0] for _, p in runs], data.val[1])
        row["test_loss"], row["test_acc"] = _metrics([p[e][1] for _, p in runs], data.test[1])
        row["train_time"] = sum(r.history[e]["train_time"] for r, _ in runs)
        row["eval_time"] = sum(r.history[e]["eval_time"] for r, _ in runs)
        record.history.append(row)
    summarize_history(record, len(record.history), sum(r.timing["train_s"] for r, _ in runs),
                      sum(r.timing["eval_s"] for r, _ in runs), sum(r.timing["steps"] for r, _ in runs))
