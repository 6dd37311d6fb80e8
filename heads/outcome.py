"""The OutcomeAbstractor: the EVENTUALLY head.

A few learned queries cross-attend to the student's NOW context tokens; their outputs are
concatenated and projected into one compact outcome embedding: "which basin is this scene
flowing toward" (keep lane, change lane, brake...), not a pixel or token forecast. It is trained by
`objectives/eventually.py` against the teacher's view of the far-future window.

The embedding ends in a BatchNorm without affine (running statistics at eval time), as in
SimSiam/BYOL projectors. Driving clips share most of their NOW content (the road), so without it
the projection's bias grows (Adam steps every parameter by ~lr, however small its gradient)
until every clip maps to one direction: measured, outcome RankMe 1.01 within 30 steps. Centred
and scaled per dimension, the embedding keeps the differences between clips, and cosine kNN on
it compares those differences.

Under torchrun the BatchNorm must see the global batch, as one process would: in training, the
projection's output is gathered from every process (differentiably) before it, so the embedding
covers the global batch, the running statistics stay identical on every process, and the
EVENTUALLY contrast gets every clip as a negative. (`nn.SyncBatchNorm` would sync only the
statistics, and it refuses CPU tensors.)
"""

from __future__ import annotations

import torch
from torch import nn

from tritemporal.config import OutcomeConfig
from tritemporal.heads.attentive import AttentivePooler
from tritemporal.runtime import gather_batch


class OutcomeAbstractor(nn.Module):
    """NOW context tokens (B, N, D) -> outcome embedding (B, out_dim); in training under torchrun,
    (global batch, out_dim) in rank order."""

    def __init__(self, encoder_dim: int, config: OutcomeConfig) -> None:
        super().__init__()
        self.pool = AttentivePooler(encoder_dim, config.dim, config.num_queries, config.num_heads)
        self.norm = nn.LayerNorm(config.num_queries * config.dim)
        self.head = nn.Linear(config.num_queries * config.dim, config.out_dim)
        self.standardize = nn.BatchNorm1d(config.out_dim, affine=False)

    def forward(self, now_tokens: torch.Tensor) -> torch.Tensor:
        """Summarize the present into an outcome embedding (standardised, not L2-normalized)."""
        slots = self.pool(now_tokens).flatten(1)  # (B, Q * dim)
        z = self.head(self.norm(slots)).float()  # (B, out_dim)
        if self.training:
            z = gather_batch(z)  # (world_size * B, out_dim); z itself in one process
        return self.standardize(z)
