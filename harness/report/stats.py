"""Statistics over seeds: intervals, comparisons against a baseline, multiple-testing correction,
probability of improvement, time-to-target and performance profiles.

- Interval of a group mean: Student's t (default) or a percentile bootstrap of the mean (Efron &
  Tibshirani 1993). One seed gives n=1 and no interval, never a made-up one.
- Difference to a baseline group: a paired t-test on per-seed differences when both groups have
  the same seeds (the same seed gives the same data order and init, so pairing removes that
  shared variance), Welch's unequal-variance t-test otherwise (Welch 1947), with the matching
  t-interval of the difference.
- Holm's step-down correction across the comparisons of a table (Holm 1979): controls the
  family-wise error rate without assuming independence.
- Probability of improvement P(X > Y) over all pairs of seeds, ties counting one half: the
  Mann-Whitney statistic over n·m (Agarwal et al. 2021 recommend it over mean differences).
- Time-to-target: the first epoch (and the training seconds until then) at which a trial's
  validation metric reaches a target.
- Performance profiles (Dolan & Moré 2002), as AlgoPerf scores submissions: for each method the
  fraction of workloads on which its cost is within a factor τ of the best method's.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """(low, high) of the two-sided t-interval for the mean; NaN for fewer than 2 values."""
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    mean = float(np.mean(values))
    sem = float(stats.sem(values))
    if sem == 0:
        return mean, mean
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sem
    return mean - half, mean + half


def bootstrap_interval(values: Sequence[float], confidence: float = 0.95, resamples: int = 10_000,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (seeded); NaN for fewer than 2 values."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(1)
    tail = (1 - confidence) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def describe(values: Sequence[float], confidence: float = 0.95, bootstrap: bool = False) -> dict[str, float]:
    """n, mean, std, the interval of the mean, median."""
    x = [float(v) for v in values]
    n = len(x)
    low, high = (bootstrap_interval if bootstrap else t_interval)(x, confidence)
    return {
        "n": n, "mean": float(np.mean(x)) if n else math.nan,
        "std": float(np.std(x, ddof=1)) if n > 1 else math.nan,
        "ci_low": low, "ci_high": high, "median": float(np.median(x)) if n else math.nan,
    }


@dataclass
class Difference:
    """Candidate minus baseline, with the test used (None when there are too few seeds)."""

    diff: float
    ci_low: float
    ci_high: float
    p: float
    test: str | None
    n: int  # seeds of the candidate
    n_baseline: int
    p_improve: float  # P(candidate better than baseline) over seed pairs

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def probability_of_improvement(a: Sequence[float], b: Sequence[float], higher_is_better: bool = True) -> float:
    """P(A better than B) over all pairs (a_i, b_j), ties counting 1/2; NaN if a side is empty."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not len(x) or not len(y):
        return math.nan
    if not higher_is_better:
        x, y = -x, -y
    wins = (x[:, None] > y[None, :]).sum() + 0.5 * (x[:, None] == y[None, :]).sum()
    return float(wins / (len(x) * len(y)))


def t_parts(candidate: dict[int, float], baseline: dict[int, float] | None,
            value: float | None = None, scale: float = 1.0) -> tuple[float, float, float, str]:
    """(effect, its standard error, degrees of freedom, test) of two groups given as {seed: value} with at
    least 2 each, the effect being the candidate's mean minus ``scale`` x the baseline's: paired t on
    d_s = a_s - scale * b_s when the seeds match, Welch otherwise (variance var(a)/n_a + scale^2 var(b)/n_b);
    against a constant ``value`` when ``baseline`` is None (one-sample t). A standard error of 0 means no spread."""
    a = np.asarray(list(candidate.values()), dtype=float)
    if baseline is None:
        return float(a.mean() - value), float(np.std(a, ddof=1) / math.sqrt(len(a))), len(a) - 1, "one-sample t"
    b = np.asarray(list(baseline.values()), dtype=float)
    diff = float(a.mean() - scale * b.mean())
    if set(candidate) == set(baseline):
        d = np.array([candidate[s] - scale * baseline[s] for s in sorted(candidate)])
        return diff, float(np.std(d, ddof=1)) / math.sqrt(len(d)), len(d) - 1, "paired t"
    va, vb = np.var(a, ddof=1) / len(a), scale**2 * np.var(b, ddof=1) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se > 0 else len(a) + len(b) - 2
    return diff, se, float(df), "Welch t"  # Welch-Satterthwaite degrees of freedom (of the scaled variances)


def difference(candidate: dict[int, float], baseline: dict[int, float], confidence: float = 0.95,
               higher_is_better: bool = True) -> Difference:
    """Compare two groups given as {seed: value}: paired t when the seeds match, Welch otherwise."""
    a, b = list(candidate.values()), list(baseline.values())
    p_improve = probability_of_improvement(a, b, higher_is_better)
    diff = float(np.mean(a) - np.mean(b)) if a and b else math.nan
    if len(a) < 2 or len(b) < 2:
        return Difference(diff, math.nan, math.nan, math.nan, None, len(a), len(b), p_improve)
    diff, se, df, test = t_parts(candidate, baseline)
    if se == 0:
        p = 1.0 if diff == 0 else 0.0
        return Difference(diff, diff, diff, p, test, len(a), len(b), p_improve)
    p = float(2 * stats.t.sf(abs(diff) / se, df))  # two-sided; equals scipy's ttest_rel / ttest_ind(equal_var=False)
    q = float(stats.t.ppf(0.5 + confidence / 2, df))
    return Difference(diff, diff - q * se, diff + q * se, p, test, len(a), len(b), p_improve)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (NaN stays NaN and does not count as a test)."""
    p = np.asarray(pvalues, dtype=float)
    valid = np.flatnonzero(~np.isnan(p))
    adjusted = np.full(len(p), math.nan)
    m = len(valid)
    running = 0.0
    for rank, i in enumerate(valid[np.argsort(p[valid], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))  # step-down, kept monotone
        adjusted[i] = running
    return adjusted.tolist()


def time_to_target(curves: pd.DataFrame, metric: str, target: float, higher_is_better: bool = True) -> pd.DataFrame:
    """Per trial: the first ``epoch`` whose ``metric`` reaches ``target`` and the training
    ``seconds`` up to and including it (NaN for trials that never reach it).

    ``curves`` has one row per trial-epoch with ``trial_id``, ``epoch``, ``metric`` and ``train_time``."""
    c = curves[["trial_id", "epoch", metric, "train_time"]].sort_values(["trial_id", "epoch"], kind="stable")
    c = c.assign(seconds=pd.to_numeric(c["train_time"], errors="coerce").groupby(c["trial_id"]).cumsum())
    values = pd.to_numeric(c[metric], errors="coerce")
    reached = c[values >= target] if higher_is_better else c[values <= target]
    first = reached.groupby("trial_id", sort=False)[["epoch", "seconds"]].first()
    trials = pd.Index(c["trial_id"].unique(), name="trial_id")
    return first.reindex(trials).astype(float).reset_index()


def performance_profile(costs: pd.DataFrame, taus: Sequence[float] | None = None) -> pd.DataFrame:
    """Dolan-Moré profiles. ``costs``: rows = methods, columns = workloads, lower is better, NaN =
    failed (never within any τ). Returns rows = methods, columns = τ, values = fraction of workloads
    with cost ≤ τ × the best cost on that workload."""
    best = costs.min(axis=0, skipna=True)
    ratios = costs / best.where(best > 0, other=np.nan)
    ratios = ratios.where(~(costs.eq(best) & best.eq(0)), other=1.0)  # a zero cost that is best is ratio 1
    values = ratios.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    if taus is None:
        top = max(1.01, float(finite.max()) * 1.05) if finite.size else 2.0  # to where every ratio is covered
        taus = np.unique(np.concatenate([[1.0], np.geomspace(1.0, top, 200)]))
    taus = np.asarray(taus, dtype=float)
    within = (np.nan_to_num(values, nan=np.inf)[:, :, None] <= taus[None, None, :]).mean(axis=1)
    return pd.DataFrame(within, index=costs.index, columns=taus.tolist())


def describe_groups(frame: pd.DataFrame, keys: list[str], value: str, confidence: float = 0.95,
                    bootstrap: bool = False) -> pd.DataFrame:
    """``describe`` for every group of ``keys`` at once (vectorized: a report may have thousands
    of groups). Rows with a missing ``value`` are left out; groups keep their first-seen order."""
    data = frame.assign(_v=pd.to_numeric(frame[value], errors="coerce")).dropna(subset=["_v"])
    g = data.groupby(keys, sort=False, dropna=False)["_v"]
    out = g.agg(n="count", mean="mean", std="std", median="median").reset_index()
    n = out["n"].to_numpy()
    q = stats.t.ppf(0.5 + confidence / 2, np.maximum(n - 1, 1))
    half = np.where(n > 1, q * out["std"].fillna(0).to_numpy() / np.sqrt(np.maximum(n, 1)), np.nan)
    out["ci_low"], out["ci_high"] = out["mean"] - half, out["mean"] + half
    out.loc[out["n"] < 2, "std"] = np.nan
    if bootstrap:
        intervals = {key if isinstance(key, tuple) else (key,): bootstrap_interval(v.tolist(), confidence)
                     for key, v in g}
        bounds = [intervals[tuple(row)] for row in out[keys].itertuples(index=False)]
        out["ci_low"], out["ci_high"] = [b[0] for b in bounds], [b[1] for b in bounds]
    return out
