"""Errors the command line turns into a one-line message and exit code 2 (bad usage or input)."""
from __future__ import annotations


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2, never a traceback."""


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
