"""Tests for the V-JEPA 2 multi-block 3D masks and the temporal window indices."""

from __future__ import annotations

import time

import pytest
import torch

from tritemporal.objectives.masks import MaskSet, MultiBlockMask, window_indices

SHORT = (8, 0.15)
LONG = (2, 0.7)
GRIDS = [(8, 16, 16), (4, 4, 4), (2, 4, 7)]
CONFIGS = [pytest.param(g, c, id=f"{g}-{c[0]}x{c[1]}") for g in GRIDS for c in (SHORT, LONG)]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _spatial_freq(masker: MultiBlockMask, n: int, seed: int) -> torch.Tensor:
    """Fraction of ``n`` samples in which each spatial patch is a target, as (H, W)."""
    _, h, w = masker.grid
    hit = torch.zeros(n, masker.grid[0] * h * w)
    hit.scatter_(1, masker(n, _gen(seed)).target, 1.0)
    return hit.view(n, -1, h, w)[:, 0].mean(dim=0)


@pytest.mark.parametrize(("grid", "cfg"), CONFIGS)
def test_shapes_partition_and_sorted(grid, cfg):
    masker = MultiBlockMask(grid, *cfg)
    masks = masker(16, _gen(0))
    assert isinstance(masks, MaskSet)
    n = grid[0] * grid[1] * grid[2]
    k, m = masker.num_context, masker.num_target
    assert k + m == n and k > 0 and m > 0
    assert masks.context.shape == (16, k) and masks.target.shape == (16, m)
    assert masks.context.dtype == masks.target.dtype == torch.int64
    both = torch.cat([masks.context, masks.target], dim=1).sort(dim=1).values
    assert torch.equal(both, torch.arange(n).expand(16, n))  # disjoint and covering
    for idx in (masks.context, masks.target):
        assert (idx.diff(dim=1) > 0).all()


@pytest.mark.parametrize(("grid", "cfg"), CONFIGS)
def test_repeated_over_time(grid, cfg):
    t, h, w = grid
    masks = MultiBlockMask(grid, *cfg)(8, _gen(1))
    for idx in (masks.context, masks.target):
        per_step = idx.view(8, t, -1)
        spatial = per_step % (h * w)
        steps = per_step // (h * w)
        assert torch.equal(steps, torch.arange(t)[None, :, None].expand_as(steps))
        assert torch.equal(spatial, spatial[:, :1].expand_as(spatial))


@pytest.mark.parametrize(("grid", "cfg"), CONFIGS)
def test_determinism_from_generator_only(grid, cfg):
    masker = MultiBlockMask(grid, *cfg)
    torch.manual_seed(123)
    a = masker(16, _gen(7))
    torch.manual_seed(456)  # the global RNG must not matter
    b = masker(16, _gen(7))
    c = masker(16, _gen(8))
    assert torch.equal(a.context, b.context) and torch.equal(a.target, b.target)
    assert not torch.equal(a.target, c.target)


@pytest.mark.parametrize(("grid", "cfg"), CONFIGS)
def test_counts_independent_of_batch(grid, cfg):
    masker = MultiBlockMask(grid, *cfg)
    other = MultiBlockMask(grid, *cfg)
    assert (other.num_context, other.num_target) == (masker.num_context, masker.num_target)
    for seed, batch in [(0, 1), (1, 16), (2, 3)]:
        masks = masker(batch, _gen(seed))
        assert masks.context.shape[1] == masker.num_context
        assert masks.target.shape[1] == masker.num_target


@pytest.mark.parametrize(("grid", "cfg"), CONFIGS)
def test_count_matches_expected_union(grid, cfg):
    masker = MultiBlockMask(grid, *cfg)
    hw = grid[1] * grid[2]
    raw = masker._sample_union(2000, _gen(99)).sum(dim=(1, 2)).double().mean().item()
    assert abs(masker.num_target / grid[0] - raw) <= max(1.0, 0.02 * hw)


@pytest.mark.parametrize(("cfg", "band"), [(SHORT, (0.55, 0.70)), (LONG, (0.78, 0.90))])
def test_target_fraction_16x16(cfg, band):
    masker = MultiBlockMask((8, 16, 16), *cfg)
    frac = masker.num_target / (8 * 16 * 16)
    assert band[0] <= frac <= band[1]


@pytest.mark.slow
@pytest.mark.parametrize(("grid", "cfg"), CONFIGS)
def test_no_bias_toward_high_indices(grid, cfg):
    freq = _spatial_freq(MultiBlockMask(grid, *cfg), 3000, seed=5)
    flat = freq.flatten()
    half = flat.numel() // 2
    tol = 0.03
    assert flat[-half:].mean() >= flat[:half].mean() - tol
    assert freq[-1].mean() >= freq[0].mean() - tol
    assert freq[:, -1].mean() >= freq[:, 0].mean() - tol


def test_batch_of_32_is_fast():
    masker = MultiBlockMask((8, 16, 16), *SHORT)
    gen = _gen(0)
    masker(32, gen)
    start = time.perf_counter()
    for _ in range(10):
        masker(32, gen)
    assert (time.perf_counter() - start) / 10 < 0.2


def test_window_indices():
    grid = (4, 2, 3)
    assert torch.equal(window_indices(grid, 0, 1), torch.arange(6))
    assert torch.equal(window_indices(grid, 1, 3), torch.arange(6, 18))
    full = window_indices(grid, 0, 4)
    assert full.dtype == torch.int64 and torch.equal(full, torch.arange(24))
    idx = window_indices((8, 16, 16), 5, 8)
    assert ((idx // 256 >= 5) & (idx // 256 < 8)).all() and idx.numel() == 3 * 256


@pytest.mark.parametrize(("start", "stop"), [(-1, 2), (2, 2), (3, 1), (0, 5)])
def test_window_indices_bad_range(start, stop):
    with pytest.raises(ValueError, match="t_start < t_stop"):
        window_indices((4, 2, 3), start, stop)


def test_window_indices_bad_grid():
    with pytest.raises(ValueError, match="grid"):
        window_indices((0, 2, 3), 0, 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale": 0.0}, "scale"),
        ({"scale": 1.0}, "scale"),
        ({"scale": -0.2}, "scale"),
        ({"num_blocks": 0}, "num_blocks"),
        ({"grid": (0, 4, 4)}, "grid"),
        ({"grid": (2, 0, 4)}, "grid"),
        ({"grid": (4, 1, 1)}, "cannot hold both"),
        ({"aspect": (1.5, 0.75)}, "aspect"),
        ({"aspect": (0.0, 1.0)}, "aspect"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"grid": (4, 4, 4), "num_blocks": 2, "scale": 0.5, **kwargs}
    with pytest.raises(ValueError, match=match):
        MultiBlockMask(**args)


def test_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        MultiBlockMask((4, 4, 4), 2, 0.5)(0, _gen(0))
