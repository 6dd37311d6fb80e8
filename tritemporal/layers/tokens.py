"""Tubelet tokens and their 3D positions: the first step of every backbone.

A clip (B, C, T, H, W) becomes tokens (B, N, D) by a Conv3d over `tubelet_t x patch x patch`
tubelets, flattened in (t, h, w) order so a token's flat index is `t*Hp*Wp + h*Wp + w`.
Positions are carried as integer coordinates (t, h, w) per token, never re-derived from a square
grid size, so wide driving frames (e.g. 256 x 448) get correct positions.

Two position schemes:
- fixed 3D sin-cos added to the tokens (V-JEPA 1);
- 3D RoPE applied to queries and keys inside attention (V-JEPA 2): each head dim is split into
  three equal even parts rotated by the depth (t), height and width coordinate; leftover dims are
  left unrotated.

Mask tokens: the predictor holds one learned token per task it solves (`MaskToken`), placed at
the positions it must fill in, so it knows which task a call is.
"""

from __future__ import annotations

from enum import IntEnum

import torch
import torch.nn.functional as F
from torch import nn

Grid = tuple[int, int, int]  # token grid (T', H', W')


class MaskToken(IntEnum):
    """Which learned mask token a predictor call places at its targets: one per task.

    SHORT and LONG are V-JEPA's two spatial mask generators (in the order the loader draws
    them, and the order Meta pretrained V-JEPA 2's predictor tokens in); SOON is the forecast of
    the SOON window from NOW. A predictor with fewer tokens than a task's index raises.
    """

    SHORT = 0
    LONG = 1
    SOON = 2

    def pick(self, tokens: torch.Tensor) -> torch.Tensor:
        """This task's row of a mask-token table (num_tokens, ...); a clear error if absent."""
        if self.value >= tokens.shape[0]:
            raise ValueError(
                f"the predictor holds {tokens.shape[0]} mask token(s) but the {self.name} task "
                f"uses token {self.value}: give it at least {self.value + 1} "
                "(predictor.num_mask_tokens for the built-in ViTs)"
            )
        return tokens[self.value]


class TubeletEmbed(nn.Module):
    """Conv3d tubelet embedding: (B, C, T, H, W) -> (B, T'*H'*W', D)."""

    def __init__(self, in_chans: int, embed_dim: int, tubelet_t: int, patch: int) -> None:
        super().__init__()
        kernel = (tubelet_t, patch, patch)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Embed every tubelet of the clip."""
        return tubelet_linear(video, self.proj)


def tubelet_linear(video: torch.Tensor, conv: nn.Conv3d) -> torch.Tensor:
    """`conv(video)` flattened to tokens (B, N, D), computed as one matmul.

    The tubelet Conv3d has stride = kernel, so it is a linear map of each non-overlapping
    tubelet. cuDNN runs it as an implicit-GEMM convolution at ~12 TFLOP/s on an H100 (2% of a
    ViT-L step, docs/PERFORMANCE.md); cutting the clip into tubelets and multiplying by the
    kernel reshaped to (D, C * kt * p * p) is the same arithmetic on the GEMM path. Pixels
    beyond the last whole tubelet are dropped, as the convolution drops them.
    """
    kt, kh, kw = conv.kernel_size
    b, c, t, h, w = video.shape
    gt, gh, gw = t // kt, h // kh, w // kw
    x = video[:, :, : gt * kt, : gh * kh, : gw * kw]
    x = x.reshape(b, c, gt, kt, gh, kh, gw, kw).permute(0, 2, 4, 6, 1, 3, 5, 7)
    x = x.reshape(b, gt * gh * gw, c * kt * kh * kw).to(conv.weight.dtype)
    return F.linear(x, conv.weight.flatten(1), conv.bias)


def grid_coords(grid: tuple[int, int, int], device: torch.device | None = None) -> torch.Tensor:
    """Integer (t, h, w) coordinates of every token of a (T', H', W') grid, shape (N, 3)."""
    t, h, w = grid
    axes = [torch.arange(n, device=device) for n in (t, h, w)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)


def token_coords(
    grid: tuple[int, int, int], index: torch.Tensor | None, device: torch.device
) -> torch.Tensor:
    """(t, h, w) of the tokens at `index` (B, K) -> (B, K, 3); of every token (1, N, 3) if None.

    Positions always come from the kept indices, never from where a token sits after a gather.
    """
    coords = grid_coords(grid, device=device).unsqueeze(0)  # (1, N, 3)
    return coords if index is None else gather_tokens(coords, index)


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Select tokens per sample: x (B, N, ...) and index (B, K) -> (B, K, ...).

    This is the one place masks are applied to token tensors (V-JEPA's `apply_masks`), as a
    single batched gather rather than a loop over the batch. `x` may also be shared across the
    batch with a leading dim of 1 (e.g. coordinates).
    """
    if x.shape[0] == 1 and index.shape[0] > 1:
        x = x.expand(index.shape[0], *x.shape[1:])
    idx = index.view(*index.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
    return torch.gather(x, 1, idx)


def sincos_3d(dim: int, coords: torch.Tensor) -> torch.Tensor:
    """Fixed 3D sin-cos embedding of integer coordinates (..., 3) -> (..., dim).

    Half of `dim` (rounded to even) encodes space (h and w a quarter each), the rest time, as in
    V-JEPA 1's separable 3D table; here it is computed from coordinates, so any grid works.
    """
    dim_t = dim // 4 * 2 if dim >= 8 else 2
    dim_h = (dim - dim_t) // 4 * 2
    dim_w = dim - dim_t - dim_h
    parts = [_sincos_1d(d, coords[..., i]) for i, d in enumerate((dim_t, dim_h, dim_w))]
    return torch.cat(parts, dim=-1)


def _sincos_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """1D sin-cos of positions (...,) -> (..., dim); odd dims get one zero column."""
    half = dim // 2
    omega = 1.0 / 10000 ** (
        torch.arange(half, dtype=torch.float64, device=pos.device) / max(half, 1)
    )
    angles = pos.double().unsqueeze(-1) * omega  # (..., half)
    emb = torch.cat([angles.sin(), angles.cos()], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, emb.new_zeros(*emb.shape[:-1], 1)], dim=-1)
    return emb.float()


class Rope3D(nn.Module):
    """3D rotary position embedding in V-JEPA 2's layout, computed from token coordinates.

    For head dim `d`, each axis (t, h, w) rotates `2 * ((d // 3) // 2)` channels, in that order;
    leftover channels pass unrotated. Within an axis of `a` channels, frequencies are
    `10000 ** (-i / (a / 2))` for i < a / 2 and channels are paired as (2i, 2i+1).

    Two frequency layouts (`backbone.pos_embed`):
    - `rope` (default): exactly the released V-JEPA 2 checkpoints. Their cos/sin tables are the
      half-width table concatenated with itself, so channel j uses frequency j mod (a / 2) while
      pairs are adjacent channels: the two channels of a pair may turn at different rates. Meta
      kept this quirk because fixing it changes every pretrained model's outputs.
    - `rope-interleaved`: Meta's later fix, each pair turns by one frequency (a true rotation,
      so q.k depends only on relative position). For models trained from scratch.
    """

    def __init__(self, head_dim: int, interleaved: bool = False) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.interleaved = interleaved
        self.axis_dim = 2 * ((head_dim // 3) // 2)
        if self.axis_dim == 0:
            raise ValueError(f"head dim {head_dim} is too small for 3D RoPE (need >= 6)")
        half = self.axis_dim // 2
        omega = 1.0 / 10000 ** (torch.arange(half, dtype=torch.float64) / half)
        self.register_buffer("omega", omega.float(), persistent=False)

    def angles(self, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin tables for coordinates (B, N, 3) -> each (B, 1, N, 3 * axis_dim)."""
        freq = coords.to(self.omega.dtype).unsqueeze(-1) * self.omega  # (B, N, 3, half)
        if self.interleaved:
            freq = freq.repeat_interleave(2, dim=-1)  # (B, N, 3, axis_dim): f0 f0 f1 f1 ...
        else:
            freq = torch.cat([freq, freq], dim=-1)  # (B, N, 3, axis_dim): f0 f1 ... f0 f1 ...
        freq = freq.flatten(-2)  # (B, N, 3 * axis_dim)
        return freq.cos().unsqueeze(1), freq.sin().unsqueeze(1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate queries or keys (B, heads, N, head_dim) with tables from `Rope3D.angles`."""
    n = cos.shape[-1]
    x_rot, x_pass = x[..., :n], x[..., n:]
    pairs = x_rot.unflatten(-1, (-1, 2))
    rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    out = x_rot * cos.to(x.dtype) + rotated * sin.to(x.dtype)
    return torch.cat([out, x_pass], dim=-1)
