"""The arguments of every ``harness`` command (``harness.cli`` runs them)."""
from __future__ import annotations

import argparse
import math
import sys


def _number(kind: type, low: float | None, what: str):
    """An argparse type: ``kind`` (int or float) of ``text``, finite and at least ``low``, else "expected ``what``"."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or (low is not None and value < low) or abs(value) >= 2**63:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text[:80]!r}")
        return value

    return parse


def _fuse_value(text: str) -> str:
    """``--fuse``: off, auto or a pack size in ASCII digits (an empty value was silently off; ``²`` a traceback)."""
    value = text.strip()
    if value in ("off", "auto") or (value.isascii() and value.isdigit() and 1 <= int(value) < 2**63):
        return value
    raise argparse.ArgumentTypeError(f"expected auto, off or a pack size >= 1, got {text[:80]!r}")


def _threads_value(text: str) -> int | str:
    """``--threads``: auto or a thread count in ASCII digits, as ``execution.threads`` takes it."""
    value = text.strip()
    if value == "auto" or (value.isascii() and value.isdigit() and 1 <= int(value) < 2**31):
        return value
    raise argparse.ArgumentTypeError(f"expected auto or a thread count >= 1, got {text[:80]!r}")


_positive = _number(int, 1, "a whole number >= 1")
_index = _number(int, 0, "a whole number >= 0")
_non_negative = _number(float, 0, "a finite number >= 0")
_finite = _number(float, None, "a finite number")


def plain_streams() -> None:
    """stdout and stderr that never raise on a character their encoding lacks (an ASCII locale, LC_ALL=C
    without Python's UTF-8 mode): it is written as an escape instead. Files are always UTF-8."""
    for stream in (sys.stdout, sys.stderr):
        if (getattr(stream, "encoding", None) or "utf-8").lower().replace("-", "") != "utf8" and \
                hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def _suite_options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """What every command that reads a suite takes alike (run, plan, submit, baseline, compare): the suite,
    its overrides, plugins, the trial limit, fusing and the data root."""
    p.add_argument("suite")
    p.add_argument("overrides", nargs="*", metavar="key.path=value", help="override suite keys")
    p.add_argument("--plugin", action="append", default=[], help="module or .py file adding components")
    _max_trials(p)
    _fuse(p)
    p.add_argument("--data-root", help="folder holding datasets (else $HARNESS_DATA_ROOT)")
    return p


def _workers(p: argparse.ArgumentParser, planned: bool = False) -> None:
    p.add_argument("--workers", type=_positive, default=1,
                   help="the workers the fused packs are planned for, as run --workers N forms them (default 1)"
                   if planned else "trials run in N processes (default 1)")
    if not planned:
        p.add_argument("--workers-per-gpu", type=_positive, metavar="K",
                       help="pack K workers on each GPU in turn (default: workers spread over the GPUs)")


def _runs_trials(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments of every command that runs a suite's trials (run, baseline, compare)."""
    _suite_options(p)
    _workers(p)
    _threads(p)
    return p


def _threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", metavar="N|auto", type=_threads_value,
                   help="torch's intra-op threads per trial (default 1, the same numbers whatever --workers is; "
                        "auto: each worker's share of the cores); overrides the suite's execution.threads")


def execution_flags(args: argparse.Namespace) -> list[str]:
    """``--fuse X`` and ``--threads N`` as the suite overrides they stand for, so that plan files carry them to
    array tasks."""
    return [f"execution.{key}={getattr(args, key)}" for key in ("fuse", "threads") if getattr(args, key, None)]


def _max_trials(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-trials", type=_positive, metavar="N",
                   help="refuse a suite of more than N trials (default 100000, or HARNESS_MAX_TRIALS)")


def _fuse(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fuse", metavar="auto|K|off", type=_fuse_value,
                   help="train compatible trials as fused packs of up to K (auto: as many as fit); overrides the "
                        "suite's execution.fuse")


def _output(p: argparse.ArgumentParser, what: str, default: str | None = None) -> None:
    """Where a command writes: ``-o``/``--output`` on every command (``--out`` is the same option)."""
    p.add_argument("-o", "--output", "--out", dest="output", metavar="PATH", default=default, help=what)


def _one_trial_args(p: argparse.ArgumentParser, what: str, first: str = "suite",
                    first_help: str | None = None, overrides_help: str = "override suite keys") -> argparse.ArgumentParser:
    """The arguments of every command that looks at one trial of a suite (lr-find, landscape, diagnose)."""
    p.add_argument(first, help=first_help)
    p.add_argument("overrides", nargs="*", metavar="key.path=value", help=overrides_help)
    p.add_argument("--index", type=_index, default=0, help="which trial of the suite's plan (default 0)")
    _output(p, f"folder for the plot and data (default RESULTS/<suite>/{what})")
    p.add_argument("--data-root", help="folder holding datasets (else $HARNESS_DATA_ROOT)")
    p.add_argument("--plugin", action="append", default=[], help="module or .py file adding components")
    return p


class _Parser(argparse.ArgumentParser):
    """Bad arguments as every other bad input: the usage, then one ``harness: error:`` line, exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        command = self.prog.removeprefix("harness").strip()
        from harness.errors import shorten

        self.exit(2, f"harness: error: {shorten((command + ': ' if command else '') + message)}\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="harness", description="Benchmark optimizers and regularizers.")
    sub = p.add_subparsers(dest="command", required=True)

    run = _runs_trials(sub.add_parser("run", help="run every trial of a suite that has no record yet, then report"))
    run.add_argument("--results", default="results", help="results root; records go to RESULTS/<suite>/")
    run.add_argument("--no-report", action="store_true", help="skip writing the report")

    plan = _suite_options(sub.add_parser("plan", help="print the expanded trials without running them"))
    plan.add_argument("--count", action="store_true",
                      help="only count the trials, from the axes, without building them (for any size of suite)")
    _workers(plan, planned=True)

    status = sub.add_parser("status", help="count the records of a results folder by status (and SLURM tasks)")
    status.add_argument("dir", help="results folder of a suite (RESULTS/<suite>), or a results root with one suite")

    submit = _suite_options(sub.add_parser("submit", help="submit a suite's trials without records as a SLURM array job"))
    submit.add_argument("--results", default="results", help="results root; records go to RESULTS/<suite>/")
    submit.add_argument("--dry-run", action="store_true", help="print the sbatch script instead of submitting it")
    _threads(submit)

    worker = sub.add_parser("worker", help="run one array task's trials of a plan (what SLURM tasks run)")
    worker.add_argument("plan", help="plan file written by harness submit (RESULTS/<suite>/plans/plan-*.json)")
    worker.add_argument("--index", type=_index, required=True, help="the array task id")
    worker.add_argument("--chunk", type=_positive, default=1, help="trials per task (default 1)")
    worker.add_argument("--pending", action="store_true",
                        help="print the task's trial id and exit 0 if it has no record, else exit 1; run nothing")
    worker.add_argument("--plugin", action="append", default=[], help="module or .py file adding components")
    _fuse(worker)
    _threads(worker)

    base = _runs_trials(sub.add_parser("baseline", help="run a suite into results/baselines/<suite> with provenance"))
    base.add_argument("--results", default="results/baselines", help="baselines root (default results/baselines)")

    reg = sub.add_parser("regress", help="verdicts of a candidate results folder against a baseline (exit 1: worse)")
    reg.add_argument("candidate", help="results folder of the candidate (RESULTS/<suite>)")
    reg.add_argument("--baseline", required=True, help="results folder of the baseline (results/baselines/<suite>)")
    reg.add_argument("--metric", default="test_acc", help="final metric compared (default test_acc)")
    reg.add_argument("--unverified-baseline", action="store_true",
                     help="judge against a baseline that has no provenance.json (the verdicts say so)")
    reg.add_argument("--margin", type=_non_negative, default=0.0, help="non-inferiority margin δ >= 0 in the metric's units")
    reg.add_argument("--technique", action="append", metavar="KEY",
                     help="trial key the candidate changes (repeatable; default: inferred)")
    _output(reg, "Markdown file (default CANDIDATE/regress.md)")

    cmp = _runs_trials(sub.add_parser("compare", help="run a new technique on a suite's workloads and seeds; "
                                                      "verdicts vs baseline"))
    cmp.add_argument("--technique", required=True, metavar="KEY=VALUE", help="e.g. optimizer=lion")
    cmp.add_argument("--baseline", help="baseline folder (default BASELINES/<suite>)")
    cmp.add_argument("--baselines", default="results/baselines", help="baselines root (default results/baselines)")
    cmp.add_argument("--results", default="results", help="candidate records go to RESULTS/compare/<suite>/KEY=VALUE/")
    cmp.add_argument("--metric", help="final metric compared (default: the suite's report metric)")
    cmp.add_argument("--unverified-baseline", action="store_true",
                     help="judge against a baseline that has no provenance.json (the verdicts say so)")
    cmp.add_argument("--margin", type=_non_negative, default=0.0, help="non-inferiority margin δ >= 0 in the metric's units")

    ref = sub.add_parser("refine", help="a follow-up random search narrowed around the best configurations of a "
                                        "finished one (coarse to fine)")
    ref.add_argument("dir", help="results folder of a suite with a random: section")
    ref.add_argument("--top", type=_positive, default=5, help="configurations to narrow around (default 5)")
    ref.add_argument("--metric", help="ranking metric (default: the search's validation metric)")
    ref.add_argument("--widen", type=_non_negative, default=0.25,
                     help="pad each range by this fraction of the best values' span (default 0.25)")
    ref.add_argument("--n", type=_positive, help="configurations to draw (default: as before)")
    ref.add_argument("--name", help="name of the new suite (default NAME-refined)")
    _output(ref, "suite file to write (default DIR/refined.yaml)")

    lrf = _one_trial_args(sub.add_parser("lr-find", help="LR range test (Smith 2017) on one trial of a suite: plot "
                                                         "and suggested range"), "lr-find")
    lrf.add_argument("--start", type=float, default=1e-6, help="first learning rate (default 1e-6)")
    lrf.add_argument("--end", type=float, default=10.0, help="last learning rate (default 10)")
    lrf.add_argument("--steps", type=_positive, default=200, help="steps, lr growing exponentially (default 200)")
    lrf.add_argument("--results", default="results", help="results root")

    land = _one_trial_args(sub.add_parser("landscape", help="loss landscape of one trial (Li et al. 2018): "
                                                            "init→final path and a 2-D slice"), "landscape")
    land.add_argument("--points", type=_positive, default=41, help="points on the path, α from -0.5 to 1.5 (default 41)")
    land.add_argument("--grid", type=_positive, default=21, help="the 2-D slice has GRID x GRID points (default 21)")
    land.add_argument("--span", type=float, default=1.0,
                      help="the slice spans [-SPAN, SPAN]² in filter-normalized units (default 1)")
    land.add_argument("--samples", type=_positive, default=2048, help="train and test samples at each point (default 2048)")
    land.add_argument("--direction-seed", type=int, default=0, help="seed of the two random directions (default 0)")
    land.add_argument("--results", default="results",
                      help="results root; final weights are read from RESULTS/<suite>/weights/ (save_weights: true)")

    dg = _one_trial_args(
        sub.add_parser("diagnose", help="sanity checks on one trial: initial loss, overfit a small sample, "
                                        "activations and gradients by layer (exit 1: a check failed)"),
        "diagnose", "target", "a suite .yaml (trial --index) or a trial record RESULTS/<suite>/trials/<id>.json",
        "override suite keys (on a record: base.KEY=VALUE)")
    dg.add_argument("--samples", type=_positive, default=32, help="training samples to memorize (default 32)")
    dg.add_argument("--steps", type=_positive, default=200, help="most steps of the overfit test (default 200)")
    dg.add_argument("--results", default="results", help="results root")

    oc = sub.add_parser("optimizer-checks", help="optimizers on synthetic problems (Schaul et al. 2014): pass/fail and plots")
    oc.add_argument("--optimizer", action="append", help="optimizers to check (repeatable or a,b; default all)")
    oc.add_argument("--problem", action="append", help="problems (repeatable or a,b; default all)")
    oc.add_argument("--require", metavar="all|P,...", help="exit 1 unless every optimizer passes these problems")
    _output(oc, "folder for summary.md and plots (default results/optimizer-checks)", default="results/optimizer-checks")
    oc.add_argument("--jobs", type=_positive, help="processes (default: the cores, at most 8)")
    oc.add_argument("--plugin", action="append", default=[], help="module or .py file adding components")

    report = sub.add_parser("report", help="write tables, statistics and plots of a results folder")
    report.add_argument("dir", help="results folder of a suite (RESULTS/<suite>), or a results root with one suite")
    _output(report, "folder for the report's files (default DIR/report)")
    report.add_argument("--compare", action="append", help="axis whose values are the table rows (repeatable)")
    report.add_argument("--by", action="append", help="axes to split into separate tables (repeatable or a,b)")
    report.add_argument("--metric", help="headline metric (default: the suite's, else test_acc)")
    report.add_argument("--baseline", metavar="AXIS=VALUE", help="test every other row against this one")
    report.add_argument("--format", default="md,html", help="any of md,html,latex,csv (default md,html)")
    report.add_argument("--bootstrap", action="store_true", help="percentile bootstrap intervals instead of t")
    report.add_argument("--target", type=_finite, help="time-to-target: first epoch reaching this value")
    report.add_argument("--target-metric", default="val_acc", help="metric for --target (default val_acc)")
    report.add_argument("--jobs", type=_positive, help="processes drawing figures (default: the cores, at most 8)")

    coll = sub.add_parser("collect", help="one tidy table of all records (parquet; --csv for CSV)")
    coll.add_argument("dir", help="results folder of a suite (RESULTS/<suite>), or a results root with one suite")
    coll.add_argument("--csv", action="store_true", help="write CSV instead of parquet")
    _output(coll, "file to write (default DIR/collected.parquet or .csv)")

    ver = sub.add_parser("verify", help="verdicts of a suite's claims on its records (exit 1: a claim fails)")
    ver.add_argument("targets", nargs="+", metavar="DIR_OR_SUITE",
                     help="a suite's results folder (RESULTS/<suite>), or a suite file (its records in RESULTS/<name>)")
    ver.add_argument("--results", default="results", help="results root for suite files (default results)")
    ver.add_argument("--page", metavar="FILE", help="also write the reproductions page (Markdown) of these suites")
    ver.add_argument("--plugin", action="append", default=[], help="module or .py file adding components")

    lst = sub.add_parser("list", help="list registered components and their parameters, or (list settings) every "
                                      "key a suite accepts")
    lst.add_argument("kind", nargs="?", help="a kind of component (optimizers, schedules, ...) or settings")
    lst.add_argument("--plugin", action="append", default=[])
    return p
