"""Regression verdicts (harness regress / baseline / compare): the verdict rules on hand-made records,
a deliberately broken technique caught as `worse` on a small real suite, an unchanged one as
`no difference`, one seed as `inconclusive`, the committed baseline judged by `harness compare`,
and bad input (exit 2) that says what did not match."""
from __future__ import annotations

import json
import shutil

import pytest
from conftest import REPO, harness_cli, write_suite

from harness.cli import main
from harness.regress import BETTER, INCONCLUSIVE, SAME, WORSE, check_provenance, regress
from harness.spec import COMPLETED, DIVERGED, Record, trial_id_of

COMMITTED = REPO / "results" / "baselines" / "regress"
CONFIG = {"dataset": {"name": "digits"}, "model": {"name": "mlp"}, "optimizer": {"name": "sgd", "lr": 0.1}}


def _records(values, config=CONFIG, status=COMPLETED, metric="test_acc"):
    return [Record(f"t{seed}", "s", seed, status, config, {"optimizer": config["optimizer"]["name"]},
                   final={metric: v} if status == COMPLETED else {}) for seed, v in enumerate(values)]


def _one(candidate, baseline, **kw):
    keys, verdicts = regress(candidate, baseline, **kw)
    assert len(verdicts) == 1
    return verdicts[0]


BASE = [0.90, 0.92, 0.91, 0.93, 0.90]


def test_verdicts_follow_the_interval_of_the_gain():
    assert _one(_records(BASE), _records(BASE)).verdict == SAME  # identical: the interval is [0, 0]
    worse = _one(_records([v - 0.05 + 0.001 * i for i, v in enumerate(BASE)]), _records(BASE))
    assert worse.verdict == WORSE and worse.test == "paired t" and worse.ci_high < 0
    assert _one(_records([v + 0.03 for v in BASE]), _records(BASE)).verdict == BETTER
    noisy = [v + d for v, d in zip(BASE, [0.004, -0.006, 0.002, -0.001, 0.0])]  # a neutral change
    assert _one(_records(noisy), _records(BASE)).verdict == INCONCLUSIVE  # no margin: cannot claim equality
    assert _one(_records(noisy), _records(BASE), margin=0.02).verdict == SAME  # not worse by more than 0.02
    small_loss = [v - 0.004 for v in BASE]
    assert _one(_records(small_loss), _records(BASE), margin=0.01).verdict == SAME  # worse, but within δ
    assert _one(_records(small_loss), _records(BASE), margin=0.001).verdict == WORSE


def test_one_seed_is_inconclusive_not_a_guess():
    v = _one(_records([0.5]), _records(BASE))
    assert v.verdict == INCONCLUSIVE and "too few seeds" in v.why and v.test is None


def test_seeds_that_differ_use_welch_and_diverged_seeds_are_worse():
    shifted = _records(BASE)
    for r in shifted:
        r.seed += 10
    assert _one(shifted, _records(BASE)).test == "Welch t"
    diverged = _records(BASE[:3]) + _records([0, 0], status=DIVERGED)
    v = _one(diverged, _records(BASE))
    assert v.verdict == WORSE and "2 of 5 seeds diverged or failed" in v.why


def test_a_loss_is_better_when_lower():
    loss = [0.3, 0.31, 0.29, 0.3, 0.32]
    assert _one(_records([v - 0.05 for v in loss], metric="test_loss"), _records(loss, metric="test_loss"),
                metric="test_loss").verdict == BETTER


def test_the_changed_key_is_inferred_and_each_baseline_technique_compared():
    lion = {**CONFIG, "optimizer": {"name": "lion", "lr": 1e-4}}
    adam = {**CONFIG, "optimizer": {"name": "adam", "lr": 1e-3}}
    keys, verdicts = regress(_records(BASE, lion), _records(BASE) + _records(BASE, adam))
    assert keys == ["optimizer"]
    assert sorted((v.candidate, v.baseline) for v in verdicts) == [("lion", "adam"), ("lion", "sgd")]


@pytest.mark.parametrize("key, other", [("dataset", {"name": "mnist1d"}), ("model", {"name": "cnn_2c2d"}),
                                        ("budget", {"epochs": 20})])
def test_a_candidate_on_another_workload_is_refused_with_the_keys_that_differ(key, other):
    """A candidate on MNIST-1D against a digits baseline was judged with the dataset as "the technique", exit 0
    (issue 29.5): workload keys are never the technique, inferred or given."""
    from harness.errors import UsageError

    moved = {**CONFIG, key: other}
    with pytest.raises(UsageError, match=f"differ in their workload \\({key}: "):
        regress(_records(BASE, moved), _records(BASE))
    with pytest.raises(UsageError, match="workload"):
        regress(_records(BASE, moved), _records(BASE), technique=[key])


# --- end to end on a real suite ------------------------------------------------------------------

# A technique as its maintainer ships it, and the same technique with a bug: the update's sign is
# wrong on every other step (so the broken optimizer walks back most of its progress).
MYSGD = '''
import torch
from typing import Annotated
from harness.components import OPTIMIZERS
from harness.registry import Range


class MySGD(torch.optim.SGD):
    broken = {broken}

    def step(self, closure=None):
        self.calls = getattr(self, "calls", 0) + 1
        if self.broken and self.calls % 2 == 0:
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad.neg_()
        return super().step(closure)


@OPTIMIZERS.register("mysgd")
def mysgd(params, *, lr: Annotated[float, Range(gt=0)] = 0.05):
    """Plain SGD, as a plugin."""
    return MySGD(params, lr=lr)
'''

SUITE = """
name: mine
seeds: 5
budget: {epochs: 4}
base:
  dataset: {name: digits, val_size: 300}
  model: {name: mlp, depth: 1, width: 32}
  optimizer: {name: mysgd, lr: 0.05}
  batch_size: 32
"""


@pytest.fixture(scope="module")
def maintained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("maintained")
    for name, broken in (("good", False), ("broken", True)):
        (tmp / f"{name}.py").write_text(MYSGD.replace("{broken}", str(broken)))
    suite = write_suite(tmp, SUITE)
    r = harness_cli("baseline", suite, "--results", tmp / "baselines", "--plugin", tmp / "good.py")
    assert r.returncode == 0, r.stderr
    return tmp, suite


def _candidate(tmp, suite, plugin, *overrides):
    folder = tmp / (plugin + "".join(overrides))
    r = harness_cli("run", suite, "--results", folder, "--no-report", "--plugin", tmp / f"{plugin}.py", *overrides)
    assert r.returncode == 0, r.stderr
    return folder / "mine"


@pytest.mark.slow
def test_a_broken_technique_is_worse_and_exits_1(maintained):
    tmp, suite = maintained
    r = harness_cli("regress", _candidate(tmp, suite, "broken"), "--baseline", tmp / "baselines" / "mine",
                    "--margin", "0.01")
    assert r.returncode == 1, r.stdout + r.stderr
    assert " worse " in r.stdout and "paired t" in r.stdout and "5 vs 5" in r.stdout
    md = (tmp / "broken" / "mine" / "regress.md").read_text()
    assert "| worse |" in md and "harness baseline" in md  # provenance of the baseline


@pytest.mark.slow
def test_an_unchanged_technique_is_no_difference_and_one_seed_inconclusive(maintained):
    tmp, suite = maintained
    r = harness_cli("regress", _candidate(tmp, suite, "good"), "--baseline", tmp / "baselines" / "mine")
    assert r.returncode == 0 and "no difference" in r.stdout, r.stdout + r.stderr
    one = _candidate(tmp, suite, "broken", "seeds=[0]")  # even the broken one: one seed decides nothing
    r = harness_cli("regress", one, "--baseline", tmp / "baselines" / "mine")
    assert r.returncode == 0 and "inconclusive" in r.stdout and "too few seeds" in r.stdout, r.stdout + r.stderr


@pytest.mark.slow
def test_compare_runs_only_the_new_technique_against_the_committed_baseline(tmp_path):
    assert check_provenance(COMMITTED)["suite"] == "regress"  # committed, unedited
    r = harness_cli("compare", REPO / "suites" / "regress.yaml", "--plugin", REPO / "examples" / "plugins" / "lion.py",
                    "--technique", "optimizer={name: lion_example, lr: 1.0e-3}", "--results", tmp_path, "budget.epochs=8")
    assert r.returncode in (0, 1), r.stderr
    folder = next((tmp_path / "compare" / "regress").iterdir())
    assert folder.name.startswith("optimizer=lion_example-")
    assert len(list((folder / "trials").glob("*.json"))) == 5  # one per seed, not one per baseline optimizer
    rows = [line.split()[:4] for line in r.stdout.splitlines() if line.startswith("digits/mlp")]
    assert sorted(row[2] for row in rows) == ["adam", "momentum", "sgd"] and {row[1] for row in rows} == {"lion_example"}
    assert all(row[3] in ("better", "worse", "inconclusive", "no") for row in rows), rows
    assert (r.returncode == 1) == any(row[3] == "worse" for row in rows)


# --- bad input -------------------------------------------------------------------------------------

def test_bad_input_exits_2_and_says_what_did_not_match(tmp_path, capsys):
    base = tmp_path / "base"
    shutil.copytree(COMMITTED, base)
    assert main(["regress", str(base), "--baseline", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["regress", str(base), "--baseline", str(base), "--metric", "f1"]) == 2
    assert "no metric 'f1'" in capsys.readouterr().err
    other = tmp_path / "other"
    shutil.copytree(COMMITTED, other)
    for path in (other / "trials").glob("*.json"):  # the same trials on a wider model: other trials, other ids
        record = json.loads(path.read_text())
        record["config"]["model"]["width"] = 65
        record["trial_id"] = trial_id_of(record["config"], record["seed"])
        path.unlink()
        (path.parent / f"{record['trial_id']}.json").write_text(json.dumps(record))
    assert main(["regress", str(other), "--baseline", str(base), "--technique", "optimizer"]) == 2
    err = capsys.readouterr().err
    assert "no baseline trials match" in err and "model (mlp(width=65) vs mlp(width=64))" in err, err
    edited = next((base / "trials").glob("*.json"))
    edited.write_text(edited.read_text().replace('"test_acc": 0.', '"test_acc": 1.', 1))
    assert main(["regress", str(other), "--baseline", str(base)]) == 2
    assert "edited by hand?" in capsys.readouterr().err


NOISE = '''
import pytorch_optimizer  # a third-party package the plugin imports: its version goes into the records
import torch
from harness.api import REGULARIZERS, Parts


@REGULARIZERS.register("input_noise")
def input_noise(ctx, *, std: float = 0.1):
    """Gaussian noise on the inputs."""
    def batch(x, y, rng):
        noise = torch.randn(x.shape, generator=rng.device, device=x.device)
        return x + STRENGTH * std * noise, y

    return Parts(batch=batch)
'''


@pytest.mark.slow
def test_regress_names_a_code_change_between_candidate_and_baseline(tmp_path):
    """Same-spec twins where the candidate's plugin had changed (its noise never added) came out 'better',
    exit 0, and regress.md did not say the code differed."""
    plugin = tmp_path / "noise.py"
    plugin.write_text("STRENGTH = 1.0\n" + NOISE)
    suite = write_suite(tmp_path, """
name: noisy
seeds: 2
budget: {epochs: 1}
base:
  dataset: {name: digits, val_size: 200, train_subset: 300}
  model: {name: mlp, depth: 1, width: 16}
  regularizers: [{name: input_noise, std: 0.5}]
  batch_size: 50
""")
    r = harness_cli("baseline", suite, "--plugin", plugin, "--results", tmp_path / "base")
    assert r.returncode == 0, r.stderr
    plugin.write_text("STRENGTH = 0.0\n" + NOISE)  # the noise is gone: another regularizer under the same name
    r = harness_cli("run", suite, "--plugin", plugin, "--results", tmp_path / "cand", "--no-report")
    assert r.returncode == 0, r.stderr
    record = json.loads(next((tmp_path / "cand" / "noisy" / "trials").glob("*.json")).read_text())
    import pytorch_optimizer  # noqa: F401
    from importlib import metadata

    (described,) = record["environment"]["plugins"]
    assert described["packages"]["pytorch_optimizer"] == metadata.version("pytorch_optimizer")
    out = harness_cli("regress", tmp_path / "cand" / "noisy", "--baseline", tmp_path / "base" / "noisy",
                      "--margin", "1")
    assert out.returncode in (0, 1), out.stderr
    assert "plugin noise.py" in out.stdout and " → " in out.stdout, out.stdout
    md = (tmp_path / "cand" / "noisy" / "regress.md").read_text()
    assert "**The code differs** between candidate and baseline in 1 of 1 comparisons" in md
    assert "plugin noise.py" in md.split("**The code differs**")[1]


def test_labels_keep_the_parameters_that_tell_candidate_and_baseline_apart():
    """Both sides of a regularizer comparison read [gauss_noise] when only their strengths differed."""
    def noise(std):
        return {**CONFIG, "regularizers": [{"name": "gauss_noise", "std": std}, {"name": "dropout", "p": 0.1}]}

    v = _one(_records([0.91, 0.93, 0.92], noise(0.3)), _records([0.90, 0.92, 0.91], noise(0.1)))
    assert v.candidate == "[gauss_noise(std=0.3), dropout]" and v.baseline == "[gauss_noise(std=0.1), dropout]"
