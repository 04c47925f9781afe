"""Claims as data (harness/claims.py): malformed claims are refused at load time with their key path;
verdicts follow their definitions on records whose values are known; and on real runs of the repro
suites, at a CI budget, the robust textbook facts hold while a reversed claim fails."""
import pytest
import yaml
from conftest import REPO, harness_cli, write_suite
from test_trust import _refused, cli  # noqa: F401  (cli: a fixture)

from harness.claims import FAILS, HOLDS, INCONCLUSIVE, NOT_RUN, overall, parse_claims, verdicts
from harness.spec import COMPLETED, DIVERGED, Record

BASE = """
name: c
seeds: 2
budget: {epochs: 1}
base:
  dataset: {name: digits, val_size: 200, train_subset: 200}
  model: {name: mlp, depth: 1, width: 16}
grid:
  norm: [none, batchnorm]
  optimizer.lr: [0.01, 0.1]
claims:
  - CLAIM
"""
GOOD = "{id: bn, compare: {norm: batchnorm}, against: {norm: none}, metric: test_acc, expect: greater}"


@pytest.mark.parametrize("claim, needle", [
    ("{compare: {norm: batchnorm}, against: {norm: none}, metric: test_acc, expect: greater}", "claims[0].id: missing"),
    ("{id: bn, compare: {norm: batchnorm}, against: {norm: none}, expect: greater}", "claims[0].metric: missing"),
    ("{id: bn, compare: {norm: batchnorm}, against: {norm: none}, metric: test_accuracy, expect: greater}",
     "claims[0].metric: unknown claim metric 'test_accuracy'; did you mean 'test_acc'"),
    ("{id: bn, compare: {norm: batchnorm}, against: {norm: none}, metric: test_acc, expect: bigger}",
     "claims[0].expect: expected one of greater, less, equal"),
    ("{id: bn, compare: {norm: batchnorm}, against: {norm: none}, value: 0.5, metric: test_acc, expect: greater}",
     "claims[0]: give either against:"),
    ("{id: bn, compare: {norm: batchnorm}, metric: test_acc, expect: greater}", "claims[0]: give either against:"),
    ("{id: bn, compare: {norm: layernorm}, against: {norm: none}, metric: test_acc, expect: greater}",
     "claims[0].compare: matches none of the suite's trials"),
    ("{id: bn, compare: {norm: batchnorm}, against: {norm: none}, where: {optimizer.lr: 0.5}, metric: test_acc, "
     "expect: greater}", "claims[0].compare: matches none"),
    ("{id: bn, compare: {nrom: batchnorm}, against: {norm: none}, metric: test_acc, expect: greater}",
     "claims[0].compare.nrom: not a trial setting; did you mean 'norm'"),
    ("{id: 'BN claim', compare: {norm: batchnorm}, against: {norm: none}, metric: test_acc, expect: greater}",
     "claims[0].id: use lower-case letters"),
    ("{id: bn, compare: {norm: batchnorm}, against: {norm: none}, metric: test_acc, expect: greater, margin: -1}",
     "claims[0].margin: expected a finite number >= 0"),
    ("{id: bn, compare: {norm: batchnorm}, against: {norm: none}, metric: test_acc, expect: equal}",
     "claims[0].margin: expected a finite number >= 0 (> 0 for equal"),
    ("{id: bn, compare: {norm: batchnorm}, against: {norm: none}, metric: epochs_to_target, expect: less}",
     "claims[0].target: epochs_to_target needs target:"),
    ("{id: bn, compare: {norm: batchnorm}, against: {norm: none}, metric: test_acc, expect: less, "
     "target: {metric: val_acc, value: 0.9}}", "claims[0].target: only metric: epochs_to_target"),
    ("{id: bn, compare: {norm: batchnorm}, against: {norm: none}, metric: test_acc, expect: greater, because: yes}",
     "claims[0].because: unknown claim key"),
    ("{id: bn, compare: batchnorm, against: {norm: none}, metric: test_acc, expect: greater}",
     "claims[0].compare: expected a mapping of trial settings"),
    (GOOD + "\n  - " + GOOD, "claims[1].id: 'bn' is taken by an earlier claim"),
    ("{id: bn, compare: {norm: batchnorm}, metric: test_acc, expect: greater, value: .inf}",
     "claims[0].value: expected a finite number"),
    ("{id: bn, compare: {norm: batchnorm}, against: {norm: none}, metric: test_acc, expect: less, scale: 0}",
     "claims[0].scale: a multiple of the control (against:) above 0"),
    ("{id: bn, compare: {norm: batchnorm}, value: 0.5, metric: test_acc, expect: less, scale: 0.1}",
     "claims[0].scale: a multiple of the control (against:) above 0; against a value"),
])
def test_a_malformed_claim_is_refused_at_load_time_with_its_key_path(tmp_path, cli, claim, needle):
    suite = write_suite(tmp_path, BASE.replace("CLAIM", claim))
    _refused(cli("plan", suite), str(suite), needle)


def test_claims_as_data_are_kept_in_the_plan(tmp_path):
    from harness.suite import load_suite

    suite = load_suite(str(write_suite(tmp_path, BASE.replace("CLAIM", GOOD))))
    (claim,) = suite.to_dict()["claims"]
    assert claim["compare"] == {"norm": "batchnorm"} and claim["against"] == {"norm": "none"}
    assert claim["margin"] == 0.0 and claim["value"] is None and claim["where"] == {} and claim["scale"] == 1.0
    # a plan's claims are read back through the same checks: the default scale a value claim keeps passes them
    configs = [{"norm": {"name": n}} for n in ("batchnorm", "none")]
    stored = parse_claims([{"id": "v", "compare": {"norm": "batchnorm"}, "value": 0.5, "metric": "test_acc",
                            "expect": "greater"}], ["norm"], configs)
    from harness.store.records import check_plan_claims

    plan = {"axes": ["norm"], "claims": [dict(c) for c in stored]}
    check_plan_claims(plan, configs)
    assert plan["claims"] == stored


# --- verdicts against their definitions, on records whose values are known ----------------------------

def _records(values: dict[str, list[float]], status=COMPLETED, metric="test_acc", seeds=None) -> list[Record]:
    """Records of a suite with one axis, ``norm``: for each value of it, one record per listed metric value."""
    out = []
    for norm, xs in values.items():
        for i, x in enumerate(xs):
            seed = (seeds or {}).get(norm, list(range(len(xs))))[i]
            out.append(Record(f"{norm}{seed}", "s", seed, status, {"norm": {"name": norm}}, {"norm": norm},
                              final={metric: x}))
    return out


def _claim(**fields):
    raw = {"id": "c", "compare": {"norm": "batchnorm"}, "against": {"norm": "none"}, "metric": "test_acc",
           "expect": "greater", **fields}
    if raw.get("against") is None:
        raw.pop("against")
    return parse_claims([raw], ["norm"], [{"norm": {"name": "batchnorm"}}, {"norm": {"name": "none"}}])


def _one(records, claim):
    (v,) = verdicts(records, claim, ["norm"])
    return v


def test_a_clear_effect_holds_with_the_paired_t_interval_of_its_definition():
    bn, none = [0.90, 0.92, 0.91, 0.93], [0.80, 0.83, 0.80, 0.84]
    v = _one(_records({"batchnorm": bn, "none": none}), _claim())
    d = [a - b for a, b in zip(bn, none)]
    mean, se = sum(d) / 4, (sum((x - sum(d) / 4) ** 2 for x in d) / 3) ** 0.5 / 2
    assert v.test == "paired t" and v.verdict == HOLDS and v.n == v.n_against == 4
    assert v.effect == pytest.approx(mean) and v.ci_high - v.effect == pytest.approx(3.182446 * se, rel=1e-5)
    # the same data against a margin larger than the effect: the interval lies below it, so the claim fails
    assert _one(_records({"batchnorm": bn, "none": none}), _claim(margin=0.2)).verdict == FAILS
    # and a reversed claim fails
    assert _one(_records({"batchnorm": bn, "none": none}), _claim(expect="less")).verdict == FAILS


def test_a_scaled_claim_compares_the_treatment_with_a_multiple_of_the_control_as_computed_by_hand():
    """scale: 0.1 is "the treatment's effect is under a tenth of the control's": d_s = a_s − 0.1·b_s, paired;
    with other seeds, Welch's t on var(a)/n_a + 0.1²·var(b)/n_b with its Satterthwaite degrees of freedom."""
    import math

    from scipy import stats

    low, good = [0.010, 0.030, 0.020, 0.025], [0.90, 0.80, 0.95, 0.85]
    claim = _claim(expect="less", scale=0.1)
    v = _one(_records({"batchnorm": low, "none": good}), claim)
    d = [a - 0.1 * b for a, b in zip(low, good)]  # -0.08, -0.05, -0.075, -0.06
    mean = sum(d) / 4
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / 3 / 4)
    assert v.test == "paired t" and v.effect == pytest.approx(mean) and v.verdict == HOLDS
    assert v.ci_high - v.effect == pytest.approx(stats.t.ppf(0.975, 3) * se)
    assert v.p == pytest.approx(stats.t.cdf(mean / se, 3))
    # unscaled, the same records are a plain difference; scaled by 1 the claim reads as it always did
    assert _one(_records({"batchnorm": low, "none": good}), _claim(expect="less")).effect == pytest.approx(
        sum(low) / 4 - sum(good) / 4)
    # Welch: the control's variance enters times scale²
    welch = _one(_records({"batchnorm": low, "none": good}, seeds={"batchnorm": [0, 1, 2, 3], "none": [4, 5, 6, 7]}),
                 claim)
    var = lambda x: sum((y - sum(x) / len(x)) ** 2 for y in x) / (len(x) - 1)  # noqa: E731
    va, vb = var(low) / 4, 0.01 * var(good) / 4
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 3)
    assert welch.test == "Welch t" and welch.effect == pytest.approx(sum(low) / 4 - 0.1 * sum(good) / 4)
    assert welch.ci_high - welch.effect == pytest.approx(stats.t.ppf(0.975, df) * math.sqrt(va + vb))
    # a treatment that moves by a third of the control's does not move "under a tenth" of it: the claim fails
    assert _one(_records({"batchnorm": [x / 3 for x in good], "none": good}), claim).verdict == FAILS
    from harness.claims import expectation

    assert expectation(claim[0]) == "test_acc(norm=batchnorm) − 0.1 × test_acc(norm=none) < -0"
    assert expectation(_claim()[0]) == "test_acc(norm=batchnorm) − test_acc(norm=none) > 0"


def test_other_seeds_use_welch_and_noise_is_inconclusive_not_a_verdict():
    records = _records({"batchnorm": [0.9, 0.7, 0.8], "none": [0.85, 0.75, 0.8]},
                       seeds={"batchnorm": [0, 1, 2], "none": [3, 4, 5]})
    v = _one(records, _claim())
    assert v.test == "Welch t" and v.verdict == INCONCLUSIVE and "straddles" in v.why
    one_seed = _one(_records({"batchnorm": [0.9], "none": [0.8]}), _claim())
    assert one_seed.verdict == INCONCLUSIVE and "fewer than 2 seeds" in one_seed.why
    assert _one(_records({"none": [0.8, 0.9]}), _claim()).verdict == NOT_RUN


def test_equal_is_an_equivalence_test_and_value_a_one_sample_test():
    near = _records({"batchnorm": [2.300, 2.305, 2.302, 2.301], "none": [0, 0, 0, 0]}, metric="test_loss")
    claim = _claim(against=None, value=2.3026, metric="test_loss", expect="equal", margin=0.02)
    v = _one(near, claim)
    assert v.test == "one-sample t" and v.verdict == HOLDS and abs(v.effect) < 0.002
    assert _one(near, _claim(against=None, value=2.0, metric="test_loss", expect="equal", margin=0.02)).verdict == FAILS
    wide = _records({"batchnorm": [2.2, 2.4, 2.25, 2.38], "none": [0, 0]}, metric="test_loss")
    assert _one(wide, claim).verdict == INCONCLUSIVE  # the interval is wider than the band


def test_not_less_holds_for_an_equal_result_within_the_margin_and_holm_adjusts_across_claims():
    same = _records({"batchnorm": [0.90, 0.91, 0.92], "none": [0.901, 0.909, 0.921]})
    assert _one(same, _claim(expect="not_less", margin=0.01)).verdict == HOLDS
    assert _one(same, _claim(expect="greater")).verdict != HOLDS
    # Holm: the smallest of m p-values is multiplied by m
    records = _records({"batchnorm": [0.90, 0.93, 0.91], "none": [0.85, 0.86, 0.87]})
    two = parse_claims([{"id": "a", "compare": {"norm": "batchnorm"}, "against": {"norm": "none"}, "metric": "test_acc",
                         "expect": "greater"},
                        {"id": "b", "compare": {"norm": "batchnorm"}, "value": 0.0, "metric": "test_acc",
                         "expect": "greater"}], ["norm"], [{"norm": {"name": "batchnorm"}}, {"norm": {"name": "none"}}])
    a, b = verdicts(records, two, ["norm"])
    single = _one(records, two[:1])
    assert a.p == pytest.approx(single.p) and a.p_holm == pytest.approx(min(1.0, max(2 * min(a.p, b.p), a.p)))
    assert overall([a, b]) == {"a": HOLDS, "b": HOLDS}


def test_diverged_trials_count_for_the_diverged_metric_only():
    records = _records({"none": [0.1, 0.1, 0.1]}, status=DIVERGED) + _records({"batchnorm": [0.9, 0.9, 0.9]})
    claim = parse_claims([{"id": "d", "compare": {"norm": "none"}, "against": {"norm": "batchnorm"},
                           "metric": "diverged", "expect": "greater"}], ["norm"],
                         [{"norm": {"name": "batchnorm"}}, {"norm": {"name": "none"}}])
    v = _one(records, claim)
    assert v.effect == 1.0 and v.verdict == HOLDS
    v = _one(records, _claim())  # test_acc counts completed trials: none of norm=none, which has records
    assert v.verdict == INCONCLUSIVE and v.why == "no test_acc from the control's 3 trials (3 diverged)"


# --- real runs of the repro suites at a CI budget ------------------------------------------------------

@pytest.mark.slow
def test_the_robust_textbook_facts_hold_on_real_runs_and_a_reversed_claim_fails(tmp_path):
    """ln C at init (and L2 raising the first loss), overfitting 20 samples, and the collapse of a 10-layer
    tanh net's activations from a std-0.01 init, each from its repro suite at a small budget."""
    results = tmp_path / "r"
    runs = [("initial-loss.yaml", []),
            ("overfit-tiny.yaml", ["seeds=3"]),
            ("init-depth.yaml", ["budget.epochs=1", "seeds=2", "base.model.width=64"])]
    for suite, overrides in runs:
        r = harness_cli("run", REPO / "suites" / "repro" / suite, *overrides, "--results", results, "--no-report",
                        "--workers", "2")
        assert r.returncode == 0, r.stderr[-2000:]
    verify = harness_cli("verify", results / "repro-initial-loss", results / "repro-overfit-tiny",
                         results / "repro-init-depth", "--page", tmp_path / "R.md")
    lines = verify.stdout.splitlines()
    for claim in ("init-loss-is-ln-c", "l2-raises-initial-loss", "overfits-20-samples", "small-init-collapses"):
        assert any(line.split()[:2] == ["holds", claim] for line in lines), verify.stdout
    assert verify.returncode in (0, 1)  # the other init claims are judged at a budget too small to settle them
    page = (tmp_path / "R.md").read_text()
    row = "| init-loss-is-ln-c | init_loss_excess(regularizers=[]) − 0 ≈ 0 ± 0.02 | all |"
    assert row in page
    report = harness_cli("report", results / "repro-initial-loss", "--format", "md,html")
    assert report.returncode == 0, report.stderr
    md = (results / "repro-initial-loss" / "report" / "report.md").read_text()
    assert "## Claims" in md and "2 claims: 2 holds." in md and row in md
    assert ">Claims</h2>" in (results / "repro-initial-loss" / "report" / "report.html").read_text()

    # the same records against the reversed claim: collapse means a small std, so "greater" is false
    raw = yaml.safe_load((REPO / "suites" / "repro" / "init-depth.yaml").read_text())
    raw["claims"] = [dict(raw["claims"][0], id="reversed", expect="greater")]
    raw.update(seeds=2, budget={"epochs": 1})  # the overrides of the run above: the same trials
    raw["base"]["model"]["width"] = 64
    reversed_suite = tmp_path / "reversed.yaml"
    reversed_suite.write_text(yaml.safe_dump(raw))
    r = harness_cli("verify", reversed_suite, "--results", results)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.splitlines()[1].split()[:2] == ["fails", "reversed"], r.stdout


def test_verify_refuses_what_it_cannot_judge(tmp_path, cli):
    _refused(cli("verify", tmp_path), "neither a suite file nor a results folder with a plan.json")
    plain = write_suite(tmp_path, BASE.split("claims:")[0], "plain.yaml")
    _refused(cli("verify", plain), "the suite states no claims")


def test_the_committed_reproductions_page_agrees_with_verify_on_the_committed_records():
    """Every claim on results/REPRODUCTIONS.md has the verdict harness verify gives it now, from the records in
    results/repro/ (a code change that makes a known fact stop holding, or the page going stale, fails here)."""
    import re

    from harness.report.claims import verify

    page = (REPO / "results" / "REPRODUCTIONS.md").read_text()
    stated = dict(re.findall(r"^- \*\*([a-z0-9_.-]+)\*\* \(([a-z ]+)\):", page, re.M))
    suites = sorted((REPO / "suites" / "repro").glob("*.yaml"))
    checked = verify([str(s) for s in suites], str(REPO / "results" / "repro"))
    now = {claim: verdict for c in checked for claim, verdict in c.overall.items()}
    assert len(now) >= 30 and now == stated
    ran = [c for c in checked if c.trials]
    assert len(ran) >= 12 and all(c.trials == c.planned for c in ran)  # every trial of the full budget has a record


def test_verify_writes_its_page_only_where_no_input_or_other_file_is(tmp_path, cli):
    """``verify --page FILE`` once overwrote any file, the suite being verified included."""
    suite = tmp_path / "initial-loss.yaml"
    suite.write_text((REPO / "suites" / "repro" / "initial-loss.yaml").read_text())
    kept = suite.read_text()
    notes = tmp_path / "notes.md"
    notes.write_text("# my notes\n")
    link, to_notes = tmp_path / "link.md", tmp_path / "to-notes.md"
    link.symlink_to(suite)
    to_notes.symlink_to(notes)
    results = tmp_path / "results"
    (results / "other").mkdir(parents=True)
    (results / "other" / "plan.json").write_text("{}")
    verify = ("verify", suite, "--results", results, "--page")
    _refused(cli(*verify, suite), "an input of this verify")
    _refused(cli(*verify, notes), "not a reproductions page verify wrote")
    _refused(cli(*verify, link), "an input of this verify")
    _refused(cli(*verify, to_notes), "not a reproductions page verify wrote")
    _refused(cli(*verify, results / "other" / "R.md"), "inside the results folder")
    assert suite.read_text() == kept and notes.read_text() == "# my notes\n"
    page = tmp_path / "R.md"
    for _ in range(2):  # a new file, then the page it wrote, written again
        code, err = cli(*verify, page)
        assert code == 0, err
        assert page.read_text().startswith("# Reproductions\n") and "not run" in page.read_text()


# --- a claim is one hypothesis: its quantifier over workloads, Holm across claims only ------------------

def _over_workloads(effects: dict[str, list[float]], control: float = 0.80, noise=(0.0, 0.01, -0.01, 0.005)):
    """Records of a suite with axes norm (none, batchnorm) and w: on workload w, batchnorm's seeds lie
    ``effects[w][i]`` above the control's (paired by seed)."""
    out = []
    for w, deltas in effects.items():
        for seed, delta in enumerate(deltas):
            for norm, x in (("none", control + noise[seed]), ("batchnorm", control + noise[seed] + delta)):
                out.append(Record(f"{norm}{w}{seed}", "s", seed, COMPLETED, {"norm": {"name": norm}, "w": w},
                                  {"norm": norm, "w": w}, final={"test_acc": x}))
    return out


def _claims_on(*fields_of_each):
    configs = [{"norm": {"name": n}, "w": w} for n in ("batchnorm", "none") for w in ("a", "b", "c")]
    raws = [{"id": f"c{i}", "compare": {"norm": "batchnorm"}, "against": {"norm": "none"}, "metric": "test_acc",
             "expect": "greater", **fields} for i, fields in enumerate(fields_of_each)]
    return parse_claims(raws, ["norm", "w"], configs)


def test_a_claims_verdict_does_not_depend_on_how_many_workloads_or_other_claims_there_are():
    """The issue's case: a claim that holds alone flipped to inconclusive beside a failing claim, Holm having
    run over every claim x workload row, and its reason ("straddles the margin") contradicted its interval."""
    records = _over_workloads({"a": [0.05, 0.06, 0.045, 0.055], "b": [0.05, 0.052, 0.06, 0.047],
                               "c": [0.04, 0.05, 0.045, 0.06]})
    alone = verdicts(records, _claims_on({}), ["norm", "w"])
    assert [v.verdict for v in alone] == [HOLDS] * 3
    failing = {"compare": {"norm": "none"}, "against": {"norm": "batchnorm"}}  # the reverse: fails everywhere
    beside = verdicts(records, _claims_on({}, failing), ["norm", "w"])
    assert overall(beside) == {"c0": HOLDS, "c1": FAILS}
    worst = max(v.p for v in alone)
    assert all(v.p_holm == pytest.approx(min(1.0, 2 * worst)) for v in beside if v.claim == "c0")  # one Holm step


def test_a_claim_on_every_workload_is_an_intersection_union_test_and_on_the_mean_one_test():
    # clear on a and b, noise on c: not on every workload, but on the mean
    records = _over_workloads({"a": [0.06, 0.07, 0.065, 0.06], "b": [0.06, 0.065, 0.07, 0.06],
                               "c": [0.02, -0.03, 0.04, -0.01]})
    every = verdicts(records, _claims_on({}), ["norm", "w"])
    assert overall(every) == {"c0": INCONCLUSIVE}
    by_w = {v.workload: v for v in every}
    assert by_w["w=c"].why == "the 95% interval straddles the margin" and by_w["w=c"].ci_low < 0 < by_w["w=c"].ci_high
    assert by_w["w=a"].verdict == INCONCLUSIVE and by_w["w=a"].ci_low > 0  # its interval is clear: the reason says why
    assert by_w["w=a"].why == "holds here, not on every one of its 3 workloads (a claim is judged on each)"
    assert by_w["w=a"].p_holm == pytest.approx(by_w["w=c"].p)  # the claim's p: its worst workload's
    (mean,) = verdicts(records, _claims_on({"over": "mean"}), ["norm", "w"])
    assert mean.workload == "mean over 3 workloads" and mean.verdict == HOLDS and mean.n == 4
    assert mean.effect == pytest.approx((0.06375 + 0.06375 + 0.005) / 3)


def test_no_reason_contradicts_the_interval_printed_beside_it():
    """Random studies of several claims and workloads: "straddles the margin" only where the interval
    does; an interval wholly beyond the margin is a verdict of holds or a reason that names why not."""
    import random

    rng = random.Random(0)
    for _ in range(60):
        effects = {w: [rng.gauss(rng.choice([0.0, 0.02, 0.05]), 0.02) for _ in range(4)] for w in "abc"}
        claims = _claims_on(*({"margin": rng.choice([0.0, 0.01])} for _ in range(rng.randint(1, 3))))
        for v in verdicts(_over_workloads(effects), claims, ["norm", "w"]):
            beyond = v.ci_low > v.margin
            if v.why == "the 95% interval straddles the margin":
                assert not beyond and v.ci_high > v.margin, v
            if beyond:
                assert v.verdict == HOLDS or "holds here" in v.why or "holds alone" in v.why, v
