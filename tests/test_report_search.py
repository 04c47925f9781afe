"""The report of a hyperparameter search (random draws, successive halving) and its Diagnostics
section, on the records of real tiny runs (digits, one seed, a 16-unit MLP), each suite run once
in this process. Expected values are computed from the records themselves, not from the report."""
import base64
import json
import math
import shutil

import pandas as pd
import pytest
from conftest import write_suite

HALVING = """
name: hs
seeds: 1
budget: {epochs: 3}
base:
  dataset: {name: digits, val_size: 200, train_subset: 300}
  model: {name: mlp, depth: 1, width: 16}
  optimizer: {name: sgd, lr: 0.05}
  batch_size: 64
grid:
  norm: [none, batchnorm]
random:
  n: 3
  space:
    optimizer.lr: {loguniform: [1.0e-3, 1.0]}
    model.activation: [relu, tanh]
halving: {eta: 3, min_epochs: 1}
"""

# ranked on val_loss: the report's metric is a loss
RANDOM = """
name: rand
seeds: 1
budget: {epochs: 2}
base:
  dataset: {name: digits, val_size: 200, train_subset: 300}
  model: {name: mlp, depth: 1, width: 16}
  optimizer: {name: sgd, lr: 0.05}
  batch_size: 64
random:
  n: 4
  seed: 3
  space:
    optimizer.lr: {loguniform: [1.0e-2, 1.0]}
    model.width: {int: [8, 32]}
report: {metric: test_loss}
"""

# an init far too large for the first configuration: its initial loss is far from ln C
GRID = """
name: gr
seeds: 1
budget: {epochs: 2}
base:
  dataset: {name: digits, val_size: 200, train_subset: 300}
  model: {name: mlp, depth: 1, width: 16}
  optimizer: {name: sgd, lr: 0.05}
  batch_size: 64
grid:
  init: [{name: normal, std: 1.0}, xavier_normal]
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from harness.cli import main
    from harness.report import write_report

    tmp = tmp_path_factory.mktemp("search")
    out = {}
    for name, text in (("hs", HALVING), ("rand", RANDOM), ("gr", GRID)):
        suite = write_suite(tmp, text, f"{name}.yaml")
        assert main(["run", str(suite), "--results", str(tmp / "res"), "--workers", "1", "--no-report"]) == 0
        out[name] = tmp / "res" / name
        write_report(out[name], formats=("md", "html", "csv"))
    return out


def _records(folder):
    return [json.loads(p.read_text()) for p in sorted((folder / "trials").glob("*.json"))]


def _section(folder, title):
    """The Markdown of one ``## title`` section of the report."""
    md = (folder / "report" / "report.md").read_text()
    assert f"\n## {title}\n" in md, title
    return md.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _best_by_validation(records, metric, lower):
    """The axes of the configuration with the best mean ``metric`` over its seeds, among trials that
    completed their whole budget."""
    groups = {}
    for r in records:
        if r["status"] == "completed" and r["config"]["budget"].get("stop_after") is None:
            groups.setdefault(json.dumps(r["axes"], sort_keys=True), []).append(r["final"][metric])
    means = {k: sum(v) / len(v) for k, v in groups.items()}
    return json.loads((min if lower else max)(means, key=means.get)), means


def _label(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@pytest.mark.parametrize("name, metric, lower", [("hs", "val_acc", False), ("rand", "val_loss", True)])
def test_search_section_names_the_best_configuration_by_the_validation_metric(results, name, metric, lower):
    folder = results[name]
    best, means = _best_by_validation(_records(folder), metric, lower)
    assert len(means) >= 2
    text = _section(folder, "Hyperparameter search")
    assert f"Best configuration: {metric} {means[json.dumps(best, sort_keys=True)]:.4f}" in text
    for axis, value in best.items():
        assert f"| {axis} | **{_label(value)}** |" in text
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| rank |")).strip("| ").split(" | ")
    first = dict(zip(header, next(line for line in lines if line.startswith("| **1** |")).strip("| ").split(" | ")))
    assert {a: first[a] for a in best} == {a: _label(v) for a, v in best.items()}
    ranked = pd.read_csv(folder / "report" / "search.csv")
    assert ranked.loc[0, "val"] == pytest.approx(means[json.dumps(best, sort_keys=True)])


def test_the_best_is_chosen_on_validation_data_never_on_test_data(results, tmp_path):
    from harness.report import collect
    from harness.report.search import configurations

    folder = shutil.copytree(results["hs"], tmp_path / "hs", ignore=shutil.ignore_patterns("report"))
    full = {p: json.loads(p.read_text()) for p in (folder / "trials").glob("*.json")}
    full = {p: r for p, r in full.items() if r["status"] == "completed"}
    assert len(full) == 2  # eta 3: two of the six configurations trained the whole 3 epochs
    (best_path, best), (other_path, other) = sorted(full.items(), key=lambda kv: -kv[1]["final"]["val_acc"])
    other["final"]["test_acc"] = best["final"]["test_acc"] + 0.3  # the runner-up now wins on test data
    other_path.write_text(json.dumps(other))
    top = configurations(collect(folder), "val_acc").iloc[0]
    assert {a: top[a] for a in best["axes"]} == best["axes"]
    other["final"]["val_acc"] = best["final"]["val_acc"] + 0.01  # and now on validation data
    other_path.write_text(json.dumps(other))
    top = configurations(collect(folder), "val_acc").iloc[0]
    assert {a: top[a] for a in other["axes"]} == other["axes"]


def test_search_figures_exist_and_are_in_the_markdown_and_the_html(results):
    expected = {"hs": ["search_parallel.png", "search_sensitivity.png", "search_halving.png"],
                "rand": ["search_parallel.png", "search_sensitivity.png"]}
    for name, figures in expected.items():
        out = results[name] / "report"
        md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
        for png in figures:
            assert (out / png).stat().st_size > 5000, png
            assert f"]({png})" in md
            assert base64.b64encode((out / png).read_bytes()).decode("ascii") in page, png  # embedded, the same image
        assert ("search_halving.png" in md) == (name == "hs")
    assert "Parallel coordinates" in (results["hs"] / "report" / "report.html").read_text()


def test_stopped_rungs_are_not_failures_and_stay_out_of_the_main_tables(results):
    from harness.report import collect, summarize

    folder = results["hs"]
    records = _records(folder)
    stopped = [r for r in records if r["status"] == "stopped"]
    completed = [r for r in records if r["status"] == "completed"]
    assert len(stopped) == 6 and len(completed) == 2
    lrs = lambda rs: {_label(r["axes"]["optimizer.lr"]) for r in rs}  # noqa: E731
    only_stopped = lrs(stopped) - lrs(completed)
    assert only_stopped  # configurations that were never promoted
    for title in ("test_acc by norm", "All groups"):
        text = _section(folder, title)
        assert "failed" not in text and "n=0" not in text
        assert not any(lr in text for lr in only_stopped), title
    summary = pd.read_csv(folder / "report" / "summary_norm.csv")
    assert summary["n"].sum() == len(completed) and summary["failed"].sum() == 0
    assert summarize(collect(folder).runs, ["norm"], "test_acc")["failed"].sum() == 0
    problems = _section(folder, "Trials that did not complete")
    assert not any(r["trial_id"] in problems for r in stopped) and "stopped as planned" in problems
    rungs = _section(folder, "Successive halving: rungs")
    assert "Bracket s=1: 6 × 1 → 2 × 3 epochs" in rungs


def test_diagnostics_section_lists_the_warnings_records_hold_and_nothing_else(results):
    records = _records(results["gr"])
    warned = [r for r in records if r["diagnostics"].get("warnings")]
    clean = [r for r in records if not r["diagnostics"].get("warnings") and not r["diagnostics"].get("flags")]
    assert warned and clean
    text = _section(results["gr"], "Diagnostics")
    for r in warned:
        row = next(line for line in text.splitlines() if line.startswith(f"| init={r['axes']['init']} |"))
        assert "initial loss far from ln C" in row and "| 1 of 1 |" in row
        assert f"{r['diagnostics']['init_loss']:.3g} (ln C {r['diagnostics']['ln_classes']:.3g})" in row
        assert r["diagnostics"]["warnings"][0][:60] in row
    for r in clean:
        assert f"init={r['axes']['init']}" not in text
    assert f"{len(warned)} of {len(records)} configurations raised a warning or flag" in text
    # a search with nothing raised says so in one line
    hs = [r["diagnostics"] for r in _records(results["hs"])]
    if not any(d.get("warnings") or d.get("flags") for d in hs):
        assert "No warnings or flags in any of the 6 runs." in _section(results["hs"], "Diagnostics")


def test_a_grid_suite_has_no_search_section(results):
    out = results["gr"] / "report"
    md = (out / "report.md").read_text()
    assert "Hyperparameter search" not in md and "halving" not in md.lower()
    assert not list(out.glob("search_*")) and not (out / "search.csv").exists()
    assert "## test_acc by init" in md  # the ordinary comparison is all there


def test_a_search_without_a_grid_compares_no_drawn_values_in_tables(results):
    md = (results["rand"] / "report" / "report.md").read_text()
    assert "## test_loss by" not in md  # a drawn value is one configuration: ranked above, not tabled
    assert "## All groups" in md
    assert math.isfinite(pd.read_csv(results["rand"] / "report" / "search.csv")["val"].iloc[0])
