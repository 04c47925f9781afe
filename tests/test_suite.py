"""Suite loading: expansion, overrides, exclusion, trial ids; and malformed suites."""
import json

import pytest

from conftest import REPO, harness_cli, load_shipped, write_suite
from harness.cli import main
from harness.errors import ConfigError
from harness.spec import TrialSpec, trial_id_of
from harness.suite import load_suite, resolve_trial

GRID = """
name: g
seeds: 3
budget: {epochs: 2}
base:
  optimizer: {name: sgd, lr: 0.1}
grid:
  optimizer: [{name: sgd, lr: 0.1}, {name: adam, lr: 0.001}, {name: adam, lr: 0.01}]
  norm: [none, batchnorm]
"""


def test_grid_is_a_cross_product_times_seeds(tmp_path):
    suite = load_suite(write_suite(tmp_path, GRID))
    assert len(suite.trials) == 3 * 2 * 3
    assert suite.axes == ("optimizer", "norm")
    labels = {dict(t.axes)["optimizer"] for t in suite.trials}
    assert labels == {"sgd", "adam(lr=0.001)", "adam(lr=0.01)"}  # same name: the params tell them apart
    t = suite.trials[0].config
    assert t["optimizer"] == {"name": "sgd", "lr": 0.1, "weight_decay": 0.0}  # defaults filled in
    assert t["budget"] == {"epochs": 2, "max_steps": None, "stop_after": None}
    assert t["dataset"]["name"] == "digits"


def test_trial_ids_are_stable_and_distinguish_configs_and_seeds(tmp_path):
    a = load_suite(write_suite(tmp_path, GRID))
    b = load_suite(write_suite(tmp_path, GRID, "again.yaml"))
    assert [t.trial_id for t in a.trials] == [t.trial_id for t in b.trials]
    assert len({t.trial_id for t in a.trials}) == len(a.trials)
    config = a.trials[0].config
    assert trial_id_of(config, 0) != trial_id_of(config, 1)
    # Where the data lives is not part of the trial.
    moved = json.loads(json.dumps(config))
    moved["dataset"]["root"] = "/elsewhere"  # digits has no root, but identity ignores it anyway
    assert trial_id_of(moved, 0) == trial_id_of(config, 0)
    spec = a.trials[0]
    assert TrialSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_dotted_axes_zip_and_exclude(tmp_path):
    suite = load_suite(write_suite(tmp_path, """
        name: z
        base: {optimizer: adam}
        grid:
          optimizer.lr: [0.001, 0.01]
          norm: [none, batchnorm]
        zip:
          model.width: [16, 32]
          batch_size: [32, 64]
        exclude:
          - {norm: batchnorm, optimizer.lr: 0.01}
          - {model.width: 32, norm: none, optimizer: {name: adam, lr: 0.001}}
    """))
    combos = {(c["optimizer"]["lr"], c["norm"]["name"], c["model"]["width"], c["batch_size"])
              for c in (t.config for t in suite.trials)}
    assert combos == {
        (0.001, "none", 16, 32), (0.01, "none", 16, 32), (0.01, "none", 32, 64),
        (0.001, "batchnorm", 16, 32), (0.001, "batchnorm", 32, 64),
    }
    assert suite.trials[0].config["optimizer"]["name"] == "adam"


def test_overrides_set_dotted_keys_before_validation(tmp_path):
    path = write_suite(tmp_path, GRID)
    suite = load_suite(path, ["seeds=1", "base.batch_size=7", "grid.norm=[none]", "budget.epochs=4"])
    assert len(suite.trials) == 3
    assert {t.config["batch_size"] for t in suite.trials} == {7}
    assert {t.config["budget"]["epochs"] for t in suite.trials} == {4}


def test_seed_list_and_report_settings(tmp_path):
    suite = load_suite(write_suite(tmp_path, """
        name: s
        seeds: [3, 7]
        grid: {optimizer: [sgd, adam]}
        report: {compare: optimizer, metric: val_acc, baseline: optimizer=sgd}
    """))
    assert sorted({t.seed for t in suite.trials}) == [3, 7]
    assert suite.report == {"compare": ["optimizer"], "metric": "val_acc", "baseline": "optimizer=sgd"}


MALFORMED = [
    ("unknown top-level key", "name: x\ngird: {optimizer: [sgd]}\n", "gird", "did you mean 'grid'"),
    ("unknown trial key", "name: x\nbase: {optimiser: sgd}\n", "base.optimiser", "did you mean 'optimizer'"),
    ("unknown component, near miss", "name: x\nbase: {optimizer: nesterv}\n", "base.optimizer.name", "did you mean 'nesterov'"),
    ("unknown parameter", "name: x\nbase: {optimizer: {name: sgd, lr: 0.1, momentun: 0.9}}\n", "base.optimizer.momentun", "unknown key"),
    ("wrong type", "name: x\nbase: {batch_size: big}\n", "base.batch_size", "expected an integer"),
    ("float for int", "name: x\nbudget: {epochs: 2.5}\n", "base.budget.epochs", "expected an integer"),
    ("negative lr", "name: x\nbase: {optimizer: {name: sgd, lr: -0.1}}\n", "base.optimizer.lr", "must be > 0"),
    ("negative lr in the grid", "name: x\ngrid: {optimizer: [sgd, {name: adam, lr: -1}]}\n", "grid.optimizer[1].lr", "must be > 0"),
    ("empty grid", "name: x\ngrid: {}\n", "grid", "empty"),
    ("empty axis", "name: x\ngrid: {optimizer: []}\n", "grid.optimizer", "empty list"),
    ("axis not a list", "name: x\ngrid: {optimizer: sgd}\n", "grid.optimizer", "expected a list"),
    ("YAML syntax error", "name: x\nbase: {optimizer: [sgd\n", "line", "YAML syntax error"),
    ("missing name", "seeds: 2\n", "name", "missing"),
    ("bad name", "name: a/b\n", "name", "letters, digits"),
    ("zero seeds", "name: x\nseeds: 0\n", "seeds", ">= 1"),
    ("duplicate seeds", "name: x\nseeds: [1, 1]\n", "seeds", "twice"),
    ("dropout p out of range", "name: x\nbase: {regularizers: [{name: dropout, p: 1.5}]}\n", "base.regularizers[0].p", "must be < 1"),
    ("impossible combination", "name: x\nbase: {norm: batchnorm, batch_size: 1}\n", "base.norm", "batch_size >= 2"),
    ("validation split too large", "name: x\nbase: {dataset: {name: digits, val_size: 1500}}\n", "base.dataset", "leaves no training data"),
    ("image model on 1-D data", "name: x\nbase: {dataset: mnist1d, model: resnet}\n", "base.model", "needs image inputs"),
    ("model too big for the images", "name: x\nbase: {model: cnn_3c3d}\n", "base.model", "at least 9x9"),
    ("image technique on 1-D data", "name: x\nbase: {dataset: mnist1d, regularizers: [cutout]}\n", "base.regularizers", "transforms images"),
    ("groups that do not divide", "name: x\ngrid: {norm: [{name: groupnorm, groups: 5}]}\n", "grid.norm[0]", "do not divide the 256"),
    ("sam around a line search", "name: x\nbase: {optimizer: lbfgs, regularizers: [sam]}\n", "base.regularizers", "plain steps"),
    ("two averages", "name: x\nbase: {regularizers: [ema, swa]}\n", "base.regularizers", "use one"),
    ("unequal zip", "name: x\nzip: {batch_size: [1, 2], model.width: [3]}\n", "zip", "same length"),
    ("exclude removes all", "name: x\ngrid: {norm: [none]}\nexclude: [{norm: none}]\n", "exclude", "remove all"),
    ("report on a missing axis", "name: x\ngrid: {norm: [none]}\nreport: {compare: optimizer}\n", "report.compare[0]", "not an axis"),
    ("not a mapping", "- just\n- a list\n", "", "a suite is a mapping"),
    ("bad override path", None, "override", "unknown suite key"),
]


@pytest.mark.parametrize("what,text,path,message", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_suite_gives_one_line_with_file_and_key_path_and_exit_2(tmp_path, capsys, what, text, path, message):
    suite = write_suite(tmp_path, text or "name: ok\n")
    args = ["plan", str(suite)] + (["bsae.batch_size=3"] if text is None else [])
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"harness: error: {suite}: {path}"), err
    assert message in err
    assert "Traceback" not in err


def test_missing_dataset_files_are_bad_input_before_any_trial(tmp_path):
    suite = write_suite(tmp_path, "name: m\nbase: {dataset: {name: mnist}}\n")
    empty = tmp_path / "nodata"
    r = harness_cli("run", suite, "--results", tmp_path / "res", "--data-root", empty)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert str(suite) in lines[0] and "dataset" in lines[0]
    assert str(empty / "MNIST" / "raw" / "train-images-idx3-ubyte") in lines[0]
    assert "HARNESS_DATA_ROOT" in lines[0]
    assert not (tmp_path / "res" / "m" / "trials").exists()


def test_bad_usage_exits_2(tmp_path):
    r = harness_cli("run", tmp_path / "absent.yaml")
    assert r.returncode == 2 and "cannot read suite" in r.stderr and "Traceback" not in r.stderr
    assert harness_cli("frobnicate").returncode == 2
    assert harness_cli("run", "suites/smoke.yaml", "--workers", "0").returncode == 2


def test_config_error_message_format():
    e = ConfigError("base.optimizer.lr", "must be > 0, got -1.0").in_file("s.yaml")
    assert str(e) == "s.yaml: base.optimizer.lr: must be > 0, got -1.0"


@pytest.mark.parametrize("path", sorted((REPO / "suites").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_suite_loads_and_documents_itself(path):
    suite = load_shipped(path)
    assert suite.trials and suite.description
    assert path.read_text().startswith("#") or path.stem in ("smoke", "mnist-optimizers")


def test_dropout_on_a_model_without_hidden_dense_layers_is_rejected():
    with pytest.raises(ConfigError, match="has none"):
        resolve_trial({"model": "resnet", "regularizers": ["dropout"]}, "base")
