"""``write_report(results, ...)``: tables, statistics and plots of a results folder, in Markdown,
self-contained HTML, LaTeX and CSV, under ``<results>/report/``.

Sections, in order: a search's (``report/search.py``, when the suite has ``random:`` or
``halving:``), a comparison table per compared axis with its figures, sensitivity and interactions,
all groups, diagnostics (``report/diagnostics.py``), trials that did not complete, environment.
The comparisons and statistics cover trials that trained their whole budget: the rungs of
successive halving (``stopped`` at ``budget.stop_after``) are the search section's, and being
planned, are not counted as trials that did not complete."""
from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import pandas as pd

from harness import layout
from harness.errors import UsageError
from harness.report import plots
from harness.report.aggregate import METRICS, Collected, collect, summarize
from harness.report.diagnostics import diagnostics_section
from harness.report.html import render_html
from harness.report.search import search_sections
from harness.report.sections import Drawing, Section, default_jobs, slug
from harness.report.stats import performance_profile, time_to_target
from harness.report.tables import (
    Cell, Table, cell, compare, differences_table, latex_escape, lower_is_better, to_latex, to_markdown,
)
from harness.spec import COMPLETED, STOPPED, WORKLOAD_KEYS
from harness.store.records import atomic_write

FORMATS = ("md", "html", "latex", "csv")
MAX_HEATMAPS = 4


def _baseline(c: Collected, given: str | None) -> tuple[str, str] | None:
    """(axis, row label) of ``--baseline`` or the suite's ``report.baseline``, among the records' rows."""
    from harness.claims import baseline_row

    baseline = given if given is not None else (c.suite.get("report") or {}).get("baseline")
    if baseline is None:
        return None
    return baseline_row(baseline, list(c.axes), [(r.config, r.axes) for r in c.records],
                        "--baseline" if given is not None else "report.baseline")


def _grouped(runs: pd.DataFrame, axis: str, others: list[str]) -> pd.DataFrame:
    """``runs`` with its table ``column`` (``_columns``), and that column's workload part (``_group``) and
    the rest (``_sub``), for a table that shows workloads as row groups."""
    group, rest = _column_parts(runs, axis, others)
    if group is None or not rest:
        return runs.assign(column=_join([group] if group is not None else rest, runs))
    return runs.assign(column=_join([group, *rest], runs), _group=group, _sub=_join(rest, runs))


def _columns(runs: pd.DataFrame, axis: str, others: list[str]) -> pd.Series:
    """A table column per workload (dataset/model) × the other varying axes; the workload part is
    left out when the compared axis is the model or dataset itself."""
    group, rest = _column_parts(runs, axis, others)
    return _join(([group] if group is not None else []) + rest, runs)


def _column_parts(runs: pd.DataFrame, axis: str, others: list[str]) -> tuple[pd.Series | None, list[pd.Series]]:
    """A column label's parts: the workload (None when the compared axis is the model or dataset), and
    ``axis=value`` of each other axis, less a dataset or model axis the workload already names."""
    if axis.startswith(("model", "dataset")):
        return None, [f"{a}=" + runs[a].astype(str) for a in others]
    others = [a for a in others if a.split(".")[0] not in WORKLOAD_KEYS or not _named_by_workload(runs, a)]
    return runs["workload"].astype(str), [f"{a}=" + runs[a].astype(str) for a in others]


def _join(parts: list[pd.Series], runs: pd.DataFrame) -> pd.Series:
    if not parts:
        return pd.Series(["all"] * len(runs), index=runs.index)
    label = parts[0]
    for p in parts[1:]:
        label = label + ", " + p
    return label


def _named_by_workload(runs: pd.DataFrame, axis: str) -> bool:
    pairs = runs[[axis, "workload"]].astype(str).drop_duplicates()
    return pairs[axis].is_unique and pairs["workload"].is_unique


def _numeric(values: pd.Series) -> bool:
    return pd.to_numeric(values, errors="coerce").notna().all() and values.nunique() >= 3


def write_report(results: Path, compare_axes: list[str] | None = None, metric: str | None = None, *,
                 by: list[str] | None = None, baseline: str | None = None, formats: tuple[str, ...] = ("md", "html"),
                 bootstrap: bool = False, target: float | None = None, target_metric: str = "val_acc",
                 confidence: float = 0.95, collected: Collected | None = None, jobs: int | None = None,
                 out: Path | None = None) -> list[Path]:
    """Write the report of the records under ``results`` (already ``collected`` if given) into ``out``
    (default ``results/report``), drawing figures in ``jobs`` processes (default: the cores, at most 8);
    returns the files written."""
    results = Path(results)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UsageError(f"unknown report format {unknown[0]!r}; choose from {', '.join(FORMATS)}")
    c = collected if collected is not None else collect(results)
    settings = c.suite.get("report", {})
    metric = metric or settings.get("metric") or "test_acc"
    tuned = (c.suite.get("search") or {}).get("tune")
    if tuned:  # the comparisons are of the final trials; the tuning trials give the tuning section
        from harness.report import tuned as tuned_report

        everything, (c, c_tune) = c, tuned_report.split(c)
    axes = list(c.axes)
    searched = set(((c.suite.get("search") or {}).get("space") or {}))
    # a search's drawn values are one per configuration: the search section ranks them, and the
    # comparison tables compare its grid axes (none without a grid: a table of single cells says nothing)
    chosen = (compare_axes or settings.get("compare") or ([tuned["axis"]] if tuned else [])
              or [a for a in axes if a not in searched] or ([] if searched else ["workload"]))
    chosen = [chosen] if isinstance(chosen, str) else list(chosen)
    by = list(by or [])
    base = _baseline(c, baseline) if c.records else None
    known = set(axes) | {"workload"}
    for a in [*chosen, *by, *([base[0]] if base else [])]:
        if a not in known:
            raise UsageError(f"{results}: no axis {a!r}; the varying axes are {', '.join(sorted(known))}")
    if not c.runs.empty and metric not in c.runs:
        raise UsageError(f"{results}: no metric {metric!r} in the records")
    if target_metric not in METRICS:  # an epoch's metric: the one whose target a trial reaches
        raise UsageError(f"--target-metric {target_metric!r}: expected one of {', '.join(METRICS)}")
    out = Path(out) if out is not None else layout.report_dir(results)
    out.mkdir(parents=True, exist_ok=True)
    name = c.suite.get("name", results.name)
    full = full_budget(c)
    sections: list[Section] = []
    csv: dict[str, pd.DataFrame] = {}
    # one colour per value of each axis in every figure, in the suite's order (records are in plan order)
    colours = {a: plots.palette(list(dict.fromkeys(c.runs[a].astype(str)))) for a in [*axes, "workload"]
               if a in c.runs}
    if c.runs.empty:
        sections.append(Section("No records yet", ["Run the suite to produce records."]))
    with Drawing(default_jobs() if jobs is None else jobs) as draw:
        sections += (tuned_report.sections(c_tune, c.suite["search"], results, out, csv, draw, colours.get(tuned["axis"]))
                     if tuned else search_sections(c, metric, out, csv, draw))
        if full.runs.empty and not c.runs.empty:
            sections.append(Section("No full-budget records yet", ["Every record so far is a rung cut short at "
                                                                   "budget.stop_after: nothing to compare yet."]))
        for axis in ([] if full.runs.empty else chosen):
            sections += _axis_sections(full, axis, [a for a in axes if a != axis and a not in by], by, metric,
                                       base[1] if base and base[0] == axis else None, bootstrap, confidence, out,
                                       csv, draw, colours.get(axis))
            if target is not None:
                sections.append(_time_to_target(full, axis, [a for a in axes if a != axis], target, target_metric))
        if not full.runs.empty:
            sections += _extra_plots(full, chosen, metric, out, draw, colours, skip=searched)
            sections.append(Section("All groups", tables=[_all_groups(full)]))
        claims = _claims(c, results)
        sections += [claims] if claims is not None else []
        diagnostics = diagnostics_section(c, csv)
        sections += [diagnostics] if diagnostics is not None else []
        sections.append(_problems(everything if tuned else c))
        sections.append(_environment(everything if tuned else c))
        for s in sections:
            s.resolve()
    intro = _intro(everything if tuned else c, metric)
    stamp = f"Written {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC from {results}."
    files: list[Path] = []
    if "md" in formats:
        files.append(_write(out / layout.REPORT_FILES["md"], _markdown(name, intro, sections, stamp)))
    if "html" in formats:
        files.append(_write(out / layout.REPORT_FILES["html"], render_html(name, intro, sections, stamp)))
    if "latex" in formats:
        files.append(_write(out / layout.REPORT_FILES["latex"], _latex(sections)))
    if "csv" in formats:
        for key, frame in csv.items():
            path = out / f"{key}.csv"
            atomic_write(path, frame.to_csv(index=False))
            files.append(path)
    files += sorted({f for s in sections for f, _ in s.figures})
    return files


def _claims(c: Collected, results: Path) -> Section | None:
    if not c.suite.get("claims"):
        return None
    from harness.report.claims import claims_section

    return claims_section(c.suite, c.records, results)


def full_budget(c: Collected) -> Collected:
    """``c`` without the rungs of successive halving (trials cut at ``budget.stop_after``): the
    comparison tables and statistics cover trials that trained their whole budget."""
    if c.runs.empty or c.runs["stop_after"].isna().all():
        return c
    keep = c.runs["stop_after"].isna()
    ids = set(c.runs.loc[keep, "trial_id"])
    part = lambda f: f[f["trial_id"].isin(ids)].reset_index(drop=True) if not f.empty else f  # noqa: E731
    return replace(c, runs=c.runs[keep].reset_index(drop=True), curves=part(c.curves), steps=part(c.steps))


def _write(path: Path, text: str) -> Path:
    atomic_write(path, text)  # a reader (or a browser refreshing the page) never sees half a report
    return path


def _intro(c: Collected, metric: str) -> list[str]:
    lines = []
    if c.suite.get("description"):
        lines.append(c.suite["description"].strip())
    status = c.runs["status"].value_counts().to_dict() if not c.runs.empty else {}
    counts = ", ".join(f"{n} {s}" for s, n in status.items()) or "none"
    lines.append(f"{len(c.runs)} trials with records ({counts}); headline metric `{metric}` at the final epoch. "
                 "Cells are the mean ± half-width of the 95% interval over seeds, with n the completed seeds; "
                 "diverged and failed seeds are counted beside them, never averaged in.")
    rungs = int(c.runs["stop_after"].notna().sum()) if not c.runs.empty else 0
    if rungs:
        where = " (shown in the search section)" if c.suite.get("search") else ""
        lines.append(f"{rungs} trials are rungs cut short at budget.stop_after{where}: the comparison tables "
                     "and statistics cover only trials that trained their whole budget.")
    return lines


def _axis_sections(c: Collected, axis: str, others: list[str], by: list[str], metric: str, baseline: str | None,
                   bootstrap: bool, confidence: float, out: Path, csv: dict[str, pd.DataFrame],
                   draw: Drawing, colours: dict[str, tuple] | None = None) -> list[Section]:
    runs = _grouped(c.runs, axis, others)
    if baseline is not None and baseline not in set(runs[axis].astype(str)):
        raise UsageError(f"--baseline: {axis} has no value {baseline!r}; it has "
                         f"{', '.join(dict.fromkeys(runs[axis].astype(str)))}")
    sections = []
    facets = runs.groupby(by, sort=False) if by else [((), runs)]
    summaries, differences = [], []
    for key, part in facets:
        key = key if isinstance(key, tuple) else (key,)
        facet = ", ".join(f"{a}={v}" for a, v in zip(by, key))
        title = f"{metric} by {axis}" + (f" ({facet})" if facet else "")
        comp = compare(part, axis, metric, baseline=baseline, bootstrap=bootstrap, confidence=confidence, title=title)
        section = Section(title, tables=[comp.table])
        if not comp.differences.empty:
            section.tables.append(differences_table(comp.differences, axis, metric))
        summaries.append(comp.summary.assign(**dict(zip(by, key)), metric=metric))
        differences.append(comp.differences.assign(**dict(zip(by, key)), metric=metric))
        sections.append(section)
    csv[f"summary_{axis}"] = pd.concat(summaries, ignore_index=True)
    if any(not d.empty for d in differences):
        csv[f"differences_{axis}"] = pd.concat(differences, ignore_index=True)
    figures = sections[0].pending
    name = slug(axis)
    n_columns = runs["column"].nunique()
    shown = f" Panels: the first {plots.MAX_PANELS} of {n_columns} table columns." if n_columns > plots.MAX_PANELS else ""
    curves = c.curves.assign(column=_columns(c.curves, axis, others)) if not c.curves.empty else c.curves
    steps = c.steps.assign(column=_columns(c.steps, axis, others)) if not c.steps.empty else c.steps
    figures += [
        (draw(plots.learning_curves, curves, axis, out / f"curves_{name}.png", colours=colours),
         f"Learning curves by {axis}: mean over seeds with a 95% band, each seed faint.{shown}"),
        (draw(plots.step_losses, steps, axis, out / f"steps_{name}.png", colours=colours),
         f"Training loss every 16 steps by {axis}, a bias-corrected exponential moving average (span 10 points), "
         f"95% band over seeds.{shown}"),
        (draw(plots.final_metric, runs[runs["status"] == COMPLETED], axis, metric, out / f"final_{name}.png",
              colours=colours),
         f"Final {metric} per group: every completed seed is a dot.{shown}"),
    ]
    summary = csv[f"summary_{axis}"]
    # a profile is over workloads (what is trained, on what, for how long): columns that differ only in
    # another technique (one dataset with three regularizers) are not that
    compared_is_workload = axis == "workload" or axis.split(".")[0] in WORKLOAD_KEYS
    workload_axes = [*([] if compared_is_workload else ["workload"]),
                     *(a for a in others if a.split(".")[0] in WORKLOAD_KEYS)]
    workloads = runs.drop_duplicates("column")[workload_axes].astype(str).drop_duplicates() if workload_axes else []
    if summary["column"].nunique() >= 2 and summary[axis].nunique() >= 2 and len(workloads) >= 2:
        cost = summary.pivot_table(index=axis, columns="column", values="mean", sort=False)
        if not lower_is_better(metric):
            cost = 1 - cost if ((cost >= 0) & (cost <= 1)).all().all() else -cost + cost.max().max() + 1e-12
        figure = draw(plots.profiles, performance_profile(cost), f"performance profile of {axis} on {metric} "
                      f"({'cost' if lower_is_better(metric) else 'error = 1 - ' + metric})", out / f"profile_{name}.png",
                      colours=colours)
        figures.append((figure, f"Performance profiles (Dolan & Moré 2002) of {axis} over the "
                                f"{cost.shape[1]} table columns ({len(workloads)} workloads)."))
    return sections


def _time_to_target(c: Collected, axis: str, others: list[str], target: float, metric: str) -> Section:
    higher = not lower_is_better(metric)
    if not c.curves.empty and metric in c.curves:
        tt = c.runs.merge(time_to_target(c.curves, metric, target, higher), on="trial_id", how="left")
    else:
        tt = c.runs.assign(epoch=float("nan"), seconds=float("nan"))
    tt = tt.assign(column=_columns(tt, axis, others), _row=tt[axis].astype(str))
    g = tt.groupby(["_row", "column"], sort=False)
    cells = g.agg(trials=("trial_id", "size"), reached=("epoch", "count"), epoch=("epoch", "median"),
                  seconds=("seconds", "median"))
    columns = list(dict.fromkeys(tt["column"]))
    table_rows = []
    for row in dict.fromkeys(tt["_row"]):
        row_cells = [Cell(row)]
        for col in columns:
            if (row, col) not in cells.index:
                row_cells.append(Cell(""))
                continue
            r = cells.loc[(row, col)]
            row_cells.append(Cell(f"not reached (0/{r['trials']})" if r["reached"] == 0 else
                                  f"epoch {r['epoch']:g}, {r['seconds']:.1f} s ({r['reached']}/{r['trials']})"))
        table_rows.append(row_cells)
    note = (f"median over the seeds that reached it of the first epoch with {metric} "
            f"{'≥' if higher else '≤'} {target:g}, and of the training seconds until then; (reached/seeds).")
    return Section(f"Time to {metric} {'≥' if higher else '≤'} {target:g} by {axis}",
                   tables=[Table(f"time to target by {axis}", [axis, *columns], table_rows, [note])])


def _extra_plots(c: Collected, chosen: list[str], metric: str, out: Path, draw: Drawing,
                 colours: dict[str, dict[str, tuple]], skip: set[str] = frozenset()) -> list[Section]:
    """Heatmaps of axis pairs and sensitivity to numeric axes; not of the ``skip`` axes (a search's
    drawn values, one per configuration: the search section plots them)."""
    done = c.runs[c.runs["status"] == COMPLETED]
    section = Section("Sensitivity and interactions")
    count = 0
    for axis in chosen:
        for other in [a for a in c.axes if a != axis and a not in skip]:
            if count >= MAX_HEATMAPS or c.runs[axis].nunique() < 2 or c.runs[other].nunique() < 2:
                continue
            summary = summarize(done.assign(**{axis: done[axis].astype(str), other: done[other].astype(str)}),
                                [axis, other], metric).dropna(subset=["mean"])
            if summary[axis].nunique() < 2 or summary[other].nunique() < 2:
                continue
            section.pending.append((draw(plots.heatmap, summary, axis, other, metric,
                                         out / f"heatmap_{slug(axis)}_{slug(other)}.png"),
                                    f"Mean {metric} over {axis} × {other} (averaged over the other axes)."))
            count += 1
    for axis in c.axes:
        if axis not in skip and _numeric(c.runs[axis]):
            hue = next((a for a in c.axes if a != axis and c.runs[a].nunique() <= 8), None)
            section.pending.append((draw(plots.sensitivity, done, axis, hue, metric,
                                         out / f"sensitivity_{slug(axis)}.png", colours=colours.get(hue)),
                                    f"Sensitivity of {metric} to {axis} (log axis), mean and 95% band."))
    return [section] if section.pending else []


def _all_groups(c: Collected) -> Table:
    metrics = ["test_acc", "best_val_acc", "train_loss", "train_s"]
    names = ["test_acc (final)", "val_acc (best epoch)", "train_loss (final)", "train time (s)"]
    if "member_test_acc" in c.runs and c.runs["member_test_acc"].notna().any():
        metrics.insert(1, "member_test_acc")
        names.insert(1, "members' mean test_acc")
    keys = list(dict.fromkeys(["workload", *c.axes] if c.runs["workload"].nunique() > 1 else c.axes))
    summaries = {m: summarize(c.runs.assign(**{m: pd.to_numeric(c.runs[m], errors="coerce")}), keys, m)
                 for m in metrics}
    columns = {m: summaries[m].to_dict("records") for m in metrics}
    base = columns[metrics[0]]
    rows = [[Cell(str(base[i][a])) for a in keys] + [Cell(cell(columns[m][i])) for m in metrics]
            for i in range(len(base))]
    if "fused" in c.runs and c.runs["fused"].any():  # their times are shares of a pack's wall clock: say which
        labelled = c.runs.assign(**{a: c.runs[a].astype(str) for a in keys})
        groups = labelled.groupby(keys, sort=False, dropna=False)["fused"] if keys else [((), labelled["fused"])]
        fused = {(k if isinstance(k, tuple) else (k,)): (int(g.sum()), len(g)) for k, g in groups}
        for row, group in zip(rows, base):
            n_fused, n = fused.get(tuple(str(group[a]) for a in keys), (0, 0))
            row.append(Cell(f"{n_fused} of {n}"))
        names = [*names[:-1], "train time (s; fused: share of the pack's)", "fused"]
    return Table("all groups", [*keys, *names], rows)


def _problems(c: Collected) -> Section:
    section = Section("Trials that did not complete")
    # a stopped rung went as planned: it was not promoted
    bad = c.runs[~c.runs["status"].isin([COMPLETED, STOPPED])] if not c.runs.empty else c.runs
    if len(bad):
        rows = [[Cell(r["trial_id"]), Cell(r["status"]), Cell(", ".join(f"{a}={r[a]}" for a in c.axes)),
                 Cell(str(r["seed"])), Cell(str(r["reason"] or "")[:200])] for _, r in bad.iterrows()]
        section.tables.append(Table("trials that did not complete", ["trial", "status", "axes", "seed", "reason"], rows))
    else:
        section.text.append("Every trial with a record completed" +
                            (" or, as a rung of a search, stopped as planned." if (c.runs["status"] == STOPPED).any()
                             else "."))
    if c.missing:
        section.text.append(f"{len(c.missing)} planned trials have no record yet (run the suite again to finish them).")
    for path, why in c.corrupt.items():
        section.text.append(f"Record left out, unreadable or edited: {path} ({why}); running the suite again replaces it.")
    if c.outside_plan:
        section.text.append(f"{c.outside_plan} records of trials no longer in the suite's plan are left out.")
    return section


def _environment(c: Collected) -> Section:
    if not c.environments:
        return Section("Environment", ["No environment recorded."])
    keys = list(dict.fromkeys(k for e in c.environments for k in e))
    rows = [[Cell(str(e.get(k, ""))) for k in keys] for e in c.environments]
    return Section("Environment", tables=[Table("environments of the runs", keys, rows)])


def _markdown(name: str, intro: list[str], sections: list[Section], stamp: str) -> str:
    lines = [f"# {name}", ""] + [p + "\n" for p in intro]
    for s in sections:
        lines += [f"## {s.title}", ""]
        lines += [p + "\n" for p in s.text]
        for t in s.tables:
            lines += [to_markdown(t), ""]
        lines += [f"![{caption}]({path.name})\n" for path, caption in s.figures]
    return "\n".join(lines + [f"_{stamp}_", ""])


def _latex(sections: list[Section]) -> str:
    """Tables (booktabs) and figures to \\input into a paper; images next to this file."""
    parts = [r"% \usepackage{booktabs,graphicx} in the preamble"]
    for s in sections:
        parts += [to_latex(t) for t in s.tables if t.title not in ("environments of the runs",)]
        for path, caption in s.figures:
            parts.append("\n".join([r"\begin{figure}[t]", r"\centering",
                                    rf"\includegraphics[width=\linewidth]{{{path.name}}}",
                                    rf"\caption{{{latex_escape(caption)}}}",
                                    r"\end{figure}"]))
    return "\n\n".join(parts) + "\n"

