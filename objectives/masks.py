"""V-JEPA 2 multi-block 3D masks with batch-independent, unbiased token counts.

The predictor needs every sample of a batch to carry the same number of context and target
tokens. Meta's collator gets there by truncating each sample's index list to the batch
minimum, which always throws away the highest indices (late frames, bottom-right patches) and
makes the counts depend on the batch. Here the counts are fixed per generator at construction
and each sampled mask is grown or shrunk at its own boundary to hit them exactly, so nothing
depends on the batch and no region of the grid is favoured. All randomness comes from the
caller's ``torch.Generator``, so a seed gives the same masks in any process or worker.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_ESTIMATE_DRAWS = 512
_ESTIMATE_SEED = 0


@dataclass(frozen=True)
class MaskSet:
    """Context (visible) and target (masked) token indices for a batch."""

    context: torch.Tensor  # (B, K) int64, sorted ascending per row
    target: torch.Tensor  # (B, M) int64, sorted ascending per row


def _check_grid(grid: tuple[int, int, int]) -> tuple[int, int, int]:
    if len(grid) != 3 or any(int(d) < 1 for d in grid):
        raise ValueError(f"grid must be three dims (T, H, W), each >= 1; got {tuple(grid)}")
    t, h, w = (int(d) for d in grid)
    return t, h, w


def _any_neighbour(x: torch.Tensor, edge: bool) -> torch.Tensor:
    """True where a 4-neighbour of (B, H, W) ``x`` is True; off-grid cells read as ``edge``."""
    b, h, w = x.shape
    p = torch.full((b, h + 2, w + 2), edge, dtype=torch.bool)
    p[:, 1:-1, 1:-1] = x
    return p[:, :-2, 1:-1] | p[:, 2:, 1:-1] | p[:, 1:-1, :-2] | p[:, 1:-1, 2:]


def _pick(cand: torch.Tensor, k: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per row of bool (B, N) ``cand``, choose min(k, count) True cells uniformly at random."""
    scores = torch.rand(cand.shape, generator=gen).masked_fill_(~cand, 2.0)
    order = scores.argsort(dim=1)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(cand.shape[1]).expand_as(order))
    return cand & (rank < k[:, None])


class MultiBlockMask:
    """Multi-block spatial mask repeated over time; K and M fixed by construction.

    Block rule (V-JEPA 2): each of ``num_blocks`` blocks covers ``int(scale * H * W)`` patches
    with aspect ratio h/w drawn uniformly from ``aspect``; ``h = round(sqrt(area * ar))`` and
    ``w = round(sqrt(area / ar))``, clipped to the grid, and the top-left corner is uniform
    over the positions where the block fits. The target is the union of the blocks, repeated
    at every temporal step; the context is its complement.

    How we equalize, and why it beats truncation: at construction we estimate the expected
    union size ``m`` by Monte-Carlo (512 draws, fixed private seed) and fix M = m * T and
    K = (H * W - m) * T. Each sampled union U is then adjusted at its own edge: while
    |U| > m, drop patches picked uniformly from U's boundary (a 4-neighbour outside U or off
    the grid); while |U| < m, add patches picked uniformly from U's outside 4-neighbours.
    Blocks stay contiguous and the counts never depend on the batch, whereas truncating to
    the batch minimum always discards the highest indices and so biases masking toward the
    start of the clip and the top-left of the frame.
    """

    def __init__(
        self,
        grid: tuple[int, int, int],
        num_blocks: int,
        scale: float,
        aspect: tuple[float, float] = (0.75, 1.5),
    ) -> None:
        """Validate the configuration and fix the per-sample token counts."""
        self.grid = _check_grid(grid)
        _, height, width = self.grid
        if height * width < 2:
            raise ValueError(f"spatial grid {height}x{width} cannot hold both context and target")
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1; got {num_blocks}")
        if not 0.0 < scale < 1.0:
            raise ValueError(f"scale must lie in (0, 1); got {scale}")
        lo, hi = (float(a) for a in aspect)
        if lo <= 0.0 or lo > hi:
            raise ValueError(f"aspect must satisfy 0 < min <= max; got {tuple(aspect)}")
        self.num_blocks = int(num_blocks)
        self.scale = float(scale)
        self.aspect = (lo, hi)
        self._area = max(1, int(scale * height * width))
        est = torch.Generator().manual_seed(_ESTIMATE_SEED)
        mean = self._sample_union(_ESTIMATE_DRAWS, est).sum(dim=(1, 2)).double().mean().item()
        self._m = min(max(round(mean), 1), height * width - 1)

    @property
    def num_target(self) -> int:
        """M: target (masked) tokens per sample."""
        return self._m * self.grid[0]

    @property
    def num_context(self) -> int:
        """K: context (visible) tokens per sample."""
        return (self.grid[1] * self.grid[2] - self._m) * self.grid[0]

    def _sample_union(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """Draw ``n`` spatial unions of ``num_blocks`` blocks as a bool (n, H, W) tensor."""
        _, height, width = self.grid
        size = (n, self.num_blocks)
        lo, hi = self.aspect
        ar = lo + (hi - lo) * torch.rand(size, generator=gen, dtype=torch.float64)
        bh = torch.round(torch.sqrt(self._area * ar)).clamp(1, height).long()
        bw = torch.round(torch.sqrt(self._area / ar)).clamp(1, width).long()
        top = (torch.rand(size, generator=gen, dtype=torch.float64) * (height - bh + 1)).long()
        left = (torch.rand(size, generator=gen, dtype=torch.float64) * (width - bw + 1)).long()
        rows, cols = torch.arange(height), torch.arange(width)
        in_r = (rows >= top[..., None]) & (rows < (top + bh)[..., None])  # (n, nb, H)
        in_c = (cols >= left[..., None]) & (cols < (left + bw)[..., None])  # (n, nb, W)
        return (in_r[..., :, None] & in_c[..., None, :]).any(dim=1)

    def _equalize(self, union: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Grow or shrink each (H, W) union at its boundary until it holds exactly m patches."""
        b = union.shape[0]
        while True:
            diff = union.sum(dim=(1, 2)) - self._m
            if not diff.any():
                return union
            shrink = _any_neighbour(~union, edge=True) & union
            grow = _any_neighbour(union, edge=False) & ~union
            cand = torch.where((diff > 0)[:, None, None], shrink, grow)
            cand &= (diff != 0)[:, None, None]
            flip = _pick(cand.reshape(b, -1), diff.abs(), gen)
            union = union ^ flip.view_as(union)

    def __call__(self, batch_size: int, generator: torch.Generator) -> MaskSet:
        """Sample context/target indices for ``batch_size`` clips using only ``generator``."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        steps, height, width = self.grid
        hw = height * width
        target = self._equalize(self._sample_union(batch_size, generator), generator)
        target = target.reshape(batch_size, hw)
        spatial = torch.arange(hw).expand(batch_size, hw)
        offsets = (torch.arange(steps) * hw)[None, :, None]

        def tile(mask: torch.Tensor, count: int) -> torch.Tensor:
            idx = spatial[mask].view(batch_size, 1, count)
            return (idx + offsets).reshape(batch_size, steps * count)

        return MaskSet(context=tile(~target, hw - self._m), target=tile(target, self._m))

    def __repr__(self) -> str:
        return (
            f"MultiBlockMask(grid={self.grid}, num_blocks={self.num_blocks}, "
            f"scale={self.scale}, aspect={self.aspect}, K={self.num_context}, "
            f"M={self.num_target})"
        )


def window_indices(grid: tuple[int, int, int], t_start: int, t_stop: int) -> torch.Tensor:
    """Flat indices (sorted, int64) of every token whose temporal step lies in [t_start, t_stop)."""
    steps, height, width = _check_grid(grid)
    if not 0 <= t_start < t_stop <= steps:
        raise ValueError(f"need 0 <= t_start < t_stop <= {steps}; got [{t_start}, {t_stop})")
    hw = height * width
    return torch.arange(t_start * hw, t_stop * hw, dtype=torch.int64)
