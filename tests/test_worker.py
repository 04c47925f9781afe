"""The array-task worker and its faults, on real processes: a worker killed with SIGKILL mid-trial,
a stop signal, a trial that raises, one that diverges, a torn record, and two tasks given the
same trial at once. In every case each trial ends with exactly one valid record, and nothing
finished is lost or run again. Also: `harness submit --dry-run` renders the templates."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import SLOW, REPO, harness_cli, write_suite

from harness.engine import run_trial
from harness.launch import cpu_count
from harness.engine.checkpoint import checkpoint_path
from harness.spec import COMPLETED, DIVERGED, FAILED, Record, TrialSpec
from harness.store import record_path, scan


MIXED = """
name: mixed
seeds: [0]
budget: {epochs: 2}
base:
  dataset: {name: digits, val_size: 200, train_subset: 300}
  model: {name: mlp, depth: 1, width: 16}
  batch_size: 50
grid:
  optimizer: [{name: sgd, lr: 0.1}, {name: sgd, lr: 1.0e+6}, {name: adam, lr: 0.003}]
  regularizers: [[], [raise_at_step]]
"""

# A technique that raises inside the training loop, as a buggy one would.
RAISING = '''
from harness.components import REGULARIZERS
from harness.components.regularizers import Parts


@REGULARIZERS.register("raise_at_step")
def raise_at_step(ctx, *, step: int = 3):
    """Raises in its batch transform at the given step."""
    seen = {"n": 0}

    def batch(x, y, rng):
        seen["n"] += 1
        if seen["n"] > step:
            raise RuntimeError(f"boom at step {step}")
        return x, y

    return Parts(batch=batch)
'''


def _plan(tmp_path, text):
    plugin = tmp_path / "raising.py"
    plugin.write_text(RAISING)
    r = harness_cli("submit", write_suite(tmp_path, text), "--results", tmp_path / "res", "--dry-run",
                    "--plugin", plugin)
    assert r.returncode == 0, r.stderr
    plan = next((tmp_path / "res").glob("*/plans/plan-*.json"))
    return plan, plan.parent.parent, json.loads(plan.read_text())["trials"]


def _worker(plan, index, *extra):
    return subprocess.Popen([sys.executable, "-m", "harness", "worker", str(plan), "--index", str(index), *extra],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path, proc, timeout=120):
    start = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - start < timeout, f"{path} never appeared"
        time.sleep(0.05)


def _comparable(record):
    history = [{k: v for k, v in h.items() if not k.endswith("_time")} for h in record.history]
    return history, record.steps, record.final, record.best


@pytest.fixture(scope="module")
def slow_uninterrupted():
    from harness.suite import load_suite
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        spec = load_suite(write_suite(Path(tmp), SLOW)).trials[0]
        return run_trial(spec, threads=1)  # as the worker runs it (execution.threads: 1): 2 threads round otherwise


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigkill", "sigusr1"])
def test_a_killed_or_signalled_worker_resumes_to_the_uninterrupted_record(tmp_path, how, slow_uninterrupted):
    plan, results, trials = _plan(tmp_path, SLOW)
    trial_id = trials[0]["trial_id"]
    proc = _worker(plan, 0)
    _wait_for(checkpoint_path(results, trial_id), proc)  # the first epoch's checkpoint
    time.sleep(0.3)  # into the second epoch
    proc.send_signal(signal.SIGKILL if how == "sigkill" else signal.SIGUSR1)
    out, err = proc.communicate(timeout=60)
    if how == "sigusr1":
        assert proc.returncode == 0, err
        part = Record.from_json(record_path(results, trial_id).read_text())
        assert part.status == "interrupted" and "when asked" in part.reason
    else:
        assert proc.returncode == -signal.SIGKILL and not record_path(results, trial_id).exists()
    again = _worker(plan, 0)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    record = Record.from_json(record_path(results, trial_id).read_text())
    assert record.status == COMPLETED and record.diagnostics["resumed_at_step"]
    assert _comparable(record) == _comparable(slow_uninterrupted)
    assert not checkpoint_path(results, trial_id).exists()  # removed once the record is final
    assert len(list((results / "trials").glob("*.json"))) == 1


@pytest.mark.slow
def test_raising_diverging_and_torn_records_each_end_with_one_valid_record(tmp_path):
    plan, results, trials = _plan(tmp_path, MIXED)
    assert len(trials) == 6
    plugin = ("--plugin", tmp_path / "raising.py")
    # one task of all six trials: one after another in one process, each failure recorded
    assert harness_cli("worker", plan, "--index", 0, "--chunk", 6, *plugin).returncode == 0
    found = scan(results)
    statuses = sorted(found.records[t["trial_id"]].status for t in trials)
    assert statuses == [COMPLETED, COMPLETED, DIVERGED, FAILED, FAILED, FAILED]  # lr 1e6 diverges; raise_at_step fails
    finished = {t["trial_id"]: record_path(results, t["trial_id"]).stat().st_mtime_ns for t in trials
                if found.records[t["trial_id"]].status in (COMPLETED, DIVERGED)}
    torn = next(iter(finished))
    record_path(results, torn).write_text('{"trial_id": "')  # a record torn by a crash
    assert harness_cli("worker", plan, "--index", 0, "--chunk", 6, *plugin).returncode == 0
    again = scan(results)
    assert not again.corrupt and again.records[torn].status == COMPLETED
    for trial_id, mtime in finished.items():
        if trial_id != torn:  # finished trials are not run again
            assert record_path(results, trial_id).stat().st_mtime_ns == mtime
    assert sorted(again.records[t["trial_id"]].status for t in trials) == statuses  # failed ones ran again


@pytest.mark.slow
def test_the_same_trial_in_two_tasks_at_once_runs_once(tmp_path):
    plan, results, trials = _plan(tmp_path, SLOW.replace("epochs: 4", "epochs: 2"))
    a, b = _worker(plan, 0), _worker(plan, 0)
    outs = [p.communicate(timeout=300) for p in (a, b)]
    assert a.returncode == 0 and b.returncode == 0
    said = outs[0][1] + outs[1][1]
    assert said.count(" completed") == 1, said
    assert "running in another task" in said or "already has a record" in said
    record = Record.from_json(record_path(results, trials[0]["trial_id"]).read_text())
    assert record.status == COMPLETED and "resumed_at_step" not in record.diagnostics


def test_submit_dry_run_renders_the_array_job(tmp_path):
    suite = write_suite(tmp_path, MIXED + """
slurm: {partition: gpu, account: lab, time: "02:00:00", gpus_per_task: 1, max_parallel: 2, chunk: 2,
        setup: ["module load cuda/12", "source ~/venv/bin/activate"], extra: ["--qos=high"]}
""")
    (tmp_path / "raising.py").write_text(RAISING)
    r = harness_cli("submit", suite, "--results", tmp_path / "res", "--dry-run", "--plugin", tmp_path / "raising.py")
    assert r.returncode == 0, r.stderr
    script = r.stdout
    plan = next((tmp_path / "res" / "mixed" / "plans").glob("plan-*.json"))
    for line in ("#SBATCH --array=0-2%2",  # 6 trials, 2 per task
                 "#SBATCH --partition=gpu", "#SBATCH --account=lab",
                 "#SBATCH --time=02:00:00", "#SBATCH --gpus-per-task=1", "#SBATCH --qos=high", "#SBATCH --requeue",
                 "#SBATCH --signal=B:USR1@120", "module load cuda/12", "source ~/venv/bin/activate",
                 f'worker {plan} --index "$SLURM_ARRAY_TASK_ID" --chunk 2 --plugin {tmp_path / "raising.py"}'):
        assert line in script, line
    assert "{{" not in script
    check = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert check.returncode == 0, check.stderr


@pytest.mark.slow
def test_submit_renders_only_the_tasks_without_records(tmp_path):
    plan, results, trials = _plan(tmp_path, MIXED)
    # trials 0, 2 and 3 as a worker would run them, in one process rather than three
    script = (f"from harness.plugins import load_plugins; load_plugins([{str(tmp_path / 'raising.py')!r}])\n"
              "from pathlib import Path\nfrom harness.launch.trial import execute\n"
              "from harness.store.records import read_plan_file\n"
              f"specs = read_plan_file(Path({str(plan)!r}))[1]\n"
              f"for i in (0, 2, 3): execute(specs[i], Path({str(results)!r}))\n")
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True)
    r = harness_cli("submit", tmp_path / "suite.yaml", "slurm.chunk=1", "--results", tmp_path / "res", "--dry-run",
                    "--plugin", tmp_path / "raising.py")
    # one trial a task (not auto): 0 and 2 completed; 3 (raise_at_step) failed, so it is submitted again
    assert "#SBATCH --array=1,3-5\n" in r.stdout, r.stdout


def test_the_multinode_template_renders_srun_and_accelerate_launch(tmp_path):
    suite = write_suite(tmp_path, MIXED.replace("  batch_size: 50", "  batch_size: 50\n  resources: {nodes: 4, processes: 8}")
                        + "slurm: {gpus_per_task: 8, cpus_per_task: 32}\n")
    (tmp_path / "raising.py").write_text(RAISING)
    r = harness_cli("submit", suite, "--results", tmp_path / "res", "--dry-run", "--plugin", tmp_path / "raising.py")
    assert r.returncode == 0, r.stderr
    s = r.stdout
    for part in ("#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-task=8",
                 '--num_machines "$2" --num_processes "$3"', '--machine_rank "$SLURM_NODEID"',
                 '--main_process_ip "$4" --main_process_port "$5"', ' 4 $((4 * 8)) "$MAIN_ADDR" "$MAIN_PORT" "$PLAN" &',
                 "scontrol show hostnames \"$SLURM_JOB_NODELIST\"",
                 "srun --kill-on-bad-exit=1", "-m harness.launch.trial --plan", "--pending) || exit 0",
                 "trap '", "scontrol requeue"):
        assert part in s, part
    assert "{{" not in s and "--chunk" not in s
    assert subprocess.run(["bash", "-n"], input=s, text=True).returncode == 0


def test_a_template_with_an_unknown_placeholder_is_bad_input(tmp_path):
    (tmp_path / "mine.sbatch").write_text("#!/bin/bash\n#SBATCH --array={{array}}\n{{harness}} {{plann}}\n")
    suite = write_suite(tmp_path, MIXED + "slurm: {template: mine.sbatch}\n")
    (tmp_path / "raising.py").write_text(RAISING)
    r = harness_cli("submit", suite, "--results", tmp_path / "res", "--dry-run", "--plugin", tmp_path / "raising.py")
    assert r.returncode == 2 and "unknown placeholder {{plann}}" in r.stderr and "plan" in r.stderr


@pytest.mark.slow
def test_worker_input_errors_exit_2(tmp_path):
    plan, _, trials = _plan(tmp_path, MIXED)
    r = harness_cli("worker", plan, "--index", 99)
    assert r.returncode == 2 and "task 99 has no trials" in r.stderr
    r = harness_cli("worker", tmp_path / "nope.json", "--index", 0)
    assert r.returncode == 2 and "no such plan file" in r.stderr


@pytest.mark.slow
def test_pending_prints_the_trial_until_it_has_a_record(tmp_path):
    plan, _, trials = _plan(tmp_path, MIXED)
    r = harness_cli("worker", plan, "--index", 0, "--pending")
    assert r.returncode == 0 and r.stdout.strip() == trials[0]["trial_id"]
    harness_cli("worker", plan, "--index", 0, "--plugin", tmp_path / "raising.py")
    assert harness_cli("worker", plan, "--index", 0, "--pending").returncode == 1


def test_gpu_slots_spread_or_pack_workers():
    from harness.errors import UsageError
    from harness.launch.local import gpu_slots

    assert gpu_slots(3, 0, None) == [None, None, None]
    assert gpu_slots(4, 2, None) == [0, 1, 0, 1]
    assert gpu_slots(4, 2, 2) == [0, 0, 1, 1]
    with pytest.raises(UsageError, match="needs 3 GPUs; this node has 2"):
        gpu_slots(5, 2, 2)


@pytest.mark.slow
def test_threads_auto_per_worker_do_not_oversubscribe_the_cores(tmp_path):
    # Under --threads auto each of N workers gets cores // N threads (at least one); the default is 1 a trial
    # (tests/test_threads.py).
    (tmp_path / "raising.py").write_text(RAISING)
    r = harness_cli("run", write_suite(tmp_path, MIXED), "--results", tmp_path / "res", "--workers", "2",
                    "--threads", "auto", "--no-report", "--plugin", tmp_path / "raising.py")
    assert r.returncode == 1  # the failing and diverging trials are recorded; the sweep went on
    records = [r for r in scan(tmp_path / "res" / "mixed").records.values() if r.environment]
    assert records and {r.environment["torch_threads"] for r in records} == {max(1, cpu_count() // 2)}
