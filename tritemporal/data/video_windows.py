"""A whole video cut into the training windows, decoded one batch at a time for inference.

A video is cut into NOW | SOON | (gap) | EVENTUALLY windows exactly as training cuts it
(`data.fps`, `clip.*_frames`, `data.gap_s`, a stride of `data.stride_s` unless given); each
window is decoded with `data.backend` and centre-cropped to `clip.image_size` (the evaluation
view). `TriTemporalModel.encode(path)` and `tritemporal predict` both read videos through it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tritemporal.config import TriTemporalConfig
from tritemporal.data.decode import (
    BadVideo,
    VideoDecodeError,
    VideoMeta,
    check_backend,
    probe_video,
    read_frames,
)
from tritemporal.data.transforms import ClipTransform
from tritemporal.data.videos import label_vocabulary
from tritemporal.data.windows import WindowSpec, native_indices, window_starts


@dataclass(frozen=True)
class VideoWindows:
    """The windows of one video, cut as training cuts them, and their evaluation views."""

    path: Path
    meta: VideoMeta
    spec: WindowSpec
    starts: np.ndarray  # (W,) window start times in seconds
    backend: str
    transform: ClipTransform

    @classmethod
    def open(
        cls,
        config: TriTemporalConfig,
        video: str | Path,
        stride_s: float | None = None,
        raw_fps: float | None = None,
    ) -> VideoWindows:
        """Probe `video` and lay out its windows; clear errors for missing or short files.
        `raw_fps` (default `data.raw_fps`) is the frame rate of a raw .h264/.hevc stream."""
        path = Path(video)
        if not path.is_file():
            raise FileNotFoundError(f"video {path} does not exist (or is not a file)")
        spec = WindowSpec.from_config(config)
        if stride_s is not None:
            if not stride_s > 0:
                raise ValueError(f"stride_s={stride_s} must be positive")
            spec = dataclasses.replace(spec, stride_s=float(stride_s))
        check_backend(config.data.backend)
        try:
            meta = probe_video(path)
        except BadVideo as exc:
            raise ValueError(f"video {path} is unreadable: {exc}") from exc
        raw_fps = raw_fps if raw_fps is not None else config.data.raw_fps
        if meta.raw and raw_fps is not None:
            if not raw_fps > 0:
                raise ValueError(f"raw_fps={raw_fps} must be positive (frames per second)")
            meta = dataclasses.replace(meta, fps=float(raw_fps), duration=meta.frames / raw_fps)
        if meta.raw and not meta.fps > 0:
            raise ValueError(
                f"video {path} is a raw {meta.codec} stream whose headers state no frame rate: "
                "give it (`tritemporal predict --raw-fps FPS`, data.raw_fps in a config)"
            )
        if not meta.fps > 0:
            raise ValueError(f"video {path} has no frame rate (fps={meta.fps}); re-encode it")
        starts = window_starts(meta.duration, spec)
        if len(starts) == 0:
            raise ValueError(
                f"video {path} is too short: {meta.duration:.2f} s ({meta.frames} frames at "
                f"{meta.fps:g} fps), but one window spans {spec.span_s:.2f} s (NOW "
                f"{spec.now_frames} + SOON {spec.soon_frames} frames, gap {spec.gap_s:g} s, "
                f"EVENTUALLY {spec.eventually_frames} frames at data.fps={spec.fps:g})"
            )
        transform = ClipTransform.from_config(config, label_vocabulary(config.data.extra_maneuvers))
        return cls(path, meta, spec, starts, config.data.backend, transform)

    def __len__(self) -> int:
        """Number of windows."""
        return len(self.starts)

    def clip(self, index: int) -> torch.Tensor:
        """Window `index` as the uint8 (C, T, H, W) evaluation view (centre crop)."""
        start = float(self.starts[index])
        frames_at = native_indices(self.spec.frame_times(start), self.meta.fps, self.meta.frames)
        try:
            frames = read_frames(self.path, frames_at, self.backend)
        except VideoDecodeError as exc:
            raise ValueError(f"{exc} (window at {start:.2f} s)") from exc
        return self.transform(frames, None)[0]

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """(start times, uint8 clips (B, C, T, H, W)) per batch, decoded only when reached."""
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        for first in range(0, len(self), batch_size):
            indices = range(first, min(first + batch_size, len(self)))
            yield self.starts[first : indices.stop], torch.stack([self.clip(i) for i in indices])
