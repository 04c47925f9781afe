"""Statistics against hand-computed values and scipy; tables; the report on real records."""
import math

import pandas as pd
import pytest
from scipy import stats

from harness.report import summarize, t_interval
from harness.report.tables import cell, comparison_table


def test_t_interval_matches_scipy_and_hand_computation():
    values = [0.90, 0.92, 0.94]
    low, high = t_interval(values)
    # mean 0.92, s = 0.02, t(0.975, 2) = 4.302653, half-width = 4.302653 * 0.02 / sqrt(3)
    assert (high - low) / 2 == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-5)
    assert (low, high) == pytest.approx(stats.t.interval(0.95, 2, loc=0.92, scale=stats.sem(values)))


def test_one_seed_has_no_interval_and_identical_values_have_zero_width():
    assert all(math.isnan(v) for v in t_interval([0.5]))
    assert t_interval([0.5, 0.5, 0.5]) == (0.5, 0.5)


def _runs():
    return pd.DataFrame([
        {"optimizer": "sgd", "norm": "none", "seed": 0, "status": "completed", "test_acc": 0.90},
        {"optimizer": "sgd", "norm": "none", "seed": 1, "status": "completed", "test_acc": 0.92},
        {"optimizer": "sgd", "norm": "none", "seed": 2, "status": "diverged", "test_acc": None},
        {"optimizer": "adam", "norm": "none", "seed": 0, "status": "completed", "test_acc": 0.95},
        {"optimizer": "adam", "norm": "none", "seed": 1, "status": "failed", "test_acc": None},
    ])


def test_summary_counts_only_completed_seeds_and_shows_the_others():
    s = summarize(_runs(), ["optimizer", "norm"], "test_acc").set_index("optimizer")
    assert s.loc["sgd", "n"] == 2 and s.loc["sgd", "mean"] == pytest.approx(0.91)
    assert s.loc["sgd", "diverged"] == 1 and s.loc["adam", "failed"] == 1
    assert s.loc["adam", "n"] == 1 and math.isnan(s.loc["adam", "ci_low"])
    assert cell(s.loc["sgd"]).endswith("(n=2) [1 diverged]")
    assert cell(s.loc["adam"]) == "0.9500 (n=1) [1 failed]"


def test_comparison_table_bolds_the_best_mean_per_column():
    s = summarize(_runs(), ["optimizer", "norm"], "test_acc")
    table = comparison_table(s, "optimizer", ["norm"], "test_acc")
    lines = table.splitlines()
    assert lines[0] == "| optimizer | norm=none |"
    assert lines[2].startswith("| sgd | 0.9100 ± ") and "**" not in lines[2]
    assert lines[3].startswith("| adam | **0.9500 (n=1)")
    loss = summarize(_runs().assign(test_loss=[0.3, 0.2, None, 0.1, None]), ["optimizer", "norm"], "test_loss")
    assert "**" in comparison_table(loss, "optimizer", ["norm"], "test_loss").splitlines()[3]  # lower is better


def test_report_of_a_sweep_where_nothing_completed_lists_the_failures(tmp_path):
    from harness.report import write_report
    from harness.spec import Record, TrialSpec
    from harness.store import write_plan, write_record

    specs = [TrialSpec.make("s", {"x": i}, 0, {"optimizer": f"opt{i}"}) for i in range(3)]
    write_plan(tmp_path, {"name": "s", "axes": ["optimizer"], "report": {}}, specs)
    for spec in specs[:2]:
        write_record(tmp_path, Record(spec.trial_id, "s", 0, "failed", spec.config, dict(spec.axes), reason="boom"))
    write_record(tmp_path, Record("0123456789ab", "s", 0, "completed", {}, {"optimizer": "gone"}))  # not planned
    files = write_report(tmp_path)
    text = files[0].read_text()
    assert "Trials that did not complete" in text and text.count("| failed |") == 2
    assert "1 planned trials have no record yet" in text
    assert "1 records of trials no longer in the suite's plan are left out" in text
    assert "— (n=0) [1 failed]" in text
