"""SLURM: a suite becomes an array job, one task per chunk of trials, each task a ``harness worker``.

SLURM does the scheduling, throttling (``%M``), requeueing and signalling; the harness only
renders a template a cluster user can read and edit (``slurm/array.sbatch``, or
``slurm/multinode.sbatch`` for trials that span nodes), submits it with ``sbatch`` and keeps the
job ids next to the results so ``harness status`` can ask ``squeue`` about them.

A worker runs the trials of its task that have no final record, each under its lock and from its
checkpoint. On SIGUSR1 (``--signal=B:USR1@T``: T seconds before the time limit) the running trial
checkpoints at the next step, the worker requeues its own task (``scontrol requeue``) and exits;
the requeued task resumes the trial. On SIGTERM (preemption; SLURM requeues ``--requeue`` jobs
itself) it checkpoints and exits without requeueing.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, TextIO

from harness import layout
from harness.errors import UsageError
from harness.spec import INTERRUPTED, TrialSpec
from harness.store import scan
from harness.store.records import atomic_write, open_append, read_plan_file, write_plan_file

TEMPLATES = Path(__file__).resolve().parents[2] / "slurm"  # the repository's templates, not a results folder
_PLACEHOLDER = re.compile(r"{{\s*([a-z_]+)\s*}}")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LINES = ("sbatch_options", "setup")  # lines joined by the harness, each checked on its own (settings.check_slurm)
_FROM = {"log_dir": "--results", "results": "--results", "results_root": "--results", "plan": "--results",
         "plugins": "--plugin", "suite": "the suite file's path", "overrides": "an override", "harness": "the Python",
         "python": "the Python"}


def _one_line(where: str, value: str) -> None:
    """Refuse a value that would not stay on its line of the script: a newline there starts an ``#SBATCH``
    directive (or a command) of its own."""
    if _CONTROL.search(value):
        raise UsageError(f"{where}: {value[:200]!r} holds a newline or another control character, which would "
                         "start another line of the sbatch script; choose another")


def render(template: str, values: dict[str, Any], source: str = "template") -> str:
    """``{{name}}`` placeholders filled in; one the harness does not know is an error naming it. No value
    holds a newline or another control character: on an ``#SBATCH`` line it would start a directive of its
    own (a newline in ``--results`` once did), elsewhere a command."""
    unknown = sorted({m.group(1) for m in _PLACEHOLDER.finditer(template)} - set(values))
    if unknown:
        raise UsageError(f"{source}: unknown placeholder {{{{{unknown[0]}}}}}; the harness fills in "
                         f"{', '.join(sorted(values))}")
    for name, value in values.items():
        if name not in _LINES:
            _one_line(_FROM.get(name, name), str(value))
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)


def array_ranges(indices: list[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` → ``0-2,5,7-8`` (sbatch --array syntax)."""
    parts, start = [], None
    for i, n in enumerate(indices):
        if start is None:
            start = n
        if i + 1 == len(indices) or indices[i + 1] != n + 1:
            parts.append(f"{start}-{n}" if n != start else f"{n}")
            start = None
    return ",".join(parts)


def sbatch_options(slurm: dict[str, Any]) -> str:
    """The ``#SBATCH`` lines of a suite's ``slurm:`` values (checked when the suite loaded:
    ``harness.settings.check_slurm``); each value stays on its own line whatever reaches here."""
    options = [("partition", "--partition"), ("account", "--account"), ("time", "--time"), ("mem", "--mem"),
               ("constraint", "--constraint")]
    lines = [f"#SBATCH {flag}={slurm[key]}" for key, flag in options if slurm.get(key)]
    if slurm.get("gpus_per_task"):
        lines.append(f"#SBATCH --gpus-per-task={int(slurm['gpus_per_task'])}")
    lines += [f"#SBATCH {extra}" for extra in slurm.get("extra", [])]
    for line in lines:
        if _CONTROL.search(line):
            raise ValueError(f"an sbatch option holds a control character: {line!r}")
    return "\n".join(lines)


def _harness_command() -> str:
    """This interpreter running the harness, so array tasks use the same installation."""
    return f"{shlex.quote(sys.executable)} -m harness"


def _plugin_args(plugins: list[str] | None) -> str:
    """``--plugin`` options for the script: a plugin file by its absolute path (a task's working folder
    is sbatch's choice, not the submitting shell's), a module name as given."""
    paths = [str(Path(p).resolve()) if p.endswith(".py") or Path(p).exists() else p for p in plugins or []]
    return "".join(f" --plugin {shlex.quote(p)}" for p in paths)


def check_results(results: Path) -> Path:
    """The results folder of a submission, resolved; one whose path holds a newline or another control
    character is refused before anything is written there (its log folder goes on an ``#SBATCH`` line)."""
    results = Path(results).resolve()
    _one_line("--results", str(results))
    return results


def prepare(suite: Any, results: Path, plugins: list[str] | None = None) -> tuple[str, Path, int, str]:
    """(script, plan file, number of tasks, how they were chunked): the rendered array job of the suite's
    trials that have no final record yet; the plan is written, immutably, next to the results."""
    results = check_results(results)
    if os.nice(0) > 0:  # sbatch exports the environment to the tasks (--export=ALL)
        os.environ[NICE] = str(os.nice(0))
    trials: list[TrialSpec] = list(suite.trials)
    plan = write_plan_file(results, suite.to_dict(), trials)
    slurm = suite.slurm
    found = scan(results)
    multinode = any(t.config["resources"]["nodes"] > 1 for t in trials)
    pending = [i for i, t in enumerate(trials) if not found.done(t.trial_id)]  # plan positions
    chunk, why = (1, "a multi-node trial per task") if multinode else (slurm["chunk"], "slurm.chunk")
    if chunk == "auto":
        from harness.launch.chunking import auto_chunk

        chunk, why = auto_chunk([trials[i] for i in pending], list(found.records.values()), slurm)
    tasks = sorted({i // chunk for i in pending})
    if not tasks:
        return "", plan, 0, ""
    array = array_ranges(tasks) + (f"%{slurm['max_parallel']}" if slurm.get("max_parallel") else "")
    if slurm.get("template"):
        template_file = Path(suite.file).parent / slurm["template"]
    else:
        template_file = TEMPLATES / ("multinode.sbatch" if multinode else "array.sbatch")
    try:
        template = template_file.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"slurm.template: cannot read {template_file}: {e.strerror}") from None
    resources = trials[0].config["resources"]
    values = {
        "job_name": suite.name, "array": array, "log_dir": shlex.quote(str(layout.slurm_logs_dir(results))),
        "signal_seconds": slurm["signal_seconds"], "cpus_per_task": slurm["cpus_per_task"],
        "sbatch_options": sbatch_options(slurm), "setup": "\n".join(slurm.get("setup", [])),
        "harness": _harness_command(), "python": shlex.quote(sys.executable), "plan": shlex.quote(str(plan)), "chunk": chunk,
        "plugins": _plugin_args(plugins),
        "nodes": resources["nodes"], "processes": resources["processes"],
        "results": shlex.quote(str(results)), "crashes": suite.execution["crashes"],
    }
    return render(template, values, str(template_file)), plan, len(tasks), f"{chunk} trials a task: {why}"


def next_rung(suite: Any, results: Path, after: str, plugins: list[str] | None = None) -> str:
    """The job that submits a search's next rung once job ``after`` (this rung's array) has ended."""
    results = Path(results).resolve()
    slurm = suite.slurm
    # the small job asks for no GPU: only the scheduling options carry over
    options = sbatch_options({k: slurm.get(k) for k in ("partition", "account", "time", "constraint")})
    values = {
        "job_name": suite.name, "after": after, "log_dir": shlex.quote(str(layout.slurm_logs_dir(results))),
        "sbatch_options": options, "setup": "\n".join(slurm.get("setup", [])), "harness": _harness_command(),
        "suite": shlex.quote(str(Path(suite.file).resolve())),
        "overrides": "".join(f" {shlex.quote(o)}" for o in suite.overrides),
        "results_root": shlex.quote(str(results.parent)),
        "plugins": _plugin_args(plugins),
    }
    template = TEMPLATES / "next-rung.sbatch"
    return render(template.read_text(encoding="utf-8"), values, str(template))


def submit(script: str, results: Path, name: str = layout.ARRAY_SCRIPT) -> str:
    """``sbatch`` the script (kept under ``<results>/slurm/``); returns the job id."""
    if shutil.which("sbatch") is None:
        raise UsageError("sbatch not found: submit from a SLURM login node (or --dry-run to see the script)")
    folder = layout.slurm_dir(results)
    layout.slurm_logs_dir(results).mkdir(parents=True, exist_ok=True)
    path = folder / name
    atomic_write(path, script)  # never through a file planted at its name
    done = subprocess.run(["sbatch", "--parsable", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        raise UsageError(f"sbatch failed: {done.stderr.strip() or done.stdout.strip()}")
    job = done.stdout.strip().split(";")[0]
    with open_append(layout.jobs_file(results)) as f:
        f.write(job + "\n")
    return job


def job_states(results: Path) -> dict[str, int] | None:
    """Task states (PENDING, RUNNING, ...) of the arrays submitted for these results, from
    ``squeue``; None where there is no SLURM or nothing was submitted."""
    jobs_file = layout.jobs_file(results)
    if shutil.which("squeue") is None or not jobs_file.exists():
        return None
    jobs = [j for j in jobs_file.read_text(encoding="utf-8").split() if j]
    if not jobs:
        return None
    done = subprocess.run(["squeue", "--array", "-h", "-o", "%T", "-j", ",".join(jobs)],
                          capture_output=True, text=True)
    states: dict[str, int] = {}
    for line in done.stdout.split():
        states[line] = states.get(line, 0) + 1
    return states


NICE = "HARNESS_NICE"  # the submitting process's niceness, passed to the tasks in the job's environment


def _nice_as_submitted(stream: TextIO) -> None:
    """An array task at the niceness ``harness submit`` had (``nice harness submit ...``): SLURM starts
    every task at its own (0, unless slurm.conf propagates it)."""
    wanted = os.environ.get(NICE, "")
    if wanted.isascii() and wanted.isdigit() and int(wanted) > os.nice(0):
        os.nice(min(int(wanted), 19) - os.nice(0))
        print(f"harness worker: running at nice {os.nice(0)}, as submitted", file=stream, flush=True)


def work(plan_file: Path, index: int, chunk: int, stream: TextIO | None = None, fuse: str | int | None = None,
         threads: int | str | None = None) -> int:
    """The array task ``index``: its trials without a final record, one unit after another (a trial
    alone, or a fused pack where the plan's suite fuses, or ``fuse`` says so), each under the plan's
    ``execution.threads`` intra-op threads, or ``threads`` (auto: the task's cpus_per_task)."""
    from harness.fused.plan import plan_packs
    from harness.launch.local import describe_outcome, threads_notes  # the engine, and torch: not for `harness status`
    from harness.launch.trial import StopFlag, execute_unit, finished

    stream = stream or sys.stderr
    suite, specs = read_plan_file(plan_file)
    results = layout.results_of_plan_file(Path(plan_file).resolve())
    mine = specs[index * chunk:(index + 1) * chunk]
    if not mine:
        raise UsageError(f"task {index} has no trials: the plan has {len(specs)} trials, {chunk} per task")
    flag = StopFlag().install()
    _nice_as_submitted(stream)
    import torch

    execution = suite.get("execution") or {}
    count = _task_threads(threads or execution.get("threads", 1))
    todo = []
    for spec in mine:
        if finished(results, spec.trial_id) is not None:  # its own record only: a task never reads the whole sweep
            print(f"harness worker: {spec.trial_id} already has a record", file=stream, flush=True)
        else:
            todo.append(spec)
    fuse = fuse if fuse is not None else execution.get("fuse", "off")
    units, _ = plan_packs(todo, fuse, 1, cuda=torch.cuda.is_available())
    for unit in units:
        if flag():
            break
        for spec in unit:
            print(f"harness worker: {spec.trial_id} {spec.label()}" + (f" (pack of {len(unit)})" if len(unit) > 1 else ""),
                  file=stream, flush=True)
        records = execute_unit(unit, results, stop=flag, flag=flag, crash_limit=execution.get("crashes", 2),
                               threads=count)
        for spec, record in zip(unit, records):
            if record is None:
                print(f"harness worker: {spec.trial_id} is running in another task; left to it", file=stream, flush=True)
            else:
                print(f"harness worker: {spec.trial_id} {describe_outcome(record)}", file=stream, flush=True)
                for note in threads_notes(record):
                    print(f"harness worker: {spec.trial_id} {note}", file=stream, flush=True)
        if any(r is not None and r.status == INTERRUPTED for r in records):
            break
    if flag.signal is not None:
        _requeue_self(flag.signal, stream)
    return 0


def _task_threads(setting: int | str) -> int:
    """A trial's intra-op threads in this task: the setting, or under ``auto`` the task's allocation
    (SLURM_CPUS_PER_TASK, not the node's core count: tasks sharing a node do not oversubscribe it)."""
    from harness.launch.local import threads_for

    cpus = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return int(cpus) if setting == "auto" and cpus.isdigit() and int(cpus) > 0 else threads_for(setting)


def _requeue_self(signum: int, stream: TextIO) -> None:
    import signal

    job = os.environ.get("SLURM_JOB_ID")
    if signum != signal.SIGUSR1 or not job:
        return  # SIGTERM: preempted (SLURM requeues --requeue jobs itself) or cancelled
    done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    print(f"harness worker: requeued job {job} to resume after the time limit"
          + (f" (scontrol: {done.stderr.strip()})" if done.returncode else ""), file=stream, flush=True)


def pending(plan_file: Path, index: int) -> str | None:
    """The trial id of task ``index`` when it has no final record (multi-node template's check)."""
    from harness.launch.trial import finished

    _, specs = read_plan_file(plan_file)
    if index >= len(specs):
        raise UsageError(f"task {index} has no trial: the plan has {len(specs)} trials, one per task")
    spec = specs[index]
    return None if finished(layout.results_of_plan_file(Path(plan_file).resolve()), spec.trial_id) else spec.trial_id
