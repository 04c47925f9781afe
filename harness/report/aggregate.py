"""Records → tidy pandas tables → statistics over seeds.

``collect`` gives one row per trial (``runs``: the varying axes as columns, the workload
(dataset/model), final and best metrics, timing, status, the initial loss against ln C, and
``run_id``/``stop_after``, which tie the rungs of successive halving to their run), one row per
trial-epoch (``curves``), one per logged step window (``steps``) and one per warning or flag of
the engine's diagnostics (``diagnostics``). ``summarize`` groups runs (every axis but the seed)
and gives n, mean, std, an interval (t or bootstrap) and the median of a metric over the
completed seeds, and counts the diverged and failed seeds of each group, so they are shown
rather than silently dropped.
"""
from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.layout import plan_path
from harness.report.stats import describe_groups
from harness.spec import COMPLETED, DIVERGED, FAILED, INTERRUPTED, Record, run_id_of
from harness.errors import ConfigError, UsageError
from harness.store import scan
from harness.store.records import atomic_write, check_plan_claims, read_regular

METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")


@dataclass
class Collected:
    runs: pd.DataFrame
    curves: pd.DataFrame
    axes: list[str]
    suite: dict[str, Any] = field(default_factory=dict)
    steps: pd.DataFrame = field(default_factory=pd.DataFrame)
    environments: list[dict[str, Any]] = field(default_factory=list)  # distinct environments, with counts
    missing: list[str] = field(default_factory=list)  # planned trials with no record yet
    corrupt: dict[str, str] = field(default_factory=dict)  # record file -> why it did not parse
    outside_plan: int = 0  # records of trials no longer in the suite's plan
    diagnostics: pd.DataFrame = field(default_factory=pd.DataFrame)  # trial_id, kind, issue, message
    records: list[Record] = field(default_factory=list)  # the records read, in plan order (a suite's claims)


def workload(config: dict[str, Any]) -> str:
    """``dataset/model``, e.g. ``cifar10/resnet20``: what a trial trains on what."""
    model = config.get("model", {})
    name = model.get("name", "?")
    if name in ("resnet", "wrn") and "depth" in model:
        name = f"{name}{model['depth']}" + (f"-{model['widen']}" if "widen" in model else "")
    return f"{config.get('dataset', {}).get('name', '?')}/{name}"


ENVIRONMENT_KEYS = ("device", "torch", "python", "host", "git_sha", "accelerate")


def _row(record: Record, axes: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"trial_id": record.trial_id, "seed": record.seed, "status": record.status,
                           "reason": record.reason, "workload": workload(record.config)}
    row.update({a: record.axes.get(a) for a in axes})
    row.update({m: record.final.get(m) for m in METRICS})
    row["member_test_acc"] = record.final.get("member_test_acc")  # ensembles: the members' mean
    row.update({f"best_{k}": record.best.get(k) for k in ("epoch", "val_acc", "val_loss", "test_acc", "test_loss")})
    row["epochs"] = len(record.history)
    row["train_s"] = record.timing.get("train_s")  # a fused trial's: its share of its pack's (harness.fused.pack)
    row["fused"] = bool((record.environment.get("fused") or {}).get("pack"))
    row["eval_s"] = record.timing.get("eval_s")
    row["steps"] = record.timing.get("steps")
    row["diverged_step"] = record.diverged_step
    stop_after = (record.config.get("budget") or {}).get("stop_after")
    row["stop_after"] = stop_after  # a rung of successive halving: the run cut at this epoch
    # hashing only the rungs: every other trial is its own run, and a report may read 10,000
    row["run_id"] = record.trial_id if stop_after is None else run_id_of(record.config, record.seed)
    row["init_loss"] = record.diagnostics.get("init_loss")
    row["ln_classes"] = record.diagnostics.get("ln_classes")
    return row


def _issue(message: str, flag_kind: str | None = None) -> str:
    """What a warning or flag is about, the same for every seed that raises it: a flag's kind and
    layer (``large updates: 4.weight``); for a warning, its text before the advice after the colon,
    or a name for the initial-loss warning, whose numbers differ by seed."""
    if flag_kind:
        what, _, layer = flag_kind.partition(":")
        return f"{what}: {layer}" if layer else what
    if message.startswith("initial loss"):
        return "initial loss far from ln C"
    return message.split(":")[0]


def _diagnostics(records: list[Record]) -> pd.DataFrame:
    """One row per warning and flag of each record. The engine appends a flag's message and its
    kind (``flag_kinds``) together, the first time each layer raises it."""
    rows = []
    for r in records:
        d = r.diagnostics or {}
        for message in d.get("warnings") or []:
            rows.append((r.trial_id, "warning", _issue(message), message))
        flags, kinds = d.get("flags") or [], d.get("flag_kinds") or []
        for i, message in enumerate(flags):
            kind = kinds[i] if len(kinds) == len(flags) else None
            rows.append((r.trial_id, "flag", _issue(message, kind), message))
    return pd.DataFrame(rows, columns=["trial_id", "kind", "issue", "message"])


def _per_trial(records: list[Record], axes: list[str], counts: list[int], frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (rows of every record in turn: its history, its step windows, ``counts`` per record)
    with the trial's identity columns, built column-wise: a dict per row would cost seconds for
    10,000 trials."""
    if frame.empty:
        return frame
    repeat = lambda values: np.repeat(np.asarray(values, dtype=object), counts)  # noqa: E731
    ident = {"trial_id": repeat([r.trial_id for r in records]), "seed": np.repeat([r.seed for r in records], counts),
             "workload": repeat([workload(r.config) for r in records]),
             **{a: repeat([r.axes.get(a) for r in records]) for a in axes}}
    return pd.concat([pd.DataFrame(ident), frame], axis=1)


def _planned(plan_file: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The suite of a plan and its trials' axes by trial id, in plan order; a hand-edited or torn plan is bad
    input, not a traceback."""
    try:
        plan = json.loads(read_regular(plan_file))
        suite, axes = plan["suite"], {t["trial_id"]: t.get("axes") for t in plan["trials"]}
        if not isinstance(suite, dict) or not all(isinstance(i, str) for i in axes):
            raise TypeError("expected a suite mapping and trial ids")
        check_plan_claims(suite, [t.get("config") or {} for t in plan["trials"]])
        return suite, axes
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise UsageError(f"{plan_file}: not a plan the harness wrote ({type(e).__name__}: {e})") from None
    except ConfigError as e:
        raise UsageError(f"{plan_file}: its claims are not as the harness wrote them ({e})") from None


def collect(results: Path) -> Collected:
    results = Path(results)
    found = scan(results)
    plan_file = plan_path(results)
    records = found.records
    suite: dict[str, Any] = {}
    missing: list[str] = []
    outside = 0
    if plan_file.exists():
        # The ids as planned (scan checked each record's id against its config and seed), labelled with the
        # plan's axes: axes name what varies in the suite, not the trial, so a record's own (written by an
        # older version of the suite, or swapped by hand) never puts it in another row
        suite, planned = _planned(plan_file)
        for tid, axes in planned.items():
            if tid in records and isinstance(axes, dict) and records[tid].axes != axes:
                records[tid] = dataclasses.replace(records[tid], axes=axes)
        missing = [tid for tid in planned if tid not in records]
        outside = sum(1 for tid in records if tid not in planned)
        records = {tid: records[tid] for tid in planned if tid in records}  # plan order
        axes = list(suite.get("axes", []))
    else:
        axes = sorted({a for r in records.values() for a in r.axes})
    rows = [_row(r, axes) for r in records.values()]
    chosen = list(records.values())
    history = [h for r in chosen for h in r.history]
    curves = _per_trial(chosen, axes, [len(r.history) for r in chosen], pd.DataFrame(history))
    windows = np.asarray([w for r in chosen for w in r.steps], dtype=float).reshape(-1, 2)  # [step, mean loss]
    steps = _per_trial(chosen, axes, [len(r.steps) for r in chosen],
                       pd.DataFrame({"step": windows[:, 0].astype(np.int64), "loss": windows[:, 1]}))
    runs = pd.DataFrame(rows) if rows else pd.DataFrame(
        columns=["trial_id", "seed", "status", "reason", "workload", *axes, *METRICS])
    environments: dict[tuple, int] = {}
    for r in records.values():
        key = tuple((k, str(r.environment.get(k))) for k in ENVIRONMENT_KEYS if r.environment.get(k) is not None)
        environments[key] = environments.get(key, 0) + 1
    envs = [{**dict(k), "trials": n} for k, n in environments.items()]
    corrupt = {str(p): why for p, why in found.corrupt.items()}
    return Collected(runs, curves, axes, suite, steps, envs, missing, corrupt, outside, _diagnostics(chosen), chosen)


def write_runs(c: Collected, out: Path, csv: bool = False) -> pd.DataFrame:
    """The table of runs written to ``out`` (CSV when ``csv`` or a .csv name, else parquet); the table."""
    runs = c.runs.drop(columns=["reason"]).assign(reason=c.runs["reason"])  # long text last
    for axis in c.axes:  # parquet columns have one type: labels of mixed types become text
        if not pd.api.types.is_numeric_dtype(runs[axis]):
            runs[axis] = runs[axis].map(lambda v: None if v is None else str(v))
    if csv or out.suffix == ".csv":
        atomic_write(out, runs.to_csv(index=False))  # a reader never sees half a table
    else:
        buffer = io.BytesIO()
        runs.to_parquet(buffer, index=False)
        atomic_write(out, buffer.getvalue())
    return runs


def summarize(runs: pd.DataFrame, by: list[str], metric: str, bootstrap: bool = False,
              confidence: float = 0.95) -> pd.DataFrame:
    """One row per group of ``by``: n (completed seeds), mean, std, CI, median, diverged, failed."""
    if not by:
        runs, by = runs.assign(_all=""), ["_all"]
    flags = runs.assign(diverged=runs["status"] == DIVERGED, failed=runs["status"].isin([FAILED, INTERRUPTED]))
    counts = flags.groupby(by, sort=False, dropna=False)[["diverged", "failed"]].sum().reset_index()
    stats = describe_groups(runs[runs["status"] == COMPLETED], by, metric, confidence, bootstrap)
    out = counts.merge(stats, on=by, how="left", sort=False)
    out["n"] = out["n"].fillna(0).astype(int)
    columns = [*by, "n", "mean", "std", "ci_low", "ci_high", "median", "diverged", "failed"]
    return out[columns].drop(columns=["_all"], errors="ignore")
