"""The report's Diagnostics section: the warnings and flags the engine's per-layer diagnostics
raised (``harness.engine.diagnostics``: an initial loss far from ln C; vanishing or exploding
gradients, dead or saturated units, large updates), per configuration over its seeds, with the
initial loss against ln C. A rung of successive halving resumes its run's diagnostics, so each run
counts once, through its furthest record.
"""
from __future__ import annotations

import pandas as pd

from harness.report.aggregate import Collected
from harness.report.sections import Section
from harness.report.tables import Cell, Table

MAX_CONFIGS = 30  # configurations listed; the CSV has them all
EXAMPLE_CHARS = 160


def _configuration(runs: pd.DataFrame, axes: list[str]) -> pd.Series:
    if not axes:
        return runs["workload"].astype(str)
    label = f"{axes[0]}=" + runs[axes[0]].astype(str)
    for a in axes[1:]:
        label = label + ", " + f"{a}=" + runs[a].astype(str)
    return label


def _furthest(runs: pd.DataFrame) -> pd.DataFrame:
    rung = pd.to_numeric(runs["stop_after"], errors="coerce").fillna(float("inf"))
    return runs[rung == rung.groupby(runs["run_id"], sort=False).transform("max")]


def diagnostics_section(c: Collected, csv: dict[str, pd.DataFrame]) -> Section | None:
    """None when no record has diagnostics (records from before they existed)."""
    if c.runs.empty or c.runs["ln_classes"].isna().all():
        return None
    axes = [a for a in c.axes if c.runs[a].astype(str).nunique() > 1]
    if c.runs["workload"].nunique() > 1:
        axes = ["workload", *axes]
    runs = _furthest(c.runs).assign(_config=lambda f: _configuration(f, axes))
    section = Section("Diagnostics")
    init = pd.to_numeric(runs["init_loss"], errors="coerce")
    ln_c = pd.to_numeric(runs["ln_classes"], errors="coerce")
    if init.notna().any():
        ratio = init / ln_c
        section.text.append(f"Initial loss (softmax cross-entropy at init on a probe batch, expected about ln C): "
                            f"median {init.median():.3g} against ln C = {ln_c.median():.3g} "
                            f"({ratio.min():.2f}–{ratio.max():.2f}× ln C over {init.notna().sum()} runs).")
    if c.diagnostics.empty:
        section.text.append(f"No warnings or flags in any of the {len(runs)} runs.")
        return section
    issues = c.diagnostics.merge(runs[["trial_id", "seed", "_config"]], on="trial_id")
    if issues.empty:
        section.text.append(f"No warnings or flags in any of the {len(runs)} runs.")
        return section
    seeds = runs.groupby("_config", sort=False)["seed"].nunique()
    raised = issues.groupby(["_config", "kind", "issue"], sort=False).agg(
        seeds=("seed", "nunique"), example=("message", "first")).reset_index()
    configs = list(dict.fromkeys(raised["_config"]))
    section.text.append(f"{len(configs)} of {len(seeds)} configurations raised a warning or flag; "
                        "the others raised none and are not listed.")
    overview = issues.groupby(["kind", "issue"], sort=False).agg(
        configurations=("_config", "nunique"), runs=("trial_id", "nunique")).reset_index()
    section.tables.append(Table("warnings and flags", ["issue", "kind", "configurations", "runs"], [
        [Cell(r["issue"]), Cell(r["kind"]), Cell(f"{r['configurations']} of {len(seeds)}"),
         Cell(f"{r['runs']} of {len(runs)}")] for _, r in overview.iterrows()]))
    by_config = runs.groupby("_config", sort=False).agg(init=("init_loss", "mean"), ln_c=("ln_classes", "first"))
    rows = []
    for config in configs[:MAX_CONFIGS]:
        first = True
        for _, r in raised[raised["_config"] == config].iterrows():
            loss = by_config.loc[config]
            init_text = "—" if pd.isna(loss["init"]) else f"{loss['init']:.3g} (ln C {loss['ln_c']:.3g})"
            example = r["example"] if len(r["example"]) <= EXAMPLE_CHARS else r["example"][:EXAMPLE_CHARS - 1] + "…"
            rows.append([Cell(config if first else ""), Cell(init_text if first else ""), Cell(r["issue"]),
                         Cell(f"{r['seeds']} of {seeds[config]}"), Cell(example)])
            first = False
    notes = ["seeds: how many of the configuration's seeds raised it; example: the first seed's message. "
             "Initial loss: the mean over seeds."]
    if len(configs) > MAX_CONFIGS:
        notes.append(f"The first {MAX_CONFIGS} of {len(configs)} configurations; the CSV output "
                     "(--format csv: diagnostics.csv) lists every one.")
    section.tables.append(Table("warnings and flags by configuration",
                                ["configuration", "initial loss", "issue", "seeds", "example"], rows, notes))
    csv["diagnostics"] = issues.drop(columns=["_config"]).merge(
        runs[["trial_id", *[a for a in axes if a != "workload"], "workload", "init_loss", "ln_classes"]], on="trial_id")
    return section
