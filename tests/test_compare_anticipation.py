"""`tritemporal compare`'s anticipation references: the ego-status guard and time to maneuver."""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_compare import PNG, _saved
from tritemporal.cli import main, parse_horizons
from tritemporal.data.annotations import Annotation, Event
from tritemporal.data.videos import VideoWindows
from tritemporal.data.windows import WindowSpec, window_starts
from tritemporal.eval.anticipation import (
    ego_status_features,
    thin_target,
    ttm_key,
    ttm_targets,
)
from tritemporal.eval.compare import (
    COMPARISON_JSON,
    COMPARISON_MD,
    TIME_TO_MANEUVER_PNG,
    bootstrap_interval,
    column_name,
    compare,
    ttm_statistics,
    video_resamples,
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


def test_ttm_probe_reads_a_planted_feature_and_not_a_constant() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(12), 30)
    y = rng.choice([1, 0, -1], size=len(groups), p=[0.2, 0.5, 0.3])
    targets = {ttm_key(1.0): y}
    resamples = video_resamples(groups, 50, seed=0)
    planted = np.stack([y == 1, rng.normal(size=len(y))], axis=1) + 0.1 * rng.normal(size=(360, 2))
    constant = np.ones((len(y), 3))
    scores = {}
    for name, x in (("planted", planted), ("constant", constant)):
        stats = ttm_statistics(x, targets, groups, seed=0, row=name)
        assert list(stats) == ["ttm.+1s"]
        statistic = stats["ttm.+1s"]
        low, high = bootstrap_interval(statistic, resamples)
        scores[name] = (statistic(np.arange(len(y))), low, high)
    assert scores["planted"][0] > 0.97 and scores["planted"][1] > 0.9
    assert scores["constant"][0] == pytest.approx(0.5, abs=0.02)
    # a horizon whose targets hold one class gives no cell (compare warns and leaves it empty)
    assert ttm_statistics(planted, {ttm_key(2.0): np.where(y == 1, -1, y)}, groups, 0, "x") == {}


def test_ttm_keys_columns_and_cli_horizons() -> None:
    assert [ttm_key(d) for d in (0.5, 1.0, 3)] == ["ttm.+0.5s", "ttm.+1s", "ttm.+3s"]
    assert column_name("ttm.+0.5s") == "time to maneuver +0.5s bal. acc."
    assert parse_horizons("0.5, 1,2") == [0.5, 1.0, 2.0]
    assert parse_horizons("") == []  # --ttm '' skips the columns
    with pytest.raises(argparse.ArgumentTypeError, match=r"seconds like 0\.5,1,2,3"):
        parse_horizons("1,soon")


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


def test_ego_status_needs_a_model_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ego-status needs a model source beside it"):
        compare(["ego-status"], tmp_path)
    with pytest.raises(ValueError, match="give distinct horizons in seconds > 0"):
        compare(["ego-status"], tmp_path, ttm=[1.0, -1.0])


def _planted_events(clips: Path, out: Path) -> Path:
    """A copy of the clips whose events are two short brakes at 4.0 and 6.5 s in every video."""
    shutil.copytree(clips, out)
    planted = [{"maneuver": "brake", "start": 4.0, "end": 4.3},
               {"maneuver": "brake", "start": 6.5, "end": 6.8}]  # fmt: skip
    for path in (out / "annotations").glob("*.json"):
        data = json.loads(path.read_text())
        path.write_text(json.dumps(data | {"events": planted}))
    return out


@pytest.mark.slow
def test_compare_with_ego_status_writes_ttm_columns_and_curve(
    eval_clips: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = _planted_events(eval_clips, tmp_path / "data")
    a, b = _saved(tmp_path / "a"), _saved(tmp_path / "b", seed=1)
    out = tmp_path / "cmp"
    args = ["compare", str(a), "ego-status", str(b), "--data", str(data), "--out", str(out)]
    args += ["--group", "ab=a,b", "--bootstrap", "20", "--parts", "eventually", "ttm"]
    # 0.5 and 1 s: one window per brake and video; 1.5 s: the first brake's only (the second
    # starts 1.5 s after NOW windows that hold the first), too few to probe
    caplog.set_level(logging.WARNING, logger="tritemporal.eval.anticipation")
    assert main([*args, "--ttm", "0.5,1,1.5", "--device", "cpu"]) == 0
    result = json.loads((out / COMPARISON_JSON).read_text())
    assert result["ttm"] == [0.5, 1.0, 1.5]
    rows = {r["name"]: r for r in result["rows"]}
    assert list(rows) == ["a", "ego_status", "b", "ab"]
    ego = rows["ego_status"]
    assert ego["source"] == "ego-status"
    assert ego["series"] == ["speed", "steering", "acceleration", "heading", "heading_rate"]
    keys = ["ttm.+0.5s", "ttm.+1s"]
    assert set(ego["metrics"]) == {"eventually.outcome.balanced_accuracy",
                                   "eventually.outcome.macro_f1", *keys}  # fmt: skip
    for row in rows.values():
        for key in keys:
            m = row["metrics"][key]
            assert 0.0 <= m["low"] - 1e-3 <= m["value"] <= m["high"] + 1e-3 <= 1.0 + 2e-3, key
        assert "ttm.+1.5s" not in row["metrics"]
    assert "eventually.now_mean.balanced_accuracy" in rows["a"]["metrics"]
    assert result["columns"]["ttm.+1.5s"] == "time to maneuver +1.5s bal. acc."  # empty column
    assert result["chance"]["ttm.+1s"] == 0.5
    assert any("time to maneuver +1.5s: 3 positive" in r.getMessage() for r in caplog.records)
    table = (out / COMPARISON_MD).read_text().splitlines()
    ego_line = next(line for line in table if line.startswith("| ego_status |"))
    assert ego_line.count(" - ") == 3  # mean NOW bal. acc. and macro-F1; the thin ttm column
    assert ego_line.rstrip(" |").endswith("-")
    assert (out / TIME_TO_MANEUVER_PNG).read_bytes().startswith(PNG)
    # --ttm '': no ttm column and no curve
    plain = tmp_path / "plain"
    assert main([*args, "--ttm", "", "--out", str(plain), "--device", "cpu"]) == 0
    again = json.loads((plain / COMPARISON_JSON).read_text())
    assert again["ttm"] == [] and not any(k.startswith("ttm.") for k in again["columns"])
    assert not (plain / TIME_TO_MANEUVER_PNG).exists()
