"""`tritemporal compare`'s anticipation references: the ego-status guard and time to maneuver."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tritemporal.data.annotations import Annotation, Event
from tritemporal.data.videos import VideoWindows
from tritemporal.data.windows import WindowSpec, window_starts
from tritemporal.eval.anticipation import (
    ego_status_features,
    thin_target,
    ttm_targets,
)
from tritemporal.eval.plots import intervals_figure, time_to_maneuver_figure

SPEC = WindowSpec(fps=4.0, now_frames=4, soon_frames=2, eventually_frames=2, stride_s=0.25)


def _ego(t: np.ndarray, events: tuple[Event, ...] = (), **series: np.ndarray) -> Annotation:
    """An annotation with ego series sampled at times t."""
    ego = {name: torch.as_tensor(v, dtype=torch.float64) for name, v in series.items()}
    return Annotation(events, torch.as_tensor(t, dtype=torch.float64), ego)


def _video(annotation: Annotation | None, duration: float, key: str = "a.mp4") -> VideoWindows:
    """A video of `duration` s cut by SPEC."""
    return VideoWindows(key, duration, annotation, window_starts(duration, SPEC))


def test_ego_status_features_equal_hand_computed_values() -> None:
    t = np.arange(0, 4.01, 0.25)  # the NOW frames fall on samples: no interpolation
    ann = _ego(t, speed=10 + t, steering=0.1 * t, acceleration=np.full_like(t, -0.5),
               heading=5.0 + 0.2 * t**2, lane=np.ones_like(t))  # fmt: skip
    x, names = ego_status_features([_video(ann, 4.0)], SPEC, "held/out")
    assert names == ["speed", "steering", "acceleration", "heading", "heading_rate"]  # no lane
    assert x.shape == (9, 4 * 5)  # windows at 0, 0.25, .., 2 s; NOW frames x series
    window = x[4].reshape(4, 5)  # start 1.0 s: NOW frames at 1, 1.25, 1.5, 1.75 s
    now = np.array([1.0, 1.25, 1.5, 1.75])
    np.testing.assert_allclose(window[:, 0], 10 + now)
    np.testing.assert_allclose(window[:, 1], 0.1 * now)
    np.testing.assert_allclose(window[:, 2], -0.5)
    # relative to the last NOW frame: the compass offset 5.0 is gone
    np.testing.assert_allclose(window[:, 3], 0.2 * (now**2 - 1.75**2), atol=1e-12)
    # finite differences over the NOW frames: one-sided at the ends, central inside (exact for
    # a quadratic: 0.4 t)
    rate = [0.2 * (1.25**2 - 1.0) / 0.25, 0.4 * 1.25, 0.4 * 1.5, 0.2 * (1.75**2 - 1.5**2) / 0.25]
    np.testing.assert_allclose(window[:, 4], rate, atol=1e-12)


def test_ego_status_wraps_the_relative_heading_and_keeps_a_yaw_rate() -> None:
    t = np.arange(0, 4.01, 0.25)
    heading = np.where(t < 1.5, 3.1, -3.1)  # crosses the +-pi seam between 1.25 and 1.5 s
    ann = _ego(t, yaw_rate=0.3 * t, heading=heading)
    x, names = ego_status_features([_video(ann, 4.0)], SPEC, "held/out")
    assert names == ["yaw_rate", "heading"]  # a yaw rate: no heading rate added
    relative = x[4].reshape(4, 2)[:, 1]  # NOW at 1, 1.25, 1.5, 1.75 s; last -3.1
    np.testing.assert_allclose(relative, [6.2 - 2 * math.pi] * 2 + [0.0] * 2, atol=1e-12)


def test_ego_status_names_the_folder_when_series_are_missing() -> None:
    t = np.arange(0, 4.01, 0.25)
    with_speed = _video(_ego(t, speed=t), 4.0, "a.mp4")
    with pytest.raises(ValueError, match=r"under held/out, but 1 have no annotation.*b\.mp4"):
        ego_status_features([with_speed, _video(None, 4.0, "b.mp4")], SPEC, "held/out")
    no_ego = _video(Annotation(), 4.0, "c.mp4")
    with pytest.raises(ValueError, match=r"c\.mp4"):
        ego_status_features([with_speed, no_ego], SPEC, "held/out")
    lane_only = _video(_ego(t, lane=t), 4.0, "d.mp4")
    with pytest.raises(ValueError, match=r"every video under held/out; they share none.*lane"):
        ego_status_features([with_speed, lane_only], SPEC, "held/out")


def test_ttm_targets_select_the_windows_before_a_planted_onset() -> None:
    events = (
        Event("brake", 3.0, 3.6),
        Event("lane_change_left", 6.0, 8.0, source="auto"),  # hand and auto alike
        Event("keep_lane", 9.0, 10.0),  # not a maneuver: no onset, no overlap
    )
    video = _video(Annotation(events), 16.0)  # starts 0 .. 14 s; NOW lasts 1 s
    targets = ttm_targets([video, _video(None, 16.0, "unlabelled.mp4")], SPEC, [0.5, 1, 2, 3])
    starts = np.concatenate([video.starts, video.starts])
    picked = {d: starts[y == 1].tolist() for d, y in targets.items()}
    # onset - NOW's end = d: the brake at 3.0 from NOW ending at 2.5, 2, 1; the lane change at
    # 6.0 from NOW ending at 5.5, 5 (2 s before it the brake is under way in NOW; 3 s before it,
    # the brake is the first onset)
    assert picked == {0.5: [1.5, 4.5], 1: [1.0, 4.0], 2: [0.0], 3: []}
    negatives = starts[targets[3] == 0]
    # clear of events through NOW's end + 3.125 s, within the 16 s video: after the lane change
    assert negatives.tolist() == np.arange(8.0, 11.9, 0.25).tolist()
    assert all((y[len(video.starts) :] == -1).all() for y in targets.values())  # unlabelled
    assert all(np.array_equal(y == 0, targets[3] == 0) for y in targets.values())  # shared


def test_thin_targets_are_named() -> None:
    groups = np.repeat(np.arange(4), 10)
    y = np.zeros(40, dtype=np.int64)
    y[[0, 10, 20, 30, 31]] = 1
    assert thin_target(y, groups) is None
    y[31] = -1
    assert thin_target(y, groups) == "4 positive windows in 4 videos (needs 5 in 2+)"
    y[:10] = 1
    y[10:] = np.where(y[10:] == 1, 0, y[10:])
    assert thin_target(y, groups) == "10 positive windows in 1 videos (needs 5 in 2+)"


def test_time_to_maneuver_figure_draws_a_line_per_row_and_chance() -> None:
    nan = (float("nan"),) * 3
    rows = {"model": [(0.9, 0.8, 1.0), (0.7, 0.6, 0.8), nan], "ego_status": [(0.6, 0.5, 0.7)] * 3}
    fig = time_to_maneuver_figure([0.5, 1.0, 3.0], rows, "t")
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["model", "ego_status", "chance 0.50"]
    assert ax.xaxis_inverted()  # time runs towards the onset
    assert len(ax.collections) == 2  # one shaded interval per row
    with pytest.raises(ValueError, match="row 'x' has 2 points for 3 horizons"):
        time_to_maneuver_figure([0.5, 1.0, 3.0], {"x": [(0.5, 0.4, 0.6)] * 2}, "t")


def test_intervals_figure_marks_a_metric_no_row_has() -> None:
    rows = {"a": {"m": (0.6, 0.5, 0.7)}, "b": {}}
    fig = intervals_figure(rows, {"m": "M", "ttm.+3s": "thin"}, "t")
    texts = [[t.get_text() for t in ax.texts] for ax in fig.axes[:2]]
    assert texts == [[], ["n/a"]]
