"""Every suite the harness ships, through every command a user gives it (issue 27: `harness submit
suites/smoke.yaml` crashed in the chunk estimate, and no test submitted a suite with BatchNorm).

Each suite under ``suites/`` and ``suites/repro/`` is planned and rendered as an array job (``plan``,
``submit --dry-run``, each also with ``--fuse auto``), then run at the smallest budget (one seed, one epoch;
MNIST and CIFAR on slices) with ``--fuse auto``, reported in every format, verified where it states claims,
made a baseline and compared against with a technique swapped in. The commands run in this process
(``harness.cli.main``), so that the pass costs the trials, not 26 x 5 interpreter starts; the data are the
real MNIST files and CIFAR-10 batches in torchvision's format (small, made here: tests/fakedata.py). What
every command must give: its documented exit code and no traceback.
"""
from __future__ import annotations

import re
from pathlib import Path

import fakedata
import pytest
from conftest import REPO, load_shipped, plugin_args

from harness.cli import main

SUITES = sorted((REPO / "suites").glob("*.yaml")) + sorted((REPO / "suites" / "repro").glob("*.yaml"))
EXIT_OK, EXIT_TRIALS = 0, 1


@pytest.fixture(scope="module")
def data_root(mnist_root):
    """The real MNIST files, and CIFAR-10 python batches of 60 images each beside them."""
    fakedata.write_cifar10(mnist_root, per_batch=60, n_test=60)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_DATA_ROOT", str(mnist_root))
        yield mnist_root


@pytest.fixture
def harness(capsys):
    """``harness ARGS`` in this process: (exit code, stdout, stderr); a traceback fails the test as it is."""
    def run(*args) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def _smallest(path: Path) -> list[str]:
    """Overrides that run the suite at the smallest budget its commands still take every path of."""
    suite = load_shipped(path)
    dataset = suite.trials[0].config["dataset"]["name"]
    extra = {"mnist": ["base.dataset.train_subset=600", "base.dataset.val_size=100"],
             "cifar10": ["base.dataset.val_size=60", "base.dataset.checksum=false"],  # files made here
             "text": ["base.dataset.max_bytes=40000"]}.get(dataset, [])
    if suite.search and suite.search.get("tune"):  # two configurations per technique: a selection to make
        return ["seeds=1", "budget.epochs=1", "tune.trials=2", "tune.seeds=[1000]", *extra]
    if suite.search and suite.search.get("halving"):
        return ["budget.epochs=3"]  # hyperband's brackets over 1 and 3 epochs, a promotion included
    return ["seeds=1", "budget.epochs=1", *extra]


def _ok(result, *codes: int) -> str:
    code, out, err = result
    assert code in (codes or (EXIT_OK,)), f"exit {code}\n{out[-2000:]}\n{err[-2000:]}"
    return out


@pytest.mark.slow
@pytest.mark.parametrize("path", SUITES, ids=lambda p: str(p.relative_to(REPO / "suites")))
def test_every_shipped_suite_plans_and_renders_its_array_job(path, data_root, harness, tmp_path):
    """``plan`` and ``submit --dry-run``, fused or not, on the suite as shipped: the chunk estimate counts
    the model's FLOPs whatever its normalization (BatchNorm crashed it) and never stops a submission."""
    name, plugins = load_shipped(path).name, plugin_args(path)
    for fuse in ([], ["--fuse", "auto"]):
        planned = _ok(harness("plan", path, *fuse, *plugins))
        assert planned.startswith(f"{name}: ") and "trial_id" in planned
        script = _ok(harness("submit", path, "--dry-run", "--results", tmp_path, *fuse, *plugins))
        assert re.search(r"^#SBATCH --array=\S+", script, re.M), script
        assert f"-m harness worker {tmp_path.resolve() / name / 'plans'}" in script
        assert "--chunk " in script and "{{" not in script


@pytest.mark.slow
@pytest.mark.parametrize("path", SUITES, ids=lambda p: str(p.relative_to(REPO / "suites")))
def test_every_shipped_suite_runs_fused_reports_verifies_and_compares(path, data_root, harness, tmp_path):
    suite, plugins = load_shipped(path), plugin_args(path)
    small = [*_smallest(path), *plugins]
    results, folder = tmp_path / "r", tmp_path / "r" / suite.name
    # exit 1 where a trial of the suite diverges by design (a far too high learning rate) or was not promoted
    _ok(harness("run", path, *small, "--results", results, "--fuse", "auto", "--no-report"), EXIT_OK, EXIT_TRIALS)
    reported = _ok(harness("report", folder, "--format", "md,html,latex,csv"))
    for kind in ("report.md", "report.html", "report.tex"):
        assert kind in reported and (folder / "report" / kind).stat().st_size > 0
    if suite.claims:
        said = _ok(harness("verify", folder, *plugins), EXIT_OK, EXIT_TRIALS)  # one seed: inconclusive, never a traceback
        assert said.startswith(f"{suite.name}  (") and all(c["id"] in said for c in suite.claims)
    # the same records as a baseline (nothing to train again), then a technique swapped in against it
    _ok(harness("baseline", path, *small, "--results", results, "--fuse", "auto"), EXIT_OK, EXIT_TRIALS)
    assert (folder / "provenance.json").exists()
    # a new optimizer, where the suite does not tie the optimizer's own keys to other axes (zip, a search space)
    raw = suite.to_dict()["raw"]
    tied = "optimizer" in (raw.get("zip") or {}) or any(k.startswith("optimizer.") for k in
                                                         (raw.get("random") or {}).get("space", {}))
    swap = "schedule=constant" if tied else "optimizer={name: adam, lr: 0.001}"
    compared = _ok(harness("compare", path, *small, "--technique", swap, "--baselines", results,
                           "--results", tmp_path / "c", "--fuse", "auto"), EXIT_OK, EXIT_TRIALS)
    assert re.search(r"\d+ comparisons on \S+ \(margin 0\)", compared), compared
