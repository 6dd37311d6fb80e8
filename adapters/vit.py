"""The built-in video ViT encoder and its registry entries (`vit-debug` ... `vit-large`).

Its blocks come from `tritemporal.layers.blocks`; its predictor is `heads.MaskedPredictor`.

The encoder follows V-JEPA's rule for the context (student) encoder: tokens are embedded for the
whole clip once, then only the visible ones (`keep` indices) are gathered, with positions taken
from those indices, and only they go through the transformer. The same class, run with
`keep=None`, is the target (teacher) encoder.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from tritemporal.adapters.registry import Backbone, register_backbone
from tritemporal.config import TriTemporalConfig
from tritemporal.heads.predictor import MaskedPredictor
from tritemporal.layers.blocks import Block, BlockForward, call_block, init_weights, run_blocks
from tritemporal.layers.tokens import (
    Rope3D,
    TubeletEmbed,
    gather_tokens,
    grid_coords,
    sincos_3d,
    token_coords,
)


@dataclass(frozen=True)
class VitArgs:
    """Architecture of a built-in ViT (registry variants fill these)."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0


class VideoViT(nn.Module):
    """Video ViT encoder over tubelet tokens; encodes only the tokens it is asked to keep."""

    def __init__(
        self,
        args: VitArgs,
        in_chans: int,
        tubelet_t: int,
        patch: int,
        pos_embed: str,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if args.embed_dim % args.num_heads:
            raise ValueError(
                f"backbone.embed_dim={args.embed_dim} must be divisible by "
                f"backbone.num_heads={args.num_heads}"
            )
        self.embed_dim = args.embed_dim
        self.tubelet_t, self.patch = tubelet_t, patch
        self.use_rope = pos_embed.startswith("rope")
        self.activation_checkpointing = False
        self.block_forward: BlockForward = call_block
        self.patch_embed = TubeletEmbed(in_chans, args.embed_dim, tubelet_t, patch)
        head_dim = args.embed_dim // args.num_heads
        interleaved = pos_embed == "rope-interleaved"
        self.rope = Rope3D(head_dim, interleaved) if self.use_rope else None
        rates = torch.linspace(0, drop_path, args.depth).tolist()
        self.blocks = nn.ModuleList(
            Block(args.embed_dim, args.num_heads, args.mlp_ratio, self.use_rope, rate)
            for rate in rates
        )
        self.norm = nn.LayerNorm(args.embed_dim)
        self.apply(init_weights)

    def grid(self, video: torch.Tensor) -> tuple[int, int, int]:
        """Token grid (T', H', W') of a clip (B, C, T, H, W)."""
        _, _, t, h, w = video.shape
        return t // self.tubelet_t, h // self.patch, w // self.patch

    def embed(self, video: torch.Tensor) -> torch.Tensor:
        """Tubelet tokens of the whole clip (B, N, D), sin-cos positions added when used."""
        x = self.patch_embed(video)
        if not self.use_rope:
            coords = grid_coords(self.grid(video), device=x.device)
            x = x + sincos_3d(self.embed_dim, coords).to(x.dtype)
        return x

    def encode(
        self, tokens: torch.Tensor, grid: tuple[int, int, int], keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Encode embedded tokens (B, N, D); with `keep` (B, K) only those tokens -> (B, K, D)."""
        coords = token_coords(grid, keep, tokens.device)  # (B, K, 3) or (1, N, 3)
        if keep is not None:
            tokens = gather_tokens(tokens, keep)  # (B, K, D)
        rope = self.rope.angles(coords) if self.rope is not None else None
        x = run_blocks(self.blocks, tokens, rope, self.activation_checkpointing, self.block_forward)
        return self.norm(x)

    def forward(self, video: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Encode a clip (B, C, T, H, W), optionally only the `keep` token indices."""
        return self.encode(self.embed(video), self.grid(video), keep)


def _builtin_vit(config: TriTemporalConfig, args: VitArgs) -> Backbone:
    """Built-in ViT encoder + narrow predictor; `backbone.*` size keys override the variant."""
    b, clip = config.backbone, config.clip
    args = replace(
        args,
        embed_dim=b.embed_dim or args.embed_dim,
        depth=b.depth or args.depth,
        num_heads=b.num_heads or args.num_heads,
    )
    encoder = VideoViT(args, clip.channels, clip.tubelet_t, clip.patch, b.pos_embed, b.drop_path)
    encoder.activation_checkpointing = b.activation_checkpointing
    predictor = MaskedPredictor(args.embed_dim, config.predictor, b.pos_embed)
    predictor.activation_checkpointing = b.activation_checkpointing
    return Backbone(encoder, predictor)


@register_backbone
def vit_debug(config: TriTemporalConfig) -> Backbone:
    """64 wide, 2 deep: for unit tests only."""
    return _builtin_vit(config, VitArgs(embed_dim=64, depth=2, num_heads=4))


@register_backbone
def vit_tiny(config: TriTemporalConfig) -> Backbone:
    """ViT-Ti: 192 wide, 12 deep, 3 heads."""
    return _builtin_vit(config, VitArgs(embed_dim=192, depth=12, num_heads=3))


@register_backbone
def vit_small(config: TriTemporalConfig) -> Backbone:
    """ViT-S: 384 wide, 12 deep, 6 heads."""
    return _builtin_vit(config, VitArgs(embed_dim=384, depth=12, num_heads=6))


@register_backbone
def vit_base(config: TriTemporalConfig) -> Backbone:
    """ViT-B: 768 wide, 12 deep, 12 heads."""
    return _builtin_vit(config, VitArgs(embed_dim=768, depth=12, num_heads=12))


@register_backbone
def vit_large(config: TriTemporalConfig) -> Backbone:
    """ViT-L: 1024 wide, 24 deep, 16 heads (V-JEPA 2's ViT-L shape)."""
    return _builtin_vit(config, VitArgs(embed_dim=1024, depth=24, num_heads=16))
