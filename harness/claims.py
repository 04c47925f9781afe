"""Claims: what a suite expects its results to show, stated as data, and their verdicts.

A suite's ``claims:`` section lists facts the records should bear out::

    claims:
      - id: bn-trains-small-init
        text: BatchNorm makes a deep net with a too-small init trainable
        source: Ioffe & Szegedy 2015, §4.2
        compare: {norm: batchnorm}      # the treatment: trials whose settings match
        against: {norm: none}           # the control (or value: a constant to compare with)
        where: {init: {name: normal, std: 0.01}}   # optional: only these trials
        metric: test_acc
        expect: greater                 # less, equal (within margin), not_less, not_greater
        margin: 0.05                    # the smallest effect that counts, in the metric's units
        scale: 1                        # optional: the effect is treatment − scale × control

A fact stated relative to its control ("the loss falls by under a tenth of what a good learning rate
gives") is ``scale: 0.1``: the effect is the treatment minus ``scale`` times the control, per seed
d_s = a_s − scale·b_s under a paired t, with variance var(a)/n_a + scale²·var(b)/n_b under Welch's.
So the threshold comes from the fact and the control's own value on the same data, not from a
constant one dataset gave.

The treatment and control are compared on every *workload* they share: each combination of the
values of the suite's other axes (those no selector names), seed by seed. Per workload the effect is
the treatment's mean minus the control's (or minus ``value``), with its 95% interval: a paired t when
both sides have the same seeds, Welch's t otherwise (``harness.report.stats``). Each claim-workload
pair gets a one-sided p-value for "the effect lies where ``expect`` says, beyond ``margin``" (for
``equal``, the larger of the two one-sided p-values of an equivalence test, TOST). A claim is one
hypothesis, stated with its quantifier (``over``):

- ``every`` (the default): it holds on each of its workloads, an intersection-union test (Berger 1982):
  the claim's p-value is the largest of its workloads', with no adjustment across them;
- ``mean``: it holds on the mean over its workloads (per seed, the mean of each side over the workloads;
  one test).

The claims' p-values are Holm-adjusted across the suite's claims (not claim x workload rows: a claim's
verdict depends on another claim by Holm's step alone). Verdicts:

- ``holds``: the claim's Holm-adjusted p-value is below 0.025 (for a lone claim: every workload's
  two-sided 95% interval lies wholly where the claim says, so a verdict never contradicts an interval shown);
- ``fails``: on some workload the 95% interval lies wholly where the claim says the effect is not;
- ``inconclusive``: neither; each row says why (its interval straddles the margin; it holds there but not on
  every workload; it holds alone but not after Holm's step; fewer than 2 seeds on a side);
- ``not run``: no records of the trials the claim names.

Metrics, per trial (``METRICS``): the final metrics, ``best_val_acc``, ``train_test_gap``
(train_acc − test_acc), ``init_loss`` (cross-entropy at init on the probe batch) and
``init_loss_excess`` (that minus ln C), ``first_loss`` (the first step's training objective, penalties
included), ``act_std_first``/``act_std_last`` (activation std of the first/last hidden layer at init)
and ``act_std_ratio`` (last/first), ``act_saturated_last`` (its fraction of saturated tanh/sigmoid
outputs), ``diverged`` (1 or 0), ``loss_drop`` (1 − final train loss /
the first step's loss, which every trial records) and ``epochs_to_target`` (the first epoch where ``target.metric`` reaches
``target.value``; a trial that never does counts as budget + 1, which understates how late it is).
Diagnostics at init and ``diverged`` count diverged trials too; the others count completed ones.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from harness.errors import ConfigError
from harness.matching import selects
from harness.spec import COMPLETED, DIVERGED, Record

EXPECT = ("greater", "less", "equal", "not_less", "not_greater")
KEYS = ("id", "text", "source", "compare", "against", "value", "where", "metric", "expect", "margin", "target", "over",
        "scale")
OVER = ("every", "mean")  # a claim over several workloads: on every one of them, or on their mean
ALPHA = 0.025  # one-sided: with one claim, "holds" is "the 95% interval lies wholly beyond the margin"
CONFIDENCE = 0.95
HOLDS, FAILS, INCONCLUSIVE, NOT_RUN = "holds", "fails", "inconclusive", "not run"
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,79}$")


def _final(key: str) -> Callable[[Record], float | None]:
    return lambda r: r.final.get(key)


def _layer(r: Record, which: int, stat: str) -> float | None:
    """A statistic of the first (0) or last (-1) hidden layer's activations on the probe batch at init."""
    acts = ((r.diagnostics.get("layers") or {}).get("init") or {}).get("activations") or {}
    if not acts:
        return None
    names = sorted(acts, key=lambda k: (len(k), k))  # module indices as text: "2" < "10"
    return acts[names[which]].get(stat)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _epochs_to(r: Record, target: dict[str, Any]) -> float | None:
    higher = not target["metric"].endswith("loss")
    for row in r.history:
        v = row.get(target["metric"])
        if v is not None and (v >= target["value"] if higher else v <= target["value"]):
            return float(row["epoch"])
    return float(r.config["budget"]["epochs"] + 1)  # censored: never reached within the budget


# metric -> (value of a record, does it count diverged trials)
METRICS: dict[str, tuple[Callable[..., float | None], bool]] = {
    **{m: (_final(m), False) for m in ("test_acc", "test_loss", "val_acc", "val_loss", "train_acc", "train_loss")},
    "best_val_acc": (lambda r: r.best.get("val_acc"), False),
    "train_test_gap": (lambda r: None if r.final.get("train_acc") is None or r.final.get("test_acc") is None
                       else r.final["train_acc"] - r.final["test_acc"], False),
    "init_loss": (lambda r: r.diagnostics.get("init_loss"), True),
    "init_loss_excess": (lambda r: None if r.diagnostics.get("init_loss") is None
                         else r.diagnostics["init_loss"] - r.diagnostics["ln_classes"], True),
    "first_loss": (lambda r: r.diagnostics.get("initial_loss"), True),
    "act_std_first": (lambda r: _layer(r, 0, "std"), True),
    "act_std_last": (lambda r: _layer(r, -1, "std"), True),
    "act_std_ratio": (lambda r: _ratio(_layer(r, -1, "std"), _layer(r, 0, "std")), True),
    "act_saturated_last": (lambda r: _layer(r, -1, "saturated"), True),
    "diverged": (lambda r: float(r.status == DIVERGED), True),
    "loss_drop": (lambda r: None if not r.diagnostics.get("initial_loss") or r.final.get("train_loss") is None
                  else 1 - r.final["train_loss"] / r.diagnostics["initial_loss"], False),
    "epochs_to_target": (_epochs_to, False),
}


# --- reading the claims: at load time, with key paths ----------------------------------------------

def parse_claims(value: Any, axes: list[str], configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The suite's ``claims`` section, checked against its planned trial ``configs``: every selector
    must match some of them, so a typo is an error now rather than a claim that is never tested."""
    from harness.registry import check_keys, check_value, near_miss
    from harness.settings import TRIAL_KEYS

    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError("claims", f"expected a list of claims like {{id: ..., compare: {{...}}, against: {{...}}, "
                                    f"metric: test_acc, expect: greater}}, got {type(value).__name__}")
    claims, seen = [], set()
    for i, raw in enumerate(value):
        at = f"claims[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(at, f"expected a mapping, got {raw!r}")
        check_keys(raw, list(KEYS), at, "claim key")
        for key in ("id", "metric", "expect", "compare"):
            if key not in raw:
                raise ConfigError(f"{at}.{key}", "missing")
        cid = check_value(str, raw["id"], f"{at}.id")
        if not _ID.match(cid) or cid in seen:
            raise ConfigError(f"{at}.id", f"{cid!r} is taken by an earlier claim" if cid in seen else
                              f"use lower-case letters, digits, '_', '.', '-' (at most 80), got {cid!r}")
        seen.add(cid)
        if ("against" in raw) == ("value" in raw):
            raise ConfigError(at, "give either against: (a control group) or value: (a constant), not both or neither")
        metric = check_value(str, raw["metric"], f"{at}.metric")
        if metric not in METRICS:
            raise ConfigError(f"{at}.metric", f"unknown claim metric {metric!r}; {near_miss(metric, list(METRICS))}")
        expect = check_value(str, raw["expect"], f"{at}.expect")
        if expect not in EXPECT:
            raise ConfigError(f"{at}.expect", f"expected one of {', '.join(EXPECT)}, got {expect!r}")
        margin = check_value(float, raw.get("margin", 0.0), f"{at}.margin")  # finite, or refused there
        if margin < 0 or (expect == "equal" and margin == 0):
            raise ConfigError(f"{at}.margin", "expected a finite number >= 0 (> 0 for equal: the equivalence band)"
                                              f", got {margin!r}")
        scale = check_value(float, raw.get("scale", 1.0), f"{at}.scale")
        if scale <= 0 or (scale != 1 and "against" not in raw):  # 1 is the default a plan stores with every claim
            raise ConfigError(f"{at}.scale", "a multiple of the control (against:) above 0; against a value: "
                                             f"write the value itself, got {raw['scale']!r}")
        over = check_value(str, raw.get("over", "every"), f"{at}.over")
        if over not in OVER:
            raise ConfigError(f"{at}.over", f"expected every (on each workload) or mean (on the mean over "
                                            f"workloads), got {over!r}")
        claim = {"id": cid, "text": check_value(str, raw.get("text", ""), f"{at}.text"),
                 "source": check_value(str, raw.get("source", ""), f"{at}.source"),
                 "metric": metric, "expect": expect, "margin": margin, "where": {}, "against": None, "value": None,
                 "target": None, "over": over, "scale": scale}
        for key in ("compare", "against", "where"):
            if raw.get(key) is None:
                continue
            sel = raw[key]
            if not isinstance(sel, dict) or (key != "where" and not sel):
                raise ConfigError(f"{at}.{key}", f"expected a mapping of trial settings to values, got {sel!r}")
            for k in sel:
                if str(k).split(".")[0] not in TRIAL_KEYS:
                    raise ConfigError(f"{at}.{key}.{k}", f"not a trial setting; {near_miss(str(k).split('.')[0], TRIAL_KEYS)}")
            claim[key] = sel
        if "value" in raw:
            claim["value"] = check_value(float, raw["value"], f"{at}.value")
        if metric == "epochs_to_target":
            target = raw.get("target")
            if not isinstance(target, dict) or set(target) != {"metric", "value"} or target["metric"] not in METRICS:
                raise ConfigError(f"{at}.target", "epochs_to_target needs target: {metric: val_acc, value: 0.9}")
            claim["target"] = {"metric": target["metric"], "value": check_value(float, target["value"], f"{at}.target.value")}
        elif "target" in raw:
            raise ConfigError(f"{at}.target", "only metric: epochs_to_target takes a target")
        for key in ("compare", "against"):
            if claim[key] is not None and not any(selects({**claim["where"], **claim[key]}, c) for c in configs):
                raise ConfigError(f"{at}.{key}", f"matches none of the suite's trials (with where: {claim['where']}); "
                                                 f"the varying axes are {', '.join(axes) or 'none'}")
        claims.append(claim)
    return claims


def baseline_row(baseline: Any, axes: list[str], rows: list[tuple[dict[str, Any], dict[str, Any]]],
                 where: str = "report.baseline") -> tuple[str, str]:
    """(axis, row label) of a report's baseline, found among ``rows`` (each trial's config and axis labels).
    The baseline is ``AXIS=LABEL`` (a row as the table shows it), ``AXIS=VALUE`` with VALUE read as YAML and
    matched as a claim's side is (a name, or the parameters that single out one row:
    ``optimizer={name: momentum, lr: 0.01}``), or that as a mapping ``{optimizer: {name: momentum, lr: 0.01}}``.
    Refused, saying which rows there are, when it names no axis, no row, or several rows."""
    import yaml

    if isinstance(baseline, dict):
        if len(baseline) != 1:
            raise ConfigError(where, f"expected one axis and its value, e.g. {{optimizer: momentum}}, got {baseline!r}")
        ((axis, value),) = baseline.items()
        label = None
    else:
        axis, sep, label = str(baseline).partition("=")
        if not sep or not axis or not label:
            raise ConfigError(where, f"expected AXIS=VALUE (optimizer=momentum), got {baseline!r}")
        try:
            value = yaml.safe_load(label)
        except (yaml.YAMLError, ValueError):
            value = label
    if axis not in axes:
        raise ConfigError(where, f"{axis!r} is not an axis that varies; the axes are {', '.join(axes) or 'none'}")
    labels = list(dict.fromkeys(str(axes_of.get(axis)) for _, axes_of in rows))
    if label in labels:
        return axis, label
    chosen = list(dict.fromkeys(str(axes_of.get(axis)) for config, axes_of in rows if selects({axis: value}, config)))
    if len(chosen) == 1:
        return axis, chosen[0]
    said = "selects no row" if not chosen else f"selects {len(chosen)} rows ({', '.join(chosen)}): give the parameters that single one out"
    raise ConfigError(where, f"{axis}={_short(value)} {said}; the rows of {axis} are {', '.join(labels)}")


# --- verdicts ---------------------------------------------------------------------------------------

@dataclass
class Verdict:
    claim: str
    workload: str  # the other axes' values this test is on ("all" when none vary)
    metric: str
    expect: str
    margin: float
    effect: float  # treatment mean minus scale x control mean (or minus value)
    ci_low: float
    ci_high: float
    n: int  # treatment seeds
    n_against: int  # control seeds (0 against a value)
    test: str
    p: float
    p_holm: float
    verdict: str
    why: str
    look: str = ""  # a sequential suite's: the look it was reached at and the seeds it took (harness.sequential)


def _touched(axis: str, keys: list[str]) -> bool:
    return any(axis == k or axis.startswith(k + ".") or k.startswith(axis + ".") for k in keys)


def _values(records: list[Record], claim: dict[str, Any], selector: dict[str, Any], group_axes: list[str]
            ) -> dict[tuple, dict[int, float]]:
    value_of, with_diverged = METRICS[claim["metric"]]
    statuses = (COMPLETED, DIVERGED) if with_diverged else (COMPLETED,)
    out: dict[tuple, dict[int, float]] = {}
    for r in records:
        if r.status not in statuses or not selects({**claim["where"], **selector}, r.config):
            continue
        v = value_of(r, claim["target"]) if claim["metric"] == "epochs_to_target" else value_of(r)
        if v is None or not math.isfinite(v):
            continue
        key = tuple(str(r.axes.get(a)) for a in group_axes)
        out.setdefault(key, {})[r.seed] = float(v)
    return out


def _mean_over(treated: dict[tuple, dict[int, float]], control: dict[tuple, dict[int, float]] | None,
               groups: list[tuple]) -> tuple[dict, dict | None, dict]:
    """Each side as one workload: per seed, its mean over the workloads (a seed missing from one is left out,
    so that every mean is over the same workloads)."""
    def mean(side: dict[tuple, dict[int, float]]) -> dict[int, float]:
        seeds = set.intersection(*(set(side[g]) for g in groups))
        return {s: float(np.mean([side[g][s] for g in groups])) for s in sorted(seeds)}

    key = ("mean",)
    return ({key: mean(treated)}, None if control is None else {key: mean(control)},
            {key: f"mean over {len(groups)} workloads"})


def _unusable(records: list[Record], claim: dict[str, Any]) -> str:
    """Why a side with records gives no values (its trials diverged or failed, or lack the metric); "" when
    a side has no records at all (the claim was not run)."""
    sides = [("treatment", claim["compare"])] + ([("control", claim["against"])] if claim["against"] else [])
    found = {name: [r for r in records if selects({**claim["where"], **sel}, r.config)] for name, sel in sides}
    if not all(found.values()):
        return ""
    for name, side in found.items():
        counts = Counter(r.status for r in side)
        if not _values(side, claim, {}, []):
            statuses = ", ".join(f"{n} {s}" for s, n in counts.most_common())
            return f"no {claim['metric']} from the {name}'s {len(side)} trials ({statuses})"
    return "the treatment and control share no workload"


def _one_sided(effect: float, se: float, df: float, bound: float, above: bool) -> float:
    """P-value of "the effect is above (or below) ``bound``" (the null: it is not)."""
    if se == 0 or not math.isfinite(se):
        return 0.0 if (effect > bound if above else effect < bound) else 1.0
    from scipy import stats as sps  # here, not at the top: every suite load imports this module (1.2 s)

    t = (effect - bound) / se
    return float(sps.t.sf(t, df) if above else sps.t.cdf(t, df))


def _p(expect: str, effect: float, se: float, df: float, margin: float) -> float:
    if expect == "greater":
        return _one_sided(effect, se, df, margin, True)
    if expect == "less":
        return _one_sided(effect, se, df, -margin, False)
    if expect == "not_less":
        return _one_sided(effect, se, df, -margin, True)
    if expect == "not_greater":
        return _one_sided(effect, se, df, margin, False)
    return max(_one_sided(effect, se, df, -margin, True), _one_sided(effect, se, df, margin, False))  # TOST


def _excluded(expect: str, low: float, high: float, margin: float) -> bool:
    """The 95% interval lies wholly where the claim says the effect is not."""
    return {"greater": high <= margin, "less": low >= -margin, "not_less": high < -margin,
            "not_greater": low > margin, "equal": low > margin or high < -margin}[expect]


def verdicts(records: list[Record], claims: list[dict[str, Any]], axes: list[str], alpha: float = ALPHA
             ) -> list[Verdict]:
    """Every claim on every workload its treatment and control share, judged at the one-sided level
    ``alpha`` (intervals at 1 − 2·alpha; a look of a sequential design passes its share of the level)."""
    from scipy import stats as sps

    from harness.report.stats import holm, t_parts

    out: list[Verdict] = []
    for claim in claims:
        # workloads: the values of every axis the treatment and control do not name (where: may select several)
        group_axes = [a for a in axes if not _touched(a, [*claim["compare"], *(claim["against"] or {})])]
        treated = _values(records, claim, claim["compare"], group_axes)
        control = _values(records, claim, claim["against"], group_axes) if claim["against"] is not None else None
        groups = [k for k in treated if control is None or k in control]
        base = dict(claim=claim["id"], metric=claim["metric"], expect=claim["expect"], margin=claim["margin"])
        if not groups:
            why = _unusable(records, claim)
            out.append(Verdict(**base, workload="-", effect=math.nan, ci_low=math.nan, ci_high=math.nan, n=0,
                               n_against=0, test="", p=math.nan, p_holm=math.nan,
                               verdict=INCONCLUSIVE if why else NOT_RUN, why=why or "no records of the trials it compares"))
            continue
        labels = {key: ", ".join(f"{a}={v}" for a, v in zip(group_axes, key)) or "all" for key in groups}
        if claim.get("over", "every") == "mean" and len(groups) > 1:
            treated, control, labels = _mean_over(treated, control, groups)
            groups = list(labels)
        for key in groups:
            label = labels[key]
            a = treated[key]
            b = control[key] if control is not None else None
            n_b = len(b) if b is not None else 0
            if len(a) < 2 or (b is not None and n_b < 2):
                mean = float(np.mean(list(a.values()))) - (claim.get("scale", 1.0) * float(np.mean(list(b.values())))
                                                           if b else claim["value"])
                out.append(Verdict(**base, workload=label, effect=mean, ci_low=math.nan, ci_high=math.nan, n=len(a),
                                   n_against=n_b, test="", p=math.nan, p_holm=math.nan, verdict=INCONCLUSIVE,
                                   why="fewer than 2 seeds on a side"))
                continue
            effect, se, df, test = t_parts(a, b, claim["value"], claim.get("scale", 1.0))
            half = float(sps.t.ppf(1 - alpha, df)) * se if se > 0 else 0.0
            p = _p(claim["expect"], effect, se, df, claim["margin"])
            out.append(Verdict(**base, workload=label, effect=effect, ci_low=effect - half, ci_high=effect + half,
                               n=len(a), n_against=n_b, test=test, p=p, p_holm=math.nan, verdict="", why=""))
    _judge(out, alpha)
    return out


def interval_name(alpha: float) -> str:
    """``95%`` for the usual level; a look's smaller share of it gives a wider interval, named as such."""
    return f"{100 * (1 - 2 * alpha):.4g}%"


def _judge(rows: list[Verdict], alpha: float = ALPHA) -> None:
    """Verdicts of the tested rows. A claim is one hypothesis: on every workload (an intersection-union
    test, Berger 1982: its p-value is the largest of its workloads', with no adjustment across them), or on
    the mean over its workloads (one row). Holm's step-down runs across the suite's claims only, so that a
    claim's verdict depends on the other claims by that documented step alone; a claim with an untested
    workload (too few seeds) cannot hold and takes no part in it. A row's reason is the true one."""
    from harness.report.stats import holm

    claims = list(dict.fromkeys(v.claim for v in rows))
    of = {c: [v for v in rows if v.claim == c] for c in claims}
    complete = [c for c in claims if of[c] and all(not v.verdict for v in of[c])]
    worst = {c: max(v.p for v in of[c]) for c in complete}
    adjusted = dict(zip(complete, holm([worst[c] for c in complete])))
    interval = interval_name(alpha)
    for c in claims:
        tested = [v for v in of[c] if not v.verdict]
        for v in tested:
            v.p_holm = adjusted.get(c, math.nan)
            if c in adjusted and adjusted[c] < alpha:
                v.verdict, v.why = HOLDS, ""
            elif _excluded(v.expect, v.ci_low, v.ci_high, v.margin):
                v.verdict, v.why = FAILS, f"the {interval} interval excludes the claimed effect"
            elif v.p >= alpha:
                v.verdict, v.why = INCONCLUSIVE, f"the {interval} interval straddles the margin"
            elif c not in adjusted:
                v.verdict, v.why = INCONCLUSIVE, "holds here, but another of its workloads has fewer than 2 seeds a side"
            elif worst[c] >= alpha:
                v.verdict, v.why = INCONCLUSIVE, (f"holds here, not on every one of its {len(of[c])} workloads "
                                                   "(a claim is judged on each)")
            else:
                v.verdict, v.why = INCONCLUSIVE, (f"holds alone (p={worst[c]:.2g}), not after Holm's step across the "
                                                   f"suite's {len(complete)} tested claims (adjusted p={adjusted[c]:.2g})")


def overall(rows: list[Verdict]) -> dict[str, str]:
    """Claim id -> its verdict over its workloads: fails if one fails, holds if all hold."""
    by: dict[str, list[str]] = {}
    for v in rows:
        by.setdefault(v.claim, []).append(v.verdict)
    return {c: (FAILS if FAILS in vs else HOLDS if all(x == HOLDS for x in vs) else
                NOT_RUN if all(x == NOT_RUN for x in vs) else INCONCLUSIVE) for c, vs in by.items()}


def describe_effect(v: Verdict) -> str:
    """``+0.123 [0.100, 0.146]``: the effect and its 95% interval (or the effect alone)."""
    if not math.isfinite(v.effect):
        return "-"
    if not math.isfinite(v.ci_low):
        return f"{v.effect:+.4g}"
    return f"{v.effect:+.4g} [{v.ci_low:.4g}, {v.ci_high:.4g}]"


def expectation(claim: dict[str, Any]) -> str:
    """The claim in symbols: ``test_acc(norm=batchnorm) − test_acc(norm=none) > 0.05``, or with a scale
    ``loss_drop(optimizer.lr=1e-05) − 0.1 × loss_drop(optimizer.lr=0.1) < -0``."""
    sel = lambda s: ", ".join(f"{k}={_short(v)}" for k, v in s.items())  # noqa: E731
    scale = claim.get("scale", 1.0)
    right = (("" if scale == 1 else f"{scale:g} × ") + f"{claim['metric']}({sel(claim['against'])})"
             if claim["against"] is not None else f"{claim['value']:g}")
    op = {"greater": ">", "less": "<", "equal": "≈", "not_less": "≥", "not_greater": "≤"}[claim["expect"]]
    bound = {"greater": f"{claim['margin']:g}", "less": f"-{claim['margin']:g}", "not_less": f"-{claim['margin']:g}",
             "not_greater": f"{claim['margin']:g}", "equal": f"0 ± {claim['margin']:g}"}[claim["expect"]]
    where = f" where {sel(claim['where'])}" if claim["where"] else ""
    return f"{claim['metric']}({sel(claim['compare'])}) − {right} {op} {bound}{where}"


def _short(v: Any) -> str:
    if isinstance(v, dict):
        name = v.get("name")
        rest = ", ".join(f"{k}={_short(x)}" for k, x in v.items() if k != "name")
        return f"{name}({rest})" if name and rest else name or f"{{{rest}}}"
    if isinstance(v, list):
        return "[" + ", ".join(_short(x) for x in v) + "]"
    return str(v)
