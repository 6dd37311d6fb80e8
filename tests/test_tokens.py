"""Tubelet tokens, 3D positions (sin-cos and V-JEPA 2 RoPE) and the gather helper."""

from __future__ import annotations

import math

import pytest
import torch

from tritemporal.layers.tokens import (
    Rope3D,
    TubeletEmbed,
    apply_rope,
    gather_tokens,
    grid_coords,
    sincos_3d,
    tubelet_linear,
)


def test_tubelet_shapes_and_order() -> None:
    embed = TubeletEmbed(3, 8, tubelet_t=2, patch=4)
    video = torch.zeros(2, 3, 6, 8, 12)
    video[0, :, 2:4, 4:8, 0:4] = 1.0  # tubelet (t=1, h=1, w=0)
    tokens = embed(video)
    assert tokens.shape == (2, 3 * 2 * 3, 8)
    bias = embed.proj.bias
    changed = (tokens[0] - bias).abs().sum(-1) > 0
    assert changed.nonzero().flatten().tolist() == [1 * 2 * 3 + 1 * 3 + 0]


def test_grid_coords_flat_index() -> None:
    coords = grid_coords((3, 4, 5))
    assert coords.shape == (60, 3)
    flat = coords[:, 0] * 20 + coords[:, 1] * 5 + coords[:, 2]
    assert torch.equal(flat, torch.arange(60))


def test_gather_tokens_batched_and_shared() -> None:
    x = torch.arange(2 * 5 * 3).view(2, 5, 3)
    idx = torch.tensor([[4, 0], [1, 2]])
    out = gather_tokens(x, idx)
    assert torch.equal(out[0], x[0, [4, 0]]) and torch.equal(out[1], x[1, [1, 2]])
    shared = gather_tokens(x[:1], idx)
    assert torch.equal(shared[1], x[0, [1, 2]])


@pytest.mark.parametrize("dim", [8, 30, 64, 65])
def test_sincos_3d_shape_and_distinct(dim: int) -> None:
    coords = grid_coords((2, 3, 4))
    emb = sincos_3d(dim, coords)
    assert emb.shape == (24, dim)
    assert torch.cdist(emb, emb).add(torch.eye(24)).min() > 1e-3  # every position distinct


def _reference_vjepa2_rope(
    x: torch.Tensor, ids: torch.Tensor, h: int, w: int, interleaved: bool
) -> torch.Tensor:
    """V-JEPA 2's rule written out channel by channel: positions from flat ids, per-axis tables.

    Released checkpoints: channel c of an axis uses frequency index c mod (axis / 2) (the table
    concatenated with itself); interleaved: channel c uses index c // 2.
    """
    head_dim = x.shape[-1]
    axis = 2 * ((head_dim // 3) // 2)
    t_ids, rem = ids // (h * w), ids % (h * w)
    positions = [t_ids, rem // w, rem % w]
    out = x.clone()
    half = axis // 2
    for a, pos in enumerate(positions):
        for c in range(axis):
            i = c // 2 if interleaved else c % half
            theta = pos.double() / (10000 ** (i / half))
            cos, sin = theta.cos().float(), theta.sin().float()
            j = a * axis + c
            partner = -x[..., j + 1] if c % 2 == 0 else x[..., j - 1]
            out[..., j] = x[..., j] * cos + partner * sin
    return out


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("head_dim", [16, 64, 88])
def test_rope_matches_vjepa2_scheme(head_dim: int, interleaved: bool) -> None:
    grid = (4, 3, 5)
    ids = torch.tensor([0, 7, 16, 31, 59])
    x = torch.randn(1, 2, len(ids), head_dim)
    rope = Rope3D(head_dim, interleaved)
    cos, sin = rope.angles(grid_coords(grid)[ids].unsqueeze(0))
    ours = apply_rope(x, cos, sin)
    ref = _reference_vjepa2_rope(x, ids, h=3, w=5, interleaved=interleaved)
    assert torch.allclose(ours, ref, atol=1e-5)
    # leftover channels beyond 3 * axis_dim stay unrotated
    assert torch.equal(ours[..., 3 * rope.axis_dim :], x[..., 3 * rope.axis_dim :])


def test_interleaved_rope_is_relative() -> None:
    """With one frequency per pair, q.k after RoPE depends only on the coordinate difference."""
    rope = Rope3D(24, interleaved=True)
    q, k = torch.randn(1, 1, 1, 24), torch.randn(1, 1, 1, 24)

    def score(pq: list[int], pk: list[int]) -> float:
        cq, sq = rope.angles(torch.tensor([[pq]]))
        ck, sk = rope.angles(torch.tensor([[pk]]))
        return float((apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum())

    assert math.isclose(score([1, 2, 3], [0, 0, 1]), score([4, 5, 6], [3, 3, 4]), rel_tol=1e-4)


def test_rope_rejects_tiny_heads() -> None:
    with pytest.raises(ValueError, match="too small"):
        Rope3D(4)


def test_tubelet_linear_equals_the_strided_conv3d() -> None:
    conv = torch.nn.Conv3d(3, 24, kernel_size=(2, 8, 8), stride=(2, 8, 8))
    video = torch.randn(2, 3, 6, 33, 42)  # H, W not multiples of the patch: remainders dropped
    expected = conv(video).flatten(2).transpose(1, 2)
    assert torch.allclose(tubelet_linear(video, conv), expected, atol=1e-5)
