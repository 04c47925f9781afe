"""Statistics against hand-computed values and scipy; tables; the report on real records."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.report import summarize
from harness.report.tables import cell, compare, to_latex, to_markdown


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


def _three(means: dict[str, float], spread: float = 0.005, metric: str = "test_acc") -> pd.DataFrame:
    """Three seeds of each optimizer around its mean, on one column."""
    return pd.DataFrame([{"optimizer": o, "seed": s, "status": "completed", metric: m + d, "column": "w"}
                         for o, m in means.items() for s, d in enumerate((-spread, 0.0, spread))])


def test_the_best_is_bold_only_beyond_its_interval_and_ties_are_marked_as_ties():
    """The best mean was bold even when another row's interval overlapped it (a tie), and on one seed."""
    table = to_markdown(compare(_runs().assign(column="norm=none"), "optimizer", "test_acc").table)
    lines = table.splitlines()
    assert lines[0] == "| optimizer | norm=none |"
    assert lines[2].startswith("| sgd | 0.9100 ± ") and "**" not in table and "_0." not in table  # adam: one seed
    clear = to_markdown(compare(_three({"sgd": 0.80, "adam": 0.90}), "optimizer", "test_acc").table).splitlines()
    assert clear[2].startswith("| sgd | 0.8000 ± ") and clear[3].startswith("| adam | **0.9000 ± ")
    tied = to_markdown(compare(_three({"sgd": 0.899, "adam": 0.90, "rmsprop": 0.70}), "optimizer",
                               "test_acc").table).splitlines()
    assert tied[2].startswith("| sgd | _0.8990") and tied[3].startswith("| adam | _0.9000")
    assert tied[4].startswith("| rmsprop | 0.7000") and "**" not in "\n".join(tied)
    loss = _three({"sgd": 0.3, "adam": 0.1}, metric="test_loss")
    assert "| adam | **0.1000" in to_markdown(compare(loss, "optimizer", "test_loss").table)  # lower is better


def test_ranks_and_mean_ranks_over_the_columns():
    rows = [{"optimizer": o, "seed": s, "status": "completed", "test_acc": m + 0.001 * s, "column": c}
            for c, order in (("a", {"sgd": 0.9, "adam": 0.8, "lion": 0.7}), ("b", {"sgd": 0.7, "adam": 0.8, "lion": 0.6}))
            for o, m in order.items() for s in range(2)]
    table = to_markdown(compare(pd.DataFrame(rows), "optimizer", "test_acc").table).splitlines()
    assert table[0] == "| optimizer | a | b | mean rank |"
    ranks = {line.split("|")[1].strip(): line.split("|")[-2].strip() for line in table[2:5]}
    assert ranks == {"sgd": "1.5", "adam": "1.5", "lion": "3"}


def _seeded(seeds=range(5)):
    """sgd and adam on two workloads, seed effects shared by both: on a/mlp adam is no different,
    on b/mlp it is better by 0.02, with small per-seed jitter."""
    noise = [0.0, 0.03, -0.02, 0.05, -0.04]
    jitter = {"a/mlp": [0.001, -0.002, 0.0015, -0.001, 0.0005], "b/mlp": [0.021, 0.019, 0.022, 0.020, 0.018]}
    rows = []
    for s in seeds:
        for workload, delta in jitter.items():
            rows.append({"optimizer": "sgd", "seed": s, "status": "completed", "test_acc": 0.8 + noise[s],
                         "column": workload})
            rows.append({"optimizer": "adam", "seed": s, "status": "completed", "test_acc": 0.8 + noise[s] + delta[s],
                         "column": workload})
    return pd.DataFrame(rows)


def test_significance_marks_follow_holm_and_pairing():
    comp = compare(_seeded(), "optimizer", "test_acc", baseline="sgd")
    d = comp.differences.set_index("column")
    assert list(d["test"]) == ["paired t", "paired t"]
    pa, pb = d.loc["a/mlp", "p"], d.loc["b/mlp", "p"]
    assert pb < pa
    assert d.loc["b/mlp", "p_holm"] == pytest.approx(2 * pb) and d.loc["a/mlp", "p_holm"] == pytest.approx(pa)
    assert d.loc["b/mlp", "p_holm"] < 0.05 < d.loc["a/mlp", "p_holm"]
    row = [r for r in to_markdown(comp.table).splitlines() if r.startswith("| adam")][0]
    assert row.count("▲") == 1 and "▼" not in row and row.split("|")[-3].strip().endswith("▲")  # on b/mlp only
    b = _seeded().query("column == 'b/mlp'")
    adam, sgd = b[b.optimizer == "adam"].test_acc.to_numpy(), b[b.optimizer == "sgd"].test_acc.to_numpy()
    assert d.loc["b/mlp", "p_improve"] == pytest.approx((adam[:, None] > sgd[None, :]).mean())  # over all pairs
    # without pairing (Welch) the shared seed effects swamp the same difference
    unpaired = _seeded().assign(seed=lambda f: f["seed"] + (f["optimizer"] == "adam") * 100)
    w = compare(unpaired, "optimizer", "test_acc", baseline="sgd").differences.set_index("column")
    assert list(w["test"]) == ["Welch t", "Welch t"] and w.loc["b/mlp", "p"] > 0.05
    # one seed: the difference is shown but nothing is tested or marked
    one = compare(_seeded(seeds=[0]), "optimizer", "test_acc", baseline="sgd")
    assert one.differences["test"].isna().all()
    assert "▲" not in [r for r in to_markdown(one.table).splitlines() if r.startswith("| adam")][0]
    assert "over the 0 tested comparisons" in to_markdown(one.table)


def test_latex_is_booktabs_with_escaped_text():
    comp = compare(_runs().assign(column="w_1 & 50%"), "optimizer", "test_acc", baseline="sgd")
    tex = to_latex(comp.table)
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"w\_1 \& 50\%" in tex and r"$\pm$" in tex and r"\textbf" not in tex  # adam's one seed: no best
    assert r"\textbf{0.9000 $\pm$" in to_latex(compare(_three({"sgd": 0.8, "adam": 0.9}), "optimizer", "test_acc").table)


def test_report_of_a_sweep_where_nothing_completed_lists_the_failures(tmp_path):
    from harness.report import write_report
    from harness.spec import Record, TrialSpec
    from harness.store import write_plan, write_record

    specs = [TrialSpec.make("s", {"x": i}, 0, {"optimizer": f"opt{i}"}) for i in range(3)]
    write_plan(tmp_path, {"name": "s", "axes": ["optimizer"], "report": {}}, specs)
    for spec in specs[:2]:
        write_record(tmp_path, Record(spec.trial_id, "s", 0, "failed", spec.config, dict(spec.axes), reason="boom"))
    gone = TrialSpec.make("s", {"x": "gone"}, 0, {"optimizer": "gone"})
    write_record(tmp_path, Record(gone.trial_id, "s", 0, "completed", gone.config, dict(gone.axes)))  # not planned
    files = write_report(tmp_path)
    text = files[0].read_text()
    assert "Trials that did not complete" in text and text.count("| failed |") == 2
    assert "1 planned trials have no record yet" in text
    assert "1 records of trials no longer in the suite's plan are left out" in text
    assert "— (n=0) [1 failed]" in text


def _study(folder, other, values):
    """A finished study written as records: optimizer (sgd, adam) x ``other`` (``values``) x 3 seeds."""
    from harness.spec import Record, TrialSpec
    from harness.store import write_plan, write_record

    specs, accs = [], {"sgd": 0.80, "adam": 0.85}
    for optimizer in accs:
        for i, value in enumerate(values):
            for seed in range(3):
                config = {"dataset": {"name": "digits"}, "model": {"name": "mlp", "width": 32},
                          "optimizer": {"name": optimizer}, other: value}
                specs.append(TrialSpec.make("st", config, seed, {"optimizer": optimizer, other: str(value)}))
    write_plan(folder, {"name": "st", "axes": ["optimizer", other], "report": {}}, specs)
    for spec in specs:
        axes = dict(spec.axes)
        acc = accs[axes["optimizer"]] + 0.01 * spec.seed + 0.02 * list(map(str, values)).index(axes[other])
        write_record(folder, Record(spec.trial_id, "st", spec.seed, "completed", spec.config, dict(spec.axes),
                                    final={"test_acc": acc}))


def test_a_performance_profile_is_drawn_over_workloads_only_and_its_tau_axis_fits_the_data(tmp_path):
    """It was drawn over one dataset's three regularizers (not workloads) on a τ axis to 2 whatever the data."""
    from harness.report import write_report
    from harness.report.stats import performance_profile

    _study(tmp_path / "reg", "regularizers", ["none", "dropout", "l2"])
    write_report(tmp_path / "reg", ["optimizer"], formats=("md",), jobs=1)
    assert not (tmp_path / "reg" / "report" / "profile_optimizer.png").exists()
    _study(tmp_path / "width", "model.width", [16, 32, 64])
    write_report(tmp_path / "width", ["optimizer"], formats=("md",), jobs=1)
    assert (tmp_path / "width" / "report" / "profile_optimizer.png").exists()
    assert "(3 workloads)" in (tmp_path / "width" / "report" / "report.md").read_text()
    close = performance_profile(pd.DataFrame({"w1": [0.10, 0.11], "w2": [0.12, 0.115]}, index=["a", "b"]))
    assert close.columns[-1] < 1.2 and close.iloc[:, -1].tolist() == [1.0, 1.0]


def test_the_step_loss_smoothing_has_no_jump_where_a_window_fills():
    """A 10-point moving average, cumulative until full, then trailing, dropped a cliff into every curve at
    the point where the first (high) losses left it; the bias-corrected EMA decays smoothly."""
    from harness.report.plots import smooth

    losses = [10.0] + [1.0] * 30
    data = pd.DataFrame({"trial_id": ["a"] * 31 + ["b"] * 31, "loss": losses + losses[::-1]})
    series = smooth(data, 10)
    a = series[data["trial_id"] == "a"].to_numpy()
    drops = -np.diff(a)
    assert (drops > 0).all() and (np.diff(drops) <= 1e-12).all()  # falling, each step by less than the last
    assert a[0] == 10.0 and abs(a[-1] - 1.0) < 0.02
    assert series[data["trial_id"] == "b"].to_numpy()[0] == 1.0  # trials do not leak into each other


def test_a_comparison_with_many_columns_shows_its_workloads_as_row_groups():
    """Nine columns, each repeating its workload, were unreadable (issue 28): past COMPACT_COLUMNS the
    workloads become row groups and each column is one value of the other axes."""
    from harness.report.tables import COMPACT_COLUMNS, compare

    rows = []
    for w in ("digits/mlp", "mnist/mlp"):
        for reg in ("none", "dropout", "l2", "cutout"):
            for opt, base in (("sgd", 0.8), ("adam", 0.9)):
                for seed in range(3):
                    rows.append({"optimizer": opt, "column": f"{w}, regularizers={reg}", "_group": w,
                                 "_sub": f"regularizers={reg}", "status": "completed", "seed": seed,
                                 "test_acc": base + 0.01 * seed})
    frame = pd.DataFrame(rows)
    t = compare(frame, "optimizer", "test_acc").table
    assert 2 * 4 > COMPACT_COLUMNS and t.header[:3] == ["workload", "optimizer", "regularizers=none"]
    assert len(t.header) == 2 + 4 + 1 and len(t.rows) == 4  # 2 workloads x 2 optimizers, 4 columns
    assert [r[0].text for r in t.rows] == ["digits/mlp", "", "mnist/mlp", ""]
    assert all(r[1].text in ("sgd", "adam") for r in t.rows) and t.rows[1][2].bold  # adam best beyond its interval
    few = compare(frame[frame["_sub"].isin(["regularizers=none", "regularizers=l2"])], "optimizer", "test_acc").table
    assert few.header[0] == "optimizer" and len(few.rows) == 2  # 4 columns: the usual layout
