"""Suite (YAML) → validated Suite → list of TrialSpec.

A suite names a ``base`` trial config, the axes to vary (``grid``: cross product; ``zip``: lists
varied together), ``exclude`` rules and ``seeds``. Every problem is found here, at load time, and
reported with the file and the key path; nothing malformed reaches a training loop.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import harness.components  # noqa: F401  (registers the built-in components, datasets and models)
import harness.data  # noqa: F401
import harness.models  # noqa: F401
from harness import search, sequential as seq, tune
from harness.errors import ConfigError
from harness.layout import SUITE_NAME
from harness.matching import selects
from harness.param_rules import resolve_rules
from harness.fused.plan import parse_fuse
from harness.registry import check_keys, check_value, near_miss, resolve_params
from harness.settings import (
    COMPONENTS, LISTS, SCALARS, SECTIONS, TRIAL_KEYS, check_slurm, execution_params, report_params, slurm_params,
)
from harness.suitefile import check_integers, read_yaml
from harness.spec import TrialSpec, canonical_json, component_name
from harness.tracking import tracker_missing

# Every top-level key a suite accepts, and what `harness list settings` says of it (sections with keyword
# parameters add theirs from harness.settings).
SUITE_KEYS = {
    "name": "the suite's name: its results folder and SLURM job name (at most 100 letters, digits, _ . -)",
    "description": "free text, shown in the report",
    "seeds": "a count (seeds 0..N-1) or a list of seeds; every configuration runs once per seed; or {min, max, "
             "step, spending}: seeds added until the claims are decided (harness.sequential)",
    "budget": "shorthand for base.budget (see the trial setting budget)",
    "trackers": "shorthand for base.trackers",
    "base": "the trial settings every trial shares (the trial settings below)",
    "grid": "axes to cross: a trial setting or dotted path (optimizer.lr) -> a list of values",
    "zip": "axes that vary together, one trial per position: equal-length lists",
    "random": "random search: {space: {dotted key: {uniform|loguniform|int: [low, high]} or [choices]}, n, seed}",
    "tune": "a tuned comparison: {axis, trials, seeds, metric, sampler, seed, spaces, halving}: each value of "
            "axis tuned with the same budget on validation, then re-run on the suite's seeds (harness.tune)",
    "halving": "successive halving or hyperband over the configurations: {method: halving|hyperband, eta, "
               "min_epochs, metric}",
    "exclude": "axis combinations to leave out: a list of {axis: value, ...} mappings, each matched as a claim's "
               "selectors are (harness.matching: a list setting is matched whole)",
    "report": "what the report compares (parameters below)",
    "slurm": "how harness submit asks SLURM for each array task (parameters below)",
    "execution": "how the trials run: fused packs, crash limit, threads per trial (parameters below)",
    "claims": "what the results should show, as data: [{id, text, source, compare, against | value, where, metric, "
              "expect, margin, target}] (harness/claims.py; harness verify)",
}
METRICS = ["test_acc", "test_loss", "val_acc", "val_loss", "train_acc", "train_loss"]


def resolve_trial(raw: dict[str, Any], path: str) -> dict[str, Any]:
    """A trial config with every component resolved, every default filled in and checked."""
    if not isinstance(raw, dict):
        raise ConfigError(path, f"expected a mapping of trial settings, got {raw!r}")
    check_keys(raw, TRIAL_KEYS, path, "trial setting")
    config: dict[str, Any] = {}
    for key, (registry, default) in COMPONENTS.items():
        value = raw.get(key, default)
        if isinstance(value, dict) and "name" not in value and "class" not in value:  # `model: {width: 32}`
            value = {"name": default, **value}
        config[key] = registry.resolve(value, f"{path}.{key}")
    for key, registry in LISTS.items():
        items = raw.get(key) or []
        if not isinstance(items, list):
            raise ConfigError(f"{path}.{key}", f"expected a list of {registry.kind}s, got {items!r}")
        config[key] = [registry.resolve(v, f"{path}.{key}[{i}]") for i, v in enumerate(items)]
        names = [c["name"] for c in config[key]]
        for name in set(names):
            if names.count(name) > 1:
                raise ConfigError(f"{path}.{key}", f"{registry.kind} {name!r} is listed twice")
    for key, params in SECTIONS.items():
        config[key] = resolve_params(params, raw.get(key) or {}, f"{path}.{key}", key)
    config.update(resolve_params(SCALARS, {k: raw[k] for k in SCALARS if k in raw}, path, "trial"))
    config["trackers"] = list(config["trackers"])
    for i, name in enumerate(config["trackers"]):
        problem = tracker_missing(name)
        if problem:
            raise ConfigError(f"{path}.trackers[{i}]", problem)
    budget = config["budget"]
    if budget["stop_after"] is not None and budget["stop_after"] > budget["epochs"]:
        raise ConfigError(f"{path}.budget.stop_after", f"{budget['stop_after']} is past the run's "
                                                       f"{budget['epochs']} epochs")
    if config["ensemble"]["members"] > 1 and any(r["name"] == "early_stopping" for r in config["regularizers"]):
        raise ConfigError(f"{path}.ensemble", "early_stopping would stop members at different epochs; "
                                              "an ensemble's members train for the same budget")
    rules = resolve_rules(raw.get("param_groups"), path, config)
    if rules:  # absent when unused: the resolved config (and trial id) of a suite without it is unchanged
        config["param_groups"] = rules
    for key in (*COMPONENTS, *LISTS):  # each entry's compatible(config), once every setting is resolved
        entries = config[key] if key in LISTS else [config[key]]
        registry = LISTS[key] if key in LISTS else COMPONENTS[key][0]
        for entry in entries:
            compatible = registry.get(entry["name"]).compatible
            problem = compatible(config) if compatible else None
            if problem:
                raise ConfigError(f"{path}.{key}", problem)
    return config


def _set(d: dict[str, Any], dotted: str, value: Any, path: str) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        if isinstance(d, list):  # `regularizers.0.p`: a key of a list's component (a tuned space's)
            if not part.isdigit() or int(part) >= len(d):
                raise ConfigError(path, f"cannot set {dotted}: {part} is not an index of {d!r}")
            if isinstance(d[int(part)], str):
                d[int(part)] = {"name": d[int(part)]}
            d = d[int(part)]
            continue
        if isinstance(d.get(part), str):  # `optimizer: adam` then `optimizer.lr: ...`
            d[part] = {"name": d[part]}
        if part not in d or d[part] is None:
            d[part] = {}
        if not isinstance(d[part], dict):
            raise ConfigError(path, f"cannot set {dotted}: {part} is {d[part]!r}, not a mapping")
        d = d[part]
    d[parts[-1]] = value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``key.path=value`` strings (value read as YAML) set into a copy of the raw suite."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}", "expected dotted.key=value")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {key}", f"value is not valid YAML: {e}") from None
        except ValueError as e:  # an integer past Python's 4300-digit conversion limit, as in a file
            raise ConfigError(f"override {key}", f"a value YAML cannot convert ({str(e).splitlines()[0][:120]})") from None
        check_integers(value, f"override {key}")
        top = key.split(".")[0]
        if top not in SUITE_KEYS:
            raise ConfigError(f"override {key}", f"unknown suite key {top!r}; {near_miss(top, SUITE_KEYS)}")
        _set(raw, key, value, f"override {key}")
    return raw


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    file: str
    seeds: tuple[int, ...]
    axes: tuple[str, ...]  # the axes that vary, in suite order
    trials: tuple[TrialSpec, ...]
    report: dict[str, Any]
    source_sha256: str
    overrides: tuple[str, ...] = ()
    slurm: dict[str, Any] = field(default_factory=dict)
    # random: {space, n, seed}; halving: its settings and brackets (harness.search); None for a grid
    search: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict)  # the suite as read, overrides applied (harness refine)
    execution: dict[str, Any] = field(default_factory=lambda: {"fuse": "off", "crashes": 2, "threads": 1})  # settings
    claims: list[dict[str, Any]] = field(default_factory=list)  # harness.claims.parse_claims

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "description": self.description, "file": self.file,
            "seeds": list(self.seeds), "axes": list(self.axes), "report": self.report,
            "source_sha256": self.source_sha256, "overrides": list(self.overrides), "slurm": self.slurm,
            "search": self.search, "raw": self.raw, "execution": self.execution, "claims": self.claims,
        }


def load_suite(file: str | Path, overrides: list[str] | None = None, max_trials: int | None = None) -> Suite:
    """Read, validate and expand a suite file; any problem raises ConfigError naming the file. A suite of
    more than ``max_trials`` trials (default ``MAX_TRIALS``, or ``HARNESS_MAX_TRIALS``) is refused before
    any is built."""
    file = str(file)
    raw, text = _read(file, overrides)
    try:
        return _build(raw, file, hashlib.sha256(text.encode()).hexdigest(), tuple(overrides or ()), max_trials)
    except ConfigError as e:
        raise e.in_file(file) from None


def count_trials(file: str | Path, overrides: list[str] | None = None) -> tuple[int, str]:
    """How many trials the suite makes and the product that gives it (``2 grid x 1 zip x 1 random x 5 seeds``), from
    its axes without building any trial: for a suite too large to expand. Exclusions lower it, halving's rungs add."""
    file = str(file)
    raw, _ = _read(file, overrides)
    try:
        grid, zipped = _axes(raw, "grid"), _axes(raw, "zip")
        space, n_random, _ = _random(raw.get("random"), [*grid, *zipped])
        given = raw.get("seeds", 1)
        seeds = seq.parse_seeds(given, MAX_TRIALS)["max"] if isinstance(given, dict) else len(_seeds(given))
    except ConfigError as e:
        raise e.in_file(file) from None
    zip_rows = len(next(iter(zipped.values()))) if zipped else 1
    parts = [math.prod(len(v) for v in grid.values()), zip_rows, n_random or 1, seeds]
    text = " x ".join(f"{n} {what}" for n, what in zip(parts, ("grid", "zip", "random", "seeds")))
    return tune.count(raw["tune"], parts, text) if isinstance(raw.get("tune"), dict) else (math.prod(parts), text)


def _read(file: str, overrides: list[str] | None) -> tuple[dict[str, Any], str]:
    """The suite file as a mapping with its overrides applied, and its text."""
    raw, text = read_yaml(file)
    try:
        if not isinstance(raw, dict):
            raise ConfigError("", f"a suite is a mapping of keys (name, base, grid, ...), got {type(raw).__name__}")
        return apply_overrides(raw, list(overrides or [])), text
    except ConfigError as e:
        raise e.in_file(file) from None


MAX_TRIALS = 100_000  # trials of one suite; HARNESS_MAX_TRIALS raises it


def _build(raw: dict[str, Any], file: str, sha: str, overrides: tuple[str, ...], max_trials: int | None) -> Suite:
    check_keys(raw, SUITE_KEYS, "", "suite key")
    if "name" not in raw:
        raise ConfigError("name", "missing: every suite needs a name (it names its results folder)")
    name = check_value(str, raw["name"], "name")
    if not SUITE_NAME.fullmatch(name):
        raise ConfigError("name", f"use at most 100 letters, digits, '_', '.', '-', starting with a letter or digit "
                                  f"(it names a folder and a SLURM job), got {name[:120]!r}")
    description = check_value(str, raw.get("description", ""), "description")
    sequential = (seq.parse_seeds(raw["seeds"], MAX_TRIALS) if isinstance(raw.get("seeds"), dict) else None)
    seeds = tuple(range(sequential["min"])) if sequential else _seeds(raw.get("seeds", 1))

    base = raw.get("base") or {}
    if not isinstance(base, dict):
        raise ConfigError("base", f"expected a mapping of trial settings, got {base!r}")
    base = copy.deepcopy(base)
    if "budget" in raw:
        budget = raw["budget"]
        if not isinstance(budget, dict):
            raise ConfigError("budget", f"expected a mapping like {{epochs: 5}}, got {budget!r}")
        base["budget"] = {**(base.get("budget") or {}), **budget}
    if "trackers" in raw:
        base["trackers"] = raw["trackers"]
    resolve_trial(base, "base")  # report problems in base at their own path

    grid = _axes(raw, "grid")
    zipped = _axes(raw, "zip")
    lengths = {len(v) for v in zipped.values()}
    if len(lengths) > 1:
        raise ConfigError("zip", f"every zip list must have the same length, got {sorted(lengths)}")
    both = set(grid) & set(zipped)
    if both:
        raise ConfigError("zip", f"axis {sorted(both)[0]!r} is in both grid and zip")
    space, n_random, random_seed = _random(raw.get("random"), [*grid, *zipped])
    labels = {axis: _labels(axis, values) for axis, values in {**grid, **zipped}.items()}
    max_epochs = resolve_trial(base, "base")["budget"]["epochs"]
    tuned = None
    if "tune" in raw:
        if space is not None or "halving" in raw:
            raise ConfigError("tune", "a tuned comparison draws each technique's configurations itself: remove "
                                      "random: and halving: (tune.halving halves within its budget)")
        tuned = tune.parse_tune(raw["tune"], {**grid, **zipped}, labels, seeds,
                                (raw.get("report") or {}).get("metric", "test_acc"), max_epochs)
    axes = [*grid, *zipped, *(space or {}), *(tune.keys(tuned) if tuned else [])]
    exclude = _exclude(raw.get("exclude"), axes)
    halving = None
    if "halving" in raw:
        for axis in axes:
            if axis == "budget" or axis.startswith("budget."):
                raise ConfigError("halving", f"{axis} varies, but successive halving sets the budget itself")
        halving = search.parse_halving(raw["halving"], max_epochs, (raw.get("report") or {}).get("metric", "test_acc"))
        if halving["method"] == "hyperband" and space is None:
            raise ConfigError("halving.method", "hyperband draws fresh configurations for each bracket: "
                                                "give the suite a random: {space: ...} section")
        if halving["method"] == "hyperband" and n_random is not None:
            raise ConfigError("random.n", "hyperband sets the number of configurations of each bracket itself; "
                                          "remove random.n")
    elif space is not None and n_random is None:
        raise ConfigError("random.n", "missing: how many configurations to draw")

    zip_rows = [dict(zip(zipped, row)) for row in zip(*zipped.values())] or [{}]
    _count_trials(grid, len(zip_rows), tuned["trials"] if tuned else n_random,
                  len(tuned["seeds"]) + len(seeds) if tuned else len(seeds), max_trials)  # before expanding them
    fixed = [{**dict(zip(grid, grid_row)), **zip_row} for grid_row in itertools.product(*grid.values())
             for zip_row in zip_rows]
    for axis, d in (space or {}).items():
        if d["dist"] == "choice":
            labels[axis] = _labels(axis, d["values"])
    sources = {**{a: ("grid", v) for a, v in grid.items()}, **{a: ("zip", v) for a, v in zipped.items()},
               **{a: ("random", d.get("values")) for a, d in (space or {}).items()},
               **{a: ("tune", None) for a in (tune.keys(tuned) if tuned else [])}}
    trials: list[TrialSpec] = []
    seen: set[str] = set()
    considered = 0

    def expand(combos: list[dict[str, Any]], stop_after: int | None, run_seeds: Any = seeds) -> list[list[str]]:
        """Trials of every combination, each with every seed; the trial ids of each configuration. A
        configuration drawn twice (a discrete space) is kept once."""
        nonlocal considered
        configs = []
        for combo in combos:
            considered += 1
            config = _apply(base, combo, sources, stop_after)
            if any(selects(rule, config) for rule in exclude):
                continue
            key = canonical_json(config)
            if key in seen:
                if space is None and tuned is None:
                    raise ConfigError("grid", "two grid points resolve to the same trial (a value listed twice?)")
                continue
            seen.add(key)
            # a setting one technique's space draws and another's does not: none for the other
            axis_values = {a: _axis_label(labels, sources, a, combo[a]) if a in combo else None for a in axes}
            specs = [TrialSpec.make(name, config, seed, axis_values) for seed in run_seeds]
            trials.extend(specs)
            configs.append([t.trial_id for t in specs])
        return configs

    search_info: dict[str, Any] | None = None
    if tuned is not None:  # each technique's draws on each workload: a bracket of its own
        label = lambda f, a: _axis_label(labels, sources, a, f[a])  # noqa: E731
        search_info = tune.plan(tuned, fixed, label, expand, max_epochs)
    elif halving is None:
        configs = expand([{**f, **r} for f in fixed for r in (search.draw(space, n_random, random_seed) if space
                                                               else [{}])], None)
        search_info = None if space is None else {"space": space, "n": n_random, "seed": random_seed, "halving": None}
        if sequential:  # more seeds for the configurations of claims still open (harness.sequential)
            search_info = {**(search_info or {}), "sequential": {**sequential, "configs": configs}}
    else:
        search_info = {"space": space, "n": n_random, "seed": random_seed, "halving": halving,
                       "brackets": search.plan_brackets(halving, space, n_random, random_seed, fixed, expand),
                       "metric": halving["metric"]}
    if not trials:
        raise ConfigError("exclude", f"the exclude rules remove all {considered} combinations")

    report = resolve_params(report_params, raw.get("report") or {}, "report", "report")
    if isinstance(report["compare"], str):
        report["compare"] = [report["compare"]]
    for i, axis in enumerate(report["compare"] or []):
        if axis not in axes:
            raise ConfigError(f"report.compare[{i}]", f"{axis!r} is not an axis of this suite; axes: {axes}")
    if report["metric"] not in METRICS:
        raise ConfigError("report.metric", f"unknown metric {report['metric']!r}; {near_miss(report['metric'], METRICS)}")
    slurm = resolve_params(slurm_params, raw.get("slurm") or {}, "slurm", "slurm")
    slurm["setup"], slurm["extra"] = list(slurm["setup"]), list(slurm["extra"])
    check_slurm(slurm)
    execution = resolve_params(execution_params, raw.get("execution") or {}, "execution", "execution")
    execution["fuse"] = parse_fuse(execution["fuse"])
    from harness.claims import baseline_row, parse_claims

    if report["baseline"] is not None:  # checked now, not after every trial ran
        baseline_row(report["baseline"], axes, [(t.config, dict(t.axes)) for t in trials])
    claims = parse_claims(raw.get("claims"), axes, [t.config for t in trials])
    if sequential and (not claims or tuned or halving):
        raise ConfigError("seeds", "seeds: {min, max} adds seeds until the suite's claims are decided: "
                                   + ("it states none" if not claims else "not with tune: or halving:"))
    return Suite(name, description, file, seeds, tuple(axes), tuple(trials), report, sha, overrides, slurm,
                 search_info, raw, execution, claims)


def _random(value: Any, fixed_axes: list[str]) -> tuple[dict[str, dict[str, Any]] | None, int | None, int]:
    """The ``random`` section: (space, n, seed); (None, None, 0) without one."""
    if value is None:
        return None, None, 0
    if not isinstance(value, dict):
        raise ConfigError("random", f"expected a mapping like {{n: 20, space: {{optimizer.lr: {{loguniform: "
                                    f"[1.0e-4, 1.0]}}}}}}, got {value!r}")
    check_keys(value, ["n", "seed", "space"], "random", "random key")
    space = search.parse_space(value.get("space"))
    for axis in space:
        top = axis.split(".")[0]
        if top not in TRIAL_KEYS:
            raise ConfigError(f"random.space.{axis}", f"not a trial setting; {near_miss(top, TRIAL_KEYS)}")
        if axis in fixed_axes:
            raise ConfigError(f"random.space.{axis}", "is also a grid or zip axis")
    n = value.get("n")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ConfigError("random.n", f"expected a whole number >= 1, got {n!r}")
    seed = value.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError("random.seed", f"expected a whole number >= 0, got {seed!r}")
    return space, n, seed


def _axis_label(labels: dict[str, list[Any]], sources: dict[str, tuple[str, Any]], axis: str, value: Any) -> Any:
    if axis in labels:  # grid, zip and choice axes: the short name of the value
        return labels[axis][_index(sources[axis][1], value)]
    return value  # a number drawn from a range


def _count_trials(grid: dict[str, list[Any]], zip_rows: int, n_random: int | None, seeds: int,
                  limit: int | None) -> None:
    """Refuse a suite of more trials than the limit, counted without building them."""
    limit = limit or int(os.environ.get("HARNESS_MAX_TRIALS", MAX_TRIALS))
    n = math.prod(len(v) for v in grid.values()) * zip_rows * (n_random or 1) * seeds
    if n > limit:
        raise ConfigError("grid", f"the suite makes {n} trials (grid x zip x random x seeds), more than the limit "
                                  f"{limit}; --max-trials (or HARNESS_MAX_TRIALS) raises it")


def _seeds(value: Any) -> tuple[int, ...]:
    if isinstance(value, list):
        seeds = tuple(check_value(int, v, f"seeds[{i}]") for i, v in enumerate(value))
        if not seeds:
            raise ConfigError("seeds", "empty list")
        if len(set(seeds)) != len(seeds):
            raise ConfigError("seeds", f"a seed is listed twice: {list(seeds)}")
        return seeds
    n = check_value(int, value, "seeds")
    if not 1 <= n <= MAX_TRIALS:
        raise ConfigError("seeds", f"must be a count >= 1 (at most {MAX_TRIALS}) or a list of seeds, got {n}")
    return tuple(range(n))


def _axes(raw: dict[str, Any], key: str) -> dict[str, list[Any]]:
    if key not in raw:
        return {}
    axes = raw[key]
    if not isinstance(axes, dict):
        raise ConfigError(key, f"expected a mapping of axis → list of values, got {axes!r}")
    if not axes:
        raise ConfigError(key, "empty: list at least one axis, or remove the key to run base alone")
    for axis, values in axes.items():
        top = str(axis).split(".")[0]
        if top not in TRIAL_KEYS:
            raise ConfigError(f"{key}.{axis}", f"not a trial setting; {near_miss(top, TRIAL_KEYS)}")
        if not isinstance(values, list):
            raise ConfigError(f"{key}.{axis}", f"expected a list of values, got {values!r}")
        if not values:
            raise ConfigError(f"{key}.{axis}", "empty list: an axis needs at least one value")
    return {str(a): v for a, v in axes.items()}


def _apply(base: dict[str, Any], combo: dict[str, Any], sources: dict[str, tuple[str, Any]],
           stop_after: int | None = None) -> dict[str, Any]:
    raw = copy.deepcopy(base)
    # Whole values first, so that `optimizer.lr` can refine a grid value of `optimizer`.
    for axis in sorted(combo, key=lambda a: a.count(".")):
        _set(raw, axis, copy.deepcopy(combo[axis]), axis)
    if stop_after is not None:  # the first rung of successive halving
        _set(raw, "budget.stop_after", stop_after, "halving")
    try:
        return resolve_trial(raw, "")
    except ConfigError as e:
        path = e.path.lstrip(".")
        for axis in sorted(combo, key=lambda a: -a.count(".")):
            if path == axis or path.startswith(axis + ".") or path.startswith(axis + "["):
                section, values = sources[axis]
                if section in ("random", "tune"):
                    raise ConfigError(f"{section}.space{'s' * (section == 'tune')}.{axis}{path[len(axis):]}",
                                      f"{e.message} (drawn value {combo[axis]!r})") from None
                i = _index(values, combo[axis])
                raise ConfigError(f"{section}.{axis}[{i}]{path[len(axis):]}", e.message) from None
        raise ConfigError(f"base.{path}", e.message) from None


def _index(values: list[Any], value: Any) -> int:
    for i, v in enumerate(values):
        if v == value:
            return i
    raise ValueError(value)


def _labels(axis: str, values: list[Any]) -> list[Any]:
    """Short, unique names for the values of an axis: the component name where that is enough."""
    if not values:
        return []
    unique = [v for i, v in enumerate(values) if v not in values[:i]]
    if len(unique) < len(values):  # zip axes repeat values: name each distinct value once
        names = _labels(axis, unique)
        return [names[unique.index(v)] for v in values]
    if all(isinstance(v, list) and all(component_name(c) for c in v) for v in values):  # lists of components
        flat = iter(_labels(axis, [c for v in values for c in v]))
        out = ["+".join(str(next(flat)) for _ in v) or "none" for v in values]
        return out if len(set(out)) == len(out) else [str(v) for v in values]
    if not all(isinstance(v, (str, dict)) and component_name(v) for v in values):
        return [v if isinstance(v, (int, float, str, bool)) or v is None else str(v) for v in values]
    names = [component_name(v) for v in values]
    labels = []
    for v, name in zip(values, names):
        if names.count(name) == 1:
            labels.append(name)
            continue
        params = v if isinstance(v, dict) else {}
        shown = ",".join(f"{k}={params[k]}" for k in sorted(params) if k not in ("name", "class"))
        labels.append(f"{name}({shown})" if shown else name)
    if len(set(labels)) != len(labels):
        return [str(v) for v in values]
    return labels


def _exclude(rules: Any, axes: list[str]) -> list[dict[str, Any]]:
    if rules is None:
        return []
    if not isinstance(rules, list):
        raise ConfigError("exclude", f"expected a list of rules like {{optimizer: adam, norm: batchnorm}}, got {rules!r}")
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict) or not rule:
            raise ConfigError(f"exclude[{i}]", f"expected a mapping of axis → value, got {rule!r}")
        for key in rule:
            top = str(key).split(".")[0]
            if top not in TRIAL_KEYS:
                raise ConfigError(f"exclude[{i}].{key}", f"not a trial setting; {near_miss(top, TRIAL_KEYS)}")
    return rules
