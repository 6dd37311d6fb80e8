"""Per-video annotations: maneuver events and ego signals, in one documented, versioned schema.

`annotations/<clip>.json` beside `videos/<clip>.mp4` (schema_version 1)::

    {
      "schema_version": 1,
      "events": [                                   # maneuvers with start/end in seconds
        {"maneuver": "lane_change_left", "start": 4.2, "end": 6.0},
        {"maneuver": "brake", "start": 9.0, "end": 10.5}
      ],
      "ego": {                                      # optional per-frame ego signals
        "time": [0.0, 0.1, 0.2],                    # seconds, increasing
        "speed": [21.3, 21.2, 21.0],                # m/s; any other numeric series may follow
        "steering": [0.0, 0.01, 0.02],              # rad
        "acceleration": [0.0, -0.5, -0.9]           # m/s^2
      },
      "source": {"generator": "highway-env", "seed": 0}   # optional, free-form provenance
    }

Maneuver names come from `MANEUVERS` (plus `data.extra_maneuvers`). The outcome label of a time
window is the event overlapping it most; a window no event touches is `keep_lane` (an annotated
video says what happens, so "no event" means cruising). Videos without an annotation file are
unlabelled (-1).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tritemporal.data.common import MANEUVERS

SCHEMA_VERSION = 1
DEFAULT_MANEUVER = "keep_lane"


class AnnotationError(ValueError):
    """An annotation file that cannot be read or does not follow the schema."""


@dataclass(frozen=True)
class Event:
    """One maneuver between `start` and `end` seconds."""

    maneuver: str
    start: float
    end: float


@dataclass(frozen=True)
class Annotation:
    """Events and optional ego signals of one video."""

    events: tuple[Event, ...] = ()
    ego_time: torch.Tensor | None = None  # (N,) seconds
    ego: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (N,)

    def maneuver_between(self, start: float, end: float) -> str:
        """The maneuver overlapping [start, end) most; `keep_lane` when none does."""
        best, best_overlap = DEFAULT_MANEUVER, 0.0
        for event in self.events:
            overlap = min(end, event.end) - max(start, event.start)
            if overlap > best_overlap:
                best, best_overlap = event.maneuver, overlap
        return best

    def signals_at(self, times: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every ego signal linearly interpolated at `times` (seconds), clamped at the ends."""
        if self.ego_time is None:
            return {}
        t = self.ego_time
        idx = torch.searchsorted(t, times.to(t.dtype)).clamp(1, len(t) - 1)
        t0, t1 = t[idx - 1], t[idx]
        w = ((times - t0) / (t1 - t0).clamp(min=1e-9)).clamp(0.0, 1.0)
        return {name: v[idx - 1] + w * (v[idx] - v[idx - 1]) for name, v in self.ego.items()}


def _fail(path: Path, message: str) -> None:
    raise AnnotationError(f"annotation {path}: {message}")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_annotation(data: Any, path: Path, vocabulary: tuple[str, ...] = MANEUVERS) -> Annotation:
    """Validate a loaded JSON object against schema 1; errors name the file and the field."""
    if not isinstance(data, dict):
        _fail(path, "must be a JSON object")
    if data.get("schema_version") != SCHEMA_VERSION:
        _fail(path, f"schema_version must be {SCHEMA_VERSION}, got {data.get('schema_version')!r}")
    unknown = set(data) - {"schema_version", "events", "ego", "source"}
    if unknown:
        _fail(path, f"unknown fields {sorted(unknown)}; allowed: schema_version, events, ego")
    events = []
    for i, raw in enumerate(data.get("events", [])):
        where = f"events[{i}]"
        if not isinstance(raw, dict) or set(raw) != {"maneuver", "start", "end"}:
            _fail(path, f"{where} must have exactly maneuver, start, end")
        if raw["maneuver"] not in vocabulary:
            _fail(
                path,
                f"{where}.maneuver {raw['maneuver']!r} is unknown; known: {', '.join(vocabulary)} "
                "(add new names with data.extra_maneuvers)",
            )
        if not (_number(raw["start"]) and _number(raw["end"]) and 0 <= raw["start"] < raw["end"]):
            _fail(path, f"{where} needs numeric 0 <= start < end, got {raw['start']}, {raw['end']}")
        events.append(Event(raw["maneuver"], float(raw["start"]), float(raw["end"])))
    ego = data.get("ego")
    if ego is None:
        return Annotation(tuple(events))
    if not isinstance(ego, dict) or "time" not in ego:
        _fail(path, "ego must be an object with a 'time' series")
    series = {}
    for name, values in ego.items():
        if not isinstance(values, list) or not values or not all(_number(v) for v in values):
            _fail(path, f"ego.{name} must be a non-empty list of finite numbers")
        if len(values) != len(ego["time"]):
            _fail(path, f"ego.{name} has {len(values)} values but ego.time has {len(ego['time'])}")
        series[name] = torch.tensor(values, dtype=torch.float64)
    time = series.pop("time")
    if len(time) > 1 and not bool((time[1:] > time[:-1]).all()):
        _fail(path, "ego.time must be strictly increasing")
    return Annotation(tuple(events), time, series)


def load_annotation(path: str | Path, vocabulary: tuple[str, ...] = MANEUVERS) -> Annotation:
    """Read and validate one annotation file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AnnotationError(f"annotation {path}: unreadable JSON ({exc})") from exc
    return parse_annotation(data, path, vocabulary)


def write_annotation(
    path: str | Path,
    events: list[Event],
    ego: dict[str, list[float]] | None = None,
    source: dict[str, Any] | None = None,
    vocabulary: tuple[str, ...] = MANEUVERS,
) -> None:
    """Write a schema-1 file atomically (`ego`: `time` + signal series; `source`: provenance).

    The result is validated first, so a writer can never produce a file the loader rejects.
    """
    path = Path(path)
    data: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    data["events"] = [{"maneuver": e.maneuver, "start": e.start, "end": e.end} for e in events]
    if ego is not None:
        data["ego"] = ego
    if source is not None:
        data["source"] = source
    parse_annotation(data, path, vocabulary)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
