"""Raw elementary streams (.h264, .hevc): no container around the codec's packets, no timestamps.

Why a module of its own: every other format is read by seeking to a timestamp; a raw stream
has none, so it is probed and read by counting. Frame i is the i-th decoded frame, shown at
i / fps (as decord counts frames), where fps is what the stream's headers state (H.264/HEVC VUI
timing) or what the user states (`data.raw_fps`): FFmpeg's raw demuxers report 25 fps for a
stream that states none, which is a default, not the stream's rate. The frame count comes from
the packets, demuxed without decoding. A read decodes forward from the last read, or from the
first frame when it needs an earlier one, so reads in order (predict, evaluation) decode each
frame once while a shuffled read costs up to the whole stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from tritemporal.data.video_meta import (
    END_SLACK,
    BadVideo,
    VideoDecodeError,
    VideoMeta,
    short_error,
)

AVFMT_NOTIMESTAMPS = 0x0080  # FFmpeg's flag of demuxers whose packets carry no timestamps


def is_raw(container: Any) -> bool:
    """A raw elementary stream (.h264, .hevc): no container around it, no timestamps."""
    return bool(int(container.format.flags) & AVFMT_NOTIMESTAMPS)


def probe_raw(container: Any, stream: Any) -> VideoMeta:
    """Frames counted from the packets (demuxed; decoded only up to the first frame) and the fps
    the stream's headers state (0.0 when they state none: FFmpeg's 25 fps then is a default)."""
    rate = stream.codec_context.framerate  # from the headers' VUI timing; None without it
    fps = float(rate) if rate else 0.0
    frames, first = 0, None
    try:
        for packet in container.demux(stream):
            frames += 1 if packet.size else 0
            if first is None:
                first = next(iter(packet.decode()), None)
    except Exception as exc:
        reason = short_error(exc)
        raise BadVideo(f"cannot decode its first frame (corrupt video): {reason}") from exc
    if first is None:
        raise BadVideo("cannot decode any frame (empty or corrupt raw stream)")
    codec, duration = stream.codec_context.name, frames / fps if fps > 0 else 0.0
    return VideoMeta(frames, fps, duration, first.width, first.height, codec, raw=True)


class RawReader:
    """A raw stream read forward by PyAV: frame i is the i-th decoded frame. There are no
    timestamps to seek by, so a read that needs a frame before the last one read reopens it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.container: Any = None
        self.frames: Iterator[Any] = iter(())
        self.next = 0  # index of the frame `frames` yields next
        self.last: Any = None  # the frame at index next - 1

    def read(self, unique: np.ndarray) -> np.ndarray:
        """Frames `unique` (sorted, distinct); past the end the last frame holds (END_SLACK)."""
        out: list[np.ndarray] = []
        if self.last is not None and unique[0] == self.next - 1:
            out.append(self.last.to_ndarray(format="rgb24"))
        elif self.container is None or unique[0] < self.next:
            self._restart()
        for frame in self.frames:
            index, self.next, self.last = self.next, self.next + 1, frame
            if index == unique[len(out)]:
                out.append(frame.to_ndarray(format="rgb24"))
                if len(out) == len(unique):
                    return np.stack(out)
        if self.last is None:
            raise VideoDecodeError("the raw stream decodes to no frame")
        while len(out) < len(unique):  # the stream ended: its last frame holds (END_SLACK)
            if unique[len(out)] > self.next - 1 + END_SLACK:
                raise VideoDecodeError(
                    f"needs frame {unique[len(out)]} but the raw stream ends at frame "
                    f"{self.next - 1}"
                )
            out.append(self.last.to_ndarray(format="rgb24"))
        return np.stack(out)

    def _restart(self) -> None:
        import av  # native video decoder, loaded on first decode

        self.close()
        self.container = av.open(self.path)
        self.frames = self.container.decode(self.container.streams.video[0])
        self.next, self.last = 0, None

    def close(self) -> None:
        """Close the open file, if any."""
        self.frames, self.last = iter(()), None
        if self.container is not None:
            self.container.close()
            self.container = None
