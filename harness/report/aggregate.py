"""Records → tidy pandas tables → statistics over seeds.

``collect`` gives one row per trial (``runs``) and one row per trial-epoch (``curves``).
``summarize`` groups runs by the axes (every axis but the seed) and gives n, mean, std, a 95%
t-interval and the median of a metric over the completed seeds, and counts the diverged and
failed seeds of each group, so they are shown rather than silently dropped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from scipy import stats

from harness.spec import COMPLETED, DIVERGED, FAILED, INTERRUPTED, Record
from harness.store import read_plan, scan

METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")


@dataclass
class Collected:
    runs: pd.DataFrame
    curves: pd.DataFrame
    axes: list[str]
    suite: dict[str, Any] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # planned trials with no record yet
    corrupt: dict[str, str] = field(default_factory=dict)  # record file -> why it did not parse
    outside_plan: int = 0  # records of trials no longer in the suite's plan


def _row(record: Record, axes: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"trial_id": record.trial_id, "seed": record.seed, "status": record.status,
                           "reason": record.reason}
    row.update({a: record.axes.get(a) for a in axes})
    row.update({m: record.final.get(m) for m in METRICS})
    row["member_test_acc"] = record.final.get("member_test_acc")  # ensembles: the members' mean
    row.update({f"best_{k}": record.best.get(k) for k in ("epoch", "val_acc", "val_loss", "test_acc", "test_loss")})
    row["epochs"] = len(record.history)
    row["train_s"] = record.timing.get("train_s")
    row["eval_s"] = record.timing.get("eval_s")
    return row


def collect(results: Path) -> Collected:
    results = Path(results)
    found = scan(results)
    plan = read_plan(results)
    records = found.records
    suite: dict[str, Any] = {}
    missing: list[str] = []
    outside = 0
    if plan is not None:
        suite, specs = plan
        planned = {s.trial_id for s in specs}
        missing = [s.trial_id for s in specs if s.trial_id not in records]
        outside = sum(1 for tid in records if tid not in planned)
        records = {s.trial_id: records[s.trial_id] for s in specs if s.trial_id in records}  # plan order
        axes = list(suite.get("axes", []))
    else:
        axes = sorted({a for r in records.values() for a in r.axes})
    rows = [_row(r, axes) for r in records.values()]
    curve_rows = [
        {"trial_id": r.trial_id, "seed": r.seed, **{a: r.axes.get(a) for a in axes}, **h}
        for r in records.values() for h in r.history
    ]
    runs = pd.DataFrame(rows) if rows else pd.DataFrame(columns=["trial_id", "seed", "status", "reason", *axes, *METRICS])
    curves = pd.DataFrame(curve_rows)
    corrupt = {str(p): why for p, why in found.corrupt.items()}
    return Collected(runs, curves, axes, suite, missing, corrupt, outside)


def t_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """(low, high) of the two-sided t-interval for the mean; NaN for fewer than 2 values."""
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    mean = sum(values) / n
    sem = stats.sem(values)
    if sem == 0:
        return mean, mean
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * sem
    return mean - half, mean + half


def summarize(runs: pd.DataFrame, by: list[str], metric: str) -> pd.DataFrame:
    """One row per group of ``by``: n (completed seeds), mean, std, CI, median, diverged, failed."""
    out = []
    groups = runs.groupby(by, sort=False, dropna=False) if by else [((), runs)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        done = group[group["status"] == COMPLETED][metric].dropna().astype(float).tolist()
        low, high = t_interval(done)
        out.append({
            **dict(zip(by, key)),
            "n": len(done),
            "mean": sum(done) / len(done) if done else math.nan,
            "std": pd.Series(done).std() if len(done) > 1 else math.nan,
            "ci_low": low, "ci_high": high,
            "median": pd.Series(done).median() if done else math.nan,
            "diverged": int((group["status"] == DIVERGED).sum()),
            "failed": int(group["status"].isin([FAILED, INTERRUPTED]).sum()),
        })
    return pd.DataFrame(out)
