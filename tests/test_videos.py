"""The real-video source on tiny encoded videos whose pixels spell their native frame index."""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import random
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from tests.conftest import tiny_config
from tritemporal.data import decode, video_index
from tritemporal.data.annotations import Event, write_annotation
from tritemporal.data.common import MANEUVERS, UNLABELLED
from tritemporal.data.decode import VideoDecodeError, VideoMeta, read_frames
from tritemporal.data.video_index import INDEX_FILE
from tritemporal.data.videos import VideoClips

BACKENDS = ("decord", "pyav")


def draw(index: int, h: int, w: int) -> np.ndarray:
    """A frame whose top half holds `index` in 8 black/white columns (bit 0 on the left)."""
    img = np.zeros((h, w, 3), np.uint8)
    cw = w // 8
    for bit in range(8):
        if (index >> bit) & 1:
            img[: h // 2, bit * cw : (bit + 1) * cw] = 255
    img[h // 2 :, :, 1] = np.linspace(0, 255, w, dtype=np.uint8)  # not mirror-symmetric
    return img


def code(frame: torch.Tensor | np.ndarray) -> int:
    """The frame index drawn by `draw`, read back from an (H, W, 3) frame."""
    frame = torch.as_tensor(frame).float()
    h, w, _ = frame.shape
    cw = w // 8
    bits = [frame[2 : h // 2 - 2, b * cw + 2 : (b + 1) * cw - 2].mean() > 127 for b in range(8)]
    return sum(int(bit) << b for b, bit in enumerate(bits))


def codes(video: torch.Tensor) -> list[int]:
    """Frame indices of a (C, T, H, W) clip."""
    return [code(frame) for frame in video.permute(1, 2, 3, 0)]


def write_video(path: Path, frames: int, fps: int, size: tuple[int, int] = (64, 64)) -> Path:
    """Encode `frames` numbered frames (x264, or MPEG-4 for .avi) with a short GOP (seeks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = "mpeg4" if path.suffix.lower() == ".avi" else "libx264"
    options = {"g": "6", "qscale": "2"} if codec == "mpeg4" else {"g": "6", "crf": "8"}
    with av.open(str(path), "w", format="mp4" if path.suffix.lower() == ".mp4" else None) as out:
        stream = out.add_stream(codec, rate=fps, options=options)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            image = av.VideoFrame.from_ndarray(draw(i, *size), format="rgb24")
            out.mux(stream.encode(image))
        out.mux(stream.encode())
    return path


def annotate(path: Path, events: list[Event], ego: dict | None = None) -> Path:
    """Write an annotation file, creating its folders (test-only maneuver names allowed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_annotation(path, events, ego, vocabulary=(*MANEUVERS, "wrong_way"))
    return path


def config(root: Path, *extra: str):
    """Tiny config reading `root`: 4 + 2 + 2 frames at 8 fps (1 s span), 64 px, stride 1 s."""
    return tiny_config(
        "data.source=videos", f"data.root={root}", "data.fps=8", "clip.image_size=64", *extra
    )


def expected(start: float, native_fps: int, frames: int, gap: float = 0.0) -> list[int]:
    """Native frames of a sample starting at `start`, in exact arithmetic."""
    times = [Fraction(start) + Fraction(k, 8) for k in range(6)]
    times += [Fraction(start) + Fraction(6, 8) + Fraction(gap) + Fraction(k, 8) for k in range(2)]
    return [min(math.floor(t * native_fps), frames - 1) for t in times]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A data root with a 25 fps video (4 s) and a 5 fps one (4 s) in a sub-folder."""
    write_video(tmp_path / "videos" / "fast.mp4", 100, 25)
    write_video(tmp_path / "videos" / "town" / "slow.mkv", 20, 5)
    return tmp_path


@pytest.mark.parametrize("backend", BACKENDS)
def test_resampling_reads_the_expected_native_frames(root: Path, backend: str) -> None:
    data = VideoClips(config(root, f"data.backend={backend}"))
    assert len(data) == 8 and data.summary.videos_used == 2  # 4 windows of 1 s per 4 s video
    for i in range(len(data)):
        sample = data[i]
        native_fps, frames = (25, 100) if sample["path"] == "videos/fast.mp4" else (5, 20)
        assert sample["video"].shape == (3, 8, 64, 64) and sample["video"].dtype == torch.uint8
        assert codes(sample["video"]) == expected(sample["time"], native_fps, frames)
    slow = [data[i] for i in range(len(data)) if data[i]["path"] == "videos/town/slow.mkv"]
    assert codes(slow[1]["video"]) == [5, 5, 6, 6, 7, 8, 8, 9]  # 5 fps at 8 fps repeats frames


def test_stride_and_gap(root: Path) -> None:
    data = VideoClips(config(root, "data.stride_s=0.5", "data.gap_s=0.5"))
    assert len(data) == 2 * 6  # starts 0, 0.5 .. 2.5: the 1.5 s span fits a 4 s video
    sample = next(data[i] for i in range(len(data)) if data[i]["path"] == "videos/fast.mp4")
    last = data[5]
    assert last["time"] == 2.5 and codes(last["video"]) == expected(2.5, 25, 100, gap=0.5)
    assert codes(sample["video"])[6:] == [31, 34]  # EVENTUALLY at 1.25 s and 1.375 s


def test_labels_from_events_and_unlabelled(root: Path) -> None:
    events = [Event("brake", 1.7, 2.0), Event("wrong_way", 2.75, 3.0)]
    annotate(root / "annotations" / "fast.json", events)
    data = VideoClips(config(root, "data.extra_maneuvers=[wrong_way]"))
    assert data.label_names == (*MANEUVERS, "wrong_way")
    labels = {(data[i]["path"], data[i]["time"]): int(data[i]["label"]) for i in range(len(data))}
    fast = [labels["videos/fast.mp4", t] for t in (0.0, 1.0, 2.0, 3.0)]  # EVENTUALLY t+0.75..t+1
    assert [data.label_names[i] for i in fast] == ["keep_lane", "brake", "wrong_way", "keep_lane"]
    assert all(labels["videos/town/slow.mkv", t] == UNLABELLED for t in (0.0, 1.0, 2.0, 3.0))
    counts = data.summary.label_counts
    assert counts["keep_lane"] == 2 and counts["brake"] == 1 and counts["wrong_way"] == 1
    assert counts["unlabelled"] == 4


def test_ego_signals_are_interpolated_at_frame_times(root: Path) -> None:
    t = [k / 10 for k in range(41)]
    ego = {"time": t, "speed": [3.0 * x for x in t], "steering": [0.1 * x for x in t]}
    annotate(root / "annotations" / "town" / "slow.json", [], ego)
    data = VideoClips(config(root))
    sample = data[data.summary.samples - 3]  # the slow video's window at 1 s
    assert sample["path"] == "videos/town/slow.mkv" and sample["time"] == 1.0
    times = torch.tensor([1 + k / 8 for k in range(8)])
    assert sample["signals"]["speed"].dtype == torch.float32
    assert torch.allclose(sample["signals"]["speed"], 3 * times)
    assert torch.allclose(sample["signals"]["steering"], 0.1 * times)
    assert int(sample["label"]) == MANEUVERS.index("keep_lane")  # annotated, no event
    assert data[0]["signals"] == {}  # the unannotated video


def _zero_byte(root: Path) -> Path:
    path = root / "videos" / "bad.mp4"
    path.write_bytes(b"")
    return path


def _garbage(root: Path) -> Path:
    path = root / "videos" / "bad.mp4"
    # seeded: fresh random bytes now and then parse as a container without a video stream
    path.write_bytes(random.Random(0).randbytes(4000))
    return path


def _truncated_mp4(root: Path) -> Path:
    path = write_video(root / "videos" / "bad.mp4", 50, 25)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _truncated_mkv(root: Path) -> Path:
    path = write_video(root / "videos" / "bad.mkv", 100, 25)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _short(root: Path) -> Path:
    return write_video(root / "videos" / "bad.avi", 6, 10)


def _bad_json(root: Path) -> Path:
    (root / "annotations" / "bad.json").write_text("{not json")
    return write_video(root / "videos" / "bad.mov", 30, 10)


def _bad_schema(root: Path) -> Path:
    text = {"schema_version": 1, "events": [{"maneuver": "fly", "start": 0, "end": 1}]}
    (root / "annotations" / "bad.json").write_text(json.dumps(text))
    return write_video(root / "videos" / "bad.mov", 30, 10)


BAD = {
    "zero-byte": (_zero_byte, "zero-byte file"),
    "garbage": (_garbage, "cannot open it (truncated or corrupt video)"),
    "truncated-mp4": (_truncated_mp4, "cannot open it (truncated or corrupt video)"),
    "truncated-mkv": (_truncated_mkv, "truncated video: its header says 4.00 s"),
    "too-short": (_short, "too short: 0.60 s (6 frames at 10 fps), but one sample spans 1.00 s"),
    "bad-json": (_bad_json, "bad.json: unreadable JSON"),
    "bad-schema": (_bad_schema, "bad.json: events[0].maneuver 'fly' is unknown"),
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("policy", ["skip", "raise"])
def test_bad_input_is_skipped_or_raised(tmp_path: Path, case: str, policy: str) -> None:
    write_video(tmp_path / "videos" / "good.mp4", 50, 25)
    (tmp_path / "annotations").mkdir()
    make, message = BAD[case]
    bad = make(tmp_path)
    if policy == "raise":
        with pytest.raises(ValueError, match=r"data\.on_error=raise") as info:
            VideoClips(config(tmp_path, "data.on_error=raise"))
        assert str(bad) in str(info.value) and message in str(info.value)
        return
    data = VideoClips(config(tmp_path))
    assert len(data) == 2 and data.summary.videos_found == 2 and data.summary.videos_used == 1
    ((path, reason),) = data.summary.skipped
    assert path == bad.relative_to(tmp_path).as_posix() and message in reason
    assert path in data.summary.format() and data.summary.to_dict()["skipped"][0]["path"] == path
    json.dumps(data.summary.to_dict())


def test_missing_or_zero_fps(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = decode.probe_video
    zero = VideoMeta(frames=20, fps=0.0, duration=0.0, width=64, height=64)
    monkeypatch.setattr(decode, "probe_video", lambda p: zero if p.suffix == ".mkv" else real(p))
    data = VideoClips(config(root))
    assert data.summary.skipped == [
        (
            "videos/town/slow.mkv",
            "missing or zero frame rate (fps=0.0); re-encode it at a fixed fps",
        )
    ]
    (root / INDEX_FILE).unlink()
    with pytest.raises(ValueError, match=r"slow\.mkv: missing or zero frame rate"):
        VideoClips(config(root, "data.on_error=raise"))


def test_missing_empty_or_unusable_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist; expected ROOT/videos"):
        VideoClips(config(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="has no videos/ folder"):
        VideoClips(config(tmp_path))
    (tmp_path / "videos").mkdir()
    with pytest.raises(FileNotFoundError, match="no videos found"):
        VideoClips(config(tmp_path))
    _zero_byte(tmp_path)
    with pytest.raises(ValueError, match=r"none of the 1 videos .* zero-byte"):
        VideoClips(config(tmp_path))
    with pytest.raises(ValueError, match=r"needs data\.root"):
        VideoClips(tiny_config("data.source=videos"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_decode_failure_after_indexing_names_the_file(root: Path, backend: str) -> None:
    data = VideoClips(config(root, f"data.backend={backend}"))
    data[0]
    (root / "videos" / "fast.mp4").write_bytes(os.urandom(3000))
    with pytest.raises(VideoDecodeError, match=r"fast\.mp4"):
        data[1]


def test_index_is_cached_and_invalidated_per_file(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _garbage(root)
    first = VideoClips(config(root))
    assert (root / INDEX_FILE).is_file() and len(first.summary.skipped) == 1

    def fail(path: Path) -> VideoMeta:
        raise AssertionError(f"probed {path} again")

    monkeypatch.setattr(decode, "probe_video", fail)
    second = VideoClips(config(root))  # nothing changed: only stats, bad results too
    assert second.summary.to_dict() == first.summary.to_dict()

    probed = []
    monkeypatch.undo()
    real = decode.probe_video
    monkeypatch.setattr(decode, "probe_video", lambda p: probed.append(p.name) or real(p))
    stat = (root / "videos" / "fast.mp4").stat()
    os.utime(root / "videos" / "fast.mp4", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    VideoClips(config(root))
    assert probed == ["fast.mp4"]


def test_read_only_root_keeps_the_index_in_memory(
    root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def deny(src: object, dst: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(video_index.os, "replace", deny)
    with caplog.at_level(logging.WARNING):
        data = VideoClips(config(root))
    assert len(data) == 8 and not (root / INDEX_FILE).exists()
    assert "keeping it in memory" in caplog.text
    assert not list(root.glob("*.tmp"))


@pytest.mark.decord
def test_decord_and_pyav_agree(root: Path) -> None:
    indices = [40, 3, 3, 17, 99, 60, 61]  # unsorted, repeated, across several GOPs
    path = root / "videos" / "fast.mp4"
    a, b = (read_frames(path, indices, backend) for backend in BACKENDS)
    assert a.shape == b.shape == (7, 64, 64, 3) and a.dtype == b.dtype == torch.uint8
    assert (a.float() - b.float()).abs().mean() < 2
    assert [code(f) for f in a] == [code(f) for f in b] == indices


@pytest.mark.parametrize("train", [True, False])
def test_views_training_random_evaluation_deterministic(root: Path, train: bool) -> None:
    data = VideoClips(config(root, "clip.image_size=[32,48]"), train=train)
    one, two = data[3], data[3]
    assert one["video"].shape == (3, 8, 32, 48) and torch.equal(one["video"], two["video"])
    g = [torch.Generator().manual_seed(s) for s in (7, 7, 8)]
    views = [data.sample(3, gen)["video"] for gen in g]
    assert torch.equal(views[0], views[1])
    same = [torch.equal(view, one["video"]) for view in views]
    assert same[0] == same[2] == (not train)  # training views are random crops


def test_hflip_swaps_labels_and_negates_steering(root: Path) -> None:
    t = [k / 10 for k in range(41)]
    ego = {"time": t, "steering": [0.1 + 0.01 * x for x in t]}
    annotate(root / "annotations" / "fast.json", [Event("lane_change_left", 0, 4)], ego)
    data = VideoClips(config(root, "data.hflip=true", "data.train_crop=center"))
    base = data[0]
    assert data.label_names[int(base["label"])] == "lane_change_left"
    flips = 0
    for seed in range(12):
        view = data.sample(0, torch.Generator().manual_seed(seed))
        flipped = torch.equal(view["video"], base["video"].flip(-1))
        assert flipped or torch.equal(view["video"], base["video"])
        sign = -1.0 if flipped else 1.0
        name = "lane_change_right" if flipped else "lane_change_left"
        assert data.label_names[int(view["label"])] == name
        assert torch.equal(view["signals"]["steering"], sign * base["signals"]["steering"])
        flips += flipped
    assert 0 < flips < 12


def test_manifest_and_recursive_layout(tmp_path: Path) -> None:
    write_video(tmp_path / "videos" / "a" / "b" / "clip.MP4", 25, 25)
    annotate(tmp_path / "annotations" / "a" / "b" / "clip.json", [])
    (tmp_path / "videos" / "a" / "._clip.mp4").write_bytes(b"\0" * 10)  # macOS junk: ignored
    data = VideoClips(config(tmp_path))
    assert data.summary.videos_found == 1 and data[0]["path"] == "videos/a/b/clip.MP4"
    assert int(data[0]["label"]) == MANEUVERS.index("keep_lane")

    outside = write_video(tmp_path / "elsewhere" / "x.avi", 20, 10)
    note = tmp_path / "x.json"
    annotate(note, [Event("stop", 0.0, 2.0)])
    rows = ["path,annotation", "videos/a/b/clip.MP4,", f"{outside},{note}", "videos/missing.mp4,"]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    data = VideoClips(config(tmp_path, "data.manifest=list.csv"))
    assert [s[0] for s in data.summary.skipped] == ["videos/missing.mp4"]
    assert "cannot read it" in data.summary.skipped[0][1]
    assert {data[i]["path"] for i in range(len(data))} == {"elsewhere/x.avi", "videos/a/b/clip.MP4"}
    assert data[0]["path"] == "elsewhere/x.avi" and data[0]["label"] == MANEUVERS.index("stop")


def test_dataset_pickles_and_works_in_workers(root: Path) -> None:
    data = VideoClips(config(root))
    data[0]  # opens a reader in this process; the dataset must still pickle
    clone = pickle.loads(pickle.dumps(data))
    assert torch.equal(clone[2]["video"], data[2]["video"])
    loader = torch.utils.data.DataLoader(data, batch_size=4, num_workers=2, collate_fn=list)
    batches = list(loader)
    assert sum(len(b) for b in batches) == len(data)
    assert torch.equal(batches[0][2]["video"], data[2]["video"])
