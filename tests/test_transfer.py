"""Reproductions that transfer: every repro suite whose data is here, rerun at a CI budget on a second dataset its
claims cover (digits <-> MNIST, the MNIST-1D MLP suites on digits, digits MLP suites on MNIST-1D where they fit),
with the same claims. No claim that holds on the committed records (the suite's own dataset, at its budget) may
fail on the other dataset, nor the reverse. A claim that fixes a threshold one dataset gave (the loss at lr 1e-5
falls by "less than 1%") fails here; stated relative to its control (under a tenth of a good rate's drop) it
transfers. A fact that truly depends on the data names its dataset (``where: {dataset.name: digits}``) and is
left out on the other."""
import pytest
import yaml
from conftest import REPO, harness_cli

from harness.claims import FAILS, HOLDS

pytestmark = pytest.mark.slow  # every repro suite's claims rerun on a second dataset

MNIST = {"name": "mnist", "val_size": 1000}
DIGITS = {"name": "digits", "val_size": 300}
MNIST1D = {"name": "mnist1d", "val_size": 500}

# suite -> (the other dataset, CI budget: epochs and seeds, other changes: {top-level key: what to update it with})
TRANSFERS = {
    "learning-rate": ({**MNIST, "train_subset": 10000}, 5, 5, {}),
    "batchnorm": ({**MNIST, "train_subset": 2000}, 3, 3, {"grid": {"optimizer.lr": [0.1, 1.0, 3.0]}}),
    "dropout": ({**MNIST1D, "train_subset": 500}, 20, 3, {}),
    "initial-loss": ({**MNIST, "train_subset": 1000}, 1, 5, {}),
    "overfit-tiny": ({**MNIST1D, "train_subset": 20}, 150, 3, {}),
    "init-depth": (MNIST1D, 3, 3, {}),
    "lbfgs": (MNIST1D, 5, 3, {}),
    "ema": (DIGITS, 20, 3, {}),
    "ensemble": (DIGITS, 10, 3, {}),
    "schedules": (DIGITS, 30, 3, {}),
    "time-to-target": (DIGITS, 15, 3, {}),
}


def transferred(name: str, dataset: dict, epochs: int, seeds: int, changes: dict) -> dict:
    """The repro suite ``name`` with only its dataset swapped (and the budget cut), its claims as they are, less
    those that name the dataset they are a fact of."""
    raw = yaml.safe_load((REPO / "suites" / "repro" / f"{name}.yaml").read_text())
    raw["base"]["dataset"] = dataset
    raw["budget"]["epochs"], raw["seeds"] = epochs, seeds
    for key, value in changes.items():
        raw[key].update(value)
    raw["claims"] = [c for c in raw["claims"] if "dataset.name" not in (c.get("where") or {})]
    return raw


def committed(name: str) -> dict[str, str]:
    """Each claim's verdict on the committed records of the suite (its own dataset)."""
    from harness.report.claims import verify

    (checked,) = verify([str(REPO / "suites" / "repro" / f"{name}.yaml")], str(REPO / "results" / "repro"))
    assert checked.trials == checked.planned, f"{name}: the committed records do not cover its plan"
    return checked.overall


def test_every_repro_suite_whose_data_is_here_is_transferred_unless_each_claim_names_its_dataset():
    for path in sorted((REPO / "suites" / "repro").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        if raw["base"]["dataset"]["name"].startswith("cifar"):  # the CIFAR files are not on this machine
            continue
        general = [c["id"] for c in raw["claims"] if "dataset.name" not in (c.get("where") or {})]
        assert (path.stem in TRANSFERS) == bool(general), (path.stem, general)


@pytest.fixture(scope="module")
def run(tmp_path_factory, request):
    """Runs a suite's transfer once per module: the folder of its records and the suite as run."""
    done: dict = {}

    def run(name: str) -> tuple:
        if name not in done:
            dataset, epochs, seeds, changes = TRANSFERS[name]
            extra = []
            if dataset["name"] == "mnist":  # skips where the MNIST files are not
                extra = ["--data-root", request.getfixturevalue("mnist_root")]
            folder = tmp_path_factory.mktemp(name)
            raw = transferred(name, dataset, epochs, seeds, changes)
            (folder / "suite.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
            # one thread: on a 2-core machine shared with other jobs, two spinning threads made trials 10x slower
            r = harness_cli("run", folder / "suite.yaml", "--results", folder / "r", "--no-report", "--workers", "1",
                            *extra, env={"OMP_NUM_THREADS": "1"})
            assert r.returncode in (0, 1), r.stderr[-2000:]  # 1: trials diverged, as some suites mean them to
            done[name] = folder / "r", raw
        return done[name]

    return run


@pytest.mark.parametrize("name", list(TRANSFERS))
def test_no_claim_that_holds_on_one_dataset_fails_on_the_other(run, name):
    from harness.report.claims import verify

    results, raw = run(name)
    (other,) = verify([str(results / raw["name"])], str(results))
    own = committed(name)
    both = {c: (own[c], v) for c, v in other.overall.items()}
    contradicted = {c: pair for c, pair in both.items() if set(pair) == {HOLDS, FAILS}}
    assert not contradicted, f"{name} on {raw['base']['dataset']['name']} (own dataset, other): {both}"
    assert set(other.overall) == {c["id"] for c in raw["claims"]}


def test_a_threshold_fitted_to_digits_fails_on_mnist_where_the_relative_claim_does_not(run, tmp_path):
    """The claim this file was written for: "at lr 1e-5 the training loss falls by less than 1% in 5 epochs" held
    on digits and fails on MNIST (the loss falls ~6% there); stated against lr 0.1 it does not fail. Judged on
    the records of the transfer run above (a trial's id does not depend on the claims)."""
    from harness.report.claims import verify

    results, raw = run("learning-rate")
    (relative,) = [c for c in raw["claims"] if c["id"] == "far-too-low-lr-barely-moves"]
    absolute = {k: v for k, v in relative.items() if k not in ("against", "scale")}
    suite = tmp_path / "lr.yaml"
    suite.write_text(yaml.safe_dump({**raw, "claims": [relative, {**absolute, "id": "absolute", "value": 0.01}]}))
    (checked,) = verify([str(suite)], str(results))
    assert checked.trials == checked.planned
    assert checked.overall["absolute"] == FAILS and checked.overall["far-too-low-lr-barely-moves"] != FAILS
