"""Clip views: V-JEPA 2 random-resized crop, centre crop, non-square output, flips."""

from __future__ import annotations

import pytest
import torch

from tritemporal.data.common import MANEUVERS
from tritemporal.data.transforms import (
    ClipTransform,
    center_box,
    flip_label_map,
    random_resized_box,
)


def frames(t: int = 3, h: int = 72, w: int = 128) -> torch.Tensor:
    """uint8 (T, H, W, 3) with content that differs across time, rows and columns."""
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (t, h, w, 3), generator=g, dtype=torch.uint8)


def test_random_resized_crop_is_deterministic_and_non_square() -> None:
    transform = ClipTransform((32, 56), MANEUVERS, scale=(0.3, 1.0), aspect=(0.75, 1.35))
    clip = frames()
    a, _ = transform(clip, torch.Generator().manual_seed(3))
    b, _ = transform(clip, torch.Generator().manual_seed(3))
    c, _ = transform(clip, torch.Generator().manual_seed(4))
    assert a.shape == (3, 3, 32, 56) and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_random_boxes_respect_scale_and_aspect() -> None:
    g = torch.Generator().manual_seed(0)
    out_hw, target = (256, 448), 448 / 256
    for _ in range(200):
        top, left, bh, bw = random_resized_box(1080, 1920, out_hw, (0.3, 1.0), (0.75, 1.35), g)
        assert top >= 0 and left >= 0 and top + bh <= 1080 and left + bw <= 1920
        assert 0.3 - 0.01 <= bh * bw / (1080 * 1920) <= 1.0
        assert 0.75 * target * 0.98 <= bw / bh <= 1.35 * target * 1.02


def test_center_box_covers_then_crops() -> None:
    assert center_box(1080, 1920, (256, 448)) == (0, 15, 1080, 1890)
    assert center_box(64, 64, (32, 64)) == (16, 0, 32, 64)
    clip = frames(h=64, w=64)
    video, flipped = ClipTransform((64, 64), MANEUVERS)(clip)
    assert not flipped and torch.equal(video, clip.permute(3, 0, 1, 2))  # identity at same size


def test_center_crop_for_training_is_the_eval_view() -> None:
    transform = ClipTransform((32, 48), MANEUVERS, train_crop="center")
    clip = frames()
    assert torch.equal(transform(clip, torch.Generator().manual_seed(1))[0], transform(clip)[0])


def test_flip_maps() -> None:
    mapping = flip_label_map((*MANEUVERS, "merge_left", "merge_right", "u_turn_left"))
    names = (*MANEUVERS, "merge_left", "merge_right", "u_turn_left")
    flipped = {names[i]: names[j] for i, j in enumerate(mapping)}
    assert flipped["lane_change_left"] == "lane_change_right"
    assert flipped["turn_right"] == "turn_left"
    assert flipped["merge_left"] == "merge_right" and flipped["u_turn_left"] == "u_turn_left"
    assert flipped["brake"] == "brake"
    steering = {"steering": torch.tensor([0.1, -0.2]), "speed": torch.tensor([3.0, 4.0])}
    out = ClipTransform.flip_signals(steering)
    assert torch.equal(out["steering"], -steering["steering"])
    assert torch.equal(out["speed"], steering["speed"])


@pytest.mark.parametrize("hflip", [False, True])
def test_hflip_only_when_enabled(hflip: bool) -> None:
    transform = ClipTransform((64, 64), MANEUVERS, train_crop="center", hflip=hflip)
    clip = frames(h=64, w=64)
    results = [transform(clip, torch.Generator().manual_seed(s)) for s in range(16)]
    flips = [f for _, f in results]
    assert any(flips) == hflip and (all(flips) is False)
    for video, flip in results:
        base = clip.permute(3, 0, 1, 2)
        assert torch.equal(video, base.flip(-1) if flip else base)
