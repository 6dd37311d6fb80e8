"""comma2k19 segments (`tritemporal import comma2k19 SRC --out DIR`).

The dataset (github.com/commaai/comma2k19) unpacks to `Chunk_<n>/<dongle>|<route time>/<segment>/`
(the `|` is `_` where an unzip tool replaced it); each one-minute segment holds:

- `video.hevc`: a raw HEVC stream, 1164x874 at ~20 fps, with no timestamps of its own;
- `global_pose/frame_times`: the boot-clock time (s) of every video frame;
- `processed_log/CAN/speed/{t,value}` (m/s, value shaped (N, 1)), `CAN/steering_angle/{t,value}`
  (steering-wheel degrees, positive to the left), `IMU/gyro/{t,value}` (rad/s in the device's
  forward / right / down axes), all at 80-100 Hz; every `t` and `value` is a `.npy` file without
  the extension, every `t` on the same boot clock.

What is written: `videos/<route>/<segment>.mp4`, the HEVC packets remuxed (not re-encoded) with
each frame's time from `frame_times`, so both decoders read it at its true timing; ego series on
every second video frame (10 Hz), on the video's clock (0 = first frame), each the mean over
0.1 s around that instant: `speed`, `acceleration` (d speed / dt), `steering` (radians of the
steering wheel, positive to the right like the schema's) and `yaw_rate` (the gyro's down axis:
positive turning right); maneuvers come from them (`data.auto_labels`).

Quirks handled: a segment without `IMU/` gets no yaw rate (then only brake and stop are
labelled, noted), without `steering_angle` no steering; sensor timestamps out of order are sorted
(noted); `frame_times` that are not strictly increasing, a missing video, `frame_times` or CAN
speed (no ego signal), or unreadable arrays are a counted skip naming the file; a video whose
frame count differs from `frame_times` keeps the frames both have (noted), and an HEVC stream
with B-frames gets its display order from one decoding pass.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from tritemporal.data.importers.base import (
    Converted,
    Importer,
    ImportItemError,
    ImportOptions,
    Item,
    register_importer,
    strictly_increasing,
    write_item_annotation,
)
from tritemporal.files import atomic_path

FRAME_TIMES = Path("global_pose/frame_times")
SPEED = Path("processed_log/CAN/speed")
STEERING = Path("processed_log/CAN/steering_angle")
GYRO = Path("processed_log/IMU/gyro")
EGO_EVERY = 2  # ego samples on every 2nd frame: 10 Hz at 20 fps
WINDOW_S = 0.1  # each ego value is the mean of its series over this window
TICKS = 90_000  # MP4 time base (1/90 kHz, the MPEG convention)


def _segments(src: Path) -> list[Path]:
    """Folders holding a segment's video or logs."""
    if (src / "video.hevc").exists() or (src / "processed_log").is_dir():
        return [src]
    found = {p.parent for p in src.rglob("video.hevc")}
    found |= {p.parent for p in src.rglob("processed_log") if p.is_dir()}
    return sorted(found)


@register_importer
class Comma2k19(Importer):
    """comma2k19: one item per segment folder (module docstring)."""

    name = "comma2k19"

    def discover(self, src: Path, options: ImportOptions) -> tuple[list[Item], list[tuple]]:
        """Segment folders under `src` with a video, its frame times and CAN speed."""
        items, skipped = [], []
        for segment in _segments(src):
            name = f"{segment.parent.name.replace('|', '_')}/{segment.name}"
            needed = (segment / "video.hevc", segment / FRAME_TIMES, segment / SPEED / "t")
            missing = [str(p.relative_to(segment)) for p in needed if not p.is_file()]
            if missing:
                skipped.append((name, f"segment {segment} has no {', '.join(missing)}"))
            else:
                items.append(Item(name, (*needed, segment / SPEED / "value"), {"dir": segment}))
        return items, skipped

    def convert(self, item: Item, out: Path, options: ImportOptions) -> Converted:
        """Remux the video with its frame times; ego series and auto labels from the logs."""
        segment = item.extra["dir"]
        frame_times = _array(segment / FRAME_TIMES)
        if frame_times.ndim != 1 or len(frame_times) < 2 or np.any(np.diff(frame_times) <= 0):
            raise ImportItemError(
                f"{segment / FRAME_TIMES}: frame times must be a strictly increasing 1-D series"
            )
        notes: list[str] = []
        grid = frame_times[::EGO_EVERY]
        t, speed = _series(segment / SPEED, notes)
        grid = grid[(grid >= t[0] - WINDOW_S) & (grid <= t[-1] + WINDOW_S)]
        if len(grid) < 2:
            raise ImportItemError(f"{segment / SPEED}: CAN speed does not cover the video")
        series = {"speed": _window_mean(t, speed, grid)}
        series["acceleration"] = np.gradient(series["speed"], grid)
        if (segment / STEERING / "t").is_file():
            t, angle = _series(segment / STEERING, notes)
            series["steering"] = -np.radians(_window_mean(t, angle, grid))
        if (segment / GYRO / "t").is_file():
            t, gyro = _series(segment / GYRO, notes, column=2)
            series["yaw_rate"] = _window_mean(t, gyro, grid)
        else:
            notes.append("no IMU: turns and lane changes not labelled")
        video_out, note_out = self.outputs(item, out)
        frames = remux_hevc(segment / "video.hevc", video_out, frame_times, notes)
        grid = grid[grid <= frame_times[frames - 1]]
        series = {k: v[: len(grid)] for k, v in series.items()}
        source = {"dataset": "comma2k19", "segment": f"{segment.parent.name}/{segment.name}"}
        events = write_item_annotation(
            note_out, grid - frame_times[0], series, source, options.labels
        )
        return Converted(video_out, note_out, events, notes)


def _array(path: Path) -> np.ndarray:
    """One `.npy` file saved without its extension; ImportItemError naming it."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ImportItemError(f"{path}: not a readable numpy array ({exc})") from exc


def _series(
    folder: Path, notes: list[str], column: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A log series `folder/{t,value}`, time-sorted, one column of it when multi-column."""
    t, value = _array(folder / "t"), _array(folder / "value")
    if column is not None:
        if value.ndim != 2 or value.shape[1] <= column:
            raise ImportItemError(
                f"{folder}/value: expected {column + 1}+ columns, got {value.shape}"
            )
        value = value[:, column]
    elif value.ndim == 2 and value.shape[1] == 1:  # CAN speed is stored (N, 1)
        value = value[:, 0]
    if t.ndim != 1 or value.ndim != 1 or len(value) != len(t) or len(t) < 2:
        raise ImportItemError(f"{folder}: t {t.shape} and value {value.shape} do not pair up")
    if not (np.isfinite(t).all() and np.isfinite(value).all()):
        raise ImportItemError(f"{folder}: non-finite values")
    if np.any(np.diff(t) <= 0):
        keep = strictly_increasing(t)
        t, value = t[keep], value[keep]
        notes.append("sensor timestamps out of order (sorted)")
    return t, value.astype(np.float64)


def _window_mean(t: np.ndarray, value: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The mean of `value` over WINDOW_S around each grid time (the nearest sample where the
    window is empty)."""
    total = np.concatenate([[0.0], np.cumsum(value)])
    lo = np.searchsorted(t, grid - WINDOW_S / 2)
    hi = np.searchsorted(t, grid + WINDOW_S / 2)
    nearest = np.interp(grid, t, value)
    count = hi - lo
    return np.where(count > 0, (total[hi] - total[lo]) / np.maximum(count, 1), nearest)


def remux_hevc(src: Path, dst: Path, frame_times: np.ndarray, notes: list[str]) -> int:
    """Write the raw HEVC stream `src` as MP4 `dst` (atomically), frame k shown at
    frame_times[k] - frame_times[0]; the number of frames written."""
    import av  # native video library, loaded when a video is written

    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(dst) as tmp, av.open(str(src), format="hevc") as inp:
            stream = inp.streams.video[0]
            packets = [p for p in inp.demux(stream) if p.size]
            order = _display_order(stream, packets) if stream.codec_context.has_b_frames else None
            if order is not None:
                notes.append("HEVC with B-frames: display order recovered by decoding")
            frames = min(len(packets), len(frame_times))
            if len(packets) != len(frame_times):
                notes.append("video and frame_times differ in frame count (common part kept)")
            if frames < 2:
                raise ImportItemError(f"{src}: {len(packets)} HEVC frames (need 2)")
            pts = _ticks(frame_times[:frames])
            shown = pts if order is None else pts[_positions(order, len(packets), frames, src)]
            decode_ts = np.sort(shown) - int(np.max(np.sort(shown) - shown))  # dts <= pts
            duration = int(np.median(np.diff(pts)))
            with av.open(str(tmp), "w", format="mp4") as output:
                ost = output.add_stream_from_template(stream)
                ost.time_base = Fraction(1, TICKS)
                for k, packet in enumerate(packets[:frames]):
                    packet.stream = ost  # the stream first: setting it resets the time base
                    packet.time_base = Fraction(1, TICKS)
                    packet.pts, packet.dts = int(shown[k]), int(decode_ts[k])
                    packet.duration = duration
                    output.mux(packet)
    except ImportItemError:
        raise
    except Exception as exc:  # a corrupt stream must not stop an import of 2000 segments
        raise ImportItemError(f"{src}: cannot remux the HEVC stream ({exc})") from exc
    return frames


def _ticks(times: np.ndarray) -> np.ndarray:
    return np.round((times - times[0]) * TICKS).astype(np.int64)


def _display_order(stream, packets: list) -> list[int]:
    """For a stream with B-frames: the decode index of each displayed frame, in display order
    (decoding tags every frame with its packet's decode index)."""
    codec = stream.codec_context
    shown = []
    for k, packet in enumerate(packets):
        packet.pts = packet.dts = k
        packet.time_base = stream.time_base
        shown += [f.pts for f in codec.decode(packet)]
    shown += [f.pts for f in codec.decode(None)]
    return shown


def _positions(order: list[int], packets: int, frames: int, src: Path) -> np.ndarray:
    """Display position of each of the first `frames` packets (decode order), numbered
    0..frames-1 among themselves."""
    if sorted(order) != list(range(packets)):
        raise ImportItemError(f"{src}: decoding gave {len(order)} frames for {packets} packets")
    position = np.empty(packets, dtype=np.int64)
    position[np.asarray(order)] = np.arange(packets)
    return np.argsort(np.argsort(position[:frames]))  # ranks: the kept frames' display order
