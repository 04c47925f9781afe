"""Optimizers named by import path, with no plugin: ``optimizer: {class: schedulefree.AdamWScheduleFree, lr: 1.0e-3}``.

Any ``torch.optim.Optimizer`` subclass (``torch.optim.NAdam``, ``pytorch_optimizer.Lion``, ...) is taken as
it is. Its ``__init__`` is the schema, read as the registry reads a builder's keyword-only parameters:
every parameter after ``params`` is a setting, its type the annotation (a tensor or callable in a union
dropped, since YAML cannot give one) or else its default's type; a tuple default (``betas=(0.9, 0.999)``)
takes a YAML list of as many numbers. A parameter a suite cannot write (a class, a tensor, a non-finite
default) keeps the class's default and is left out of the record; one that is required fails at load.
``**kwargs`` takes nothing: a key ``__init__`` does not name is refused, as for a registered optimizer.

What the training step must do is read from the class where it shows (``detect_caps``); what does not
show (SAM's closure behind ``closure=None``, a Hessian method's ``create_graph``, full batches) needs a
plugin that registers the class with its capabilities.
"""
from __future__ import annotations

import importlib
import inspect
import math
import types
import typing
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

from harness.errors import ConfigError
from harness.registries import OPTIMIZERS, OptimizerCaps
from harness.registry import Entry, Param, check_value

_SKIP = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
_SCALARS = (bool, int, float, str, type(None))


def has_train_eval(optimizer: Any) -> bool:
    """Whether an optimizer (class or instance) has ``train()`` and ``eval()``: Schedule-Free's switch
    between the point gradients are taken at and the point to evaluate."""
    return callable(getattr(optimizer, "train", None)) and callable(getattr(optimizer, "eval", None))


def detect_caps(cls: type) -> OptimizerCaps:
    """The capabilities an optimizer class shows without running it.

    - ``train_eval``: it has ``train()`` and ``eval()`` (Schedule-Free), so the loop calls them where it
      calls the model's and evaluates at the eval point, as its authors document;
    - ``needs_closure``: the ``closure`` parameter of its ``step`` has no default (``torch.optim.LBFGS``),
      so it cannot step without one; its ``step`` is then taken to return the loss, as L-BFGS's does.

    A ``step(closure=None)`` that still needs a closure (SAM) cannot be told from a plain one: it runs
    as a plain optimizer and fails as it does. A closure step that returns None fails its trial with the
    engine's one-line error naming ``step_returns_loss`` (``harness.engine.step``)."""
    closure = inspect.signature(cls.step).parameters.get("closure")
    required = closure is not None and closure.default is inspect.Parameter.empty and closure.kind not in _SKIP
    return OptimizerCaps(needs_closure=required, train_eval=has_train_eval(cls))


def _import(path: str, where: str) -> type:
    import torch
    module_name, _, attr = path.rpartition(".")
    try:
        found: Any = getattr(importlib.import_module(module_name), attr)
    except Exception as e:  # noqa: BLE001 - a missing package, a typo, or an error inside its import
        raise ConfigError(where, f"cannot import optimizer class {path!r}: {type(e).__name__}: {e}") from None
    if not (isinstance(found, type) and issubclass(found, torch.optim.Optimizer)):
        raise ConfigError(where, f"{path!r} is {found!r}, not a torch.optim.Optimizer subclass")
    return found


def _writable(tp: Any) -> Any:
    """``tp`` as a type a YAML value can have (float, Literal, a fixed tuple, ...), or None where it has none
    (a tensor, a callable, a class)."""
    origin = typing.get_origin(tp)
    if tp is Any or tp in _SCALARS or origin is Literal:
        return tp
    if origin in (typing.Union, types.UnionType):
        options = [o for o in map(_writable, typing.get_args(tp)) if o is not None]
        if not options or options == [type(None)]:  # Optional[Callable]: nothing a suite could give but null
            return None
        return typing.Union[tuple(options)]
    if origin in (tuple, list):
        args = [_writable(a) if a is not Ellipsis else a for a in typing.get_args(tp)]
        return None if None in args else (origin[tuple(args)] if args else origin)
    return None


def _of_default(default: Any) -> Any:
    """The type an unannotated parameter's default says, or None where a suite could not write it."""
    if default is None:
        return Any
    if isinstance(default, bool) or isinstance(default, str):
        return type(default)
    if isinstance(default, int):  # `weight_decay=0` is how Python spells a float default: take a number
        return int | float
    if isinstance(default, float):
        return float if math.isfinite(default) else None
    if isinstance(default, (tuple, list)):
        items = [_of_default(d) for d in default]
        return None if None in items or not items else tuple[tuple(items)]
    return None


def _storable(default: Any) -> bool:
    """Whether a default can go into the resolved config (canonical JSON: finite numbers, no objects)."""
    if isinstance(default, (tuple, list)):
        return all(map(_storable, default))
    return isinstance(default, _SCALARS) and not (isinstance(default, float) and not math.isfinite(default))


def _checked(tp: Any, default: Any) -> Any:
    try:
        return check_value(tp, list(default) if isinstance(default, tuple) else default, "default")
    except ConfigError:  # a default outside its own annotation (`eps: float = None`): kept as the class has it
        return list(default) if isinstance(default, tuple) else default


def _init_params(cls: type, path: str, where: str) -> dict[str, Param]:
    """The settings of ``cls.__init__``: every parameter after ``self`` and ``params``."""
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001 - annotations naming what is only imported for type checkers
        hints = {}
    out: dict[str, Param] = {}
    for p in [p for p in inspect.signature(cls.__init__).parameters.values() if p.kind not in _SKIP][2:]:
        default = p.default
        tp = _writable(hints[p.name]) if p.name in hints else None
        if tp is None and default is not inspect.Parameter.empty:
            tp = _of_default(default)
        if default is inspect.Parameter.empty:
            if tp is None:
                raise ConfigError(where, f"{path}: its required parameter {p.name!r} ({hints.get(p.name, '?')}) "
                                         "cannot be written in a suite; register it through a plugin")
        elif tp is None or not _storable(default):
            continue  # the class's own default applies
        else:  # as a suite's value would be stored (`weight_decay=0` as 0.0, a tuple as a list), so that
            # writing the default out and leaving it out give the same trial id
            default = _checked(tp, default)
        out[p.name] = Param(p.name, tp, default)
    return out


def class_entry(path: str, where: str) -> Entry:
    """The registry entry for the optimizer class at ``path``; ConfigError at ``where`` when it is none."""
    cls = _import(path, where)

    def build(params: Any, **settings: Any) -> torch.optim.Optimizer:
        # YAML has no tuples; optimizers take betas, etas and step sizes as tuples (some check the type)
        return cls(params, **{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})

    build.__module__ = cls.__module__  # the package a record's environment names (harness.engine.environment)
    doc = (inspect.getdoc(cls) or "").split("\n")[0]
    return Entry("optimizer", path, build, _init_params(cls, path, where), doc or f"{path} (by import path)",
                 detect_caps(cls))


OPTIMIZERS.import_paths(class_entry, "any torch.optim.Optimizer subclass by import path, with no plugin "
                                    "(schedulefree.AdamWScheduleFree, torch.optim.NAdam); its __init__ parameters "
                                    "are its settings")
