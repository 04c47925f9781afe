"""Records on disk: ``<results>/<suite>/trials/<trial_id>.json``, one file per trial (the names
of a results folder: ``harness.layout``).

Writes are atomic (a temp file in the same folder, fsync, rename), so a killed run leaves either
the whole record or none. A record that does not parse is reported and treated as missing, so it
is run again and never silently aggregated.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from harness import layout
from harness.errors import STORAGE_ERRNOS, ConfigError, UsageError, storage_error
from harness.layout import record_path
from harness.spec import FINAL_STATUSES, Record, TrialSpec, trial_id_of

_TMP_PREFIX = ".tmp-"


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: put it straight back
    os.umask(mask)
    return mask


def make_folder(path: Path) -> None:
    """``mkdir -p``; a folder that cannot be made (read-only, a file in the way) is a ``StorageError``."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno not in STORAGE_ERRNOS:
            raise
        raise storage_error(path, e) from None


def atomic_write(path: Path, content: str | bytes) -> None:
    """Temp file in the same folder, fsync, rename: readers see the old file or the whole new one.
    A full or read-only file system is a ``StorageError`` naming the file, with no temp file left."""
    make_folder(path.parent)
    try:
        _write_replace(path, content)
    except OSError as e:
        if e.errno not in STORAGE_ERRNOS:
            raise
        raise storage_error(path, e) from None


def open_append(path: Path) -> Any:
    """``path`` opened to append (made if missing), never through a symlink: a lock file or the job list
    planted as a link would otherwise write into the link's target."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UsageError(f"{path}: a symbolic link where the harness keeps its own file; remove it") from None
        raise
    return os.fdopen(fd, "a", encoding="utf-8")


def save_figure(fig: Any, path: Path, **savefig: Any) -> Path:
    """A matplotlib figure rendered in memory and written by ``atomic_write``: never through a file (a
    symlink planted in a results folder, say) already at ``path``, never half a PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".") or "png", **savefig)
    atomic_write(path, buffer.getvalue())
    return path


def _write_replace(path: Path, content: str | bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
    try:
        # mkstemp makes the file 0600 whatever the umask: give it the mode a plain open() would, so that
        # colleagues on a shared file system read records, plans and reports as they read the figures
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb" if isinstance(content, bytes) else "w", encoding=None if isinstance(content, bytes)
                       else "utf-8") as f:  # every report holds ± and —, whatever the locale's encoding
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_record(results: Path, record: Record) -> Path:
    path = record_path(results, record.trial_id)
    atomic_write(path, record.to_json())
    return path


MAX_RECORD_BYTES = 64 * 2**20  # a record of 10,000 epochs is a few MB; beyond this it is not one the harness wrote


def read_regular(path: Path, limit: int = MAX_RECORD_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; anything else (a FIFO, a device, a folder, a
    huge file) is a ``ValueError`` before a byte is read, so that a planted ``x.json`` can neither hang a
    scan nor read until memory runs out. Opened non-blocking: opening a FIFO does not wait for a writer."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if info.st_size > limit:
            raise ValueError(f"{info.st_size} bytes, more than the {limit} a harness file holds")
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(limit + 1)
    finally:
        os.close(fd)


def read_record(path: Path) -> Record:
    """The record stored at ``path``, trusted only when it is the trial its name says: its ``trial_id`` is the
    file's name and the hash of its own config and seed. A record edited by hand (configs or seeds swapped
    between files, say) or saved under another trial's name is a ``ValueError`` saying so: it is reported,
    left out of every table, and run again."""
    record = Record.from_json(read_regular(path))
    if record.trial_id != Path(path).stem:
        raise ValueError(f"holds trial {record.trial_id}, not {Path(path).stem}")
    if not layout.SUITE_NAME.fullmatch(record.suite):  # it names folders (diagnose): data, checked before use
        raise ValueError(f"suite: {record.suite[:120]!r} is not a suite's name")
    actual = trial_id_of(record.config, record.seed)
    if actual != record.trial_id:
        raise ValueError(f"edited: its config and seed hash to {actual}, not to its trial_id {record.trial_id}")
    return record


READ_ERRORS = (ValueError, TypeError, KeyError, OSError)  # what reading a damaged, foreign or edited file raises


@dataclass
class Scan:
    records: dict[str, Record] = field(default_factory=dict)
    corrupt: dict[Path, str] = field(default_factory=dict)  # path -> why it did not parse

    def done(self, trial_id: str) -> bool:
        r = self.records.get(trial_id)
        return r is not None and r.status in FINAL_STATUSES


def scan(results: Path) -> Scan:
    """Every record under ``results``; files that do not parse are listed, not skipped silently."""
    out = Scan()
    folder = layout.trials_dir(results)
    if not folder.is_dir():
        return out
    # names sorted as strings: sorting 10,000 Path objects alone costs half a second
    names = sorted(e.name for e in os.scandir(folder) if e.name.endswith(".json") and not e.name.startswith("."))
    for path in (folder / name for name in names):
        try:
            record = read_record(path)
        except READ_ERRORS as e:
            out.corrupt[path] = f"{type(e).__name__}: {e}"
            continue
        out.records[record.trial_id] = record
    return out


def clean_temp(results: Path) -> None:
    """Remove temp files a killed writer left behind (never a complete record)."""
    for path in layout.trials_dir(results).glob(f"{_TMP_PREFIX}*"):
        path.unlink(missing_ok=True)


def write_plan(results: Path, suite: dict[str, Any], trials: Iterable[TrialSpec]) -> Path:
    path = layout.plan_path(results)
    atomic_write(path, json.dumps({"suite": suite, "trials": [t.to_dict() for t in trials]}, indent=1))
    return path


def write_plan_file(results: Path, suite: dict[str, Any], trials: Iterable[TrialSpec]) -> Path:
    """An immutable copy of the plan, named by its content (``plans/plan-<sha>.json``): the array
    tasks of a submission index into it, so editing the suite and resubmitting cannot change the
    trial a running task is given."""
    text = json.dumps({"suite": suite, "trials": [t.to_dict() for t in trials]}, indent=1)
    path = layout.plan_file_path(results, hashlib.sha256(text.encode()).hexdigest()[:12])
    if not path.exists():
        atomic_write(path, text)
    return path


def read_plan_file(path: Path) -> tuple[dict[str, Any], list[TrialSpec]]:
    """A plan (``plan.json``, or a submission's ``plans/plan-*.json``): its suite and trials. A file that does
    not parse, has another shape, or whose trials were edited (an id that does not match its config) is
    bad input: a ``UsageError`` naming the file and what is wrong."""
    from harness.errors import UsageError

    try:
        data = json.loads(read_regular(Path(path)))
        if not isinstance(data, dict) or not isinstance(data.get("suite"), dict) or not isinstance(data.get("trials"), list):
            raise ValueError("expected a mapping with a suite (a mapping) and trials (a list)")
        suite, trials = data["suite"], [TrialSpec.from_dict(t) for t in data["trials"]]
        check_plan_claims(suite, [t.config for t in trials])
        return suite, trials
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        what = e.strerror if isinstance(e, OSError) else f"{type(e).__name__}: {e}"
        raise UsageError(f"{path}: not a plan the harness wrote ({what})") from None
    except ConfigError as e:
        raise UsageError(f"{path}: its claims are not as the harness wrote them ({e})") from None


def check_plan_claims(suite: dict[str, Any], configs: list[dict[str, Any]]) -> None:
    """A plan's claims checked again as a suite's are (``verify`` and ``report`` judge them): the plan
    keeps them resolved, with null for what a claim does not give."""
    from harness.claims import parse_claims

    claims = suite.get("claims")
    if claims:
        given = [{k: v for k, v in c.items() if v is not None} if isinstance(c, dict) else c for c in claims] \
            if isinstance(claims, list) else claims
        suite["claims"] = parse_claims(given, list(suite.get("axes") or []), configs)


def read_plan(results: Path) -> tuple[dict[str, Any], list[TrialSpec]] | None:
    path = layout.plan_path(results)
    if not path.exists():
        return None
    return read_plan_file(path)
