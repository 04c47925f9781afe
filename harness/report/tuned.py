"""The report of a tuned comparison (a suite with ``tune:``; see ``harness.tune``).

The comparison tables, ranks, profiles, claims and verdicts of such a report cover only the final
trials: each technique's selected configuration re-run on fresh seeds. This module splits them from
the tuning trials and adds what only tuning shows:

- the protocol in words (budget, sampler, seeds, selection metric), so a reader can judge the comparison;
- the selected configuration of each technique on each workload, with its validation score;
- tuning curves (Dodge et al. 2019, "Show Your Work: Improved Reporting of Experimental Results"): the
  expected best validation score after k tuning trials, k = 1..budget, over random orderings of the
  trials that were run, with a band of one standard deviation kept within the scores seen. With n scores v(1) ≤ … ≤ v(n), the
  best of k drawn with replacement is v(i) with probability (i/n)^k − ((i−1)/n)^k. A technique whose
  curve still climbs at the budget would gain from more tuning; one that is flat from k = 1 needs none.
  A configuration that failed or diverged scores as the worst of any on its workload, so that failing
  often costs a technique its curve rather than being left out. Under halving the curve is over the
  first rung's scores, where every configuration trained alike.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness import tune as tuning
from harness.report import plots
from harness.report.aggregate import Collected
from harness.report.sections import Drawing, Section
from harness.report.tables import Cell, Table
from harness.search import SELECTION_METRICS
from harness.spec import COMPLETED, STOPPED


def split(c: Collected) -> tuple[Collected, Collected]:
    """(the final trials, axes without the drawn settings; the tuning trials), by their seeds."""
    tune = c.suite["search"]["tune"]
    drawn = set(tuning.keys(tune))
    final = set(tune["final_seeds"])

    def part(keep: set[str], axes: list[str]) -> Collected:
        frame = lambda f: f[f["trial_id"].isin(keep)].reset_index(drop=True) if not f.empty else f  # noqa: E731
        return replace(c, runs=frame(c.runs), curves=frame(c.curves), steps=frame(c.steps),
                       diagnostics=frame(c.diagnostics), axes=axes,
                       records=[r for r in c.records if r.trial_id in keep])

    ids = set(c.runs["trial_id"]) if not c.runs.empty else set()
    finals = {r.trial_id for r in c.records if r.seed in final} & ids
    return part(finals, [a for a in c.axes if a not in drawn]), part(ids - finals, list(c.axes))


def expected_best(scores: list[float], budget: int, higher: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(mean, standard deviation) of the best of k scores drawn with replacement, k = 1..budget."""
    v = np.sort(np.asarray(scores, dtype=float) * (1 if higher else -1))
    n = len(v)
    i = np.arange(1, n + 1)
    means, sds = [], []
    for k in range(1, budget + 1):
        p = (i / n) ** k - ((i - 1) / n) ** k
        m = float(p @ v)
        means.append(m)
        sds.append(float(np.sqrt(max(p @ v ** 2 - m * m, 0.0))))
    sign = 1 if higher else -1
    return sign * np.asarray(means), np.asarray(sds)


def _scores(c: Collected, b: dict[str, Any], metric: str) -> list[float | None]:
    """Each configuration's tuning score at its first rung: the mean over seeds; None if a seed
    failed, diverged or has no record."""
    runs = c.runs.set_index("trial_id") if not c.runs.empty else pd.DataFrame()
    out = []
    for ids in b["configs"]:
        rows = runs.loc[[i for i in ids if i in runs.index]] if len(runs) else runs
        ok = len(rows) == len(ids) and rows["status"].isin([COMPLETED, STOPPED]).all()
        values = pd.to_numeric(rows[metric], errors="coerce") if ok else None
        out.append(float(values.mean()) if ok and values.notna().all() else None)
    return out


def curves(c: Collected, info: dict[str, Any]) -> pd.DataFrame:
    """A row per technique, workload and k: the expected best tuning score after k trials and its band."""
    metric = info["metric"]
    higher = SELECTION_METRICS[metric] == "max"
    scored = [(b, _scores(c, b, metric)) for b in info["brackets"]]
    known: dict[str, list[float]] = {}
    for b, s in scored:
        known.setdefault(b["where"], []).extend(v for v in s if v is not None)
    worst = {where: min(v) if higher else max(v) for where, v in known.items() if v}
    rows = []
    for b, s in scored:
        if b["where"] not in worst:  # nothing on this workload has a score yet
            continue
        values = [worst[b["where"]] if v is None else v for v in s]
        mean, sd = expected_best(values, len(values), higher)
        # the band within the scores seen: the best of k can be no better than the best there is
        low, high = np.clip(mean - sd, min(values), max(values)), np.clip(mean + sd, min(values), max(values))
        rows += [{"technique": b["technique"], "workload": b["where"], "k": k + 1, "mean": mean[k], "sd": sd[k],
                  "low": low[k], "high": high[k], "failed": sum(v is None for v in s)} for k in range(len(values))]
    return pd.DataFrame(rows, columns=["technique", "workload", "k", "mean", "sd", "low", "high", "failed"])


def _selected(info: dict[str, Any], results: Path, c: Collected) -> Table:
    from harness.store import read_plan

    plan = read_plan(results)
    specs = {t.trial_id: t for t in (plan[1] if plan else [])}
    records = {r.trial_id: r for r in c.records}
    axis, drawn = info["tune"]["axis"], tuning.keys(info["tune"])
    workloads = list(dict.fromkeys(b["where"] for b in info["brackets"]))
    cells: dict[tuple[str, str], str] = {}
    for b, chosen, score in tuning.selections(info, specs, records.get):
        if chosen is None:
            text = "tuning not finished" if any(i not in records for ids in b["configs"] for i in ids) else \
                "no configuration trained"
        else:
            values = dict(chosen.axes)
            shown = ", ".join(f"{k.removeprefix(axis + '.').removeprefix('0.')}={_short(values[k])}" for k in drawn
                              if values.get(k) is not None) or "nothing to tune"
            text = f"{shown} ({info['metric']} {score:.4f}, best of {len(b['configs'])})"
        cells[(b["technique"], b["where"])] = text
    techniques = list(dict.fromkeys(b["technique"] for b in info["brackets"]))
    rows = [[Cell(t), *(Cell(cells.get((t, w), "")) for w in workloads)] for t in techniques]
    return Table(f"selected configuration of each {axis}", [axis, *workloads], rows,
                 [f"the configuration with the best mean {info['metric']} over the tuning seeds; its score there "
                  "(a validation score of the tuning runs, not the final trials' test score)"])


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def protocol(info: dict[str, Any]) -> str:
    """The tuning protocol in one paragraph."""
    t = info["tune"]
    techniques = list(dict.fromkeys(b["technique"] for b in info["brackets"]))
    halving = (f", through successive halving (eta={t['halving']['eta']}, from {t['halving']['min_epochs']} "
               f"epochs)" if t["halving"] else "")
    return (f"Tuned comparison: each of the {len(techniques)} values of {t['axis']} ({', '.join(techniques)}) was "
            f"tuned on every workload with the same budget of {t['trials']} configurations, drawn from its own "
            f"search space by a scrambled {t['sampler'].title()} sequence (seed {t['seed']}), each trained on the "
            f"tuning seeds {t['seeds']}{halving}. The configuration with the best mean {t['metric']} was selected "
            f"(validation data only) and trained again from scratch on the final seeds {t['final_seeds']}, disjoint "
            f"from the tuning seeds. The comparison tables, ranks, profiles and verdicts below cover those final "
            f"trials alone.")


def spaces_table(info: dict[str, Any]) -> Table:
    from harness.search import space_yaml

    t = info["tune"]
    rows = [[Cell(name), Cell("; ".join(f"{k.removeprefix(t['axis'] + '.')}: {next(iter(d))} {d[next(iter(d))]}"
                                        for k, d in space_yaml(space).items()) or "nothing to tune")]
            for name, space in t["spaces"].items()]
    return Table("search space of each technique", [t["axis"], "space"], rows)


def sections(c_tune: Collected, info: dict[str, Any], results: Path, out: Path, csv: dict[str, pd.DataFrame],
             draw: Drawing, colours: dict[str, tuple] | None = None) -> list[Section]:
    """The protocol, the spaces, the selected configurations and the tuning curves."""
    frame = curves(c_tune, info)
    csv["tuning_curves"] = frame
    section = Section("Tuning", [protocol(info)], [spaces_table(info), _selected(info, results, c_tune)])
    if not frame.empty:
        section.pending.append((draw(plots.tuning_curves, frame, info["metric"], out / "tuning_curves.png", colours),
                                f"Tuning curves (Dodge et al. 2019): the expected best {info['metric']} after k "
                                "tuning trials, over random orderings of the trials run, ± one standard deviation (within the scores seen); "
                                "a failed or diverged configuration scores as the worst on its workload."))
    return [section]
