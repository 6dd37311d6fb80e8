"""Maneuver events derived from ego series: brake, stop, turns and lane changes.

Why from ego series: real datasets ship speed, heading (GPS course) or yaw rate (gyro) with every
video, but no maneuver labels. These rules turn those series into events with
`"source": "auto"`, so a user labels 100k videos in one command and hand labels still win
(`Annotation.maneuver_between` prefers them; `relabel` never writes an auto event over one).

Conventions of the series (schema `ego`): `time` s, `speed` m/s, `heading` rad and `yaw_rate`
rad/s, both growing clockwise seen from above (a right turn raises them: a compass course, and
highway-env's y-down frame). One of `heading` or `yaw_rate` is enough for turns and lane
changes; without either only brake and stop are derived. Thresholds are `data.auto_labels`
(config.AutoLabelConfig says where each default comes from).

How each maneuver is found, on the series resampled to `resample_hz` and smoothed over
`smooth_s` (a hole longer than `max_gap_s` splits them, and no event spans it):
- **brake**: decelerating faster than `brake_decel`, losing at least `brake_drop` m/s;
- **stop**: slower than `stop_speed` for `stop_min_s`;
- **turn left / right**: the yaw rate beyond `turn_rate` one way, turning `turn_min_deg` in all;
- **lane change left / right**: the road's direction is the running median of the heading over
  `road_window_s` (a lane change is too short to move it); the speed across it, integrated
  while it stays beyond `lane_lateral_speed` one way, moves the car `lane_offset_m` within
  `lane_max_s`, and the heading ends within `lane_max_heading_deg` of where it began.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tritemporal.config import AutoLabelConfig
from tritemporal.data.annotations import (
    Annotation,
    AnnotationError,
    Event,
    parse_annotation,
    read_annotation_json,
    write_annotation,
)
from tritemporal.data.common import MANEUVERS

AUTO = "auto"
# Ego series cannot tell why the car slows: the simulator's "yield" (slowing for another road
# user) is a brake to these rules, so agreement counts it as one.
SAME_AS = {"yield": "brake"}


def _runs(mask: np.ndarray, join: int) -> list[tuple[int, int]]:
    """(first, last) indices of the True runs of `mask`, joining runs at most `join` apart."""
    idx = np.flatnonzero(mask)
    if not len(idx):
        return []
    breaks = np.flatnonzero(np.diff(idx) > join + 1)
    firsts = np.concatenate([[idx[0]], idx[breaks + 1]])
    lasts = np.concatenate([idx[breaks], [idx[-1]]])
    return list(zip(firsts.tolist(), lasts.tolist(), strict=True))


def _windows(x: np.ndarray, width: int) -> np.ndarray:
    """(len(x), width) centred windows of `x`, the ends padded with the end values."""
    pad = width // 2
    padded = np.concatenate([np.full(pad, x[0]), x, np.full(width - 1 - pad, x[-1])])
    return np.lib.stride_tricks.sliding_window_view(padded, width)


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over `width` samples, the ends padded with the end values."""
    return x if width <= 1 or len(x) < 2 else _windows(x, width).mean(axis=1)


def _running_median(x: np.ndarray, width: int) -> np.ndarray:
    """Centred running median over `width` samples, the ends padded with the end values."""
    return x if width <= 1 or len(x) < 2 else np.median(_windows(x, width), axis=1)


@dataclass
class _Track:
    """One gap-free stretch of the series on a regular grid."""

    time: np.ndarray
    speed: np.ndarray  # smoothed
    raw_speed: np.ndarray  # resampled only: a short, hard brake keeps its whole drop
    heading: np.ndarray | None  # unwrapped, smoothed, rad, clockwise-positive
    width: int  # samples the smoothing averages

    @property
    def dt(self) -> float:
        return float(self.time[1] - self.time[0])


def _tracks(time: np.ndarray, series: dict[str, np.ndarray], cfg: AutoLabelConfig) -> list[_Track]:
    """The series split at holes longer than `max_gap_s`, resampled and smoothed."""
    if "speed" not in series:
        raise ValueError("no ego speed series: auto labels need `speed` (m/s)")
    heading = None
    if "heading" in series:
        heading = np.unwrap(np.asarray(series["heading"], dtype=np.float64))
    elif "yaw_rate" in series:  # the heading up to a constant, which no rule depends on
        rate = np.asarray(series["yaw_rate"], dtype=np.float64)
        steps = np.diff(time) * (rate[1:] + rate[:-1]) / 2
        steps[np.diff(time) > cfg.max_gap_s] = 0.0
        heading = np.concatenate([[0.0], np.cumsum(steps)])
    speed = np.asarray(series["speed"], dtype=np.float64)
    dt = 1.0 / cfg.resample_hz
    width = max(1, round(cfg.smooth_s / dt))
    out = []
    cuts = np.flatnonzero(np.diff(time) > cfg.max_gap_s) + 1
    for part in np.split(np.arange(len(time)), cuts):
        t = time[part]
        if len(t) < 2 or t[-1] - t[0] < 2 * dt:
            continue
        grid = np.arange(t[0], t[-1] + 1e-9, dt)
        track_heading = None
        if heading is not None:
            track_heading = _smooth(np.interp(grid, t, heading[part]), width)
        raw = np.interp(grid, t, speed[part])
        out.append(_Track(grid, _smooth(raw, width), raw, track_heading, width))
    return out


def _brakes_and_stops(track: _Track, cfg: AutoLabelConfig, join: int) -> list[Event]:
    t, v = track.time, track.speed
    events = []
    decel = np.gradient(v, track.dt) < -cfg.brake_decel
    half = track.width // 2 + 1  # smoothing moves a brake's edges by up to half its width
    for a, b in _runs(decel, join):
        lo, hi = max(0, a - half), min(len(v), b + half + 1)
        if track.raw_speed[lo : b + 1].max() - track.raw_speed[a:hi].min() >= cfg.brake_drop:
            events.append(Event("brake", float(t[a]), float(t[b]), AUTO))
    for a, b in _runs(v < cfg.stop_speed, 0):
        if t[b] - t[a] >= cfg.stop_min_s:
            events.append(Event("stop", float(t[a]), float(t[b]), AUTO))
    return events


def _turns(track: _Track, cfg: AutoLabelConfig, join: int) -> list[Event]:
    t, h = track.time, track.heading
    rate = np.gradient(h, track.dt)
    events = []
    for sign, name in ((1, "turn_right"), (-1, "turn_left")):
        for a, b in _runs(sign * rate > math.radians(cfg.turn_rate), join):
            if sign * (h[b] - h[a]) >= math.radians(cfg.turn_min_deg):
                events.append(Event(name, float(t[a]), float(t[b]), AUTO))
    return events


def _lane_changes(track: _Track, cfg: AutoLabelConfig, join: int) -> list[Event]:
    t, h, dt = track.time, track.heading, track.dt
    road = _running_median(h, max(1, round(cfg.road_window_s / dt)))
    lateral = track.speed * np.sin(h - road)  # m/s, > 0 to the right
    events = []
    for sign, name in ((1, "lane_change_right"), (-1, "lane_change_left")):
        for a, b in _runs(sign * lateral > cfg.lane_lateral_speed, join):
            moved = sign * float(lateral[a : b + 1].sum()) * dt
            turned = abs(h[b] - h[a])
            if (
                moved >= cfg.lane_offset_m
                and t[b] - t[a] <= cfg.lane_max_s
                and turned <= math.radians(cfg.lane_max_heading_deg)
            ):
                events.append(Event(name, float(t[a]), float(t[b]), AUTO))
    return events


def _overlaps(event: Event, others: Iterable[Event]) -> bool:
    return any(min(event.end, o.end) > max(event.start, o.start) for o in others)


def ego_events(
    time: np.ndarray, series: dict[str, np.ndarray], cfg: AutoLabelConfig
) -> list[Event]:
    """Auto events (module docstring) from ego series sampled at `time` (s, increasing)."""
    time = np.asarray(time, dtype=np.float64)
    if len(time) > 1 and not bool(np.all(np.diff(time) > 0)):
        raise ValueError("ego time must be strictly increasing")
    events: list[Event] = []
    join = max(0, round(cfg.join_s * cfg.resample_hz))
    for track in _tracks(time, series, cfg):
        events += _brakes_and_stops(track, cfg, join)
        if track.heading is not None:
            turns = _turns(track, cfg, join)
            lanes = [e for e in _lane_changes(track, cfg, join) if not _overlaps(e, turns)]
            events += turns + lanes
    rounded = (Event(e.maneuver, round(e.start, 3), round(e.end, 3), AUTO) for e in events)
    return sorted((e for e in rounded if e.end > e.start), key=lambda e: (e.start, e.maneuver))


def merge_events(existing: Iterable[Event], auto: Iterable[Event]) -> list[Event]:
    """Hand events kept, earlier auto events replaced by `auto`, none written over a hand one."""
    hand = [e for e in existing if e.source != AUTO]
    fresh = [e for e in auto if not _overlaps(e, hand)]
    return sorted(hand + fresh, key=lambda e: (e.start, e.maneuver))


@dataclass
class LabelSummary:
    """What `relabel` did: files labelled, skipped (with reasons) and events per maneuver."""

    labelled: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    kept_hand: int = 0

    def to_dict(self) -> dict:
        """JSON-ready."""
        return {
            "labelled": self.labelled, "skipped": self.skipped, "events": dict(self.counts),
            "kept_hand": self.kept_hand,
        }  # fmt: skip

    def format(self, max_skipped: int = 5) -> str:
        """The summary as printed by `tritemporal label`."""
        lines = [f"labelled {self.labelled} annotation files; skipped {len(self.skipped)}"]
        lines += [f"  skipped {name}: {why}" for name, why in self.skipped[:max_skipped]]
        if len(self.skipped) > max_skipped:
            lines.append(f"  ... and {len(self.skipped) - max_skipped} more")
        lines.append(f"{'auto events':<20}{'count':>7}")
        lines += [f"  {m:<18}{self.counts.get(m, 0):>7}" for m in MANEUVERS if m != "keep_lane"]
        lines.append(f"hand events kept: {self.kept_hand}")
        return "\n".join(lines)


def _derive(
    path: Path, cfg: AutoLabelConfig, vocabulary: tuple[str, ...]
) -> tuple[dict, Annotation, list[Event]]:
    """A file's JSON, its parsed annotation and the auto events of its ego series."""
    data = read_annotation_json(path)
    note = parse_annotation(data, path, vocabulary)
    if note.ego_time is None:
        raise AnnotationError(f"annotation {path}: no ego series to derive labels from")
    try:
        auto = ego_events(note.ego_time.numpy(), {k: v.numpy() for k, v in note.ego.items()}, cfg)
    except ValueError as exc:
        raise AnnotationError(f"annotation {path}: {exc}") from exc
    return data, note, auto


def relabel_file(path: Path, cfg: AutoLabelConfig, vocabulary: tuple[str, ...]) -> list[Event]:
    """Derive a file's auto events from its ego series and write them back (atomically)."""
    data, note, auto = _derive(path, cfg, vocabulary)
    events = merge_events(note.events, auto)
    write_annotation(
        path, events, data.get("ego"), data.get("source"), vocabulary, data.get("scene")
    )
    return events


def _annotation_files(root: str | Path) -> list[Path]:
    folder = Path(root) / "annotations"
    if not folder.is_dir():
        raise FileNotFoundError(f"{root} has no annotations/ folder to label")
    return sorted(p for p in folder.rglob("*.json") if not p.name.startswith("."))


def relabel(
    root: str | Path, cfg: AutoLabelConfig, vocabulary: tuple[str, ...] = MANEUVERS,
    on_error: str = "skip",
) -> LabelSummary:  # fmt: skip
    """Auto labels for every `annotations/**/*.json` under `root` (a data folder); a file that
    cannot be labelled is skipped and counted, or raises under `on_error="raise"`."""
    summary = LabelSummary()
    for path in _annotation_files(root):
        try:
            events = relabel_file(path, cfg, vocabulary)
        except AnnotationError as exc:
            if on_error == "raise":
                raise
            summary.skipped.append((str(path.relative_to(root)), str(exc)))
            continue
        summary.labelled += 1
        summary.counts.update(e.maneuver for e in events if e.source == AUTO)
        summary.kept_hand += sum(e.source != AUTO for e in events)
    return summary


def agreement(pairs: Iterable[tuple[list[Event], list[Event]]]) -> dict[str, dict]:
    """Per maneuver, precision and recall of auto events against true ones over many videos:
    an event is found when one of the same maneuver overlaps it in time (`SAME_AS` applied to
    the truth)."""
    found: Counter = Counter()
    for truth, auto in pairs:
        truth = [Event(SAME_AS.get(e.maneuver, e.maneuver), e.start, e.end) for e in truth]
        for kind in {e.maneuver for e in truth} | {e.maneuver for e in auto}:
            true_k = [e for e in truth if e.maneuver == kind]
            auto_k = [e for e in auto if e.maneuver == kind]
            found[kind, "true"] += len(true_k)
            found[kind, "auto"] += len(auto_k)
            found[kind, "recalled"] += sum(_overlaps(e, auto_k) for e in true_k)
            found[kind, "correct"] += sum(_overlaps(e, true_k) for e in auto_k)
    out = {}
    for kind in sorted({k for k, _ in found}):
        true_n, auto_n = found[kind, "true"], found[kind, "auto"]
        out[kind] = {
            "true_events": true_n,
            "auto_events": auto_n,
            "recall": found[kind, "recalled"] / true_n if true_n else None,
            "precision": found[kind, "correct"] / auto_n if auto_n else None,
        }
    return out


def score_folder(
    root: str | Path, cfg: AutoLabelConfig, vocabulary: tuple[str, ...] = MANEUVERS
) -> dict:
    """Precision and recall of the auto events against each file's hand events (a labelled
    set, such as `make-clips` output whose events are the simulator's truth); writes nothing."""
    pairs, files = [], 0
    for path in _annotation_files(root):
        _, note, auto = _derive(path, cfg, vocabulary)
        pairs.append(([e for e in note.events if e.source != AUTO], auto))
        files += 1
    return {"files": files, "maneuvers": agreement(pairs)}


def format_scores(scores: dict) -> str:
    """The `--score` table: per maneuver, true and auto event counts, recall and precision."""
    num = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    lines = [f"auto labels against hand labels in {scores['files']} files"]
    lines.append(f"{'maneuver':<20}{'true':>6}{'auto':>6}{'recall':>9}{'precision':>11}")
    for name, r in scores["maneuvers"].items():
        lines.append(
            f"{name:<20}{r['true_events']:>6}{r['auto_events']:>6}{num(r['recall']):>9}"
            f"{num(r['precision']):>11}"
        )
    return "\n".join(lines)
