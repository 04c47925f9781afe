"""Records are believed only when they are what their names say (issue 29, items 2, 3, 10 and 13), and no
write goes through a link planted among them (item 8).

A record whose ``trial_id`` is not the hash of its own config and seed (configs swapped between two files by
hand) is reported as edited, left out of ``collect``, ``report`` and ``verify``, and run again; a record saved
under another trial's file name never stands for that trial; axes come from the plan, not from the record; a
FIFO, a device or a huge file named ``*.json`` among the records hangs nothing; a record's ``suite`` never
names a folder outside the results root."""
import json
import os
import shutil

import pytest
from conftest import TINY, harness_cli, write_suite

from harness.report import collect
from harness.spec import COMPLETED
from harness.store import scan
from harness.store.records import MAX_RECORD_BYTES


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """TINY (2 optimizers x 2 seeds, 2 epochs) run once; each test works on a copy of its results folder."""
    folder = tmp_path_factory.mktemp("tiny")
    r = harness_cli("run", write_suite(folder, TINY), "--results", folder / "r", "--no-report")
    assert r.returncode == 0, r.stderr
    return folder


@pytest.fixture
def results(finished, tmp_path):
    shutil.copytree(finished / "r" / "tiny", tmp_path / "r" / "tiny")
    shutil.copy(finished / "suite.yaml", tmp_path / "suite.yaml")
    return tmp_path / "r" / "tiny"


def _records(results):
    return {p.stem: json.loads(p.read_text()) for p in sorted((results / "trials").glob("*.json"))}


def _two_optimizers(results):
    """Paths of an sgd record and an adam record of the same seed."""
    by = {(r["config"]["optimizer"]["name"], r["seed"]): tid for tid, r in _records(results).items()}
    return results / "trials" / f"{by['sgd', 0]}.json", results / "trials" / f"{by['adam', 0]}.json"


@pytest.mark.slow
def test_records_with_swapped_configs_are_reported_left_out_and_run_again(results):
    sgd, adam = _two_optimizers(results)
    a, b = json.loads(sgd.read_text()), json.loads(adam.read_text())
    a["config"], b["config"], a["axes"], b["axes"] = b["config"], a["config"], b["axes"], a["axes"]
    sgd.write_text(json.dumps(a))
    adam.write_text(json.dumps(b))
    found = scan(results)
    assert set(found.corrupt) == {sgd, adam} and len(found.records) == 2
    assert all("edited" in why for why in found.corrupt.values())
    c = collect(results)
    assert len(c.runs) == 2 and set(c.corrupt) == {str(sgd), str(adam)}
    out = harness_cli("collect", results)
    assert out.returncode == 0 and out.stderr.count("edited") == 2, out.stderr
    again = harness_cli("run", results.parent.parent / "suite.yaml", "--results", results.parent, "--no-report")
    assert again.returncode == 0 and "running the other 2" in again.stdout, again.stdout + again.stderr
    assert again.stderr.count("unreadable or edited record") == 2
    fixed = scan(results)
    assert not fixed.corrupt and len(fixed.records) == 4
    assert fixed.records[sgd.stem].config["optimizer"]["name"] == "sgd"


@pytest.mark.slow
def test_a_record_under_another_trials_name_is_run_again(results):
    """Each rerun printed 'running that trial again', then the other trial's record in 0.0 s, exit 1 forever."""
    sgd, adam = _two_optimizers(results)
    shutil.copy(sgd, adam)
    first = harness_cli("run", results.parent.parent / "suite.yaml", "--results", results.parent, "--no-report")
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"{adam}" in first.stderr and "running the other 1" in first.stdout
    record = json.loads(adam.read_text())
    assert record["trial_id"] == adam.stem and record["config"]["optimizer"]["name"] == "adam"
    assert record["status"] == COMPLETED and record["timing"]["train_s"] > 0
    second = harness_cli("run", results.parent.parent / "suite.yaml", "--results", results.parent, "--no-report")
    assert second.returncode == 0 and "nothing to run" in second.stdout


def test_axes_come_from_the_plan_not_from_the_record(results):
    """Axes are not part of a trial's id; a record whose axes were swapped still sits in its own row."""
    sgd, adam = _two_optimizers(results)
    a, b = json.loads(sgd.read_text()), json.loads(adam.read_text())
    a["axes"], b["axes"] = b["axes"], a["axes"]
    sgd.write_text(json.dumps(a))
    adam.write_text(json.dumps(b))
    runs = collect(results).runs.set_index("trial_id")
    assert "sgd" in str(runs.loc[sgd.stem, "optimizer"]) and "adam" in str(runs.loc[adam.stem, "optimizer"])


def test_files_planted_under_a_records_name_hang_nothing(results):
    """``status``, ``collect`` and ``run`` read regular files of a record's size only: a FIFO named ``*.json``
    hung ``status``; a link to /dev/zero read until memory ran out."""
    trials = results / "trials"
    os.mkfifo(trials / "fifo.json")
    (trials / "zero.json").symlink_to("/dev/zero")
    with open(trials / "huge.json", "wb") as f:
        f.truncate(MAX_RECORD_BYTES + 1)  # sparse: no disk used
    (trials / "folder.json").mkdir()
    status = harness_cli("status", results, timeout=60)
    assert status.returncode == 0, status.stderr
    for name in ("fifo", "zero", "huge", "folder"):
        assert f"{name}.json" in status.stdout, status.stdout
    assert "unreadable  4" in status.stdout and "not a regular file" in status.stdout, status.stdout
    assert len(scan(results).records) == 4
    again = harness_cli("run", results.parent.parent / "suite.yaml", "--results", results.parent, "--no-report",
                        timeout=120)
    assert again.returncode == 0 and "nothing to run" in again.stdout, again.stdout + again.stderr


def test_a_records_suite_name_never_names_a_folder_outside_the_results(results, tmp_path):
    """``diagnose RECORD`` wrote under RESULTS/<the record's suite>; a suite of ``../../x`` left the results root."""
    sgd, _ = _two_optimizers(results)
    record = json.loads(sgd.read_text())
    record["suite"] = "../../escaped"
    sgd.write_text(json.dumps(record))
    out = harness_cli("diagnose", sgd, "--results", tmp_path / "diag", "--steps", "5")
    assert out.returncode == 2 and "not a trial record" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path.parent / "escaped").exists() and not (tmp_path / "escaped").exists()
    assert sgd in scan(results).corrupt


def _plant(path, victim):
    """A symlink at ``path`` (a file the harness writes) pointing at ``victim`` outside the results folder."""
    path.unlink(missing_ok=True)
    path.symlink_to(victim)


def test_no_write_goes_through_a_symlink_planted_in_a_results_folder(results, tmp_path, capsys):
    """Figures, CSV tables, the runs table, lr-find's and optimizer-checks' figures, lock files and the
    job list were written through a link, overwriting its target elsewhere (issue 29, item 8)."""
    from harness.cli import main
    from harness.layout import lock_path

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    assert main(["report", str(results), "--format", "md,csv"]) == 0
    written = sorted(p for p in (results / "report").iterdir() if p.suffix in (".png", ".csv"))
    assert any(p.suffix == ".png" for p in written) and any(p.suffix == ".csv" for p in written)
    for path in written:
        _plant(path, victim)
    runs = tmp_path / "runs.csv"
    _plant(runs, victim)
    assert main(["report", str(results), "--format", "md,csv"]) == 0
    assert main(["collect", str(results), "--out", str(runs)]) == 0
    assert victim.read_text() == "precious\n"
    for path in [*written, runs]:
        assert not path.is_symlink() and path.stat().st_size > 0, path

    out = tmp_path / "checks"
    out.mkdir()
    _plant(out / "quadratic.png", victim)
    assert main(["optimizer-checks", "--optimizer", "sgd", "--problem", "quadratic", "--out", str(out)]) in (0, 1)
    lrf = tmp_path / "lrf"
    assert main(["lr-find", str(tmp_path / "suite.yaml"), "--steps", "20", "--out", str(lrf)]) == 0
    for png in lrf.glob("*.png"):
        _plant(png, victim)
    assert main(["lr-find", str(tmp_path / "suite.yaml"), "--steps", "20", "--out", str(lrf)]) == 0
    assert victim.read_text() == "precious\n"
    assert not (out / "quadratic.png").is_symlink() and not any(p.is_symlink() for p in lrf.iterdir())

    trial = next(iter(_records(results)))
    (results / "trials" / f"{trial}.json").unlink()  # to be run again, through its lock file
    _plant(lock_path(results, trial), victim)
    capsys.readouterr()
    assert main(["run", str(tmp_path / "suite.yaml"), "--results", str(results.parent), "--no-report"]) == 2
    assert "a symbolic link where the harness keeps its own file" in capsys.readouterr().err
    assert victim.read_text() == "precious\n"
