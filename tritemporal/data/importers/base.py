"""What every dataset importer shares: items, the registry, the resumable import loop.

`tritemporal import FORMAT SRC --out DIR` turns a downloaded dataset into the layout training
reads (`DIR/videos/...`, `DIR/annotations/<same name>.json`, schema 3 with the ego series and
auto-labelled maneuvers). A format contributes two steps, both per item (one video):

- `discover(src)`: list the items, reading file names only, plus what cannot be an item (a
  video without its sidecar, a sidecar without its video) as counted skips;
- `convert(item, out)`: read the sidecars, write the video (a link, a copy, or a remux where the
  source cannot be read as it is) and the annotation. Bad input raises `ImportItemError` naming
  the file and what is wrong: the loop counts and lists it (or stops under `on_error="raise"`),
  and never leaves a half-written file (annotations and copies are written atomically).

Resuming: every finished item appends one line to `DIR/.tritemporal_import.jsonl` with the size
and mtime of its sources; a rerun skips items whose sources are unchanged and whose outputs
exist, so an interrupted import of 100k videos continues where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tritemporal.config import AutoLabelConfig
from tritemporal.data.annotations import Event, write_annotation
from tritemporal.data.ego_labels import AUTO, ego_events
from tritemporal.files import atomic_path

log = logging.getLogger(__name__)

STATE_FILE = ".tritemporal_import.jsonl"
DIGITS = {"latitude": 7, "longitude": 7}  # decimals written per series (default 4): 1 cm


class ImportItemError(ValueError):
    """One item cannot be imported; the message names the file and the problem."""


@dataclass(frozen=True)
class Item:
    """One video to import: its output name (relative, no suffix) and the files it reads."""

    name: str
    sources: tuple[Path, ...]  # fingerprinted for resuming; the first is the video
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # format-specific


@dataclass
class ImportOptions:
    """How to write the outputs (`tritemporal import` flags)."""

    copy: bool = False  # copy videos instead of linking them
    fps: float | None = None  # frame folders: the stated frame rate
    encode: bool = False  # frame folders: re-encode to H.264 MP4 instead of reading the images
    split_gap_s: float = 1.0  # frame folders: a longer hole between frames starts a new video
    split: str | None = None  # bdd100k: import only this split (train, val, test)
    channel: str | None = None  # frames: import only this nuScenes camera (CAM_FRONT)
    labels: AutoLabelConfig = field(default_factory=AutoLabelConfig)


@dataclass
class Converted:
    """What `convert` wrote for one item."""

    video: Path
    annotation: Path | None  # None: the dataset has no ego series (a frame folder)
    events: list[Event]
    notes: list[str] = field(default_factory=list)  # quirks met and handled, e.g. GPS dropouts


@dataclass
class ImportSummary:
    """Counts of one import run, printed by the CLI and returned to Python callers."""

    format: str
    found: int = 0
    imported: int = 0
    resumed: int = 0  # finished by an earlier run and unchanged since
    skipped: list[tuple[str, str]] = field(default_factory=list)
    events: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def format_lines(self, max_skipped: int = 5) -> str:
        """The summary as the CLI prints it."""
        lines = [
            f"{self.format}: {self.found} videos found; imported {self.imported}, already "
            f"imported {self.resumed}, skipped {len(self.skipped)} ({self.seconds:.1f} s)"
        ]
        lines += [f"  skipped {name}: {why}" for name, why in self.skipped[:max_skipped]]
        if len(self.skipped) > max_skipped:
            lines.append(f"  ... and {len(self.skipped) - max_skipped} more")
        lines += [f"  note: {n} x {what}" for what, n in sorted(self.notes.items())]
        if self.events:
            counts = ", ".join(f"{m} {n}" for m, n in sorted(self.events.items()))
            lines.append(f"  auto labels of this run: {counts}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready."""
        return {
            "format": self.format, "found": self.found, "imported": self.imported,
            "resumed": self.resumed, "skipped": self.skipped, "events": dict(self.events),
            "notes": dict(self.notes), "seconds": round(self.seconds, 3),
        }  # fmt: skip


class Importer:
    """A dataset format: `discover` items under a source folder, `convert` one of them."""

    name = ""
    video_suffix = ".mp4"  # the suffix `convert` writes (`item.extra["video_suffix"]` wins)

    def discover(self, src: Path, options: ImportOptions) -> tuple[list[Item], list[tuple]]:
        """Items under `src` and (name, reason) of files that cannot become one."""
        raise NotImplementedError

    def convert(self, item: Item, out: Path, options: ImportOptions) -> Converted:
        """Write the item's video and annotation under `out`; ImportItemError on bad input."""
        raise NotImplementedError

    def outputs(self, item: Item, out: Path) -> tuple[Path, ...]:
        """Where `convert` writes the item's video and annotation (the files a resume needs)."""
        suffix = item.extra.get("video_suffix", self.video_suffix)
        return out / "videos" / f"{item.name}{suffix}", annotation_path(out, item.name)


IMPORTERS: dict[str, Importer] = {}


def register_importer(cls: type[Importer]) -> type[Importer]:
    """Class decorator: make a format available as `tritemporal import NAME`."""
    IMPORTERS[cls.name] = cls()
    return cls


def annotation_path(out: Path, name: str) -> Path:
    """`out/annotations/<name>.json`, the file training pairs with `videos/<name>.*`."""
    return out / "annotations" / f"{name}.json"


def place_video(src: Path, dst: Path, copy: bool) -> Path:
    """Link (absolute) or copy `src` to `dst`, replacing what is there; a copy is atomic."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        if copy:
            shutil.copy2(src, tmp)  # the umask's mode, not the source's, once in place
        else:
            tmp.unlink()  # the link takes the temporary name itself
            os.symlink(src.resolve(), tmp)
    return dst


def write_item_annotation(
    path: Path, time_s: np.ndarray, series: dict[str, np.ndarray], source: dict[str, Any],
    labels: AutoLabelConfig,
) -> list[Event]:  # fmt: skip
    """Ego series (rounded: `DIGITS`) plus their auto labels, written atomically."""
    if len(time_s) < 2:
        raise ImportItemError(f"{source.get('file', path)}: fewer than 2 usable ego samples")
    ego = {"time": [round(float(t), 4) for t in time_s]}
    for key, values in series.items():
        digits = DIGITS.get(key, 4)
        ego[key] = [round(float(x), digits) for x in values]
    events = ego_events(np.asarray(ego["time"]), {k: np.asarray(v) for k, v in ego.items()}, labels)
    write_annotation(path, events, ego, source)
    return events


def strictly_increasing(time_s: np.ndarray) -> np.ndarray:
    """Indices that keep a time series strictly increasing: sorted, duplicates dropped (first
    kept); a sensor log may repeat or reorder a timestamp."""
    order = np.argsort(time_s, kind="stable")
    keep = np.concatenate([[True], np.diff(time_s[order]) > 0]) if len(order) else order > 0
    return order[keep]


def _fingerprint(item: Item) -> list[list]:
    out = []
    for path in item.sources:
        stat = path.stat()
        out.append([str(path), stat.st_size, stat.st_mtime_ns])
    return out


def _finished(out: Path) -> dict[str, list]:
    """name -> fingerprint of every item an earlier run finished (a torn last line is ignored)."""
    state = out / STATE_FILE
    done: dict[str, list] = {}
    if state.is_file():
        for line in state.read_text().splitlines():
            try:
                record = json.loads(line)
                done[record["name"]] = record["sources"]
            except (ValueError, KeyError, TypeError):
                continue
    return done


def run_import(
    fmt: str,
    src: str | Path,
    out: str | Path,
    options: ImportOptions | None = None,
    on_error: str = "skip",
    progress: Callable[[Iterator], Iterator] | None = None,
) -> ImportSummary:
    """Import every item of dataset format `fmt` under `src` into `out` (module docstring)."""
    if fmt not in IMPORTERS:
        raise ValueError(f"unknown import format {fmt!r}; known: {', '.join(sorted(IMPORTERS))}")
    src, out = Path(src), Path(out)
    if not src.exists():
        raise FileNotFoundError(f"import source {src} does not exist")
    if out.resolve().is_relative_to(src.resolve()):
        raise ValueError(
            f"--out {out} is inside the dataset {src}: the import would find its own outputs; "
            "write it elsewhere"
        )
    options = options or ImportOptions()
    importer = IMPORTERS[fmt]
    begin = time.perf_counter()
    items, skipped = importer.discover(src, options)
    summary = ImportSummary(fmt, found=len(items), skipped=list(skipped))
    if on_error == "raise" and skipped:
        raise ImportItemError(f"{skipped[0][0]}: {skipped[0][1]} (on_error=raise)")
    out.mkdir(parents=True, exist_ok=True)
    done = _finished(out)
    with (out / STATE_FILE).open("a") as state:
        for item in progress(items) if progress else items:
            try:
                fingerprint = _fingerprint(item)
            except OSError as exc:
                summary.skipped.append((item.name, f"cannot read it: {exc.strerror or exc}"))
                continue
            if done.get(item.name) == fingerprint and all(
                p.exists() for p in importer.outputs(item, out)
            ):
                summary.resumed += 1
                continue
            try:
                result = importer.convert(item, out, options)
            except ImportItemError as exc:
                if on_error == "raise":
                    raise
                summary.skipped.append((item.name, str(exc)))
                continue
            summary.imported += 1
            summary.events.update(e.maneuver for e in result.events if e.source == AUTO)
            summary.notes.update(result.notes)
            state.write(json.dumps({"name": item.name, "sources": fingerprint}) + "\n")
            state.flush()
    summary.seconds = time.perf_counter() - begin
    return summary
