"""Tests for the synthetic driving source: shapes, determinism, balance, and that cues are real."""

from __future__ import annotations

import pytest
import torch

from tritemporal.config import ClipConfig
from tritemporal.data.common import MANEUVERS, maneuver_id
from tritemporal.data.synthetic import SyntheticDrivingShapes

LEFT, RIGHT = maneuver_id("lane_change_left"), maneuver_id("lane_change_right")
KEEP, BRAKE = maneuver_id("keep_lane"), maneuver_id("brake")


def _clip(
    size: int | list[int] = 64, now: int = 8, soon: int = 4, eventually: int = 4
) -> ClipConfig:
    return ClipConfig(
        now_frames=now, soon_frames=soon, eventually_frames=eventually, image_size=size
    )


def _ego_mask(frames: torch.Tensor) -> torch.Tensor:
    """Pixels of the red ego car: (T, H, W, 3) uint8 -> (T, H, W) bool."""
    r, g, b = frames.int().unbind(-1)
    return (r > 180) & (g < 100) & (b < 100)


def _amber_mask(frames: torch.Tensor) -> torch.Tensor:
    """Pixels of an amber indicator light."""
    r, g, b = frames.int().unbind(-1)
    return (r > 200) & (g > 110) & (g < 230) & (b < 90)


def _ego_centroid_x(frames: torch.Tensor) -> torch.Tensor:
    """Horizontal centre of the ego's pixels per frame: (T,)."""
    mask = _ego_mask(frames).float()
    xs = torch.arange(frames.shape[2], dtype=torch.float32)
    return (mask.sum(1) * xs).sum(-1) / mask.sum((1, 2))


@pytest.mark.parametrize(
    ("size", "frames"),
    [(64, (8, 4, 4)), ([64, 96], (8, 4, 4)), ([96, 64], (6, 2, 8)), (32, (3, 1, 2))],
)
def test_shapes_dtype_and_range(size: int | list[int], frames: tuple[int, int, int]) -> None:
    clip = _clip(size, *frames)
    ds = SyntheticDrivingShapes(clip, num_clips=8, seed=1)
    assert len(ds) == 8
    h, w = clip.hw
    for i in range(len(ds)):
        sample = ds[i]
        video, label = sample["video"], sample["label"]
        assert video.shape == (3, clip.total_frames, h, w)
        assert video.dtype == torch.uint8
        assert 10 < video.float().std() < 120
        assert label.dtype == torch.int64 and label.ndim == 0
        assert MANEUVERS[int(label)] in ds.label_names
        assert sample["index"] == i


def test_label_names_are_maneuvers() -> None:
    ds = SyntheticDrivingShapes(_clip(), num_clips=4)
    assert ds.label_names == ("keep_lane", "lane_change_left", "lane_change_right", "brake")
    assert set(ds.label_names) <= set(MANEUVERS)


def test_deterministic_per_seed_and_index() -> None:
    ds = SyntheticDrivingShapes(_clip(), num_clips=16, seed=7)
    fresh = SyntheticDrivingShapes(_clip(), num_clips=16, seed=7)
    other = SyntheticDrivingShapes(_clip(), num_clips=16, seed=8)
    torch.manual_seed(123)  # the global RNG must not matter
    a = ds[5]
    torch.manual_seed(456)
    torch.rand(10)
    assert torch.equal(a["video"], ds[5]["video"])
    assert torch.equal(a["video"], fresh[5]["video"])
    assert int(a["label"]) == int(fresh[5]["label"])
    assert not torch.equal(a["video"], other[5]["video"])
    assert not torch.equal(ds[4]["video"], ds[5]["video"])


def test_labels_balanced() -> None:
    ds = SyntheticDrivingShapes(_clip(32), num_clips=200, seed=3)
    labels = torch.tensor([ds.render(i).label for i in range(len(ds))])
    counts = torch.bincount(labels, minlength=len(MANEUVERS))
    ids = [maneuver_id(name) for name in ds.label_names]
    assert set(labels.tolist()) == set(ids)
    for i in ids:
        assert 35 <= int(counts[i]) <= 65, counts


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match=r"data\.num_clips"):
        SyntheticDrivingShapes(_clip(), num_clips=0)
    ds = SyntheticDrivingShapes(_clip(), num_clips=2)
    with pytest.raises(IndexError):
        ds[2]


@pytest.mark.slow
@pytest.mark.parametrize("size", [64, [64, 96]])
def test_ego_moves_as_labelled(size: int | list[int]) -> None:
    clip = _clip(size)
    ds = SyntheticDrivingShapes(clip, num_clips=40, seed=11)
    seen = set()
    for i in range(len(ds)):
        rendered = ds.render(i)
        cx = _ego_centroid_x(rendered.frames)
        assert torch.allclose(cx, rendered.ego_x, atol=1.5)  # the helper track matches pixels
        start = clip.now_frames + clip.soon_frames
        assert torch.allclose(cx[:start], cx[0].expand(start), atol=0.5)  # still before EVENTUALLY
        shift = float(cx[-1] - cx[0])
        if rendered.label == LEFT:
            assert shift < -3.0
        elif rendered.label == RIGHT:
            assert shift > 3.0
        else:
            assert abs(shift) < 0.5
        seen.add(rendered.label)
    assert seen == {KEEP, LEFT, RIGHT, BRAKE}


def test_indicator_cue_in_now_and_blinks() -> None:
    clip = _clip(64)
    ds = SyntheticDrivingShapes(clip, num_clips=40, seed=5)
    h = clip.hw[0]
    for i in range(len(ds)):
        rendered = ds.render(i)
        now = rendered.frames[: clip.now_frames]
        amber = _amber_mask(now)[:, int(0.6 * h) :]  # rows of the ego only, not other cars
        cx = float(rendered.ego_x[0])
        per_frame = amber.flatten(1).sum(1)
        if rendered.label in (LEFT, RIGHT):
            assert (per_frame > 0).any() and (
                per_frame == 0
            ).any()  # blinking: one frame is not enough
            xs = amber.nonzero()[:, 2].float()
            side = float((xs - cx).mean())
            assert side < -1.0 if rendered.label == LEFT else side > 1.0
        else:
            assert not _amber_mask(rendered.frames)[:, int(0.6 * h) :].any()


def test_left_and_right_cues_differ_near_ego() -> None:
    clip = _clip(64)
    ds = SyntheticDrivingShapes(clip, num_clips=8, seed=2)
    h = clip.hw[0]
    left = next(ds.render(i) for i in range(8) if ds.render(i).label == LEFT)
    right = next(ds.render(i) for i in range(8) if ds.render(i).label == RIGHT)

    def side_amber(rendered, direction: int) -> int:
        amber = _amber_mask(rendered.frames[: clip.now_frames])[:, int(0.6 * h) :]  # ego rows
        xs = torch.arange(amber.shape[-1]).float() - float(rendered.ego_x[0])
        return int((amber & (xs * direction > 0)).sum())

    assert side_amber(left, -1) > 0 and side_amber(left, +1) == 0
    assert side_amber(right, +1) > 0 and side_amber(right, -1) == 0


def _lead_bottom(frames: torch.Tensor, ego_x: float, ego_top: int) -> torch.Tensor:
    """Lowest row of a car ahead in the ego's lane per frame (-1 where none)."""
    x = round(ego_x)
    band = frames[:, :ego_top, x - 1 : x + 2].int().median(dim=2).values  # (T, rows, 3)
    road = band.flatten(0, 1).median(dim=0).values
    car = (band - road).abs().amax(-1) > 20  # (T, rows)
    rows = torch.arange(ego_top).expand_as(car)
    return torch.where(car, rows, torch.full_like(rows, -1)).amax(1)


@pytest.mark.slow
def test_brake_is_cued_by_closing_car_ahead() -> None:
    clip = _clip(64)
    ds = SyntheticDrivingShapes(clip, num_clips=60, seed=9)
    n_brake = n_lead = 0
    for i in range(len(ds)):
        rendered = ds.render(i)
        ego_rows = _ego_mask(rendered.frames[0]).any(1).nonzero()
        bottom = _lead_bottom(rendered.frames, float(rendered.ego_x[0]), int(ego_rows.min()) - 2)
        first, last = int(bottom[0]), int(bottom[clip.now_frames - 1])
        if rendered.label == BRAKE:
            assert first >= 0 and last >= first + 2, bottom  # closes in during NOW
            n_brake += 1
        elif first >= 0 and rendered.label == KEEP:
            assert last <= first, bottom  # holds its distance or pulls away
            n_lead += 1
    assert n_brake >= 10 and n_lead >= 3


def test_collates_in_a_dataloader() -> None:
    ds = SyntheticDrivingShapes(_clip([32, 48]), num_clips=6)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["video"].shape == (3, 3, 16, 32, 48)
    assert batch["label"].dtype == torch.int64 and batch["label"].shape == (3,)
    assert batch["index"].tolist() == [0, 1, 2]
