"""Hyperparameter search in a suite: random sampling, successive halving and Hyperband.

- ``random: {n, seed, space}`` draws ``n`` configurations (Bergstra & Bengio 2012, "Random Search
  for Hyper-Parameter Optimization"): each key of ``space`` is a trial setting (like a grid axis)
  with a distribution: ``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}``, ``{int: [lo, hi]}``
  (inclusive), ``{logint: [lo, hi]}``, ``{log1m: [lo, hi]}`` (1 − value log-uniform: a momentum or a
  beta close to 1, as Choi et al. 2019 search them), ``{choice: [a, b, ...]}`` or a bare list (a choice). The
  draws come from ``numpy.random.default_rng(seed)`` in the order the space lists its keys, so the
  same suite gives the same samples on every machine. Floats are kept to 4 significant digits.
- ``halving: {method, eta, min_epochs, metric}`` trains in rungs (Jamieson & Talwalkar 2016;
  Li et al. 2017, "Hyperband", Algorithm 1). ``halving`` is one bracket over the suite's
  configurations: every one trains ``min_epochs``, the best 1/eta go on to eta times as many, up to
  ``budget.epochs``. ``hyperband`` runs every bracket s = s_max..0 of Li et al., each with its own
  fresh random samples (n_s = ceil((s_max + 1) / (s + 1) * eta^s), r_s = R * eta^-s).

A rung is a set of ordinary trials: the same run cut at ``budget.stop_after`` epochs (the schedule
sees the whole ``budget.epochs``), so a trial that is not promoted is recorded ``stopped`` with its
last metrics, and a promoted one resumes the run's checkpoint rather than starting over. The
schedule is planned here, as plain lists of trials, and each rung is run by whichever launcher
runs sweeps: the local pool, or a SLURM array followed by a dependent job that submits the next
rung. Nothing waits on a live service, and an interrupted search resumes from its records.

Promotion ranks configurations by the mean over seeds of a validation metric at the end of the
rung (never a test metric: selecting on test data would bias the reported result). Diverged and
failed trials rank last.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.errors import ConfigError
from harness.layout import checkpoint_path
from harness.spec import FINAL_STATUSES, Record, TrialSpec

DISTRIBUTIONS = ("uniform", "loguniform", "log1m", "int", "logint", "choice")
METHODS = ("halving", "hyperband")
SELECTION_METRICS = {"val_acc": "max", "val_loss": "min", "train_acc": "max", "train_loss": "min"}


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(path, f"expected a number, got {value!r}")
    return value


def parse_space(space: Any, path: str = "random.space") -> dict[str, dict[str, Any]]:
    """Each key's distribution, normalized to ``{"dist", "low", "high"}`` or ``{"dist": "choice", "values"}``."""
    if not isinstance(space, dict) or not space:
        raise ConfigError(path, "expected a mapping of trial setting → distribution, e.g. "
                                "{optimizer.lr: {loguniform: [1.0e-4, 1.0e-1]}}")
    out = {}
    for key, spec in space.items():
        where = f"{path}.{key}"
        if isinstance(spec, list):
            spec = {"choice": spec}
        if not isinstance(spec, dict) or len(spec) != 1:
            raise ConfigError(where, f"expected one distribution like {{uniform: [0, 1]}}, one of "
                                     f"{', '.join(DISTRIBUTIONS)}, got {spec!r}")
        (dist, args), = spec.items()
        if dist not in DISTRIBUTIONS:
            from harness.registry import near_miss

            raise ConfigError(where, f"unknown distribution {dist!r}; {near_miss(str(dist), list(DISTRIBUTIONS))}")
        if dist == "choice":
            if not isinstance(args, list) or not args:
                raise ConfigError(f"{where}.choice", f"expected a non-empty list of values, got {args!r}")
            out[str(key)] = {"dist": "choice", "values": args}
            continue
        if not isinstance(args, list) or len(args) != 2:
            raise ConfigError(f"{where}.{dist}", f"expected [low, high], got {args!r}")
        low, high = (_number(v, f"{where}.{dist}") for v in args)
        if not low < high:
            raise ConfigError(f"{where}.{dist}", f"low must be below high, got [{low}, {high}]")
        if dist.startswith("log") and low <= 0:
            raise ConfigError(f"{where}.{dist}", f"a log scale needs low > 0, got {low}")
        if dist == "log1m" and high >= 1:
            raise ConfigError(f"{where}.{dist}", f"1 - value on a log scale needs high < 1, got {high}")
        if dist in ("int", "logint") and not (float(low).is_integer() and float(high).is_integer()):
            raise ConfigError(f"{where}.{dist}", f"bounds of an integer range must be whole numbers, got [{low}, {high}]")
        out[str(key)] = {"dist": dist, "low": low, "high": high}
    return out


def staged(info: dict[str, Any] | None) -> bool:
    """Whether a suite's search plans its trials from the records of earlier ones (successive
    halving's rungs, a tuned study's final trials, a sequential suite's further seeds), rather than
    all at once."""
    return bool(info and (info.get("halving") or info.get("tune") or info.get("sequential")))


def _short(x: float) -> float:
    return float(f"{x:.4g}")


def _value(d: dict[str, Any], u: float) -> Any:
    """The value at ``u`` in [0, 1) of one distribution: its quantile, so that uniform and quasi-random
    points in the unit cube map the same way."""
    dist = d["dist"]
    if dist == "choice":
        return d["values"][min(int(u * len(d["values"])), len(d["values"]) - 1)]
    low, high = d["low"], d["high"]
    if dist == "uniform":
        return _short(low + u * (high - low))
    if dist == "loguniform":
        return _short(math.exp(math.log(low) + u * (math.log(high) - math.log(low))))
    if dist == "log1m":  # 1 - x log-uniform on [1 - high, 1 - low]
        return _short(1 - math.exp(math.log(1 - high) + u * (math.log(1 - low) - math.log(1 - high))))
    if dist == "int":
        return min(int(low) + int(u * (high - low + 1)), int(high))
    value = math.exp(math.log(low) + u * (math.log(high + 1) - math.log(low)))  # logint
    return min(int(value), int(high))


def draw(space: dict[str, dict[str, Any]], n: int, seed: int | list[int]) -> list[dict[str, Any]]:
    """``n`` configurations from ``space`` (see the module docstring), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        row = {}
        for key, d in space.items():
            if d["dist"] == "choice":  # the integer draw keeps every earlier search's samples as they were
                row[key] = d["values"][int(rng.integers(len(d["values"])))]
            elif d["dist"] == "int":
                row[key] = int(rng.integers(int(d["low"]), int(d["high"]) + 1))
            else:
                row[key] = _value(d, rng.uniform())
        rows.append(row)
    return rows


SAMPLERS = ("halton", "sobol")


def quasi_draw(space: dict[str, dict[str, Any]], n: int, sampler: str, seed: int) -> list[dict[str, Any]]:
    """``n`` configurations from a scrambled low-discrepancy sequence (``scipy.stats.qmc``): Halton
    (Halton 1960, as AlgoPerf's external-tuning ruleset draws its trials) or Sobol (Sobol 1967; best at
    a power-of-two ``n``). They cover the space more evenly than independent draws of the same
    count, and the same ``seed`` gives the same points on every machine."""
    if not space:
        return [{}]
    import warnings

    from scipy.stats import qmc

    engine = (qmc.Halton if sampler == "halton" else qmc.Sobol)(d=len(space), scramble=True, seed=seed)
    with warnings.catch_warnings():  # Sobol's balance warning for n not a power of two: documented instead
        warnings.simplefilter("ignore", UserWarning)
        points = engine.random(n)
    return [{key: _value(d, float(u)) for (key, d), u in zip(space.items(), row)} for row in points]


@dataclass(frozen=True)
class Bracket:
    """One bracket of successive halving: rung i trains ``keep[i]`` configurations for ``rungs[i]`` epochs."""

    s: int
    rungs: tuple[int, ...]
    keep: tuple[int, ...]


def rung_epochs(max_epochs: int, eta: int, s: int) -> tuple[int, ...]:
    """r_i = R * eta^(i - s) for i = 0..s, rounded to whole epochs, the last one R."""
    return tuple(max(1, round(max_epochs * eta ** (i - s))) for i in range(s + 1))


def s_max(max_epochs: int, min_epochs: int, eta: int) -> int:
    """The most halvings from min_epochs up to max_epochs: floor(log_eta(R / r_min))."""
    s = 0
    while min_epochs * eta ** (s + 1) <= max_epochs:
        s += 1
    return s


def keep_counts(n: int, eta: int, rungs: int) -> tuple[int, ...]:
    """How many of ``n`` configurations each rung trains: n // eta^i, at least one."""
    return tuple(max(1, n // eta ** i) for i in range(rungs))


def halving_bracket(n: int, max_epochs: int, min_epochs: int, eta: int) -> Bracket:
    """Successive halving of ``n`` configurations: from min_epochs, the best 1/eta each rung (at least one)."""
    s = s_max(max_epochs, min_epochs, eta)
    return Bracket(s, rung_epochs(max_epochs, eta, s), keep_counts(n, eta, s + 1))


def hyperband_brackets(max_epochs: int, min_epochs: int, eta: int) -> list[Bracket]:
    """Li et al. 2017, Algorithm 1: brackets s = s_max..0, the most aggressive first."""
    top = s_max(max_epochs, min_epochs, eta)
    out = []
    for s in range(top, -1, -1):
        n = math.ceil((top + 1) / (s + 1) * eta ** s)
        out.append(Bracket(s, rung_epochs(max_epochs, eta, s), keep_counts(n, eta, s + 1)))
    return out


def plan_brackets(halving: dict[str, Any], space: dict[str, dict[str, Any]] | None, n: int | None, seed: int,
                  fixed: list[dict[str, Any]], expand: Callable[[list[dict[str, Any]], int | None], list[list[str]]]
                  ) -> list[dict[str, Any]]:
    """The brackets of a suite's ``halving``, their configurations made by ``expand(combos, stop_after)``
    (the suite's trials of those combinations, with every seed; the ids of each configuration)."""
    top, low, eta = halving["max_epochs"], halving["min_epochs"], halving["eta"]
    if halving["method"] == "halving":  # one bracket over the suite's draws (or its grid)
        plan = [halving_bracket(n or 1, top, low, eta)]
        draws = lambda b: draw(space, n, seed) if space else [{}]  # noqa: E731
    else:  # every bracket, each with n_s fresh draws at each grid point, ranked together
        plan = hyperband_brackets(top, low, eta)
        draws = lambda b: draw(space, b.keep[0], [seed, b.s])  # noqa: E731
    out = []
    for b in plan:
        configs = expand([{**f, **r} for f in fixed for r in draws(b)], b.rungs[0] if b.rungs[0] < top else None)
        # what each rung keeps, of the configurations there are: exclude rules and duplicate
        # draws can leave fewer than drawn, a grid multiplies them
        out.append({"s": b.s, "rungs": list(b.rungs), "configs": configs,
                    "keep": list(keep_counts(len(configs), eta, len(b.rungs)))})
    return out


def at_rung(spec: TrialSpec, epochs: int) -> TrialSpec:
    """The same run (config and seed) cut at ``epochs``; the whole run when that is its budget."""
    config = spec.config
    config["budget"]["stop_after"] = epochs if epochs < config["budget"]["epochs"] else None
    return TrialSpec.make(spec.suite, config, spec.seed, dict(spec.axes))


def _score(records: list[Record | None], metric: str, mode: str) -> float:
    """Mean of the metric over a configuration's seeds; a missing, failed or diverged seed ranks it last."""
    values = []
    for r in records:
        value = (r.final or {}).get(metric) if r is not None and r.status in FINAL_STATUSES else None
        if value is None or not math.isfinite(value) or r.status not in ("completed", "stopped"):
            return -math.inf
        values.append(value if mode == "max" else -value)
    return float(np.mean(values)) if values else -math.inf


@dataclass
class Progress:
    """Where a search stands: trials to run now, configurations dropped (their runs' checkpoints
    can go), and a line per bracket."""

    todo: list[TrialSpec]
    dropped: list[TrialSpec]
    lines: list[str]
    trials: list[TrialSpec]  # every trial of every rung reached so far: what the report covers


@dataclass
class BracketState:
    """One bracket from its records: ``Progress``'s parts for it, and once its last rung is complete
    (``done``), the trials of each configuration that trained it, by configuration index."""

    todo: list[TrialSpec]
    dropped: list[TrialSpec]
    line: str
    reached: list[TrialSpec]
    done: bool
    final: dict[int, list[TrialSpec]]


def bracket_state(b: dict[str, Any], trials: dict[str, TrialSpec], record: Callable[[str], Record | None],
                  metric: str, given_up: set[str] = frozenset()) -> BracketState:
    """Rung after rung of one bracket (``{s, rungs, configs, keep}``, optionally ``name``) as far as its
    records go: the first rung with trials to run is where it stands."""
    mode = SELECTION_METRICS[metric]
    name = b.get("name") or f"bracket s={b['s']}"

    def needs_run(t: TrialSpec) -> bool:
        if t.trial_id in given_up:
            return False
        r = record(t.trial_id)
        return r is None or r.status not in FINAL_STATUSES

    groups = [[trials[t] for t in seeds] for seeds in b["configs"]]  # rung-0 trials of each configuration
    alive = list(range(len(groups)))
    dropped, reached = [], []
    for i, epochs in enumerate(b["rungs"]):
        rung = {c: [at_rung(t, epochs) for t in groups[c]] for c in alive}
        reached += [t for c in alive for t in rung[c]]
        missing = [t for c in alive for t in rung[c] if needs_run(t)]
        if missing:
            line = (f"{name}: rung {i} ({plural(len(alive), 'configuration')} x {epochs} epochs): "
                    f"{plural(len(missing), 'trial')} to run") if len(b["rungs"]) > 1 else \
                f"{name}: {plural(len(missing), 'trial')} to run"
            return BracketState(missing, dropped, line, reached, False, {})
        if i + 1 == len(b["rungs"]):
            return BracketState([], dropped, f"{name}: done ({plural(len(alive), 'configuration')} trained {epochs} "
                                f"epochs)", reached, True, rung)
        scores = {c: _score([record(t.trial_id) for t in rung[c]], metric, mode) for c in alive}
        ranked = sorted(alive, key=lambda c: -scores[c])  # stable: ties keep the sampling order
        keep = b["keep"][i + 1]
        dropped += [t for c in ranked[keep:] for t in rung[c]]
        alive = sorted(ranked[:keep])
    raise ValueError(f"{name}: a bracket without rungs")


def best_config(final: dict[int, list[TrialSpec]], record: Callable[[str], Record | None],
                metric: str) -> tuple[int, float] | None:
    """(configuration index, mean metric over its seeds) of the best configuration of a finished
    bracket by the validation ``metric``; ties go to the first drawn. None when none trained."""
    mode = SELECTION_METRICS[metric]
    scores = {c: _score([record(t.trial_id) for t in final[c]], metric, mode) for c in sorted(final)}
    best = max(scores, key=lambda c: scores[c], default=None)  # max keeps the first of equal scores
    if best is None or scores[best] == -math.inf:
        return None
    return best, scores[best] if mode == "max" else -scores[best]


def progress(search: dict[str, Any], trials: dict[str, TrialSpec], record: Callable[[str], Record | None],
             given_up: set[str] = frozenset()) -> Progress:
    """The next trials of every bracket, from the records so far (``record(trial_id)``). A rung is
    complete when each of its trials has a final record, or is in ``given_up`` (failed in this
    run of the command: it ranks last rather than being retried in a loop)."""
    states = [bracket_state(b, trials, record, search["metric"], given_up) for b in search["brackets"]]
    return Progress([t for s in states for t in s.todo], [t for s in states for t in s.dropped],
                    [s.line for s in states], [t for s in states for t in s.reached])


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


def parse_halving(value: Any, max_epochs: int, report_metric: str) -> dict[str, Any]:
    """The suite's ``halving`` section, checked; its brackets are planned in the suite."""
    if not isinstance(value, dict):
        raise ConfigError("halving", f"expected a mapping like {{method: hyperband, eta: 3, min_epochs: 1}}, got {value!r}")
    from harness.registry import check_keys

    check_keys(value, ["method", "eta", "min_epochs", "metric"], "halving", "halving key")
    method = value.get("method", "halving")
    if method not in METHODS:
        raise ConfigError("halving.method", f"expected one of {', '.join(METHODS)}, got {method!r}")
    eta = value.get("eta", 3)
    if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
        raise ConfigError("halving.eta", f"expected a whole number >= 2, got {eta!r}")
    min_epochs = value.get("min_epochs", 1)
    if isinstance(min_epochs, bool) or not isinstance(min_epochs, int) or not 1 <= min_epochs <= max_epochs:
        raise ConfigError("halving.min_epochs", f"expected a whole number from 1 to budget.epochs ({max_epochs}), "
                                                f"got {min_epochs!r}")
    default = {"test_acc": "val_acc", "test_loss": "val_loss"}.get(report_metric, report_metric)
    metric = value.get("metric", default if default in SELECTION_METRICS else "val_acc")
    if metric not in SELECTION_METRICS:
        raise ConfigError("halving.metric", f"promotion ranks by one of {', '.join(SELECTION_METRICS)} "
                                            f"(never a test metric), got {metric!r}")
    return {"method": method, "eta": eta, "min_epochs": min_epochs, "max_epochs": max_epochs, "metric": metric}


def checkpoints_to_drop(results: Path, dropped: list[TrialSpec]) -> list[Path]:
    """Checkpoints of runs that no rung will resume."""
    return [p for p in (checkpoint_path(results, t.run_id) for t in dropped) if p.exists()]


def _narrow(d: dict[str, Any], values: list[Any], widen: float, matches: Callable[[Any, Any], bool]) -> dict[str, Any]:
    """One distribution narrowed to the span of ``values`` (the best configurations' draws), padded
    by ``widen`` times that span on each side (in log space for log scales), within the old range."""
    if d["dist"] == "choice":
        kept = [v for v in d["values"] if any(matches(actual, v) for actual in values)]
        return {"dist": "choice", "values": kept or d["values"]}
    log = d["dist"].startswith("log")
    to = (lambda v: math.log(v)) if log else (lambda v: v)
    back = (lambda v: math.exp(v)) if log else (lambda v: v)
    old_lo, old_hi = to(d["low"]), to(d["high"])
    lo, hi = min(map(to, values)), max(map(to, values))
    pad = widen * (hi - lo) if hi > lo else 0.1 * (old_hi - old_lo)  # one survivor: a tenth of the old span
    lo, hi = max(old_lo, lo - pad), min(old_hi, hi + pad)
    low, high = back(lo), back(hi)
    if d["dist"] in ("int", "logint"):
        low, high = math.floor(low), math.ceil(high)
        if low == high:
            high = low + 1
        return {"dist": d["dist"], "low": low, "high": high}
    return {"dist": d["dist"], "low": _short(low), "high": _short(high)}


def space_yaml(space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A parsed space back in the suite's own syntax."""
    return {k: {"choice": d["values"]} if d["dist"] == "choice" else {d["dist"]: [d["low"], d["high"]]}
            for k, d in space.items()}


def refine(space: dict[str, dict[str, Any]], best: dict[str, list[Any]], widen: float,
           matches: Callable[[Any, Any], bool]) -> dict[str, dict[str, Any]]:
    """Coarse to fine: each key's range narrowed around ``best[key]``, its values in the best
    configurations; ``matches(value, listed)`` says whether a resolved value is the one a choice lists.
    Both come from the caller because the suite, which knows how configs spell values, imports this
    module: importing it back would make a cycle."""
    return {key: _narrow(d, best[key], widen, matches) for key, d in space.items()}


def rank_configs(records: list[Record], metric: str) -> list[tuple[float, dict[str, Any], int]]:
    """(mean metric over seeds, config, seeds) of each configuration that trained its whole budget,
    best first."""
    from harness.spec import COMPLETED, canonical_json, identity

    mode = SELECTION_METRICS.get(metric, "max")
    groups: dict[str, tuple[dict[str, Any], list[float]]] = {}
    for r in records:
        value = (r.final or {}).get(metric)
        if r.status != COMPLETED or value is None:
            continue
        key = canonical_json(identity(r.config))
        groups.setdefault(key, (r.config, []))[1].append(value)
    rows = [(float(np.mean(v)), c, len(v)) for c, v in groups.values()]
    return sorted(rows, key=lambda row: -row[0] if mode == "max" else row[0])
