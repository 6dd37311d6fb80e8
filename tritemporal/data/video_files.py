"""Which files of a data root are videos (a folder scan or a manifest), and why others are not.

Why: dash cams and logging rigs write many containers (.MP4, MPEG-TS .ts/.mts/.m2ts, .m4v,
.webm, raw .h264/.hevc streams) beside files that are not video (GPS logs, thumbnails, sidecar
JSON). Under ROOT/videos/, a file whose extension (any case) is in `VIDEO_EXTENSIONS` is listed
and probed (the index leaves one out that has no video stream or cannot be read, with the
reason). A file with an extension in `NOT_VIDEO_EXTENSIONS` (images, text, audio, archives,
arrays) is not opened. Any other file is listed too and kept only if its probe finds a video of
more than one frame (`is_video`), so whatever PyAV opens as video trains, whatever its name.
Nothing is dropped silently: each file not listed is an `Ignored` entry, and `summarize` groups
them into one line per reason and extension. Hidden files and folders (a name starting with
".": macOS `._*` twins, thumbnail caches) are not searched, and a file or folder reached twice
(through links) is used once; both are reported too. A manifest lists the videos explicitly:
nothing else is searched or reported.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from tritemporal.data.frame_sequence import SEQUENCE_SUFFIX, SequenceError, load_sequence

# containers FFmpeg reads (raw streams: see decode.py), and `.frames` descriptors of images
VIDEO_EXTENSIONS = (
    ".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".mpg",
    ".mpeg", ".m2v", ".vob", ".flv", ".f4v", ".3gp", ".3g2", ".wmv", ".asf", ".ogv", ".mxf",
    ".lrv", ".h264", ".264", ".avc", ".hevc", ".h265", ".265", ".y4m", SEQUENCE_SUFFIX,
)  # fmt: skip
IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".heic", ".heif", ".avif",
    ".dng", ".ppm", ".pgm", ".pbm", ".exr", ".jp2", ".ico", ".svg",
)  # fmt: skip
NOT_VIDEO_EXTENSIONS = (
    *IMAGE_EXTENSIONS,
    ".json", ".jsonl", ".txt", ".csv", ".tsv", ".xml", ".yaml", ".yml", ".md", ".log", ".ini",
    ".cfg", ".gpx", ".kml", ".nmea", ".srt", ".vtt", ".ass", ".sub", ".pdf", ".html",
    ".wav", ".mp3", ".aac", ".m4a", ".flac", ".ogg", ".opus", ".wma",
    ".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z", ".rar",
    ".npy", ".npz", ".pkl", ".pt", ".pth", ".safetensors", ".bin", ".pcd", ".h5", ".hdf5",
    ".parquet", ".db", ".sqlite", ".py", ".sh",
)  # fmt: skip
NOT_VIDEO = "not video"
HIDDEN = "hidden (name starts with '.'), not searched"
DUPLICATE = "duplicate (reached twice through a link)"
EXAMPLES = 3  # paths named per summary line
LAYOUT = (
    "expected ROOT/videos/**/<clip>.<video extension> (sub-folders allowed; .mp4 .mov .mkv .avi "
    ".ts .m4v .webm raw .h264/.hevc and more, any case; .frames: numbered images, see "
    "`tritemporal import frames`) with optional ROOT/annotations/<same relative path>.json, or "
    "data.manifest=<CSV with a `path` column (relative to ROOT or absolute) and an optional "
    "`annotation` column>"
)

Listed = tuple[str, Path, Path | None]  # (key, video path, annotation path or None)


@dataclass(frozen=True)
class Ignored:
    """A file (or folder, its key ending in "/") that is not used: why, and a detail or ""."""

    path: str
    reason: str
    detail: str = ""


def has_video_extension(path: str | Path) -> bool:
    """Whether `path` ends in a known video extension (any case); other files must prove it."""
    return str(path).lower().endswith(VIDEO_EXTENSIONS)


def is_video(frames: int) -> bool:
    """Whether a probed file of another extension is video: more than one frame (not an image)."""
    return frames > 1


def find_videos(root: Path, manifest: str | None) -> list[Listed]:
    """(key, video path, annotation path or None) of every listed file, sorted by key."""
    return scan_videos(root, manifest)[0]


def scan_videos(root: Path, manifest: str | None) -> tuple[list[Listed], list[Ignored]]:
    """The files to probe, sorted by key, and every other file under root/videos/ with why."""
    if manifest is not None:
        return _read_manifest(root, manifest), []
    folder = root / "videos"
    if not folder.is_dir():
        raise FileNotFoundError(f"data.root {root} has no videos/ folder; {LAYOUT}")
    listed: list[Listed] = []
    ignored: list[Ignored] = []
    images: dict[str, Path] = {}  # ignored images: a `.frames` descriptor may read them
    seen: dict[tuple[int, int], str] = {}  # (device, inode) -> the first key reaching it
    _first_visit(seen, folder.stat(), _key(root, folder) + "/")
    pending = [folder]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as exc:
            ignored.append(Ignored(_key(root, folder) + "/", "unreadable folder", _why(exc)))
            continue
        for entry in entries:
            path = Path(entry.path)
            key = _key(root, path)
            name = key + "/" if entry.is_dir() else key
            lower = entry.name.lower()
            if lower.startswith("."):
                ignored.append(Ignored(name, HIDDEN))
                continue
            try:
                stat = entry.stat()  # of the target, for a link
            except OSError as exc:
                if entry.is_symlink():
                    ignored.append(Ignored(name, "broken link", _why(exc)))
                else:  # the index says why it cannot be read
                    listed.append((key, path, _mirror(root, path, None)))
                continue
            first = _first_visit(seen, stat, name)
            if first != name:
                ignored.append(Ignored(name, DUPLICATE, f"same as {first}"))
            elif name.endswith("/"):
                pending.append(path)
            elif lower.endswith(NOT_VIDEO_EXTENSIONS):
                ignored.append(Ignored(name, NOT_VIDEO))
                if lower.endswith(IMAGE_EXTENSIONS):
                    images[name] = path
            else:
                listed.append((key, path, _mirror(root, path, None)))
    listed.sort()
    used = _sequence_images(listed) if images else set()
    kept = [item for item in ignored if _normal(images.get(item.path)) not in used]
    return listed, sorted(kept, key=lambda item: item.path)


def summarize(ignored: list[Ignored], examples: int = EXAMPLES) -> list[str]:
    """One line per reason and extension: '12 .jpg files ignored: not video (e.g. a.jpg, ...)'."""
    groups: dict[tuple[str, str], list[Ignored]] = defaultdict(list)
    for item in ignored:
        groups[item.reason, _kind(item.path)].append(item)
    lines = []
    for (reason, kind), items in sorted(groups.items(), key=lambda g: (-len(g[1]), g[0])):
        shown = [item.path + (f" ({item.detail})" if item.detail else "") for item in items]
        more = "e.g. " if len(items) > examples else ""
        noun = kind.format(s="s" if len(items) > 1 else "")
        lines.append(f"{len(items)} {noun} ignored: {reason} ({more}{', '.join(shown[:examples])})")
    return lines


def _kind(path: str) -> str:
    """How a summary line names a group of paths (`{s}`: the plural's s)."""
    if path.endswith("/"):
        return "folder{s}"
    extension = Path(path).suffix.lower()
    return f"{extension} file{{s}}" if extension else "file{s} without an extension"


def _first_visit(seen: dict[tuple[int, int], str], stat: os.stat_result, name: str) -> str:
    """The first name that reached this file or folder (`name` itself the first time). A zero
    inode (Windows' scandir) identifies nothing: such files are never duplicates."""
    if not stat.st_ino:
        return name
    return seen.setdefault((stat.st_dev, stat.st_ino), name)


def _sequence_images(listed: list[Listed]) -> set[str | None]:
    """Normalized paths of the images that the listed `.frames` descriptors read."""
    used: set[str | None] = set()
    for _, path, _ in listed:
        if path.name.lower().endswith(SEQUENCE_SUFFIX):
            try:
                used.update(_normal(frame) for frame in load_sequence(path).frames)
            except SequenceError:
                continue  # the probe reports the descriptor itself
    used.discard(None)
    return used


def _normal(path: Path | None) -> str | None:
    return os.path.normpath(path) if path is not None else None


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _key(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _mirror(root: Path, path: Path, listed: str | None) -> Path | None:
    """The annotation of `path`: the manifest's entry, else annotations/<rel path>.json if any."""
    if listed:
        return Path(listed) if Path(listed).is_absolute() else root / listed
    try:
        rel = path.relative_to(root)
    except ValueError:
        return None
    if rel.parts[0] == "videos":
        rel = Path(*rel.parts[1:])
    candidate = (root / "annotations" / rel).with_suffix(".json")
    return candidate if candidate.is_file() else None


def annotation_of(video: str | Path) -> Path | None:
    """The annotation of a video inside a data folder, ROOT/annotations/<its path under
    ROOT/videos>.json (as training finds it, nearest `videos` folder), or None when there is
    none; a manifest's `annotation` column is not consulted."""
    path = Path(video).absolute()  # not resolved: an imported video may link elsewhere
    root = next((p.parent for p in path.parents if p.name == "videos"), None)
    return None if root is None else _mirror(root, path, None)


def _read_manifest(root: Path, manifest: str) -> list[Listed]:
    path = Path(manifest)
    if not path.is_absolute() and (root / path).is_file():
        path = root / path
    if not path.is_file():
        raise FileNotFoundError(f"data.manifest={manifest!r} does not exist; {LAYOUT}")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "path" not in rows[0]:
        raise ValueError(f"data.manifest {path} needs a header with a `path` column; {LAYOUT}")
    found = {}
    for row in rows:
        name = (row.get("path") or "").strip()
        if name:
            video = Path(name) if Path(name).is_absolute() else root / name
            listed = (row.get("annotation") or "").strip() or None
            found.setdefault(_key(root, video), (video, _mirror(root, video, listed)))
    return sorted((key, video, note) for key, (video, note) in found.items())
