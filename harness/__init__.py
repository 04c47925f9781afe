"""A benchmark harness for neural-network optimizers and regularizers.

The flow: ``load_suite`` → ``Suite.trials`` (TrialSpec) → ``run_trial`` → ``Record`` → report.
"""
from harness.errors import ConfigError, UsageError
from harness.spec import Record, TrialSpec

__version__ = "0.1.0"

__all__ = ["ConfigError", "Record", "TrialSpec", "UsageError", "__version__"]
