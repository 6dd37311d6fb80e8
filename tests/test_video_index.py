"""The video index at scale (process probing, removals, appended saves) and data.backend=auto."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import tiny_config
from tests.test_videos import code, write_video
from tritemporal.data import decode, video_index
from tritemporal.data.decode import AUTO_BACKENDS, VideoMeta, auto_backend, read_frames
from tritemporal.data.video_index import INDEX_FILE, VideoIndex


def _videos(root: Path, count: int) -> dict[str, Path]:
    files = {}
    for k in range(count):
        path = write_video(root / "videos" / f"v{k}.mp4", 8 + 4 * k, 4, size=(32, 32 + 8 * k))
        files[path.relative_to(root).as_posix()] = path
    return files


def _saved(root: Path) -> dict[str, dict]:
    """The index file's live entries, replaying its lines as the loader does."""
    lines = (root / INDEX_FILE).read_text().splitlines()
    assert json.loads(lines[0]) == {"version": video_index.INDEX_VERSION}
    entries: dict[str, dict] = {}
    for key, entry in map(json.loads, lines[1:]):
        if entry is None:
            entries.pop(key, None)
        else:
            entries[key] = entry
    return entries


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_processes_probe_as_threads_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, start: str
) -> None:
    monkeypatch.setattr(video_index, "PROCESS_START", start)
    files = _videos(tmp_path, 3)
    bad = tmp_path / "videos" / "bad.mp4"
    bad.write_bytes(os.urandom(2000))
    files["videos/bad.mp4"] = bad
    by_threads = VideoIndex(tmp_path, process_min=10**9)
    threads = by_threads.lookup(files)
    (tmp_path / INDEX_FILE).unlink()
    by_processes = VideoIndex(tmp_path, workers=2, process_min=0)
    processes = by_processes.lookup(files)
    assert (by_threads.mode, by_processes.mode) == ("threads", "processes")
    assert processes == threads and by_processes.probed == 4
    assert isinstance(threads["videos/v2.mp4"], VideoMeta) and threads["videos/v2.mp4"].width == 48
    assert isinstance(threads["videos/bad.mp4"], str)
    assert VideoIndex(tmp_path).lookup(files) == threads  # reloaded from the file, no probe


def test_probing_falls_back_to_threads_when_processes_cannot_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    files = _videos(tmp_path, 2)

    def cannot(*args: object, **kwargs: object) -> None:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(video_index, "ProcessPoolExecutor", cannot)
    index = VideoIndex(tmp_path, workers=2, process_min=0)
    with caplog.at_level(logging.WARNING):
        results = index.lookup(files)
    assert index.mode == "threads" and all(isinstance(r, VideoMeta) for r in results.values())
    assert "probing the remaining 2 in threads" in caplog.text


def test_removed_files_leave_the_index_and_a_subset_keeps_the_rest(tmp_path: Path) -> None:
    files = _videos(tmp_path, 3)
    VideoIndex(tmp_path).lookup(files)
    files.pop("videos/v0.mp4").unlink()
    index = VideoIndex(tmp_path)
    index.lookup(files)
    assert index.probed == 0 and set(_saved(tmp_path)) == {"videos/v1.mp4", "videos/v2.mp4"}
    VideoIndex(tmp_path).lookup({"videos/v1.mp4": files["videos/v1.mp4"]})  # v2 exists: kept
    assert set(_saved(tmp_path)) == {"videos/v1.mp4", "videos/v2.mp4"}


def test_saves_append_and_compact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(video_index, "SAVE_EVERY", 2)
    files = _videos(tmp_path, 2)
    index = VideoIndex(tmp_path)
    index.lookup(files)
    for step in range(8):  # a changed file per lookup: appended, compacted from time to time
        path = files["videos/v0.mp4"]
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        index.lookup(files)
        lines = (tmp_path / INDEX_FILE).read_text().count("\n") - 1
        assert index.probed == 1 and lines <= 2 * max(len(files), 2), step
    assert _saved(tmp_path) == index.entries
    with (tmp_path / INDEX_FILE).open("a") as handle:
        handle.write('["videos/v1.mp4", {"size": 1')  # a torn last line (a crash mid-append)
    torn = VideoIndex(tmp_path)
    assert torn.entries == index.entries
    os.utime(files["videos/v0.mp4"])
    torn.lookup(files)  # a change rewrites the file whole, without the torn line
    assert _saved(tmp_path) == torn.entries and torn.probed == 1


def test_an_old_index_is_reprobed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = _videos(tmp_path, 1)
    old = {"size": 1, "mtime_ns": 1, "meta": {"frames": 1, "fps": 1, "duration": 1}}
    (tmp_path / INDEX_FILE).write_text(json.dumps({"version": 1, "videos": {"x": old}}))
    with caplog.at_level(logging.WARNING):
        index = VideoIndex(tmp_path)
    assert "another index version" in caplog.text
    result = index.lookup(files)["videos/v0.mp4"]
    assert index.probed == 1 and isinstance(result, VideoMeta) and result.codec == "h264"
    assert set(_saved(tmp_path)) == {"videos/v0.mp4"}


def test_a_version_2_index_loads_less_its_raw_streams(tmp_path: Path) -> None:
    files = _videos(tmp_path, 1)
    raw = tmp_path / "videos" / "front.h264"
    with av.open(str(raw), "w", format="h264") as out:
        stream = out.add_stream("libx264", rate=4)
        stream.height, stream.width, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(8):
            out.mux(stream.encode(av.VideoFrame(32, 32, "yuv420p")))
        out.mux(stream.encode())
    files["videos/front.h264"] = raw
    current = VideoIndex(tmp_path)
    current.lookup(files)
    v2 = {**current.entries}  # version 2 probed a raw stream as if it had timestamps
    v2["videos/front.h264"] = {**v2["videos/front.h264"], "error": "cannot read its last packets"}
    del v2["videos/front.h264"]["meta"]
    rows = [json.dumps([key, entry]) for key, entry in v2.items()]
    (tmp_path / INDEX_FILE).write_text("\n".join([json.dumps({"version": 2}), *rows]) + "\n")
    index = VideoIndex(tmp_path)
    result = index.lookup(files)
    assert index.probed == 1 and result["videos/front.h264"].raw  # the mp4 entry was kept
    assert result["videos/front.h264"].frames == 8 and result["videos/front.h264"].fps == 4
    assert _saved(tmp_path) == current.entries  # rewritten whole, as version 3


def _hevc(path: Path, frames: int = 12, size: tuple[int, int] = (64, 96)) -> Path:
    """Numbered frames as HEVC in MP4 without B-frames (as comma2k19's remuxed files)."""
    from tests.test_videos import draw

    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx265", rate=4)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"x265-params": "keyint=4:bframes=0:log-level=none", "qp": "10"}
        for i in range(frames):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(draw(i, *size), format="rgb24")))
        out.mux(stream.encode())
    return path


def _file(tmp_path: Path, suffix: str, codec: str) -> Path:
    if codec == "hevc":
        return _hevc(tmp_path / f"clip{suffix}")
    return write_video(tmp_path / f"clip{suffix}", 12, 4, size=(64, 96))


@pytest.mark.decord
@pytest.mark.parametrize(("suffix", "codec"), sorted(AUTO_BACKENDS))
def test_auto_picks_the_measured_backend_and_reads_the_same_frames(
    tmp_path: Path, suffix: str, codec: str
) -> None:
    path = _file(tmp_path, suffix, codec)
    meta = decode.probe_video(path)
    assert meta.codec == codec
    chosen = AUTO_BACKENDS[suffix, codec]
    assert auto_backend(path, meta) == auto_backend(path) == chosen
    indices = [9, 0, 4, 4, 11]
    auto = read_frames(path, indices, "auto", meta)
    assert [code(f) for f in auto] == indices
    for backend in ("decord", "pyav"):
        forced = read_frames(path, indices, backend)
        if backend == chosen:
            assert bool((forced == auto).all())
        assert (forced.float() - auto.float()).abs().mean() < 2


@pytest.mark.decord
def test_auto_keeps_decord_off_widths_it_cannot_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(AUTO_BACKENDS, (".mp4", "h264"), "decord")
    monkeypatch.setattr(decode, "_decord_failed", set())
    narrow = write_video(tmp_path / "narrow.mp4", 12, 4, size=(32, 48))  # decord fails at 48
    assert auto_backend(narrow) == "pyav"
    assert [code(f) for f in read_frames(narrow, [3, 7], "auto")] == [3, 7]

    wide = write_video(tmp_path / "wide.mp4", 12, 4, size=(32, 96))
    assert auto_backend(wide) == "decord"

    def fail(reader: object, unique: np.ndarray) -> np.ndarray:
        raise RuntimeError("DECORDError: Check failed: from_size")

    monkeypatch.setattr(decode, "_read_decord", fail)
    with caplog.at_level(logging.WARNING):
        frames = read_frames(wide, [3, 7], "auto")
    assert [code(f) for f in frames] == [3, 7] and "with PyAV from now on" in caplog.text
    assert auto_backend(wide) == "pyav"


def test_config_backend_is_auto_by_default_and_accepts_each() -> None:
    assert tiny_config().data.backend == "auto"
    for backend in ("auto", "decord", "pyav"):
        assert tiny_config(f"data.backend={backend}").data.backend == backend
    with pytest.raises(ValueError, match=r"data\.backend"):
        tiny_config("data.backend=ffmpeg")
