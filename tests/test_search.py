"""Search in suites: random draws (reproducible, within their distributions), successive halving and
Hyperband (the brackets of Li et al. 2017, promotion by a validation metric, stopped trials recorded,
promoted ones resuming their run's checkpoint to the record an uninterrupted run writes), on the
local pool and on the real local SLURM cluster, and `harness refine`."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import yaml
from conftest import harness_cli, write_suite
from slurm_cluster import job_active, slurm_cluster, wait_until  # noqa: F401

from harness import search
from harness.cli import main
from harness.engine import run_trial
from harness.errors import ConfigError
from harness.spec import COMPLETED, STOPPED, Record, TrialSpec
from harness.store import scan
from harness.suite import load_suite

RANDOM = """
name: rs
seeds: 1
budget: {epochs: 2}
base:
  dataset: {name: digits, val_size: 200, train_subset: 300}
  model: {name: mlp, depth: 1, width: 16}
  optimizer: {name: momentum, lr: 0.01}
  batch_size: 50
random:
  n: 6
  space:
    optimizer.lr: {loguniform: [1.0e-3, 1.0]}
    optimizer.momentum: {uniform: [0.5, 0.95]}
    model.width: {int: [8, 12]}
    model.activation: [relu, tanh]
"""


def _values(suite, key):
    return [dict(t.axes)[key] for t in suite.trials]


def test_random_draws_are_reproducible_and_within_their_distributions(tmp_path):
    path = write_suite(tmp_path, RANDOM)
    a, b = load_suite(path), load_suite(path)
    assert [t.trial_id for t in a.trials] == [t.trial_id for t in b.trials] and len(a.trials) == 6
    other = load_suite(path, ["random.seed=1"])
    assert {t.trial_id for t in other.trials}.isdisjoint({t.trial_id for t in a.trials})
    for t in a.trials:  # the drawn values are the configs' values
        c = t.config
        assert 1e-3 <= c["optimizer"]["lr"] <= 1 and 0.5 <= c["optimizer"]["momentum"] <= 0.95
        assert c["model"]["width"] in range(8, 13) and c["model"]["activation"]["name"] in ("relu", "tanh")
        assert dict(t.axes)["optimizer.lr"] == c["optimizer"]["lr"]
    # the distributions themselves, on many draws
    space = search.parse_space({"lr": {"loguniform": [1e-4, 1.0]}, "x": {"uniform": [2, 4]}, "k": {"int": [1, 3]},
                                "w": {"logint": [1, 100]}, "c": ["a", "b", "c"]})
    rows = search.draw(space, 4000, 0)
    logs = np.log10([r["lr"] for r in rows])
    assert abs(np.mean(logs < -2) - 0.5) < 0.03 and abs(np.mean(logs < -3) - 0.25) < 0.03  # uniform in log10
    xs = np.array([r["x"] for r in rows])
    assert xs.min() >= 2 and xs.max() <= 4 and abs(np.mean(xs < 3) - 0.5) < 0.03
    assert sorted({r["k"] for r in rows}) == [1, 2, 3]  # both ends included
    ws = np.array([r["w"] for r in rows])
    assert ws.min() >= 1 and ws.max() <= 100 and abs(np.mean(ws < 10) - 0.5) < 0.05
    assert {r["c"] for r in rows} == {"a", "b", "c"}


@pytest.mark.parametrize("override, path, words", [
    ("random.space={optimizer.lr: {loguniform: [0, 1]}}", "random.space.optimizer.lr.loguniform", "low > 0"),
    ("random.space={optimizer.lr: {normal: [0, 1]}}", "random.space.optimizer.lr", "unknown distribution"),
    ("random.space={optimizer.lr: {uniform: [1, 0.1]}}", "random.space.optimizer.lr.uniform", "below high"),
    ("random.space={optimizer.lrr: {uniform: [0.1, 1]}}", "random.space.optimizer.lrr", "did you mean 'lr'"),
    ("random.space={optimiser.lr: {uniform: [0.1, 1]}}", "random.space.optimiser.lr", "not a trial setting"),
    ("random.n=null", "random.n", "missing"),
    ("halving={metric: test_acc}", "halving.metric", "never a test metric"),
    ("halving={method: hyperband}", "random.n", "hyperband sets"),
    ("halving={min_epochs: 3}", "halving.min_epochs", "from 1 to budget.epochs"),
])
def test_a_bad_search_section_names_the_file_and_key(tmp_path, override, path, words):
    file = write_suite(tmp_path, RANDOM)
    with pytest.raises(ConfigError) as e:
        load_suite(file, [override])
    assert e.value.path == path and words in e.value.message and e.value.file == str(file), str(e.value)


def test_hyperband_brackets_are_those_of_li_et_al():
    # Li et al. 2017, Table 1 (R = 81, eta = 3): (n_i, r_i) of each bracket's rungs
    brackets = search.hyperband_brackets(81, 1, 3)
    assert [b.s for b in brackets] == [4, 3, 2, 1, 0]
    assert [b.keep for b in brackets] == [(81, 27, 9, 3, 1), (34, 11, 3, 1), (15, 5, 1), (8, 2), (5,)]
    assert [b.rungs for b in brackets] == [(1, 3, 9, 27, 81), (3, 9, 27, 81), (9, 27, 81), (27, 81), (81,)]
    assert search.halving_bracket(8, 4, 1, 2) == search.Bracket(2, (1, 2, 4), (8, 4, 2))


def _record(spec: TrialSpec, status: str, val: float | None, test: float) -> Record:
    return Record(spec.trial_id, spec.suite, spec.seed, status, spec.config, dict(spec.axes),
                  final={"val_acc": val, "test_acc": test})


def test_promotion_ranks_by_the_validation_metric_over_seeds_and_puts_failures_last(tmp_path):
    suite = load_suite(write_suite(tmp_path, RANDOM), ["halving={eta: 2}", "seeds=2"])
    (bracket,) = suite.search["brackets"]
    assert bracket["rungs"] == [1, 2] and bracket["keep"] == [6, 3] and len(bracket["configs"]) == 6
    trials = {t.trial_id: t for t in suite.trials}
    assert all(t.config["budget"]["stop_after"] == 1 for t in trials.values())
    records: dict[str, Record] = {}
    step = search.progress(suite.search, trials, records.get)
    assert [t.trial_id for t in step.todo] == [t.trial_id for t in suite.trials]  # rung 0: everything
    # val_acc by configuration (two seeds each); test_acc ranks the other way, and must not count
    vals = [(0.5, 0.6), (0.9, 0.1), (0.8, 0.8), (0.95, None), (0.7, 0.7), (0.2, 0.3)]
    for c, ids in enumerate(bracket["configs"]):
        for seed, tid in enumerate(ids):
            v = vals[c][seed]
            status = STOPPED if v is not None else "diverged"
            records[tid] = _record(trials[tid], status, v, 1 - (v or 0))
    step = search.progress(suite.search, trials, records.get)
    # means: 0.55, 0.5, 0.8, diverged, 0.7, 0.25 → configurations 2, 4, 0 go on to 2 epochs
    promoted = {(t.config["optimizer"]["lr"], t.seed) for t in step.todo}
    expected = {(trials[bracket["configs"][c][0]].config["optimizer"]["lr"], s) for c in (2, 4, 0) for s in (0, 1)}
    assert promoted == expected and len(step.todo) == 6
    assert all(t.config["budget"]["stop_after"] is None for t in step.todo)  # the last rung is the whole run
    assert all(t.run_id == t.trial_id for t in step.todo)
    assert {t.run_id for t in step.todo} == {trials[tid].run_id for c in (2, 4, 0) for tid in bracket["configs"][c]}
    assert len(step.dropped) == 6
    for t in step.todo:
        records[t.trial_id] = _record(t, COMPLETED, 0.9, 0.9)
    done = search.progress(suite.search, trials, records.get)
    assert not done.todo and "done" in done.lines[0] and len(done.trials) == 18


HALVING = """
name: sha
seeds: 1
budget: {epochs: 2}
base:
  dataset: {name: digits, val_size: 200, train_subset: 300}
  model: {name: mlp, depth: 1, width: 16}
  optimizer: {name: sgd, lr: 0.1}
  batch_size: 50
  schedule: cosine
random:
  n: 4
  seed: 3
  space:
    optimizer.lr: {loguniform: [1.0e-3, 1.0]}
halving: {eta: 2}
slurm: {chunk: 4}
"""


def test_successive_halving_runs_rungs_and_promoted_trials_resume_to_the_uninterrupted_record(tmp_path, capsys):
    file = write_suite(tmp_path, HALVING)
    assert main(["run", str(file), "--results", str(tmp_path / "res"), "--no-report"]) == 0
    results = tmp_path / "res" / "sha"
    records = scan(results).records
    stopped = [r for r in records.values() if r.status == STOPPED]
    completed = [r for r in records.values() if r.status == COMPLETED]
    assert len(stopped) == 4 and len(completed) == 2, {r.trial_id: (r.status, r.reason) for r in records.values()}
    for r in stopped:  # rung 0: stopped after one epoch of the two-epoch run, with that epoch's metrics
        assert [h["epoch"] for h in r.history] == [1] and r.final["epoch"] == 1 and "stop_after" in r.reason
    # the two best by val_acc after one epoch were promoted
    best = sorted(stopped, key=lambda r: -r.final["val_acc"])[:2]
    assert {r.config["optimizer"]["lr"] for r in completed} == {r.config["optimizer"]["lr"] for r in best}
    assert not list((results / "checkpoints").glob("*.pt"))  # dropped runs' checkpoints are removed
    suite = load_suite(file)
    for r in completed:
        assert r.diagnostics["resumed_at_step"]  # it went on from its rung's checkpoint ...
        spec = TrialSpec.make("sha", r.config, r.seed, r.axes)
        fresh = run_trial(spec, threads=1)  # as the sweep ran it; ... and ends as the same run trained without a stop would
        strip = lambda h: [{k: v for k, v in e.items() if not k.endswith("_time")} for e in h]  # noqa: E731
        assert strip(r.history) == strip(fresh.history) and r.steps == fresh.steps
    assert len(suite.trials) == 4
    plan_ids = {t["trial_id"] for t in yaml.safe_load((results / "plan.json").read_text())["trials"]}
    assert plan_ids == set(records)  # the plan (what the report covers) holds every rung
    capsys.readouterr()
    assert main(["run", str(file), "--results", str(tmp_path / "res"), "--no-report"]) == 0  # nothing left to run
    said = capsys.readouterr().out
    assert "running" not in said and "bracket s=1: done" in said, said


def test_refine_narrows_the_space_around_the_best_configurations(tmp_path):
    results = tmp_path / "rs"
    (results / "trials").mkdir(parents=True)
    suite = load_suite(write_suite(tmp_path, RANDOM))
    from harness.store import write_plan, write_record

    write_plan(results, suite.to_dict(), suite.trials)
    lrs = sorted(t.config["optimizer"]["lr"] for t in suite.trials)
    for t in suite.trials:  # the higher the lr, the better: the best three are the top three lrs
        lr = t.config["optimizer"]["lr"]
        write_record(results, _record(t, COMPLETED, 0.5 + lr / 4, 0.5))
    assert main(["refine", str(results), "--top", "3", "--widen", "0"]) == 0
    refined = yaml.safe_load((results / "refined.yaml").read_text())
    lo, hi = refined["random"]["space"]["optimizer.lr"]["loguniform"]
    assert math.isclose(lo, lrs[-3], rel_tol=1e-3) and math.isclose(hi, lrs[-1], rel_tol=1e-3)
    assert refined["random"]["seed"] == 1 and refined["name"] == "rs-refined"
    best_acts = {t.config["model"]["activation"]["name"] for t in suite.trials if t.config["optimizer"]["lr"] >= lrs[-3]}
    assert refined["random"]["space"]["model.activation"] == {"choice": sorted(best_acts, key=["relu", "tanh"].index)}
    new = load_suite(results / "refined.yaml")  # a valid suite whose draws lie in the new ranges
    assert all(lo <= t.config["optimizer"]["lr"] <= hi for t in new.trials)
    grid_only = harness_cli("refine", tmp_path / "nothing")
    assert grid_only.returncode == 2 and "no trials/ folder" in grid_only.stderr
    with pytest.raises(SystemExit) as bad:  # a negative pad would turn a range inside out
        main(["refine", str(results), "--widen", "-0.5"])
    assert bad.value.code == 2


@pytest.mark.slow
def test_halving_on_slurm_chains_one_array_per_rung(slurm_cluster, tmp_path):
    file = write_suite(tmp_path, HALVING)
    r = harness_cli("submit", file, "--results", tmp_path / "res", env=slurm_cluster)
    assert r.returncode == 0, r.stderr
    jobs = re.findall(r"^(?:submitted sha: )?job (\d+)", r.stdout, re.M)
    assert "1 array tasks" in r.stdout and "submits the next rung" in r.stdout, r.stdout
    results = tmp_path / "res" / "sha"

    def finished() -> bool:
        found = scan(results).records.values()
        return sum(x.status == COMPLETED for x in found) == 2
    wait_until(finished, timeout=240, interval=1, what="the second rung's records")
    listed = (results / "slurm" / "jobs.txt").read_text().split()
    # rung 0's array, its follow-up, rung 1's array and its follow-up, which found nothing to submit
    wait_until(lambda: not any(job_active(slurm_cluster, j) for j in listed), timeout=60, what="the last follow-up")
    listed = (results / "slurm" / "jobs.txt").read_text().split()
    assert listed[:2] == jobs and len(listed) == 4, (listed, r.stdout)
    records = scan(results).records.values()
    assert sorted(x.status for x in records) == [COMPLETED] * 2 + [STOPPED] * 4
    assert all(x.diagnostics.get("resumed_at_step") for x in records if x.status == COMPLETED)
    logs = sorted((results / "slurm" / "logs").glob("next-rung-*.out"))
    assert len(logs) == 2 and "nothing to submit" in logs[-1].read_text()
