"""Replaying highway-env clips: the recorded episode exactly, then the ego under given controls."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tritemporal.data.highway import CAMERAS, POLICY, make_clips
from tritemporal.data.highway_replay import CHECKED, replay

FPS, IMAGE_SIZE, SECONDS = 8.0, (64, 128), 6.0  # [H, W]
SEED = 6  # env seed 6 has a middle-lane frame with both neighbour lanes free (`_takeover_frame`)
STEER = 0.05  # rad for 1 s: about 3 m sideways at highway speed, past the lane boundary


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """camera -> the annotation of one short highway clip filmed with it."""
    out = tmp_path_factory.mktemp("replay")
    kwargs = {"seed": SEED, "fps": FPS, "image_size": IMAGE_SIZE, "seconds": SECONDS}
    for camera in CAMERAS:
        make_clips(out / camera, 1, camera=camera, **kwargs)
    return {camera: out / camera / "annotations" / "clip_00000.json" for camera in CAMERAS}


def _ego(path: Path) -> dict[str, list[float]]:
    return json.loads(path.read_text())["ego"]


def _takeover_frame(path: Path) -> int:
    """A frame with the ego settled in a middle lane (1 or 2 of 0-3), both neighbour lanes free
    and no leader within 15 m for the next second: a lane change either way is safe."""
    data = json.loads(path.read_text())
    lane, scene = data["ego"]["lane"], data["scene"]
    for k in range(8, len(lane) - 8):
        ahead = range(k, k + 9)
        if (
            lane[k] in (1.0, 2.0)
            and all(lane[j] == lane[k] for j in range(k - 4, k + 9))
            and all(scene["left_lane"][j] == scene["right_lane"][j] == "free" for j in ahead)
            and all(scene["leader_gap"][j] is None or scene["leader_gap"][j] > 15 for j in ahead)
        ):
            return k
    raise AssertionError(f"{path}: no frame to take over at; pick another SEED")


@pytest.mark.slow
@pytest.mark.parametrize("camera", CAMERAS)
def test_replay_without_controls_is_the_recorded_clip(clips: dict[str, Path], camera: str) -> None:
    path = clips[camera]
    recorded = _ego(path)
    frames = len(recorded["time"])
    whole = replay(path, frames - 1, np.zeros((0, 2)), 0.0)
    assert whole.ego == recorded and whole.control_frames == 0
    assert not whole.crashed and not whole.off_road
    assert whole.end_lane == whole.start_lane == recorded["lane"][-1]
    # no controls: the policy drives on from the start frame, as it did when the clip was made
    later = replay(path, 10, np.zeros((0, 2)), (frames - 11) / FPS)
    assert later.ego == recorded and list(later.time) == recorded["time"]


@pytest.mark.slow
@pytest.mark.parametrize("camera", CAMERAS)
@pytest.mark.parametrize(("steering", "moved"), [(-STEER, -1), (0.0, 0), (STEER, 1)])
def test_steering_takes_the_ego_to_a_neighbour_lane(
    clips: dict[str, Path], camera: str, steering: float, moved: int
) -> None:
    """1 s of steering then 3 s of lane keeping: left (< 0, y points down) ends one lane id
    lower, right one higher, none in the same lane."""
    path = clips[camera]
    recorded, k = _ego(path), _takeover_frame(path)
    run = replay(path, k, np.tile([steering, 0.0], (round(FPS), 1)), 3.0)
    assert not run.crashed and not run.off_road
    assert len(run.lane) == k + round(4 * FPS) + 1  # 4 s after the takeover frame
    for key in CHECKED:  # the recorded episode up to the takeover
        assert run.ego[key][: k + 1] == recorded[key][: k + 1], key
    assert run.start_lane == recorded["lane"][k]
    assert run.end_lane == run.start_lane + moved
    assert run.ego["steering"][k + 1 : k + 9] == [steering] * 8  # the low-level action itself
    assert set(run.lane[-round(FPS) :]) == {run.end_lane}  # settled there for the last second
    assert abs(run.ego["heading"][-1]) < 0.01


@pytest.mark.slow
def test_a_different_episode_is_refused(clips: dict[str, Path], tmp_path: Path) -> None:
    data = json.loads(clips["top"].read_text())
    data["source"]["seed"] += 1  # another episode's traffic
    edited = tmp_path / "annotations" / "clip_00000.json"
    edited.parent.mkdir()
    edited.write_text(json.dumps(data))
    (tmp_path / "videos").mkdir()
    video = clips["top"].parent.parent / "videos" / "clip_00000.mp4"
    shutil.copy(video, tmp_path / "videos")
    refused = r"clip_00000\.json: the replay is not the recorded episode: at frame 0 \(0 s\)"
    with pytest.raises(ValueError, match=refused):
        replay(edited, 20, np.zeros((8, 2)), 1.0)
    data["source"]["seed"] -= 1  # the clip's own seed, but a recording that differs later on
    data["ego"]["speed"][12] += 0.001
    with pytest.raises(ValueError, match=r"at frame 12 \(1\.5 s\) speed is"):
        replay(data, 20, np.zeros((8, 2)), 1.0, image_size=IMAGE_SIZE)
    replay(data, 11, np.zeros((8, 2)), 1.0, image_size=IMAGE_SIZE)  # only frames <= 11 count


def _annotation(**source: object) -> dict:
    """A valid three-frame highway-env annotation (never simulated: the arguments fail first)."""
    ego = {"time": [0.0, 0.125, 0.25], "speed": [25.0] * 3, "lane": [1.0] * 3}
    base = dict(generator="highway-env", scenario="highway", seed=0, fps=FPS, zoom=1.0)
    base["policy"] = POLICY
    return {"schema_version": 3, "events": [], "ego": ego, "source": {**base, **source}}


@pytest.mark.parametrize(
    ("annotation", "args", "match"),
    [
        (_annotation(), (3, np.zeros((2, 2)), 1.0), r"start_frame must lie in \[0, 2\]"),
        (_annotation(), (-1, np.zeros((2, 2)), 1.0), r"start_frame must lie in \[0, 2\]"),
        (_annotation(), (1.0, np.zeros((2, 2)), 1.0), "start_frame must be an integer"),
        (_annotation(), (1, np.zeros(4), 1.0), r"controls must be an array \(T, 2\).*\(4,\)"),
        (_annotation(), (1, np.zeros((4, 3)), 1.0), r"got shape \(4, 3\)"),
        (_annotation(), (1, np.full((4, 2), np.nan), 1.0), "controls must be finite"),
        (_annotation(), (1, np.zeros((4, 2)), -1.0), "hold_s must be a number of seconds >= 0"),
        (_annotation(generator="carla"), (1, np.zeros((2, 2)), 1.0), "not a highway-env clip"),
        (_annotation(scenario="mars"), (1, np.zeros((2, 2)), 1.0), "source.scenario"),
        (_annotation(policy="old-rules"), (1, np.zeros((2, 2)), 1.0), "re-make the clip"),
        (_annotation(), (1, np.zeros((2, 2)), 1.0), "pass image_size=.height, width."),
    ],
)
def test_bad_arguments(annotation: dict, args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        replay(annotation, *args)


def test_an_annotation_without_its_video_needs_an_image_size(tmp_path: Path) -> None:
    path = tmp_path / "annotations" / "clip.json"
    path.parent.mkdir()
    path.write_text(json.dumps(_annotation()))
    with pytest.raises(ValueError, match=r"clip\.json: no video at .*clip\.mp4"):
        replay(path, 1, np.zeros((2, 2)), 1.0)
    with pytest.raises(ValueError, match="image_size must be"):
        replay(path, 1, np.zeros((2, 2)), 1.0, image_size=(64,))
