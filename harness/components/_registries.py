"""The registry instances, apart from their modules so that modules can refer to each other."""
from harness.registry import Registry

OPTIMIZERS = Registry("optimizer")
SCHEDULES = Registry("schedule")
INITS = Registry("init")
NORMS = Registry("norm")
ACTIVATIONS = Registry("activation")
REGULARIZERS = Registry("regularizer")
LOSSES = Registry("loss")
