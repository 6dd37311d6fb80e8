"""BDD100K videos with their GPS/IMU "info" JSON (`tritemporal import bdd100k SRC --out DIR`).

The download (bdd100k.com, "Videos" and "Info") unpacks to `videos/100k/{train,val,test}/<name>.mov`
(40 s, 1280x720, 30 fps) and `info/100k/{train,val}/<name>.json`; a video and its info share
`<name>` (the JSON's own `filename` field does not name the video). An info file holds:

- `startTime`, `endTime`: the video's first and last instants, Unix epoch **milliseconds**;
- `locations`: GPS fixes at ~1 Hz, each `timestamp` (epoch ms), `latitude`, `longitude`,
  `speed` (m/s), `course` (degrees clockwise from north) and `accuracy` (m); `speed` or
  `course` is -1 where the phone had no fix;
- `accelerometer`, `gyro`: ~50 Hz `x, y, z` in the phone's own axes (g, rad/s).

What is written: the video is linked (or copied, `--copy`) as `videos/<split>/<name>.mov`; the
annotation's ego series sit at the valid GPS fixes, on the video's clock
(`(timestamp - startTime) / 1000` s): `speed`, `heading` (course in radians, clockwise, as the
schema wants), `acceleration` (d speed / dt) and `latitude` / `longitude`; the maneuvers come from
them (`data.auto_labels`). The IMU is not read: its axes are the phone's, mounted any way in any
car, so neither its forward nor its vertical axis is known from the file.

Quirks handled: fixes with speed -1 are dropped (a dropout; a hole over `max_gap_s` keeps
maneuvers from spanning it); fixes with course -1 are dropped when most fixes have a course, and
otherwise the file gets no heading (then only brake and stop are labelled); duplicate or
out-of-order timestamps are sorted and deduplicated; an empty or malformed info file, one without
`startTime`, or one with fewer than 2 valid fixes is a counted skip naming the file, as is a video
without an info file (BDD100K's test split has none) and an info file without its video.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tritemporal.data.common import finite_number
from tritemporal.data.importers.base import (
    Converted,
    Importer,
    ImportItemError,
    ImportOptions,
    Item,
    place_video,
    register_importer,
    strictly_increasing,
    write_item_annotation,
)

VIDEO_SUFFIXES = (".mov", ".mp4")
SPLITS = ("train", "val", "test")
GPS_GAP_S = 1.1  # fixes come every second; a longer step is a dropout (noted)
MIN_COURSE_SHARE = 0.5  # below this share of fixes with a course, the file gets no heading


def _name(path: Path) -> str:
    """`<split>/<name>` when the file sits in a split folder, else `<name>`."""
    return f"{path.parent.name}/{path.stem}" if path.parent.name in SPLITS else path.stem


@register_importer
class Bdd100k(Importer):
    """BDD100K: `.mov` videos paired by name with `info/**/<name>.json` (module docstring)."""

    name = "bdd100k"

    def discover(self, src: Path, options: ImportOptions) -> tuple[list[Item], list[tuple]]:
        """Videos and info files under `src`, paired by split and name."""
        videos, infos = {}, {}
        for path in sorted(src.rglob("*")):
            if path.name.startswith("."):
                continue
            if path.suffix.lower() in VIDEO_SUFFIXES:
                videos.setdefault(_name(path), path)
            elif path.suffix.lower() == ".json" and "info" in path.relative_to(src).parts:
                infos.setdefault(_name(path), path)
        if options.split is not None:  # one split into its own data folder (held-out val)
            keep = f"{options.split}/"
            videos = {k: v for k, v in videos.items() if k.startswith(keep)}
            infos = {k: v for k, v in infos.items() if k.startswith(keep)}
        items, skipped = [], []
        for name, video in videos.items():
            if name in infos:
                suffix = video.suffix.lower()
                items.append(Item(name, (video, infos[name]), {"video_suffix": suffix}))
            else:
                skipped.append((name, f"video {video} has no info JSON (no ego signal)"))
        skipped += [
            (name, f"info {path} has no video {name}.mov")
            for name, path in infos.items()
            if name not in videos
        ]
        return items, skipped

    def convert(self, item: Item, out: Path, options: ImportOptions) -> Converted:
        """Link the video; ego series and auto labels from its info JSON."""
        video, info = item.sources
        time_s, series, notes = read_info(info)
        video_out, note_out = self.outputs(item, out)
        source = {"dataset": "bdd100k", "video": video.name, "info": info.name}
        events = write_item_annotation(note_out, time_s, series, source, options.labels)
        place_video(video, video_out, options.copy)
        return Converted(video_out, note_out, events, notes)


def read_info(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    """Ego time (s from the video's start), series and notes of one info JSON; ImportItemError
    naming the file when it cannot give at least 2 valid GPS fixes."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportItemError(f"info {path}: unreadable ({exc})") from exc
    if not text.strip():
        raise ImportItemError(f"info {path}: empty file (a failed download?)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportItemError(f"info {path}: not JSON ({exc})") from exc
    if not isinstance(data, dict) or not finite_number(data.get("startTime")):
        raise ImportItemError(f"info {path}: no numeric startTime (epoch ms)")
    locations = data.get("locations") or []
    if not isinstance(locations, list):
        raise ImportItemError(f"info {path}: locations must be a list of GPS fixes")
    keys = ("timestamp", "speed", "course", "latitude", "longitude")
    fixes = [
        [float(fix[k]) for k in keys]
        for fix in locations
        if isinstance(fix, dict)
        and all(finite_number(fix.get(k)) for k in keys)
        and fix["speed"] >= 0
    ]
    notes = []
    if len(fixes) < len(locations):
        notes.append("GPS fixes without speed dropped")
    table = np.array(fixes, dtype=np.float64).reshape(-1, len(keys))
    if len(table) > 1 and np.any(np.diff(table[:, 0]) <= 0):
        table = table[strictly_increasing(table[:, 0])]
        notes.append("GPS timestamps repeated or out of order (sorted, repeats dropped)")
    has_course = table[:, 2] >= 0
    heading = bool(len(table)) and has_course.mean() >= MIN_COURSE_SHARE
    if heading and not has_course.all():
        table = table[has_course]
        notes.append("GPS fixes without course dropped")
    elif not heading and len(table):
        notes.append("no GPS course: turns and lane changes not labelled")
    if len(table) < 2:
        raise ImportItemError(
            f"info {path}: {len(table)} valid GPS fixes of {len(locations)} (need 2 with speed)"
        )
    time_s = (table[:, 0] - float(data["startTime"])) / 1000.0
    if np.any(np.diff(time_s) > GPS_GAP_S):
        notes.append("GPS dropout (a hole over 1.1 s)")
    speed = table[:, 1]
    series = {"speed": speed, "acceleration": np.gradient(speed, time_s)}
    if heading:
        series["heading"] = np.unwrap(np.radians(table[:, 2]))
    series.update(latitude=table[:, 3], longitude=table[:, 4])
    return time_s, series, notes
