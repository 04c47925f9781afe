"""Regression verdicts: a candidate's records against stored baseline records.

Trials are matched by their resolved spec, seed aside. With no technique keys, a candidate trial
is compared with the baseline trial of the same spec (a maintainer's question: did my change make
this technique worse?). With technique keys (``optimizer``; inferred when the candidate's values
of a key never occur in the baseline), the rest of the spec is the workload, and the candidate is
compared with every baseline technique on the same workload (an inventor's question: how does my
optimizer do against the established ones?).

For each comparison: the difference candidate − baseline of the final metric with its confidence
interval, by a paired t-test when both sides have the same seeds (the same seed gives the same
data order and initialization) and Welch's otherwise (``harness.report.stats.difference``). The
verdict answers the non-inferiority question with margin δ (Wellek 2010; the ``gain`` below is
the difference oriented so that positive is better):

- ``better``: the interval of the gain lies above 0;
- ``worse``: it lies below −δ, or the candidate failed or diverged on more seeds than the baseline;
- ``no difference``: it lies above −δ (not worse by more than δ) without being above 0;
- ``inconclusive``: fewer than 2 completed seeds on a side, or the interval reaches across −δ.

With δ = 0 (the default) only identical results are ``no difference``; a margin says how much
worse is still acceptable, and more seeds narrow the interval.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import layout
from harness.errors import UsageError
from harness.layout import PROVENANCE_FILE
from harness.report.aggregate import workload
from harness.report.stats import difference
from harness.report.tables import lower_is_better, markdown
from harness.spec import COMPLETED, WORKLOAD_KEYS, Record, canonical_json, component_name, identity
from harness.store import atomic_write, scan

BETTER, SAME, WORSE, INCONCLUSIVE = "better", "no difference", "worse", "inconclusive"


@dataclass(frozen=True)
class Verdict:
    workload: str
    candidate: str
    baseline: str
    verdict: str
    diff: float  # candidate − baseline, in the metric's units
    ci_low: float
    ci_high: float
    test: str | None
    n: int  # completed seeds of the candidate
    n_baseline: int
    why: str
    code: str = ""  # how the code that made the candidate differs from the baseline's ("" when it does not)


def read_results(folder: Path, side: str) -> list[Record]:
    """The records of a results folder; bad input (exit 2) when there is none."""
    folder = Path(folder)
    if not layout.trials_dir(folder).is_dir():
        raise UsageError(f"{side} {folder}: not a results folder (no {layout.TRIALS_DIR}/ inside)")
    found = scan(folder)
    if found.corrupt:
        path, why = next(iter(found.corrupt.items()))
        raise UsageError(f"{side} {folder}: unreadable or edited record {path.name} ({why})")
    if not found.records:
        raise UsageError(f"{side} {folder}: no records")
    return list(found.records.values())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_provenance(folder: Path, suite: Any, trials: list[Any], statuses: dict[str, int], command: str) -> int:
    """After ``harness baseline`` ran ``suite`` into ``folder`` (its ``trials``: a search's are its rungs'):
    drop the working files and write ``provenance.json`` (how, when, where, and the sha256 of every record);
    the number of records."""
    import datetime as dt
    import shutil

    records = scan(folder).records
    ids = list(dict.fromkeys(t.trial_id for t in trials))
    if set(records) - set(ids):
        raise UsageError(f"{folder} holds records of trials not in the suite's plan; start from an empty folder")
    if not records:
        raise UsageError(f"{folder}: no trial left a record; nothing to keep as a baseline")
    for working in layout.WORKING_DIRS:
        shutil.rmtree(Path(folder) / working, ignore_errors=True)
    env = next(records[i] for i in ids if i in records).environment
    provenance = {
        "suite": suite.name, "suite_file": suite.file, "suite_sha256": suite.source_sha256,
        "overrides": list(suite.overrides), "command": command,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": env.get("device_name") or env.get("device"), "versions": env.get("versions", {}),
        "git": env.get("git", {}), "plugins": env.get("plugins", []), "statuses": statuses,
        "records": {i: _sha256(layout.record_path(folder, i)) for i in ids if i in records},
    }
    atomic_write(layout.provenance_path(folder), json.dumps(provenance, indent=1, sort_keys=True))
    return len(provenance["records"])


def check_provenance(folder: Path, unverified: bool = False) -> dict[str, Any] | None:
    """A baseline's provenance (written by ``harness baseline``), after checking that every record
    is the one it lists: a baseline edited by hand is bad input, and so is one without its manifest
    (deleting it would bypass the check) unless ``unverified`` says to judge against it all the same;
    then None, and the verdicts say the baseline was not verified."""
    path = layout.provenance_path(folder)
    if not path.exists():
        if unverified:
            return None
        raise UsageError(f"baseline {folder}: no {PROVENANCE_FILE}, so nothing shows its records are the ones "
                         "`harness baseline` wrote; make it with `harness baseline`, or pass --unverified-baseline")
    try:
        provenance = json.loads(path.read_text(encoding="utf-8"))
        listed = provenance["records"]
        if not isinstance(listed, dict):
            raise TypeError("records is not a mapping")
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise UsageError(f"baseline {folder}: {PROVENANCE_FILE} is not a provenance manifest "
                         f"({type(e).__name__}: {e})") from None
    present = {p.stem: p for p in layout.trials_dir(folder).glob("*.json")}
    for trial_id, sha in listed.items():
        if trial_id not in present:
            raise UsageError(f"baseline {folder}: record {trial_id} listed in {PROVENANCE_FILE} is missing")
        if _sha256(present[trial_id]) != sha:
            raise UsageError(f"baseline {folder}: record {trial_id} differs from {PROVENANCE_FILE} "
                             "(edited by hand?); produce baselines with `harness baseline`")
    extra = sorted(set(present) - set(listed))
    if extra:
        raise UsageError(f"baseline {folder}: record {extra[0]} is not in {PROVENANCE_FILE}")
    return provenance


def _key(config: dict[str, Any], drop: list[str]) -> str:
    ident = identity(config)
    for k in drop:
        ident.pop(k, None)
    return canonical_json(ident)




def infer_technique(candidate: list[Record], baseline: list[Record]) -> list[str]:
    """No keys when every candidate spec has a baseline twin; else the top-level keys whose
    candidate values never occur in the baseline (what the candidate changed)."""
    base_keys = {_key(r.config, []) for r in baseline}
    if all(_key(r.config, []) in base_keys for r in candidate):
        return []
    ours, theirs = [identity(r.config) for r in candidate], [identity(r.config) for r in baseline]

    def values(idents: list[dict[str, Any]], k: str) -> set[str]:
        return {canonical_json(i.get(k)) for i in idents}

    return [k for k in sorted({k for i in ours for k in i}) if not values(ours, k) & values(theirs, k)]


def _label(value: Any, other: Any) -> str:
    """A component's name, with the parameters that differ from the other side's when the names agree."""
    if isinstance(value, dict) and "name" in value:
        name = component_name(value) or str(value["name"])  # a class by its name, not its import path
        if isinstance(other, dict) and other.get("name") == value["name"]:
            params = [f"{k}={v}" for k, v in sorted(value.items()) if k != "name" and other.get(k) != v]
            return f"{name}({', '.join(params)})" if params else name
        return name
    if isinstance(value, list):  # each component against the other side's of the same name (their parameters)
        others = [o for o in other if isinstance(o, dict)] if isinstance(other, list) else []
        twin = lambda v: next((o for o in others if isinstance(v, dict) and o.get("name") == v.get("name")), None)  # noqa: E731
        return "[" + ", ".join(_label(v, twin(v) if twin(v) != v else None) for v in value) + "]" if value else "none"
    return str(value)


def label_of(value: Any) -> str:
    """A folder name for a technique: its name and a hash of its resolved parameters."""
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in _label(value, None))[:40]
    return f"{name}-{hashlib.sha256(canonical_json(value).encode()).hexdigest()[:8]}"


def _describe_mismatch(candidate: Record, baseline: list[Record], technique: list[str]) -> str:
    """Where the candidate's spec differs from the nearest baseline spec."""
    ours = identity(candidate.config)
    best: list[str] | None = None
    detail: list[str] = []
    for r in baseline:
        theirs = identity(r.config)
        diff = [k for k in sorted(set(ours) | set(theirs)) if k not in technique and ours.get(k) != theirs.get(k)]
        if best is None or len(diff) < len(best):
            best = diff
            detail = [f"{k} ({_label(ours.get(k), theirs.get(k))} vs {_label(theirs.get(k), ours.get(k))})"
                      for k in diff[:3]]
    return ", ".join(detail)


def _values(records: list[Record], metric: str) -> tuple[dict[int, float], int]:
    """{seed: final metric} of the completed records, and how many did not complete."""
    done = {r.seed: float(r.final[metric]) for r in records if r.status == COMPLETED and metric in r.final}
    return done, sum(1 for r in records if r.status != COMPLETED)


def regress(candidate: list[Record], baseline: list[Record], metric: str = "test_acc", margin: float = 0.0,
            technique: list[str] | None = None, confidence: float = 0.95) -> tuple[list[str], list[Verdict]]:
    """(technique keys used, one verdict per candidate group × matching baseline group)."""
    for side, records in (("candidate", candidate), ("baseline", baseline)):
        if not any(metric in r.final for r in records):
            have = sorted({k for r in records for k in r.final})
            raise UsageError(f"{side} records have no metric {metric!r}" + (f"; they have {', '.join(have)}"
                                                                           if have else " (no trial completed)"))
    keys = infer_technique(candidate, baseline) if technique is None else list(technique)
    workload_keys = [k for k in keys if k in WORKLOAD_KEYS]
    if workload_keys:  # a technique is judged on the baseline's own workloads, never across them
        c, b = candidate[0].config, baseline[0].config
        differ = "; ".join(f"{k}: {_label(c.get(k), b.get(k))} vs {_label(b.get(k), c.get(k))}" for k in workload_keys)
        raise UsageError(f"candidate and baseline differ in their workload ({differ}): regress compares a technique "
                         "on the baseline's dataset, model and budget; run the candidate on those")
    groups: dict[str, dict[str, list[Record]]] = {"c": defaultdict(list), "b": defaultdict(list)}
    for side, records in (("c", candidate), ("b", baseline)):
        for r in records:
            groups[side][_key(r.config, [])].append(r)
    by_workload: dict[str, list[str]] = defaultdict(list)
    for key, records in groups["b"].items():
        by_workload[_key(records[0].config, keys)].append(key)
    higher = not lower_is_better(metric)
    verdicts = []
    for key, records in groups["c"].items():
        config = records[0].config
        matches = by_workload.get(_key(config, keys), [])
        if not matches:
            raise UsageError(f"no baseline trials match candidate trial {records[0].trial_id} "
                             f"({workload(config)}): it differs from the nearest baseline spec in "
                             f"{_describe_mismatch(records[0], baseline, keys) or 'nothing but the seed'}"
                             + (f" (technique keys: {', '.join(keys)})" if keys else ""))
        others = {k: v for k, v in records[0].axes.items() if k.split(".")[0] not in keys}
        where = " ".join([workload(config), *(f"{k}={_label(v, None)}" for k, v in sorted(others.items()))])
        for base_key in matches:
            base = groups["b"][base_key]
            if keys:
                ours = ", ".join(_label(config.get(k), base[0].config.get(k)) for k in keys)
                theirs = ", ".join(_label(base[0].config.get(k), config.get(k)) for k in keys)
            else:
                ours, theirs = "this spec", "same spec"
            verdict = _verdict(where, ours, theirs, records, base, metric, margin, confidence, higher)
            verdicts.append(dataclasses.replace(verdict, code=code_change(records, base)))
    verdicts.sort(key=lambda v: (v.workload, v.candidate, v.baseline))
    return keys, verdicts


def code_of(records: list[Record]) -> dict[str, str]:
    """What code made these records, as comparable text: the harness's commit (and whether it had uncommitted
    changes), each plugin's sha256, and the versions of the packages in the environment and of those a
    plugin imports. A key whose records disagree lists every value."""
    seen: dict[str, set[str]] = defaultdict(set)
    for r in records:
        env = r.environment or {}
        git = env.get("git") or {}
        if git.get("sha"):
            seen["harness commit"].add(str(git["sha"])[:10] + (" (uncommitted changes)" if git.get("dirty") else ""))
        for package, version in (env.get("versions") or {}).items():
            if version:
                seen[package].add(str(version))
        for plugin in env.get("plugins") or []:
            name = Path(str(plugin.get("source") or plugin.get("plugin") or "?")).name
            seen[f"plugin {name}"].add(str(plugin.get("sha256") or "?")[:12])
            for package, version in (plugin.get("packages") or {}).items():
                seen[package].add(str(version))
    return {k: " / ".join(sorted(v)) for k, v in seen.items()}


def code_change(candidate: list[Record], baseline: list[Record]) -> str:
    """``plugin noise.py 1a2b3c4d5e6f → 9f8e7d6c5b4a; torch 2.14.1 → 2.15.0`` (baseline → candidate), or ""."""
    ours, theirs = code_of(candidate), code_of(baseline)
    changed = [f"{k} {theirs.get(k, 'none')} → {ours.get(k, 'none')}" for k in sorted(set(ours) | set(theirs))
               if ours.get(k) != theirs.get(k)]
    return "; ".join(changed)


def _verdict(where: str, ours: str, theirs: str, records: list[Record], base: list[Record], metric: str,
             margin: float, confidence: float, higher: bool) -> Verdict:
    c, c_bad = _values(records, metric)
    b, b_bad = _values(base, metric)
    d = difference(c, b, confidence, higher)

    def make(verdict: str, why: str) -> Verdict:
        return Verdict(where, ours, theirs, verdict, d.diff, d.ci_low, d.ci_high, d.test, len(c), len(b), why)

    if c_bad / max(len(records), 1) > b_bad / max(len(base), 1):
        return make(WORSE, f"{c_bad} of {len(records)} seeds diverged or failed (baseline {b_bad} of {len(base)})")
    if d.test is None:
        return make(INCONCLUSIVE, f"too few seeds for an interval (candidate {len(c)}, baseline {len(b)}; need 2 each)")
    low, high = (d.ci_low, d.ci_high) if higher else (-d.ci_high, -d.ci_low)  # of the gain
    level = f"{100 * confidence:g}% interval"
    floor = f"−{margin:g}" if margin else "0"
    if low > 0:
        return make(BETTER, f"{level} of the gain above 0")
    if high < -margin:
        return make(WORSE, f"{level} of the gain below {floor}")
    if low >= -margin:
        return make(SAME, f"{level} of the gain starts within [{floor}, 0]" if margin
                    else f"{level} of the gain starts at 0")
    return make(INCONCLUSIVE, f"{level} of the gain reaches below {floor}: more seeds or a margin would decide")


def _number(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.4f}"


def rows(verdicts: list[Verdict]) -> tuple[list[str], list[list[str]]]:
    header = ["workload", "candidate", "baseline", "verdict", "difference", "95% CI", "test", "seeds", "why",
              "code (baseline → candidate)"]
    body = [[v.workload, v.candidate, v.baseline, v.verdict, _number(v.diff),
             f"[{_number(v.ci_low)}, {_number(v.ci_high)}]" if v.test else "—", v.test or "—",
             f"{v.n} vs {v.n_baseline}", v.why, v.code or "same"] for v in verdicts]
    return header, body


def terminal_table(verdicts: list[Verdict]) -> str:
    header, body = rows(verdicts)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    line = lambda r: "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, body)])


def markdown_report(verdicts: list[Verdict], metric: str, margin: float, keys: list[str], candidate: Path,
                    baseline: Path, provenance: dict[str, Any] | None) -> str:
    header, body = rows(verdicts)
    counts = {v: sum(1 for x in verdicts if x.verdict == v) for v in (BETTER, SAME, WORSE, INCONCLUSIVE)}
    lines = [
        f"# Regression: {candidate} against {baseline}", "",
        f"Metric `{metric}` (final epoch), non-inferiority margin δ = {margin:g}; "
        + (f"technique keys: {', '.join(f'`{k}`' for k in keys)}." if keys else "trials matched by their whole spec."),
        "", "**" + ", ".join(f"{n} {v}" for v, n in counts.items()) + "**", "",
    ]
    changed = [v for v in verdicts if v.code]
    if changed:  # a verdict on other code is a verdict on that code too: say so before the table
        lines += [f"**The code differs** between candidate and baseline in {len(changed)} of {len(verdicts)} "
                  f"comparisons (the last column): {changed[0].code}. A difference may come from that change as "
                  "much as from the technique.", ""]
    lines += [markdown(header, body)]
    if provenance:
        lines += ["", f"Baseline produced by `{provenance.get('command')}` on {provenance.get('date')} "
                      f"({provenance.get('device')}, torch {provenance.get('versions', {}).get('torch')}, "
                      f"harness git {str(provenance.get('git', {}).get('sha'))[:10]})."]
    else:
        lines += ["", f"**Unverified baseline:** {baseline} has no provenance.json (`--unverified-baseline`), so "
                      "nothing shows its records are the ones `harness baseline` wrote."]
    return "\n".join(lines) + "\n"
