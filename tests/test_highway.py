"""highway-env clip generator: decodable H.264 videos, valid annotations, truthful labels."""

from __future__ import annotations

import json
import math
import typing
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from tests.conftest import sigint_as_in_a_terminal
from tritemporal.cli import main
from tritemporal.config import HighwayScenario, load_config
from tritemporal.data import highway
from tritemporal.data.annotations import LANE_STATES, SCENE_LANES, SCENE_LEADER, load_annotation
from tritemporal.data.common import MANEUVERS
from tritemporal.data.highway import (
    GAP_AHEAD,
    GAP_BEHIND,
    SCENARIOS,
    SIGNAL_S,
    VIEW_AHEAD,
    format_summary,
    make_clips,
    parse_scenarios,
    scenario_plan,
    scene_facts,
)

FPS, IMAGE_SIZE, SECONDS = 8.0, (64, 96), 6.0  # [H, W]
SEED = 12  # env seeds 12-13 change lane both ways within 6 s (checked below)


def _decode(path: Path) -> tuple[np.ndarray, float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        return frames, float(stream.average_rate)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("highway")
    return out, make_clips(out, 2, seed=SEED, fps=FPS, image_size=IMAGE_SIZE, seconds=SECONDS)


def _annotations(out: Path, summary: dict) -> list[tuple[Path, Path]]:
    pairs = []
    for rel in summary["files"]:
        video = out / rel
        pairs.append((video, out / "annotations" / f"{video.stem}.json"))
    return pairs


@pytest.mark.slow
def test_summary_and_files(clips: tuple[Path, dict]) -> None:
    out, summary = clips
    assert summary["scenario"] == "highway" and summary["videos"] == 2
    assert summary["fps"] == FPS and summary["image_size"] == list(IMAGE_SIZE)
    assert set(summary["event_counts"]) <= set(MANEUVERS)
    assert sum(summary["event_seconds"].values()) >= summary["frames"] / FPS - 1e-6
    json.dumps(summary)  # JSON-ready
    table = format_summary(summary)
    assert "keep_lane" in table and "maneuver" in table
    for video, annotation in _annotations(out, summary):
        assert video.is_file() and annotation.is_file()
    assert not list(out.rglob("*.part"))  # temp names are renamed away


@pytest.mark.slow
@pytest.mark.decord
def test_videos_decode_with_pyav_and_decord(clips: tuple[Path, dict]) -> None:
    import decord  # optional: no wheels beyond x86-64 Linux and Windows

    out, summary = clips
    total = 0
    for video, annotation in _annotations(out, summary):
        frames, rate = _decode(video)
        n = len(load_annotation(annotation).ego_time)
        assert frames.shape == (n, *IMAGE_SIZE, 3) and rate == FPS
        total += n
        # Not black: grey road, white marks, coloured cars.
        assert frames.mean() > 40 and frames.std() > 5
        chroma = frames.max(axis=-1).astype(int) - frames.min(axis=-1)
        assert chroma.max() > 60
        reader = decord.VideoReader(str(video))
        assert len(reader) == n and reader.get_avg_fps() == pytest.approx(FPS)
        assert reader[0].shape == (*IMAGE_SIZE, 3)
    assert total == summary["frames"]


@pytest.mark.slow
def test_annotations_match_the_simulator(clips: tuple[Path, dict]) -> None:
    out, summary = clips
    directions = {"lane_change_left": -1, "lane_change_right": +1}
    seen = set()
    for _, path in _annotations(out, summary):
        data = json.loads(path.read_text())
        ann = load_annotation(path)
        assert data["source"]["generator"] == "highway-env" and data["source"]["fps"] == FPS
        time = ann.ego_time.numpy()
        assert np.allclose(np.diff(time), 1 / FPS)
        assert set(ann.ego) >= {"speed", "steering", "acceleration", "lane"}
        assert all(len(v) == len(time) for v in ann.ego.values())
        lane = ann.ego["lane"].numpy()
        changes = [
            (float(time[k]), lane[k] - lane[k - 1])
            for k in range(1, len(lane))
            if lane[k] != lane[k - 1]
        ]
        events = [e for e in ann.events if e.maneuver in directions]
        for e in events:  # every lane-change label moves the ego exactly one lane that way
            inside = (time >= e.start - 1e-6) & (time <= e.end + 1e-6)
            span = lane[inside]
            assert span[-1] - span[0] == directions[e.maneuver], (path.name, e)
            seen.add(e.maneuver)
        for t, step in changes:  # every lane change in the series is labelled
            assert any(
                e.start < t <= e.end + 1e-6 and directions[e.maneuver] == step for e in events
            ), (path.name, t, step)
        for e in ann.events:
            assert 0 <= e.start < e.end <= time[-1] + 1e-6
            if e.maneuver == "brake":
                speed = ann.signals_at(torch.tensor([e.start, e.end]))["speed"]
                assert float(speed[0] - speed[1]) >= 2.5 - 1e-6
    assert seen == set(directions)  # the seed exercises both directions


@pytest.mark.slow
def test_ego_indicates_before_every_lane_change(clips: tuple[Path, dict]) -> None:
    """The amber indicator (SIGNAL_COLOR) is on for SIGNAL_S before a lane change starts, on
    its side, and survives H.264."""
    out, summary = clips
    for video, note in _annotations(out, summary):
        frames, fps = _decode(video)
        r, g, b = np.moveaxis(frames.astype(int), -1, 0)
        amber = (r > 170) & (g > 110) & (g < 215) & (b < 90)  # (T, H, W); H.264 shifts it a bit
        for e in load_annotation(note).events:
            if not e.maneuver.startswith("lane_change"):
                continue
            start = round(e.start * fps)
            lead = amber[start - round(SIGNAL_S * fps) + 1 : start + 1]
            assert lead.any(axis=(1, 2)).all(), (video.name, e)
            px = frames[start - round(SIGNAL_S * fps) + 1 : start + 1].astype(int)
            ego = (px[..., 1] > 150) & (px[..., 0] < 120) & (px[..., 2] < 80)  # the green ego
            side = np.argwhere(lead)[:, 1].mean() - np.argwhere(ego)[:, 1].mean()  # rows
            assert side < 0 if e.maneuver == "lane_change_left" else side > 0, (video.name, e)


@pytest.mark.slow
def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    kwargs = {"fps": FPS, "image_size": (64, 64), "seconds": 3.0}
    runs = [
        make_clips(tmp_path / name, 1, seed=s, **kwargs)
        for name, s in (("a", 7), ("b", 7), ("c", 8))
    ]
    text = [(tmp_path / n / "annotations" / "clip_00000.json").read_text() for n in "abc"]
    frames = [_decode(tmp_path / n / "videos" / "clip_00000.mp4")[0] for n in "abc"]
    assert text[0] == text[1] and np.array_equal(frames[0], frames[1])
    assert text[0] != text[2] and not np.array_equal(frames[0], frames[2])
    assert runs[0]["event_counts"] == runs[1]["event_counts"]


@pytest.mark.slow
def test_zoom_shows_the_road_larger(tmp_path: Path) -> None:
    kwargs = {"fps": FPS, "image_size": (64, 128), "seconds": 2.0, "seed": 3}
    for name, zoom in (("default", 1.0), ("zoomed", 2.0)):
        summary = make_clips(tmp_path / name, 1, zoom=zoom, **kwargs)
        assert summary["zoom"] == zoom
    # lane markings (bright rows of the first frame) lie twice as far apart when zoomed
    spacing = {}
    for name in ("default", "zoomed"):
        frame = _decode(tmp_path / name / "videos" / "clip_00000.mp4")[0][0].astype(float)
        rows = np.flatnonzero(frame.mean(axis=(1, 2)) > frame.mean() + 20)
        spacing[name] = np.diff(rows[np.r_[True, np.diff(rows) > 2]]).min()
    assert spacing["zoomed"] == pytest.approx(2 * spacing["default"], abs=2)
    source = json.loads((tmp_path / "zoomed" / "annotations" / "clip_00000.json").read_text())
    assert source["source"]["zoom"] == 2.0


def test_scenarios_are_the_config_choices() -> None:
    assert tuple(SCENARIOS) == typing.get_args(HighwayScenario)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scenario": "mars"}, "known: highway, merge, roundabout, intersection"),
        ({"num": 0}, "num"),
        ({"image_size": (64, 97)}, "even"),
        ({"image_size": (16, 16)}, ">= 32"),
        ({"fps": 0.0}, "fps"),
        ({"seconds": 0.1}, "frames"),
        ({"workers": 0}, "--workers"),
        ({"zoom": 0.1}, "zoom"),
        ({"scenario": "highway=0"}, "share of 'highway' must be a number > 0"),
        ({"scenario": "highway=x,merge=1"}, "share of 'highway'"),
        ({"scenario": "highway,highway"}, "twice"),
        ({"scenario": "highway=0.5,merge"}, "every scenario a share .* or none"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    args = {"num": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        make_clips(tmp_path, **args)
    assert not (tmp_path / "videos").exists()


def test_interrupted_encode_leaves_no_half_video(tmp_path: Path) -> None:
    good = np.full((64, 64, 3), 100, np.uint8)
    target = tmp_path / "clip.mp4"
    with pytest.raises(ValueError):  # a frame the encoder rejects, half way through
        highway._write_video(target, [good] * 5 + [good[:, :, :2]], FPS)
    assert not list(tmp_path.iterdir())  # neither the final name nor a stale temp file


@pytest.mark.slow
def test_merge_scenario_gives_a_valid_clip(tmp_path: Path) -> None:
    assert SCENARIOS["merge"] == "merge-v0"
    summary = make_clips(tmp_path, 1, scenario="merge", image_size=(64, 64), seconds=3.0)
    video = tmp_path / summary["files"][0]
    frames, rate = _decode(video)
    ann = load_annotation(tmp_path / "annotations" / f"{video.stem}.json")
    assert len(frames) == len(ann.ego_time) == summary["frames"] == 24 and rate == FPS
    assert frames.mean() > 40


@pytest.mark.parametrize(
    ("spec", "shares"),
    [
        ("merge", {"merge": 1.0}),
        ("highway,merge", {"highway": 0.5, "merge": 0.5}),
        (" highway = 3 , merge = 1 ", {"highway": 0.75, "merge": 0.25}),
    ],
)
def test_parse_scenarios(spec: str, shares: dict[str, float]) -> None:
    assert parse_scenarios(spec) == pytest.approx(shares)


def test_scenario_plan_counts_and_interleaves() -> None:
    plan = scenario_plan({"highway": 0.7, "merge": 0.3}, 10)
    assert plan.count("highway") == 7 and plan.count("merge") == 3
    assert plan == scenario_plan({"highway": 0.7, "merge": 0.3}, 10)  # deterministic
    assert "merge" in plan[:4] and "merge" in plan[-4:]  # spread over the indices, not a block
    thirds = scenario_plan(parse_scenarios("highway,merge,roundabout"), 7)  # largest remainder
    assert [thirds.count(n) for n in ("highway", "merge", "roundabout")] == [3, 2, 2]
    assert scenario_plan({"highway": 0.5, "merge": 0.5}, 1) == ["highway"]  # ties: given order


def test_cli_refuses_a_bad_mix_or_worker_count(tmp_path: Path) -> None:
    out = str(tmp_path / "clips")
    assert main(["make-clips", "--out", out, "--scenario", "highway=1,mars=1"]) == 2
    assert main(["make-clips", "--out", out, "--workers", "0"]) == 2
    assert not (tmp_path / "clips").exists()


def test_config_takes_a_mix_and_names_the_key() -> None:
    mix = load_config(None, ["data.highway.scenario=highway=0.7,merge=0.3"]).data.highway
    assert parse_scenarios(mix.scenario) == pytest.approx({"highway": 0.7, "merge": 0.3})
    with pytest.raises(ValueError, match=r"data\.highway\.scenario='highway,mars': use one of"):
        load_config(None, ["data.highway.scenario=highway,mars"])
    with pytest.raises(ValueError, match=r"data\.highway\.workers=0 must be >= 1"):
        load_config(None, ["data.highway.workers=0"])


def test_scene_facts_follow_the_gap_thresholds() -> None:
    from highway_env.road.road import Road, RoadNetwork  # heavy: pygame and gymnasium
    from highway_env.vehicle.kinematics import Vehicle

    road = Road(RoadNetwork.straight_road_network(3))
    ego = Vehicle.make_on_lane(road, ("0", "1", 1), 100.0, speed=25.0)

    def facts(*others: tuple[int, float, float], visible: float = math.inf) -> tuple:
        cars = [Vehicle.make_on_lane(road, ("0", "1", j), 100.0 + dx, v) for j, dx, v in others]
        road.vehicles = [ego, *cars]
        return scene_facts(ego, road, lambda pos: pos[0] - ego.position[0] < visible)[:4]

    assert facts() == ("free", "free", None, None)
    assert facts((0, GAP_AHEAD - 1, 20.0), (2, -GAP_BEHIND - 1, 30.0)) == (
        "occupied", "free", None, None,
    )  # fmt: skip
    assert facts((2, -GAP_BEHIND + 1, 30.0), (1, 30.0, 20.0), (1, 60.0, 10.0)) == (
        "free", "occupied", 30.0 - ego.LENGTH, 5.0,
    )  # fmt: skip
    assert facts((1, 30.0, 20.0), visible=20.0)[2:] == (None, None)  # an unseen leader is none
    ego = Vehicle.make_on_lane(road, ("0", "1", 0), 100.0, speed=25.0)
    assert facts()[:2] == ("no_lane", "free")  # lane ids grow to the right


@pytest.mark.slow
def test_scene_facts_in_the_annotations(clips: tuple[Path, dict]) -> None:
    out, summary = clips
    leaders = []
    for _, path in _annotations(out, summary):
        ann = load_annotation(path)
        frames = len(ann.ego_time)
        assert set(ann.scene) == {*SCENE_LANES, *SCENE_LEADER}
        assert all(len(values) == frames for values in ann.scene.values())
        lane = ann.ego["lane"].numpy()  # highway: 4 lanes, ids 0-3 from the left
        left, right = ann.scene["left_lane"], ann.scene["right_lane"]
        assert set(left) | set(right) <= set(LANE_STATES)
        assert [s == "no_lane" for s in left] == list(lane == 0)
        assert [s == "no_lane" for s in right] == list(lane == 3)
        assert {"free", "occupied"} <= set(left) | set(right)
        gaps, closing = ann.scene["leader_gap"], ann.scene["leader_closing"]
        assert [g is None for g in gaps] == [c is None for c in closing]
        leaders += [(g, c) for g, c in zip(gaps, closing, strict=True) if g is not None]
        at = ann.scene_at(torch.tensor([0.0, ann.ego_time[-1].item() + 1.0]))
        assert at["left_lane"] == [left[0], left[-1]]
    assert leaders and all(0 < g < VIEW_AHEAD and abs(c) < 20 for g, c in leaders)


@pytest.mark.slow
def test_workers_and_mixes_give_the_same_files(tmp_path: Path) -> None:
    kwargs = {"fps": 4.0, "image_size": (64, 64), "seconds": 4.0, "seed": 3}
    one = make_clips(tmp_path / "one", 3, "highway=2,merge=1", workers=1, **kwargs)
    two = make_clips(tmp_path / "two", 3, "highway=2,merge=1", workers=2, **kwargs)
    for key in ("wall_seconds", "workers"):
        del one[key], two[key]
    assert one == two and one["clip_scenarios"] == ["highway", "merge", "highway"]
    assert one["scenario"] == "highway=0.6667,merge=0.3333"
    assert {n: t["videos"] for n, t in one["by_scenario"].items()} == {"highway": 2, "merge": 1}
    table = format_summary({**one, "wall_seconds": 1.0})
    assert "highway: 2 videos" in table and "merge: 1 videos" in table
    for sub in ("videos", "annotations"):
        names = sorted(p.name for p in (tmp_path / "one" / sub).iterdir())
        assert names == sorted(p.name for p in (tmp_path / "two" / sub).iterdir())
        for name in names:
            first, second = (tmp_path / run / sub / name for run in ("one", "two"))
            assert first.read_bytes() == second.read_bytes(), name
    for name, scenario in zip(sorted(names), one["clip_scenarios"], strict=True):
        data = json.loads((tmp_path / "one" / "annotations" / name).read_text())
        assert data["source"]["scenario"] == scenario


WORKER_SCRIPT = """
import sys, time
from pathlib import Path
from tritemporal.data.highway import _records

def job(index, scenario):
    if index == 1:  # worker 0 is idle by now, waiting for work: the case that printed tracebacks
        Path(sys.argv[1]).touch()
        time.sleep(3)
    return index

if __name__ == "__main__":
    try:
        print(list(_records(job, ["highway", "highway"], workers=2)))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
"""


@pytest.mark.slow
def test_ctrl_c_reaches_the_parent_alone(tmp_path: Path) -> None:
    """SIGINT to the process group (a terminal's Ctrl-C) while simulation workers run: one line
    from the parent, no KeyboardInterrupt traceback from any worker."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script, started = tmp_path / "records.py", tmp_path / "started"
    script.write_text(WORKER_SCRIPT)
    process = subprocess.Popen(
        [sys.executable, str(script), str(started)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=sigint_as_in_a_terminal,
    )
    deadline = time.monotonic() + 120
    while not started.exists() and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and err.strip() == "interrupted", err
