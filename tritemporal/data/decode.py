"""Probe videos and decode only the frames a sample needs, with decord or PyAV.

Why two backends: decord's `get_batch` is the fast path V-JEPA 2 uses, PyAV is the portable one
(and reads metadata from the container header without decoding). Neither is faster on every
format, so `data.backend=auto` (the default) reads each file with the one measured faster for its
container and codec (`AUTO_BACKENDS`); `decord` and `pyav` force one. Both return uint8 RGB frames
(T, H, W, 3) for a list of native frame indices, duplicates allowed (a video slower than the
target fps repeats frames). Open readers live in a small per-process cache, never on a Dataset,
so a Dataset pickles cleanly into DataLoader workers and each worker opens its own handles.
A failure to decode is a `VideoDecodeError` naming the file: never blank or substitute frames.
A `.frames` descriptor (numbered images, `frame_sequence`) is read by Pillow under either backend.
Frame i is the one shown at i / fps: decord counts decoded frames, PyAV maps timestamps
(pts * time_base * fps), so on constant-frame-rate files (the norm) both read the same frames.
A raw elementary stream (.h264, .hevc: no container, no timestamps) is read by PyAV counting
decoded frames, as decord does (`raw_stream.py`): frame i is the i-th, shown at i / fps.
decord ships wheels for x86-64 Linux and Windows only; where it is not installed `auto` reads
everything with PyAV and `data.backend=decord` is an error saying how to install it.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, get_args

import numpy as np
import torch

from tritemporal.config import VideoBackend
from tritemporal.data.frame_sequence import SEQUENCE_SUFFIX, probe_sequence, read_sequence
from tritemporal.data.raw_stream import RawReader, is_raw, probe_raw
from tritemporal.data.video_meta import (  # re-exported: callers import them from here
    END_SLACK,
    BadVideo,
    VideoDecodeError,
    VideoMeta,
)
from tritemporal.data.video_meta import short_error as _short

log = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = get_args(VideoBackend)  # data.backend's choices
AUTO = "auto"
OPEN_READERS = 4  # open handles kept per process (consecutive samples often share a video)
PROBE_CODEC_THREADS = 1  # the index probes many files at once: no threads within one probe
# data.backend=auto: per (container suffix, codec), the backend that read a training sample's
# frames faster in scripts/bench_decode.py, opening the file per sample as a shuffled dataset of
# many videos does (docs/PERFORMANCE.md, "Decoder per format"; docs/bench/decode_formats.json).
# Clips/s on 2 cores, decord vs PyAV: 40 vs 61 (H.264 .mp4 128x64 4 fps), 3.9 vs 15.2 (H.264
# .mov 640x360 30 fps), 1.5 vs 4.1 (1280x720, BDD100K's size), 1.6 vs 3.7 (HEVC .mp4 1164x874
# 20 fps). decord can win only with the reader kept open on a small file (98-150 vs 93-109).
AUTO_BACKENDS: dict[tuple[str, str], str] = {
    (".mp4", "h264"): "pyav",
    (".mov", "h264"): "pyav",
    (".mp4", "hevc"): "pyav",
}
# formats not measured (.mkv, .avi, other codecs) and those decord 0.6 fails to open at all
# (MPEG-TS .ts, raw .h264/.hevc streams: seen on 16-48 frame files)
AUTO_OTHER = "pyav"
# decord 0.6 cannot read H.264 8, 12, 16, 24, 48 or 72 px wide (every even width 8-158 tried):
# auto never gives it a narrower video, and moves a file decord fails on to PyAV
DECORD_MIN_WIDTH = 80
DECORD_INSTALL = (
    "`pip install decord` (wheels for x86-64 Linux and Windows only, where `pip install "
    "tritemporal` already installs it), or use data.backend=auto or data.backend=pyav (PyAV, "
    "installed everywhere)"
)
# PyAV seeks to the keyframe before a target, but demuxers that seek by DTS or without an index
# (MPEG-TS) can land after it: retry that much earlier, then from the first packet
SEEK_REWINDS_S = (0.0, 2.0, 10.0, math.inf)


def probe_video(path: str | Path) -> VideoMeta:
    """Container metadata (PyAV when installed, else decord); raises BadVideo with the reason."""
    if _is_sequence(path):
        return probe_sequence(path)
    try:
        import av  # native video decoder, loaded on first decode
    except ImportError:
        return _probe_decord(Path(path))
    try:
        container = av.open(str(path))
    except Exception as exc:
        raise BadVideo(f"cannot open it (truncated or corrupt video): {_short(exc)}") from exc
    with container:
        if not container.streams.video:
            raise BadVideo("it has no video stream")
        stream = container.streams.video[0]
        stream.codec_context.thread_count = PROBE_CODEC_THREADS
        if is_raw(container):
            return probe_raw(container, stream)
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        if stream.duration:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = container.duration / 1e6 if container.duration else 0.0
        try:
            first = next(container.decode(stream), None)
        except Exception as exc:
            raise BadVideo(f"cannot decode its first frame (corrupt video): {_short(exc)}") from exc
        if first is None:
            raise BadVideo("cannot decode any frame (empty or corrupt video)")
        codec = stream.codec_context.name
        if fps <= 0:  # reported as "missing or zero fps" by the dataset
            return VideoMeta(int(stream.frames), 0.0, duration, first.width, first.height, codec)
        readable = _readable_frames(container, stream, fps, (stream.frames or duration * fps) / fps)
        if stream.frames and readable < stream.frames - max(END_SLACK, stream.frames // 100):
            raise BadVideo(
                f"truncated video: its header says {stream.frames} frames "
                f"({stream.frames / fps:.2f} s) but its packets end at frame {readable} "
                f"({readable / fps:.2f} s)"
            )
        if not stream.frames and readable / fps < duration - max(1.0, 0.05 * duration):
            raise BadVideo(  # no frame count in the header (mkv): compare with the duration
                f"truncated video: its header says {duration:.2f} s but its video packets end at "
                f"{readable / fps:.2f} s (frame {readable})"
            )
        frames = stream.frames or readable
        return VideoMeta(frames, fps, frames / fps, first.width, first.height, codec)


def _readable_frames(container: Any, stream: Any, fps: float, claimed_s: float) -> int:
    """Frame count implied by the last packet, demuxed (not decoded) from ~2 s before the end."""
    tb, start = stream.time_base, stream.start_time or 0
    last_pts = None
    try:
        container.seek(start + int(max(0.0, claimed_s - 2.0) / tb), stream=stream, backward=True)
        for packet in container.demux(stream):
            if packet.pts is not None and (last_pts is None or packet.pts > last_pts):
                last_pts = packet.pts
    except Exception as exc:
        raise BadVideo(f"cannot read its last packets (truncated video): {_short(exc)}") from exc
    return round(float((last_pts - start) * tb) * fps) + 1 if last_pts is not None else 0


def _is_sequence(path: str | Path) -> bool:
    """A frame-sequence descriptor (numbered images read as a video), not a video file."""
    return str(path).lower().endswith(SEQUENCE_SUFFIX)


def _probe_decord(path: Path) -> VideoMeta:
    decord = _decord()
    try:
        reader = decord.VideoReader(str(path), num_threads=1)
        height, width = reader[0].shape[:2]
    except Exception as exc:
        raise BadVideo(f"cannot open or decode it (truncated or corrupt): {_short(exc)}") from exc
    frames, fps = len(reader), float(reader.get_avg_fps() or 0.0)
    return VideoMeta(frames, fps, frames / fps if fps > 0 else 0.0, int(width), int(height))


def auto_backend(path: str | Path, meta: VideoMeta | None = None) -> str:
    """The backend `data.backend=auto` reads `path` with; `meta` (its probe) saves opening it.
    (A `.frames` sequence is read by Pillow whatever the backend.)"""
    path = str(path)
    if _is_sequence(path):
        return AUTO_OTHER
    if meta is None or not meta.codec:
        try:
            meta = _header(path, *_version(path))
        except Exception as exc:
            raise VideoDecodeError(f"video {path}: cannot open it ({_short(exc)})") from exc
    key = (os.path.splitext(path)[1].lower(), meta.codec)
    chosen = AUTO_BACKENDS.get(key, AUTO_OTHER)
    if chosen == "decord" and (
        meta.width < DECORD_MIN_WIDTH or path in _decord_failed or not decord_installed()
    ):
        return "pyav"
    return chosen


def check_backend(backend: str) -> None:
    """Raise ValueError naming the install command when `backend` cannot run here."""
    if backend == "decord":
        _decord()


def decord_installed() -> bool:
    """Whether decord imports here (its wheels cover x86-64 Linux and Windows only)."""
    try:
        _decord()
    except ValueError:
        return False
    return True


def _decord() -> Any:
    """The decord module, or a ValueError saying how to install it or what to use instead."""
    try:
        import decord  # native video decoder, loaded on first decode
    except ImportError as exc:
        raise ValueError(
            "data.backend=decord needs the decord package, which is not installed: "
            + DECORD_INSTALL
        ) from exc
    return decord


def read_frames(
    path: str | Path, indices: Sequence[int], backend: str = AUTO, meta: VideoMeta | None = None
) -> torch.Tensor:
    """Native frames `indices` (any order, repeats allowed) as uint8 (T, H, W, 3) RGB; with
    `backend=auto`, `meta` (the file's probe) picks the backend without opening the file."""
    if backend not in BACKENDS:
        raise ValueError(f"data.backend={backend!r}: use one of {', '.join(BACKENDS)}")
    if len(indices) == 0:
        raise ValueError("read_frames needs at least one frame index")
    unique, inverse = np.unique(np.asarray(indices, dtype=np.int64), return_inverse=True)
    if unique[0] < 0:
        raise ValueError(f"negative frame index {unique[0]} for {path}")
    path = str(path)
    if _is_sequence(path):  # numbered images: the same Pillow reader for both backends
        try:
            frames = read_sequence(path, unique)
        except VideoDecodeError as exc:
            raise VideoDecodeError(f"video {path}: {exc}") from exc
        return torch.from_numpy(np.ascontiguousarray(frames[inverse.reshape(-1)]))
    check_backend(backend)
    if backend != AUTO:
        return _read(path, unique, inverse, backend)
    chosen = auto_backend(path, meta)
    if chosen == "decord":
        try:
            return _read(path, unique, inverse, chosen)
        except VideoDecodeError as exc:
            _decord_failed.add(path)
            log.warning("data.backend=auto reads %s with PyAV from now on: %s", path, exc)
    return _read(path, unique, inverse, "pyav")


def _read(path: str, unique: np.ndarray, inverse: np.ndarray, backend: str) -> torch.Tensor:
    opener, reader = (_open_decord, _read_decord) if backend == "decord" else (_open_av, _read_av)
    try:
        frames = reader(_handles.get(backend, path, opener), unique)
    except VideoDecodeError as exc:
        _handles.drop(backend, path)
        raise VideoDecodeError(f"video {path}: {exc}") from exc
    except Exception as exc:
        _handles.drop(backend, path)
        raise VideoDecodeError(
            f"video {path}: cannot decode frames {unique[0]}..{unique[-1]} with {backend} "
            f"({_short(exc)}); the file is corrupt or changed after it was indexed, or {backend} "
            f"cannot decode this stream (decord fails on some frame widths: try "
            f"data.backend={'pyav' if backend == 'decord' else 'decord'})"
        ) from exc
    return torch.from_numpy(np.ascontiguousarray(frames[inverse.reshape(-1)]))


class _HandleCache:
    """Per-process LRU of open readers, reopened when the file's size or mtime changes."""

    def __init__(self, size: int) -> None:
        self.size, self.pid = size, os.getpid()
        self.items: OrderedDict[tuple[str, str], tuple[tuple[int, int], Any]] = OrderedDict()

    def get(self, backend: str, path: str, opener: Callable[[str], Any]) -> Any:
        if self.pid != os.getpid():  # a forked worker: never use (or free) the parent's decoders
            _inherited.append(self.items)  # freeing decord readers in a fork child segfaults
            self.items, self.pid = OrderedDict(), os.getpid()
        stat = os.stat(path)
        key, version = (backend, path), (stat.st_size, stat.st_mtime_ns)
        item = self.items.get(key)
        if item is not None and item[0] == version:
            self.items.move_to_end(key)
            return item[1]
        self.drop(backend, path)
        handle = opener(path)
        self.items[key] = (version, handle)
        while len(self.items) > self.size:
            _close(self.items.popitem(last=False)[1][1])
        return handle

    def drop(self, backend: str, path: str) -> None:
        item = self.items.pop((backend, path), None)
        if item is not None:
            _close(item[1])


_handles = _HandleCache(OPEN_READERS)
_inherited: list[Any] = []  # handles a forked process got from its parent, kept alive unused
_decord_failed: set[str] = set()  # files decord could not read under data.backend=auto


def _version(path: str) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=4096)
def _header(path: str, size: int, mtime_ns: int) -> VideoMeta:
    """Codec and size from the container header (no decoding) of a file `auto` has no probe of."""
    import av  # native video decoder, loaded on first decode

    with av.open(path) as container:
        codec = container.streams.video[0].codec_context
        return VideoMeta(0, 0.0, 0.0, codec.width, codec.height, codec.name)


def _in_worker() -> bool:
    return torch.utils.data.get_worker_info() is not None


def _close(handle: Any) -> None:
    if hasattr(handle, "close"):
        handle.close()


def _open_decord(path: str) -> Any:
    return _decord().VideoReader(path, num_threads=1 if _in_worker() else 0)


def _read_decord(reader: Any, unique: np.ndarray) -> np.ndarray:
    count = len(reader)
    if unique[-1] >= count + END_SLACK:
        raise VideoDecodeError(f"needs frame {unique[-1]} but decord finds only {count} frames")
    batch = reader.get_batch(np.minimum(unique, count - 1).tolist()).asnumpy()
    return batch


def _open_av(path: str) -> Any:
    import av  # native video decoder, loaded on first decode

    container = av.open(path)  # default slice threading: frame threading restarts at every seek
    if is_raw(container):
        container.close()
        return RawReader(path)
    return container


def _read_av(container: Any, unique: np.ndarray) -> np.ndarray:
    """Seek to the keyframe before the first frame, decode forward to the last one."""
    if isinstance(container, RawReader):
        return container.read(unique)
    stream = container.streams.video[0]
    fps = float(stream.average_rate or stream.guessed_rate or 0)
    if fps <= 0:
        raise VideoDecodeError("the stream has no frame rate")
    first, last = int(unique[0]), int(unique[-1])
    want_s = (first - 0.5) / fps
    for rewind_s in SEEK_REWINDS_S:
        frames = _decode_range(container, stream, fps, unique, want_s - rewind_s)
        if frames is not None:
            return frames
        if want_s - rewind_s <= 0:
            break
        log.debug("PyAV seek overshot frame %d of %s; seeking earlier", first, stream.container)
    raise VideoDecodeError(f"no frame at or before frame {first} (last needed: {last})")


def _decode_range(
    container: Any, stream: Any, fps: float, unique: np.ndarray, seek_s: float
) -> np.ndarray | None:
    """Frames shown at `unique` (the last frame whose pts-derived index is <= each index), read
    from the keyframe before `seek_s` (<= 0: the first packet); None when it lands after them."""
    tb, start = stream.time_base, stream.start_time or 0
    # a target of 0 (or a negative start) reaches the first packet where seeking goes by DTS
    # (MPEG-TS), which precedes the first frame's PTS by the decoder's reordering delay
    target = start + int(seek_s / tb) if seek_s > 0 else min(start, 0)
    container.seek(target, stream=stream, backward=True, any_frame=False)
    out: list[np.ndarray] = []
    shown: list[Any] = []  # [index, frame, rgb or None] of the frame decoded last

    def rgb() -> np.ndarray:
        if shown[2] is None:
            shown[2] = shown[1].to_ndarray(format="rgb24")
        return shown[2]

    for frame in container.decode(stream):
        if frame.pts is None:
            continue
        index = round(float((frame.pts - start) * tb) * fps)
        if not shown and index > unique[0]:
            return None
        while shown and len(out) < len(unique) and unique[len(out)] < index:
            out.append(rgb())
        shown[:] = [index, frame, None]
        if index >= unique[-1]:
            break
    if not shown:
        return None
    while len(out) < len(unique):  # the last frame holds (at the end of the stream: END_SLACK)
        if unique[len(out)] > shown[0] + END_SLACK:
            raise VideoDecodeError(
                f"needs frame {unique[len(out)]} but the stream ends at frame {shown[0]}"
            )
        out.append(rgb())
    return np.stack(out)
