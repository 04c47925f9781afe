"""The ``harness`` command.

Exit codes: 0 success; 1 some trials failed or diverged (recorded; the sweep went on);
2 bad usage or a bad suite (one line on stderr, no traceback); 130 interrupted.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness import layout
from harness.arguments import execution_flags, parser, plain_streams
from harness.errors import STORAGE_ERRNOS, UsageError, shorten, storage_error
from harness.layout import regress_path, suite_dir

EXIT_OK, EXIT_TRIALS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _say(text: str = "") -> None:
    print(text, flush=True)


def _load(args: argparse.Namespace):
    from harness.suite import load_suite

    _data_root(args)
    _plugins(args)
    return load_suite(args.suite, [*args.overrides, *execution_flags(args)], getattr(args, "max_trials", None))


def _plugins(args: argparse.Namespace) -> None:
    from harness.plugins import load_plugins

    load_plugins(getattr(args, "plugin", None))  # each plugin is imported once per process


def _warn(text: str) -> None:
    print(text, file=sys.stderr)


def _pool(args: argparse.Namespace):
    from harness.sweep import Pool

    return Pool(args.workers, args.workers_per_gpu, args.plugin)


def _data_root(args: argparse.Namespace) -> None:
    if getattr(args, "data_root", None):  # sbatch passes it on to the array tasks (--export=ALL)
        os.environ["HARNESS_DATA_ROOT"] = str(Path(args.data_root).expanduser().resolve())


def cmd_run(args: argparse.Namespace) -> int:
    from harness.spec import COMPLETED, STOPPED
    from harness.sweep import run_suite

    suite = _load(args)
    results = suite_dir(args.results, suite.name)
    statuses = run_suite(suite, results, _pool(args), _say, _warn)
    if not args.no_report:
        from harness.report import write_report  # pandas, scipy, seaborn: 3.5 s of imports a --no-report run skips

        files = write_report(results)
        _say(f"report:  {files[0]}")
    # a stopped trial is a rung of successive halving that was not promoted: its search went as planned
    not_completed = sum(n for s, n in statuses.items() if s not in (COMPLETED, STOPPED))
    if not_completed:
        _say(f"{not_completed} trials did not complete; see the report or `harness status {results}`")
        return EXIT_TRIALS
    return EXIT_OK


def cmd_baseline(args: argparse.Namespace) -> int:
    """Run a suite into the baselines folder and write its provenance: the only way baselines are made."""
    from harness.sweep import run_baseline

    suite = _load(args)
    results = suite_dir(args.results, suite.name)
    listed, planned = run_baseline(suite, results, _pool(args), "harness " + " ".join(sys.argv[1:]), _say, _warn)
    _say(f"baseline: {results} ({listed} records, provenance in {layout.PROVENANCE_FILE})")
    return EXIT_OK if listed == planned else EXIT_TRIALS


def _verdicts(candidate: Path, baseline: Path, metric: str, margin: float, technique: list[str] | None,
              output: Path, unverified: bool = False) -> int:
    from harness.regress import WORSE
    from harness.sweep import judge

    verdicts = judge(candidate, baseline, metric, margin, technique, output, _say, unverified)
    worse = sum(1 for v in verdicts if v.verdict == WORSE)
    _say(f"\n{len(verdicts)} comparisons on {metric} (margin {margin:g}); {worse} worse; Markdown: {output}")
    return EXIT_TRIALS if worse else EXIT_OK


def cmd_regress(args: argparse.Namespace) -> int:
    candidate = Path(args.candidate)
    return _verdicts(candidate, Path(args.baseline), args.metric, args.margin, args.technique,
                     Path(args.output) if args.output else regress_path(candidate), args.unverified_baseline)


def cmd_optimizer_checks(args: argparse.Namespace) -> int:
    from harness.components import OPTIMIZERS
    from harness.optimizer_checks import PROBLEMS, check_all, plot, summary
    from harness.store import atomic_write

    _plugins(args)
    names = _split(args.optimizer) or OPTIMIZERS.names()
    problems = _split(args.problem) or list(PROBLEMS)
    for name in names:
        OPTIMIZERS.get(name, "--optimizer")
    for name in problems:
        if name not in PROBLEMS:
            raise UsageError(f"--problem {name}: unknown problem; one of {', '.join(PROBLEMS)}")
    required = problems if args.require == "all" else _split([args.require] if args.require else None)
    outcomes = check_all(names, problems, jobs=args.jobs or min(8, os.cpu_count() or 1))
    text = summary(outcomes)
    _say(text)
    out = Path(args.output)
    atomic_write(out / "summary.md", "# Optimizer unit tests (Schaul et al. 2014)\n\n" + text)
    figures = plot(outcomes, out)
    _say(f"summary and {len(figures)} trajectory plots in {out}")
    failed = [o for o in outcomes if o.problem in required and not o.passed]
    for o in failed:
        print(f"harness: {o.optimizer} fails required problem {o.problem}", file=sys.stderr)
    return EXIT_TRIALS if failed else EXIT_OK


def _one_trial(args: argparse.Namespace):
    """(suite, trial --index of its plan), for the commands that look at one trial."""
    from harness.sweep import preflight

    suite = _load(args)
    preflight(suite)
    if not 0 <= args.index < len(suite.trials):
        raise UsageError(f"--index {args.index}: the suite has trials 0..{len(suite.trials) - 1} (harness plan lists them)")
    return suite, suite.trials[args.index]


def cmd_landscape(args: argparse.Namespace) -> int:
    from harness.landscape import landscape

    suite, spec = _one_trial(args)
    results = suite_dir(args.results, suite.name)
    stored = layout.weights_path(results, spec.trial_id)
    _say(f"loss landscape of {spec.trial_id} ({spec.label()}): "
         + (f"final weights from {stored}" if stored.exists() else "no stored weights; training the trial first"))
    out = Path(args.output) if args.output else results / layout.LANDSCAPE_DIR
    summary = landscape(spec, results, out, points=args.points, grid=args.grid, span=args.span, samples=args.samples,
                        seed=args.direction_seed)
    _say(f"train loss: init {summary['init_loss']:.4g}, final {summary['final_loss']:.4g}, highest between them "
         f"{summary['segment_max_loss']:.4g} (barrier {summary['barrier']:.3g})")
    _say(f"2-D slice over ±{args.span:g}: mean border loss / centre loss = {summary['edge_over_centre']:.3g}")
    _say(f"plots: {summary['files']['1d']}  {summary['files']['2d']}")
    return EXIT_OK


def cmd_lr_find(args: argparse.Namespace) -> int:
    import json

    from harness.lrfind import plot, range_test
    from harness.store import atomic_write

    suite, spec = _one_trial(args)
    _say(f"LR range test on {spec.trial_id} ({spec.label()}): {args.steps} steps, lr {args.start:g} → {args.end:g}")
    result = range_test(spec.config, spec.seed, args.start, args.end, args.steps)
    out = Path(args.output) if args.output else suite_dir(args.results, suite.name) / layout.LR_FIND_DIR
    atomic_write(out / f"{spec.trial_id}.json", json.dumps({"trial_id": spec.trial_id, "config": spec.config,
                                                             "seed": spec.seed, **result.as_dict()}, indent=1))
    figure = plot(result, out / f"{spec.trial_id}.png", f"{suite.name}: {spec.label()}")
    low, high = result.suggested
    _say(f"steepest descent at lr {result.steepest:.3g}; smoothed loss lowest at lr {result.minimum:.3g}"
         + (f"; stopped at lr {result.lrs[-1]:.3g} (loss blew up)" if result.stopped_early else ""))
    _say(f"suggested lr range: {low:.3g} to {high:.3g}")
    _say(f"plot: {figure}")
    return EXIT_OK


def cmd_diagnose(args: argparse.Namespace) -> int:
    import json

    from harness.diagnose import diagnose, plot, resolve_target, verdict
    from harness.store import atomic_write

    _data_root(args)
    _plugins(args)
    spec, label = resolve_target(args.target, args.overrides, args.index)
    _say(f"diagnosing {spec.trial_id} ({label}): overfit {args.samples} samples in at most {args.steps} steps")
    d = diagnose(spec.config, spec.seed, samples=args.samples, max_steps=args.steps, label=label,
                 trial_id=spec.trial_id)
    out = Path(args.output) if args.output else suite_dir(args.results, spec.suite) / layout.DIAGNOSE_DIR
    atomic_write(out / f"{spec.trial_id}.json",
                 json.dumps({"config": spec.config, "seed": spec.seed, **d.as_dict()}, indent=1, allow_nan=False))
    figure = plot(d, out / f"{spec.trial_id}.png", label)
    _say(verdict(d))
    _say(f"data and plot: {out / spec.trial_id}.json, {figure}")
    return EXIT_OK if d.passed else EXIT_TRIALS


def cmd_compare(args: argparse.Namespace) -> int:
    """The suite's workloads and seeds with the technique swapped in, run and judged against the baseline."""
    from harness.suite import load_suite
    from harness.sweep import run_compare, swap_technique

    key, swap = swap_technique(args.suite, args.technique)
    _data_root(args)
    _plugins(args)
    # the suite's claims and report baseline name its own trials, which the swap replaces (verdicts: regress's)
    suite = load_suite(args.suite, [*args.overrides, *swap, "claims=[]", "report.baseline=null", *execution_flags(args)])
    baseline = Path(args.baseline) if args.baseline else suite_dir(args.baselines, suite.name)
    results = run_compare(suite, args.suite, key, Path(args.results), baseline, _pool(args), _say, _warn)
    return _verdicts(results, baseline, args.metric or suite.report["metric"], args.margin, [key],
                     regress_path(results), args.unverified_baseline)


def cmd_refine(args: argparse.Namespace) -> int:
    """A follow-up random search whose ranges narrow around the best configurations of a finished one."""
    import yaml

    from harness.store import atomic_write
    from harness.sweep import refine_search

    results = _results_dir(args.dir)
    r = refine_search(results, args.top, args.metric, args.widen, args.n, args.name)
    out = Path(args.output) if args.output else layout.refined_path(results)
    atomic_write(out, yaml.safe_dump(r.suite, sort_keys=False, width=100))
    _say(f"best {len(r.best)} of {r.ranked} configurations by {r.metric}: "
         + ", ".join(f"{v:.4g}" for v, _, _ in r.best))
    width = max(len(k) for k in r.new_space)
    for key, d in r.space.items():
        _say(f"  {key.ljust(width)}  {_describe(d)}  ->  {_describe(r.new_space[key])}")
    _say(f"suite: {out}")
    _say(f"run it: harness run {out}")
    return EXIT_OK


def _describe(d: dict) -> str:
    if d["dist"] == "choice":
        return "choice " + ", ".join(map(str, d["values"]))
    return f"{d['dist']} [{d['low']:g}, {d['high']:g}]"


def cmd_plan(args: argparse.Namespace) -> int:
    from harness.sweep import plan_summary

    if args.count:
        from harness.suite import count_trials

        n, parts = count_trials(args.suite, args.overrides)
        _say(f"{args.suite}: {n} trials ({parts}), counted from its axes without building them")
        return EXIT_OK
    suite = _load(args)
    _say(plan_summary(suite))
    width = {a: max(len(a), *(len(str(dict(t.axes)[a])) for t in suite.trials)) for a in suite.axes}
    _say("  ".join(["trial_id".ljust(12), *(a.ljust(width[a]) for a in suite.axes), "seed"]))
    for t in suite.trials:
        values = dict(t.axes)
        _say("  ".join([t.trial_id, *(str(values[a]).ljust(width[a]) for a in suite.axes), str(t.seed)]))
    _say_packs(suite, args.workers)
    return EXIT_OK


def _say_packs(suite, workers: int) -> None:
    from harness.fused.plan import describe

    for line in describe(list(suite.trials), suite.execution["fuse"], workers):
        _say(line)


def cmd_status(args: argparse.Namespace) -> int:
    from harness.sweep import status_lines

    for line in status_lines(_results_dir(args.dir)):
        _say(line)
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from harness.claims import FAILS
    from harness.report.claims import check_page_target, terminal_lines, verify, write_page

    check_page_target(args.page, args.targets)
    _plugins(args)  # a suite file naming a plugin's components loads as it does for run
    checked = verify(args.targets, args.results)
    for c in checked:
        _say("\n".join(terminal_lines(c)))
    if args.page:
        write_page(Path(args.page), checked, f"harness verify {' '.join(args.targets)} --results {args.results}")
        _say(f"page: {args.page}")
    return EXIT_TRIALS if any(FAILS in c.overall.values() for c in checked) else EXIT_OK


def cmd_submit(args: argparse.Namespace) -> int:
    from harness.launch.slurm import check_results, next_rung, prepare, submit
    from harness.sweep import due_for_submission

    suite = _load(args)
    results = check_results(suite_dir(args.results, suite.name))
    suite, staged = due_for_submission(suite, results, _say)
    script, plan, tasks, chunking = prepare(suite, results, args.plugin) if suite.trials else ("", None, 0, "")
    if not tasks:
        _say(f"nothing to submit: every trial of {suite.name} {'due now ' * staged}already has a record in {results}")
        return EXIT_OK
    if args.dry_run:
        _say(script)
        return EXIT_OK
    job = submit(script, results)
    _say(f"submitted {suite.name}: job {job}, {tasks} array tasks ({chunking}); plan {plan}")
    if staged:
        follow = submit(next_rung(suite, results, job, args.plugin), results, layout.NEXT_RUNG_SCRIPT)
        _say(f"job {follow} submits the next {'stage' if suite.search.get('tune') else 'rung'} when job {job} has ended")
    _say(f"watch it: harness status {results}")
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    from harness.launch.slurm import pending, work

    plan = Path(args.plan)
    if not plan.is_file():
        raise UsageError(f"{plan}: no such plan file")
    _plugins(args)
    if args.pending:
        trial = pending(plan, args.index)
        if trial is None:
            return EXIT_TRIALS
        _say(trial)
        return EXIT_OK
    from harness.fused.plan import parse_fuse

    fuse = None if args.fuse is None else parse_fuse(args.fuse, "--fuse")
    return work(plan, args.index, args.chunk, fuse=fuse, threads=args.threads)


def _results_dir(path: str) -> Path:
    from harness.sweep import suite_results

    return suite_results(path, _warn)


def _split(values: list[str] | None) -> list[str]:
    """Repeatable and comma-separated options alike: --by a --by b, --by a,b."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report import write_report

    results = _results_dir(args.dir)
    files = write_report(results, _split(args.compare) or None, args.metric, by=_split(args.by),
                         baseline=args.baseline, formats=tuple(_split([args.format])), bootstrap=args.bootstrap,
                         target=args.target, target_metric=args.target_metric, jobs=args.jobs,
                         out=Path(args.output) if args.output else None)
    for f in files:
        _say(str(f))
    return EXIT_OK


def cmd_collect(args: argparse.Namespace) -> int:
    from harness.report.aggregate import collect, write_runs

    results = _results_dir(args.dir)
    c = collect(results)
    out = Path(args.output) if args.output else layout.collected_path(results, args.csv)
    runs = write_runs(c, out, args.csv)
    for path, why in c.corrupt.items():
        _warn(f"harness: left out {path} ({why}); `harness run` runs that trial again")
    _say(f"{out}  ({len(runs)} trials, {len(runs.columns)} columns)")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from harness.listing import listing

    _plugins(args)
    for line in listing(args.kind):
        _say(line)
    return EXIT_OK


COMMANDS = {
    "run": cmd_run, "plan": cmd_plan, "status": cmd_status, "submit": cmd_submit, "worker": cmd_worker,
    "baseline": cmd_baseline, "regress": cmd_regress, "compare": cmd_compare, "refine": cmd_refine,
    "lr-find": cmd_lr_find, "landscape": cmd_landscape, "diagnose": cmd_diagnose, "verify": cmd_verify,
    "optimizer-checks": cmd_optimizer_checks, "report": cmd_report, "collect": cmd_collect, "list": cmd_list,
}


def main(argv: list[str] | None = None) -> int:
    p = parser()
    plain_streams()  # under LC_ALL=C a ± or − in a table was a UnicodeEncodeError
    # Overrides may follow options (`run s.yaml --workers 2 seeds=3`), which argparse alone rejects.
    args, extra = p.parse_known_args(argv)
    for item in extra:
        if item.startswith("-") or "=" not in item or not hasattr(args, "overrides"):
            p.error(f"unrecognized argument: {item}")
        args.overrides.append(item)
    try:
        return COMMANDS[args.command](args)
    except UsageError as e:
        print(f"harness: error: {shorten(str(e))}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `harness plan ... | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as e:  # a full or read-only disk wherever it is met: one line too (records stay whole)
        if e.errno not in STORAGE_ERRNOS:
            raise
        print(f"harness: error: {storage_error(e.filename or 'a file', e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("harness: interrupted; run the same command again to finish the missing trials", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
