"""A decoder-only transformer language model (Radford et al. 2018, 2019; Vaswani et al. 2017).

Tokens → embedding + learned positions → ``depth`` blocks → final LayerNorm → a linear head over the
vocabulary (tied to the embedding by default, Press & Wolf 2017). A block is causal multi-head
self-attention then a 4×-wide GELU MLP, each in a residual branch:

- ``pre_ln`` (the default; GPT-2, Xiong et al. 2020): x + f(LN(x)), which trains without warm-up;
- ``post_ln`` (the original transformer): LN(x + f(x)), whose gradients near the output are large at
  initialization, which is why it needs learning-rate warm-up (Xiong et al. 2020, "On Layer
  Normalization in the Transformer Architecture"). With ``post_ln`` there is no final LayerNorm.

``dropout`` applies to the attention weights and to each branch's output before the residual sum
(``attn_dropout``, ``resid_dropout``); stochastic depth (``regularizers: [stochastic_depth]``) drops
whole blocks, linearly more deeply (Huang et al. 2016), as layer drop (Fan et al. 2019). The output is
(batch, vocabulary, context): the layout ``F.cross_entropy`` takes for a target per position, so the
trial's loss, label smoothing and accuracy apply per token. Weights start at N(0, 0.02) with the
residual projections scaled by 1/√(2·depth) (GPT-2); the trial's ``init`` setting is not applied to a
model that initializes itself (``self_init``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

if TYPE_CHECKING:
    from torch import nn

from harness.models.base import MODELS, ModelContext
from harness.registry import Range

Dropout = Annotated[float, Range(ge=0, lt=1)]


def _tokens(config: dict) -> str | None:
    if config["dataset"]["name"] != "text":
        return f"model 'transformer' reads token sequences: use dataset text, not {config['dataset']['name']!r}"
    if config["norm"]["name"] != "none":
        return f"the transformer has its own LayerNorms: norm {config['norm']['name']!r} does not apply (use none)"
    if config["model"]["width"] % config["model"]["heads"]:
        return f"transformer width {config['model']['width']} is not divisible by heads {config['model']['heads']}"
    return None


@MODELS.register("transformer", compatible=_tokens, residual=True, tokens=True, self_init=True)
def transformer(
    ctx: ModelContext, *, width: Annotated[int, Range(gt=0)] = 128, depth: Annotated[int, Range(gt=0)] = 2,
    heads: Annotated[int, Range(gt=0)] = 4, layer_norm: Literal["pre_ln", "post_ln"] = "pre_ln",
    tied: bool = True, attn_dropout: Dropout = 0.0, resid_dropout: Dropout = 0.0,
) -> nn.Module:
    """Decoder-only transformer language model: causal self-attention blocks, pre- or post-LN (Xiong et al. 2020)."""
    from harness.models.gpt import Transformer
    (context,) = ctx.in_shape
    return Transformer(ctx.num_classes, context, width, depth, heads, attn_dropout, resid_dropout,
                       layer_norm == "pre_ln", tied, ctx.drop_path)
