"""``lookahead``: Lookahead around the trial's optimizer (Zhang, Lucas, Hinton & Ba 2019,
"Lookahead Optimizer: k steps forward, 1 step back", Algorithm 1).

The trial's optimizer takes the fast weights θ through ``k`` steps; then the slow weights φ move
a fraction α of the way toward them and the fast weights restart from there:

    φ ← φ + α (θ − φ),   θ ← φ        (every k optimizer steps; φ_0 = θ_0)

The inner optimizer keeps its state across the synchronizations (the paper's default). Algorithm 1
returns φ, so evaluation runs on the slow weights φ (between synchronizations the fast weights are
part-way through an inner loop). Buffers (BatchNorm statistics) are the trained model's.
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Annotated, Any, ContextManager, Iterator

if TYPE_CHECKING:
    import torch

from harness.components.averaging import alone
from harness.registries import REGULARIZERS
from harness.registry import Range
from harness.technique import RegContext, Run, Technique


class Lookahead(Technique):
    def __init__(self, k: int, alpha: float) -> None:
        self.k, self.alpha = k, alpha
        self.slow: list[torch.Tensor] | None = None
        self.count = 0

    def on_start(self, run: Run) -> None:
        self.params = list(run.trial.model.parameters())
        if self.slow is None:
            self.slow = [p.detach().clone() for p in self.params]
        else:
            self.slow = [s.to(p.device) for s, p in zip(self.slow, self.params)]

    def after_step(self, run: Run) -> None:
        import torch
        self.count += 1
        if self.count % self.k:
            return
        with torch.no_grad():
            fast = [p.data for p in self.params]
            torch._foreach_lerp_(self.slow, fast, self.alpha)  # φ + α(θ − φ)
            torch._foreach_copy_(fast, self.slow)

    def eval_weights(self, run: Run) -> ContextManager[None]:
        return self._on_slow()

    @contextlib.contextmanager
    def _on_slow(self) -> Iterator[None]:
        import torch
        with torch.no_grad():
            fast = [p.detach().clone() for p in self.params]
            torch._foreach_copy_([p.data for p in self.params], self.slow)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_([p.data for p in self.params], fast)

    def state_dict(self) -> dict[str, Any]:
        return {"slow": [s.cpu() for s in self.slow or []], "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.slow, self.count = list(state["slow"]) or None, state["count"]


@REGULARIZERS.register("lookahead", compatible=alone("lookahead"))
def lookahead(ctx: RegContext, *, k: Annotated[int, Range(ge=1)] = 5,
              alpha: Annotated[float, Range(gt=0, le=1)] = 0.5) -> Lookahead:
    """Lookahead: every k steps the slow weights move alpha toward the fast ones, which restart there (Zhang et al. 2019)."""
    return Lookahead(k, alpha)
