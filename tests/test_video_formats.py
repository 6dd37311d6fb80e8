"""Dash-cam folders: every container PyAV reads trains, frame-exact; raw .h264/.hevc streams take
a stated or probed frame rate; every other file is reported by reason (issue 27, item 4)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tests.test_videos import code, codes, config, draw, expected
from tritemporal.data import raw_stream
from tritemporal.data.decode import VideoDecodeError, auto_backend, probe_video, read_frames
from tritemporal.data.frame_sequence import write_sequence
from tritemporal.data.video_files import DUPLICATE, HIDDEN, NOT_VIDEO
from tritemporal.data.video_windows import VideoWindows
from tritemporal.data.videos import VideoClips

SIZE = (32, 64)  # (H, W): `draw` writes the frame index in 8 columns of 8 px
H264 = {"g": "6", "crf": "8"}
HEVC = {"g": "6", "crf": "8", "x265-params": "log-level=error"}
VP9 = {"g": "6", "crf": "4", "b": "0"}
MPEG = {"g": "6", "qscale": "2"}
# extension -> (muxer, encoder, options, native fps): 2 s each (MPEG-2 allows only film rates)
CONTAINERS = {
    ".ts": ("mpegts", "libx264", H264, 8),
    ".MP4": ("mp4", "libx264", H264, 8),
    ".m4v": ("ipod", "libx264", H264, 8),
    ".webm": ("webm", "libvpx-vp9", VP9, 8),
    ".mpg": ("mpeg", "mpeg2video", MPEG, 24),
    ".flv": ("flv", "flv", MPEG, 8),
    ".3gp": ("3gp", "mpeg4", MPEG, 8),
    ".h264": ("h264", "libx264", H264, 8),
    ".hevc": ("hevc", "libx265", HEVC, 8),
}
RAW = (".h264", ".hevc")


def write(path: Path, ext: str, seconds: float = 2.0, **options: str) -> Path:
    """Numbered frames (`draw`) in the container and codec CONTAINERS gives `ext`."""
    muxer, encoder, base, fps = CONTAINERS[ext]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=muxer) as out:
        stream = out.add_stream(encoder, rate=fps, options={**base, **options})
        stream.height, stream.width = SIZE
        stream.pix_fmt = "yuv420p"
        for i in range(round(seconds * fps)):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(draw(i, *SIZE), format="rgb24")))
        out.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def formats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """videos/clip<ext> for every container, 2 s each (written once for the module)."""
    root = tmp_path_factory.mktemp("formats")
    for ext in CONTAINERS:
        write(root / "videos" / f"clip{ext}", ext)
    return root


def frames_of(ext: str) -> tuple[int, int]:
    """(frame count, native fps) of a 2 s fixture."""
    fps = CONTAINERS[ext][3]
    return 2 * fps, fps


@pytest.mark.parametrize("ext", sorted(CONTAINERS))
def test_each_container_is_probed_and_read_frame_exact(formats: Path, ext: str) -> None:
    path = formats / "videos" / f"clip{ext}"
    count, fps = frames_of(ext)
    meta = probe_video(path)
    assert (meta.frames, meta.fps, meta.duration) == (count, fps, 2.0)
    assert (meta.width, meta.height, meta.raw) == (64, 32, ext in RAW)
    assert auto_backend(path, meta) == auto_backend(path) == "pyav"  # decord is not measured
    wanted = [count - 1, 0, 5, 5, 9, count]  # unsorted, repeated, one past the end (holds)
    for backend in ("auto", "pyav"):
        got = read_frames(path, wanted, backend, meta)
        assert [code(frame) for frame in got] == [count - 1, 0, 5, 5, 9, count - 1], backend


def test_a_dash_cam_folder_trains_on_every_video_and_names_every_other_file(
    formats: Path, tmp_path: Path
) -> None:
    shutil.copytree(formats / "videos", tmp_path / "videos")
    videos = tmp_path / "videos"
    for i in range(12):
        (videos / "thumbs" / f"img{i:02d}.jpg").parent.mkdir(exist_ok=True)
        (videos / "thumbs" / f"img{i:02d}.jpg").write_bytes(b"\xff\xd8\xff")
    (videos / "notes.txt").write_text("trip to the coast")
    (videos / "._clip.MP4").write_bytes(b"\0" * 10)  # macOS metadata twin
    (videos / ".cache").mkdir()
    (videos / ".cache" / "x.mp4").write_bytes(b"")  # never searched
    (videos / "sensor.xyz").write_bytes(random.Random(0).randbytes(3000))  # probed: no video
    shutil.copy(videos / "clip.MP4", videos / "front.dav")  # another extension, but a video
    Image.fromarray(draw(0, *SIZE)).save(videos / "poster.img", format="PNG")  # PyAV opens it
    (videos / "link.ts").symlink_to(videos / "clip.ts")

    data = VideoClips(config(tmp_path, "clip.image_size=[32,64]"))
    summary = data.summary
    assert summary.videos_found == summary.videos_used == len(CONTAINERS) + 1
    assert summary.skipped == [] and len(data) == 2 * summary.videos_used  # starts 0 s and 1 s
    for i in range(len(data)):
        sample = data[i]
        ext = Path(sample["path"]).suffix
        count, fps = frames_of(".MP4" if ext == ".dav" else ext)
        assert codes(sample["video"]) == expected(sample["time"], fps, count), sample["path"]

    reasons = {item.path: (item.reason, item.detail) for item in summary.ignored}
    assert reasons["videos/link.ts"] == (DUPLICATE, "same as videos/clip.ts")
    assert reasons["videos/._clip.MP4"] == reasons["videos/.cache/"] == (HIDDEN, "")
    assert reasons["videos/notes.txt"] == (NOT_VIDEO, "")
    assert reasons["videos/sensor.xyz"] == (NOT_VIDEO, "PyAV reads no video from it")
    assert reasons["videos/poster.img"][0] == NOT_VIDEO
    assert len(reasons) == 12 + 6
    text = summary.format()
    assert "other files: 18 ignored" in text.splitlines()[0]
    assert (
        "12 .jpg files ignored: not video (e.g. videos/thumbs/img00.jpg, "
        "videos/thumbs/img01.jpg, videos/thumbs/img02.jpg)"
    ) in text
    assert "1 .txt file ignored: not video (videos/notes.txt)" in text
    assert "1 folder ignored: hidden" in text and "1 .mp4 file ignored: hidden" in text
    listed = json.loads(json.dumps(summary.to_dict()))["ignored"]
    assert {item["path"] for item in listed} == set(reasons)


def test_images_a_frames_descriptor_reads_are_used_not_ignored(tmp_path: Path) -> None:
    images = tmp_path / "videos" / "cam"
    images.mkdir(parents=True)
    for i in range(8):
        Image.fromarray(draw(i, *SIZE)).save(images / f"{i:04d}.png")
    (images / "extra.png").write_bytes(b"")
    names = [f"cam/{i:04d}.png" for i in range(8)]
    write_sequence(tmp_path / "videos" / "cam.frames", names, [k / 8 for k in range(8)])
    data = VideoClips(config(tmp_path, "clip.image_size=[32,64]"))
    assert [item.path for item in data.summary.ignored] == ["videos/cam/extra.png"]


def _no_vui(path: Path) -> Path:
    """A raw HEVC stream whose headers state no frame rate (no VUI timing)."""
    return write(path, ".hevc", **{"x265-params": "log-level=error:vui-timing-info=0"})


def test_a_raw_stream_without_a_stated_rate_needs_data_raw_fps(tmp_path: Path) -> None:
    path = _no_vui(tmp_path / "videos" / "front.hevc")
    meta = probe_video(path)
    assert meta.raw and meta.fps == 0.0 and meta.frames == 16  # not FFmpeg's default 25 fps
    write(tmp_path / "videos" / "other.MP4", ".MP4")
    data = VideoClips(config(tmp_path))
    ((key, reason),) = data.summary.skipped
    assert key == "videos/front.hevc" and "set data.raw_fps=" in reason
    with pytest.raises(ValueError, match=r"front\.hevc: a raw hevc stream .* data\.raw_fps"):
        VideoClips(config(tmp_path, "data.on_error=raise"))
    with pytest.raises(ValueError, match=r"front\.hevc is a raw hevc stream .* --raw-fps"):
        VideoWindows.open(config(tmp_path), path)

    stated = VideoClips(config(tmp_path, "data.raw_fps=8", "clip.image_size=[32,64]"))
    assert stated.summary.videos_used == 2 and len(stated) == 4
    sample = next(stated[i] for i in range(4) if stated[i]["path"] == "videos/front.hevc")
    assert codes(sample["video"]) == expected(sample["time"], 8, 16)
    windows = VideoWindows.open(config(tmp_path, "clip.image_size=[32,64]"), path, raw_fps=8)
    assert len(windows) == 2 and codes(windows.clip(1)) == expected(1.0, 8, 16)


def test_data_raw_fps_overrides_the_rate_a_raw_stream_states(tmp_path: Path) -> None:
    write(tmp_path / "videos" / "front.h264", ".h264")  # states 8 fps
    data = VideoClips(config(tmp_path, "data.raw_fps=4", "clip.image_size=[32,64]"))
    assert len(data) == 4  # 16 frames at 4 fps: 4 s
    assert [codes(data[i]["video"]) for i in (0, 3)] == [expected(t, 4, 16) for t in (0.0, 3.0)]


def test_a_raw_stream_reads_forward_and_restarts_only_for_earlier_frames(
    formats: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = raw_stream.RawReader(str(formats / "videos" / "clip.h264"))
    restarts = []
    real = reader._restart
    monkeypatch.setattr(reader, "_restart", lambda: restarts.append(reader.next) or real())
    reads = [[0, 1], [2, 5], [5, 6], [1, 9], [15, 16, 17]]  # 16, 17: past the end, within slack
    got = [[code(frame) for frame in reader.read(np.array(r))] for r in reads]
    assert got == [[0, 1], [2, 5], [5, 6], [1, 9], [15, 15, 15]]
    assert restarts == [0, 7]  # the first read, and [1, 9] after frame 6
    with pytest.raises(VideoDecodeError, match="ends at frame 15"):
        reader.read(np.array([18]))
    reader.close()


def test_mpegts_reads_frame_exact_where_seeking_lands_late(tmp_path: Path) -> None:
    path = write(tmp_path / "long.ts", ".ts", seconds=12.0, g="12")  # 96 frames, keyframe 1.5 s
    rng = random.Random(0)
    for _ in range(12):
        wanted = sorted(rng.sample(range(96), 3))
        assert [code(frame) for frame in read_frames(path, wanted, "pyav")] == wanted
