"""`tritemporal import`: BDD100K and comma2k19 fixtures built in each dataset's exact layout, with
their quirks (epoch-millisecond timestamps, GPS dropouts, -1 speed/course, duplicate fixes,
missing IMU, jittered frame times, HEVC with and without B-frames), resuming, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import tiny_config
from tests.dataset_fixtures import BOOT, ROUTE, bdd_info, bdd_video, comma_segment
from tritemporal.cli import main
from tritemporal.config import AutoLabelConfig
from tritemporal.data.annotations import load_annotation
from tritemporal.data.decode import read_frames
from tritemporal.data.importers.base import (
    IMPORTERS,
    STATE_FILE,
    ImportItemError,
    ImportOptions,
    run_import,
)
from tritemporal.data.videos import VideoClips


@pytest.fixture
def bdd_root(tmp_path: Path) -> Path:
    root = tmp_path / "bdd100k"
    braking = [14.0] * 8 + [13.0, 10.5, 8.0, 6.0, 5.5] + [5.5] * 7  # a 8.5 m/s drop at 8-12 s
    bdd_video(root, "00a0f008-3c67908e", bdd_info(braking), seconds=20)
    quirky = bdd_info([10.0] * 12)
    fixes = quirky["locations"]
    fixes[3]["speed"] = fixes[4]["speed"] = fixes[5]["speed"] = -1  # a 4 s dropout
    fixes[8]["course"] = -1  # a fix without course (most have one)
    fixes.append(dict(fixes[1]))  # a duplicate timestamp
    fixes.reverse()  # out of order
    bdd_video(root, "00a1b2c3-4d5e6f70", quirky, split="val", seconds=12)
    bdd_video(root, "00c0ffee-00000000", bdd_info([3.0] * 5, [-1.0] * 5))  # no course at all
    bdd_video(root, "0badf00d-11111111", "")  # empty info (failed download)
    bdd_video(root, "0badf00d-22222222", "{not json")
    bdd_video(root, "0badf00d-33333333", bdd_info([-1.0] * 5))  # never a fix
    bdd_video(root, "0badf00d-44444444", None, split="test")  # test split: no info
    bdd_video(root, "0badf00d-55555555", bdd_info([5.0] * 5), video=False)
    return root


def test_bdd100k_import_reads_info_and_counts_bad_files(bdd_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    summary = run_import("bdd100k", bdd_root, out)
    assert summary.found == 6 and summary.imported == 3, summary.format_lines()
    skipped = dict(summary.skipped)
    assert "empty file" in skipped["train/0badf00d-11111111"]
    assert "not JSON" in skipped["train/0badf00d-22222222"]
    assert "0 valid GPS fixes of 5" in skipped["train/0badf00d-33333333"]
    assert "no info JSON" in skipped["test/0badf00d-44444444"]
    assert "has no video" in skipped["train/0badf00d-55555555"]
    assert len(skipped) == 5

    video = out / "videos" / "train" / "00a0f008-3c67908e.mov"
    assert video.is_symlink() and video.resolve() == (
        bdd_root / "videos" / "100k" / "train" / "00a0f008-3c67908e.mov"
    )
    note = load_annotation(out / "annotations" / "train" / "00a0f008-3c67908e.json")
    assert note.ego_time[0].item() == pytest.approx(-0.4)  # on the video's clock, from ms
    assert note.ego["heading"][0].item() == pytest.approx(np.pi / 2, abs=1e-4)  # deg -> rad
    assert {"speed", "acceleration", "latitude", "longitude"} <= set(note.ego)
    brakes = [e for e in note.events if e.maneuver == "brake"]
    assert len(brakes) == 1 and brakes[0].source == "auto" and 6.3 < brakes[0].start < 7.6

    quirky = load_annotation(out / "annotations" / "val" / "00a1b2c3-4d5e6f70.json")
    times = quirky.ego_time.numpy()
    assert np.all(np.diff(times) > 0) and len(times) == 8  # 12 - 3 dropped - 1 no course
    assert np.isclose(np.diff(times).max(), 4.0)  # the dropout stays a hole
    assert (
        "heading"
        not in load_annotation(out / "annotations" / "train" / "00c0ffee-00000000.json").ego
    )
    assert summary.notes["GPS dropout (a hole over 1.1 s)"] == 1
    assert summary.notes["GPS timestamps repeated or out of order (sorted, repeats dropped)"] == 1
    assert summary.notes["no GPS course: turns and lane changes not labelled"] == 1

    config = tiny_config(f"data.root={out}", "data.source=videos", "data.fps=4",
                         "data.stride_s=1", "data.backend=pyav")  # fmt: skip
    clips = VideoClips(config, train=False)
    assert clips.summary.videos_used == 3 and clips[0]["video"].shape[1] == 8


def test_import_resumes_and_redoes_changed_files(bdd_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    first = run_import("bdd100k", bdd_root, out)
    note = out / "annotations" / "train" / "00a0f008-3c67908e.json"
    written = note.stat().st_mtime_ns
    again = run_import("bdd100k", bdd_root, out)
    assert again.resumed == first.imported and again.imported == 0
    assert note.stat().st_mtime_ns == written
    info = bdd_root / "info" / "100k" / "train" / "00a0f008-3c67908e.json"
    info.write_text(json.dumps(bdd_info([9.0] * 20)))  # the source changed: import it again
    third = run_import("bdd100k", bdd_root, out)
    assert third.imported == 1 and third.resumed == first.imported - 1
    assert not [e for e in load_annotation(note).events if e.maneuver == "brake"]


def test_an_interrupted_import_resumes_without_redoing_work(
    bdd_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "data"
    importer = IMPORTERS["bdd100k"]
    real, calls = importer.convert, []

    def crash_on_second(item, out_, options):
        calls.append(item.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(item, out_, options)

    monkeypatch.setattr(importer, "convert", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_import("bdd100k", bdd_root, out)
    monkeypatch.setattr(importer, "convert", real)
    assert len((out / STATE_FILE).read_text().splitlines()) == 1
    summary = run_import("bdd100k", bdd_root, out)
    assert summary.resumed == 1 and summary.imported == 2
    assert not list(out.rglob(".*.part"))  # nothing half-written


def test_on_error_raise_stops_at_the_first_bad_file(bdd_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ImportItemError, match="0badf00d"):
        run_import("bdd100k", bdd_root, tmp_path / "data", on_error="raise")


def _decoded(path: Path, fmt: str | None = None) -> list[np.ndarray]:
    with av.open(str(path), format=fmt) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.mark.decord
@pytest.mark.parametrize("bframes", [False, True])
def test_comma2k19_remuxes_hevc_at_its_frame_times(tmp_path: Path, bframes: bool) -> None:
    src = tmp_path / "comma2k19"
    seg = comma_segment(src, 40, bframes=bframes)
    summary = run_import("comma2k19", src, tmp_path / "data")
    assert summary.imported == 1, summary.format_lines()
    video = tmp_path / "data" / "videos" / ROUTE.replace("|", "_") / "40.mp4"
    raw = _decoded(seg / "video.hevc", "hevc")
    for backend in ("pyav", "decord"):  # both decoders read the remuxed file frame-exact
        got = read_frames(video, [0, 7, 31, 59], backend).numpy()
        assert all((got[i] == raw[k]).all() for i, k in enumerate([0, 7, 31, 59])), backend
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert float(stream.average_rate) == pytest.approx(20.0, rel=0.01)
        assert stream.codec_context.name == "hevc"  # remuxed, not re-encoded
    note = load_annotation(tmp_path / "data" / "annotations" / ROUTE.replace("|", "_") / "40.json")
    assert note.ego_time[0].item() == pytest.approx(0.0)
    assert np.allclose(np.diff(note.ego_time.numpy()), 0.1, atol=0.003)  # every 2nd frame
    speed = note.ego["speed"].numpy()
    assert speed[0] == pytest.approx(20, abs=0.01) and speed[-1] == pytest.approx(14, abs=0.01)
    turning = note.ego_time.numpy() > 2.0
    turning &= note.ego_time.numpy() < 2.4
    assert (note.ego["steering"].numpy()[turning] > 1.5).all()  # 90 deg left-positive -> right
    assert note.ego["yaw_rate"].numpy()[turning] == pytest.approx(0.8)
    kinds = {e.maneuver for e in note.events}
    assert {"brake", "turn_right"} <= kinds, note.events
    assert ("HEVC with B-frames: display order recovered by decoding" in summary.notes) == bframes


def test_comma2k19_quirks(tmp_path: Path) -> None:
    src = tmp_path / "comma2k19"
    comma_segment(src, 1, imu=False)
    shuffled = BOOT + np.arange(60) * 0.05
    shuffled[[10, 11]] = shuffled[[11, 10]]
    comma_segment(src, 2, frame_times=shuffled)
    comma_segment(src, 3, frame_times=BOOT + np.arange(50) * 0.05)  # 60 frames, 50 frame times
    no_speed = comma_segment(src, 4)
    for name in ("t", "value"):
        (no_speed / "processed_log/CAN/speed" / name).unlink()
    broken = comma_segment(src, 5)
    (broken / "processed_log/CAN/speed/value").write_bytes(b"not numpy")
    summary = run_import("comma2k19", src, tmp_path / "data")
    skipped = dict(summary.skipped)
    name = ROUTE.replace("|", "_")
    assert "strictly increasing" in skipped[f"{name}/2"]
    assert "has no processed_log/CAN/speed/t" in skipped[f"{name}/4"]
    assert "not a readable numpy array" in skipped[f"{name}/5"]
    assert summary.imported == 2
    assert summary.notes["no IMU: turns and lane changes not labelled"] == 1
    assert summary.notes["video and frame_times differ in frame count (common part kept)"] == 1
    no_imu = load_annotation(tmp_path / "data" / "annotations" / name / "1.json")
    assert "yaw_rate" not in no_imu.ego and {"brake"} == {e.maneuver for e in no_imu.events}
    short = tmp_path / "data" / "videos" / name / "3.mp4"
    with av.open(str(short)) as container:
        assert container.streams.video[0].frames == 50


def test_import_cli_prints_the_summary(bdd_root: Path, tmp_path: Path, capsys) -> None:
    out, report = tmp_path / "data", tmp_path / "summary.json"
    argv = ["import", "bdd100k", str(bdd_root), "--out", str(out), "--json", str(report)]
    assert main([*argv, "--set", "data.auto_labels.brake_drop=20"]) == 0
    text = capsys.readouterr().out
    assert (
        "bdd100k: 6 videos found; imported 3" in text and "skipped test/0badf00d-44444444" in text
    )
    data = json.loads(report.read_text())
    assert data["imported"] == 3 and "brake" not in data["events"]  # the threshold was used
    assert main(["import", "bdd100k", str(tmp_path / "missing"), "--out", str(out)]) == 2


def test_unknown_format_and_missing_source_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown import format 'kitti'"):
        run_import("kitti", tmp_path, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_import("bdd100k", tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(ValueError, match="is inside the dataset"):
        run_import("bdd100k", tmp_path, tmp_path / "out")
    assert isinstance(ImportOptions().labels, AutoLabelConfig)
