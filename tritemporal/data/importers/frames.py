"""Numbered images as videos (`tritemporal import frames SRC --out DIR [--fps N] [--encode]`).

Three layouts are found under SRC, by file name (timestamp files are read by `convert`):

- **nuScenes**: `samples/<CHANNEL>/` (keyframes) and `sweeps/<CHANNEL>/` (the frames between)
  hold `<log>__<CHANNEL>__<utime>.jpg`, utime the Unix time in microseconds (16 digits), the log
  named with its UTC offset (`n015-2018-07-24-11-22-45+0800`). Both folders of one log and
  channel are one stream, sorted by time and cut where a hole exceeds `split_gap_s`
  (`--split-gap`, 1 s) into `<log>__<CHANNEL>__<k>`. Every camera channel is imported, or the
  one `--channel` names. No ego
  series: nuScenes keeps them in its JSON tables, which are not read here.
- **KITTI raw**: `<drive>/image_02/data/<10 digits>.png` with `image_02/timestamps.txt`, one
  `YYYY-MM-DD HH:MM:SS.fffffffff` line per image (parsed to the nanosecond). Where
  `<drive>/oxts/data/*.txt` and `oxts/timestamps.txt` exist, each oxts file holds one line of 30
  values (`lat lon alt roll pitch yaw vn ve vf vl vu ax ay az af al au wx wy wz ...`), giving the
  ego series `speed` (vf), `heading` (-yaw: KITTI's yaw grows counter-clockwise from east, ours
  clockwise), `yaw_rate` (-wu), `acceleration` (af), `latitude` and `longitude`, and the auto
  maneuvers. Named after the drive folder. Only image_02 (left colour camera) is imported; the
  other cameras (image_00, 01, 03) are passed over like lidar files.
- **any other folder** whose images differ only in their last number (`frame_0001.png`): that
  number orders them and, at the frame rate `--fps` states, times them (numbers step by their
  greatest common divisor, so a missing number is a missing frame). Without `--fps` such a
  folder is a counted skip. Named after the folder (relative to SRC).

What is written: `videos/<name>.frames` (`frame_sequence.py`) listing the source images by
absolute path, nothing copied; or with `--encode`, an H.264 `videos/<name>.mp4` at the same
nominal fps, frame i being the image the descriptor shows at i (an odd width or height loses its
last column or row: yuv420p needs even sizes). An annotation only where ego series exist.

Quirks: a hole over 1.5 median steps (and not a split) is a missing frame; the previous one holds
(noted). Timestamps that do not strictly increase (nuScenes duplicates, KITTI lines out of order)
and a timestamps.txt whose line count differs from the image count are an ImportItemError naming
the file; oxts samples out of order are sorted and deduplicated (noted).
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

import numpy as np

from tritemporal.data.frame_sequence import (
    SEQUENCE_SUFFIX,
    FrameSequence,
    nominal_fps,
    write_sequence,
)
from tritemporal.data.importers.base import (
    Converted,
    Importer,
    ImportItemError,
    ImportOptions,
    Item,
    annotation_path,
    register_importer,
    strictly_increasing,
    write_item_annotation,
)
from tritemporal.data.video_meta import VideoDecodeError
from tritemporal.files import atomic_path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
NUSCENES = re.compile(r"(?P<log>.+?[+-].*?)__(?P<channel>[A-Z][A-Z0-9_]*)__(?P<utime>\d{16})")
KITTI_CAMERA = re.compile(r"image_0\d")
KITTI_IMPORTED = "image_02"  # the left colour camera
LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")
OXTS_VALUES = 30
OXTS = {"lat": 0, "lon": 1, "yaw": 5, "vf": 8, "af": 14, "wu": 22}  # columns used
HOLE_STEPS = 1.5  # a step over this many median steps is a missing frame
ENCODE_CHUNK = 64  # frames decoded at once while encoding
ENCODE_CRF = "18"  # x264 quality: visually lossless for training
MISSING_FRAMES = "sequence with missing frames (the previous frame holds)"


@register_importer
class FrameFolders(Importer):
    """nuScenes sweeps, KITTI raw drives and numbered image folders (module docstring)."""

    name = "frames"
    video_suffix = SEQUENCE_SUFFIX

    def discover(self, src: Path, options: ImportOptions) -> tuple[list[Item], list[tuple]]:
        """Sequences under `src` by file name; folders that cannot be one are counted skips."""
        if options.fps is not None and not options.fps > 0:
            raise ValueError(f"--fps {options.fps}: the frame rate must be positive")
        suffix = ".mp4" if options.encode else SEQUENCE_SUFFIX
        streams: dict[tuple[str, str], list[tuple[int, Path]]] = defaultdict(list)
        items, skipped = [], []
        for folder, names in _image_folders(src):
            plain = []
            for name in names:
                match = NUSCENES.fullmatch(Path(name).stem)
                if match:
                    if options.channel not in (None, match["channel"]):
                        continue  # another camera than the one asked for
                    key = (match["log"], match["channel"])
                    streams[key].append((int(match["utime"]), folder / name))
                else:
                    plain.append(name)
            camera = folder.parent
            if plain and folder.name == "data" and (camera / "timestamps.txt").is_file():
                if camera.name == KITTI_IMPORTED:
                    items.append(_kitti_item(camera, plain, suffix))
                    continue
                if KITTI_CAMERA.fullmatch(camera.name):
                    continue  # another KITTI camera: not a skip, so on_error=raise still runs
            for name, numbered in _numbered_groups(folder, plain, src).items():
                if options.fps is None:
                    why = f"{folder} has no timestamps: state its frame rate with --fps N"
                    skipped.append((name, why))
                    continue
                numbers = np.array([n for n, _ in numbered], dtype=np.int64)
                step = max(int(np.gcd.reduce(np.diff(numbers))), 1)
                time_s = (numbers - numbers[0]) / step / options.fps
                paths = [p for _, p in numbered]
                split = _split(name, paths, time_s, options, suffix, options.fps)
                items += split[0]
                skipped += split[1]
        for (log, channel), frames in sorted(streams.items()):
            frames.sort()
            time_s = (np.array([u for u, _ in frames], dtype=np.int64) - frames[0][0]) / 1e6
            paths = [p for _, p in frames]
            split = _split(f"{log}__{channel}", paths, time_s, options, suffix, None)
            items += split[0]
            skipped += split[1]
        return items, skipped

    def outputs(self, item: Item, out: Path) -> tuple[Path, ...]:
        """The video, plus the annotation where the item has ego series (KITTI oxts)."""
        video = out / "videos" / f"{item.name}{item.extra['video_suffix']}"
        if item.extra.get("oxts") is None:
            return (video,)
        return video, annotation_path(out, item.name)

    def convert(self, item: Item, out: Path, options: ImportOptions) -> Converted:
        """Write the descriptor (or the MP4) and, from KITTI oxts, the annotation."""
        notes: list[str] = []
        if "kitti" in item.extra:
            images, stamps = item.extra["kitti"]
            if len(images) < 2:
                raise ImportItemError(f"{images[0].parent}: one image is not a video")
            image_ns = read_timestamps(stamps, len(images))
            _check_increasing(image_ns, stamps, [f"line {k + 1}" for k in range(len(images))])
            time_s = (image_ns - image_ns[0]) / 1e9
            fps = nominal_fps(time_s)
        else:
            images, time_s, fps = item.extra["images"], item.extra["time"], item.extra["fps"]
            _check_increasing(time_s, item.name, images)
            fps = fps or nominal_fps(time_s)
        steps = np.diff(time_s)
        if steps.max() > HOLE_STEPS * np.median(steps):
            notes.append(MISSING_FRAMES)
        video, *annotation = self.outputs(item, out)
        events = []
        if annotation:
            oxts_stamps, oxts_files = item.extra["oxts"]
            ego_ns, series, ego_notes = read_oxts(oxts_stamps, oxts_files)
            notes += ego_notes
            source = {"dataset": "kitti_raw", "file": str(oxts_stamps.parent), "drive": item.name}
            events = write_item_annotation(
                annotation[0], (ego_ns - image_ns[0]) / 1e9, series, source, options.labels
            )
        if options.encode:
            try:
                encode_mp4(FrameSequence(tuple(images), np.asarray(time_s), fps), video)
            except VideoDecodeError as exc:
                raise ImportItemError(f"{item.name}: {exc}") from exc
        else:
            write_sequence(video, [p.absolute() for p in images], time_s, fps)
        return Converted(video, annotation[0] if annotation else None, events, notes)


def _image_folders(src: Path) -> list[tuple[Path, list[str]]]:
    """(folder, sorted image file names) of every folder under `src` holding images."""
    found = []
    for dirpath, dirnames, filenames in os.walk(src, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        names = sorted(
            n for n in filenames if not n.startswith(".") and n.lower().endswith(IMAGE_SUFFIXES)
        )
        if names:
            found.append((Path(dirpath), names))
    return found


def _relative(folder: Path, src: Path) -> str:
    """`folder` relative to `src` (the source's own name when they are the same)."""
    rel = folder.relative_to(src).as_posix()
    return src.name if rel == "." else rel


def _numbered_groups(folder: Path, names: list[str], src: Path) -> dict[str, list]:
    """Item name -> [(number, path)] sorted, for images that differ only in their last number
    (2 or more per group); a folder with several groups names each after its pattern."""
    groups: dict[tuple[str, str], list[tuple[int, Path]]] = defaultdict(list)
    for name in names:
        stem, suffix = os.path.splitext(name)
        match = LAST_NUMBER.search(stem)
        if match:
            pattern = (stem[: match.start()], stem[match.end() :] + suffix.lower())
            groups[pattern].append((int(match[1]), folder / name))
    groups = {k: sorted(v) for k, v in groups.items() if len(v) >= 2}
    base = _relative(folder, src)
    if len(groups) == 1:
        return {base: next(iter(groups.values()))}
    return {
        f"{base}__{re.sub(r'[^A-Za-z0-9]+', '_', f'{head}N{tail}').strip('_')}": numbered
        for (head, tail), numbered in groups.items()
    }


def _kitti_item(camera: Path, names: list[str], suffix: str) -> Item:
    """A KITTI raw drive: its image_02 images and timestamps, plus its oxts when present."""
    drive = camera.parent
    images = tuple(camera / "data" / n for n in names)
    stamps = camera / "timestamps.txt"
    oxts_stamps = drive / "oxts" / "timestamps.txt"
    oxts_dir = drive / "oxts" / "data"
    oxts = None
    if oxts_stamps.is_file() and oxts_dir.is_dir():
        oxts = (oxts_stamps, tuple(sorted(oxts_dir.glob("*.txt"))))
    sources = (*images, stamps, *((oxts[0], *oxts[1]) if oxts else ()))
    extra = {"kitti": (images, stamps), "oxts": oxts, "video_suffix": suffix}
    return Item(drive.name, sources, extra)


def _split(
    name: str, paths: list[Path], time_s: np.ndarray, options: ImportOptions, suffix: str,
    fps: float | None,
) -> tuple[list[Item], list[tuple[str, str]]]:  # fmt: skip
    """Items of one stream cut where a step exceeds `split_gap_s` (`name__k` when cut, and
    always for nuScenes streams); a piece of one image is a counted skip."""
    cuts = np.flatnonzero(np.diff(time_s) > options.split_gap_s) + 1
    pieces = np.split(np.arange(len(paths)), cuts)
    nuscenes = fps is None
    items, skipped = [], []
    for k, piece in enumerate(pieces):
        label = f"{name}__{k}" if nuscenes or len(pieces) > 1 else name
        if len(piece) < 2:
            why = f"a single image ({paths[piece[0]]}) between holes over {options.split_gap_s} s"
            skipped.append((label, why))
            continue
        images = tuple(paths[i] for i in piece)
        time = time_s[piece] - time_s[piece[0]]
        extra = {"images": images, "time": time, "fps": fps, "video_suffix": suffix}
        items.append(Item(label, images, extra))
    return items, skipped


def _check_increasing(time: np.ndarray, where: object, what: Sequence[object]) -> None:
    """ImportItemError naming `where` and the two entries of `what` at the first time that is
    not after the one before (a duplicate or out-of-order timestamp)."""
    bad = np.flatnonzero(np.diff(time) <= 0)
    if len(bad):
        i = int(bad[0]) + 1
        raise ImportItemError(
            f"{where}: timestamps not strictly increasing ({what[i - 1]} at {time[i - 1]}, "
            f"then {what[i]} at {time[i]})"
        )


def read_timestamps(path: Path, expected: int | None = None) -> np.ndarray:
    """KITTI `timestamps.txt` as int64 nanoseconds since the epoch (UTC), one per line."""
    try:
        lines = [line.strip() for line in path.read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportItemError(f"{path}: unreadable ({exc})") from exc
    while lines and not lines[-1]:
        lines.pop()
    if expected is not None and len(lines) != expected:
        raise ImportItemError(
            f"{path}: {len(lines)} timestamps for {expected} files in {path.parent / 'data'} "
            "(one line per file)"
        )
    out = np.empty(len(lines), dtype=np.int64)
    for k, line in enumerate(lines):
        whole, _, fraction = line.partition(".")
        try:
            day = datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
            if fraction and not fraction.isdigit():
                raise ValueError(fraction)
        except ValueError as exc:
            raise ImportItemError(
                f"{path}: line {k + 1} {line!r} is not YYYY-MM-DD HH:MM:SS.fffffffff"
            ) from exc
        out[k] = int(day.timestamp()) * 10**9 + int(fraction[:9].ljust(9, "0") or 0)
    return out


def read_oxts(
    stamps: Path, files: tuple[Path, ...]
) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    """KITTI oxts: sample times (ns), ego series in our conventions and notes."""
    time_ns = read_timestamps(stamps, len(files))
    rows = []
    for path in files:
        try:
            values = [float(v) for v in path.read_text().split()]
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ImportItemError(f"oxts {path}: unreadable ({exc})") from exc
        if len(values) < OXTS_VALUES:
            raise ImportItemError(
                f"oxts {path}: {len(values)} values, expected {OXTS_VALUES} (lat lon alt ...)"
            )
        rows.append(values)
    table = np.array(rows, dtype=np.float64).reshape(-1, OXTS_VALUES)
    notes = []
    keep = strictly_increasing(time_ns)
    if len(keep) < len(time_ns) or np.any(np.diff(time_ns) <= 0):
        notes.append("oxts timestamps out of order or repeated (sorted, duplicates dropped)")
    table, time_ns = table[keep], time_ns[keep]
    c = OXTS
    series = {
        "speed": table[:, c["vf"]],
        "heading": -table[:, c["yaw"]],
        "yaw_rate": -table[:, c["wu"]],
        "acceleration": table[:, c["af"]],
        "latitude": table[:, c["lat"]],
        "longitude": table[:, c["lon"]],
    }
    return time_ns, series, notes


def encode_mp4(sequence: FrameSequence, path: Path) -> Path:
    """H.264 MP4 of `sequence` at its nominal fps (frame i: the image shown at i), atomically."""
    import av  # native video library, loaded when a video is written

    rate = Fraction(sequence.fps).limit_denominator(1001)
    first = sequence.read([0])[0]
    height, width = first.shape[0] // 2 * 2, first.shape[1] // 2 * 2
    if not height or not width:
        raise ImportItemError(f"{sequence.frames[0]}: too small to encode ({first.shape[:2]})")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=rate, options={"crf": ENCODE_CRF})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        count = sequence.num_frames
        for begin in range(0, count, ENCODE_CHUNK):
            indices = np.arange(begin, min(begin + ENCODE_CHUNK, count))
            for image in sequence.read(indices):
                frame = av.VideoFrame.from_ndarray(image[:height, :width], format="rgb24")
                output.mux(stream.encode(frame))
        output.mux(stream.encode())
    return path
