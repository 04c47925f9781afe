"""Soft orthogonality, an example regularizer plugin: ``--plugin examples/plugins/orthogonal.py``.

Follows the orthogonal regularization of Brock et al. 2017, "Neural Photo Editing with
Introspective Adversarial Networks" (ICLR), and the soft orthogonality (SO) of Bansal et al. 2018,
"Can We Gain More from Orthogonality Regularizations in Training Deep Networks?" (NeurIPS). The
term added to the training loss is

    strength · Σ_W ‖W Wᵀ − I‖²_F

over the weight matrices W of the model: Linear weights (out, in) and convolution kernels
reshaped to (out, in·k·k). Biases and normalization parameters are left out: they are vectors,
not maps whose rows could be orthogonal. Its gradient is

    ∂/∂W = 4 · strength · (W Wᵀ − I) W.

Where W has more rows than columns (m > n), the smaller n×n Gram WᵀW is used instead:
‖WᵀW − I_n‖² and ‖WWᵀ − I_m‖² differ only by the constant m − n (both are Σσ⁴ − 2Σσ² plus the
size of I, over W's singular values σ), so the gradient is the same, W(WᵀW − I) = (WWᵀ − I)W; but
the smaller Gram costs min(m, n)² memory and reaches 0 exactly when W's columns are orthonormal,
which is as orthogonal as a tall W can be (WWᵀ has rank n < m and cannot be I_m).
"""
from __future__ import annotations

from typing import Annotated

import torch
from torch import nn

from harness.api import REGULARIZERS, Parts, Range, RegContext

__version__ = "1.0"

# Transposed convolutions are left out: their kernels are (in, out, ...), so (out, -1) would mix axes.
_MATRIX_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _matrices(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight.reshape(m.weight.shape[0], -1) for m in model.modules()
            if isinstance(m, _MATRIX_LAYERS) and m.weight.requires_grad]


def orthogonality_penalty(model: nn.Module, strength: float) -> torch.Tensor:
    """strength · Σ ‖W Wᵀ − I‖²_F over Linear and conv weights, with the smaller Gram of each W."""
    mats = _matrices(model)
    if strength == 0 or not mats:
        return torch.zeros((), device=mats[0].device if mats else None)
    total = mats[0].new_zeros(())
    for w in mats:
        gram = w.T @ w if w.shape[0] > w.shape[1] else w @ w.T
        eye = torch.eye(gram.shape[0], device=gram.device, dtype=gram.dtype)
        total = total + (gram - eye).square().sum()
    return strength * total


@REGULARIZERS.register("orthogonal")
def orthogonal(ctx: RegContext, *, strength: Annotated[float, Range(ge=0)] = 1e-4) -> Parts:
    """Soft orthogonality strength * sum ||W W^T - I||_F^2 over weights (Brock et al. 2017; Bansal et al. 2018)."""
    if strength == 0:
        return Parts()  # no penalty: no Gram matrices built every step for nothing
    return Parts(penalty=lambda model: orthogonality_penalty(model, strength))
