"""Seeds until decided: a suite's claims judged after each round of seeds, more seeds only where a
claim is still open, with error control that stays valid under the repeated looks.

``seeds: {min: 3, max: 9, step: 3}`` runs every configuration on seeds 0..2 and judges the claims
(``harness.claims``). A claim that holds or fails is decided; only the configurations an open claim
compares get the next ``step`` seeds, and the open claims are judged again, until each is decided or
``max`` seeds are reached. Looking after every round and stopping when a test passes would inflate
the false "holds" rate (Armitage, McPherson & Rowe 1969): three looks at level α give nearly 2α.

The level is spent over the planned looks (Lan & DeMets 1983): with information fraction t = n/max at
a look with n seeds, the spending function α(t) is O'Brien & Fleming's shape (1979),
α(t) = 2 − 2Φ(z_{1−α/2} / √t), which spends almost nothing early and most of α at ``max``, or
Pocock's (1977), α(t) = α·ln(1 + (e − 1)t), which spends evenly. Look k tests at its increment
α(t_k) − α(t_{k−1}), Holm across the claims still open, with intervals at 1 − 2·(that increment). The
increments sum to α, so by the union bound the chance of any false verdict over all looks is at most
α whatever the dependence between looks (the t tests' exact group-sequential boundaries, which need
the joint law of the looks, would be a little less conservative). Every verdict names the look it was
reached at and the seeds it took; a claim still open at ``max`` is inconclusive there.

Rounds are planned here from the records so far, as successive halving's rungs are, so a sequential
suite resumes, fuses and chains on SLURM like any staged sweep.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

from harness.errors import ConfigError
from harness.matching import selects
from harness.spec import FINAL_STATUSES, Record, TrialSpec

SPENDING = ("obrien_fleming", "pocock")
SEED_KEYS = ["min", "max", "step", "spending"]


def parse_seeds(value: dict[str, Any], limit: int) -> dict[str, Any]:
    """``seeds: {min, max, step, spending}`` checked."""
    from harness.registry import check_keys

    check_keys(value, SEED_KEYS, "seeds", "seeds key")
    out = {}
    for key, default in (("min", None), ("max", None), ("step", 1)):
        v = value.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= limit:
            raise ConfigError(f"seeds.{key}", f"expected a whole number from 1 to {limit}, got {v!r}")
        out[key] = v
    if out["min"] < 2:
        raise ConfigError("seeds.min", "a claim needs at least 2 seeds a side to be judged at the first look")
    if out["max"] <= out["min"]:
        raise ConfigError("seeds.max", f"must be above min ({out['min']}), got {out['max']}: with no seeds to add, "
                                       "give seeds as a count")
    spending = value.get("spending", "obrien_fleming")
    if spending not in SPENDING:
        raise ConfigError("seeds.spending", f"expected one of {', '.join(SPENDING)}, got {spending!r}")
    return {**out, "spending": spending}


def looks(info: dict[str, Any]) -> list[int]:
    """The seeds of each planned look: min, min + step, ..., max."""
    n = list(range(info["min"], info["max"], info["step"]))
    return n + [info["max"]]


def spend(t: float, alpha: float, kind: str) -> float:
    """α(t) of the spending function ``kind`` at information fraction t in (0, 1]."""
    from scipy.stats import norm

    if kind == "pocock":
        return alpha * math.log(1 + (math.e - 1) * t)
    return float(2 - 2 * norm.cdf(norm.ppf(1 - alpha / 2) / math.sqrt(t)))


def levels(info: dict[str, Any], alpha: float) -> list[float]:
    """Each look's one-sided level: its increment of the spending function (they sum to ``alpha``)."""
    spent = [spend(n / info["max"], alpha, info["spending"]) for n in looks(info)]
    return [b - a for a, b in zip([0.0, *spent], spent)]


@dataclass
class Walk:
    """The looks so far: each claim's verdict rows where decided (with the look), the trials to run for
    the next look, every trial planned so far, and a line per look."""

    decided: dict[str, tuple[list[Any], int]]  # claim id -> (its verdict rows, the look index)
    todo: list[TrialSpec]
    reached: list[TrialSpec]
    lines: list[str]
    look: int  # the look being waited for (or the last one judged)


def _needs_run(r: Record | None) -> bool:
    return r is None or r.status not in FINAL_STATUSES


def walk(info: dict[str, Any], claims: list[dict[str, Any]], axes: list[str], trials: dict[str, TrialSpec],
         record: Callable[[str], Record | None], given_up: set[str] = frozenset()) -> Walk:
    """Look after look, as far as the records go (see the module docstring)."""
    from harness import claims as cl

    ns, alphas = looks(info), levels(info, cl.ALPHA)
    configs = [trials[ids[0]] for ids in info["configs"]]  # each configuration's trial of seed 0
    planned: dict[str, TrialSpec] = {}
    decided: dict[str, tuple[list[Any], int]] = {}
    lines: list[str] = []
    open_, need = list(claims), configs
    for k, n in enumerate(ns):
        specs = [TrialSpec.make(c.suite, c.config, seed, dict(c.axes)) for c in need for seed in range(n)]
        planned.update((t.trial_id, t) for t in specs)
        missing = [t for t in specs if t.trial_id not in given_up and _needs_run(record(t.trial_id))]
        if missing:
            lines.append(f"look {k + 1} of {len(ns)} ({n} seeds, {len(open_)} claims open): {len(missing)} trials to run")
            return Walk(decided, missing, list(planned.values()), lines, k)
        seen = [r for r in (record(i) for i, t in planned.items() if t.seed < n) if r is not None]
        rows = cl.verdicts(seen, open_, axes, alphas[k])
        for row in rows:
            row.look = f"look {k + 1} of {len(ns)}: {n} seeds, level {alphas[k]:.2g}"
        by = cl.overall(rows)
        last = k + 1 == len(ns)
        for c in open_:
            if by[c["id"]] != cl.INCONCLUSIVE or last:
                decided[c["id"]] = ([dataclasses.replace(r) for r in rows if r.claim == c["id"]], k)
        open_ = [c for c in open_ if c["id"] not in decided]
        lines.append(f"look {k + 1} of {len(ns)} ({n} seeds, level {alphas[k]:.2g}): "
                     + (f"{len(open_)} claims still open" if open_ else "every claim decided"))
        if not open_:
            break
        need = [c for c in configs if any(uses(claim, c.config) for claim in open_)]
    return Walk(decided, [], list(planned.values()), lines, k)


def uses(claim: dict[str, Any], config: dict[str, Any]) -> bool:
    """Whether a claim compares the trials of ``config`` (its treatment or its control)."""
    sides = [claim["compare"]] + ([claim["against"]] if claim["against"] is not None else [])
    return any(selects({**claim["where"], **side}, config) for side in sides)


def progress(suite: dict[str, Any], trials: dict[str, TrialSpec], record: Callable[[str], Record | None],
             given_up: set[str] = frozenset()) -> Any:
    """Where a sequential suite stands, as ``harness.search.Progress`` (the staged runner's view)."""
    from harness.search import Progress

    w = walk(suite["search"]["sequential"], suite["claims"], list(suite["axes"]), trials, record, given_up)
    return Progress(w.todo, [], w.lines, w.reached)


def verdicts(suite: dict[str, Any], records: list[Record]) -> list[Any]:
    """The verdict rows of a sequential suite's claims from its records, in the claims' order: each as
    decided at its look; a claim whose next look is still running shows its last complete look."""
    from harness import claims as cl

    info, axes = suite["search"]["sequential"], list(suite.get("axes") or [])
    by_id = {r.trial_id: r for r in records}
    trials = {r.trial_id: TrialSpec.make(r.suite, r.config, r.seed, r.axes) for r in records}
    if any(ids[0] not in trials for ids in info["configs"]):  # the first look has not finished
        w = Walk({}, [], [], [], 0)
    else:
        w = walk(info, suite["claims"], axes, trials, by_id.get)
    ns, alphas = looks(info), levels(info, cl.ALPHA)
    rows = []
    for claim in suite["claims"]:
        if claim["id"] in w.decided:
            rows += w.decided[claim["id"]][0]
            continue
        k = max(w.look - 1, 0)  # the last look it was judged at (the first, when none has finished)
        part = cl.verdicts([r for r in records if r.seed < ns[k]], [claim], axes, alphas[k])
        for row in part:
            row.verdict, row.why = cl.INCONCLUSIVE, f"still open: its {ns[w.look]} seeds have not all run"
            row.look = f"look {k + 1} of {len(ns)}: {ns[k]} seeds, level {alphas[k]:.2g}"
        rows += part
    return rows
