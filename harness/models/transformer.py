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

import math
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

from harness.models.base import MODELS, ModelContext
from harness.registry import Range

Dropout = Annotated[float, Range(ge=0, lt=1)]


class _Block(nn.Module):
    def __init__(self, width: int, heads: int, attn_dropout: float, resid_dropout: float, pre_ln: bool,
                 drop: float) -> None:
        super().__init__()
        self.heads, self.pre_ln, self.attn_dropout, self.drop = heads, pre_ln, attn_dropout, drop
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.fc, self.out = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)
        self.resid = nn.Dropout(resid_dropout)

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        b, t, w = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_dropout if self.training else 0.0,
                                           is_causal=True)
        return self.resid(self.proj(y.transpose(1, 2).reshape(b, t, w)))

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.resid(self.out(F.gelu(self.fc(x))))

    def _branch(self, y: torch.Tensor) -> torch.Tensor:
        """Stochastic depth on a residual branch: dropped per sample in training, kept (scaled by its
        survival probability's inverse while training) so that evaluation uses every block."""
        if not self.training or self.drop == 0:
            return y
        keep = (torch.rand(y.shape[0], 1, 1, device=y.device) >= self.drop).to(y.dtype)
        return y * keep / (1 - self.drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_ln:
            x = x + self._branch(self._attention(self.ln1(x)))
            return x + self._branch(self._mlp(self.ln2(x)))
        x = self.ln1(x + self._branch(self._attention(x)))
        return self.ln2(x + self._branch(self._mlp(x)))


class Transformer(nn.Module):
    def __init__(self, vocab: int, context: int, width: int, depth: int, heads: int, attn_dropout: float,
                 resid_dropout: float, pre_ln: bool, tied: bool, drop_path: float) -> None:
        super().__init__()
        self.embed, self.position = nn.Embedding(vocab, width), nn.Embedding(context, width)
        rates = [drop_path * (i + 1) / depth for i in range(depth)]  # linear decay of survival (Huang et al.)
        self.blocks = nn.ModuleList(_Block(width, heads, attn_dropout, resid_dropout, pre_ln, r) for r in rates)
        self.ln = nn.LayerNorm(width) if pre_ln else nn.Identity()
        self.head = nn.Linear(width, vocab, bias=False)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
        for block in self.blocks:  # GPT-2: the residual projections scaled by 1/sqrt(number of residual sums)
            for m in (block.proj, block.out):
                nn.init.normal_(m.weight, std=0.02 / math.sqrt(2 * depth))
        if tied:
            self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        x = self.embed(tokens) + self.position(torch.arange(t, device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x)).transpose(1, 2)  # (batch, vocab, context): cross_entropy's per-position layout


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
    (context,) = ctx.in_shape
    return Transformer(ctx.num_classes, context, width, depth, heads, attn_dropout, resid_dropout,
                       layer_norm == "pre_ln", tied, ctx.drop_path)
