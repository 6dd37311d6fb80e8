"""Replay a simulated highway-env clip and take the ego over with continuous controls.

A planner proposes the ego's steering and acceleration from some frame of a `make-clips` video
on; only the simulator can say where they take it (did the ego end in the lane to its left?).
`replay` rebuilds the clip's env from its annotation's `source` (scenario, env seed, fps, zoom,
front camera), re-runs the recorded episode up to that frame, checks that it is the recorded
one, drives the ego with the controls (bypassing its lane and speed controllers, see
`highway._drive`), then lets a lane keeper hold the lane the controls left it in.

Why the check: a replay is only an answer about the clip if the traffic before the takeover is
the recorded traffic. Another highway-env version, or a source edited by hand, would silently
replay another episode, so every ego signal up to the takeover frame must equal the annotation's.
Nothing is rendered or written: the ego's rules read the simulator, not the pixels (the image
size still matters, as it decides what the camera sees).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tritemporal.data.annotations import parse_annotation, read_annotation_json
from tritemporal.data.common import finite_number
from tritemporal.data.decode import probe_video
from tritemporal.data.front_camera import CameraGeometry
from tritemporal.data.front_render import Style
from tritemporal.data.highway import POLICY, POLICY_FRONT, SCENARIOS, _simulate, highway_gym

# ego series that must equal the annotation's up to the takeover frame; acceleration is left out,
# as its central difference at the takeover frame already sees the frame after it
CHECKED = ("time", "speed", "steering", "lane", "heading")
VIDEO_SUFFIX = ".mp4"  # make-clips: ROOT/videos/<clip>.mp4 beside ROOT/annotations/<clip>.json


@dataclass(frozen=True)
class Replay:
    """One replayed episode: the recorded policy up to `start_frame`, the controls for
    `control_frames` frames, then a lane keeper (no controls: the policy drives on).

    `ego` holds one entry per frame from frame 0, as an annotation's `ego` (4 decimals). A crash
    ends the series at the frame before it; leaving the road (beside its lane, past a dead end)
    ends it at the frame that left."""

    start_frame: int
    control_frames: int
    ego: dict[str, list[float]]
    crashed: bool
    off_road: bool

    @property
    def time(self) -> np.ndarray:
        """(N,) seconds of each frame."""
        return np.asarray(self.ego["time"])

    @property
    def lane(self) -> np.ndarray:
        """(N,) lane id of each frame (highway: 0 is the leftmost lane)."""
        return np.asarray(self.ego["lane"]).astype(int)

    @property
    def start_lane(self) -> int:
        """The lane at the takeover frame."""
        return int(self.lane[self.start_frame])

    @property
    def end_lane(self) -> int:
        """The lane at the last frame."""
        return int(self.lane[-1])


def replay(
    annotation: str | Path | dict[str, Any],
    start_frame: int,
    controls: np.ndarray,
    hold_s: float,
    image_size: tuple[int, int] | None = None,
) -> Replay:
    """Re-run a clip to `start_frame`, drive the ego with `controls`, then keep lane `hold_s` s."""
    path, data = _load(annotation)
    source, recorded = data["source"], data["ego"]
    frames = len(recorded["time"])
    controls = _check_args(path, frames, start_frame, controls, hold_s)
    size = _image_size(annotation, image_size)
    fps, seed, scenario = float(source["fps"]), int(source["seed"]), source["scenario"]
    front = None
    if source.get("camera") == "front":
        style = {k: tuple(v) if isinstance(v, list) else v for k, v in source["style"].items()}
        front = (CameraGeometry(**source["geometry"]), Style(**style))
    steps = start_frame + len(controls) + round(hold_s * fps) + 1

    def control(k: int) -> tuple[float, float] | None:
        i = k - start_frame
        return (float(controls[i, 0]), float(controls[i, 1])) if 0 <= i < len(controls) else None

    zoom = float(source.get("zoom", 1.0))
    with highway_gym(scenario, fps, size, steps / fps, zoom) as env:
        *_, ego, _, crashed = _simulate(
            env, scenario, size, steps, fps, seed, front, control=control, render=False
        )
    # with controls only the frames up to the takeover are the recorded policy's; without, all
    checked = start_frame + 1 if len(controls) else min(frames, steps)
    _check_replayed(path, source, recorded, ego, checked)
    off_road = not crashed and len(ego["time"]) < steps  # the episode is never truncated
    return Replay(start_frame, len(controls), ego, crashed, off_road)


def _load(annotation: str | Path | dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(name for messages, validated JSON) of a highway-env annotation file or object."""
    if isinstance(annotation, dict):
        path, data = "<annotation dict>", annotation
    else:
        path, data = str(annotation), read_annotation_json(Path(annotation))
    parse_annotation(data, Path(path))  # AnnotationError (a ValueError) naming the field
    source = data.get("source")
    if not isinstance(source, dict) or source.get("generator") != "highway-env":
        generator = source.get("generator") if isinstance(source, dict) else None
        raise ValueError(
            f"annotation {path}: not a highway-env clip (source.generator={generator!r}); only "
            "`tritemporal make-clips` videos can be replayed"
        )
    if source.get("scenario") not in SCENARIOS or "ego" not in data:
        raise ValueError(
            f"annotation {path}: needs source.scenario (one of {', '.join(SCENARIOS)}) and an ego "
            "series, as make-clips writes them"
        )
    policy = POLICY_FRONT if source.get("camera") == "front" else POLICY
    if source.get("policy") != policy:
        raise ValueError(
            f"annotation {path}: made by the ego policy {source.get('policy')!r}, but this version "
            f"drives {policy!r}; re-make the clip to replay it"
        )
    return path, data


def _check_args(
    path: str, frames: int, start_frame: int, controls: Any, hold_s: float
) -> np.ndarray:
    """Validate replay's arguments; the controls as a float64 (T, 2) array."""
    if isinstance(start_frame, bool) or not isinstance(start_frame, (int, np.integer)):
        raise ValueError(f"start_frame must be an integer frame index, got {start_frame!r}")
    if not 0 <= start_frame < frames:
        raise ValueError(
            f"start_frame must lie in [0, {frames - 1}] (annotation {path} has {frames} frames), "
            f"got {start_frame}"
        )
    array = np.asarray(controls, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(
            "controls must be an array (T, 2) of [steering rad, acceleration m/s^2], one row per "
            f"frame from start_frame on, got shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise ValueError("controls must be finite (no NaN or inf)")
    if not (finite_number(hold_s) and hold_s >= 0):
        raise ValueError(f"hold_s must be a number of seconds >= 0, got {hold_s!r}")
    return array


def _image_size(
    annotation: str | Path | dict[str, Any], image_size: tuple[int, int] | None
) -> tuple[int, int]:
    """(height, width) of the clip: as given, else read from its video (what the camera sees
    depends on it, so the replay needs the recorded one)."""
    if image_size is not None:
        if len(image_size) != 2 or any(int(v) != v or v < 1 for v in image_size):
            raise ValueError(f"image_size must be (height, width) in pixels, got {image_size!r}")
        return int(image_size[0]), int(image_size[1])
    if isinstance(annotation, dict):
        raise ValueError(
            "an annotation given as a dict has no video beside it to read the image size from; "
            "pass image_size=(height, width)"
        )
    file = Path(annotation)
    video = file.parent.parent / "videos" / f"{file.stem}{VIDEO_SUFFIX}"
    if not video.is_file():
        raise ValueError(
            f"annotation {file}: no video at {video} to read the image size from; pass "
            "image_size=(height, width)"
        )
    meta = probe_video(video)
    return meta.height, meta.width


def _check_replayed(path: str, source: dict, recorded: dict, replayed: dict, frames: int) -> None:
    """ValueError naming the first of `frames` frames where the replay is not the recording."""
    import highway_env

    for k in range(frames):
        if k >= len(replayed["time"]):
            why = f"the replay ended at frame {k} (crash or off the road) where the clip goes on"
        else:
            differ = [key for key in CHECKED if key in recorded]
            differ = [key for key in differ if replayed[key][k] != recorded[key][k]]
            if not differ:
                continue
            key = differ[0]
            why = (
                f"at frame {k} ({k / source['fps']:g} s) {key} is {replayed[key][k]} replayed "
                f"but {recorded[key][k]} recorded"
            )
        raise ValueError(
            f"annotation {path}: the replay is not the recorded episode: {why}. The clip was "
            f"made with highway-env {source.get('version')}, this is {highway_env.__version__}; "
            "replay it with the version and source (seed, fps, zoom, camera) that made it"
        )
