"""Per-video annotations: maneuver events and ego signals, in one documented, versioned schema.

`annotations/<clip>.json` beside `videos/<clip>.mp4` (schema_version 3; version 1 files, which
cannot have `scene`, and version 2 files, whose events cannot have `source`, still load)::

    {
      "schema_version": 3,
      "events": [                                   # maneuvers with start/end in seconds
        {"maneuver": "lane_change_left", "start": 4.2, "end": 6.0},
        {"maneuver": "brake", "start": 9.0, "end": 10.5, "source": "auto"}
      ],
      "ego": {                                      # optional per-frame ego signals
        "time": [0.0, 0.1, 0.2],                    # seconds, increasing
        "speed": [21.3, 21.2, 21.0],                # m/s; any other numeric series may follow
        "steering": [0.0, 0.01, 0.02],              # rad
        "acceleration": [0.0, -0.5, -0.9]           # m/s^2
      },
      "scene": {                                    # optional: present-state facts, one entry
        "left_lane": ["free", "occupied", "no_lane"],   # per ego.time frame; lanes are "free",
        "right_lane": ["no_lane", "no_lane", "free"],   # "occupied" or "no_lane" (none there)
        "leader_gap": [18.5, 17.9, null],           # m bumper to bumper to the leader in the
        "leader_closing": [1.2, 1.1, null],         # ego lane; m/s, > 0 nears it; null: none
        "leader_box": [[0.4, 0.5, 0.6, 0.7], [0.4, 0.5, 0.6, 0.7], null]  # optional: the leader's
      },                                            # image box [left, top, right, bottom] as
                                                    # fractions of width and height
      "source": {"generator": "highway-env", "seed": 0}   # optional, free-form provenance
    }

Maneuver names come from `MANEUVERS` (plus `data.extra_maneuvers`). An event's `source` is
"hand" (the default, written by nobody) or "auto" (derived from the ego series by
`tritemporal label --from-ego`). The outcome label of a time window is the hand event overlapping
it most, else the auto event overlapping it most: hand labels always win. A window no event
touches is `keep_lane` (an annotated video says what happens, so "no event" means cruising).
Videos without an annotation file are unlabelled (-1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tritemporal.data.common import MANEUVERS, finite_number
from tritemporal.files import write_text

SCHEMA_VERSION = 3  # written; READABLE_VERSIONS are loaded
READABLE_VERSIONS = (1, 2, 3)
EVENT_SOURCES = ("hand", "auto")  # events[i].source (schema 3); absent means "hand"
DEFAULT_MANEUVER = "keep_lane"
LANE_STATES = ("free", "occupied", "no_lane")  # scene.left_lane / scene.right_lane values
SCENE_LANES = ("left_lane", "right_lane")
SCENE_LEADER = ("leader_gap", "leader_closing")  # numbers, or null where there is no leader
SCENE_BOX = "leader_box"  # optional (front-camera clips): [l, t, r, b] fractions, or null


class AnnotationError(ValueError):
    """An annotation file that cannot be read or does not follow the schema."""


@dataclass(frozen=True)
class Event:
    """One maneuver between `start` and `end` seconds, labelled by hand or derived ("auto")."""

    maneuver: str
    start: float
    end: float
    source: str = "hand"


@dataclass(frozen=True)
class Annotation:
    """Events, optional ego signals and optional scene facts of one video."""

    events: tuple[Event, ...] = ()
    ego_time: torch.Tensor | None = None  # (N,) seconds
    ego: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (N,)
    scene: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # name -> N values at ego_time

    def maneuver_between(self, start: float, end: float) -> str:
        """The hand event overlapping [start, end) most, else the auto event overlapping it most;
        `keep_lane` when none does."""
        best, best_key = DEFAULT_MANEUVER, (False, 0.0)
        for event in self.events:
            overlap = min(end, event.end) - max(start, event.start)
            key = (event.source == "hand", overlap)
            if overlap > 0 and key > best_key:
                best, best_key = event.maneuver, key
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

    def scene_at(self, times: torch.Tensor) -> dict[str, list[Any]]:
        """Every scene fact at the last frame at or before each of `times` (no interpolation)."""
        if self.ego_time is None or not self.scene:
            return {}
        idx = torch.searchsorted(self.ego_time, times.to(self.ego_time.dtype), right=True) - 1
        idx = idx.clamp(0, len(self.ego_time) - 1).tolist()
        return {name: [values[i] for i in idx] for name, values in self.scene.items()}


def _fail(path: Path, message: str) -> None:
    raise AnnotationError(f"annotation {path}: {message}")


def parse_annotation(data: Any, path: Path, vocabulary: tuple[str, ...] = MANEUVERS) -> Annotation:
    """Validate a loaded JSON object against the schema; errors name the file and the field."""
    if not isinstance(data, dict):
        _fail(path, "must be a JSON object")
    version = data.get("schema_version")
    if version not in READABLE_VERSIONS:
        _fail(path, f"schema_version must be one of {READABLE_VERSIONS}, got {version!r}")
    allowed = ["schema_version", "events", "ego", "source"] + ["scene"] * (version >= 2)
    event_keys = {"maneuver", "start", "end"}
    unknown = set(data) - set(allowed)
    if unknown:
        _fail(path, f"unknown fields {sorted(unknown)}; allowed: {', '.join(allowed)}")
    events = []
    for i, raw in enumerate(data.get("events", [])):
        where = f"events[{i}]"
        keys = set(raw) - {"source"} if isinstance(raw, dict) and version >= 3 else raw
        if not isinstance(raw, dict) or set(keys) != event_keys:
            extra = ", optional source" if version >= 3 else ""
            _fail(path, f"{where} must have exactly maneuver, start, end{extra}")
        source = raw.get("source", "hand")
        if source not in EVENT_SOURCES:
            _fail(path, f"{where}.source must be one of {', '.join(EVENT_SOURCES)}, got {source!r}")
        if raw["maneuver"] not in vocabulary:
            _fail(
                path,
                f"{where}.maneuver {raw['maneuver']!r} is unknown; known: {', '.join(vocabulary)} "
                "(add new names with data.extra_maneuvers)",
            )
        start, end = raw["start"], raw["end"]
        if not (finite_number(start) and finite_number(end) and 0 <= start < end):
            _fail(path, f"{where} needs numeric 0 <= start < end, got {raw['start']}, {raw['end']}")
        events.append(Event(raw["maneuver"], float(raw["start"]), float(raw["end"]), source))
    ego = data.get("ego")
    if ego is None:
        if "scene" in data:
            _fail(path, "scene needs an ego.time series (one scene entry per ego.time frame)")
        return Annotation(tuple(events))
    if not isinstance(ego, dict) or "time" not in ego:
        _fail(path, "ego must be an object with a 'time' series")
    series = {}
    for name, values in ego.items():
        if not isinstance(values, list) or not values or not all(finite_number(v) for v in values):
            _fail(path, f"ego.{name} must be a non-empty list of finite numbers")
        if len(values) != len(ego["time"]):
            _fail(path, f"ego.{name} has {len(values)} values but ego.time has {len(ego['time'])}")
        series[name] = torch.tensor(values, dtype=torch.float64)
    time = series.pop("time")
    if len(time) > 1 and not bool((time[1:] > time[:-1]).all()):
        _fail(path, "ego.time must be strictly increasing")
    scene = _parse_scene(data.get("scene", {}), len(time), path)
    return Annotation(tuple(events), time, series, scene)


def _parse_scene(scene: Any, frames: int, path: Path) -> dict[str, tuple[Any, ...]]:
    """Validate the `scene` object: the four fact series (and optionally the leader's image box),
    one entry per ego.time frame."""
    keys = (*SCENE_LANES, *SCENE_LEADER)
    if not isinstance(scene, dict) or (scene and set(scene) - {SCENE_BOX} != set(keys)):
        _fail(
            path,
            f"scene must be an object with exactly {', '.join(keys)} (and optionally {SCENE_BOX})",
        )
    for name, values in scene.items():
        if not isinstance(values, list) or len(values) != frames:
            _fail(path, f"scene.{name} must be a list with one entry per ego.time ({frames})")
    for name in SCENE_LANES if scene else ():
        if any(v not in LANE_STATES for v in scene[name]):
            _fail(path, f"scene.{name} values must be one of {', '.join(LANE_STATES)}")
    for name in SCENE_LEADER if scene else ():
        if not all(v is None or finite_number(v) for v in scene[name]):
            _fail(path, f"scene.{name} values must be finite numbers or null (no leader)")
    if scene and [v is None for v in scene["leader_gap"]] != [
        v is None for v in scene["leader_closing"]
    ]:
        _fail(path, "scene.leader_gap and scene.leader_closing must be null on the same frames")
    for i, box in enumerate(scene.get(SCENE_BOX, ())):
        if box is None:
            continue
        if scene["leader_gap"][i] is None:
            _fail(path, f"scene.{SCENE_BOX}[{i}] is a box on a frame without a leader (gap null)")
        if not (isinstance(box, list) and len(box) == 4 and all(finite_number(v) for v in box)):
            _fail(path, f"scene.{SCENE_BOX}[{i}] must be [left, top, right, bottom] or null")
        left, top, right, bottom = box
        if not (0 <= left < right <= 1 and 0 <= top < bottom <= 1):
            _fail(
                path,
                f"scene.{SCENE_BOX}[{i}]={box}: need 0 <= left < right <= 1 and "
                "0 <= top < bottom <= 1 (fractions of the image width and height)",
            )
    return {name: tuple(values) for name, values in scene.items()}


def read_annotation_json(path: Path) -> Any:
    """An annotation file's JSON, not yet validated; AnnotationError naming it when unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AnnotationError(f"annotation {path}: unreadable JSON ({exc})") from exc


def load_annotation(path: str | Path, vocabulary: tuple[str, ...] = MANEUVERS) -> Annotation:
    """Read and validate one annotation file."""
    path = Path(path)
    return parse_annotation(read_annotation_json(path), path, vocabulary)


def write_annotation(
    path: str | Path,
    events: list[Event],
    ego: dict[str, list[float]] | None = None,
    source: dict[str, Any] | None = None,
    vocabulary: tuple[str, ...] = MANEUVERS,
    scene: dict[str, list[Any]] | None = None,
) -> None:
    """Write a file atomically (`ego`: `time` + signals; `source`: provenance; `scene`: facts).

    The result is validated first, so a writer can never produce a file the loader rejects.
    """
    path = Path(path)
    data: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    data["events"] = [_event_dict(e) for e in events]
    if ego is not None:
        data["ego"] = ego
    if scene is not None:
        data["scene"] = scene
    if source is not None:
        data["source"] = source
    parse_annotation(data, path, vocabulary)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(data, indent=1))


def _event_dict(event: Event) -> dict[str, Any]:
    """An event as written: `source` only for derived events (hand is the default)."""
    out: dict[str, Any] = {"maneuver": event.maneuver, "start": event.start, "end": event.end}
    if event.source != "hand":
        out["source"] = event.source
    return out
