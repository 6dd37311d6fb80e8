"""Real driving videos as tri-temporal samples (`data.source: videos`).

Why it looks like this: one long video yields many samples (one per `data.stride_s`), each a
NOW | SOON | (gap) | EVENTUALLY window resampled to `data.fps` and labelled with the maneuver of
its EVENTUALLY window. Everything that can be wrong with an input is found when the dataset is
built, before any model exists: a bad file is either left out and listed in `summary`
(`data.on_error: skip`) or stops the run naming the file (`raise`); it never becomes a sample.
Layout (or `data.manifest`, a CSV with `path` and optional `annotation` columns)::

    ROOT/videos/**/<clip>.mp4|.mov|.mkv|.avi     any sub-folders; or <clip>.frames, numbered
                                                 images listed in a descriptor (frame_sequence.py)
    ROOT/annotations/**/<clip>.json              optional, mirrors videos/ (see annotations.py)
"""

from __future__ import annotations

import csv
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from tritemporal.config import TriTemporalConfig
from tritemporal.data.annotations import (
    DEFAULT_MANEUVER,
    Annotation,
    AnnotationError,
    load_annotation,
)
from tritemporal.data.common import MANEUVERS, UNLABELLED
from tritemporal.data.decode import VideoDecodeError, VideoMeta, read_frames
from tritemporal.data.transforms import ClipTransform
from tritemporal.data.video_index import VideoIndex
from tritemporal.data.windows import WindowSpec, maneuvers_between, native_indices, window_starts

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".frames")
LAYOUT = (
    "expected ROOT/videos/**/*{.mp4,.mov,.mkv,.avi,.frames} (sub-folders allowed; .frames: "
    "numbered images, see `tritemporal import frames`) with optional "
    "ROOT/annotations/<same relative path>.json, or data.manifest=<CSV with a `path` column "
    "(relative to ROOT or absolute) and an optional `annotation` column>"
)


@dataclass
class DataSummary:
    """What a build found: counts, samples per EVENTUALLY label and every skipped file."""

    videos_found: int
    videos_used: int
    samples: int
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    label_counts: dict[str, int] = field(default_factory=dict)  # incl. "unlabelled"

    def format(self, max_skipped: int = 5) -> str:
        """A few human-readable lines: counts, labels and the first skipped files."""
        lines = [
            f"videos: {self.videos_found} found, {self.videos_used} used, "
            f"{len(self.skipped)} skipped; samples: {self.samples}",
            "labels: " + ", ".join(f"{k} {v}" for k, v in self.label_counts.items() if v),
        ]
        if self.skipped:
            lines.append(f"skipped ({len(self.skipped)}):")
            lines += [f"  {path}: {reason}" for path, reason in self.skipped[:max_skipped]]
            if len(self.skipped) > max_skipped:
                lines.append(f"  ... and {len(self.skipped) - max_skipped} more")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready dict listing every skipped file."""
        data = asdict(self)
        data["skipped"] = [{"path": p, "reason": r} for p, r in self.skipped]
        return data


class FrameReader(Protocol):
    """Reads native frames `indices` of a video as uint8 (T, H, W, 3): `decode.read_frames`, or
    a frame cache's `read` (frame_cache.py), which must return the very same frames."""

    def __call__(
        self, path: str, indices: Sequence[int], backend: str, meta: VideoMeta
    ) -> torch.Tensor: ...


@dataclass(frozen=True)
class _Video:
    """A usable video: its key, absolute path, metadata and annotation (None: unlabelled)."""

    key: str
    path: str
    meta: VideoMeta
    annotation: Annotation | None


def label_vocabulary(extra: list[str]) -> tuple[str, ...]:
    """MANEUVERS followed by `data.extra_maneuvers` (which must be new, distinct names)."""
    seen = set(MANEUVERS)
    for name in extra:
        if not name or name in seen:
            raise ValueError(
                f"data.extra_maneuvers has {name!r}, which is empty or already known; "
                f"built-in names: {', '.join(MANEUVERS)}"
            )
        seen.add(name)
    return (*MANEUVERS, *extra)


def find_videos(root: Path, manifest: str | None) -> list[tuple[str, Path, Path | None]]:
    """(key, video path, annotation path or None) of every listed video, sorted by key."""
    if manifest is not None:
        return _read_manifest(root, manifest)
    folder = root / "videos"
    if not folder.is_dir():
        raise FileNotFoundError(f"data.root {root} has no videos/ folder; {LAYOUT}")
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(VIDEO_EXTENSIONS):
                path = Path(dirpath) / name
                found.append((_key(root, path), path, _mirror(root, path, None)))
    return sorted(found)


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


def _read_manifest(root: Path, manifest: str) -> list[tuple[str, Path, Path | None]]:
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


class VideoClips(torch.utils.data.Dataset):
    """Every window of every usable video; `sample` gives training views, `[i]` evaluation."""

    def __init__(
        self, config: TriTemporalConfig, train: bool = True, root: str | Path | None = None
    ) -> None:
        """Index the videos under `root` (default `data.root`) and cut them into samples."""
        d = config.data
        root = root if root is not None else d.root
        if root is None:
            raise ValueError(f"data.source=videos needs data.root=<folder>; {LAYOUT}")
        self.root, self.train, self.backend = Path(root), train, d.backend
        if not self.root.is_dir():
            raise FileNotFoundError(f"data.root {self.root} does not exist; {LAYOUT}")
        self.label_names = label_vocabulary(d.extra_maneuvers)
        # an action-conditioned SOON predictor needs these ego series in every video
        conditioned = config.predictor.action_conditioning
        self.required_signals = tuple(config.action.signals) if conditioned else ()
        self.spec = WindowSpec.from_config(config)
        self.transform = ClipTransform.from_config(config, self.label_names)
        self.reader: FrameReader = read_frames  # a frame cache replaces it (frame_cache.py)
        clock = time.perf_counter()
        listed = find_videos(self.root, d.manifest)
        if not listed:
            raise FileNotFoundError(f"no videos found under {self.root}; {LAYOUT}")
        lap = [time.perf_counter()]
        metas = VideoIndex(self.root).lookup({key: path for key, path, _ in listed})
        lap.append(time.perf_counter())
        checking = 0.0  # seconds in `_check` (mostly annotation parsing) within the loop

        self._videos: list[_Video] = []
        skipped: list[tuple[str, str]] = []
        steps, labels = [], []  # per video: window numbers (start = k * stride) and labels
        for key, path, annotation_path in listed:
            meta = metas[key]
            begin = time.perf_counter()
            try:
                annotation = self._check(meta, annotation_path)
            except ValueError as exc:
                if d.on_error == "raise":
                    raise ValueError(
                        f"video {path}: {exc} (data.on_error=raise; set data.on_error=skip to "
                        "leave such files out)"
                    ) from exc
                skipped.append((key, str(exc)))
                continue
            finally:
                checking += time.perf_counter() - begin
            assert isinstance(meta, VideoMeta)
            starts = window_starts(meta.duration, self.spec)
            steps.append(np.arange(len(starts), dtype=np.int32))
            labels.append(self._labels(starts, annotation))
            self._videos.append(_Video(key, str(path), meta, annotation))
        if not self._videos:
            reasons = "; ".join(f"{k}: {r}" for k, r in skipped[:3])
            raise ValueError(
                f"none of the {len(listed)} videos under {self.root} is usable ({reasons}); "
                + LAYOUT
            )
        self._video_of = np.concatenate(
            [np.full(len(s), i, dtype=np.int32) for i, s in enumerate(steps)]
        )
        self._step = np.concatenate(steps)
        self._label = np.concatenate(labels).astype(np.int16)  # 10M windows: 20 MB
        counts = np.bincount(self._label + 1, minlength=len(self.label_names) + 1)
        label_counts = {name: int(counts[i + 1]) for i, name in enumerate(self.label_names)}
        label_counts["unlabelled"] = int(counts[0])
        lap.append(time.perf_counter())
        # start-up by part (docs/PERFORMANCE.md, "Start-up on 10k videos, stated per 100k")
        self.build_seconds = {
            "find": lap[0] - clock,
            "index": lap[1] - lap[0],
            "annotations": checking,
            "windows": lap[2] - lap[1] - checking,
        }
        self.summary = DataSummary(
            len(listed), len(self._videos), len(self._step), skipped, label_counts
        )
        report = log.warning if skipped else log.info
        report("video data under %s\n%s", self.root, self.summary.format())
        log.info("start-up: %s", ", ".join(f"{k} {v:.1f} s" for k, v in self.build_seconds.items()))

    def _check(self, meta: VideoMeta | str, annotation_path: Path | None) -> Annotation | None:
        """Raise ValueError with the reason a video is unusable; else return its annotation."""
        if isinstance(meta, str):
            raise ValueError(meta)
        if not meta.fps > 0:
            raise ValueError(
                f"missing or zero frame rate (fps={meta.fps}); re-encode it at a fixed fps"
            )
        if meta.frames < 1 or meta.duration + 1e-6 < self.spec.span_s:
            s = self.spec
            raise ValueError(
                f"too short: {meta.duration:.2f} s ({meta.frames} frames at {meta.fps:g} fps), "
                f"but one sample spans {s.span_s:.2f} s (NOW {s.now_frames} + SOON "
                f"{s.soon_frames} frames, gap {s.gap_s:g} s, EVENTUALLY {s.eventually_frames} "
                f"frames at {s.fps:g} fps)"
            )
        if annotation_path is None:
            if self.required_signals:
                raise ValueError(
                    "no annotation file: predictor.action_conditioning needs the ego series "
                    f"{list(self.required_signals)} of every video (annotations/<clip>.json, "
                    "`ego`)"
                )
            return None
        try:
            annotation = load_annotation(annotation_path, self.label_names)
        except AnnotationError as exc:
            raise ValueError(str(exc)) from exc
        missing = [name for name in self.required_signals if name not in annotation.ego]
        if missing:
            raise ValueError(
                f"annotation {annotation_path} has no ego series {missing}, which action.signals "
                f"needs (it has {sorted(annotation.ego) or 'none'})"
            )
        return annotation

    def _labels(self, starts: np.ndarray, annotation: Annotation | None) -> np.ndarray:
        """EVENTUALLY label of every window (UNLABELLED without an annotation)."""
        ev_start, ev_end = self.spec.eventually_range(starts)
        return self._maneuvers(ev_start, ev_end, annotation)

    def _maneuvers(
        self, starts: np.ndarray, ends: np.ndarray, annotation: Annotation | None
    ) -> np.ndarray:
        """The maneuver id overlapping each [start, end) most (UNLABELLED without annotation)."""
        if annotation is None:
            return np.full(len(starts), UNLABELLED, dtype=np.int64)
        ids = {name: i for i, name in enumerate(self.label_names)}
        events = [(ids[e.maneuver], e.start, e.end) for e in annotation.events]
        return maneuvers_between(starts, ends, events, ids[DEFAULT_MANEUVER])

    def window_maneuvers(self, offset_s: float, length_s: float) -> np.ndarray:
        """Per window, the maneuver during [start + offset_s, + length_s), e.g. its SOON part."""
        out = []
        for video, starts in self._starts_by_video():
            at = starts + offset_s
            out.append(self._maneuvers(at, at + length_s, video.annotation))
        return np.concatenate(out)

    @property
    def window_starts(self) -> np.ndarray:
        """(len(self),) start of every window in seconds within its video."""
        return self._step.astype(np.float64) * self.spec.stride_s

    def _starts_by_video(self) -> list[tuple[_Video, np.ndarray]]:
        """Each usable video with its windows' starts (windows are stored video by video)."""
        counts = np.bincount(self._video_of, minlength=len(self._videos))
        parts = np.split(self.window_starts, np.cumsum(counts)[:-1])
        return list(zip(self._videos, parts, strict=True))

    def native_frames(self) -> Iterator[tuple[str, VideoMeta, np.ndarray]]:
        """Each usable video's path, probe and the sorted native frames its windows read."""
        for video, starts in self._starts_by_video():
            times = self.spec.frame_times(starts)  # (windows, T), as `sample` computes them
            indices = native_indices(times, video.meta.fps, video.meta.frames)
            yield video.path, video.meta, np.unique(indices)

    def signal_values(self, names: tuple[str, ...], frames: slice) -> torch.Tensor:
        """Ego series `names` at the `frames` of every window, (windows * frames, F): the values
        action statistics are computed from (annotations only, no decoding)."""
        rows = []
        for video, starts in self._starts_by_video():
            assert video.annotation is not None, "videos without ego series were left out"
            times = np.stack([self.spec.frame_times(t)[frames] for t in starts])
            at = video.annotation.signals_at(torch.from_numpy(times.reshape(-1)))
            rows.append(torch.stack([at[name] for name in names], dim=-1))
        return torch.cat(rows)

    def __len__(self) -> int:
        """Number of samples (windows over all usable videos)."""
        return len(self._step)

    @property
    def video_ids(self) -> np.ndarray:
        """(len(self),) index of the video each window comes from: the groups of held-out probes."""
        return self._video_of

    def __getitem__(self, index: int) -> dict:
        """The deterministic evaluation view of sample `index` (centre crop, no flip)."""
        return self.sample(index, None)

    def sample(self, index: int, generator: torch.Generator | None) -> dict:
        """Sample `index`: a training view when `self.train` and a generator is given."""
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range for {len(self)} video samples")
        video = self._videos[self._video_of[index]]
        start = float(self._step[index]) * self.spec.stride_s
        times = self.spec.frame_times(start)
        indices = native_indices(times, video.meta.fps, video.meta.frames)
        try:
            frames = self.reader(video.path, indices, self.backend, video.meta)
        except VideoDecodeError as exc:
            raise VideoDecodeError(f"{exc} (sample {index}: {start:.2f} s of {video.key})") from exc
        augment = generator if self.train else None
        clip, flipped = self.transform(frames, augment)
        label = int(self._label[index])
        signals = {}
        if video.annotation is not None:
            at = video.annotation.signals_at(torch.from_numpy(times))
            signals = {name: value.to(torch.float32) for name, value in at.items()}
        if flipped:
            label = self.transform.flip_label(label)
            signals = self.transform.flip_signals(signals)
        return {
            "video": clip,
            "label": torch.tensor(label, dtype=torch.int64),
            "index": int(index),
            "time": start,
            "path": video.key,
            "signals": signals,
        }
