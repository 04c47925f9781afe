"""The report of a hyperparameter search (a suite with ``random:`` and/or ``halving:``; see
``harness.search``): what it found and how it spent its epochs.

- The best configuration by the search's own validation metric (``halving.metric``; without
  halving val_acc, or val_loss when the report's metric is a loss). Never a test metric: choosing on
  test data would bias the test number reported beside it (Bergstra & Bengio 2012 report the
  test score of the configuration chosen on validation data, as here).
- The top configurations, the best per grid value where the search is crossed with a grid, a
  parallel-coordinates plot (Inselberg 1985) and the metric against each hyperparameter.
- Under successive halving or Hyperband (Li et al. 2017): how many configurations trained how
  many epochs in each rung of each bracket, and every run's validation curve with its rungs.

A configuration is one value of every axis (searched keys and grid axes) over its seeds. Under
halving its rungs are records of one run each (``run_id``): it is ranked by the rung it reached,
further first, then by the mean over seeds of the metric at the end of that rung, which is how the
search itself promoted configurations; one with a diverged or failed seed ranks after the others
of its rung.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.report import plots
from harness.report.aggregate import Collected
from harness.report.sections import Drawing, Section
from harness.report.tables import Cell, Table, lower_is_better
from harness.spec import COMPLETED, STOPPED, component_name

TOP = 10
LOG = ("loguniform", "logint")


def selection_metric(search: dict[str, Any], report_metric: str) -> str:
    """The validation metric the search ranks by (see the module docstring)."""
    if search.get("halving"):
        return search.get("metric") or search["halving"]["metric"]
    return "val_loss" if lower_is_better(report_metric) else "val_acc"


def _test_metric(metric: str) -> str:
    return "test_" + metric.split("_", 1)[1]


def _label(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _metric(value: float) -> str:
    return "—" if pd.isna(value) else f"{value:.4f}"


def configurations(c: Collected, metric: str) -> pd.DataFrame:
    """A row per configuration, best first: its axes, ``epochs`` (trained to the furthest rung it
    reached), ``full`` (that rung is the whole budget), mean ``val`` and ``test`` over the seeds
    that finished the rung, ``ok``/``trials`` (seeds that did, of those run), ``bracket``."""
    axes, runs = list(c.axes), c.runs
    if runs.empty:
        return pd.DataFrame(columns=[*axes, "epochs", "full", "val", "test", "ok", "trials", "bracket", "rank"])
    key = _config_key(runs, axes)
    ok = runs["status"].isin([COMPLETED, STOPPED])
    test = _test_metric(metric)
    r = runs.assign(_key=key, _rung=pd.to_numeric(runs["stop_after"], errors="coerce").fillna(math.inf), _ok=ok,
                    _val=pd.to_numeric(runs[metric], errors="coerce").where(ok),
                    _test=pd.to_numeric(runs[test], errors="coerce").where(ok) if test in runs else np.nan,
                    bracket=runs["run_id"].map(_brackets(c)))
    at = r[r["_rung"] == r.groupby("_key", sort=False)["_rung"].transform("max")]  # the furthest rung
    out = at.groupby("_key", sort=False).agg(
        **{a: (a, "first") for a in axes}, epochs=("epochs", "max"), rung=("_rung", "first"),
        val=("_val", "mean"), test=("_test", "mean"), ok=("_ok", "sum"), trials=("trial_id", "size"),
        bracket=("bracket", "first")).reset_index(drop=True)
    out["full"] = np.isinf(out["rung"]) & (out["ok"] > 0)
    higher = not lower_is_better(metric)
    score = (-out["val"] if higher else out["val"]).fillna(math.inf)
    out = out.assign(_clean=out["ok"] == out["trials"], _score=score)
    out = out.sort_values(["full", "rung", "_clean", "_score"], ascending=[False, False, False, True], kind="stable")
    out = out.drop(columns=["_clean", "_score", "rung"]).reset_index(drop=True)
    out["rank"] = np.arange(1, len(out) + 1)
    return out


def _config_key(runs: pd.DataFrame, axes: list[str]) -> pd.Series:
    """One text per configuration: its value of every axis."""
    return runs[axes].astype(str).agg("\x1f".join, axis=1) if axes else pd.Series("", index=runs.index)


def _brackets(c: Collected) -> dict[str, int]:
    """run_id → bracket s, from the plan's rung-0 trials of each configuration."""
    search = c.suite.get("search") or {}
    run_of = dict(zip(c.runs["trial_id"], c.runs["run_id"]))
    return {run_of[t]: b["s"] for b in search.get("brackets") or [] for seeds in b["configs"] for t in seeds
            if t in run_of}


def _dims(c: Collected) -> tuple[dict[str, dict], list[str]]:
    """The plot axes of every varying axis (searched keys with their distribution's scale and range;
    grid axes as categories), and the grid axes."""
    space = (c.suite.get("search") or {}).get("space") or {}
    dims: dict[str, dict] = {}
    for key, d in space.items():
        if d["dist"] == "choice":
            dims[key] = {"scale": "category", "order": [_choice_label(v) for v in d["values"]]}
        else:
            dims[key] = {"scale": "log" if d["dist"] in LOG else "linear", "low": d["low"], "high": d["high"]}
    grid = [a for a in c.axes if a not in space and c.runs[a].astype(str).nunique() > 1]
    for a in grid:
        dims[a] = {"scale": "category", "order": list(dict.fromkeys(c.runs[a].astype(str)))}
    return dims, grid


def _epochs(n: int) -> str:
    return f"{n} epoch{'s' * (n != 1)}"


def _choice_label(value: Any) -> str:
    """How a record's axes label a choice (suite.py ``_labels``): a name for a component's mapping."""
    return component_name(value) or str(value)


def _searched(d: dict[str, Any]) -> str:
    if d["dist"] == "choice":
        return "choice of " + ", ".join(_choice_label(v) for v in d["values"])
    return f"{d['dist']} [{d['low']:g}, {d['high']:g}]"


def search_sections(c: Collected, report_metric: str, out: Path, csv: dict[str, pd.DataFrame],
                    draw: Drawing) -> list[Section]:
    """The sections of a search; none for a suite without one."""
    search = c.suite.get("search")
    if not search or c.runs.empty:
        return []
    metric = selection_metric(search, report_metric)
    if metric not in c.runs:
        return [Section("Hyperparameter search", [f"The records have no {metric}, which the search ranks by."])]
    higher = not lower_is_better(metric)
    configs = configurations(c, metric)
    dims, grid = _dims(c)
    space = search.get("space") or {}
    csv["search"] = configs
    best = configs.iloc[0] if len(configs) and configs.iloc[0]["full"] else None
    configs = configs.assign(best=configs["rank"] == 1 if best is not None else False)
    section = Section("Hyperparameter search", _summary(search, configs, grid, metric))
    if best is None:
        section.text.append("No configuration has trained its whole budget yet: the table ranks them as they stand.")
    else:
        section.text.append(_best_line(best, metric))
        section.tables.append(_best_table(best, dims, space, c.axes))
    section.tables.append(_top_table(configs, c.axes, metric, higher, bool(search.get("halving"))))
    if grid and space and best is not None:
        section.tables.append(_per_grid_table(configs, grid, [a for a in c.axes if a not in grid], metric))
    epochs = configs["epochs"].astype(int).map(_epochs)
    halving = bool(search.get("halving"))
    hue = "trained" if halving else next((a for a in grid if configs[a].astype(str).nunique() <= 8), None)
    drawn = configs.assign(trained=epochs, **{metric: configs["val"]})
    what = "at the furthest rung it reached (configurations that trained the whole budget drawn strong)" \
        if halving else "at the end of training"
    section.pending += [
        (draw(plots.parallel_coordinates, drawn, dims, metric, higher, out / "search_parallel.png"),
         f"Parallel coordinates: a line per configuration through its hyperparameters, coloured by {metric} "
         f"{what}; the best in red. Log axes for log-scale draws."),
        (draw(plots.hyperparameter_scatter, drawn, dims, metric, hue, out / "search_sensitivity.png"),
         f"Sensitivity: {metric} of each configuration against each hyperparameter (log x for log-scale draws, "
         f"a strip for choices){', coloured by the epochs it trained' if halving else ''}; the best starred."),
    ]
    sections = [section]
    if halving:
        sections.append(_halving_section(c, search, metric, out, draw))
    return sections


def _summary(search: dict[str, Any], configs: pd.DataFrame, grid: list[str], metric: str) -> list[str]:
    space = search.get("space") or {}
    halving = search.get("halving")
    parts = []
    if space:
        drawn = f"{search['n']} draws" if search.get("n") else "fresh draws for each bracket"
        crossed = f", crossed with the grid axes {', '.join(grid)}" if grid else ""
        parts.append(f"Random search (Bergstra & Bengio 2012) over {len(space)} hyperparameters: {drawn} "
                     f"(seed {search.get('seed', 0)}){crossed}")
    if halving:
        name = "Hyperband (Li et al. 2017)" if halving["method"] == "hyperband" else "Successive halving"
        parts.append(f"{name} with eta={halving['eta']}, from {halving['min_epochs']} to {halving['max_epochs']} "
                     f"epochs, promoting by the mean {metric} over seeds")
    ranked = f"{len(configs)} configurations, ranked by the mean {metric} over seeds (a validation metric: " \
             "the test metric is reported, never used to choose)."
    return ["; ".join(parts) + ". " + ranked]


def _best_line(best: pd.Series, metric: str) -> str:
    test = _test_metric(metric)
    seeds = f"{int(best['ok'])} seed{'s' * (int(best['ok']) != 1)}"
    return (f"Best configuration: {metric} {_metric(best['val'])}, {test} {_metric(best['test'])} "
            f"(mean over {seeds}, {int(best['epochs'])} epochs).")


def _best_table(best: pd.Series, dims: dict[str, dict], space: dict[str, Any], axes: list[str]) -> Table:
    rows = []
    for a in axes:
        how = _searched(space[a]) if a in space else ("grid" if a in dims else "fixed")
        rows.append([Cell(a), Cell(_label(best[a]), bold=True), Cell(how)])
    return Table("best configuration", ["hyperparameter", "value", "searched over"], rows)


def _top_table(configs: pd.DataFrame, axes: list[str], metric: str, higher: bool, halving: bool) -> Table:
    test = _test_metric(metric)
    rows = []
    for _, r in configs.head(TOP).iterrows():
        bad = int(r["trials"] - r["ok"])
        rows.append([Cell(str(r["rank"]), bold=bool(r["best"])), *[Cell(_label(r[a])) for a in axes],
                     Cell(str(int(r["epochs"]))), Cell(_metric(r["val"])), Cell(_metric(r["test"])),
                     Cell(f"{int(r['ok'])}/{int(r['trials'])}" + (" (diverged or failed)" if bad else ""))])
    order = ("the furthest rung reached, then " if halving else "") + \
        f"the mean {metric} over seeds ({'higher' if higher else 'lower'} is better)"
    notes = [f"The first {min(TOP, len(configs))} of {len(configs)} configurations, ranked by {order}; "
             f"{test} is the chosen configurations' test score, not a criterion. Seeds: finished/run."]
    return Table(f"top configurations by {metric}", ["rank", *axes, "epochs", metric, test, "seeds"], rows, notes)


def _per_grid_table(configs: pd.DataFrame, grid: list[str], searched: list[str], metric: str) -> Table:
    """The best full-budget configuration at each grid point: the grid compared, each value tuned."""
    test = _test_metric(metric)
    full = configs[configs["full"]]
    best = full.groupby(_config_key(full, grid), sort=False).head(1)  # ranked already: the first is the best
    rows = [[*[Cell(_label(r[a])) for a in grid], Cell(", ".join(f"{a}={_label(r[a])}" for a in searched)),
             Cell(_metric(r["val"])), Cell(_metric(r["test"]))]
            for _, r in best.iterrows()]
    return Table("best configuration at each grid point", [*grid, "best searched values", metric, test], rows,
                 [f"each grid point with its own best searched values by {metric}: the grid compared, each tuned."])


def _halving_section(c: Collected, search: dict[str, Any], metric: str, out: Path, draw: Drawing) -> Section:
    halving = search["halving"]
    brackets = search.get("brackets") or []
    name = "Hyperband" if halving["method"] == "hyperband" else "Successive halving"
    runs = c.runs.assign(bracket=c.runs["run_id"].map(_brackets(c)), _config=_config_key(c.runs, c.axes),
                         _rung=pd.to_numeric(c.runs["stop_after"], errors="coerce").fillna(halving["max_epochs"]))
    lines, table_rows = [], []
    for b in brackets:
        part = runs[runs["bracket"] == b["s"]]
        steps = []
        for i, (epochs, keep) in enumerate(zip(b["rungs"], b["keep"])):
            rung = part[part["_rung"] == epochs]
            trained = rung["_config"].nunique()
            ok = rung[rung["status"].isin([COMPLETED, STOPPED])]
            means = pd.to_numeric(ok[metric], errors="coerce").groupby(ok["_config"], sort=False).mean()
            top = means.min() if lower_is_better(metric) else means.max()  # NaN for none
            steps.append(f"{trained}" + (f" of {keep}" if trained != keep else "") + f" × {epochs}")
            table_rows.append([Cell(str(b["s"])), Cell(str(i)), Cell(str(epochs)), Cell(str(keep)),
                               Cell(str(trained)), Cell(str(len(rung) - len(ok))),
                               Cell(_metric(top))])
        lines.append(f"Bracket s={b['s']}: " + " → ".join(steps) + " epochs (configurations × epochs per rung).")
    furthest = runs.groupby("run_id", sort=False)["epochs"].max()
    every = len(furthest) * halving["max_epochs"]
    lines.append(f"{int(furthest.sum())} epochs of training in all (promoted runs resume their checkpoint), against "
                 f"{every} for training each of the {len(furthest)} runs the whole {halving['max_epochs']} epochs.")
    table = Table("rungs", ["bracket", "rung", "epochs", "planned", "trained", "diverged or failed",
                            f"best {metric}"], table_rows,
                  [f"planned and trained: configurations; diverged or failed: trials; best {metric}: the best "
                   "configuration's mean over seeds at the end of the rung, as promotion ranks them."])
    section = Section(f"{name}: rungs", lines, [table])
    curves, ends = _rung_curves(c, runs, metric)
    section.pending.append((draw(plots.halving_curves, curves, ends, brackets, metric, out / "search_halving.png"),
                            f"{metric} against epochs for every run, a panel per bracket: each run's furthest record "
                            "(a promoted run continues from its checkpoint), a dot where each rung ended; colour: "
                            "how far the run was trained. Dotted lines: the rungs."))
    return section


def _rung_curves(c: Collected, runs: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The curve of each run's furthest record, and the end of every rung record."""
    reached = runs.groupby("run_id", sort=False)["_rung"].transform("max").astype(int)
    runs = runs.assign(reached=reached.map(_epochs), _order=-reached)
    furthest = runs[runs["_rung"] == runs["_rung"].groupby(runs["run_id"]).transform("max")]
    curves = c.curves[c.curves["trial_id"].isin(set(furthest["trial_id"]))] if not c.curves.empty else c.curves
    if curves.empty or metric not in curves:
        return pd.DataFrame(), pd.DataFrame()
    curves = curves[["trial_id", "epoch", metric]].merge(furthest[["trial_id", "run_id", "bracket", "reached"]],
                                                         on="trial_id")
    ends = runs[["bracket", "epochs", metric, "reached", "_order"]]
    return curves, ends
