"""What a plugin author imports: ``from harness.api import OPTIMIZERS, REGULARIZERS, Range, Technique``.

- the registries a plugin adds to, with their typed capabilities (``OptimizerCaps`` …);
- ``Range`` (numeric bounds of a setting) and ``ComponentOf`` (a setting naming a component);
- the technique interface: ``Technique`` (override the hooks you need), ``Parts`` (a technique of
  plain functions), ``Callback``, ``Run`` (what hooks see), ``Stop``, ``RegContext``, and
  ``ModelContext`` (what ``configure_model`` changes).

See ``examples/plugins/`` for an optimizer (Lion), a penalty (orthogonality), and wrappers of
third-party optimizers (pytorch-optimizer, schedulefree, prodigyopt).
"""
from harness.models.base import ModelContext
from harness.registries import (
    ACTIVATIONS, DATASETS, INITS, LOSSES, MODELS, NORMS, OPTIMIZERS, REGULARIZERS, SCHEDULES, ModelCaps,
    OptimizerCaps,
)
from harness.registry import ComponentOf, Range
from harness.technique import Callback, Parts, RegContext, Run, Stop, Technique

__all__ = [
    "ACTIVATIONS", "DATASETS", "INITS", "LOSSES", "MODELS", "NORMS", "OPTIMIZERS", "REGULARIZERS", "SCHEDULES",
    "Callback", "ComponentOf", "ModelCaps", "ModelContext", "OptimizerCaps", "Parts", "Range", "RegContext", "Run",
    "Stop", "Technique",
]
