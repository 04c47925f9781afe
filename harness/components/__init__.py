"""Component registries. Importing this package registers every built-in component."""
from harness.registries import (
    ACTIVATIONS,
    INITS,
    LOSSES,
    NORMS,
    OPTIMIZERS,
    REGULARIZERS,
    SCHEDULES,
)
from harness.components import activations, inits, losses, norms, optimizers, regularizers, schedules  # noqa: F401

__all__ = ["ACTIVATIONS", "INITS", "LOSSES", "NORMS", "OPTIMIZERS", "REGULARIZERS", "SCHEDULES"]
