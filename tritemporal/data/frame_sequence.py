"""Numbered images (nuScenes sweeps, KITTI raw, any folder of JPEG/PNG) read as one video.

Why: datasets ship camera streams as images, often at a variable rate with dropped frames.
Re-encoding them costs hours and quality, so a small JSON descriptor `<name>.frames` lists the
images with their times, and both decoder paths (`data.backend=decord` and `pyav`) read it with
Pillow, decoding only the images a sample needs. Format (version 1)::

    {"version": 1,
     "fps": 12.0,                          # nominal frame rate of the native index (> 0)
     "frames": ["a/0001.jpg", "..."],      # images, relative to the descriptor's folder or absolute
     "time": [0.0, 0.083, "..."]}          # seconds, strictly increasing, one per image

Native frame i is the one shown at `time[0] + i / fps`: the last image whose time is at or before
it (within `TIME_EPS`), as a video player holds a frame until the next one. A variable rate
(nuScenes: 100/100/50 ms steps) and missing images (the previous one holds) need nothing else.
The frame count is the number of indices up to the last image, `floor(span * fps) + 1`, and the
duration is `frames / fps` as for a video file. A timestamped sequence gets the nominal rate
`(n - 1) / span` (`nominal_fps`), so its last image is index n - 1.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from PIL import Image

from tritemporal.data.common import finite_number
from tritemporal.data.video_meta import END_SLACK, BadVideo, VideoDecodeError, VideoMeta
from tritemporal.files import write_text

SEQUENCE_SUFFIX = ".frames"
SEQUENCE_VERSION = 1
TIME_EPS = 1e-3  # s: an image this much after an index's time still shows at that index
CACHED_SEQUENCES = 16  # parsed descriptors kept per process (samples often share a video)


class SequenceError(BadVideo):
    """A descriptor that cannot be read or breaks the format; the message names file and field."""


@dataclass(frozen=True)
class FrameSequence:
    """A parsed descriptor: absolute image paths, their times (s) and the nominal fps."""

    frames: tuple[Path, ...]
    time: np.ndarray  # (n,) float64, strictly increasing
    fps: float

    @property
    def num_frames(self) -> int:
        """Native indices up to the last image: floor(span * fps) + 1."""
        return math.floor((self.time[-1] - self.time[0]) * self.fps + TIME_EPS * self.fps) + 1

    def positions(self, indices: np.ndarray) -> np.ndarray:
        """Image shown at each native index: the last whose time <= time[0] + i / fps (+ eps)."""
        at = self.time[0] + np.asarray(indices, dtype=np.float64) / self.fps
        return np.maximum(np.searchsorted(self.time, at + TIME_EPS, side="right") - 1, 0)

    def read(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Native frames `indices` as uint8 (T, H, W, 3) RGB, each image decoded once."""
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) == 0:
            raise ValueError("reading a frame sequence needs at least one frame index")
        count = self.num_frames
        if indices.min() < 0 or indices.max() >= count + END_SLACK:
            raise VideoDecodeError(
                f"needs frames {indices.min()}..{indices.max()} but the sequence has {count} "
                f"({len(self.frames)} images at {self.fps:g} fps)"
            )
        first = self.frames[0]
        try:
            size = _image_size(first)
        except OSError as exc:
            raise VideoDecodeError(f"image {first}: cannot read it ({exc})") from exc
        unique, inverse = np.unique(self.positions(indices), return_inverse=True)
        images = np.stack([_decode(self.frames[i], size, first) for i in unique])
        return images[inverse.reshape(-1)]


def nominal_fps(times: Sequence[float] | np.ndarray) -> float:
    """(n - 1) / (last - first): the rate that puts the last of n timestamped images at n - 1."""
    times = np.asarray(times, dtype=np.float64)
    if len(times) < 2 or not times[-1] > times[0]:
        raise ValueError(f"a nominal fps needs 2 or more increasing times, got {len(times)}")
    return (len(times) - 1) / float(times[-1] - times[0])


def write_sequence(
    path: str | Path,
    frames: Sequence[str | Path],
    times: Sequence[float] | np.ndarray,
    fps: float | None = None,
) -> Path:
    """Write a validated descriptor atomically (fps None: `nominal_fps(times)`)."""
    path = Path(path)
    if fps is None:
        fps = nominal_fps(times)
    data = {
        "version": SEQUENCE_VERSION,
        "fps": float(fps),
        "frames": [str(frame) for frame in frames],
        "time": [float(t) for t in times],
    }
    _parse(data, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(data, separators=(",", ":")))
    return path


def load_sequence(path: str | Path) -> FrameSequence:
    """Read and validate a descriptor; SequenceError naming the file and the field."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SequenceError(f"frame sequence {path}: cannot read it ({exc})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SequenceError(f"frame sequence {path}: not JSON ({exc})") from exc
    return _parse(data, path)


def _parse(data: Any, path: Path) -> FrameSequence:
    """Validate descriptor `data` read from (or written to) `path`."""

    def fail(message: str) -> NoReturn:
        raise SequenceError(f"frame sequence {path}: {message}")

    keys = ("version", "fps", "frames", "time")
    if not isinstance(data, dict):
        fail(f"must be a JSON object with {', '.join(keys)}")
    missing = [key for key in keys if key not in data]
    if missing:
        fail(f"missing key(s) {', '.join(missing)} (a descriptor has {', '.join(keys)})")
    if data["version"] != SEQUENCE_VERSION:
        fail(f"version={data['version']!r}; this reader knows version {SEQUENCE_VERSION}")
    fps = data["fps"]
    if not finite_number(fps) or not fps > 0:
        fail(f"fps={fps!r} must be a positive number (frames per second)")
    frames, time = data["frames"], data["time"]
    if not isinstance(frames, list) or not all(isinstance(f, str) and f for f in frames):
        fail("frames must be a list of image paths (non-empty strings)")
    if not isinstance(time, list) or not all(finite_number(t) for t in time):
        fail("time must be a list of numbers (seconds)")
    if not frames:
        fail("frames is empty (a sequence needs at least one image)")
    if len(frames) != len(time):
        fail(f"frames has {len(frames)} entries but time has {len(time)} (one time per image)")
    times = np.asarray(time, dtype=np.float64)
    bad = np.flatnonzero(np.diff(times) <= 0)
    if len(bad):
        i = int(bad[0]) + 1
        fail(f"time must be strictly increasing, but time[{i}]={time[i]} after {time[i - 1]}")
    folder = path.parent
    paths = tuple(Path(f) if Path(f).is_absolute() else folder / f for f in frames)
    return FrameSequence(paths, times, float(fps))


def probe_sequence(path: str | Path) -> VideoMeta:
    """Frame count, nominal fps, duration and the first image's size (header only)."""
    sequence = load_sequence(path)
    try:
        width, height = _image_size(sequence.frames[0])
    except OSError as exc:
        raise BadVideo(f"cannot read its first image {sequence.frames[0]} ({exc})") from exc
    frames = sequence.num_frames
    return VideoMeta(frames, sequence.fps, frames / sequence.fps, width, height)


def read_sequence(path: str | Path, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Native frames `indices` as uint8 (T, H, W, 3) RGB; VideoDecodeError naming the image."""
    try:
        stat = os.stat(path)
        sequence = _load_cached(str(path), stat.st_size, stat.st_mtime_ns)
    except (OSError, BadVideo) as exc:
        raise VideoDecodeError(f"cannot read the frame sequence: {exc}") from exc
    return sequence.read(indices)


@functools.lru_cache(maxsize=CACHED_SEQUENCES)
def _load_cached(path: str, size: int, mtime_ns: int) -> FrameSequence:
    """`load_sequence`, parsed once per file version (size and mtime are the cache key)."""
    return load_sequence(path)


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header, without decoding the pixels."""
    with Image.open(path) as image:
        return image.size


def _decode(path: Path, size: tuple[int, int], first: Path) -> np.ndarray:
    """One image as uint8 (H, W, 3) RGB of the sequence's size."""
    try:
        with Image.open(path) as image:
            if image.size != size:
                raise VideoDecodeError(
                    f"image {path} is {image.size[0]}x{image.size[1]} but the sequence's first "
                    f"image {first} is {size[0]}x{size[1]}"
                )
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError as exc:
        raise VideoDecodeError(f"image {path} is missing (moved or deleted?)") from exc
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's errors for corrupt images
        raise VideoDecodeError(f"image {path}: cannot decode it ({exc})") from exc
