"""Numbered images read as videos (`.frames` descriptors) and the `frames` importer, on tiny
16 x 32 images whose pixels tell their index."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import tiny_config
from tritemporal.data.annotations import load_annotation
from tritemporal.data.decode import BadVideo, VideoDecodeError, probe_video, read_frames
from tritemporal.data.frame_sequence import (
    SequenceError,
    load_sequence,
    nominal_fps,
    write_sequence,
)
from tritemporal.data.importers import frames as frames_importer
from tritemporal.data.importers.base import ImportItemError, ImportOptions, run_import
from tritemporal.data.videos import VideoClips
from tritemporal.data.windows import window_starts

BACKENDS = ("decord", "pyav")
H, W = 16, 32  # decord cannot read H.264 of some tiny widths (24, 48: not 32, 40)


def picture(index: int) -> np.ndarray:
    """A (16, 32, 3) image: a flat level per index on top, a horizontal ramp below."""
    img = np.zeros((H, W, 3), np.uint8)
    img[: H // 2] = (index * 23) % 256
    img[H // 2 :, :, 1] = np.linspace(0, 255, W, dtype=np.uint8)
    return img


def save(path: Path, index: int) -> Path:
    """Write `picture(index)` (PNG or JPEG by suffix), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture(index)).save(path)
    return path


def pixels(path: Path) -> np.ndarray:
    """An image file as Pillow decodes it, uint8 (H, W, 3) RGB."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def sequence(folder: Path, times: list[float], fps: float | None = None) -> Path:
    """`folder/seq.frames` over PNGs 0000.png... (relative paths) at `times`."""
    names = [save(folder / f"{i:04d}.png", i).name for i in range(len(times))]
    return write_sequence(folder / "seq.frames", names, times, fps)


# ------------------------------------------------------------------ the descriptor


def test_descriptor_round_trip_and_probe(tmp_path: Path) -> None:
    path = sequence(tmp_path, [0.0, 0.1, 0.2, 0.3, 0.4])
    data = json.loads(path.read_text())
    assert data["version"] == 1 and data["frames"][0] == "0000.png"
    loaded = load_sequence(path)
    assert loaded.frames[2] == tmp_path / "0002.png"
    np.testing.assert_allclose(loaded.time, [0.0, 0.1, 0.2, 0.3, 0.4])
    assert loaded.fps == pytest.approx(10.0) == nominal_fps(loaded.time)
    meta = probe_video(path)
    assert (meta.frames, meta.width, meta.height) == (5, W, H)
    assert meta.fps == pytest.approx(10.0) and meta.duration == pytest.approx(0.5)
    assert not list(tmp_path.glob(".*.part"))  # written atomically


BAD = {
    "not JSON": ("{oops", "not JSON"),
    "not an object": ("[1, 2]", "must be a JSON object"),
    "missing keys": ('{"version": 1, "fps": 10}', "missing key(s) frames, time"),
    "version": ('{"version": 7, "fps": 10, "frames": ["a.png"], "time": [0]}', "version=7"),
    "fps": ('{"version": 1, "fps": 0, "frames": ["a.png"], "time": [0]}', "fps=0"),
    "frames type": ('{"version": 1, "fps": 10, "frames": [3], "time": [0]}', "frames must be"),
    "time type": ('{"version": 1, "fps": 10, "frames": ["a"], "time": ["x"]}', "time must be"),
    "empty": ('{"version": 1, "fps": 10, "frames": [], "time": []}', "frames is empty"),
    "lengths": (
        '{"version": 1, "fps": 10, "frames": ["a.png", "b.png"], "time": [0]}',
        "frames has 2 entries but time has 1",
    ),
    "not increasing": (
        '{"version": 1, "fps": 10, "frames": ["a.png", "b.png"], "time": [0.5, 0.5]}',
        "time must be strictly increasing, but time[1]=0.5",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_descriptors_name_the_file_and_field(tmp_path: Path, case: str) -> None:
    text, expected = BAD[case]
    path = tmp_path / "bad.frames"
    path.write_text(text)
    with pytest.raises(SequenceError, match=r"bad\.frames") as info:
        load_sequence(path)
    assert expected in str(info.value)
    with pytest.raises(BadVideo, match=r"bad\.frames"):  # what the video index records
        probe_video(path)
    with pytest.raises(VideoDecodeError, match=r"bad\.frames"):
        read_frames(path, [0], "pyav")


def test_writer_refuses_what_the_loader_rejects(tmp_path: Path) -> None:
    with pytest.raises(SequenceError, match="strictly increasing"):
        write_sequence(tmp_path / "x.frames", ["a.png", "b.png"], [0.2, 0.1], 10.0)
    assert not (tmp_path / "x.frames").exists()


def test_probe_names_an_unreadable_first_image(tmp_path: Path) -> None:
    path = sequence(tmp_path, [0.0, 0.1])
    (tmp_path / "0000.png").unlink()
    with pytest.raises(BadVideo, match=r"0000\.png"):
        probe_video(path)


# ------------------------------------------------------------------ reading


def test_both_backends_read_the_source_images(tmp_path: Path) -> None:
    path = sequence(tmp_path, [i / 10 for i in range(6)])
    indices = [5, 0, 3, 3, 1]
    reads = [read_frames(path, indices, backend).numpy() for backend in BACKENDS]
    np.testing.assert_array_equal(reads[0], reads[1])
    np.testing.assert_array_equal(reads[0], np.stack([picture(i) for i in indices]))


def test_variable_rate_maps_each_index_to_the_image_shown(tmp_path: Path) -> None:
    times = [0.0, 0.1, 0.2, 0.25, 0.35, 0.45, 0.5, 0.6, 0.7, 0.75]  # 100/100/50 ms steps
    stated = sequence(tmp_path / "a", times, fps=20.0)  # a 50 ms grid
    assert probe_video(stated).frames == 16
    shown = [0, 0, 1, 1, 2, 3, 3, 4, 4, 5, 6, 6, 7, 7, 8, 9]  # last image at or before i / 20
    got = read_frames(stated, list(range(16)), "decord").numpy()
    np.testing.assert_array_equal(got, np.stack([picture(i) for i in shown]))
    nominal = sequence(tmp_path / "b", times)  # 9 steps over 0.75 s: 12 fps, last image at 9
    assert probe_video(nominal).frames == 10
    got = read_frames(nominal, list(range(10)), "pyav").numpy()
    shown = [0, 0, 1, 3, 3, 4, 6, 6, 7, 9]  # i / 12 s
    np.testing.assert_array_equal(got, np.stack([picture(i) for i in shown]))
    with pytest.raises(VideoDecodeError, match=r"needs frames 0\.\.20"):
        read_frames(nominal, [0, 20], "pyav")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_missing_corrupt_or_resized_image_is_named(tmp_path: Path, backend: str) -> None:
    path = sequence(tmp_path, [i / 10 for i in range(4)])
    (tmp_path / "0002.png").unlink()
    with pytest.raises(VideoDecodeError, match=r"seq\.frames.*0002\.png is missing"):
        read_frames(path, [1, 2], backend)
    (tmp_path / "0001.png").write_bytes(b"not a png")
    with pytest.raises(VideoDecodeError, match=r"0001\.png: cannot decode"):
        read_frames(path, [1], backend)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "0003.png")
    with pytest.raises(VideoDecodeError, match=r"0003\.png is 8x8 but .*0000\.png is 32x16"):
        read_frames(path, [3], backend)


def test_video_clips_cut_a_frame_sequence_into_samples(tmp_path: Path) -> None:
    sequence(tmp_path / "videos" / "town", [i / 8 for i in range(20)], fps=8.0)  # 2.5 s
    dataset = VideoClips(tiny_config("data.source=videos", f"data.root={tmp_path}", "data.fps=8"))
    assert dataset.summary.videos_used == 1
    assert len(dataset) == len(window_starts(2.5, dataset.spec)) == 2
    sample = dataset[1]
    assert sample["video"].shape == (3, 8, 32, 32) and sample["path"] == "videos/town/seq.frames"


# ------------------------------------------------------------------ the importer


def nuscenes_tree(src: Path) -> None:
    """Two logs of CAM_FRONT JPEGs split between samples/ (every 5th) and sweeps/.

    Log A: 100/100/50 ms steps, then a 2 s hole (a second piece). Log B: 100 ms steps with one
    frame dropped. A lidar file and an unrelated JPEG must be ignored."""
    start = 1532402927_000000

    def put(log: str, utimes: list[int]) -> None:
        for k, utime in enumerate(utimes):
            folder = "samples" if k % 5 == 0 else "sweeps"
            save(src / folder / "CAM_FRONT" / f"{log}__CAM_FRONT__{utime}.jpg", k)

    steps = np.cumsum([0] + [100_000, 100_000, 50_000] * 3)  # 10 frames over 0.75 s
    late = steps[-1] + 2_000_000 + np.arange(4) * 100_000
    put("n015-2018-07-24-11-22-45+0800", [start + int(t) for t in [*steps, *late]])
    put("n008-2018-08-01-15-16-36-0400", [start + k * 100_000 for k in (0, 1, 2, 4, 5, 6)])
    (src / "samples" / "LIDAR_TOP").mkdir(parents=True)
    (src / "samples" / "LIDAR_TOP" / "n008__LIDAR_TOP__1532402927000000.pcd.bin").write_bytes(b"")
    save(src / "maps" / "53992ee3023e5494b90c316c183be829.png", 0)


def test_nuscenes_streams_are_joined_split_and_noted(tmp_path: Path) -> None:
    nuscenes_tree(tmp_path / "src")
    summary = run_import("frames", tmp_path / "src", tmp_path / "out")
    assert (summary.found, summary.imported, summary.skipped) == (3, 3, [])
    assert summary.notes == {frames_importer.MISSING_FRAMES: 1}  # log B's dropped frame
    videos = tmp_path / "out" / "videos"
    names = sorted(p.name for p in videos.iterdir())
    assert names == [
        "n008-2018-08-01-15-16-36-0400__CAM_FRONT__0.frames",
        "n015-2018-07-24-11-22-45+0800__CAM_FRONT__0.frames",
        "n015-2018-07-24-11-22-45+0800__CAM_FRONT__1.frames",
    ]
    first = load_sequence(videos / names[1])
    np.testing.assert_allclose(first.time, [0, 0.1, 0.2, 0.25, 0.35, 0.45, 0.5, 0.6, 0.7, 0.75])
    assert first.fps == pytest.approx(12.0)
    assert [p.parent.parent.name for p in first.frames[:2]] == ["samples", "sweeps"]
    assert all(p.is_absolute() for p in first.frames)
    assert not (tmp_path / "out" / "annotations").exists()  # no ego series in nuScenes files
    got = read_frames(videos / names[1], [0, 9], "pyav").numpy()
    np.testing.assert_array_equal(got, np.stack([pixels(first.frames[0]), pixels(first.frames[9])]))


def kitti_drive(root: Path, frames: int = 30, oxts: bool = True) -> Path:
    """A KITTI raw drive: image_02 at ~10 Hz (ns timestamps), image_03, and oxts in which the
    car brakes from 10 to 5 m/s between 1 s and 2 s while turning right slowly."""
    drive = root / "2011_09_26" / "2011_09_26_drive_0001_sync"
    start = datetime(2011, 9, 26, 13, 2, 25, tzinfo=timezone.utc)
    step_ns = 103_700_001

    def stamp(ns: int) -> str:
        moment = start + timedelta(microseconds=ns // 1000)
        return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond:06d}{ns % 1000:03d}"

    for camera in ("image_02", "image_03"):
        for k in range(frames):
            save(drive / camera / "data" / f"{k:010d}.png", k)
        lines = [stamp(123_456_789 + k * step_ns) for k in range(frames)]
        (drive / camera / "timestamps.txt").write_text("\n".join(lines) + "\n")
    if oxts:
        (drive / "oxts" / "data").mkdir(parents=True)
        lines = []
        for k in range(frames):
            t = k * 0.1
            row = np.zeros(30)
            row[:2] = 49.0 + t * 1e-5, 8.4
            row[5] = 0.3 - 0.02 * t  # yaw falls: a right turn in KITTI's frame
            row[8] = 10.0 - 5.0 * min(max(t - 1.0, 0.0), 1.0)  # vf
            row[14] = -5.0 if 1.0 <= t <= 2.0 else 0.0  # af
            row[22] = -0.02  # wu
            text = " ".join(f"{v:.6f}" for v in row)
            (drive / "oxts" / "data" / f"{k:010d}.txt").write_text(text + "\n")
            lines.append(stamp(118_456_789 + k * 100_000_000))  # 5 ms before each image
        (drive / "oxts" / "timestamps.txt").write_text("\n".join(lines) + "\n")
    return drive


def test_kitti_drive_with_ns_timestamps_and_oxts_ego(tmp_path: Path) -> None:
    drive = kitti_drive(tmp_path / "src")
    summary = run_import("frames", tmp_path / "src", tmp_path / "out")
    assert (summary.found, summary.imported, summary.skipped) == (1, 1, [])  # image_03 ignored
    assert summary.events["brake"] == 1
    name = drive.name
    seq = load_sequence(tmp_path / "out" / "videos" / f"{name}.frames")
    assert seq.time[1] == pytest.approx(0.103700001, abs=1e-12)  # nanoseconds kept
    assert seq.fps == pytest.approx(1 / 0.103700001)
    assert seq.frames[0] == drive / "image_02" / "data" / "0000000000.png"
    note = load_annotation(tmp_path / "out" / "annotations" / f"{name}.json")
    assert note.ego_time[0].item() == pytest.approx(-0.005, abs=1e-6)  # on the video's clock
    assert note.ego["speed"][0].item() == pytest.approx(10.0)
    assert note.ego["heading"][10].item() == pytest.approx(-0.28)  # -yaw: clockwise
    assert note.ego["yaw_rate"][0].item() == pytest.approx(0.02)  # -wu: turning right
    assert any(e.maneuver == "brake" and 0.5 < e.start < 2.0 for e in note.events)


def test_kitti_timestamp_problems_are_item_errors(tmp_path: Path) -> None:
    drive = kitti_drive(tmp_path / "src", frames=6, oxts=False)
    stamps = drive / "image_02" / "timestamps.txt"
    lines = stamps.read_text().splitlines()
    stamps.write_text("\n".join(lines[:-1]) + "\n")
    summary = run_import("frames", tmp_path / "src", tmp_path / "out")
    assert summary.imported == 0 and len(summary.skipped) == 1
    assert "timestamps.txt: 5 timestamps for 6 files" in summary.skipped[0][1]
    with pytest.raises(ImportItemError, match=r"timestamps\.txt"):
        run_import("frames", tmp_path / "src", tmp_path / "out", on_error="raise")
    lines[2], lines[3] = lines[3], lines[2]
    stamps.write_text("\n".join(lines) + "\n")
    summary = run_import("frames", tmp_path / "src", tmp_path / "out")
    assert "not strictly increasing (line 3" in summary.skipped[0][1]
    assert not (tmp_path / "out" / "videos").exists()


def test_duplicate_nuscenes_times_are_a_counted_skip(tmp_path: Path) -> None:
    name = "n015-2018-07-24-11-22-45+0800__CAM_FRONT__1532402927000000.jpg"
    save(tmp_path / "src" / "samples" / "CAM_FRONT" / name, 0)
    save(tmp_path / "src" / "sweeps" / "CAM_FRONT" / name, 0)
    later = name.replace("7000000.jpg", "7100000.jpg")
    save(tmp_path / "src" / "sweeps" / "CAM_FRONT" / later, 1)
    summary = run_import("frames", tmp_path / "src", tmp_path / "out")
    assert summary.imported == 0
    assert "timestamps not strictly increasing" in summary.skipped[0][1]


def numbered_folder(src: Path, missing: int | None = 4) -> Path:
    """src/cam/frame_0001.png .. frame_0008.png (one missing) and an unnumbered README image."""
    for k in range(1, 9):
        if k != missing:
            save(src / "cam" / f"frame_{k:04d}.png", k)
    save(src / "cam" / "cover.png", 0)
    return src / "cam"


def test_numbered_folder_needs_a_stated_fps(tmp_path: Path) -> None:
    numbered_folder(tmp_path / "src")
    summary = run_import("frames", tmp_path / "src", tmp_path / "out")
    assert summary.found == 0
    assert summary.skipped[0][0] == "cam"
    assert "has no timestamps: state its frame rate with --fps N" in summary.skipped[0][1]
    summary = run_import("frames", tmp_path / "src", tmp_path / "out", ImportOptions(fps=4.0))
    assert (summary.imported, summary.skipped) == (1, [])
    assert summary.notes == {frames_importer.MISSING_FRAMES: 1}
    seq = load_sequence(tmp_path / "out" / "videos" / "cam.frames")
    np.testing.assert_allclose(seq.time, [0, 0.25, 0.5, 1.0, 1.25, 1.5, 1.75])
    got = read_frames(tmp_path / "out" / "videos" / "cam.frames", [2, 3, 4], "decord").numpy()
    np.testing.assert_array_equal(got, np.stack([picture(3), picture(3), picture(5)]))


@pytest.mark.decord
def test_encode_writes_an_mp4_of_the_same_frames(tmp_path: Path) -> None:
    numbered_folder(tmp_path / "src")
    options = ImportOptions(fps=4.0, encode=True)
    summary = run_import("frames", tmp_path / "src", tmp_path / "out", options)
    assert summary.imported == 1
    video = tmp_path / "out" / "videos" / "cam.mp4"
    meta = probe_video(video)
    assert (meta.frames, meta.fps, meta.width, meta.height) == (8, 4.0, W, H)
    want = np.stack([picture(k) for k in (1, 2, 3, 3, 5, 6, 7, 8)]).astype(np.float32)
    for backend in BACKENDS:
        got = read_frames(video, list(range(8)), backend).numpy().astype(np.float32)
        assert np.abs(got - want).mean() < 4.0  # H.264 at crf 18 on a 16 x 32 image
        top = got[:, : H // 2].mean(axis=(1, 2, 3))
        np.testing.assert_allclose(top, want[:, : H // 2].mean(axis=(1, 2, 3)), atol=4.0)


def test_a_rerun_resumes_and_rewrites_nothing(tmp_path: Path) -> None:
    nuscenes_tree(tmp_path / "src")
    kitti_drive(tmp_path / "src", frames=12)
    first = run_import("frames", tmp_path / "src", tmp_path / "out")
    assert first.imported == 4
    written = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*") if p.is_file()}
    written.pop(tmp_path / "out" / ".tritemporal_import.jsonl")
    second = run_import("frames", tmp_path / "src", tmp_path / "out")
    assert (second.resumed, second.imported) == (first.imported, 0)
    assert {p: p.stat().st_mtime_ns for p in written} == written
    os.utime(next(iter(sorted((tmp_path / "src" / "sweeps").rglob("*n008*")))), ns=(1, 1))
    third = run_import("frames", tmp_path / "src", tmp_path / "out")
    assert (third.resumed, third.imported) == (3, 1)  # a changed image: only its stream again


def test_channel_keeps_one_nuscenes_camera(tmp_path: Path) -> None:
    nuscenes_tree(tmp_path / "src")
    back = tmp_path / "src" / "sweeps" / "CAM_BACK"
    for k in range(4):
        save(
            back / f"n008-2018-08-01-15-16-36-0400__CAM_BACK__{1532402927_000000 + k * 83_000}.jpg",
            k,
        )
    everything = run_import("frames", tmp_path / "src", tmp_path / "all")
    assert everything.found == 4
    front = run_import(
        "frames", tmp_path / "src", tmp_path / "front", ImportOptions(channel="CAM_FRONT")
    )
    assert front.found == 3 and front.imported == 3
    assert not list((tmp_path / "front" / "videos").glob("*CAM_BACK*"))
