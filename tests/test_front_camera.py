"""The front (windshield) camera: pinhole geometry, the rasteriser's content, the policy's view,
and `make-clips --camera front` annotations."""

from __future__ import annotations

import json
import math
from pathlib import Path

import av
import numpy as np
import pytest

from tritemporal.config import load_config
from tritemporal.data.annotations import AnnotationError, load_annotation, write_annotation
from tritemporal.data.front_camera import (
    DASHCAM_RANGES,
    CameraGeometry,
    PinholeCamera,
    clip_near,
)
from tritemporal.data.front_render import FrontRenderer, Style
from tritemporal.data.highway_front import MIRROR_RANGE, FrontSettings

SIZE = (64, 128)  # [H, W]


def test_projection_follows_the_pinhole_model() -> None:
    camera = PinholeCamera(CameraGeometry(height_m=1.5, hfov_deg=90.0, forward_m=0.0), SIZE)
    camera.pose(np.array([10.0, 4.0]), 0.0)  # heading +x: +y is the ego's right
    assert camera.focal == pytest.approx(64.0)  # W / 2 / tan(45 deg)
    ahead = camera.project(camera.to_camera([30.0, 4.0, 1.5]))
    np.testing.assert_allclose(ahead, [64.0, 32.0])  # the principal point
    ground = camera.project(camera.to_camera([30.0, 4.0, 0.0]))
    assert ground[1] == pytest.approx(32.0 + 64.0 * 1.5 / 20.0)  # f * h / distance below it
    right = camera.project(camera.to_camera([30.0, 6.0, 1.5]))
    assert right[0] == pytest.approx(64.0 + 64.0 * 2.0 / 20.0)  # +y is to the right
    camera.pose(np.array([10.0, 4.0]), math.pi / 2)  # heading +y: the point now lies to the left
    assert camera.project(camera.to_camera([12.0, 24.0, 1.5]))[0] < 64.0


def test_pitch_and_yaw_move_the_view() -> None:
    level = PinholeCamera(CameraGeometry(hfov_deg=60.0), SIZE)
    down = PinholeCamera(CameraGeometry(hfov_deg=60.0, pitch_deg=5.0), SIZE)
    assert level.horizon_row == pytest.approx(32.0)
    assert down.horizon_row == pytest.approx(32.0 - down.focal * math.tan(math.radians(5.0)))
    right = PinholeCamera(CameraGeometry(hfov_deg=60.0, yaw_deg=5.0), SIZE)
    for camera in (level, right):
        camera.pose(np.zeros(2), 0.0)
    far = [1000.0, 0.0, 1.4]
    assert right.project(right.to_camera(far))[0] < level.project(level.to_camera(far))[0]


def test_clip_near_keeps_the_part_in_front() -> None:
    quad = np.array([[-1.0, 1.0, -2.0], [1.0, 1.0, -2.0], [1.0, 1.0, 8.0], [-1.0, 1.0, 8.0]])
    clipped = clip_near(quad, 0.5)
    assert clipped[:, 2].min() == pytest.approx(0.5) and clipped[:, 2].max() == 8.0
    assert len(clipped) == 4
    assert len(clip_near(quad - [0, 0, 20.0], 0.5)) == 0
    ahead = quad + np.array([0.0, 0.0, 5.0])
    np.testing.assert_array_equal(clip_near(ahead, 0.5), ahead)


def test_geometry_validation_and_variation() -> None:
    with pytest.raises(ValueError, match=r"camera\.hfov_deg=5.0 must lie in \[20, 150\]"):
        CameraGeometry(hfov_deg=5.0).validate()
    drawn = CameraGeometry().varied(np.random.default_rng(3))
    for key, (low, high) in DASHCAM_RANGES.items():
        assert low <= getattr(drawn, key) <= high
    settings = FrontSettings()
    assert settings.for_video(7) == settings.for_video(7) != settings.for_video(8)
    geometry, look = settings.for_video(7)
    assert FrontSettings(vary_geometry=False, vary_look=False).for_video(7) == (
        CameraGeometry(),
        Style(),
    )
    # one factor fixed, the other keeps the draw the fully varied corpus gives the same video
    assert FrontSettings(vary_geometry=False).for_video(7) == (CameraGeometry(), look)
    assert FrontSettings(vary_look=False).for_video(7) == (geometry, Style())
    narrow, _ = FrontSettings(vary_geometry=False).for_video(7, zoom=2.0)
    half = math.atan(math.tan(math.radians(65.0) / 2) / 2)
    assert narrow.hfov_deg == pytest.approx(2 * math.degrees(half))


def _road(lanes: int = 3):
    from highway_env.road.road import Road, RoadNetwork  # heavy: pygame and gymnasium

    return Road(RoadNetwork.straight_road_network(lanes))


def _car(road, lane: int, x: float, speed: float = 25.0):
    from highway_env.vehicle.kinematics import Vehicle

    return Vehicle.make_on_lane(road, ("0", "1", lane), x, speed=speed)


def _renderer(road, size: tuple[int, int] = SIZE) -> FrontRenderer:
    style = Style(noise=0.0)
    return FrontRenderer(road, CameraGeometry(), style, size, seed=0)


def test_a_leader_is_a_box_that_shrinks_with_distance() -> None:
    road = _road()
    ego = _car(road, 1, 100.0)
    boxes = []
    for gap in (10.0, 20.0, 40.0):
        leader = _car(road, 1, 100.0 + gap)
        renderer = _renderer(road)
        frame = renderer.render(ego, [leader], 0.0)
        box = renderer.box(leader)
        assert frame.shape == (*SIZE, 3) and frame.dtype == np.uint8
        assert box is not None and 0.4 < (box[0] + box[2]) / 2 < 0.6  # straight ahead
        boxes.append(box)
        empty = _renderer(road).render(ego, [], 0.0)
        left, top, right, bottom = (int(v * s) for v, s in zip(box, SIZE[::-1] * 2, strict=True))
        changed = np.abs(frame.astype(int) - empty.astype(int)).sum(axis=2) > 30
        assert changed[top:bottom, left:right].mean() > 0.5  # the box covers the car's pixels
        assert changed.sum() - changed[top : bottom + 1, left : right + 1].sum() < 20
    heights = [b[3] - b[1] for b in boxes]
    assert heights[0] > 1.8 * heights[1] > 1.8**2 * heights[2] * 0.9  # ~1 / distance
    behind = _car(road, 1, 80.0)
    renderer = _renderer(road)
    renderer.render(ego, [behind], 0.0)
    assert renderer.box(behind) is None  # behind the camera


def test_sky_road_and_anti_aliased_edges() -> None:
    road = _road()
    ego = _car(road, 1, 100.0)
    frame = _renderer(road).render(ego, [], 0.0).astype(int)
    sky, road_row = frame[2], frame[-2]
    assert sky[:, 2].mean() > sky[:, 0].mean()  # blue above
    centre = road_row[SIZE[1] // 2]
    assert abs(centre[0] - centre[2]) < 12  # grey asphalt below
    lows = {tuple(p) for p in frame[SIZE[0] // 2 + 4]}
    assert len(lows) > 4  # 2x supersampling leaves intermediate shades on edges


def test_markings_dashed_between_lanes_and_solid_at_the_edge() -> None:
    road = _road(2)  # lane 0 (left, solid edge) and lane 1; a dashed line between them
    ego = _car(road, 1, 100.0)
    renderer = _renderer(road, (128, 256))
    grey = renderer.render(ego, [], 0.0).astype(int).sum(axis=2)
    asphalt = np.median(grey[-10:])

    def line_rows(y: float) -> np.ndarray:  # is the marking at lateral y lit, 11-31 m ahead
        rows = []
        for x in np.arange(112.0, 132.0, 0.5):
            u, v = renderer.camera.project(renderer.camera.to_camera([x, y, 0.0])) / 2
            row, col = int(v), int(u)
            rows.append(grey[row, col - 1 : col + 2].max() > asphalt + 60)
        return np.array(rows)

    dashed, solid = line_rows(2.0), line_rows(-2.0)  # between the lanes / the left edge
    assert solid.mean() > 0.9
    assert 0.1 < dashed.mean() < 0.5  # 3 m of every 12 m


def test_brake_lights_and_indicators() -> None:
    road = _road()
    ego = _car(road, 1, 100.0)
    leader = _car(road, 1, 110.0)
    renderer = _renderer(road, (128, 256))

    def count(colour: str) -> int:
        frame = renderer.render(ego, [leader], 0.0).astype(int)
        r, g, b = frame[..., 0], frame[..., 1], frame[..., 2]
        if colour == "red":
            return int(((r > 180) & (g < 90) & (b < 90)).sum())
        return int(((r > 180) & (g > 110) & (g < 200) & (b < 80)).sum())

    leader.action = {"steering": 0.0, "acceleration": 0.0}
    calm = count("red")
    leader.action = {"steering": 0.0, "acceleration": -4.0}
    assert count("red") > calm + 4  # tail lights brighten
    assert count("amber") == 0
    leader.target_lane_index = ("0", "1", 0)  # changing to the left lane
    assert count("amber") > 2  # lit at t = 0 (blinking at 1.5 Hz)


def test_front_view_sees_ahead_and_mirrors_behind() -> None:
    from types import SimpleNamespace

    from tritemporal.data.highway_front import FrontView

    road = _road()
    ego = _car(road, 1, 100.0)
    road.vehicles = [ego]
    env = SimpleNamespace(road=road, vehicle=ego, time=0.0)
    view = FrontView(env, SIZE, CameraGeometry(), Style(noise=0.0), seed=0)
    ahead, beside, behind = (
        np.array([100.0 + dx, 4.0 + dy]) for dx, dy in ((30, 0), (1, 4), (-20, 0))
    )
    assert view.visible(ahead) and not view.visible(beside) and not view.visible(behind)
    assert view.sees(behind) and view.sees(beside)  # mirrors
    assert not view.sees(np.array([100.0 - MIRROR_RANGE - 5, 4.0]))
    assert view.counts(ahead) and not view.counts(beside)
    lanes = road.network.graph["0"]["1"]
    assert view.lane_in_view(lanes[0], 100.0) and view.lane_in_view(lanes[2], 100.0)
    assert view.render().shape == (*SIZE, 3)


def test_leader_box_in_the_schema(tmp_path: Path) -> None:
    ego = {"time": [0.0, 1.0], "speed": [20.0, 20.0]}
    scene = {
        "left_lane": ["free", "free"], "right_lane": ["free", "free"],
        "leader_gap": [10.0, None], "leader_closing": [0.5, None],
        "leader_box": [[0.4, 0.5, 0.6, 0.7], None],
    }  # fmt: skip
    path = tmp_path / "a.json"
    write_annotation(path, [], ego, scene=scene)
    assert load_annotation(path).scene["leader_box"] == ([0.4, 0.5, 0.6, 0.7], None)
    for box, match in (
        ([0.6, 0.5, 0.4, 0.7], "0 <= left < right <= 1"),
        ([0.4, 0.5, 0.6], r"must be \[left, top, right, bottom\]"),
    ):
        with pytest.raises(AnnotationError, match=match):
            write_annotation(path, [], ego, scene={**scene, "leader_box": [box, None]})
    with pytest.raises(AnnotationError, match="without a leader"):
        write_annotation(path, [], ego, scene={**scene, "leader_box": [None, [0.1, 0.1, 0.2, 0.2]]})


def test_config_keys_and_cache_folder() -> None:
    from tritemporal.data.sources import highway_cache_dir

    with pytest.raises(ValueError, match=r"data\.highway\.camera='side'"):
        load_config(None, ["data.highway.camera=side"])
    with pytest.raises(ValueError, match=r"data\.highway\.front\.hfov_deg=200"):
        load_config(None, ["data.highway.camera=front", "data.highway.front.hfov_deg=200"])
    top = highway_cache_dir(load_config(None, []))
    front = highway_cache_dir(load_config(None, ["data.highway.camera=front"]))
    wide = highway_cache_dir(
        load_config(None, ["data.highway.camera=front", "data.highway.front.hfov_deg=80"])
    )
    assert len({top, front, wide}) == 3


@pytest.mark.slow
def test_make_clips_front(tmp_path: Path) -> None:
    from tritemporal.data.highway import POLICY_FRONT, make_clips

    summary = make_clips(
        tmp_path, 2, seed=12, fps=4.0, image_size=(64, 128), seconds=6.0, camera="front"
    )
    assert summary["camera"] == "front" and summary["videos"] == 2
    geometries, seen_boxes = [], 0
    for rel in summary["files"]:
        video = tmp_path / rel
        with av.open(str(video)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert frames[0].shape == (64, 128, 3)
        raw = json.loads((tmp_path / "annotations" / f"{video.stem}.json").read_text())
        source = raw["source"]
        assert source["camera"] == "front" and source["policy"] == POLICY_FRONT
        assert set(source["geometry"]) >= set(DASHCAM_RANGES) and "time_of_day" in source["style"]
        geometries.append(source["geometry"]["hfov_deg"])
        ann = load_annotation(tmp_path / "annotations" / f"{video.stem}.json")
        gaps, boxes = ann.scene["leader_gap"], ann.scene["leader_box"]
        assert len(boxes) == len(frames)
        seen_boxes += sum(b is not None for b in boxes)
        assert all(b is None for g, b in zip(gaps, boxes, strict=True) if g is None)
        for gap, box in zip(gaps, boxes, strict=True):  # nearer leaders look larger
            if gap is not None and box is not None and gap < 8.0:
                assert box[3] - box[1] > 0.1
    assert seen_boxes > 0
    assert geometries[0] != geometries[1]  # drawn per video
    again = make_clips(
        tmp_path / "again", 1, seed=12, fps=4.0, image_size=(64, 128), seconds=6.0, camera="front"
    )
    first = (tmp_path / summary["files"][0]).read_bytes()
    assert (tmp_path / "again" / again["files"][0]).read_bytes() == first  # reproducible


@pytest.mark.slow
def test_cli_make_clips_front_and_render_bench(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from tritemporal.cli import main

    out = tmp_path / "clips"
    args = ["make-clips", "--out", str(out), "--num", "1", "--fps", "4", "--seconds", "3"]
    args += ["--camera", "front", "--fixed-camera", "--fixed-look", "--hfov", "80"]
    assert main([*args, "--image-size", "64x128"]) == 0
    raw = json.loads((out / "annotations" / "clip_00000.json").read_text())
    assert raw["source"]["geometry"]["hfov_deg"] == 80.0
    assert raw["source"]["style"] == Style().as_dict()
    capsys.readouterr()
    assert main(["bench", "--render", "front", "--image-size", "64x128", "--frames", "5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["camera"] == "front" and report["render_fps"] > 0 and report["frames"] == 5


def test_the_default_geometry_matches_real_cameras_after_the_centre_crop() -> None:
    """comma2k19's and nuScenes' front frames, resized and centre-cropped to 1:2 as the clips
    are, keep the simulator's default field of view within a degree."""
    from tritemporal.data.front_camera import REAL_CAMERAS, kept_fov

    camera = PinholeCamera(CameraGeometry(), SIZE)
    simulated = (65.0, 2 * math.degrees(math.atan(SIZE[0] / 2 / camera.focal)))
    for name in ("comma2k19", "nuscenes_cam_front"):
        width, height, focal, _ = REAL_CAMERAS[name]
        np.testing.assert_allclose(kept_fov(width, height, focal, SIZE), simulated, atol=1.0)
    width, height, focal, _ = REAL_CAMERAS["kitti_cam2"]
    hfov, vfov = kept_fov(width, height, focal, SIZE)  # wider than 1:2: the crop narrows it
    assert hfov == pytest.approx(2 * math.degrees(math.atan(height / focal))) and vfov < 30


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["merge", "roundabout", "intersection"])
def test_curved_and_crossing_roads_render(tmp_path: Path, scenario: str) -> None:
    """Sine, circular and crossing lanes are sampled into quads (straight ones are one quad)."""
    from tritemporal.data.highway import make_clips

    summary = make_clips(
        tmp_path, 1, scenario, seed=5, fps=4.0, image_size=(64, 128), seconds=3.0, camera="front"
    )
    with av.open(str(tmp_path / summary["files"][0])) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    assert frame[-8:].std() > 3  # road, markings and ground below the horizon, not one colour
