"""Training losses over logits and integer (or soft, summing to one) targets."""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

if TYPE_CHECKING:
    from torch import nn

from harness.registries import LOSSES
from harness.registry import Range


@LOSSES.register("cross_entropy", soft_targets=True)
def cross_entropy(*, label_smoothing: Annotated[float, Range(ge=0, lt=1)] = 0.0) -> nn.Module:
    """Softmax cross-entropy, −Σ y log softmax(z)."""
    from torch import nn
    return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
