"""Launchers: where trials run."""
from harness.launch.local import cpu_count, run_local

__all__ = ["cpu_count", "run_local"]
