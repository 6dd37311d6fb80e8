"""Attentive pooling: a few learned queries cross-attend to a set of tokens.

This is V-JEPA 2's attentive-probe building block; the OutcomeAbstractor and probe heads use it to
summarize a variable number of tokens without averaging away where things are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tritemporal.layers.blocks import Mlp, init_weights


class AttentivePooler(nn.Module):
    """Learned queries (Q, dim) cross-attend to tokens (B, N, in_dim) -> (B, Q, dim).

    `positions` > 0 adds a learned embedding per token slot (the tokens must then come as
    (B, positions, in_dim)) to the normalised tokens: RoPE encoders leave no absolute position in
    their outputs, and without it the pooler sees a set. Drawn at unit scale, like the normalised
    tokens, so where a token sits counts from the first step.
    """

    def __init__(
        self, in_dim: int, dim: int, num_queries: int, num_heads: int, positions: int = 0
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.queries = nn.Parameter(torch.zeros(num_queries, dim))
        self.norm_kv = nn.LayerNorm(in_dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(in_dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 4 * dim)
        self.apply(init_weights)
        nn.init.trunc_normal_(self.queries, std=0.02)
        self.pos = nn.Parameter(torch.randn(positions, in_dim)) if positions else None

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Pool tokens (B, N, in_dim) into (B, Q, dim)."""
        b = tokens.shape[0]
        q = self.q(self.queries).expand(b, -1, -1)  # (B, Q, dim)
        kv = self.norm_kv(tokens)
        if self.pos is not None:
            kv = kv + self.pos
        k, v = self.kv(kv).chunk(2, dim=-1)  # each (B, N, dim)
        heads = lambda x: x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))  # (B, h, Q, dh)
        x = self.queries + self.proj(out.transpose(1, 2).flatten(2))  # (B, Q, dim)
        return x + self.mlp(self.norm_mlp(x))
