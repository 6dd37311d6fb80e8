"""Where the NOW | SOON | (gap) | EVENTUALLY windows of a video fall, in seconds and native frames.

Pure arithmetic, no I/O, so the whole time layout of a sample can be tested without a video.
A sample starting at `start` seconds reads, at the target rate `fps`::

    NOW + SOON   start + k / fps                              k = 0 .. now + soon - 1
    EVENTUALLY   start + (now + soon) / fps + gap + k / fps   k = 0 .. eventually - 1

and frame time t maps to native frame floor(t * native_fps + 1e-6), clamped to the last frame, so
a 25 fps video sampled at 8 fps skips frames and a 5 fps one repeats them. Starts slide by
`stride` from 0 while the whole span (EVENTUALLY's end included) fits in the video.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tritemporal.config import TriTemporalConfig

_EPS = 1e-6  # absorbs float error in t * fps so that exact frame times land on their frame


@dataclass(frozen=True)
class WindowSpec:
    """The time layout of one sample: target fps, frames per window, gap and stride (seconds)."""

    fps: float
    now_frames: int
    soon_frames: int
    eventually_frames: int
    gap_s: float = 0.0
    stride_s: float = 1.0

    @classmethod
    def from_config(cls, config: TriTemporalConfig) -> WindowSpec:
        """The spec a run's `clip.*` and `data.*` settings describe."""
        c, d = config.clip, config.data
        return cls(d.fps, c.now_frames, c.soon_frames, c.eventually_frames, d.gap_s, d.stride_s)

    @property
    def total_frames(self) -> int:
        """Frames per sample: NOW + SOON + EVENTUALLY."""
        return self.now_frames + self.soon_frames + self.eventually_frames

    @property
    def eventually_offset_s(self) -> float:
        """Seconds from a sample's start to the start of its EVENTUALLY window."""
        return (self.now_frames + self.soon_frames) / self.fps + self.gap_s

    @property
    def span_s(self) -> float:
        """Seconds one sample covers, from NOW's start to EVENTUALLY's end."""
        return self.eventually_offset_s + self.eventually_frames / self.fps

    def frame_times(self, start: float | np.ndarray) -> np.ndarray:
        """Times (seconds, float64, (T,)) of every frame of the sample starting at `start`;
        (..., T) for an array of starts, with the same float arithmetic per start."""
        start = np.asarray(start, dtype=np.float64)[..., None]
        k_head = np.arange(self.now_frames + self.soon_frames, dtype=np.float64)
        k_ev = np.arange(self.eventually_frames, dtype=np.float64)
        head = start + k_head / self.fps
        tail = start + self.eventually_offset_s + k_ev / self.fps
        return np.concatenate([head, tail], axis=-1)

    def eventually_range(self, start: float | np.ndarray) -> tuple[float, float]:
        """[start, end) seconds of the EVENTUALLY window (also works elementwise on arrays)."""
        ev_start = start + self.eventually_offset_s
        return ev_start, ev_start + self.eventually_frames / self.fps


def window_starts(duration_s: float, spec: WindowSpec) -> np.ndarray:
    """Start times 0, stride, 2 stride, ... of every sample whose whole span fits in the video."""
    if not duration_s > 0 or duration_s + _EPS < spec.span_s:
        return np.zeros(0, dtype=np.float64)
    count = math.floor((duration_s - spec.span_s) / spec.stride_s + _EPS) + 1
    return np.arange(count, dtype=np.float64) * spec.stride_s


def native_indices(times: np.ndarray, native_fps: float, num_frames: int) -> np.ndarray:
    """Native frame index shown at each time: floor(t * native_fps + 1e-6) in [0, num_frames)."""
    if not native_fps > 0 or num_frames < 1:
        raise ValueError(f"need native_fps > 0 and num_frames >= 1, got {native_fps}, {num_frames}")
    index = np.floor(np.asarray(times, dtype=np.float64) * native_fps + _EPS).astype(np.int64)
    return np.clip(index, 0, num_frames - 1)


def maneuvers_between(
    starts: np.ndarray, ends: np.ndarray, events: list[tuple[int, float, float]], default: int
) -> np.ndarray:
    """Per window [start, end): the label of the event overlapping it most, else `default`.

    Vectorized `Annotation.maneuver_between` (same float arithmetic, first event wins ties):
    `events` holds (label, start, end) triples.
    """
    labels = np.full(len(starts), default, dtype=np.int64)
    if not events or len(starts) == 0:
        return labels
    ev = np.asarray([(s, e) for _, s, e in events], dtype=np.float64)  # (E, 2)
    ids = np.asarray([label for label, _, _ in events], dtype=np.int64)
    hi = np.minimum(ends[:, None], ev[None, :, 1])
    lo = np.maximum(starts[:, None], ev[None, :, 0])
    overlap = hi - lo  # (K, E) seconds, as min(end, e.end) - max(start, e.start)
    best = overlap.argmax(axis=1)  # first maximum, like the strict `>` of maneuver_between
    hit = overlap[np.arange(len(starts)), best] > 0.0
    labels[hit] = ids[best[hit]]
    return labels
