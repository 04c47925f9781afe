"""Claims in reports: the verdict table of a suite's ``claims:`` (``harness.claims``), the report's
Claims section, ``harness verify`` and the reproductions page (``results/REPRODUCTIONS.md``), which
``harness verify ... --page FILE`` writes from the records, never by hand."""
from __future__ import annotations

import datetime as dt
import math
import shlex
from collections import Counter
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import claims as cl
from harness.errors import first_line
from harness.report.sections import Section
from harness.report.tables import Cell, Table, to_markdown
from harness.spec import Record


@dataclass
class Checked:
    """One suite's claims and their verdicts, with what the page says of its records."""

    name: str
    description: str
    suite_file: str  # the suite file that makes the records ("" when only the results folder is known)
    results: Path
    claims: list[dict[str, Any]]
    rows: list[cl.Verdict]
    trials: int  # records read
    planned: int  # trials in the plan
    devices: list[str]
    train_s: float  # the records' training + evaluation seconds
    left_out: dict[str, str] = dataclasses.field(default_factory=dict)  # record file -> why (unreadable, edited)
    datasets: list[str] = dataclasses.field(default_factory=list)  # the records' datasets

    @property
    def overall(self) -> dict[str, str]:
        return cl.overall(self.rows)


def check(suite: dict[str, Any], records: list[Record], results: Path, suite_file: str = "",
          planned: int | None = None) -> Checked:
    """The verdicts of ``suite``'s claims (a suite's ``to_dict``, as a plan keeps it) on ``records``."""
    claims = suite.get("claims") or []
    if (suite.get("search") or {}).get("sequential"):  # judged look by look, as the rounds were run
        from harness.sequential import verdicts

        rows = verdicts(suite, records)
    else:
        rows = cl.verdicts(records, claims, list(suite.get("axes") or []))
    devices = sorted({str(r.environment["device"]) + (f" ({r.environment['device_name']})"
                                                        if r.environment.get("device_name") else "")
                      for r in records if r.environment.get("device")})
    seconds = sum((r.timing.get("train_s") or 0) + (r.timing.get("eval_s") or 0) for r in records)
    return Checked(suite.get("name", results.name), (suite.get("description") or "").strip(), suite_file, results,
                   claims, rows, len(records), len(records) if planned is None else planned, devices, seconds,
                   datasets=sorted({r.config["dataset"]["name"] for r in records}))


def _p(v: cl.Verdict) -> str:
    return "-" if not math.isfinite(v.p_holm) else f"{v.p_holm:.2g}"


def _n(v: cl.Verdict) -> str:
    return f"{v.n}" + (f" vs {v.n_against}" if v.n_against else "")


TRANSFER_NOTE = (
    "Each claim is stated as its source states it: relative to a control where the fact is relative (`scale:`), "
    "with thresholds from the source or the quantity's definition; a fact of one dataset names it (`where: "
    "{dataset.name: ...}`). The records here are on the dataset of each suite's *data* column; "
    "`tests/test_transfer.py` reruns every suite whose data is on this machine at a CI budget on a second dataset "
    "(digits and MNIST for each other, MNIST-1D for the MLP suites of digits, digits for those of MNIST-1D; its "
    "TRANSFERS table lists them) and fails when a claim that holds on one fails on the other.")
SEQUENTIAL_NOTE = (
    "A suite with `seeds: {min, max, step}` is judged after each round of seeds, and only the claims still open "
    "get more (harness.sequential). Its level is spent over the planned looks with an O'Brien-Fleming-shaped "
    "spending function (Lan & DeMets 1983; or Pocock's): each look tests at its increment of it, Holm across the "
    "claims still open, with intervals at 1 - 2 x that increment (so wider than 95%), and the increments sum to "
    "0.025, which bounds the chance of any false verdict over all looks. [look k of K: n seeds, level] names the "
    "look a verdict was reached at and the seeds it took.")


def verdict_table(checked: Checked, title: str = "claims") -> Table:
    """A row per claim and workload: the claim in symbols, the effect with its 95% interval, n, the test,
    the Holm-adjusted p-value and the verdict (with why, when it is not ``holds``)."""
    by_id = {c["id"]: c for c in checked.claims}
    rows = []
    for v in checked.rows:
        verdict = v.verdict + (f" ({v.why})" if v.why and v.verdict != cl.HOLDS else "") + \
            (f" [{v.look}]" if v.look else "")
        rows.append([Cell(v.claim), Cell(cl.expectation(by_id[v.claim])), Cell(v.workload),
                     Cell(cl.describe_effect(v)), Cell(_n(v)), Cell(v.test or "-"), Cell(_p(v)),
                     Cell(verdict, bold=v.verdict == cl.FAILS)])
    notes = ["effect: the treatment's mean minus the control's (times the claim's scale where it states one, or "
             "minus the stated value), with its 95% interval; "
             "n: seeds of each side; p: one-sided, for the claimed direction beyond the margin, Holm-adjusted over "
             "the suite's claims. holds: p < 0.025 (one-sided; for a lone claim, the 95% interval lies beyond the margin); "
             "fails: the interval excludes the claimed effect."]
    if any(v.look for v in checked.rows):
        notes.append(SEQUENTIAL_NOTE)
    return Table(title, ["claim", "expects", "workload", "effect [95% CI]", "n", "test", "p (Holm)", "verdict"],
                 rows, notes)


def claims_section(suite: dict[str, Any], records: list[Record], results: Path) -> Section | None:
    """The report's Claims section, when the suite states claims."""
    if not suite.get("claims"):
        return None
    checked = check(suite, records, results)
    counts = Counter(checked.overall.values())
    text = [f"{len(checked.claims)} claims: " + ", ".join(f"{n} {v}" for v, n in counts.most_common()) + ". "
            "The same table comes from `harness verify " + str(results) + "`."]
    text += [f"**{c['id']}**: {c['text']}" + (f" ({c['source']})" if c["source"] else "") for c in checked.claims]
    return Section("Claims", text, [verdict_table(checked)])


def terminal_lines(checked: Checked) -> list[str]:
    """``harness verify``'s table for one suite."""
    lines = [f"{checked.name}  ({checked.results}, {checked.trials} of {checked.planned} trials have records)"]
    lines += [f"  left out: {path} ({why})" for path, why in checked.left_out.items()]
    width = max((len(v.claim) for v in checked.rows), default=0)
    for v in checked.rows:
        why = f"  ({v.why})" if v.why and v.verdict != cl.HOLDS else ""
        lines.append(f"  {v.verdict:<12} {v.claim:<{width}}  {v.workload}  {cl.describe_effect(v)}  n={_n(v)}  "
                     f"p={_p(v)}{why}" + (f"  [{v.look}]" if v.look else ""))
    return lines


PAGE_HEADING, PAGE_MARK = "# Reproductions\n", "page is written by `harness verify "


def check_page_target(page: str | None, targets: list[str]) -> None:
    """``verify --page FILE`` writes only a page of its own: never one of its inputs or a file in a results
    folder, and never over an existing file that is not a reproductions page (it once overwrote any file,
    the suite being verified included)."""
    from harness.errors import UsageError
    from harness.store.records import read_regular

    if page is None:
        return
    page = Path(page)
    where = page.resolve()
    for target in map(Path, targets):
        if where == target.resolve():
            raise UsageError(f"--page {page}: that is an input of this verify; name a new file or a page verify wrote")
    for folder in where.parents:
        if (folder / "plan.json").exists():
            raise UsageError(f"--page {page}: inside the results folder {folder}; the page goes beside it")
    if not page.is_symlink() and not page.exists():
        return
    try:
        head = read_regular(page)[:4096].decode("utf-8", "replace")
    except (OSError, ValueError) as e:
        raise UsageError(f"--page {page}: cannot be read back ({first_line(e)}); verify writes only its own pages")
    if not (head.startswith(PAGE_HEADING) and PAGE_MARK in head):
        raise UsageError(f"--page {page}: exists and is not a reproductions page verify wrote; it is left as it is")


def write_page(path: Path, checked: list[Checked], command: str) -> None:
    """The reproductions page written to ``path`` (checked by ``check_page_target``), naming the command."""
    from harness.store.records import atomic_write

    atomic_write(path, page(checked, f"{command} --page {path}"))


def page(checked: list[Checked], command: str) -> str:
    """The reproductions page: every claim with its text, source, effect, 95% interval, n, verdict and device,
    and the commands that regenerate it."""
    totals = Counter(v for c in checked for v in c.overall.values())
    lines = ["# Reproductions", "",
             "What the harness measures, checked against facts the field knows. Each suite in `suites/repro/` states "
             "its claims as data; `harness verify` judges them on the committed records in `results/repro/`. This "
             f"page is written by `{command}` (do not edit it by hand), "
             f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d}.", "",
             f"**{sum(len(c.claims) for c in checked)} claims: " +
             ", ".join(f"{n} {v}" for v, n in totals.most_common()) + ".**", "",
             "How a claim is judged: the treatment is compared with the control on every workload they share (the "
             "values of the suite's other axes), seed by seed: the effect is the difference of means (the treatment's minus scale x the control's, where "
             "a claim is stated relative to its control) with its 95% "
             "interval (paired t when both sides have the same seeds, Welch's t otherwise), and a one-sided p-value "
             "for the claimed direction beyond the margin. A claim holds on every workload (an intersection-union "
             "test: its p-value is its workloads' largest) or, with `over: mean`, on their mean; the claims' "
             "p-values are Holm-adjusted across the suite's claims. **holds**: adjusted p < 0.025 (one-sided, so "
             "that for a lone claim every 95% interval lies wholly beyond the margin); **fails**: an interval "
             "excludes the claimed effect; **inconclusive**: neither, each row saying why; **not run**: no records "
             "here (the data is not on this machine).", "", SEQUENTIAL_NOTE, "",
             TRANSFER_NOTE, "",
             "| suite | claims | verdicts | records | data | device | train + eval time |",
             "|---|---|---|---|---|---|---|"]
    for c in checked:
        verdicts = ", ".join(f"{n} {v}" for v, n in Counter(c.overall.values()).most_common())
        lines.append(f"| [{c.name}](#{c.name}) | {len(c.claims)} | {verdicts} | {c.trials} of {c.planned} | "
                     f"{', '.join(c.datasets) or '-'} | {', '.join(c.devices) or '-'} | "
                     f"{_time(c.train_s) if c.trials else '-'} |")
    for c in checked:
        lines += ["", f"## {c.name}", "", c.description, ""]
        run = f"harness run {c.suite_file} --results {c.results.parent}" if c.suite_file else "(the suite file)"
        lines += [f"Regenerate: `{run}` (add `--data-root DIR` for MNIST or CIFAR), then "
                  f"`harness verify {shlex.quote(str(c.results))}`. Records: `{c.results}` "
                  f"({c.trials} trials on {', '.join(c.devices) or 'no device: not run'}).", ""]
        for claim in c.claims:
            verdict = c.overall[claim["id"]]
            lines += [f"- **{claim['id']}** ({verdict}): {claim['text']}" +
                      (f". Source: {claim['source']}." if claim["source"] else ""),
                      f"  Expects `{cl.expectation(claim)}`."]
        lines += ["", to_markdown(verdict_table(c, f"claims of {c.name}"))]
    return "\n".join(lines) + "\n"


def _time(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def verify(targets: list[str], results_root: str) -> list[Checked]:
    """The claims of each target: a suite's results folder (its claims from the plan the run wrote), or a
    suite file (its records looked up in ``results_root/<name>``; none there: its claims are ``not run``).
    Records are those of the plan's trials; a folder or file with no claims is bad input."""
    from harness.errors import UsageError
    from harness.layout import suite_dir
    from harness.store import read_plan, scan
    from harness.suite import load_suite
    from harness.search import staged
    from harness.sweep import where_it_stands
    from harness.tune import final_only

    out = []
    for target in targets:
        path, suite_file = Path(target), ""
        if path.is_file():
            suite = load_suite(str(path))
            plan_suite, suite_file = suite.to_dict(), str(path)
            results = suite_dir(results_root, suite.name)
            # a staged suite's trials so far (a tuned study's final ones among them), from its records
            specs = list(where_it_stands(suite, results).trials if staged(suite.search) else suite.trials)
        else:
            plan = read_plan(path)
            if plan is None:
                raise UsageError(f"{path}: neither a suite file nor a results folder with a plan.json")
            plan_suite, results, specs = plan[0], path, plan[1]
        if not plan_suite.get("claims"):
            raise UsageError(f"{target}: the suite states no claims (a claims: section)")
        found = scan(results)
        # plan order (workloads in the suite's order), each labelled with its trial's axes, not the record's own
        records = [dataclasses.replace(found.records[t.trial_id], axes=dict(t.axes)) for t in specs
                   if t.trial_id in found.records]
        records = final_only(plan_suite, records)  # a tuned study's claims are of its final trials
        checked = check(plan_suite, records, results, suite_file or plan_suite.get("file", ""),
                        len(final_only(plan_suite, specs)))
        checked.left_out = {str(p): why for p, why in found.corrupt.items()}
        out.append(checked)
    return out
