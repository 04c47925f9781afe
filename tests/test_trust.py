"""Trust and bad input (the trust-and-crash-safety issue): what a suite, a plugin, an option or a
baseline folder does wrong is one ``harness: error:`` line and exit 2, never a traceback, a silently
halved study or a verdict against an unverifiable baseline. (A planted checkpoint runs nothing:
``tests/test_checkpoint.py``.)"""
import json
import shutil

import pytest
from conftest import REPO, TINY, harness_cli, write_suite

COMMITTED = REPO / "results" / "baselines" / "regress"


def _refused(result, *needles):
    """Exit 2, one error line that says what is wrong, no traceback (a ``CompletedProcess``, or the
    ``(code, stderr)`` of ``harness.cli.main`` run in this process)."""
    code, err = (result.returncode, result.stderr) if hasattr(result, "returncode") else result
    assert code == 2, (code, err)
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("harness: error:")]
    assert len(errors) == 1, err
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def cli(capsys):
    """``harness ARGS`` in this process: (exit code, stderr)."""
    from harness.cli import main

    def run(*args):
        code = main([str(a) for a in args])
        return code, capsys.readouterr().err

    return run


def _lines(text, prefix):
    return [i for i, line in enumerate(text.splitlines(), 1) if line.startswith(prefix)]


def test_a_key_given_twice_in_a_suite_is_refused_with_its_path_and_both_lines(tmp_path, cli):
    twice = TINY + "seeds: 3\n"
    a, b = _lines(twice, "seeds:")
    _refused(harness_cli("plan", write_suite(tmp_path, twice)), f"seeds: given twice (lines {a} and {b})")
    nested = TINY.replace("  batch_size: 64\n", "  batch_size: 64\n  model: {name: mlp, depth: 2}\n")
    a, b = _lines(nested, "  model:")
    _refused(cli("plan", write_suite(tmp_path, nested)), f"base.model: given twice (lines {a} and {b})")
    inner = TINY.replace("{name: sgd, lr: 0.1}", "{name: sgd, lr: 0.1, lr: 0.5}")
    _refused(cli("plan", write_suite(tmp_path, inner)), "grid.optimizer[0].lr: given twice")
    assert cli("plan", write_suite(tmp_path, TINY))[0] == 0  # the same suite, each key once


def test_a_plugin_that_exits_while_imported_does_not_end_the_command(tmp_path, cli):
    for code in ("0", "3", "'bye'"):
        plugin = tmp_path / f"exits{len(code)}.py"
        plugin.write_text(f"import sys\nsys.exit({code})\n")
        run = harness_cli if code == "0" else cli  # once as a real command line: exit 0 must not leak out
        _refused(run("plan", write_suite(tmp_path, TINY), "--plugin", plugin), f"plugin {plugin}", f"sys.exit({code})")


@pytest.mark.parametrize("args, needle", [
    (["regress", "X", "--baseline", "Y", "--margin", "-1"], "--margin: expected a finite number >= 0"),
    (["regress", "X", "--baseline", "Y", "--margin", "nan"], "--margin"),
    (["regress", "X", "--baseline", "Y", "--margin", "inf"], "--margin"),
    (["worker", "plan.json", "--index", "-2"], "--index: expected a whole number >= 0"),
    (["worker", "plan.json", "--index", "0", "--chunk", "0"], "--chunk"),
    (["run", "SUITE", "--workers", "0"], "--workers: expected a whole number >= 1"),
    (["run", "SUITE", "--workers", "-3"], "--workers"),
    (["lr-find", "SUITE", "--index", "-1"], "--index"),
    (["lr-find", "SUITE", "--steps", "0"], "--steps"),
    (["landscape", "SUITE", "--grid", "0"], "--grid"),
    (["landscape", "SUITE", "--samples", "-5"], "--samples"),
    (["refine", "DIR", "--top", "0"], "--top"),
    (["refine", "DIR", "--widen", "inf"], "--widen"),
    (["report", "DIR", "--jobs", "0"], "--jobs"),
    (["report", "DIR", "--target", "nan"], "--target: expected a finite number"),
    (["plan", "SUITE", "--workers", "0"], "--workers"),
])
def test_numeric_options_out_of_their_range_are_refused(tmp_path, capsys, args, needle):
    from harness.cli import main

    suite = write_suite(tmp_path, TINY)
    args = [str(suite) if a == "SUITE" else str(tmp_path) if a == "DIR" else a for a in args]
    with pytest.raises(SystemExit) as exit_:  # argparse's own refusal: usage, then one error line
        main(args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("harness: error:")]
    assert len(errors) == 1 and needle in errors[0], err


def test_a_baseline_without_its_provenance_is_refused_unless_asked_for(tmp_path, cli):
    base, candidate = tmp_path / "base", tmp_path / "candidate"
    shutil.copytree(COMMITTED, base)
    shutil.copytree(COMMITTED, candidate)
    assert cli("regress", candidate, "--baseline", base)[0] == 0
    (base / "provenance.json").unlink()  # deleting the manifest must not bypass the hand-edit check
    _refused(cli("regress", candidate, "--baseline", base), "no provenance.json", "--unverified-baseline")
    out = tmp_path / "verdicts.md"
    assert cli("regress", candidate, "--baseline", base, "--unverified-baseline", "--output", out)[0] == 0
    assert "Unverified baseline" in out.read_text()
    for garbage in ("not json", "[1, 2]", json.dumps({"records": 3}), "null"):
        (base / "provenance.json").write_text(garbage)
        _refused(cli("regress", candidate, "--baseline", base), "provenance.json is not a provenance manifest")


@pytest.mark.slow
def test_more_workers_than_work_or_cores_starts_no_idle_process(tmp_path, capsys, monkeypatch):
    """--workers 64 for 2 trials starts 2 worker processes (each with the cores' share of threads), not 64:
    the pool is checked before it spawns anything, so a missing cap fails here at once."""
    from harness.cli import main
    from harness.launch import local

    pools, real_pool = [], local._run_pool

    def pool(units, results, workers, *rest):
        pools.append((len(units), workers, len(rest[2])))  # rest: progress, plugins, slots, crash limit, threads
        assert workers <= len(units), f"{workers} worker processes for {len(units)} units of work"
        return real_pool(units, results, workers, *rest)

    monkeypatch.setattr(local, "_run_pool", pool)
    code = main(["run", str(write_suite(tmp_path, TINY)), "seeds=1", "--results", str(tmp_path / "r"),
                 "--workers", "64", "--no-report"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert pools == [(2, 2, 2)]  # two units of work, two processes, a slot each
    assert "--workers 64 is more than this machine's" in out.err
    assert "running 2 trials of tiny (2 workers)" in out.out + out.err
    records = [json.loads(p.read_text()) for p in (tmp_path / "r" / "tiny" / "trials").glob("*.json")]
    assert [r["status"] for r in records] == ["completed"] * 2


@pytest.mark.slow
def test_written_files_follow_the_umask(tmp_path):
    import os

    from harness.store import atomic_write

    for mask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
        old = os.umask(mask)
        try:
            atomic_write(tmp_path / f"f{mask}.json", "{}")
        finally:
            os.umask(old)
        assert (tmp_path / f"f{mask}.json").stat().st_mode & 0o777 == mode
    old = os.umask(0o022)  # a real sweep and its report, as a colleague on a shared file system would read them
    try:
        result = harness_cli("run", write_suite(tmp_path, TINY), "seeds=1", "--results", tmp_path / "r")
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stderr
    written = [p for p in (tmp_path / "r" / "tiny").rglob("*") if p.is_file() and "locks" not in p.parts]
    assert any(p.name == "plan.json" for p in written) and any(p.suffix == ".md" for p in written)
    assert {oct(p.stat().st_mode & 0o777) for p in written} == {"0o644"}, written


def _children(pid):
    import os

    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(entry))
    return kids


def test_no_figure_worker_outlives_a_killed_report(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    results = tmp_path / "regress"
    shutil.copytree(COMMITTED, results)
    proc = subprocess.Popen([sys.executable, "-m", "harness", "report", str(results), "--jobs", "2"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, kids = time.time() + 60, []
    while time.time() < deadline and proc.poll() is None and len(kids) < 2:
        kids = _children(proc.pid)
        time.sleep(0.02)
    assert kids, "the report ended before it forked its figure workers"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(1.0)
    alive = [k for k in kids if os.path.exists(f"/proc/{k}") and "Z" not in open(f"/proc/{k}/stat").read().split()[2]]
    assert not alive, f"figure workers {alive} outlived their parent"


@pytest.mark.slow
def test_two_runs_of_one_suite_at_once_both_end_well(tmp_path):
    """The second run skips the trials the first holds, waits for them, and neither counts them missing."""
    import subprocess
    import sys

    suite = write_suite(tmp_path, TINY.replace("epochs: 2", "epochs: 6"))
    cmd = [sys.executable, "-m", "harness", "run", str(suite), "--results", str(tmp_path / "r"), "--no-report"]
    first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outs = [p.communicate(timeout=300) for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outs
    text = "".join(o + e for o, e in outs)
    assert "missing" not in text and text.count("4 completed") == 2, text


def test_a_broken_plan_or_lock_is_one_line_naming_the_file(tmp_path, cli):
    results = tmp_path / "r"
    assert cli("run", write_suite(tmp_path, TINY), "seeds=1", "--results", results, "--no-report")[0] == 0
    folder = results / "tiny"
    plan = folder / "plan.json"
    good = json.loads(plan.read_text())
    edited = json.loads(plan.read_text())
    edited["trials"][0]["config"]["batch_size"] = 7
    for bad in ("garbage", "[1]", json.dumps({"suite": 3, "trials": []}), json.dumps({**good, "trials": [{"x": 1}]}),
                json.dumps(edited)):
        plan.write_text(bad)
        _refused(cli("status", folder), str(plan), "not a plan the harness wrote")
        _refused(cli("worker", plan, "--index", "0"), "not a plan the harness wrote")
    assert "edited by hand" in _refused(cli("status", folder))
    plan.write_text(json.dumps(good))
    lock = next((folder / "locks").glob("*.lock"))
    lock.unlink()
    lock.mkdir()
    (folder / "trials" / f"{lock.stem}.json").unlink()
    _refused(cli("run", write_suite(tmp_path, TINY), "seeds=1", "--results", results, "--no-report"),
             str(lock), "a folder where the trial's lock file goes")


CRASHING = '''
import ctypes
import os

from harness.api import REGULARIZERS, Parts


@REGULARIZERS.register("end_process")
def end_process(ctx, *, how: str = "exit"):
    """Ends its process in the third training batch, as a broken extension or plugin would."""
    seen = {"n": 0}

    def batch(x, y, rng):
        seen["n"] += 1
        if seen["n"] == 3:
            if how == "exit":
                os._exit(3)
            if how == "sys.exit":
                raise SystemExit(4)
            ctypes.string_at(0)  # a segfault
        return x, y

    return Parts(batch=batch)
'''

CRASH_SUITE = """
name: crashy
seeds: [0]
budget: {epochs: 1}
base:
  dataset: {name: digits, val_size: 200, train_subset: 300}
  model: {name: mlp, depth: 1, width: 16}
  batch_size: 50
grid:
  regularizers: [[], [{name: end_process, how: HOW}], [{name: dropout, p: 0.1}]]
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["exit", "segfault"])
def test_a_trial_that_ends_its_process_is_recorded_failed_after_two_crashes(tmp_path, how):
    """One worker, inline: the trial's crash ends the sweep twice; the third run records it failed (naming
    the crashes) and runs every other trial."""
    from harness.store import scan

    plugin = tmp_path / "crashing.py"
    plugin.write_text(CRASHING)
    suite = write_suite(tmp_path, CRASH_SUITE.replace("HOW", how))
    run = ["run", suite, "--plugin", plugin, "--results", tmp_path / "r", "--no-report"]
    for attempt in (1, 2):
        died = harness_cli(*run)
        assert died.returncode == (3 if how == "exit" else -11), died.stderr
    last = harness_cli(*run)
    assert last.returncode == 1, last.stderr  # a trial failed; the sweep went on
    records = scan(tmp_path / "r" / "crashy").records
    statuses = sorted(r.status for r in records.values())
    assert statuses == ["completed", "completed", "failed"], statuses
    failed = next(r for r in records.values() if r.status == "failed")
    assert "ended 2 times" in failed.reason and failed.diagnostics["crashes"] == 2
    assert not list((tmp_path / "r" / "crashy" / "locks").glob("*.started"))


@pytest.mark.slow
def test_an_array_task_gets_past_a_crashing_trial_too(tmp_path):
    import json

    plugin = tmp_path / "crashing.py"
    plugin.write_text(CRASHING)
    suite = write_suite(tmp_path, CRASH_SUITE.replace("HOW", "exit"))
    assert harness_cli("submit", suite, "--results", tmp_path / "res", "--dry-run", "--plugin", plugin).returncode == 0
    plan = next((tmp_path / "res").glob("*/plans/plan-*.json"))
    crasher = next(i for i, t in enumerate(json.loads(plan.read_text())["trials"]) if t["config"]["regularizers"])
    task = ["worker", plan, "--index", str(crasher), "--plugin", plugin]
    assert [harness_cli(*task).returncode for _ in range(2)] == [3, 3]  # SLURM would requeue it each time
    assert harness_cli(*task).returncode == 0
    record = json.loads(next((plan.parent.parent / "trials").glob("*.json")).read_text())
    assert record["status"] == "failed" and "ended 2 times" in record["reason"]


def test_a_trial_calling_sys_exit_is_recorded_failed_at_once(tmp_path):
    from harness.store import scan

    plugin = tmp_path / "crashing.py"
    plugin.write_text(CRASHING)
    suite = write_suite(tmp_path, CRASH_SUITE.replace("HOW", "sys.exit"))
    result = harness_cli("run", suite, "--plugin", plugin, "--results", tmp_path / "r", "--no-report")
    assert result.returncode == 1, result.stderr
    records = scan(tmp_path / "r" / "crashy").records.values()
    assert sorted(r.status for r in records) == ["completed", "completed", "failed"]
    assert any(r.reason == "the trial's code called sys.exit(4)" for r in records)


INJECTION = TINY + """slurm:
  KEY: VALUE
"""


@pytest.mark.parametrize("key, value", [
    ("partition", '"gpu\\ntouch pwned"'),
    ("mem", '"32G\\n#SBATCH --uid=0"'),
    ("time", '"04:00:00; touch pwned"'),
    ("account", '"lab $(touch pwned)"'),
    ("constraint", '"a100`touch pwned`"'),
    ("extra", '["--qos=normal\\ntouch pwned"]'),
    ("extra", '["touch pwned"]'),
    ("extra", '["--qos=normal --uid=0 --output=/tmp/elsewhere"]'),  # one entry, three options
    ("extra", '["--output=/tmp/elsewhere"]'),  # the log folder is the harness's
    ("extra", '["--comment=\\"a\\" --uid=0"]'),
    ("setup", '["module load cuda\\ntouch pwned"]'),
])
def test_no_slurm_value_can_leave_its_sbatch_line(tmp_path, cli, key, value):
    """A shared suite's slurm: values are checked against what SLURM accepts; only setup: lines are shell,
    one entry a line. Nothing is rendered, let alone submitted."""
    suite = write_suite(tmp_path, INJECTION.replace("KEY", key).replace("VALUE", value))
    _refused(cli("submit", suite, "--results", tmp_path / "res", "--dry-run"), f"slurm.{key}")
    assert not (tmp_path / "res").exists() and not (tmp_path / "pwned").exists()


def test_slurm_values_of_real_clusters_pass_and_stay_on_their_lines(tmp_path, capsys):
    from harness.cli import main
    from harness.launch.slurm import sbatch_options

    text = TINY + """slurm:
  partition: gpu,gpu-long
  account: my-lab_1
  time: "2-12:00:00"
  mem: 32G
  constraint: "a100&(ib|roce)"
  extra: ["--qos=normal", "--mail-type=END,FAIL", "--exclusive"]
"""
    assert main(["submit", str(write_suite(tmp_path, text)), "--results", str(tmp_path / "res"), "--dry-run"]) == 0
    script = capsys.readouterr().out
    for line in ("#SBATCH --partition=gpu,gpu-long", "#SBATCH --time=2-12:00:00", "#SBATCH --constraint=a100&(ib|roce)",
                 "#SBATCH --mail-type=END,FAIL"):
        assert line in script.splitlines()
    with pytest.raises(ValueError, match="control character"):  # and the renderer refuses one all the same
        sbatch_options({"partition": "gpu\ntouch pwned"})


def test_a_suite_name_that_would_escape_or_overflow_the_results_folder_is_refused(tmp_path, cli):
    for name in ("../evil", "/etc", "a/b", ".hidden", "x" * 300):
        _refused(cli("plan", write_suite(tmp_path, TINY.replace("name: tiny", f"name: {name!r}"))), "name:")


def _hostile(tmp_path):
    bomb = "name: bomb\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 10):
        bomb += f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n"
    lrs = ", ".join(str(0.001 * (i + 1)) for i in range(400))
    return {
        "bomb": (bomb, "expands to more than 100000 values"),
        "deep": ("name: deep\nbase: " + "[" * 3000 + "]" * 3000 + "\n", "nested deeper than 64 levels"),
        "binary": (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "not UTF-8 text"),
        "huge": ("name: h\ndescription: " + "x" * (2**20 + 1) + "\n", "a suite is at most 1 MiB"),
        "int-digits": ("name: big\nseeds: " + "9" * 5000 + "\n", "a value YAML cannot convert"),
        "int-overflow": ("name: big\nbase: {optimizer: {name: sgd, lr: " + "9" * 400 + "}}\n",
                         "base.optimizer.lr: an integer of 400 digits"),
        "inf-lr": ("name: i\nbase: {optimizer: {name: sgd, lr: .inf}}\n", "base.optimizer.lr: expected a finite number"),
        "nan-clip": ("name: n\nbase: {clip: {norm: .nan}}\n", "base.clip.norm: expected a finite number"),
        "inf-decay": ("name: n\nbase: {optimizer: {name: adamw, weight_decay: -.inf}}\n", "weight_decay"),
        "inf-warmup": ("name: n\nbase: {warmup: {epochs: .inf}}\n", "base.warmup.epochs: expected a finite number"),
        "inf-ratio": ("name: n\nbase: {divergence: {loss_ratio: .inf}}\n", "base.divergence.loss_ratio"),
        "seeds": ("name: s\nseeds: 100000000\n", "seeds: must be a count >= 1 (at most 100000)"),
        "grid": (f"name: g\nseeds: 10\ngrid:\n  optimizer.lr: [{lrs}]\n  batch_size: [{lrs.replace('0.0', '')}]\n",
                 "the suite makes"),
    }


@pytest.mark.parametrize("case", ["bomb", "deep", "binary", "huge", "int-digits", "int-overflow", "inf-lr", "nan-clip",
                                  "inf-decay", "inf-warmup", "inf-ratio", "seeds", "grid"])
def test_a_hostile_suite_is_one_line_not_a_crash(tmp_path, cli, case):
    import resource
    import time

    import harness.cli  # noqa: F401  (imported before measuring: the rest is what the suite costs)
    import harness.suite  # noqa: F401

    content, needle = _hostile(tmp_path)[case]
    path = tmp_path / "suite.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
    error = _refused(cli("plan", path), str(path), needle)
    assert time.perf_counter() - start < 10, error  # not the minutes (or the memory) expanding it would take
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000, error  # KB


def test_an_integer_beyond_64_bits_is_refused_at_load_in_a_file_and_on_the_command_line(tmp_path, cli):
    """Such a value used to train and write a record no reader takes back (so it trained again on every
    run); 5,000 digits on the command line was a traceback where the same value in a file was refused."""
    huge = "9" * 30
    in_file = TINY.replace("seeds: 2", f"seeds: [0, {huge}]")
    _refused(cli("plan", write_suite(tmp_path, in_file)), "seeds[1]: an integer of 30 digits", "64 bits")
    nested = TINY.replace("  batch_size: 64\n", f"  batch_size: 64\n  extra: {{deep: [1, -{huge}]}}\n")
    _refused(cli("plan", write_suite(tmp_path, nested)), "base.extra.deep[1]: an integer of 30 digits")
    suite = write_suite(tmp_path, TINY)
    _refused(cli("plan", suite, f"budget.epochs={huge}"), "override budget.epochs: an integer of 30 digits")
    _refused(cli("run", suite, "budget.epochs=" + "9" * 5000, "--results", tmp_path / "r"),
             "override budget.epochs: a value YAML cannot convert")
    _refused(cli("plan", write_suite(tmp_path, TINY.replace("epochs: 2", "epochs: " + "9" * 5000), "long.yaml")),
             "a value YAML cannot convert")
    assert cli("plan", suite, f"seeds=[0, {2**63 - 1}]")[0] == 0  # the largest that fits is taken
    assert not (tmp_path / "r").exists()


def test_no_value_from_the_command_line_can_leave_its_line_of_the_sbatch_script(tmp_path, cli):
    """A newline in --results put ``#SBATCH`` lines of its own in the script (its log folder is on
    ``#SBATCH --output=``); a path with spaces, quotes and ``$(...)`` stays one word on every line."""
    import subprocess

    from harness.launch.slurm import prepare
    from harness.suite import load_suite

    suite = write_suite(tmp_path, TINY)
    hostile = tmp_path / "r\n#SBATCH --uid=0"
    _refused(cli("submit", suite, "--results", hostile, "--dry-run"), "--results", "control character")
    assert not list(tmp_path.rglob("plan.json"))
    odd = tmp_path / "my results $(touch pwned) 'q'"
    multi = load_suite(str(suite), ["base.resources.nodes=2"])
    for loaded in (load_suite(str(suite)), multi):
        script = prepare(loaded, odd / "tiny", [str(tmp_path / "a plugin.py")])[0]
        assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
        directives = [line for line in script.splitlines() if line.startswith("#SBATCH")]
        assert all(not line.startswith("#SBATCH --uid") for line in directives)
        path_lines = [line for line in script.splitlines() if "my results" in line]
        for line in path_lines:  # the quoted path as one word, never inside another quoted string
            assert "'\"'\"'q'\"'\"'" in line and not line.lstrip().startswith(("trap", "srun", "bash -c")), line
    assert not (tmp_path / "pwned").exists()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """TINY at one epoch, run once: a results folder with its plan, for the commands that read one."""
    from harness.cli import main

    folder = tmp_path_factory.mktemp("tiny-run")
    suite = write_suite(folder, TINY)
    assert main(["run", str(suite), "budget.epochs=1", "--results", str(folder / "r"), "--no-report"]) == 0
    return folder / "r" / "tiny"


def test_the_last_tracebacks_of_issue_29_are_one_error_line(tmp_path, cli, tiny_run):
    """Malformed claims in plan.json (verify, report), compare on a binary or list-shaped suite, worker
    --pending past the plan, --fuse ² or an empty --fuse (silently off), report --target-metric nosuch
    (exit 0), and a 200,000-character unknown name (echoed whole)."""
    bad = tmp_path / "bad"
    shutil.copytree(tiny_run, bad)
    plan = json.loads((bad / "plan.json").read_text())
    for claims, needle in (([{"id": "x", "compare": {"optimizer": "sgd"}}], "claims[0].metric: missing"),
                           ("notalist", "expected a list of claims")):
        plan["suite"]["claims"] = claims
        (bad / "plan.json").write_text(json.dumps(plan))
        for command in ("verify", "report"):
            _refused(cli(command, bad), "plan.json: its claims are not as the harness wrote them", needle)
    (tmp_path / "list.yaml").write_text("[1, 2]\n")
    (tmp_path / "binary.yaml").write_bytes(b"\x00\x01\x02name: x\n")
    for suite, needle in (("list.yaml", "a suite is a mapping"), ("binary.yaml", "YAML syntax error")):
        _refused(cli("compare", tmp_path / suite, "--technique", "optimizer=sgd", "--results", tmp_path / "c"), needle)
    suite = write_suite(tmp_path, TINY)
    assert cli("submit", suite, "--results", tmp_path / "s", "--dry-run")[0] == 0
    [plan_file] = (tmp_path / "s" / "tiny" / "plans").glob("plan-*.json")
    _refused(cli("worker", plan_file, "--index", "99", "--pending"), "task 99 has no trial: the plan has 4 trials")
    for fuse in ("²", "", "٣"):  # argparse's refusal: a process of its own
        _refused(harness_cli("plan", suite, "--fuse", fuse), "--fuse: expected auto, off or a pack size >= 1")
    _refused(cli("plan", suite, "execution.fuse=²"), "execution.fuse: expected off, auto or a pack size")
    _refused(cli("report", tiny_run, "--target-metric", "nosuch"), "--target-metric 'nosuch': expected one of")
    long = "x" * 200_000
    line = _refused(cli("plan", suite, f"base.model.name={long}"), "unknown model", "characters left out",
                    "expected one of cnn_2c2d")
    assert len(line) < 1500


@pytest.mark.slow
def test_every_command_writes_under_an_ascii_locale(tiny_run, tmp_path):
    """LC_ALL=C without Python's UTF-8 mode: a − or ± on the terminal or in a report was a UnicodeEncodeError."""
    env = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""}
    results = tmp_path / "r"
    shutil.copytree(tiny_run, results)
    for args in (["list"], ["optimizer-checks", "--optimizer", "sgd", "--problem", "quadratic", "--out", tmp_path / "o"],
                 ["report", results, "--format", "md,html,latex,csv"], ["status", results]):
        r = harness_cli(*args, env=env)
        assert r.returncode in (0, 1) and "Traceback" not in r.stderr, (args, r.stderr[-800:])
    assert "±" in (results / "report" / "report.md").read_text(encoding="utf-8")


BASELINE = TINY.replace("  optimizer: [{name: sgd, lr: 0.1}, {name: adam, lr: 0.003}]",
                        "  optimizer: [{name: sgd, lr: 0.1}, {name: sgd, lr: 0.3}, {name: adam, lr: 0.003}]") + \
    "report: {baseline: BASE}\n"


def test_the_reports_baseline_is_a_selector_checked_when_the_suite_loads(tmp_path, cli):
    """report.baseline was checked after every trial ran (4 minutes, then exit 2), as a label that changes
    with what else varies; now a name or the parameters that single out one row, refused before any trial."""
    from harness.suite import load_suite

    results = tmp_path / "r"
    ambiguous = write_suite(tmp_path, BASELINE.replace("BASE", "optimizer=sgd"), "a.yaml")
    line = _refused(cli("run", ambiguous, "--results", results), "report.baseline: optimizer=sgd selects 2 rows")
    assert "give the parameters that single one out" in line and not results.exists()
    _refused(cli("plan", write_suite(tmp_path, BASELINE.replace("BASE", "norm=none"), "n.yaml")),
             "report.baseline: 'norm' is not an axis that varies")
    _refused(cli("plan", write_suite(tmp_path, BASELINE.replace("BASE", "optimizer=lion"), "l.yaml")),
             "report.baseline: optimizer=lion selects no row")
    chosen = write_suite(tmp_path, BASELINE.replace("BASE", "{optimizer: {name: sgd, lr: 0.3}}"), "c.yaml")
    assert load_suite(str(chosen)).report["baseline"] == {"optimizer": {"name": "sgd", "lr": 0.3}}
    assert cli("run", chosen, "budget.epochs=1", "--results", results)[0] == 0
    report = (results / "tiny" / "report" / "report.md").read_text()
    baseline_rows = [line for line in report.splitlines() if "(baseline)" in line]
    assert baseline_rows and all(line.startswith("| sgd(lr=0.3) (baseline)") for line in baseline_rows), baseline_rows
    _refused(cli("report", results / "tiny", "--baseline", "optimizer=sgd"), "--baseline: optimizer=sgd selects 2 rows")
    assert cli("report", results / "tiny", "--baseline", "optimizer=adam")[0] == 0
