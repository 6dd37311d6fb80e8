"""Window arithmetic: frame times, fps resampling, strides, gaps and vectorized labels."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from tritemporal.data.annotations import Annotation, Event
from tritemporal.data.windows import (
    WindowSpec,
    maneuvers_between,
    native_indices,
    window_starts,
)

SPEC = WindowSpec(fps=8.0, now_frames=4, soon_frames=2, eventually_frames=2)


def test_frame_times_and_gap() -> None:
    spec = WindowSpec(8.0, 4, 2, 2, gap_s=0.5)
    times = spec.frame_times(2.0)
    expected = [2 + k / 8 for k in range(6)] + [2 + 6 / 8 + 0.5 + k / 8 for k in range(2)]
    assert times.tolist() == pytest.approx(expected)
    assert spec.span_s == pytest.approx(1.5)
    assert spec.eventually_range(2.0) == pytest.approx((3.25, 3.5))


def test_frame_times_of_many_starts_are_each_starts_own() -> None:
    spec = WindowSpec(7.0, 4, 2, 2, gap_s=0.3, stride_s=0.35)  # times off any binary grid
    starts = window_starts(30.0, spec)
    many = spec.frame_times(starts)
    assert many.shape == (len(starts), 8)
    assert np.array_equal(many, np.stack([spec.frame_times(float(s)) for s in starts]))


@pytest.mark.parametrize(
    ("duration", "stride", "gap", "count"),
    [
        (4.0, 1.0, 0.0, 4),
        (4.0, 0.5, 0.0, 7),
        (4.0, 0.5, 0.5, 6),
        (1.0, 1.0, 0.0, 1),
        (0.99, 1, 0, 0),
    ],
)
def test_window_starts_fit_the_video(
    duration: float, stride: float, gap: float, count: int
) -> None:
    spec = WindowSpec(8.0, 4, 2, 2, gap_s=gap, stride_s=stride)
    starts = window_starts(duration, spec)
    assert len(starts) == count
    if count:
        assert starts[-1] + spec.span_s <= duration + 1e-9
        assert np.allclose(np.diff(starts), stride)


def test_native_indices_downsample_and_upsample() -> None:
    times = SPEC.frame_times(1.0)
    got = native_indices(times, 25.0, 100).tolist()
    want = [math.floor((8 + k) * Fraction(25, 8)) for k in range(8)]
    assert got == want == [25, 28, 31, 34, 37, 40, 43, 46]
    slow = native_indices(SPEC.frame_times(0.0), 5.0, 100).tolist()
    assert slow == [0, 0, 1, 1, 2, 3, 3, 4]  # 5 fps read at 8 fps repeats frames
    assert native_indices(np.array([10.0]), 25.0, 100).tolist() == [99]  # clamped


def test_vectorized_labels_match_annotation() -> None:
    events = (
        Event("brake", 1.2, 2.0),
        Event("lane_change_left", 1.5, 3.1),
        Event("stop", 5.0, 5.1),
    )
    annotation = Annotation(events)
    names = ("keep_lane", "lane_change_left", "brake", "stop")
    spec = WindowSpec(8.0, 4, 2, 2, gap_s=0.25, stride_s=0.25)
    starts = window_starts(7.0, spec)
    ev_start, ev_end = spec.eventually_range(starts)
    triples = [(names.index(e.maneuver), e.start, e.end) for e in events]
    got = maneuvers_between(ev_start, ev_end, triples, 0)
    want = [annotation.maneuver_between(*spec.eventually_range(float(s))) for s in starts]
    assert [names[i] for i in got] == want
    assert {"keep_lane", "brake", "lane_change_left", "stop"} <= set(want)


def test_signals_follow_frame_times() -> None:
    ego_time = torch.linspace(0.0, 4.0, 41, dtype=torch.float64)
    annotation = Annotation((), ego_time, {"speed": 3.0 * ego_time})
    times = SPEC.frame_times(1.5)
    speed = annotation.signals_at(torch.from_numpy(times))["speed"]
    assert torch.allclose(speed, torch.from_numpy(3.0 * times))
