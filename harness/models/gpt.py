"""The decoder-only transformer's torch modules (the model and its papers are described and registered
in ``harness.models.transformer``, which imports this module only when it builds one, so that reading
the model registry does not import torch).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


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
