"""Errors the command line turns into a one-line message and exit code 2 (bad usage or input)."""
from __future__ import annotations

import errno


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2, never a traceback."""


class StorageError(UsageError):
    """A file the harness must write cannot be: the disk or quota is full, the folder is read-only or
    not a folder. It ends the command (every later write would fail the same way) rather than being
    recorded as the trial's failure; nothing is half-written, so the same command finishes the work
    once the cause is fixed."""


# errno values that say the file system, not the trial, is at fault
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
                            errno.EEXIST, errno.EFBIG, errno.EISDIR})


def storage_error(path: object, e: OSError) -> StorageError:
    """``e`` (one of ``STORAGE_ERRNOS``) while writing ``path``, as the one line the user sees."""
    why = "a file stands where a folder must be" if e.errno in (errno.ENOTDIR, errno.EEXIST) else e.strerror or str(e)
    return StorageError(f"{path}: cannot write here ({why}); nothing was half-written: fix that and run the same "
                        "command again to finish")


def first_line(e: BaseException, limit: int = 200) -> str:
    """``Type: the first line of the message``, for a one-line reason (torch's refusals run to many lines)."""
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:limit]}"


def shorten(text: str, head: int = 600, tail: int = 400) -> str:
    """An error line of readable length: a value of 200,000 characters (an unknown name, a key) is not
    echoed whole; its start and the end of the line (where the suggestion is) stay."""
    if len(text) <= head + tail + 50:
        return text
    return f"{text[:head]} [... {len(text) - head - tail} characters left out ...] {text[-tail:]}"


class ConfigError(UsageError):
    """A problem at a key path of a suite; ``file`` is filled in by the loader."""

    def __init__(self, path: str, message: str, file: str | None = None) -> None:
        self.path, self.message, self.file = path, message, file
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ": ".join(p for p in (self.file, self.path) if p)
        return f"{where}: {self.message}" if where else self.message

    def in_file(self, file: str) -> "ConfigError":
        return ConfigError(self.path, self.message, file)
