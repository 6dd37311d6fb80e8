"""The V-JEPA predictor: fills in the embeddings of masked tokens from the visible ones.

Context tokens are projected into a narrow width, learned mask tokens are placed at the target
positions (positions from the target indices, via sin-cos or 3D RoPE like the encoder), a small
transformer mixes them, and only the target positions are projected back to encoder width.
Everything is batched gathers: no loop over the batch.

Mask tokens: each objective has its own learned mask token (`MaskToken`: short spatial mask,
long spatial mask, SOON forecast), so the predictor knows which task it is solving; asking for a
token it does not hold is an error, never a silent wrap-around.
"""

from __future__ import annotations

import torch
from torch import nn

from tritemporal.config import PredictorConfig
from tritemporal.layers.blocks import Block, BlockForward, call_block, init_weights, run_blocks
from tritemporal.layers.tokens import Grid, MaskToken, Rope3D, sincos_3d, token_coords


class MaskedPredictor(nn.Module):
    """Narrow transformer: (context tokens, context idx, target idx) -> target predictions."""

    def __init__(self, encoder_dim: int, config: PredictorConfig, pos_embed: str) -> None:
        super().__init__()
        dim = config.embed_dim
        self.embed_dim = dim
        self.use_rope = pos_embed.startswith("rope")
        self.activation_checkpointing = False
        self.block_forward: BlockForward = call_block
        self.embed = nn.Linear(encoder_dim, dim)
        self.mask_tokens = nn.Parameter(torch.zeros(config.num_mask_tokens, dim))
        interleaved = pos_embed == "rope-interleaved"
        self.rope = Rope3D(dim // config.num_heads, interleaved) if self.use_rope else None
        self.blocks = nn.ModuleList(
            Block(dim, config.num_heads, 4.0, self.use_rope, 0.0) for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, encoder_dim)
        self.apply(init_weights)

    def forward(
        self,
        context: torch.Tensor,
        context_idx: torch.Tensor,
        target_idx: torch.Tensor,
        grid: Grid,
        mask_token: MaskToken,
        target_cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict encoder-width embeddings (B, M, D) of the `target_idx` (B, M) tokens;
        `target_cond` (B, M, P), if given, is added to their mask tokens (heads/action.py)."""
        b, k = context_idx.shape
        m = target_idx.shape[1]
        index = torch.cat([context_idx, target_idx], dim=1)  # (B, K + M)
        coords = token_coords(grid, index, context.device)  # (B, K + M, 3)

        token = mask_token.pick(self.mask_tokens)
        queries = token.expand(b, m, -1) if target_cond is None else token + target_cond
        x = torch.cat([self.embed(context), queries.to(token.dtype)], dim=1)  # (B, K+M, P)
        rope = None
        if self.rope is not None:
            rope = self.rope.angles(coords)
        else:
            x = x + sincos_3d(self.embed_dim, coords).to(x.dtype)
        x = run_blocks(self.blocks, x, rope, self.activation_checkpointing, self.block_forward)
        return self.proj(self.norm(x[:, k:]))  # (B, M, D)
