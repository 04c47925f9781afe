"""The command line end to end, in real processes: run, rerun, status, report, list, workers,
a crashing worker, a diverging trial, and resuming after the runner is killed."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, TINY, harness_cli, write_suite


def _records(folder):
    return sorted((folder / "trials").glob("*.json"))


@pytest.mark.slow
def test_run_then_rerun_runs_nothing_new(tmp_path):
    suite = write_suite(tmp_path, TINY)
    res = tmp_path / "res"
    r = harness_cli("run", suite, "--results", res)
    assert r.returncode == 0, r.stderr
    folder = res / "tiny"
    assert len(_records(folder)) == 4
    assert f"results: {folder}" in r.stdout and "report:" in r.stdout
    assert "[4/4] done" in r.stderr and "ETA" in r.stderr  # progress with done/total and ETA
    report = (folder / "report" / "report.md").read_text()
    assert "| optimizer |" in report and "(n=2)" in report
    assert (folder / "report" / "curves_optimizer.png").stat().st_size > 10_000
    mtimes = [p.stat().st_mtime_ns for p in _records(folder)]

    again = harness_cli("run", suite, "--results", res)
    assert again.returncode == 0
    assert "nothing to run: all 4 trials" in again.stdout
    assert [p.stat().st_mtime_ns for p in _records(folder)] == mtimes

    status = harness_cli("status", folder)
    assert status.returncode == 0 and "completed   4" in status.stdout


@pytest.mark.slow
def test_unreadable_record_is_run_again(tmp_path):
    suite = write_suite(tmp_path, TINY)
    res = tmp_path / "res"
    assert harness_cli("run", suite, "--results", res, "--no-report").returncode == 0
    victim = _records(res / "tiny")[0]
    victim.write_text("{not json")
    assert "unreadable" in harness_cli("status", res / "tiny").stdout
    r = harness_cli("run", suite, "--results", res, "--no-report")
    assert r.returncode == 0
    assert f"unreadable or edited record {victim}" in r.stderr and "running the other 1" in r.stdout
    assert json.loads(victim.read_text())["status"] == "completed"


CRASH_PLUGIN = '''
import os, signal
from harness.models import MODELS

@MODELS.register("crash")
def crash(ctx, *, width: int = 8):
    """A model whose construction kills its own process, as a segfault would."""
    os.kill(os.getpid(), signal.SIGKILL)
'''


@pytest.mark.slow
def test_a_crashing_worker_does_not_take_the_pool_down(tmp_path):
    plugin = tmp_path / "crash_plugin.py"
    plugin.write_text(CRASH_PLUGIN)
    suite = write_suite(tmp_path, TINY.replace("seeds: 2", "seeds: 2\n") + "  model: [{name: mlp, depth: 1, width: 32}, crash]\n")
    res = tmp_path / "res"
    r = harness_cli("run", suite, "--results", res, "--workers", "2", "--plugin", plugin)
    assert r.returncode == 1, r.stderr
    records = [json.loads(p.read_text()) for p in _records(res / "tiny")]
    assert len(records) == 8
    crashed = [x for x in records if x["axes"]["model"] == "crash"]
    assert len(crashed) == 4 and all(x["status"] == "failed" for x in crashed)
    assert all("worker process died (exit code -9)" in x["reason"] for x in crashed)
    assert all(x["status"] == "completed" for x in records if x["axes"]["model"] == "mlp")
    assert "4 trials did not complete" in r.stdout
    report = (res / "tiny" / "report" / "report.md").read_text()
    assert "Trials that did not complete" in report and "worker process died" in report


@pytest.mark.slow
def test_diverged_trial_is_recorded_and_the_sweep_goes_on(tmp_path):
    suite = write_suite(tmp_path, TINY.replace("{name: adam, lr: 0.003}", "{name: sgd, lr: 1.0e+6}"))
    res = tmp_path / "res"
    r = harness_cli("run", suite, "--results", res, "seeds=1")
    assert r.returncode == 1
    by_lr = {json.loads(p.read_text())["config"]["optimizer"]["lr"]: json.loads(p.read_text()) for p in _records(res / "tiny")}
    assert by_lr[0.1]["status"] == "completed"
    assert by_lr[1e6]["status"] == "diverged" and by_lr[1e6]["diverged_step"] is not None
    # Diverged is a final outcome: a rerun does not repeat it.
    assert "nothing to run" in harness_cli("run", suite, "--results", res, "seeds=1").stdout


def _kill_midway(tmp_path, workers):
    suite = write_suite(tmp_path, TINY.replace("seeds: 2", "seeds: 6").replace("epochs: 2", "epochs: 6"))
    res = tmp_path / "res"
    folder = res / "tiny"
    cmd = [sys.executable, "-m", "harness", "run", str(suite), "--results", str(res), "--workers", str(workers)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(_records(folder)) < 3 if folder.exists() else time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(1.0)  # any orphaned worker would write within this time
    before = len(_records(folder))
    assert 3 <= before < 12, before
    time.sleep(1.0)
    assert len(_records(folder)) == before, "a worker outlived the runner"
    r = harness_cli("run", suite, "--results", res, "--workers", str(workers))
    assert r.returncode == 0, r.stderr
    assert f"{before} of 12 trials already have records; running the other {12 - before}" in r.stdout
    records = [json.loads(p.read_text()) for p in _records(folder)]
    assert len(records) == 12 and len({x["trial_id"] for x in records}) == 12
    assert all(x["status"] == "completed" for x in records)
    assert not [p for p in (folder / "trials").iterdir() if not p.name.endswith(".json")]


@pytest.mark.slow
def test_sigkill_of_the_runner_then_rerun_finishes_exactly_the_missing_trials(tmp_path):
    _kill_midway(tmp_path, workers=1)


@pytest.mark.slow
def test_sigkill_of_a_pool_runner_leaves_no_orphans_and_resumes(tmp_path):
    _kill_midway(tmp_path, workers=2)


@pytest.mark.slow
def test_list_shows_components_with_parameters():
    r = harness_cli("list")
    assert r.returncode == 0
    for text in ("optimizers:", "nesterov", "momentum: float (>0,<1) = 0.9", "datasets:", "digits", "mnist",
                 "regularizers:", "dropout", "p: float (>=0,<1) = 0.5"):
        assert text in r.stdout, text
    only = harness_cli("list", "schedules")
    assert "cosine" in only.stdout and "optimizers:" not in only.stdout
    assert harness_cli("list", "optimisers").returncode == 2


def test_every_command_that_reads_a_suite_takes_the_same_suite_options(tmp_path, capsys, monkeypatch):
    """plan refused --data-root and took an undocumented --workers; now run, plan, submit, baseline and
    compare share one set, and run --fuse auto says what fusing made of the sweep (it printed nothing)."""
    from harness.arguments import parser
    from harness.cli import main

    commands = parser()._subparsers._group_actions[0].choices
    def options(name):
        return {s for a in commands[name]._actions for s in a.option_strings} | {
            a.dest for a in commands[name]._actions if not a.option_strings}
    shared = {"suite", "overrides", "--plugin", "--max-trials", "--fuse", "--data-root"}
    for name in ("run", "plan", "submit", "baseline", "compare"):
        assert shared <= options(name), (name, shared - options(name))
    assert {"--workers", "--workers-per-gpu"} <= options("run") & options("compare") & options("baseline")
    assert "--workers" in options("plan") and "--plugin" in options("verify")
    monkeypatch.setenv("HARNESS_DATA_ROOT", str(tmp_path))  # --data-root sets it: put back after the test
    suite = write_suite(tmp_path, TINY)
    assert main(["plan", str(suite), "--data-root", str(tmp_path), "--fuse", "auto", "--workers", "2"]) == 0
    assert "its 2 compatible trials are spread over 2 workers" in capsys.readouterr().out
    assert main(["run", str(suite), "budget.epochs=1", "--fuse", "auto", "--results", str(tmp_path / "r"),
                 "--no-report", "--data-root", str(tmp_path)]) == 0
    assert "fuse: auto: 4 trials in 2 packs, 0 alone" in capsys.readouterr().out


def _run_on_a_pty(tmp_path, columns):
    """``harness run`` with stderr on a pseudo-terminal of ``columns`` columns; what the terminal showed."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", write_suite(tmp_path, TINY), "budget.epochs=1",
                             "--results", tmp_path / f"r{columns}", "--no-report"], cwd=REPO, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=slave, env={**env, "TERM": "xterm"})
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed its side
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert proc.wait(timeout=120) == 0
    return shown.decode("utf-8", "replace")


@pytest.mark.slow
def test_a_pseudo_terminal_with_no_width_gets_a_line_per_trial(tmp_path):
    """It reported 0 columns, and nothing at all was printed for the whole sweep (no bar, no lines)."""
    narrow = _run_on_a_pty(tmp_path, 0)
    assert "[0/4] start" in narrow and "[4/4] done" in narrow, narrow
    wide = _run_on_a_pty(tmp_path, 100)
    assert "4/4" in wide and "[0/4] start" not in wide, wide  # the live bar
