"""One trial, run by whichever launcher: under its lock, from its checkpoint, in one process or in
``resources.processes`` processes through ``accelerate launch``; its record written once it ends.

The lock (``flock`` on ``<results>/locks/<trial_id>.lock``) makes a trial run in one place at a
time: two array tasks, or two ``harness run`` commands, given the same trial run it once; the
kernel drops the lock when its holder dies, even by SIGKILL, so a requeued task takes it again.

Entry point of each process of a multi-process trial:
``python -m harness.launch.trial SPEC_JSON RESULTS`` (started by ``accelerate launch``).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from harness.engine.checkpoint import remove
from harness.layout import (
    checkpoint_path, lock_path, record_path, results_of_plan_file, started_path, stop_path, tracking_dir,
    weights_path,
)
from harness.spec import FAILED, FINAL_STATUSES, INTERRUPTED, STOPPED, Record, TrialSpec
from harness.store import atomic_write, write_record
from harness.store.records import READ_ERRORS, open_append, read_record

if TYPE_CHECKING:
    from harness.engine.loop import Checkpointing

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class StopFlag:
    """Set by SIGUSR1 (a scheduler's warning before the time limit) or SIGTERM (preemption): the
    running trial saves its checkpoint at the next step and returns ``interrupted``. A running
    multi-process trial is told through its stop file."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.files: list[Path] = []

    def install(self) -> "StopFlag":
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.signal = signum
        for path in self.files:
            path.touch()

    def __call__(self) -> bool:
        return self.signal is not None


@contextlib.contextmanager
def claim(results: Path, trial_id: str) -> Iterator[bool]:
    """Yields True while this process holds the trial's lock, False when another one does."""
    path = lock_path(results, trial_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        from harness.errors import UsageError

        raise UsageError(f"{path}: a folder where the trial's lock file goes; remove it")
    with open_append(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def wait_for_lock(results: Path, trial_id: str, wait: bool = True) -> bool:
    """Whether another process holds the trial's lock; with ``wait``, return once it no longer does
    (the kernel drops a lock when its holder dies, even by SIGKILL)."""
    path = lock_path(results, trial_id)
    if not path.exists():
        return False
    with open_append(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if wait:
                fcntl.flock(f, fcntl.LOCK_EX)
                fcntl.flock(f, fcntl.LOCK_UN)
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def finished(results: Path, trial_id: str) -> Record | None:
    """The trial's record if it is final (completed or diverged); None if absent, not final or unreadable."""
    try:
        record = read_record(record_path(results, trial_id))
    except READ_ERRORS:  # another trial's record under this name, or an edited one, does not count
        return None
    return record if record.status in FINAL_STATUSES else None


CRASHES = 2  # default of execution.crashes


def crashes(results: Path, trial_id: str) -> int:
    """How many earlier starts of the trial ended with their process, leaving no record."""
    try:
        return int(json.loads(started_path(results, trial_id).read_text(encoding="utf-8"))["starts"])
    except (OSError, ValueError, TypeError, KeyError):
        return 0


@contextlib.contextmanager
def _attempt(results: Path, name: str) -> Iterator[None]:
    """Mark trial (or pack) ``name`` started for as long as this process runs it. A process that dies in
    it (``os._exit`` in a plugin, a segfault, the OOM killer) leaves the mark, so the next run knows."""
    path = started_path(results, name)
    atomic_write(path, json.dumps({"starts": crashes(results, name) + 1, "pid": os.getpid()}))
    try:
        yield
    finally:  # a record was written, or an exception (an interrupt) left this process alive: not a crash
        path.unlink(missing_ok=True)


def _crash_looped(spec: TrialSpec, results: Path, limit: int) -> Record | None:
    """The ``failed`` record of a trial that ended its process ``limit`` times, so the sweep gets past it."""
    n = crashes(results, spec.trial_id)
    if n < limit:
        return None
    from harness.engine.checkpoint import load_file

    state, _ = load_file(checkpoint_path(results, spec.run_id), "checkpoint")
    step = state.get("cursor", {}).get("step") if isinstance(state, dict) else None
    where = f"its last checkpoint is at step {step}" if step is not None else "it left no checkpoint"
    record = Record(spec.trial_id, spec.suite, spec.seed, FAILED, spec.config, dict(spec.axes),
                    reason=f"its process ended {n} times while running this trial (exit code unknown: the process "
                           f"that ran it died with it), leaving no record; {where}; recorded failed after "
                           f"execution.crashes = {limit} crashes so that the sweep goes on")
    record.diagnostics["crashes"] = n
    write_record(results, record)
    started_path(results, spec.trial_id).unlink(missing_ok=True)
    return record


EpochNote = Callable[[str, int, int], None]  # (trial_id, epoch, epochs): a sweep's progress display


def execute(spec: TrialSpec, results: Path, stop: Callable[[], bool] = lambda: False,
            flag: StopFlag | None = None, crash_limit: int = CRASHES, on_epoch: EpochNote | None = None,
            threads: int | None = None) -> Record | None:
    """Run ``spec`` and write its record; None when another process holds the trial. A trial that
    already has a final record (finished elsewhere while this one waited) is not run again, nor is one
    that ended its process ``crash_limit`` times (it is recorded failed). It trains under ``threads``
    intra-op threads (None: as many as this process has)."""
    results = Path(results)
    with claim(results, spec.trial_id) as mine:
        if not mine:
            return None
        return (finished(results, spec.trial_id) or _crash_looped(spec, results, crash_limit)
                or _run_claimed(spec, results, stop, flag, on_epoch, threads))


def _run_claimed(spec: TrialSpec, results: Path, stop: Callable[[], bool], flag: StopFlag | None,
                 on_epoch: EpochNote | None = None, threads: int | None = None) -> Record:
    """Run a trial whose lock this process holds, and write its record."""
    with _attempt(results, spec.trial_id):
        return _run_marked(spec, results, stop, flag, on_epoch, threads)


def _run_marked(spec: TrialSpec, results: Path, stop: Callable[[], bool], flag: StopFlag | None,
                on_epoch: EpochNote | None, threads: int | None) -> Record:
    stop_path(results, spec.trial_id).unlink(missing_ok=True)  # left by an earlier stop
    processes = spec.config["resources"]["processes"]
    if processes > 1:
        record = _run_processes(spec, results, processes, flag, threads)
    else:
        from harness.engine import run_trial

        epochs = spec.config["budget"]["epochs"]
        note = (lambda row, epoch: on_epoch(spec.trial_id, epoch, epochs)) if on_epoch else None
        record = run_trial(spec, tracking_dir=tracking_dir(results), checkpointing=checkpointing(spec, results, stop),
                           on_epoch=note, threads=threads)
        write_record(results, record)
    if record.status not in (INTERRUPTED, STOPPED):  # a stopped rung is resumed by its promotion
        remove(checkpoint_path(results, spec.run_id))  # a failed trial starts clean next time
    return record


def execute_unit(unit: list[TrialSpec], results: Path, stop: Callable[[], bool] = lambda: False,
                 flag: StopFlag | None = None, crash_limit: int = CRASHES,
                 on_epoch: EpochNote | None = None, threads: int | None = None) -> list[Record | None]:
    """Run one unit of a sweep, a trial alone or a fused pack (``harness.fused.plan``); each trial's
    record, or None for a trial another process holds.

    A pack takes the locks of all its trials; those held elsewhere or already final stay out, and
    the rest train as one pack, checkpointed under the pack's id (its members'), so that a rerun of
    the same pack resumes it (after a SIGKILL too). A pack whose process died in it ``crash_limit``
    times trains its trials alone from then on, so that a crash is pinned on its own trial. ``on_epoch``
    hears of each epoch a trial alone ends (a pack's trials end together). Every trial and pack trains under
    ``threads`` intra-op threads (None: as many as this process has)."""
    if len(unit) == 1:
        return [execute(unit[0], results, stop, flag, crash_limit, on_epoch, threads)]
    from harness.fused.pack import run_pack
    from harness.fused.plan import pack_id

    results = Path(results)
    out: dict[str, Record | None] = {s.trial_id: None for s in unit}
    with contextlib.ExitStack() as locks:
        todo = []
        for spec in unit:
            if locks.enter_context(claim(results, spec.trial_id)):
                out[spec.trial_id] = finished(results, spec.trial_id) or _crash_looped(spec, results, crash_limit)
                if out[spec.trial_id] is None:
                    todo.append(spec)
        pid = pack_id(todo) if todo else ""
        if len(todo) == 1 or (todo and crashes(results, pid) >= crash_limit):
            for spec in todo:
                out[spec.trial_id] = _run_claimed(spec, results, stop, flag, on_epoch, threads)
        elif todo:
            path = checkpoint_path(results, pid)
            with _attempt(results, pid):
                records = run_pack(todo, path, stop, threads)
                for record in records:
                    write_record(results, record)
                    out[record.trial_id] = record
            if all(r.status != INTERRUPTED for r in records):
                remove(path)
    return [out[s.trial_id] for s in unit]


def checkpointing(spec: TrialSpec, results: Path, stop: Callable[[], bool]) -> Checkpointing:
    """Where the trial's checkpoint (kept by run: see ``TrialSpec.run_id``) and weights go."""
    from harness.engine.loop import Checkpointing

    keep = weights_path(results, spec.trial_id) if spec.config.get("save_weights") else None
    return Checkpointing(checkpoint_path(results, spec.run_id), stop, keep)


def _launch_command(processes: int, spec_file: Path, results: Path, threads: int | None = None) -> list[str]:
    """``accelerate launch`` of this module on one machine; over gloo on CPU, NCCL on GPUs; each process
    under ``threads`` intra-op threads (None: as accelerate chooses)."""
    count = ["--num_cpu_threads_per_process", str(threads)] if threads else []
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *count,
            "--main_process_port", str(_free_port()), "-m", "harness.launch.trial", str(spec_file), str(results),
            *(["--threads", str(threads)] if threads else [])]


def _free_port() -> int:
    """A port for the rendezvous, so that two multi-process trials on one node do not collide."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_processes(spec: TrialSpec, results: Path, processes: int, flag: StopFlag | None,
                   threads: int | None = None) -> Record:
    record_path(results, spec.trial_id).unlink(missing_ok=True)  # not final (see execute): the run replaces it
    with tempfile.TemporaryDirectory(prefix="harness-trial-") as tmp:
        spec_file = Path(tmp) / "spec.json"
        spec_file.write_text(json.dumps(spec.to_dict()))
        with open(Path(tmp) / "log", "w+") as log:
            stop = stop_path(results, spec.trial_id)
            if flag is not None:
                flag.files.append(stop)
                if flag():
                    stop.touch()
            # its own process group, so that nothing of it outlives this process
            child = subprocess.Popen(_launch_command(processes, spec_file, results, threads), stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
            try:
                code = child.wait()
            finally:
                if flag is not None:
                    flag.files.remove(stop)
                if child.poll() is None:
                    os.killpg(child.pid, signal.SIGKILL)
                stop.unlink(missing_ok=True)
            log.seek(0)
            tail = log.read()[-2000:]
    try:
        return read_record(record_path(results, spec.trial_id))
    except READ_ERRORS:
        pass
    record = Record(spec.trial_id, spec.suite, spec.seed, FAILED, spec.config, dict(spec.axes),
                    reason=f"accelerate launch of {processes} processes exited with code {code} and no record")
    record.diagnostics["launch_log"] = tail
    write_record(results, record)
    return record


def main(argv: list[str] | None = None) -> int:
    """One process of a multi-process trial; the main process writes the record."""
    from accelerate import PartialState

    from harness.engine import run_trial

    args = argv or sys.argv[1:]
    threads = int(args[args.index("--threads") + 1]) if "--threads" in args else None
    if args[0] == "--plan":  # `--plan PLAN --index I`: trial I of a plan (the multi-node template)
        from harness.store.records import read_plan_file

        plan = Path(args[1])
        suite, specs = read_plan_file(plan)
        spec, results_dir = specs[int(args[3])], results_of_plan_file(plan)
        setting = (suite.get("execution") or {}).get("threads", 1)
        threads = threads or (None if setting == "auto" else int(setting))  # auto: as accelerate chose
    else:  # `SPEC_JSON RESULTS [--threads N]`
        spec, results_dir = TrialSpec.from_dict(json.loads(Path(args[0]).read_text(encoding="utf-8"))), Path(args[1])
    flag = StopFlag().install()
    stop = stop_path(results_dir, spec.trial_id)
    record = run_trial(spec, tracking_dir=tracking_dir(results_dir),
                       checkpointing=checkpointing(spec, results_dir, lambda: flag() or stop.exists()), threads=threads)
    if PartialState().is_main_process:
        write_record(results_dir, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
