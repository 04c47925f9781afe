"""A tuned comparison (``tune:``, harness.tune): each technique tuned with the same budget of
quasi-random configurations, selected on validation only, re-run on fresh seeds; its report's
tuning curves (Dodge et al. 2019)."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from conftest import harness_cli, write_suite
from slurm_cluster import job_active, slurm_cluster, wait_until  # noqa: F401

from harness import search, tune
from harness.errors import ConfigError
from harness.report.tuned import expected_best
from harness.spec import COMPLETED, Record
from harness.store import scan, write_record
from harness.suite import load_suite

TUNED = """
name: tuned
seeds: 2
budget: {epochs: 2}
base:
  dataset: {name: digits, val_size: 200, train_subset: 400}
  model: {name: mlp, depth: 1, width: 32}
  batch_size: 64
grid:
  optimizer: [sgd, adam]
tune: {axis: optimizer, trials: 3, seeds: [1000]}
"""


def _load(tmp_path, text=TUNED, overrides=None):
    return load_suite(write_suite(tmp_path, text), overrides)


def test_every_technique_gets_the_same_budget_of_its_own_space_on_tuning_seeds_only(tmp_path):
    suite = _load(tmp_path)
    by = lambda t: dict(t.axes)["optimizer"]  # noqa: E731
    assert sorted(by(t) for t in suite.trials) == ["adam"] * 3 + ["sgd"] * 3
    assert {t.seed for t in suite.trials} == {1000}  # the final seeds 0 and 1 are not tuned on
    sgd = [t.config["optimizer"] for t in suite.trials if by(t) == "sgd"]
    adam = [t.config["optimizer"] for t in suite.trials if by(t) == "adam"]
    assert all(1e-3 <= o["lr"] <= 1.0 for o in sgd) and all(1e-5 <= o["lr"] <= 0.1 for o in adam)  # their own spaces
    assert all(0.5 <= o["beta1"] <= 0.99 for o in adam) and len({o["lr"] for o in adam}) == 3
    # adding a technique changes no other technique's draws
    more = _load(tmp_path, TUNED.replace("[sgd, adam]", "[sgd, adam, momentum]"))
    assert [t.config for t in more.trials if by(t) != "momentum"] == [t.config for t in suite.trials]


def test_quasi_random_draws_cover_the_space_evenly_and_reproducibly():
    space = search.parse_space({"lr": {"loguniform": [1e-4, 1.0]}, "m": {"log1m": [0.5, 0.999]}})
    for sampler in search.SAMPLERS:
        rows = search.quasi_draw(space, 16, sampler, 7)
        assert rows == search.quasi_draw(space, 16, sampler, 7) and rows != search.quasi_draw(space, 16, sampler, 8)
        decades = np.histogram([math.log10(r["lr"]) for r in rows], bins=4, range=(-4, 0))[0]
        assert decades.tolist() == [4, 4, 4, 4], (sampler, decades)  # one per sixteenth: four in each decade
        assert all(0.5 <= r["m"] <= 0.999 for r in rows)
    # independent draws of the same count do not stratify like that (what the quasi-random sequence buys)
    plain = [np.histogram([math.log10(r["lr"]) for r in search.draw(space, 16, s)], bins=4, range=(-4, 0))[0]
             for s in range(20)]
    assert sum(h.tolist() == [4, 4, 4, 4] for h in plain) < 5


@pytest.mark.parametrize("edit, path", [
    ("tune: {axis: optimizer, trials: 3, seeds: [1]}", "tune.seeds"),  # a final seed tuned on
    ("tune: {axis: optimizer, trials: 3, metric: test_acc}", "tune.metric"),  # selection on test data
    ("tune: {axis: optimizr, trials: 3}", "tune.axis"),
    ("tune: {axis: optimizer, trials: 0}", "tune.trials"),
    ("tune: {axis: optimizer, spaces: {sgdd: {lr: {uniform: [0, 1]}}}}", "tune.spaces.sgdd"),
    ("tune: {axis: optimizer, spaces: {sgd: {lrr: {uniform: [0.1, 1]}}}}", "tune.spaces.optimizer.lrr"),
    ("tune: {axis: optimizer, sampler: grid}", "tune.sampler"),
])
def test_a_malformed_tune_section_is_refused_at_load_with_its_key_path(tmp_path, edit, path):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, TUNED.replace("tune: {axis: optimizer, trials: 3, seeds: [1000]}", edit))
    assert e.value.path.startswith(path), str(e.value)


def test_a_technique_without_a_registered_space_must_be_given_one(tmp_path):
    text = TUNED.replace("[sgd, adam]", "[sgd, {name: lbfgs, max_iter: 2}]")
    with pytest.raises(ConfigError, match="no default search space") as e:
        _load(tmp_path, text)
    assert e.value.path.startswith("tune.spaces.lbfgs")
    ok = _load(tmp_path, text.replace("seeds: [1000]}", "seeds: [1000], spaces: {lbfgs: {}}}"))
    assert sum(dict(t.axes)["optimizer"] == "lbfgs" for t in ok.trials) == 1  # nothing to tune: one configuration


def _planted(spec, val: float, test: float) -> Record:
    final = {"val_acc": val, "test_acc": test, "val_loss": 1 - val, "test_loss": 1 - test, "train_loss": 0.5,
             "train_acc": 0.8}
    return Record(spec.trial_id, spec.suite, spec.seed, COMPLETED, spec.config, dict(spec.axes),
                  history=[{"epoch": 1, **final}], final=final, best={"epoch": 1, **final})


def test_the_configuration_with_the_best_test_score_but_a_worse_validation_score_is_not_selected(tmp_path):
    path = write_suite(tmp_path, TUNED.replace("[sgd, adam]", "[sgd]"))
    suite = load_suite(path)
    results = tmp_path / "r" / "tuned"
    # configuration 0: the best test score of all, the worst on validation; configuration 2: the best on validation
    scores = [(0.70, 0.99), (0.80, 0.60), (0.90, 0.50)]
    for spec, (val, test) in zip(suite.trials, scores):
        write_record(results, _planted(spec, val, test))
    r = harness_cli("run", path, "--results", tmp_path / "r", "--no-report")
    assert r.returncode == 0, r.stderr
    assert "selected configuration 3 of 3 (val_acc 0.9)" in r.stdout
    finals = [rec for rec in scan(results).records.values() if rec.seed in (0, 1)]
    assert len(finals) == 2 and all(rec.config["optimizer"] == suite.trials[2].config["optimizer"] for rec in finals)
    assert all(rec.config["budget"]["stop_after"] is None for rec in finals)


@pytest.mark.slow
def test_a_tuned_study_runs_selects_reports_and_resumes_from_the_command_line(tmp_path):
    path = write_suite(tmp_path, TUNED + "claims:\n  - {id: adam-trains, text: tuned adam learns digits, "
                                         "compare: {optimizer: adam}, metric: test_acc, value: 0.3, expect: greater}\n")
    r = harness_cli("run", path, "--results", tmp_path / "r", "--workers", "2", "--fuse", "auto")
    assert r.returncode == 0, r.stdout + r.stderr
    folder = tmp_path / "r" / "tuned"
    records = list(scan(folder).records.values())
    tuning = [x for x in records if x.seed == 1000]
    finals = [x for x in records if x.seed in (0, 1)]
    assert len(tuning) == 6 and len(finals) == 4  # 2 techniques x 3 configurations, then 2 x 2 final seeds
    for technique in ("sgd", "adam"):  # the final trials train the tuning trial with the best val_acc
        best = max((x for x in tuning if x.axes["optimizer"] == technique), key=lambda x: x.final["val_acc"])
        assert {json.dumps(x.config["optimizer"]) for x in finals if x.axes["optimizer"] == technique} == \
            {json.dumps(best.config["optimizer"])}
    report = (folder / "report" / "report.md").read_text()
    assert "## Tuning" in report and "same budget of 3 configurations" in report
    assert (folder / "report" / "tuning_curves.png").stat().st_size > 0
    table = report.split("## test_acc by optimizer")[1].split("\n\n")[1]
    assert table.count("(n=2)") == 2 and "1000" not in table  # the final trials alone, two seeds each
    verified = harness_cli("verify", folder)
    assert "adam-trains" in verified.stdout and "n=2" in verified.stdout, verified.stdout + verified.stderr
    again = harness_cli("run", path, "--results", tmp_path / "r", "--no-report")
    assert again.returncode == 0 and "running" not in again.stdout and again.stdout.count("; done") == 2
    assert len(scan(folder).records) == 10


def test_halving_within_the_budget_then_the_final_trials_train_the_whole_budget(tmp_path):
    text = TUNED.replace("budget: {epochs: 2}", "budget: {epochs: 3}").replace(
        "seeds: [1000]}", "seeds: [1000], halving: {eta: 3, min_epochs: 1}}").replace("[sgd, adam]", "[adam]")
    path = write_suite(tmp_path, text)
    r = harness_cli("run", path, "--results", tmp_path / "r", "--no-report")
    assert r.returncode == 0, r.stdout + r.stderr
    records = list(scan(tmp_path / "r" / "tuned").records.values())
    rungs = sorted((x.config["budget"]["stop_after"] or 3) for x in records if x.seed == 1000)
    assert rungs == [1, 1, 1, 3]  # three configurations one epoch each, the best of them on to 3
    finals = [x for x in records if x.seed in (0, 1)]
    assert len(finals) == 2 and all(x.config["budget"]["stop_after"] is None and len(x.history) == 3 for x in finals)


def test_expected_best_of_k_is_the_mean_of_the_maximum_over_every_draw_of_k():
    scores = [0.3, 0.9, 0.5, 0.7]
    mean, sd = expected_best(scores, 3)
    for k in (1, 2, 3):  # every ordered draw of k with replacement, equally likely
        best = [max(draw) for draw in itertools.product(scores, repeat=k)]
        assert mean[k - 1] == pytest.approx(np.mean(best)) and sd[k - 1] == pytest.approx(np.std(best))
    low, _ = expected_best(scores, 3, higher=False)  # a loss: the expected least
    assert low[1] == pytest.approx(np.mean([min(d) for d in itertools.product(scores, repeat=2)]))
    assert mean[0] == pytest.approx(np.mean(scores)) and np.all(np.diff(mean) > 0)


def test_final_only_keeps_the_final_seeds_of_a_tuned_study():
    suite = {"search": {"tune": {"final_seeds": [0, 1]}}}
    items = [type("R", (), {"seed": s})() for s in (0, 1000, 1)]
    assert [x.seed for x in tune.final_only(suite, items)] == [0, 1]
    assert tune.final_only({}, items) == items


@pytest.mark.slow
def test_on_slurm_the_final_trials_are_submitted_by_a_job_after_the_tuning_array(slurm_cluster, tmp_path):
    text = TUNED.replace("[sgd, adam]", "[sgd]").replace("seeds: 2", "seeds: 1") + "slurm: {chunk: 3}\n"
    file = write_suite(tmp_path, text)
    r = harness_cli("submit", file, "--results", tmp_path / "res", env=slurm_cluster)
    assert r.returncode == 0 and "sgd: 3 trials to run" in r.stdout and "submits the next stage" in r.stdout, r.stdout
    results = tmp_path / "res" / "tuned"
    wait_until(lambda: any(x.seed == 0 for x in scan(results).records.values()), timeout=240, interval=1,
               what="the final trial's record")
    listed = (results / "slurm" / "jobs.txt").read_text().split()
    wait_until(lambda: not any(job_active(slurm_cluster, j) for j in listed), timeout=60, what="the last follow-up")
    listed = (results / "slurm" / "jobs.txt").read_text().split()
    # the tuning array, its follow-up, the final trials' array and its follow-up, which found nothing to submit
    assert len(listed) == 4, listed
    records = list(scan(results).records.values())
    best = max((x for x in records if x.seed == 1000), key=lambda x: x.final["val_acc"])
    final = [x for x in records if x.seed == 0]
    assert len(records) == 4 and len(final) == 1 and final[0].config["optimizer"] == best.config["optimizer"]
    logs = sorted((results / "slurm" / "logs").glob("next-rung-*.out"))
    assert len(logs) == 2 and "nothing to submit" in logs[-1].read_text()


def test_plan_count_counts_the_tuning_budget_and_the_final_seeds(tmp_path):
    from harness.suite import count_trials

    n, parts = count_trials(write_suite(tmp_path, TUNED))
    assert n == 2 * (3 * 1 + 2) == len(_load(tmp_path).trials) + 2 * 2, parts  # tuning trials, then 2 x 2 final
    assert "3 configurations x 1 tuning seeds + 2 final seeds" in parts
