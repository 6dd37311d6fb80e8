"""The anticipation references of `tritemporal compare`, read from the annotations alone (no frame
is decoded): the ego-status guard's features and the time-to-maneuver targets of every window.

Ego status (the AD-MLP guard): a window's features are its NOW frames' own ego series and nothing
else. At each NOW frame time (`WindowSpec.frame_times(start)[:now_frames]`) the `EGO_SERIES` that
every held-out video's annotation carries are read (linearly interpolated, as training reads
them); the heading enters relative to the last NOW frame, h(t_i) - h(t_last) wrapped to
(-pi, pi], since a compass course says nothing about the maneuver; with a heading and no yaw rate,
the heading rate (its finite difference over the NOW frames) is added. The (now_frames, F) values
are flattened; the probe standardises them with its training fold's statistics.

Time to maneuver (the Brain4Cars reading): with t_end = start + now_frames / fps, the end of a
window's NOW part, the onset of a window is the start of the first annotated event (any maneuver
but keep_lane; hand and auto events alike, since an onset is an onset whoever marked it) that
starts at or after t_end. At horizon d a window is

- positive when its onset lies in [t_end + d - stride / 2, t_end + d + stride / 2) and no event
  overlaps its NOW part [start, t_end) (a maneuver already under way is not anticipated);
- negative (the same windows at every horizon) when no event overlaps
  [start, t_end + max(d) + stride / 2) and that span lies within the video (what follows the
  video's end is unknown);
- else not scored.

Each event gives one positive per horizon and video (the bins are one stride wide); horizons
closer than the stride share windows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from tritemporal.data.annotations import DEFAULT_MANEUVER, Annotation
from tritemporal.data.videos import VideoClips, VideoWindows
from tritemporal.data.windows import WindowSpec

logger = logging.getLogger(__name__)

EGO_SERIES = ("speed", "steering", "acceleration", "yaw_rate", "heading")  # schema `ego` names
HEADING_RATE = "heading_rate"  # added (rad/s) when the annotations carry heading but no yaw_rate
TTM_HORIZONS = (0.5, 1.0, 2.0, 3.0)  # seconds from the NOW window's end to the onset
MIN_TTM_WINDOWS, MIN_TTM_VIDEOS = 5, 2  # per class, for a horizon to be probed
_EPS = 1e-6  # absorbs float error in window times, as `data.windows` does


def ego_series(videos: Sequence[VideoWindows], root: str | Path) -> tuple[str, ...]:
    """The `EGO_SERIES` every video's annotation carries, in that order; a ValueError naming
    `root` when a video has no ego series or the videos share none of them."""
    egos = [v.annotation.ego for v in videos if v.annotation and v.annotation.ego_time is not None]
    if len(egos) < len(videos):
        lacking = [v.key for v in videos if not v.annotation or v.annotation.ego_time is None]
        more = ", ..." if len(lacking) > 3 else ""
        raise ValueError(
            f"ego-status reads the ego series of every video under {root}, but {len(lacking)} "
            f"have no annotation with an `ego` object ({', '.join(lacking[:3])}{more}): "
            "annotate them, or leave ego-status out"
        )
    shared = tuple(s for s in EGO_SERIES if all(s in ego for ego in egos))
    if not shared:
        found = sorted({s for ego in egos for s in ego})
        raise ValueError(
            f"ego-status needs one of the ego series {', '.join(EGO_SERIES)} in every video "
            f"under {root}; they share none (found: {', '.join(found) or 'none'})"
        )
    return shared


def ego_status_features(
    videos: Sequence[VideoWindows], spec: WindowSpec, root: str | Path
) -> tuple[np.ndarray, list[str]]:
    """The ego-status vector of every window, (windows, now_frames * F) frame by frame, and the
    names of its F series (see the module docstring)."""
    series = ego_series(videos, root)
    values = np.concatenate([_now_series(v, spec, series) for v in videos])  # (W, now_frames, F)
    names = list(series)
    if "heading" in series:
        h = names.index("heading")
        values[..., h] = _wrap(values[..., h] - values[:, -1:, h])
        if "yaw_rate" not in series and spec.now_frames > 1:
            heading_rate = np.gradient(values[..., h], 1 / spec.fps, axis=1)
            values = np.concatenate([values, heading_rate[..., None]], axis=-1)
            names.append(HEADING_RATE)
    logger.info("ego-status reads %s at %d NOW frames", ", ".join(names), spec.now_frames)
    return values.reshape(len(values), -1), names


def _now_series(video: VideoWindows, spec: WindowSpec, series: tuple[str, ...]) -> np.ndarray:
    """`series` at the NOW frame times of each of the video's windows, (W, now_frames, F)."""
    assert video.annotation is not None, "ego_series checked every video"
    times = spec.frame_times(video.starts)[:, : spec.now_frames]  # (W, now_frames)
    at = video.annotation.signals_at(torch.from_numpy(times.reshape(-1)))
    values = torch.stack([at[name] for name in series], dim=-1).numpy()
    return values.reshape(*times.shape, len(series))


def _wrap(angle: np.ndarray) -> np.ndarray:
    """Angles (rad) wrapped to (-pi, pi]."""
    return np.pi - np.mod(np.pi - angle, 2 * np.pi)


def ttm_key(horizon: float) -> str:
    """The metric key of a time-to-maneuver horizon in seconds: `ttm.+1s`, `ttm.+0.5s`."""
    return f"ttm.+{horizon:g}s"


def ttm_targets(
    videos: Sequence[VideoWindows], spec: WindowSpec, horizons: Sequence[float]
) -> dict[float, np.ndarray]:
    """Per horizon, each window's target: 1 a maneuver starts that long after NOW ends, 0 no
    maneuver through the longest horizon, -1 not scored (see the module docstring)."""
    half = spec.stride_s / 2
    reach = max(horizons) + half
    per_video: dict[float, list[np.ndarray]] = {d: [] for d in horizons}
    for video in videos:
        t_start = video.starts
        t_end = t_start + spec.now_frames / spec.fps
        ev = _maneuver_spans(video.annotation)  # (E, 2)
        busy_now = _overlaps(ev, t_start, t_end)
        within = t_end + reach <= video.duration + _EPS
        clear = ~_overlaps(ev, t_start, t_end + reach)
        negative = within & clear & (video.annotation is not None)  # unlabelled: never scored
        later = ev[None, :, 0] >= t_end[:, None] - _EPS  # (W, E) events starting from t_end on
        onset = np.where(later, ev[None, :, 0], np.inf).min(axis=1, initial=np.inf)
        ahead = onset - t_end
        for d in horizons:
            positive = ~busy_now & (ahead >= d - half - _EPS) & (ahead < d + half - _EPS)
            per_video[d].append(np.where(positive, 1, np.where(negative, 0, -1)))
    return {d: np.concatenate(parts) for d, parts in per_video.items()}


def _maneuver_spans(annotation: Annotation | None) -> np.ndarray:
    """(E, 2) [start, end) of the annotation's events other than keep_lane (none if None)."""
    events = [] if annotation is None else annotation.events
    spans = [(e.start, e.end) for e in events if e.maneuver != DEFAULT_MANEUVER]
    return np.asarray(spans, dtype=np.float64).reshape(-1, 2)


def _overlaps(spans: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """(W,) whether any span (E, 2) overlaps each [start, end) by a positive time."""
    hi = np.minimum(ends[:, None], spans[None, :, 1])
    lo = np.maximum(starts[:, None], spans[None, :, 0])
    return ((hi - lo) > 0.0).any(axis=1)


def thin_target(y: np.ndarray, groups: np.ndarray) -> str | None:
    """Why targets y (1 / 0 / -1) cannot be probed across held-out videos (a class with fewer
    than `MIN_TTM_WINDOWS` windows or `MIN_TTM_VIDEOS` videos), or None when they can."""
    for label, name in ((1, "positive"), (0, "negative")):
        windows = int((y == label).sum())
        videos = len(np.unique(groups[y == label]))
        if windows < MIN_TTM_WINDOWS or videos < MIN_TTM_VIDEOS:
            return (
                f"{windows} {name} windows in {videos} videos (needs {MIN_TTM_WINDOWS} in "
                f"{MIN_TTM_VIDEOS}+)"
            )
    return None


def probed_targets(dataset: VideoClips, horizons: Sequence[float]) -> dict[str, np.ndarray]:
    """`ttm_targets` of the dataset's windows by metric key, for the horizons that can be probed:
    a thin one is left out with a warning (its cells stay empty)."""
    targets = {}
    for d, y in ttm_targets(dataset.video_windows(), dataset.spec, horizons).items():
        reason = thin_target(y, dataset.video_ids)
        if reason is None:
            targets[ttm_key(d)] = y
        else:
            logger.warning("time to maneuver +%gs: %s; its cells stay empty", d, reason)
    return targets
