"""A tuned comparison: every technique tuned with the same budget, selected on validation, re-run on
fresh seeds.

Comparisons at hand-picked hyperparameters rank techniques by how well their defaults suit the
workload: Choi et al. 2019 ("On Empirical Comparisons of Optimizers for Deep Learning") and
Sivaprasad et al. 2020 ("Optimizer Benchmarking Needs to Account for Hyperparameter Tuning") show the
ranking of optimizers flips with the tuning protocol. A suite's ``tune:`` section fixes one:

    grid: {dataset: [digits, mnist1d], optimizer: [sgd, momentum, adam]}
    seeds: 3                       # the final seeds: each selected configuration runs on them
    tune:
      axis: optimizer              # the compared axis (a grid or zip axis): each value is a technique
      trials: 16                   # the budget: configurations drawn for every technique on every workload
      seeds: [1000]                # the tuning seeds, disjoint from the final ones
      metric: val_acc              # selection by a validation metric only
      sampler: halton              # or sobol: scrambled quasi-random points (scipy.stats.qmc)
      seed: 0
      spaces: {adam: {lr: {loguniform: [1.0e-5, 1.0e-1]}}}   # per technique; default: its registered space
      halving: {eta: 3, min_epochs: 1}                        # optional: successive halving within the budget

For each technique (a value of ``axis``, by its label) and each combination of the other axes (a
workload), ``trials`` configurations are drawn from the technique's own space: keys relative to the
technique (``lr`` is the optimizer's ``lr``; for a list value of one component, that component's key)
or dotted trial settings (``schedule.warmup_epochs``). The draws are the same on every workload and
depend only on the seed and the technique's label, so adding a technique changes no other's. Every
configuration trains on the tuning seeds (through successive halving's rungs when ``halving`` is
given); the one with the best mean validation metric over them is selected (ties: the first drawn), and
trains again, from scratch, on the suite's ``seeds``. Only those final trials enter the comparison
tables, claims and verdicts; the tuning trials give the tuning curves (``harness.report.tuned``).

Both phases are ordinary records of ordinary trials, planned here from the records so far as
successive halving's rungs are, so a tuned study resumes, fuses and runs on SLURM like any sweep.
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable

from harness import search
from harness.errors import ConfigError
from harness.spec import FINAL_STATUSES, Record, TrialSpec

TUNE_KEYS = ["axis", "trials", "seeds", "metric", "sampler", "seed", "spaces", "halving"]
DEFAULT_TUNING_SEEDS = [1000]


def _whole(value: Any, path: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(path, f"expected a whole number >= {low}, got {value!r}")
    return value


def parse_tune(value: Any, axes: dict[str, list[Any]], labels: dict[str, list[Any]], final_seeds: tuple[int, ...],
               report_metric: str, max_epochs: int) -> dict[str, Any]:
    """The ``tune`` section checked: its settings, each technique's space parsed with absolute keys,
    and halving's settings. ``axes`` are the suite's grid and zip axes, ``labels`` their values' names."""
    from harness.registry import check_keys, near_miss

    if not isinstance(value, dict):
        raise ConfigError("tune", f"expected a mapping like {{axis: optimizer, trials: 16}}, got {value!r}")
    check_keys(value, TUNE_KEYS, "tune", "tune key")
    axis = value.get("axis")
    if axis not in axes:
        raise ConfigError("tune.axis", f"the compared axis must be a grid or zip axis of the suite, got {axis!r}; "
                                       f"{near_miss(str(axis), list(axes)) if axes else 'the suite has none'}")
    trials = _whole(value.get("trials", 16), "tune.trials", 1)
    seeds = value.get("seeds", DEFAULT_TUNING_SEEDS)
    if not isinstance(seeds, list) or not seeds:
        raise ConfigError("tune.seeds", f"expected a non-empty list of seeds, got {seeds!r}")
    seeds = [_whole(s, f"tune.seeds[{i}]", 0) for i, s in enumerate(seeds)]
    shared = sorted(set(seeds) & set(final_seeds))
    if shared or len(set(seeds)) < len(seeds):
        raise ConfigError("tune.seeds", f"seed {shared[0] if shared else seeds} is " + (
            "also a final seed: the selected configuration must be measured on seeds it was not chosen on"
            if shared else "listed twice"))
    default = {"test_acc": "val_acc", "test_loss": "val_loss"}.get(report_metric, report_metric)
    metric = value.get("metric", default if default in search.SELECTION_METRICS else "val_acc")
    if metric not in search.SELECTION_METRICS:
        raise ConfigError("tune.metric", f"selection ranks by one of {', '.join(search.SELECTION_METRICS)} (never a "
                                         f"test metric: it would bias the result reported), got {metric!r}")
    sampler = value.get("sampler", "halton")
    if sampler not in search.SAMPLERS:
        raise ConfigError("tune.sampler", f"expected one of {', '.join(search.SAMPLERS)}, got {sampler!r}")
    spaces = value.get("spaces") or {}
    if not isinstance(spaces, dict):
        raise ConfigError("tune.spaces", f"expected a mapping of technique → space, got {spaces!r}")
    names = [str(v) for v in labels[axis]]
    for key in spaces:
        if str(key) not in names:
            raise ConfigError(f"tune.spaces.{key}", f"not a value of {axis}; {near_miss(str(key), names)}")
    parsed = {}
    for name, technique in dict(zip(names, axes[axis])).items():
        parsed[name] = _space(axis, name, technique, spaces.get(name))
    halving = None
    if value.get("halving") is not None:
        h = value["halving"]
        if not isinstance(h, dict):
            raise ConfigError("tune.halving", f"expected a mapping like {{eta: 3, min_epochs: 1}}, got {h!r}")
        check_keys(h, ["eta", "min_epochs"], "tune.halving", "halving key")
        halving = search.parse_halving({**h, "method": "halving", "metric": metric}, max_epochs, report_metric)
    return {"axis": axis, "trials": trials, "seeds": seeds, "metric": metric, "sampler": sampler,
            "seed": _whole(value.get("seed", 0), "tune.seed", 0), "spaces": parsed, "halving": halving,
            "final_seeds": list(final_seeds)}


def _space(axis: str, name: str, technique: Any, given: Any) -> dict[str, dict[str, Any]]:
    """A technique's space with absolute keys: its own (``given``) or its registered default."""
    from harness.settings import TRIAL_KEYS

    path = f"tune.spaces.{name}"
    if given is None:
        given = _registered(axis, technique)
        if given is None:
            raise ConfigError(path, f"{name} has no default search space: give it one, e.g. "
                                    f"{{lr: {{loguniform: [1.0e-4, 1.0e-1]}}}}, or {{}} to tune nothing")
        path += " (its registered default)"
    if given == {}:
        return {}
    space = search.parse_space(given, path)
    out = {}
    for key, d in space.items():
        if key.split(".")[0] in TRIAL_KEYS:  # a trial setting of its own (schedule.warmup_epochs)
            out[key] = d
        elif isinstance(technique, list):  # a list of components: the one component's key
            if len(technique) != 1:
                raise ConfigError(f"{path}.{key}", f"{name} lists {len(technique)} components: name one as "
                                                   f"{axis}.<index>.{key}")
            out[f"{axis}.0.{key}"] = d
        else:
            out[f"{axis}.{key}"] = d
    return out


def _registered(axis: str, technique: Any) -> dict[str, Any] | None:
    """The default space an optimizer's registry entry declares (``OptimizerCaps.space``)."""
    name = technique if isinstance(technique, str) else technique.get("name") if isinstance(technique, dict) else None
    if axis != "optimizer" or not isinstance(name, str):
        return None
    from harness.registries import OPTIMIZERS

    try:
        entry = OPTIMIZERS.get(name)
    except Exception:  # an unknown name: resolving the trials names it with its path
        return None
    return entry.caps.space if entry.caps is not None else None


def count(raw: dict[str, Any], parts: list[int], text: str) -> tuple[int, str]:
    """``plan --count`` of a tuned study from its raw section: each combination of the axes gets its budget
    of configurations on the tuning seeds, then its selection on the final seeds (halving only lowers it)."""
    trials = raw.get("trials", 16) if isinstance(raw.get("trials"), int) else 16
    tuning = len(raw["seeds"]) if isinstance(raw.get("seeds"), list) else len(DEFAULT_TUNING_SEEDS)
    combos, final = parts[0] * parts[1], parts[3]
    return combos * (trials * tuning + final), (f"{text.rsplit(' x ', 2)[0]} x ({trials} configurations x {tuning} "
                                                f"tuning seeds + {final} final seeds)")


def keys(tune: dict[str, Any]) -> list[str]:
    """Every setting a technique's space draws, in order of first appearance: the suite's extra axes."""
    return list(dict.fromkeys(k for space in tune["spaces"].values() for k in space))


def draws(tune: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The configurations of technique ``name``: ``trials`` points of its space (one when it has none)."""
    space = tune["spaces"][name]
    digest = hashlib.sha256(f"{tune['seed']}/{name}".encode()).digest()
    return search.quasi_draw(space, tune["trials"], tune["sampler"], int.from_bytes(digest[:4], "big"))


def plan(tune: dict[str, Any], fixed: list[dict[str, Any]], label: Callable[[dict[str, Any], str], Any],
         expand: Callable[..., list[list[str]]], max_epochs: int) -> dict[str, Any]:
    """The search of a tuned study: a bracket per technique and workload (each combination of the
    suite's axes, ``fixed``; ``label(combo, axis)`` names a value), its configurations' rung-0 trials
    made by ``expand(combos, stop_after, seeds)``."""
    h = tune["halving"]
    rungs = search.halving_bracket(1, max_epochs, h["min_epochs"], h["eta"]).rungs if h else (max_epochs,)
    out = []
    for f in fixed:
        name = str(label(f, tune["axis"]))
        where = ", ".join(f"{a}={label(f, a)}" for a in f if a != tune["axis"])
        configs = expand([{**f, **row} for row in draws(tune, name)], rungs[0] if rungs[0] < max_epochs else None,
                         tune["seeds"])
        if configs:  # none when the exclude rules remove every draw
            keep = search.keep_counts(len(configs), h["eta"], len(rungs)) if h else (len(configs),)
            out.append({"s": len(rungs) - 1, "rungs": list(rungs), "configs": configs, "keep": list(keep),
                        "technique": name, "where": where or "all", "name": f"{name} on {where}" if where else name})
    return {"tune": tune, "halving": h, "metric": tune["metric"], "brackets": out}


def progress(info: dict[str, Any], trials: dict[str, TrialSpec], record: Callable[[str], Record | None],
             given_up: set[str] = frozenset()) -> search.Progress:
    """Where a tuned study stands: each technique's tuning trials on each workload (rung after rung
    under halving), then, once they are done, its selected configuration on the final seeds."""
    tune, metric = info["tune"], info["metric"]
    todo, dropped, lines, reached = [], [], [], []
    for b in info["brackets"]:
        state = search.bracket_state(b, trials, record, metric, given_up)
        todo += state.todo
        dropped += state.dropped
        reached += state.reached
        if not state.done:
            lines.append(state.line)
            continue
        best = search.best_config(state.final, record, metric)
        if best is None:
            lines.append(f"{b['name']}: no configuration trained to the end: nothing to select")
            continue
        chosen = state.final[best[0]][0]
        dropped += [t for ts in state.final.values() for t in ts]  # no rung resumes them now
        finals = final_trials(chosen, tune["final_seeds"])
        reached += finals
        missing = [t for t in finals if t.trial_id not in given_up and _needs_run(record(t.trial_id))]
        todo += missing
        lines.append(f"{b['name']}: selected configuration {best[0] + 1} of {len(b['configs'])} ({metric} "
                     f"{best[1]:.4g}); " + (f"{search.plural(len(missing), 'final trial')} to run" if missing else "done"))
    return search.Progress(todo, dropped, lines, reached)


def selections(info: dict[str, Any], trials: dict[str, TrialSpec], record: Callable[[str], Record | None]
               ) -> list[tuple[dict[str, Any], TrialSpec | None, float | None]]:
    """Each bracket with its selected configuration's rung-0 trial and its score, (None, None) until
    its tuning is done or where none trained: what the report shows as selected."""
    out = []
    for b in info["brackets"]:
        state = search.bracket_state(b, trials, record, info["metric"])
        best = search.best_config(state.final, record, info["metric"]) if state.done else None
        out.append((b, trials[b["configs"][best[0]][0]] if best else None, best[1] if best else None))
    return out


def final_trials(chosen: TrialSpec, seeds: list[int]) -> list[TrialSpec]:
    """The selected configuration's whole run on each final seed."""
    config = chosen.config
    config["budget"]["stop_after"] = None
    return [TrialSpec.make(chosen.suite, config, seed, dict(chosen.axes)) for seed in seeds]


def _needs_run(r: Record | None) -> bool:
    return r is None or r.status not in FINAL_STATUSES


def final_only(suite: dict[str, Any], items: list[Any]) -> list[Any]:
    """The records (or trials) a tuned study's comparisons, claims and verdicts cover: its final seeds'.
    All of them for any other suite."""
    tune = (suite.get("search") or {}).get("tune")
    if not tune:
        return items
    seeds = set(tune["final_seeds"])
    return [r for r in items if r.seed in seeds]
