"""Run trials on this machine: in this process (one worker) or in N worker processes.

Each worker writes the records of the trials it runs. A worker that dies (a segfault, the OOM
killer) takes no other trial with it: the parent records the trial it was running as ``failed``
with the exit code and starts a replacement, so the sweep goes on.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import sys
import time
from pathlib import Path
from collections import Counter
from typing import Any, TextIO

from harness.spec import COMPLETED, FAILED, INTERRUPTED, THREADS_CHANGED, Record, TrialSpec
from harness.store import write_record
from harness.errors import StorageError, UsageError
from harness.launch.trial import CRASHES, claim, execute_unit, finished
from harness.layout import started_path
from harness.processes import die_with_parent


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def threads_for(setting: int | str, workers: int = 1) -> int:
    """The intra-op threads each trial runs under: ``execution.threads``, or under ``auto`` this worker's share
    of the cores (a fixed count makes a trial's numbers independent of ``--workers``: see the README)."""
    return max(1, cpu_count() // max(workers, 1)) if setting == "auto" else int(setting)


def _fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def describe_outcome(record: Record) -> str:
    """A trial's end on one line: its status, test accuracy, training and evaluation time, and why (if not completed)."""
    outcome = record.status
    if record.final.get("test_acc") is not None:
        outcome += f" test_acc={record.final['test_acc']:.4f}"
    seconds = (record.timing.get("train_s") or 0) + (record.timing.get("eval_s") or 0)
    if seconds:
        outcome += f" in {seconds:.1f} s"
    if record.reason:
        outcome += f" ({record.reason.splitlines()[0][:120]})"
    return outcome


def threads_notes(record: Record) -> list[str]:
    """The record's warnings that it resumed under another thread count than its checkpoint's (printed)."""
    return [w for w in (record.diagnostics or {}).get("warnings") or [] if str(w).startswith(THREADS_CHANGED)]


class Progress:
    """Where a sweep stands. On a terminal: a live bar (done/total, ETA, the trials running with their epoch,
    failures so far) with a line above it for each trial that did not complete. Elsewhere (a log, a SLURM
    task's output): one line per trial start and end, with done/total, the outcome and an ETA."""

    def __init__(self, total: int, workers: int, stream: TextIO | None = None, live: bool | None = None) -> None:
        # sys.stderr as it is now, not as it was at import (a test's capture may have replaced it since)
        self.total, self.workers, self.stream = total, workers, stream or sys.stderr
        self.done = 0
        self.durations: list[float] = []
        self.started: dict[str, float] = {}
        self.epochs: dict[str, str] = {}  # running trial -> "epoch/epochs"
        self.bad: Counter = Counter()  # statuses other than completed, so far
        self.t0 = time.perf_counter()
        self.live = _terminal(self.stream) if live is None else live
        self.bar = None
        if self.live:
            from tqdm import tqdm

            self.bar = tqdm(total=total, file=self.stream, unit="trial", dynamic_ncols=True, smoothing=0.1,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]{postfix}")

    def _say(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def _show(self) -> None:
        running = ", ".join(f"{tid[:6]} {self.epochs.get(tid, 'starting')}" for tid in list(self.started)[:4])
        more = f" +{len(self.started) - 4}" if len(self.started) > 4 else ""
        bad = "".join(f" · {n} {status}" for status, n in sorted(self.bad.items()))
        self.bar.set_postfix_str(f"running {len(self.started)}" + (f" ({running}{more})" if running else "") + bad)

    def start(self, spec: TrialSpec) -> None:
        self.started[spec.trial_id] = time.perf_counter()
        if self.bar is not None:
            self._show()
        else:
            self._say(f"[{self.done}/{self.total}] start {spec.trial_id}  {spec.label()}")

    def epoch(self, trial_id: str, epoch: int, epochs: int) -> None:
        """A running trial ended an epoch (shown on the live bar only)."""
        self.epochs[trial_id] = f"epoch {epoch}/{epochs}"
        if self.bar is not None:
            self._show()

    def skip(self, spec: TrialSpec) -> None:
        self.done += 1
        self.started.pop(spec.trial_id, None)
        line = f"[{self.done}/{self.total}] skip  {spec.trial_id}  running in another process (its lock is held)"
        if self.bar is not None:
            self._show()
            self.bar.update(1)
        self._say(line)

    def finish(self, spec: TrialSpec, record: Record) -> None:
        self.done += 1
        took = time.perf_counter() - self.started.pop(spec.trial_id, time.perf_counter())
        self.epochs.pop(spec.trial_id, None)
        self.durations.append(took)
        if record.status != COMPLETED:
            self.bad[record.status] += 1
        left = self.total - self.done
        eta = sum(self.durations) / len(self.durations) * left / max(min(self.workers, left), 1)
        outcome = describe_outcome(record)
        for note in threads_notes(record):  # shown whatever the display: it says how the numbers were computed
            self._say(f"{spec.trial_id}  {note}")
        if self.bar is not None:  # the bar has the count and ETA: a line only for what went wrong
            self._show()
            self.bar.update(1)
            if record.status != COMPLETED:
                self._say(f"{record.status:<11} {spec.trial_id}  {spec.label()}  {outcome}")
            return
        tail = f" · ETA {_fmt_time(eta)}" if left else f" · all done in {_fmt_time(time.perf_counter() - self.t0)}"
        self._say(f"[{self.done}/{self.total}] done  {spec.trial_id}  {outcome}  {took:.1f}s{tail}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            bad = ", ".join(f"{n} {status}" for status, n in sorted(self.bad.items()))
            print(f"{self.done}/{self.total} trials in {_fmt_time(time.perf_counter() - self.t0)}"
                  + (f" ({bad})" if bad else ""), file=self.stream, flush=True)


MIN_COLUMNS = 40  # narrower, the bar shows nothing useful (a pseudo-terminal reporting 0 columns showed nothing at all)


def _terminal(stream: TextIO) -> bool:
    """A live display only on an interactive terminal at least ``MIN_COLUMNS`` wide (not a log file, a pipe,
    SLURM output, TERM=dumb, or a pseudo-terminal that reports no width): elsewhere, a line per trial."""
    try:
        return (stream.isatty() and os.environ.get("TERM", "") != "dumb"
                and os.get_terminal_size(stream.fileno()).columns >= MIN_COLUMNS)
    except (AttributeError, ValueError, OSError):  # a closed or odd stream
        return False


def _failed(spec: TrialSpec, reason: str, status: str = FAILED) -> Record:
    return Record(spec.trial_id, spec.suite, spec.seed, status, spec.config, dict(spec.axes), reason=reason)


def _interrupted(unit: list[TrialSpec], results: Path, reason: str) -> None:
    """Record the unit's unfinished trials ``interrupted``: only under each trial's lock, and never over a
    final record (another process may hold the trial, or may just have finished it)."""
    for spec in unit:
        with claim(results, spec.trial_id) as mine:
            if mine and finished(results, spec.trial_id) is None:
                write_record(results, _failed(spec, reason, INTERRUPTED))


def gpu_slots(workers: int, gpus: int, per_gpu: int | None) -> list[int | None]:
    """The GPU of each worker: spread round-robin over the node's GPUs, or ``per_gpu`` workers
    packed on each GPU in turn; None everywhere on a CPU-only node."""
    if gpus == 0:
        return [None] * workers
    if per_gpu is None:
        return [i % gpus for i in range(workers)]
    if workers > gpus * per_gpu:
        raise UsageError(f"--workers {workers} with --workers-per-gpu {per_gpu} needs {-(-workers // per_gpu)} "
                         f"GPUs; this node has {gpus}")
    return [i // per_gpu for i in range(workers)]


def run_local(specs: list[TrialSpec], results: Path, workers: int = 1, stream: TextIO | None = None,
              plugins: list[str] | None = None, slots: list[int | None] | None = None,
              fuse: str | int = "off", crash_limit: int = CRASHES, threads: int | str = 1) -> dict[str, str]:
    """Run ``specs``, write one record each under ``results``; returns trial_id → status.
    ``plugins`` are imported in each worker process, as they were in this one; ``slots`` gives
    each worker's GPU (``gpu_slots``); ``fuse`` packs compatible trials (``harness.fused.plan``),
    each pack one unit of work; a trial that ended its process ``crash_limit`` times is recorded failed;
    each trial runs under ``threads`` intra-op threads (``threads_for``)."""
    from harness.fused.plan import plan_packs

    slots = slots or [None] * max(workers, 1)
    units, _ = plan_packs(specs, fuse, workers, cuda=any(s is not None for s in slots))
    workers = max(1, min(workers, len(units)))  # no idle processes: at most one per unit of work
    slots = slots[:workers]
    progress = Progress(len(specs), workers, stream)
    count = threads_for(threads, workers)
    try:
        if workers <= 1 and not any(s is not None for s in slots):
            return _run_inline(units, results, progress, crash_limit, count)
        return _run_pool(units, results, workers, progress, list(plugins or []), slots, crash_limit, count)
    finally:
        progress.close()


def _report(unit: list[TrialSpec], records: list[Record | None], progress: Progress, statuses: dict[str, str]) -> None:
    for spec, record in zip(unit, records):
        if record is None:
            statuses.setdefault(spec.trial_id, "skipped")
            progress.skip(spec)
            continue
        statuses[spec.trial_id] = record.status
        progress.finish(spec, record)


def _run_inline(units: list[list[TrialSpec]], results: Path, progress: Progress, crash_limit: int,
                threads: int) -> dict[str, str]:
    statuses: dict[str, str] = {}
    for unit in units:
        for spec in unit:
            progress.start(spec)
        try:
            records = execute_unit(unit, results, crash_limit=crash_limit, threads=threads,
                                   on_epoch=progress.epoch if progress.live else None)
        except KeyboardInterrupt:
            _interrupted(unit, results, "interrupted before the trial finished; resumes from its last epoch's "
                                        "checkpoint")
            raise
        _report(unit, records, progress, statuses)
    return {k: v for k, v in statuses.items() if v != "skipped"}


def _worker(tasks: Any, events: Any, results: str, threads: int, plugins: list[str], gpu: int | None,
            crash_limit: int, live: bool) -> None:
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what an interrupt means
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)  # before torch starts CUDA: this worker sees one GPU
    import torch

    torch.set_num_threads(threads)  # each trial sets it again (harness.engine.runtime.torch_defaults)
    from harness.plugins import load_plugins

    load_plugins(plugins)

    while True:
        item = tasks.get()
        if item is None:
            return
        index, unit = item
        events.put(("start", os.getpid(), index))
        note = (lambda tid, epoch, epochs: events.put(("epoch", os.getpid(), index, tid, epoch, epochs))) if live else None
        try:
            records = execute_unit([TrialSpec.from_dict(d) for d in unit], Path(results), crash_limit=crash_limit,
                                   on_epoch=note, threads=threads)
        except StorageError as e:  # the runner stops the sweep and says why
            events.put(("storage", os.getpid(), index, str(e)))
            return
        events.put(("done", os.getpid(), index, [r.to_json() if r else None for r in records]))


def _stop_workers(procs: dict[int, Any]) -> None:
    for p in procs.values():
        if p.is_alive():
            p.kill()
        p.join()


def _run_pool(units: list[list[TrialSpec]], results: Path, workers: int, progress: Progress,
              plugins: list[str], slots: list[int | None], crash_limit: int, threads: int) -> dict[str, str]:
    ctx = mp.get_context("spawn")  # fork after torch has threads is unsafe
    tasks, events = ctx.Queue(), ctx.Queue()
    for i, unit in enumerate(units):
        tasks.put((i, [spec.to_dict() for spec in unit]))
    for _ in range(workers):
        tasks.put(None)

    slot_of: dict[int, int | None] = {}  # pid -> GPU; a replacement worker takes the dead one's GPU

    def spawn(gpu: int | None) -> Any:
        # Not daemonic: a trial may start DataLoader worker processes of its own (loader.workers),
        # which daemonic processes cannot. Workers still end with the runner (PR_SET_PDEATHSIG)
        # and are killed below if the runner leaves early.
        p = ctx.Process(target=_worker, args=(tasks, events, str(results), threads, plugins, gpu, crash_limit,
                                                   progress.live))
        p.start()
        slot_of[p.pid] = gpu
        return p

    procs = {p.pid: p for p in (spawn(gpu) for gpu in slots)}
    running: dict[int, int] = {}  # pid -> index of the unit it runs
    statuses: dict[str, str] = {}

    def handle(event: tuple) -> None:
        kind, pid, index = event[:3]
        if kind == "epoch":
            progress.epoch(*event[3:])
            return
        if kind == "start":
            running[pid] = index
            for spec in units[index]:
                progress.start(spec)
            return
        running.pop(pid, None)
        if kind == "storage":
            raise StorageError(event[3])
        _report(units[index], [Record.from_json(r) if r else None for r in event[3]], progress, statuses)

    def drain(timeout: float) -> bool:
        got = False
        while True:
            try:
                handle(events.get(timeout=timeout))
                got, timeout = True, 0.05
            except queue.Empty:
                return got

    try:
        while procs:
            if drain(0.5):
                continue
            for pid, p in list(procs.items()):
                if p.is_alive():
                    continue
                p.join()
                drain(0.2)  # a worker's last events can land after it has exited
                del procs[pid]
                if pid in running:
                    for spec in units[running.pop(pid)]:
                        started_path(results, spec.trial_id).unlink(missing_ok=True)  # its crash is recorded here
                        record = _failed(spec, f"worker process died (exit code {p.exitcode}) while running this trial")
                        write_record(results, record)
                        statuses[spec.trial_id] = record.status
                        progress.finish(spec, record)
                    replacement = spawn(slot_of[pid])
                    procs[replacement.pid] = replacement
        drain(0.2)
    except KeyboardInterrupt:
        _stop_workers(procs)  # first the workers, so that their locks are free to take
        for index in running.values():
            _interrupted(units[index], results, "interrupted before the trial finished")
        raise
    except StorageError:
        # No record can be written: stop every worker, and take back the start marks of the trials they ran
        # (removing needs no space), so that the rerun after the disk is fixed does not count them as crashes.
        _stop_workers(procs)
        from harness.fused.plan import pack_id

        for index in running.values():
            names = [spec.trial_id for spec in units[index]] + ([pack_id(units[index])] if len(units[index]) > 1 else [])
            for name in names:
                started_path(results, name).unlink(missing_ok=True)
        raise
    finally:
        for p in procs.values():
            if p.is_alive():
                p.kill()
    for spec in (spec for unit in units for spec in unit):
        if spec.trial_id not in statuses:  # a worker died between taking a trial and announcing it
            record = _failed(spec, "a worker took this trial and exited before reporting it")
            write_record(results, record)
            statuses[spec.trial_id] = record.status
    return statuses
