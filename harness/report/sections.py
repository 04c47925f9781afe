"""What every part of a report is made of: a ``Section`` (text, tables, figures) and the
``Drawing`` pool that draws its figures while the tables are built."""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.processes import die_with_parent
from harness.report.tables import Table


@dataclass
class Section:
    """A titled part of the report: text, tables and figures, rendered by every format."""

    title: str
    text: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[Path, str]] = field(default_factory=list)  # (png, caption)
    pending: list[tuple[Future, str]] = field(default_factory=list)  # figures being drawn: (Path | None, caption)

    def resolve(self) -> None:
        """Wait for the figures being drawn; one with nothing to show (None) is left out."""
        drawn = [(f.result(), caption) for f, caption in self.pending]
        self.figures += [(path, caption) for path, caption in drawn if path is not None]
        self.pending = []


class Drawing:
    """Draws figures in forked worker processes while this one builds the tables: drawing and PNG
    encoding are most of a large report's time, and the figures are independent of each other.
    With ``jobs=1`` (or no fork on this platform) each figure is drawn on the spot."""

    def __init__(self, jobs: int) -> None:
        fork = "fork" in multiprocessing.get_all_start_methods()
        # the workers die with this process: a SIGKILL of `harness run` during its report leaves none behind
        self.pool = (ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork"),
                                         initializer=die_with_parent, initargs=(os.getpid(),))
                     if jobs > 1 and fork else None)

    def __call__(self, plot: Callable[..., Path | None], *args: Any, **kwargs: Any) -> Future:
        if self.pool is not None:
            return self.pool.submit(plot, *args, **kwargs)
        done: Future = Future()
        done.set_result(plot(*args, **kwargs))
        return done

    def __enter__(self) -> "Drawing":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def default_jobs() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, 8))


def slug(axis: str) -> str:
    """A file-name-safe form of an axis name."""
    return "".join(ch if ch.isalnum() else "_" for ch in axis)
