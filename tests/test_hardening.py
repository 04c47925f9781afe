"""Hardening (the hardening issue): a results folder with records of the wrong shape, a full, read-only or
misplaced results folder, the settings reference and counting trials. Each bad input is one
``harness: error:`` line and exit 2, or a record left out by path and reason; no record is lost or
half-written. (Hostile suites, SLURM values and bad options: tests/test_trust.py.)"""
import copy
import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO, harness_cli, write_suite
from test_trust import _refused

from harness.spec import COMPLETED, Record
from harness.store import scan

# Six trials of about a second each: long enough for a disk to fill between two of them.
SIX = """
name: six
seeds: 3
budget: {epochs: 3}
base:
  dataset: {name: digits, val_size: 200, train_subset: 400}
  model: {name: mlp, depth: 1, width: 32}
  batch_size: 32
grid:
  optimizer: [{name: sgd, lr: 0.1}, {name: adam, lr: 0.003}]
"""


@pytest.fixture
def cli(capsys):
    """``harness ARGS`` in this process: (exit code, stderr); its stdout is left in ``cli.out``."""
    from harness.cli import main

    def run(*args):
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        run.out = captured.out
        return code, captured.err

    return run


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The six trials run once, undisturbed: ``RESULTS/six`` (tests copy it before they change it)."""
    root = tmp_path_factory.mktemp("reference")
    suite = write_suite(root, SIX)
    r = harness_cli("run", suite, "--results", root / "results", "--no-report")
    assert r.returncode == 0, r.stderr
    return root / "results" / "six"


def _finals(results: Path) -> dict[str, dict]:
    found = scan(results)
    assert not found.corrupt, found.corrupt
    return {tid: r.final for tid, r in found.records.items()}


# --- records of the wrong shape -----------------------------------------------------------------

def _drop_id(d):
    del d["trial_id"]
    return d


def _set(**fields):
    return lambda d: {**d, **fields}


SHAPES = [
    ("a list", lambda d: [1, 2], "the record: expected a mapping, got a list"),
    ("a number", lambda d: 3, "the record: expected a mapping, got a number"),
    ("null", lambda d: None, "the record: expected a mapping, got null"),
    ("final a string", _set(final="x"), "final: expected a mapping, got a string"),
    ("history a number", _set(history=3), "history: expected a list, got a number"),
    ("config null", _set(config=None), "config: expected a mapping, got null"),
    ("axes a list", _set(axes=["optimizer"]), "axes: expected a mapping, got a list"),
    ("a metric a string", _set(final={"test_acc": "0.9"}), "final.test_acc: expected a number or null, got a string"),
    ("a history row a string", _set(history=["epoch 1"]), "history[0]: expected a mapping, got a string"),
    ("a history value a list", _set(history=[{"epoch": 1, "val_acc": [0.5]}]), "history[0].val_acc: expected a number"),
    ("a step window short", _set(steps=[[1]]), "steps[0]: expected a pair [step, loss], got a list"),
    ("seed a string", _set(seed="3"), "seed: expected a number, got a string"),
    ("seed a boolean", _set(seed=True), "seed: expected a number, got a boolean"),
    ("status unknown", _set(status="done"), "status: 'done' is not one of"),
    ("an unknown field", _set(extra=1), "unknown field 'extra'"),
    ("no trial id", _drop_id, "trial_id: missing"),
    ("model a string", lambda d: {**d, "config": {**d["config"], "model": "mlp"}}, "config.model: expected a mapping"),
    ("timing a string", _set(timing={"train_s": "fast"}), "timing.train_s: expected a number or null"),
    ("another schema", _set(schema_version=99), "schema_version 99, expected 1"),
]


@pytest.mark.slow
@pytest.mark.parametrize("case, change, needle", SHAPES, ids=[s[0] for s in SHAPES])
def test_a_record_of_the_wrong_shape_is_reported_by_path_and_key_and_left_out(tmp_path, reference, case, change,
                                                                              needle):
    results = tmp_path / "six"
    shutil.copytree(reference, results)
    victim = sorted((results / "trials").glob("*.json"))[0]
    victim.write_text(json.dumps(change(copy.deepcopy(json.loads(victim.read_text())))))
    found = scan(results)
    assert list(found.corrupt) == [victim]
    assert needle in found.corrupt[victim], found.corrupt[victim]
    assert victim.stem not in found.records and len(found.records) == 5


@pytest.mark.slow
def test_a_broken_results_folder_still_reports_and_a_run_replaces_the_bad_records(tmp_path, reference, cli):
    results = tmp_path / "six"
    shutil.copytree(reference, results)
    victims = sorted((results / "trials").glob("*.json"))[:3]
    for victim, text in zip(victims, ['[1, 2]', 'null', None]):
        if text is None:  # valid JSON of the right outline, a metric of the wrong type
            data = json.loads(victim.read_text())
            data["final"]["test_acc"] = "x"
            text = json.dumps(data)
        victim.write_text(text)

    status = harness_cli("status", results)
    assert status.returncode == 0, status.stderr
    assert "unreadable  3" in status.stdout
    for victim in victims:
        assert str(victim) in status.stdout

    code, err = cli("collect", results, "-o", tmp_path / "runs.csv")
    assert code == 0 and "Traceback" not in err, err
    assert len((tmp_path / "runs.csv").read_text().splitlines()) == 1 + 3  # header and the three good records

    code, err = cli("report", results, "--format", "md")
    assert code == 0, err
    text = next((results / "report").glob("*.md")).read_text()
    for victim in victims:
        assert f"Record left out, unreadable or edited: {victim}" in text
    assert "final.test_acc: expected a number or null, got a string" in text

    suite = write_suite(tmp_path, SIX)
    r = harness_cli("run", suite, "--results", tmp_path, "--no-report")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("unreadable or edited record") == 3 and "running the other 3" in r.stdout
    assert _finals(results) == _finals(reference)  # every trial has its one record again, as it was


def test_a_torn_plan_is_one_line_for_report_and_collect(tmp_path, reference, cli):
    results = tmp_path / "six"
    shutil.copytree(reference, results)
    (results / "plan.json").write_text('{"suite": {}, "trials": [{"trial_id": 3}]}')
    _refused(cli("collect", results), "plan.json: not a plan the harness wrote")


# --- the settings reference and counting trials -------------------------------------------------

def test_the_readme_settings_reference_is_the_output_of_harness_list_settings(capsys):
    from harness.cli import main
    from harness.settings import SECTIONS, SUITE_SECTION_BUILDERS, TRIAL_KEYS
    from harness.suite import SUITE_KEYS

    assert main(["list", "settings"]) == 0
    out = capsys.readouterr().out
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- harness list settings -->\n```\n(.*?)```\n<!-- end harness list settings -->", readme, re.S)
    assert block and block.group(1) == out, "README's settings reference is stale: paste `harness list settings`"
    keys = {line.split()[0].split(":")[0] for line in out.splitlines() if line.startswith("  ") and line.split()}
    assert set(SUITE_KEYS) | set(TRIAL_KEYS) - {"batch_size", "eval_batch_size", "precision", "compile",
                                                "channels_last", "save_weights", "trackers"} <= keys | {"plain"}
    for section, params in {**SECTIONS, **{k: None for k in SUITE_SECTION_BUILDERS}}.items():
        for name in params or []:
            assert f"{section}.{name}:" in out


def test_plan_counts_a_suite_too_large_to_build_and_the_limit_is_a_flag(tmp_path, cli):
    huge = write_suite(tmp_path, """
        name: huge
        seeds: 10
        grid:
          optimizer.lr: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
          batch_size: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
          model.width: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
          model.depth: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
          init.gain: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
          optimizer.weight_decay: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
        """, "huge.yaml")
    t0 = time.perf_counter()
    code, _ = cli("plan", huge, "--count")
    assert code == 0 and time.perf_counter() - t0 < 2
    assert "huge.yaml: 10000000 trials (1000000 grid x 1 zip x 1 random x 10 seeds)" in cli.out
    _refused(cli("plan", huge), "makes 10000000 trials", "more than the limit 100000", "--max-trials")
    six = write_suite(tmp_path, SIX)
    _refused(cli("plan", six, "--max-trials", "5"), "makes 6 trials", "more than the limit 5")
    assert cli("plan", six, "--max-trials", "6")[0] == 0
    _refused(cli("run", six, "--max-trials", "5", "--results", tmp_path / "r"), "more than the limit 5")
    assert not (tmp_path / "r").exists()


# --- full, read-only and misplaced results folders ----------------------------------------------

@pytest.fixture
def tmpfs(tmp_path):
    """Mount a small tmpfs (root only): ``mount(size_kib, read_only=False) -> Path``; unmounted after."""
    mounted = []

    def mount(size_kib: int, read_only: bool = False) -> Path:
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        options = f"size={size_kib}k" + (",ro" if read_only else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
        if r.returncode != 0:
            if os.environ.get("CI"):
                pytest.fail(f"cannot mount a tmpfs in CI: {r.stderr}")
            pytest.skip(f"cannot mount a tmpfs here (root only): {r.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _fill(folder: Path) -> Path:
    """Write zeros into ``folder`` until its file system is full; the file that holds them."""
    path = folder / "filler"
    with open(path, "wb", buffering=0) as f:  # unbuffered: nothing is left for close() to fail on
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    return path


def test_results_that_are_a_file_read_only_or_full_are_refused_before_any_trial(tmp_path, tmpfs, cli):
    six = write_suite(tmp_path, SIX)
    (tmp_path / "a-file").write_text("")
    _refused(cli("run", six, "--results", tmp_path / "a-file", "--no-report"), "a-file/six: cannot write here",
             "a file stands where a folder must be")
    read_only = tmpfs(256, read_only=True)
    _refused(cli("run", six, "--results", read_only, "--no-report"), "cannot write here (Read-only file system)")
    full = tmpfs(256)
    _fill(full)
    _refused(cli("run", six, "--results", full, "--no-report"), "six/plan.json: cannot write here (No space left")
    assert not list((full / "six").glob("trials/*")) and not list((full / "six").glob(".tmp-*"))


def test_a_report_into_a_read_only_or_full_folder_is_one_line(tmp_path, reference, tmpfs, cli):
    folder = tmpfs(8192)
    shutil.copytree(reference, folder / "six")
    _fill(folder)
    _refused(cli("report", folder / "six", "--format", "md"), "cannot write here (No space left on device)")
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    _refused(cli("report", folder / "six", "--format", "md"), "cannot write here (Read-only file system)")
    assert _finals(folder / "six") == _finals(reference)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_a_disk_that_fills_mid_sweep_stops_it_and_a_rerun_after_freeing_it_completes(tmp_path, reference, tmpfs,
                                                                                    workers):
    folder = tmpfs(16384)
    six = write_suite(tmp_path, SIX)
    trials = folder / "six" / "trials"
    filler: list[Path] = []

    def fill_after_the_first_record() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(trials.glob("[0-9a-f]*.json")):
            time.sleep(0.01)
        filler.append(_fill(folder))

    watcher = threading.Thread(target=fill_after_the_first_record)
    watcher.start()
    r = harness_cli("run", six, "--results", folder, "--no-report", "--workers", str(workers))
    watcher.join()
    _refused(r, "cannot write here (No space left on device)", "run the same command again to finish")
    found = scan(folder / "six")
    assert not found.corrupt and 1 <= len(found.records) < 6, (found.corrupt, len(found.records))
    assert not list(trials.glob(".tmp-*"))  # nothing half-written
    assert not list((folder / "six" / "locks").glob("*.started"))  # the stop is not counted as a crash

    filler[0].unlink()
    again = harness_cli("run", six, "--results", folder, "--no-report", "--workers", str(workers))
    assert again.returncode == 0, again.stderr
    records = list(trials.glob("*.json"))
    assert len(records) == 6 and all(Record.from_json(p.read_bytes()).status == COMPLETED for p in records)
    # each trial's one record, as if the disk had not filled (two workers take one thread each, the reference
    # run two: float sums in another order, hence the tolerance)
    got, want = _finals(folder / "six"), _finals(reference)
    assert got.keys() == want.keys() and all(got[t] == pytest.approx(want[t], rel=1e-4) for t in want)


# --- the daily-use edges: a results root, output locations, colours -------------------------------

def test_report_collect_and_status_take_a_results_root_with_one_suite_and_list_several(tmp_path, reference, cli):
    root = tmp_path / "out"
    shutil.copytree(reference, root / "six")
    code, err = cli("report", root, "--format", "md", "-o", tmp_path / "elsewhere")
    assert code == 0 and f"reading its one suite, {root / 'six'}" in err, err
    assert (tmp_path / "elsewhere" / "report.md").is_file() and not (root / "six" / "report").exists()
    assert cli("status", root)[0] == 0 and "six: 6 trials in the plan" in cli.out
    assert cli("collect", root, "--output", tmp_path / "t.csv")[0] == 0 and (tmp_path / "t.csv").is_file()
    shutil.copytree(reference, root / "compare" / "six" / "optimizer=adam")
    _refused(cli("report", root), "a results root with 2 suites; pass one of them",
             str(root / "six"), str(root / "compare" / "six" / "optimizer=adam"))
    _refused(cli("report", tmp_path / "nowhere"), "nowhere: no trials/ folder of records here (no such folder)")
    _refused(cli("report", tmp_path / "elsewhere"), "no trials/ folder of records here, nor in a folder below")


def test_every_command_that_writes_takes_o_and_output():
    from harness.arguments import parser

    p = parser()
    writers = {"report": ["r"], "collect": ["r"], "regress": ["c", "--baseline", "b"], "refine": ["r"],
               "lr-find": ["s"], "landscape": ["s"], "diagnose": ["s"], "optimizer-checks": []}
    for command, rest in writers.items():
        for flag in ("-o", "--output", "--out"):
            assert p.parse_args([command, *rest, flag, "X"]).output == "X", (command, flag)


def test_a_value_has_one_colour_in_every_figure_of_a_report_in_the_suites_order(reference, monkeypatch):
    """sgd comes first in the suite and adam second (alphabetical order would swap them): each has the
    colour-blind palette's first and second colour in the curves, the step losses and the box plot."""
    import matplotlib.colors as mc
    from harness.report import plots, write_report

    seen: dict[str, dict] = {}
    save = plots._save

    def spy(fig, path):
        lines = {line.get_label(): mc.to_hex(line.get_color()) for ax in fig.axes for line in ax.get_lines()
                 if not line.get_label().startswith("_")}
        ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
        dots = [mc.to_hex(c.get_facecolor()[0]) for c in fig.axes[0].collections if len(c.get_offsets())]
        legend = next((ax.get_legend() for ax in fig.axes if ax.get_legend()), None)
        seen[path.name] = {"lines": lines, "ticks": ticks, "dots": dots, "align": [
            t.get_horizontalalignment() for t in fig.axes[0].get_xticklabels()],
            "legend": [t.get_text() for t in legend.get_texts()] if legend else []}
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", spy)
    write_report(reference, ["optimizer"], formats=("md",), jobs=1, out=reference.parent / "colours")
    want = {k: mc.to_hex(v) for k, v in plots.palette(["sgd", "adam"]).items()}
    assert want["sgd"] != want["adam"]
    assert seen["curves_optimizer.png"]["lines"] == want
    assert seen["steps_optimizer.png"]["lines"] == want
    final = seen["final_optimizer.png"]
    assert final["ticks"] == ["sgd", "adam"] and final["dots"] == [want["sgd"], want["adam"]]
    assert set(final["align"]) == {"right"}  # slanted labels end under their boxes, not across the next one
    for figure in ("curves_optimizer.png", "steps_optimizer.png"):  # legends in the tables' order, not alphabetical
        assert seen[figure]["legend"] == ["sgd", "adam"], (figure, seen[figure]["legend"])


# --- progress: a live bar on a terminal, lines elsewhere --------------------------------------------

def _on_a_terminal(args: list, cwd: Path) -> tuple[int, str]:
    """``harness ARGS`` with its stdout and stderr on a pseudo-terminal: its exit code and everything it wrote."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # a fresh pty is 0 x 0
    env = {**os.environ, "TERM": "xterm"}
    proc = subprocess.Popen([str(REPO / ".venv" / "bin" / "harness"), *map(str, args)], stdout=slave, stderr=slave,
                            stdin=subprocess.DEVNULL, cwd=cwd, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    code = proc.wait(timeout=300)
    os.close(master)
    return code, b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("workers", [1, 2])
def test_on_a_terminal_a_sweep_shows_a_live_bar_with_running_epochs_and_failures(tmp_path, workers):
    suite = write_suite(tmp_path, """
        name: live
        budget: {epochs: 4}
        base:
          dataset: {name: digits, val_size: 200, train_subset: 400}
          model: {name: mlp, depth: 1, width: 32}
          batch_size: 32
        grid:
          optimizer: [{name: sgd, lr: 0.1}, {name: sgd, lr: 1.0e+6}, {name: adam, lr: 0.003}]
        """)
    code, out = _on_a_terminal(["run", suite, "--results", tmp_path / "r", "--no-report", "--workers", workers],
                               tmp_path)
    assert code == 1  # not every trial completed
    assert "\r" in out and "3/3" in out and "trial" in out  # the bar redraws in place
    assert re.search(r"running [12] \(\w{6} epoch [1-4]/4", out), out  # a running trial's epoch
    assert re.search(r"diverged +\w{12}  optimizer=", out) and "· 1 diverged" in out, out  # its failure, kept above
    assert "3/3 trials in" in out and "(1 diverged)" in out
    assert "start " not in out and "] done " not in out  # no per-event lines on a terminal
    plain = harness_cli("run", suite, "--results", tmp_path / "plain", "--no-report")  # a pipe: lines, as before
    assert "[0/3] start" in plain.stderr and "\r" not in plain.stderr


def _lab(colour):
    """CIE L*a*b* (D65) of an sRGB colour: distances there are differences as seen."""
    import matplotlib.colors as mc
    import numpy as np

    rgb = np.array(mc.to_rgb(colour))
    rgb = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ rgb
    x, y, z = np.cbrt(np.maximum(xyz / np.array([0.95047, 1.0, 1.08883]), 0.008856 ** 1.0))
    return np.array([116 * y - 16, 500 * (x - y), 200 * (y - z)])


def test_the_palette_has_no_near_pair_up_to_eight_values():
    """Eight values had orange, tan and brown, and pink beside purple (seaborn's colorblind: ΔE 21)."""
    import itertools

    import numpy as np
    from harness.report import plots

    for n in range(2, 9):
        colours = list(plots.palette([f"v{i}" for i in range(n)]).values())
        closest = min(np.linalg.norm(_lab(a) - _lab(b)) for a, b in itertools.combinations(colours, 2))
        assert closest > 30, (n, closest)
