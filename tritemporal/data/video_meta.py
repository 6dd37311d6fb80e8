"""What every video reader shares: its metadata record and its two errors.

Why a module of its own: `decode` (video files) and `frame_sequence` (numbered images) both
probe and read "videos", and `decode` dispatches to `frame_sequence`; keeping these below both
lets each import them without a cycle. `decode` re-exports them for existing callers.
"""

from __future__ import annotations

from dataclasses import dataclass

END_SLACK = 2  # frames a stream may end early before a read beyond it is an error


def short_error(exc: BaseException) -> str:
    """An exception as "Type: message", the message cut at 200 characters."""
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text[:200]}"


class VideoDecodeError(RuntimeError):
    """A video that cannot be opened or decoded; the message names the file."""


class BadVideo(ValueError):
    """A probe found a video unusable; the message is the reason (the caller adds the file)."""


@dataclass(frozen=True)
class VideoMeta:
    """What the index keeps per video: frame count, native fps, seconds, pixel size and codec."""

    frames: int
    fps: float
    duration: float
    width: int
    height: int
    codec: str = ""  # FFmpeg's name of the video codec ("h264", "hevc"); "" when not known
    # an elementary stream without timestamps (.h264, .hevc): frame i is the i-th decoded frame,
    # `fps` the rate its headers state (0.0 when they state none: data.raw_fps must)
    raw: bool = False
