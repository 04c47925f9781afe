"""Every registry of the harness, with the typed capabilities its entries declare.

One module, imported by the modules that register components and by the ones that read them, so
that no two component modules need each other (a regularizer's check reads the model registry,
a model reads the activation registry) and no import cycle can form.

A capability is a field of a frozen dataclass: ``@OPTIMIZERS.register("lbfgs", needs_closure=True,
full_batch=True)`` builds ``OptimizerCaps(needs_closure=True, full_batch=True)``; a misspelt keyword is
a ``TypeError`` when the module is imported, not a capability silently ignored. What an entry
cannot do with a trial is its ``compatible(config) -> reason | None``, called while the suite
resolves (``harness.suite.resolve_trial``), so an impossible combination is one load-time error.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from harness.registry import Registry


@dataclass(frozen=True)
class OptimizerCaps:
    """What the training step must do for an optimizer (timm's ``OptimInfo``, as typed data)."""

    needs_closure: bool = False  # step(closure) re-runs forward and backward (L-BFGS, SAM)
    # with a closure: does step() return the loss at its starting point (L-BFGS) or None (SAM)? In
    # the second case the step runs the first forward-backward itself, then calls step(closure).
    step_returns_loss: bool = True
    passes: int = 1  # forward-backward passes per step, for the record (SAM: 2)
    create_graph: bool = False  # backward(create_graph=True): Hessian-vector products (AdaHessian, Sophia-H)
    train_eval: bool = False  # optimizer.train()/.eval() switch the weights (Schedule-Free)
    full_batch: bool = False  # one step per epoch over the whole training split
    has_momentum: bool = False
    # the default search space of a tuned comparison (harness.tune), in a suite's syntax with the
    # optimizer's own keys: {lr: {loguniform: [1.0e-4, 1.0e-1]}}; None: a suite must give one
    space: dict[str, Any] | None = None
    # the optimizer's own parameter-group rules (harness.param_rules), applied after a suite's, from its
    # resolved config: which parameters it steps itself, and which optimizer steps the others (Muon)
    rules: Callable[[dict[str, Any]], list[dict[str, Any]]] | None = None


@dataclass(frozen=True)
class ModelCaps:
    hidden_layers: bool = False  # fully connected hidden layers that take ModelContext.hidden modules
    residual: bool = False  # residual branches that take ModelContext.drop_path
    images: bool = False  # needs (C, H, W) inputs
    min_size: int = 1  # smallest image side it takes
    tokens: bool = False  # reads token ids (B, T) and gives per-position logits (B, vocabulary, T): a language model
    self_init: bool = False  # initializes its own weights (the transformer's N(0, 0.02)): the trial's init is not applied
    # the feature counts its normalization layers see, from the model's config (GroupNorm must divide them)
    norm_widths: Callable[[dict[str, Any]], list[int]] | None = None


@dataclass(frozen=True)
class DatasetCaps:
    in_shape: tuple[int, ...] = ()  # one sample as the model sees it
    num_classes: int = 0
    train_size: int | None = None  # samples of the training split, validation included (slurm.chunk: auto)
    preflight: Callable[[dict[str, Any]], None] | None = None  # raises UsageError when files are missing


@dataclass(frozen=True)
class LossCaps:
    soft_targets: bool = False  # takes probability targets (mixup, CutMix)


@dataclass(frozen=True)
class ActivationCaps:
    gain: str = "linear"  # torch.nn.init.calculate_gain's name for it


@dataclass(frozen=True)
class NoCaps:
    pass


DATASETS = Registry("dataset", DatasetCaps)
MODELS = Registry("model", ModelCaps)
OPTIMIZERS = Registry("optimizer", OptimizerCaps)
SCHEDULES = Registry("schedule", NoCaps)
INITS = Registry("init", NoCaps)
NORMS = Registry("norm", NoCaps)
ACTIVATIONS = Registry("activation", ActivationCaps)
REGULARIZERS = Registry("regularizer", NoCaps)  # every training technique: regularizers, averaging, SAM, ...
LOSSES = Registry("loss", LossCaps)

ALL = (DATASETS, MODELS, INITS, NORMS, ACTIVATIONS, OPTIMIZERS, SCHEDULES, REGULARIZERS, LOSSES)

