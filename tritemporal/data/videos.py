"""Real driving videos as tri-temporal samples (`data.source: videos`).

Why it looks like this: one long video yields many samples (one per `data.stride_s`), each a
NOW | SOON | (gap) | EVENTUALLY window resampled to `data.fps` and labelled with the maneuver of
its EVENTUALLY window. Everything that can be wrong with an input is found when the dataset is
built, before any model exists: a bad file is either left out and listed in `summary`
(`data.on_error: skip`) or stops the run naming the file (`raise`); it never becomes a sample.
Layout (or `data.manifest`, a CSV with `path` and optional `annotation` columns)::

    ROOT/videos/**/<clip>.mp4|.ts|.MOV|.hevc|...  any container PyAV reads, any sub-folders
                                                  (video_files.py); or <clip>.frames, numbered
                                                  images listed in a descriptor (frame_sequence.py)
    ROOT/annotations/**/<clip>.json               optional, mirrors videos/ (see annotations.py)

Every other file under videos/ is listed in `summary` as ignored, grouped by reason. A raw
.h264/.hevc stream has no timestamps: its frame rate is `data.raw_fps`, else the one its headers
state; one with neither is skipped naming the key.
"""

from __future__ import annotations

import dataclasses
import logging
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
from tritemporal.data.decode import VideoDecodeError, VideoMeta, check_backend, read_frames
from tritemporal.data.ego_motion import future_motion, missing_motion_series
from tritemporal.data.transforms import ClipTransform
from tritemporal.data.video_files import (  # find_videos, LAYOUT: re-exported for callers
    LAYOUT,
    NOT_VIDEO,
    Ignored,
    find_videos,
    has_video_extension,
    is_video,
    scan_videos,
    summarize,
)
from tritemporal.data.video_index import VideoIndex
from tritemporal.data.windows import WindowSpec, maneuvers_between, native_indices, window_starts

EGO_TARGET_NEEDS = (
    "loss.event_target=ego trains EVENTUALLY toward the ego's future motion, from the `speed` "
    "and `heading` (or `yaw_rate`) ego series of every training video"
)

log = logging.getLogger(__name__)

__all__ = ["LAYOUT", "DataSummary", "VideoClips", "find_videos", "label_vocabulary"]


@dataclass
class DataSummary:
    """What a build found: counts, samples per EVENTUALLY label, every skipped video and every
    other file under videos/ that is not used (`ignored`)."""

    videos_found: int
    videos_used: int
    samples: int
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    label_counts: dict[str, int] = field(default_factory=dict)  # incl. "unlabelled"
    ignored: list[Ignored] = field(default_factory=list)

    def format(self, max_skipped: int = 5) -> str:
        """A few human-readable lines: counts, labels, the first skipped videos and the ignored
        files grouped by reason and extension."""
        others = f"; other files: {len(self.ignored)} ignored" if self.ignored else ""
        lines = [
            f"videos: {self.videos_found} found, {self.videos_used} used, "
            f"{len(self.skipped)} skipped; samples: {self.samples}{others}",
            "labels: " + ", ".join(f"{k} {v}" for k, v in self.label_counts.items() if v),
        ]
        if self.skipped:
            lines.append(f"skipped ({len(self.skipped)}):")
            lines += [f"  {path}: {reason}" for path, reason in self.skipped[:max_skipped]]
            if len(self.skipped) > max_skipped:
                lines.append(f"  ... and {len(self.skipped) - max_skipped} more")
        if self.ignored:
            lines.append(f"ignored ({len(self.ignored)}):")
            lines += [f"  {line}" for line in summarize(self.ignored)]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready dict listing every skipped and every ignored file."""
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


@dataclass(frozen=True)
class VideoWindows:
    """A usable video's windows as its annotation sees them (no decoding): the video's key,
    duration (s) and annotation (None: unlabelled), and the start (s) of each of its windows."""

    key: str
    duration: float
    annotation: Annotation | None
    starts: np.ndarray


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
        check_backend(d.backend)
        self.raw_fps = d.raw_fps
        self.label_names = label_vocabulary(d.extra_maneuvers)
        # an action-conditioned SOON predictor needs these ego series in every video
        conditioned = config.predictor.action_conditioning
        self.required_signals = tuple(config.action.signals) if conditioned else ()
        # the ego's future motion is the EVENTUALLY target of training windows (event_target=ego)
        self.ego_motion = train and config.loss.trains_ego_target
        self.label_events = d.label_events
        self.spec = WindowSpec.from_config(config)
        self.transform = ClipTransform.from_config(config, self.label_names)
        self.reader: FrameReader = read_frames  # a frame cache replaces it (frame_cache.py)
        clock = time.perf_counter()
        listed, ignored = scan_videos(self.root, d.manifest)
        if not listed:
            raise FileNotFoundError(self._none_found(ignored))
        lap = [time.perf_counter()]
        metas = VideoIndex(self.root).lookup({key: path for key, path, _ in listed})
        lap.append(time.perf_counter())
        checking = 0.0  # seconds in `_check` (mostly annotation parsing) within the loop
        if d.manifest is None:  # a file of another extension that holds no video is no video
            listed = [item for item in listed if self._video_or_ignored(item[0], metas, ignored)]
        if not listed:
            raise FileNotFoundError(self._none_found(ignored))

        self._videos: list[_Video] = []
        skipped: list[tuple[str, str]] = []
        steps, labels = [], []  # per video: window numbers (start = k * stride) and labels
        raw = 0  # raw streams used: each read decodes from the stream's start or the last read
        for key, path, annotation_path in listed:
            meta = metas[key]
            meta = self._timed(meta) if isinstance(meta, VideoMeta) else meta
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
            raw += meta.raw
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
            len(listed), len(self._videos), len(self._step), skipped, label_counts, ignored
        )
        report = log.warning if skipped else log.info
        report("video data under %s\n%s", self.root, self.summary.format())
        if raw:
            log.info(
                "%d raw streams (.h264/.hevc): with no timestamps to seek by, a sample decodes "
                "from the stream's start (or the previous read); remux them into .mp4 for faster "
                "random access",
                raw,
            )
        log.info("start-up: %s", ", ".join(f"{k} {v:.1f} s" for k, v in self.build_seconds.items()))

    def _none_found(self, ignored: list[Ignored]) -> str:
        """The error of a root without videos, with what it has instead."""
        other = "\n".join(summarize(ignored))
        return f"no videos found under {self.root}; {LAYOUT}" + (f"\n{other}" if other else "")

    @staticmethod
    def _video_or_ignored(
        key: str, metas: dict[str, VideoMeta | str], ignored: list[Ignored]
    ) -> bool:
        """Whether a listed file counts as a video; one of another extension whose probe finds
        no video (or a still image) is added to `ignored` instead."""
        meta = metas[key]
        if has_video_extension(key) or (isinstance(meta, VideoMeta) and is_video(meta.frames)):
            return True
        detail = "PyAV reads no video from it" if isinstance(meta, str) else "a still image"
        ignored.append(Ignored(key, NOT_VIDEO, detail))
        return False

    def _timed(self, meta: VideoMeta) -> VideoMeta:
        """`meta` with the frame rate `data.raw_fps` states for a raw stream."""
        if not meta.raw or self.raw_fps is None:
            return meta
        return dataclasses.replace(meta, fps=self.raw_fps, duration=meta.frames / self.raw_fps)

    def _check(self, meta: VideoMeta | str, annotation_path: Path | None) -> Annotation | None:
        """Raise ValueError with the reason a video is unusable; else return its annotation."""
        if isinstance(meta, str):
            raise ValueError(meta)
        if meta.raw and not meta.fps > 0:
            raise ValueError(
                f"a raw {meta.codec} stream whose headers state no frame rate (no VUI timing): "
                "set data.raw_fps=<its frames per second>"
            )
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
            if self.ego_motion:
                raise ValueError(f"no annotation file: {EGO_TARGET_NEEDS}")
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
        reason = missing_motion_series(annotation) if self.ego_motion else None
        if reason is not None:
            raise ValueError(f"annotation {annotation_path} has {reason}: {EGO_TARGET_NEEDS}")
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
        kept = [e for e in annotation.events if self.label_events == "all" or e.source == "auto"]
        events = [(ids[e.maneuver], e.start, e.end) for e in kept]
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

    def video_windows(self) -> list[VideoWindows]:
        """Each usable video with its windows' starts, in window order (`video_ids` order): what
        reads the annotations beside the windows, e.g. the ego-status and time-to-maneuver rows
        of `tritemporal compare`."""
        return [
            VideoWindows(v.key, v.meta.duration, v.annotation, s)
            for v, s in self._starts_by_video()
        ]

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

    def ego_motion_values(self) -> torch.Tensor:
        """The future-motion vector of every window, (windows, 4 K), from the annotations (no
        decoding): what the EVENTUALLY objective standardises its ego target with."""
        rows = []
        for video, starts in self._starts_by_video():
            assert video.annotation is not None, "videos without ego series were left out"
            rows.append(future_motion(video.annotation, self.spec, starts))
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
        sample = {
            "video": clip,
            "label": torch.tensor(label, dtype=torch.int64),
            "index": int(index),
            "time": start,
            "path": video.key,
            "signals": signals,
        }
        if self.ego_motion:
            assert video.annotation is not None, "videos without ego series were left out"
            motion = future_motion(video.annotation, self.spec, np.array([start]), flipped)
            sample["ego_motion"] = motion[0]
        return sample
