"""Running a suite's sweep: the checks before any trial starts, the local pool (rung after rung for
successive halving), the rung due for a SLURM submission, baselines, compare's suite with a
technique swapped in, and refine's follow-up search narrowed around the best configurations.

Plain functions over plain data, raising ``UsageError``/``ConfigError`` for bad input. What the
command line prints while they run comes through ``say`` (progress) and ``warn`` (problems), so
that the caller decides where it goes.
"""
from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from harness import layout, search
from harness.errors import ConfigError, UsageError
from harness.store import atomic_write, clean_temp, read_plan, scan, write_plan

if TYPE_CHECKING:
    from harness.regress import Verdict
    from harness.spec import TrialSpec
    from harness.suite import Suite

Say = Callable[[str], None]


def _quiet(text: str) -> None:
    pass


@dataclass(frozen=True)
class Pool:
    """How the local pool runs trials: ``workers`` processes, ``workers_per_gpu`` of them packed on
    each GPU in turn (None: spread over the GPUs), ``plugins`` imported in each worker."""

    workers: int = 1
    workers_per_gpu: int | None = None
    plugins: list[str] = field(default_factory=list)

    def running(self, count: int, suite: Suite) -> str:
        return f"running {count} trials of {suite.name} ({self.workers} worker{'s' * (self.workers > 1)})"


def _other_threads(suite: Suite, found: Any) -> str | None:
    """A line when final records this run keeps as they are were computed under another thread count than the
    one it runs its trials under (``execution.threads``; under ``auto`` the count follows the workers: no line)."""
    threads = suite.execution["threads"]
    if threads == "auto":
        return None
    other = Counter(found.records[t.trial_id].environment.get("torch_threads") for t in suite.trials
                    if found.done(t.trial_id))
    other.pop(threads, None)
    other.pop(None, None)  # a record that never started training says nothing of threads
    if not other:
        return None
    counts = ", ".join(f"{n} under {k}" for k, n in sorted(other.items()))
    return (f"{sum(other.values())} of them were computed under another thread count ({counts}) than this run's "
            f"{threads} a trial (environment.torch_threads); they are kept as they are")


def preflight(suite: Suite) -> None:
    """Missing dataset files are bad input: say so before any trial starts."""
    from harness.data import DATASETS

    seen = set()
    for spec in suite.trials:
        dataset = spec.config["dataset"]
        key = repr(sorted(dataset.items()))
        if key in seen:
            continue
        seen.add(key)
        check = DATASETS.get(dataset["name"]).caps.preflight
        if check is not None:
            try:
                check(dataset)
            except UsageError as e:
                raise ConfigError("dataset", str(e), suite.file) from None


def plan_summary(suite: Suite) -> str:
    """``harness plan``'s first line: how many trials, made how."""
    axes = f"axes: {', '.join(suite.axes) or '(none)'}"
    tuned, seq = (suite.search or {}).get("tune"), (suite.search or {}).get("sequential")
    if seq:
        from harness.sequential import looks

        return (f"{suite.name}: {len(suite.trials)} trials = {len(seq['configs'])} configurations x {seq['min']} "
                f"seeds at the first look; then seeds up to {seq['max']} for the configurations of claims still open "
                f"(looks at {', '.join(map(str, looks(seq)))} seeds, {seq['spending']} spending); {axes}")
    if not tuned:
        return (f"{suite.name}: {len(suite.trials)} trials = {len(suite.trials) // len(suite.seeds)} configurations "
                f"x {len(suite.seeds)} seeds; {axes}")
    brackets = suite.search["brackets"]
    return (f"{suite.name}: {len(suite.trials)} tuning trials ({tuned['axis']}: {len(brackets)} technique x workload "
            f"pairs, up to {tuned['trials']} {tuned['sampler']} configurations each x {len(tuned['seeds'])} tuning "
            f"seed{'s' * (len(tuned['seeds']) > 1)}{', halving within the budget' if tuned['halving'] else ''}), then "
            f"each pair's configuration selected on {tuned['metric']} x {len(suite.seeds)} final seeds: "
            f"{len(brackets) * len(suite.seeds)} trials; {axes}")


def gpu_slots(suite: Suite, pool: Pool) -> list[int | None]:
    """Each worker's GPU, after checking that this node can run what the trials ask for."""
    import torch

    from harness.launch.local import gpu_slots as slots

    gpus = torch.cuda.device_count()
    if not gpus and any(t.config["precision"] == "fp16" for t in suite.trials):
        raise ConfigError("precision", "fp16 needs a GPU (its loss scaler is CUDA's); use bf16 on a CPU", suite.file)
    processes = max(t.config["resources"]["processes"] for t in suite.trials)
    if gpus and processes > 1:
        # one process per GPU (NCCL cannot put two ranks on one device), and such a trial takes them all
        if processes > gpus:
            raise ConfigError("resources.processes", f"{processes} processes need {processes} GPUs; this node "
                              f"has {gpus}", suite.file)
        if pool.workers > 1:
            raise UsageError("multi-process trials take every GPU of the node: run them with --workers 1")
    return slots(pool.workers, gpus, pool.workers_per_gpu)


def run_suite(suite: Suite, results: Path, pool: Pool, say: Say = _quiet, warn: Say = _quiet) -> Counter:
    """Run the suite's trials that have no final record into ``results``; their statuses."""
    from harness.launch import run_local

    if pool.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {pool.workers}")
    from harness.launch import cpu_count
    from harness.launch.local import threads_for

    if pool.workers > cpu_count():
        warn(f"harness: --workers {pool.workers} is more than this machine's {cpu_count()} cores; trials will "
             "share them")
    elif pool.workers * threads_for(suite.execution["threads"], pool.workers) > cpu_count():
        warn(f"harness: {pool.workers} workers x {suite.execution['threads']} threads is more than this machine's "
             f"{cpu_count()} cores; they will wait for each other (--threads sets the threads per trial)")
    preflight(suite)
    slots = gpu_slots(suite, pool)
    results.mkdir(parents=True, exist_ok=True)
    clean_temp(results)
    write_plan(results, suite.to_dict(), suite.trials)
    found = scan(results)
    for path, why in found.corrupt.items():
        warn(f"harness: unreadable or edited record {path} ({why}); running that trial again")
    if search.staged(suite.search):
        trials = _run_stages(suite, results, pool, slots, say)
    else:
        todo = [t for t in suite.trials if not found.done(t.trial_id)]
        done = len(suite.trials) - len(todo)
        if not todo:
            say(f"nothing to run: all {len(suite.trials)} trials of {suite.name} already have records in {results}")
        else:
            if done:
                say(f"{done} of {len(suite.trials)} trials already have records; running the other {len(todo)}")
                other = _other_threads(suite, found)
                if other:
                    say(other)
            else:
                say(dataclasses.replace(pool, workers=min(pool.workers, len(todo))).running(len(todo), suite))
            if suite.execution["fuse"] != "off":  # what fusing made of them (harness plan --fuse lists the packs)
                from harness.fused.plan import describe

                say(describe(todo, suite.execution["fuse"], pool.workers, any(s is not None for s in slots))[0])
            run_local(todo, results, pool.workers, plugins=pool.plugins, slots=slots, fuse=suite.execution["fuse"],
                      crash_limit=suite.execution["crashes"], threads=suite.execution["threads"])
            _wait_for_others(todo, results, say)
        trials = list(suite.trials)
    final = scan(results)
    statuses = Counter(final.records[t.trial_id].status if t.trial_id in final.records else "missing"
                       for t in trials)
    say(f"results: {results}  ({', '.join(f'{n} {s}' for s, n in sorted(statuses.items()))})")
    return statuses


def _wait_for_others(todo: list[TrialSpec], results: Path, say: Say) -> None:
    """Trials another process was running (their locks were held, so this one skipped them): wait until
    it has finished them, so that they count with their records rather than as missing."""
    from harness.launch.trial import finished, wait_for_lock

    found = scan(results)
    elsewhere = [t for t in todo if not found.done(t.trial_id)]
    held = [t for t in elsewhere if finished(results, t.trial_id) is None and wait_for_lock(results, t.trial_id, wait=False)]
    if held:
        say(f"waiting for {len(held)} trials running in another process")
        for t in held:
            wait_for_lock(results, t.trial_id)


def where_it_stands(suite: Suite, results: Path, given_up: set[str] = frozenset()) -> search.Progress:
    """Where a staged suite (successive halving, a tuned study) stands from its records, changing nothing."""
    from harness import sequential, tune

    trials, record = {t.trial_id: t for t in suite.trials}, scan(results).records.get
    if suite.search.get("sequential"):
        return sequential.progress(suite.to_dict(), trials, record, given_up)
    step = tune.progress if suite.search.get("tune") else search.progress
    return step(suite.search, trials, record, given_up)


def search_step(suite: Suite, results: Path, given_up: set[str] = frozenset()) -> search.Progress:
    """Where a staged suite stands (``where_it_stands``), with the plan rewritten to hold every trial
    started so far and the checkpoints of runs no rung will resume removed."""
    step = where_it_stands(suite, results, given_up)
    for path in search.checkpoints_to_drop(results, step.dropped):
        path.unlink(missing_ok=True)
    write_plan(results, suite.to_dict(), step.trials)  # what the report covers: every rung so far
    return step


def _run_stages(suite: Suite, results: Path, pool: Pool, slots: list[int | None], say: Say) -> list[TrialSpec]:
    """Rung after rung (a tuned study: then its final trials) until every bracket is done; each stage
    is an ordinary sweep of the local pool."""
    from harness.launch import run_local

    given_up: set[str] = set()  # trials that failed in this command: ranked last, not retried in a loop
    while True:
        step = search_step(suite, results, given_up)
        for line in step.lines:
            say(line)
        if not step.todo:
            return step.trials
        say(pool.running(len(step.todo), suite))
        run_local(step.todo, results, pool.workers, plugins=pool.plugins, slots=slots, fuse=suite.execution["fuse"],
                  crash_limit=suite.execution["crashes"], threads=suite.execution["threads"])
        found = scan(results)
        given_up.update(t.trial_id for t in step.todo if not found.done(t.trial_id))


def due_for_submission(suite: Suite, results: Path, say: Say = _quiet) -> tuple[Suite, bool]:
    """(the suite cut to the trials to submit now, whether it is a successive-halving search), with
    the plan that reports read written first. A search submits the rung due now; a job after it
    submits the next."""
    preflight(suite)
    results.mkdir(parents=True, exist_ok=True)
    write_plan(results, suite.to_dict(), suite.trials)
    halving = search.staged(suite.search)
    if halving:
        step = search_step(suite, results)
        for line in step.lines:
            say(line)
        suite = dataclasses.replace(suite, trials=tuple(step.todo))
    return suite, halving


def run_baseline(suite: Suite, results: Path, pool: Pool, command: str, say: Say = _quiet,
                 warn: Say = _quiet) -> tuple[int, int]:
    """Run ``suite`` into the baselines folder ``results`` and write its provenance (the only way
    baselines are made); (the records it lists, the trials it planned)."""
    from harness.regress import write_provenance

    statuses = run_suite(suite, results, pool, say, warn)
    # a search's records are its rungs' trials (each stopped at its rung's epochs) beside the suite's own
    trials = search_step(suite, results).trials if search.staged(suite.search) else suite.trials
    return write_provenance(results, suite, list(trials), dict(statuses), command), len(trials)


def swap_technique(suite_file: str, technique: str) -> tuple[str, list[str]]:
    """``--technique KEY=VALUE`` as (KEY, the overrides that put it in the suite): it replaces the
    grid axis KEY (all its values become this one) or the base value; where KEY is a tuned axis, the
    search spaces of the values swapped out go with them (the technique keeps its own, if given)."""
    import json

    import yaml

    from harness.suitefile import read_yaml

    key, sep, value = technique.partition("=")
    if not sep or not key or "." in key:
        raise UsageError(f"--technique {technique!r}: expected KEY=VALUE with a top-level trial key, "
                         "e.g. optimizer=lion or 'optimizer={name: lion, lr: 1.0e-4}'")
    raw = read_yaml(suite_file)[0]  # the guarded reader: a binary or hostile file is one ConfigError
    if not isinstance(raw, dict):
        raise ConfigError("", f"a suite is a mapping of keys (name, base, grid, ...), got {type(raw).__name__}",
                          suite_file)
    section = lambda name: raw.get(name) if isinstance(raw.get(name), dict) else {}  # noqa: E731
    if key in section("zip"):
        raise UsageError(f"--technique {key}: {key} is a zip axis of {suite_file}; compare needs it in base or grid")
    swap = [f"grid.{key}=[{value}]" if key in section("grid") else f"base.{key}={value}"]
    tune = section("tune")
    if tune.get("axis") == key and isinstance(tune.get("spaces"), dict):
        try:
            given = yaml.safe_load(value)
        except yaml.YAMLError:
            given = None  # the suite's own loading names the problem
        name = given.get("name", given.get("class")) if isinstance(given, dict) else given
        kept = {k: v for k, v in tune["spaces"].items() if k == name}
        swap.append(f"tune.spaces={json.dumps(kept)}")
    return key, swap


def run_compare(suite: Suite, suite_file: str, key: str, results_root: Path, baseline: Path, pool: Pool,
                say: Say = _quiet, warn: Say = _quiet) -> Path:
    """Run ``suite``, the technique ``key`` swapped in, into its own folder under the compare root
    (checked first: the baseline it will be judged against exists); that folder."""
    from harness.regress import label_of

    if not baseline.is_dir():
        raise UsageError(f"baseline {baseline}: no such folder (make one with `harness baseline {suite_file}`)")
    results = layout.compare_dir(results_root, suite.name, f"{key}={label_of(suite.trials[0].config[key])}")
    run_suite(suite, results, pool, say, warn)
    return results


@dataclass(frozen=True)
class Tally:
    """The records of a results folder by status: over the trials of its plan (``planned``), else
    over the records found; ``unreadable`` records are listed apart."""

    trials: int
    planned: bool
    counts: Counter
    missing: int
    unreadable: dict[Path, str]  # path -> why it was left out


def suite_results(path: str, warn: Say = _quiet) -> Path:
    """The results folder of one suite: ``path`` itself, or the one suite folder below a results root
    (``harness run S --results out`` then ``harness report out``); several below it are listed to choose from."""
    results = Path(path)
    if layout.trials_dir(results).is_dir() or layout.plan_path(results).is_file():  # records, or a plan (submitted)
        return results
    if not results.is_dir():
        raise UsageError(f"{results}: no trials/ folder of records here ("
                         + ("no such folder)" if not results.exists() else "not a folder)"))
    below = layout.suite_dirs(results)
    if len(below) == 1:
        warn(f"harness: {results} is a results root; reading its one suite, {below[0]}")
        return below[0]
    if below:
        raise UsageError(f"{results}: a results root with {len(below)} suites; pass one of them: "
                         + ", ".join(map(str, below)))
    raise UsageError(f"{results}: no trials/ folder of records here, nor in a folder below")


def status_lines(results: Path) -> list[str]:
    """``harness status``: the records by status, those missing or unreadable, and the SLURM array's tasks."""
    from harness.launch.slurm import job_states

    t = tally(results)
    lines = [f"{results}: {t.trials} trials" + (" in the plan" if t.planned else "")]
    lines += [f"  {status:<12}{n}" for status, n in sorted(t.counts.items())]
    if t.missing:
        lines.append(f"  {'no record':<12}{t.missing}")
    if t.unreadable:
        lines.append(f"  {'unreadable':<12}{len(t.unreadable)}  (left out of reports; a run replaces them)")
        lines += [f"    {path}: {why}" for path, why in t.unreadable.items()]
    states = job_states(results)
    if states is not None:
        lines.append("SLURM array tasks: " + (", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items()))
                                              or "none pending or running"))
    return lines


def tally(results: Path) -> Tally:
    if not results.is_dir():
        raise UsageError(f"{results}: no such results folder")
    found = scan(results)
    plan = read_plan(results)
    ids = [t.trial_id for t in plan[1]] if plan else list(found.records)
    counts = Counter(found.records[i].status for i in ids if i in found.records)
    missing = sum(1 for i in ids if i not in found.records)
    return Tally(len(ids), plan is not None, counts, missing, found.corrupt)


def judge(candidate: Path, baseline: Path, metric: str, margin: float, technique: list[str] | None,
          output: Path, say: Say = _quiet, unverified: bool = False) -> list[Verdict]:
    """Verdicts of the candidate's records against the baseline's, after checking the baseline's
    provenance: shown through ``say`` as a table, written to ``output`` as Markdown."""
    from harness.regress import check_provenance, markdown_report, read_results, regress, terminal_table

    if not Path(baseline).is_dir():
        raise UsageError(f"baseline {baseline}: no such folder (make one with `harness baseline SUITE`)")
    provenance = check_provenance(baseline, unverified)
    keys, verdicts = regress(read_results(candidate, "candidate"), read_results(baseline, "baseline"), metric,
                             margin, technique)
    say(terminal_table(verdicts))
    atomic_write(output, markdown_report(verdicts, metric, margin, keys, candidate, baseline, provenance))
    return verdicts


@dataclass(frozen=True)
class Refinement:
    """A follow-up random search: its suite (in the suite file's own syntax), the ranking metric, the
    best configurations as (mean metric, config, seeds), how many were ranked, the space before and
    after."""

    suite: dict[str, Any]
    metric: str
    best: list[tuple[float, dict[str, Any], int]]
    ranked: int
    space: dict[str, dict[str, Any]]
    new_space: dict[str, dict[str, Any]]


def refine_search(results: Path, top: int, metric: str | None = None, widen: float = 0.25, n: int | None = None,
                  name: str | None = None) -> Refinement:
    """The random search whose records are in ``results``, its ranges narrowed around its ``top``
    configurations by ``metric`` (default: the search's validation metric), ``n`` draws (default:
    as before) and a new draw seed."""
    from harness.matching import matches
    from harness.spec import get_dotted

    plan = read_plan(results)
    suite = plan[0] if plan else {}
    space = (suite.get("search") or {}).get("space")
    if not space or not suite.get("raw"):
        raise UsageError(f"{results}: not the results of a random search (its plan.json has no random space); "
                         "refine narrows the space of a suite with a random: section")
    halving = suite["search"].get("halving")
    metric = metric or (halving["metric"] if halving else
                        {"test_acc": "val_acc", "test_loss": "val_loss"}.get(suite["report"]["metric"], "val_acc"))
    if metric.startswith("test_"):
        raise UsageError(f"--metric {metric}: choosing the next search on test data biases every result after it; "
                         "use a validation metric")
    ranked = search.rank_configs(list(scan(results).records.values()), metric)
    if not ranked:
        raise UsageError(f"{results}: no completed trial with {metric} to refine around")
    best = ranked[:top]
    values = {key: [get_dotted(c, key) for _, c, _ in best] for key in space}
    new_space = search.refine(space, values, widen, matches)
    raw = copy.deepcopy(suite["raw"])
    raw["name"] = name or f"{suite['name']}-refined"
    raw["random"] = {**(raw.get("random") or {}), "space": search.space_yaml(new_space),
                     "seed": (raw.get("random") or {}).get("seed", 0) + 1}
    if n:
        raw["random"]["n"] = n
    raw["description"] = (f"Refined from {results} ({suite['name']}): ranges narrowed around the best "
                          f"{len(best)} of {len(ranked)} configurations by {metric}.")
    return Refinement(raw, metric, best, len(ranked), space, new_space)
