"""Seeds until decided (``seeds: {min, max, step}``, harness.sequential): claims judged after each round,
more seeds only for the claims still open, the level spent over the looks so that repeated looks do not
inflate the false "holds" rate."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import harness_cli, write_suite

from harness import claims as cl
from harness import sequential
from harness.errors import ConfigError
from harness.spec import COMPLETED, Record, TrialSpec
from harness.store import scan
from harness.suite import load_suite

SEQ = """
name: seq
seeds: {min: 2, max: 6, step: 2}
budget: {epochs: 3}
base:
  dataset: {name: digits, val_size: 200, train_subset: 400}
  model: {name: mlp, depth: 1, width: 32}
  batch_size: 64
grid:
  optimizer: [{name: sgd, lr: 0.001}, {name: adam, lr: 0.01}, {name: momentum, lr: 0.05}]
claims:
  - {id: adam-beats-slow-sgd, text: adam beats a far too slow sgd, compare: {optimizer: adam},
     against: {optimizer: sgd}, metric: test_acc, expect: greater}
  - {id: momentum-matches-adam, text: momentum is within 0.001 of adam, compare: {optimizer: momentum},
     against: {optimizer: adam}, metric: test_acc, expect: equal, margin: 0.001}
"""


def test_the_levels_of_the_looks_sum_to_alpha_and_obrien_fleming_spends_little_early():
    info = sequential.parse_seeds({"min": 3, "max": 9, "step": 3}, 100)
    assert sequential.looks(info) == [3, 6, 9]
    spent = sequential.levels(info, 0.025)
    assert sum(spent) == pytest.approx(0.025) and spent[0] < 1e-3 < spent[1] < spent[2]
    pocock = sequential.levels({**info, "spending": "pocock"}, 0.025)
    assert sum(pocock) == pytest.approx(0.025) and pocock[0] > spent[0]
    assert sequential.looks({"min": 3, "max": 10, "step": 3}) == [3, 6, 9, 10]


@pytest.mark.parametrize("seeds, path", [("{min: 1, max: 5}", "seeds.min"), ("{min: 3, max: 3}", "seeds.max"),
                                         ("{min: 3, max: 6, spending: bonferoni}", "seeds.spending"),
                                         ("{min: 3, max: 6, every: 2}", "seeds.every")])
def test_a_malformed_sequential_seeds_section_is_refused_with_its_key_path(tmp_path, seeds, path):
    with pytest.raises(ConfigError) as e:
        load_suite(write_suite(tmp_path, SEQ.replace("{min: 2, max: 6, step: 2}", seeds)))
    assert e.value.path == path, str(e.value)


def test_sequential_seeds_need_claims_to_decide(tmp_path):
    with pytest.raises(ConfigError, match="it states none"):
        load_suite(write_suite(tmp_path, SEQ.split("claims:")[0]))


def _study(rng: np.random.Generator, n_max: int, effect: float) -> dict[int, tuple[float, float]]:
    """Per seed, (treatment, control) test accuracies with a true difference ``effect``."""
    return {s: (0.8 + effect + rng.normal(0, 0.02), 0.8 + rng.normal(0, 0.02)) for s in range(n_max)}


def _records(study: dict[int, tuple[float, float]]) -> list[Record]:
    out = []
    for seed, values in study.items():
        for name, v in zip(("adam", "sgd"), values):
            config = {"optimizer": {"name": name}}
            t = TrialSpec.make("sim", config, seed, {"optimizer": name})
            out.append(Record(t.trial_id, "sim", seed, COMPLETED, config, {"optimizer": name}, final={"test_acc": v}))
    return out


CLAIM = cl.parse_claims([{"id": "c", "text": "adam beats sgd", "compare": {"optimizer": "adam"},
                          "against": {"optimizer": "sgd"}, "metric": "test_acc", "expect": "greater"}],
                        ["optimizer"], [{"optimizer": {"name": "adam"}}, {"optimizer": {"name": "sgd"}}])


def _sequential_verdict(study: dict[int, tuple[float, float]], info: dict) -> tuple[str, int]:
    """The harness's own walk over the looks on these per-seed values: (verdict, seeds it took)."""
    records = {r.trial_id: r for r in _records(study)}
    trials = {i: TrialSpec.make("sim", r.config, r.seed, r.axes) for i, r in records.items()}
    configs = [[i for i, t in trials.items() if t.seed < info["min"] and t.config == c]
               for c in ({"optimizer": {"name": "adam"}}, {"optimizer": {"name": "sgd"}})]
    w = sequential.walk({**info, "configs": [sorted(ids, key=lambda i: trials[i].seed) for ids in configs]},
                        CLAIM, ["optimizer"], trials, records.get)
    rows, look = w.decided["c"]
    return cl.overall(rows)["c"], sequential.looks(info)[look]


@pytest.mark.slow
def test_under_a_true_null_repeated_looks_hold_no_more_often_than_the_level_and_uncorrected_peeking_does():
    """2,000 simulated sequential studies with no true effect (the boundary of the claim's null): the spent
    level keeps the rate of "holds" at or below 0.025; testing every look at 0.025 exceeds it."""
    info = sequential.parse_seeds({"min": 3, "max": 12, "step": 3}, 100)
    rng = np.random.default_rng(0)
    spent, peeking, n = 0, 0, 2000
    for _ in range(n):
        study = _study(rng, 12, 0.0)
        spent += _sequential_verdict(study, info)[0] == cl.HOLDS
        peeking += any(cl.overall(cl.verdicts(_records({s: v for s, v in study.items() if s < k}), CLAIM,
                                              ["optimizer"]))["c"] == cl.HOLDS for k in sequential.looks(info))
    se = (0.025 * 0.975 / n) ** 0.5
    assert spent / n <= 0.025 + 2 * se, spent / n
    assert peeking / n > 0.025 + 3 * se, peeking / n  # the inflation the spending prevents


def test_a_real_effect_is_decided_early_and_a_weak_one_takes_more_seeds():
    info = sequential.parse_seeds({"min": 3, "max": 12, "step": 3}, 100)
    rng = np.random.default_rng(1)
    assert _sequential_verdict(_study(rng, 12, 0.2), info) == (cl.HOLDS, 6)  # too few seeds at the first look's level
    taken = [_sequential_verdict(_study(rng, 12, 0.025), info) for _ in range(20)]
    assert sum(v == cl.HOLDS for v, _ in taken) >= 10 and max(n for _, n in taken) == 12


@pytest.mark.slow
def test_a_sequential_suite_adds_seeds_only_to_the_open_claims_configurations_and_says_what_each_took(tmp_path):
    path = write_suite(tmp_path, SEQ)
    r = harness_cli("run", path, "--results", tmp_path / "r", "--workers", "2", "--no-report")
    assert r.returncode in (0, 1), r.stdout + r.stderr
    assert "look 2 of 3 (4 seeds" in r.stdout and "every claim decided" in r.stdout
    records = list(scan(tmp_path / "r" / "seq").records.values())
    seeds = {name: sorted(x.seed for x in records if x.config["optimizer"]["name"] == name)
             for name in ("sgd", "adam", "momentum")}
    assert seeds["adam"] == list(range(6)) and seeds["momentum"] == list(range(6))  # the equality claim stayed open
    assert seeds["sgd"] == list(range(4))  # adam-beats-slow-sgd held at the second look: sgd needs no more
    v = harness_cli("verify", tmp_path / "r" / "seq")
    lines = {line.split()[1]: line for line in v.stdout.splitlines()[1:]}
    assert lines["adam-beats-slow-sgd"].startswith("  holds") and "[look 2 of 3: 4 seeds" in lines["adam-beats-slow-sgd"]
    assert "n=4 vs 4" in lines["adam-beats-slow-sgd"] and "[look 3 of 3: 6 seeds" in lines["momentum-matches-adam"]
    again = harness_cli("run", path, "--results", tmp_path / "r", "--no-report")  # resumes: nothing more to run
    assert "running" not in again.stdout and len(scan(tmp_path / "r" / "seq").records) == len(records)
