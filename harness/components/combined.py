"""Several optimizers stepped as one, for a trial whose parameter-group rules give parameters different
optimizers (Muon for the hidden matrices, AdamW for the rest).

``Combined`` is a ``torch.optim.Optimizer`` (so Accelerate wraps it, and a GradScaler unscales it, as any
other) whose ``param_groups`` are its parts' own group dicts in order: a schedule that sets
``group["lr"]`` sets the part's. ``step`` steps every part on the same gradients; ``state_dict`` holds
each part's under its position and name, and loading one of another set of parts is a ``ValueError``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable

import torch


class Combined(torch.optim.Optimizer):
    """``optimizers`` stepped one after another; ``names`` say which is which in the state dict."""

    def __init__(self, optimizers: list[torch.optim.Optimizer], names: list[str]) -> None:
        # not Optimizer.__init__: it would copy the group dicts, and the parts' must be the ones a schedule sets
        if len(optimizers) != len(names) or not optimizers:
            raise ValueError("Combined needs one name for each of at least one optimizer")
        self.optimizers, self.names = list(optimizers), list(names)
        self.defaults: dict[str, Any] = {}
        self._optimizer_step_pre_hooks: OrderedDict = OrderedDict()
        self._optimizer_step_post_hooks: OrderedDict = OrderedDict()
        self._optimizer_state_dict_pre_hooks: OrderedDict = OrderedDict()
        self._optimizer_state_dict_post_hooks: OrderedDict = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks: OrderedDict = OrderedDict()
        self._optimizer_load_state_dict_post_hooks: OrderedDict = OrderedDict()

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    @property
    def state(self) -> dict[torch.Tensor, Any]:  # type: ignore[override]
        """Every part's per-parameter state, read-only (a parameter belongs to one part)."""
        return {p: s for optimizer in self.optimizers for p, s in optimizer.state.items()}

    def _keys(self) -> list[str]:
        return [f"{i}:{name}" for i, name in enumerate(self.names)]

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> None:  # type: ignore[override]
        if closure is not None:  # each part would re-run forward and backward: refused when the suite loads
            raise TypeError("a combination of optimizers takes no closure")
        for pre in self._optimizer_step_pre_hooks.values():
            pre(self, (), {})
        for optimizer in self.optimizers:
            optimizer.step()
        for post in self._optimizer_step_post_hooks.values():
            post(self, (), {})

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        return {"optimizers": {key: o.state_dict() for key, o in zip(self._keys(), self.optimizers)}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        parts = state_dict.get("optimizers") if isinstance(state_dict, dict) else None
        if not isinstance(parts, dict) or list(parts) != self._keys():
            found = list(parts) if isinstance(parts, dict) else "no parts"
            raise ValueError(f"optimizer state of {found}, expected {self._keys()}")
        for key, optimizer in zip(self._keys(), self.optimizers):
            optimizer.load_state_dict(parts[key])

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        raise NotImplementedError("add a group to one of the parts (Combined.optimizers)")

    def __repr__(self) -> str:
        return "Combined(" + ", ".join(f"{n}: {type(o).__name__}" for n, o in zip(self.names, self.optimizers)) + ")"
