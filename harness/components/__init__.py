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
from harness.components import (  # noqa: F401
    activations, ema, inits, lookahead, losses, norms, optimizer_classes, optimizers, regularizers, sam, schedules, swa,
)

__all__ = ["ACTIVATIONS", "INITS", "LOSSES", "NORMS", "OPTIMIZERS", "REGULARIZERS", "SCHEDULES"]
