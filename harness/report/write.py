"""``write_report(results)``: ``report/report.md`` and one ``curves_<axis>.png`` per compared axis."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from harness.report.aggregate import Collected, collect, summarize
from harness.report.plots import learning_curves
from harness.report.tables import cell, comparison_table, markdown
from harness.spec import COMPLETED

REPORT_DIR = "report"


def write_report(results: Path, compare: list[str] | None = None, metric: str | None = None) -> list[Path]:
    """Write the report of the records under ``results``; returns the files written."""
    results = Path(results)
    c = collect(results)
    settings = c.suite.get("report", {})
    metric = metric or settings.get("metric") or "test_acc"
    compare = compare or settings.get("compare") or list(c.axes)
    out = results / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    name = c.suite.get("name", results.name)
    lines = [f"# {name}", ""]
    if c.suite.get("description"):
        lines += [c.suite["description"].strip(), ""]
    lines += [f"{len(c.runs)} trials with records; headline metric `{metric}` at the final epoch. "
              "Cells are mean ± half-width of the 95% t-interval over seeds, with n the completed "
              "seeds; diverged and failed seeds are counted beside them, not averaged in.", ""]
    lines += _problems(c)
    if c.runs.empty:
        lines += ["No records yet."]
    else:
        for axis in compare:
            others = [a for a in c.axes if a != axis]
            summary = summarize(c.runs, [axis, *others], metric)
            lines += [f"## {metric} by {axis}", "", comparison_table(summary, axis, others, metric), ""]
            plot = learning_curves(c.curves, axis, others, out / f"curves_{axis}.png")
            if plot is not None:
                files.append(plot)
                lines += [f"![learning curves by {axis}]({plot.name})", ""]
        lines += ["## All groups", "", _all_groups(c), ""]
    lines += [f"_Written {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC from {results}._", ""]
    md = out / "report.md"
    md.write_text("\n".join(lines))
    files.insert(0, md)
    return files


def _problems(c: Collected) -> list[str]:
    lines = []
    bad = c.runs[c.runs["status"] != COMPLETED] if not c.runs.empty else c.runs
    if len(bad):
        lines += ["## Trials that did not complete", ""]
        rows = [[r["trial_id"], r["status"], ", ".join(f"{a}={r[a]}" for a in c.axes), str(r["seed"]),
                 str(r["reason"] or "").replace("|", "\\|")[:200]] for _, r in bad.iterrows()]
        lines += [markdown(["trial", "status", "axes", "seed", "reason"], rows), ""]
    if c.missing:
        lines += [f"**{len(c.missing)} planned trials have no record yet** (run the suite again to finish them).", ""]
    for path, why in c.corrupt.items():
        lines += [f"**Unreadable record left out:** `{path}` ({why}); running the suite again replaces it.", ""]
    if c.outside_plan:
        lines += [f"{c.outside_plan} records of trials no longer in the suite's plan are left out.", ""]
    return lines


def _all_groups(c: Collected) -> str:
    metrics = ["test_acc", "best_val_acc", "train_loss", "train_s"]
    names = ["test_acc (final)", "val_acc (best epoch)", "train_loss (final)", "train time (s)"]
    if "member_test_acc" in c.runs and c.runs["member_test_acc"].notna().any():
        metrics.insert(1, "member_test_acc")
        names.insert(1, "members' mean test_acc")
    summaries = {m: summarize(c.runs.assign(**{m: pd.to_numeric(c.runs[m], errors="coerce")}), c.axes, m)
                 for m in metrics}
    base = summaries[metrics[0]]
    rows = []
    for i in range(len(base)):
        rows.append([str(base[a].iloc[i]) for a in c.axes] + [cell(summaries[m].iloc[i]) for m in metrics])
    return markdown([*c.axes, *names], rows)
