"""Statistics against hand-computed values and scipy on fixed data."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.report.stats import (
    bootstrap_interval, describe, difference, holm, performance_profile, probability_of_improvement,
    t_interval, time_to_target,
)


def test_t_interval_by_hand_and_one_seed_has_none():
    # mean 2, sample sd 1, n 3: half-width = t_{0.975, 2} * 1/sqrt(3) = 4.302653 * 0.577350 = 2.484138
    low, high = t_interval([1.0, 2.0, 3.0])
    assert (low, high) == pytest.approx((2 - 2.484138, 2 + 2.484138), abs=1e-6)
    one = describe([0.9])
    assert one["n"] == 1 and one["mean"] == 0.9 and math.isnan(one["ci_low"]) and math.isnan(one["std"])
    assert describe([])["n"] == 0 and math.isnan(describe([])["mean"])


def test_bootstrap_interval_is_seeded_and_covers_the_mean():
    x = [0.91, 0.93, 0.92, 0.95, 0.90]
    a, b = bootstrap_interval(x, seed=1), bootstrap_interval(x, seed=1)
    assert a == b and a[0] < np.mean(x) < a[1]
    assert a[0] >= min(x) and a[1] <= max(x)  # a percentile bootstrap of the mean stays inside the data


def test_paired_test_when_seeds_match_welch_otherwise():
    base = {0: 0.90, 1: 0.92, 2: 0.88, 3: 0.91}
    cand = {0: 0.91, 1: 0.94, 2: 0.89, 3: 0.93}
    d = difference(cand, base)
    assert d.test == "paired t"
    assert d.p == pytest.approx(stats.ttest_rel(list(cand.values()), list(base.values())).pvalue)
    diffs = np.array([0.01, 0.02, 0.01, 0.02])  # by hand: mean 0.015, sd 0.005774, se 0.002887
    half = stats.t.ppf(0.975, 3) * diffs.std(ddof=1) / 2
    assert (d.diff, d.ci_low, d.ci_high) == pytest.approx((0.015, 0.015 - half, 0.015 + half))
    shifted = {s + 10: v for s, v in cand.items()}  # different seeds: no pairing
    w = difference(shifted, base)
    assert w.test == "Welch t"
    assert w.p == pytest.approx(stats.ttest_ind(list(cand.values()), list(base.values()), equal_var=False).pvalue)
    # pairing removes the seed-to-seed variance both groups share: a much smaller p
    assert d.p < w.p
    ci = stats.ttest_ind(list(cand.values()), list(base.values()), equal_var=False).confidence_interval(0.95)
    assert (w.ci_low, w.ci_high) == pytest.approx((ci.low, ci.high))


def test_one_seed_gives_no_test():
    d = difference({0: 0.95}, {0: 0.90, 1: 0.91})
    assert d.test is None and math.isnan(d.p) and math.isnan(d.ci_low) and d.diff == pytest.approx(0.045)


def test_holm_by_hand():
    # sorted p: 0.01, 0.02, 0.04 (m = 3): 3*0.01 = 0.03, 2*0.02 = 0.04, 1*0.04 = 0.04; NaN untouched
    assert holm([0.04, 0.01, math.nan, 0.02]) == pytest.approx([0.04, 0.03, math.nan, 0.04], nan_ok=True)
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1, monotone


def test_probability_of_improvement_counts_pairs_and_ties():
    assert probability_of_improvement([3, 4], [1, 2]) == 1.0
    assert probability_of_improvement([1, 2], [1, 2]) == 0.5
    assert probability_of_improvement([2], [1, 2, 3]) == pytest.approx((1 + 0.5) / 3)
    assert probability_of_improvement([0.1], [0.2], higher_is_better=False) == 1.0
    u = stats.mannwhitneyu([0.3, 0.5, 0.5, 0.9], [0.2, 0.5, 0.7]).statistic
    assert probability_of_improvement([0.3, 0.5, 0.5, 0.9], [0.2, 0.5, 0.7]) == pytest.approx(u / 12)


def test_time_to_target_first_epoch_and_seconds():
    h = pd.DataFrame({"trial_id": "a", "epoch": [1, 2, 3, 4], "val_acc": [0.5, 0.8, 0.7, 0.95],
                      "train_time": [1.0, 2.0, 3.0, 4.0]})
    other = pd.DataFrame({"trial_id": "b", "epoch": [2, 1], "val_acc": [0.9, 0.1], "train_time": [5.0, 1.0]})
    both = pd.concat([h, other])
    tt = time_to_target(both, "val_acc", 0.75).set_index("trial_id")
    assert tt.loc["a"].tolist() == [2.0, 3.0] and tt.loc["b"].tolist() == [2.0, 6.0]  # epochs in order, time summed
    assert time_to_target(h, "val_acc", 0.9).iloc[0].tolist()[1:] == [4.0, 10.0]
    assert time_to_target(h, "val_acc", 0.99)[["epoch", "seconds"]].isna().all(axis=None)
    h["val_loss"] = [1.0, 0.5, 0.4, 0.3]
    assert time_to_target(h, "val_loss", 0.45, higher_is_better=False).iloc[0].tolist()[1:] == [3.0, 6.0]


def test_performance_profile_by_definition():
    costs = pd.DataFrame({"w1": [1.0, 2.0, 4.0], "w2": [3.0, 1.5, math.nan]}, index=["a", "b", "c"])
    p = performance_profile(costs, taus=[1.0, 2.0, 4.0])
    # ratios: a (1, 2), b (2, 1), c (4, failed)
    assert p.loc["a"].tolist() == [0.5, 1.0, 1.0]
    assert p.loc["b"].tolist() == [0.5, 1.0, 1.0]
    assert p.loc["c"].tolist() == [0.0, 0.0, 0.5]
