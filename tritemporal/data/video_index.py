"""Per-video metadata (frames, fps, duration, size, codec) probed once and cached beside the data.

Why a cache: probing opens every file, which for 100k videos takes minutes; a restart should only
`stat` them. `data.root/.tritemporal_index.json` maps each video's key (its path relative to the
root, or its absolute path when outside it) to its size and mtime_ns and either its metadata or
the reason it is unusable; an entry is re-probed only when the size or mtime changes, and an entry
whose file is gone is dropped. Only facts about the file live here: checks that depend on the
config (too short for the window span, annotation errors) are made by the dataset on every start.
A read-only root keeps the index in memory and says so once.

File format (version 3), JSON lines: a header, then one line per change, the last line of a key
winning (`null`: removed)::

    {"version": 3}
    ["videos/a.mp4", {"size": 1234, "mtime_ns": 1700000000000000000, "meta": {"frames": 16, ...}}]
    ["videos/b.mp4", {"size": 10, "mtime_ns": 1700000000000000000, "error": "truncated video ..."}]
    ["videos/a.mp4", null]

Changes are appended (probe results every `SAVE_EVERY` videos, so an interrupted build keeps its
progress), and the file is rewritten compacted once it holds more than twice as many lines as
live entries: saving costs O(changes) amortized, never O(index) per lookup. A torn last line
(a crash mid-append) is ignored.

Probing runs in threads for a few files and in `workers` processes (one per core) from
`PROCESS_MIN` files. Measured on 2 cores (docs/PERFORMANCE.md, "Video index and start-up at
scale"): on 10k tiny H.264 files, where the probe's Python work under the GIL dominates, 8 threads
take 1.0 ms a file and 2 forked processes 0.5-0.6 ms; on 640x360 to 1280x720 files, where
FFmpeg's decoding (GIL released) dominates, threads are up to 10% ahead (4-9 ms a file); a
forked pool starts in ~0.1 s and is not capped at 8 threads on a larger machine, so processes
from 64 files. Workers are forked on Linux, as DataLoader workers are (they only run PyAV on
paths; spawning them costs 2-3 s of imports per pool); `_probe` is a top-level function of
picklable arguments, so spawn works too. If the pool cannot start or a worker dies, the
remaining files are probed in threads with a warning.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tritemporal.data import decode
from tritemporal.data.decode import BadVideo, VideoMeta
from tritemporal.files import write_text
from tritemporal.runtime import workers_ignore_ctrl_c

log = logging.getLogger(__name__)

INDEX_FILE = ".tritemporal_index.json"
# 2: JSON lines, appended; VideoMeta.codec (version 1 files are re-probed). 3: raw streams
# (VideoMeta.raw); a version 2 file loads, less its raw streams (probed at FFmpeg's default fps)
INDEX_VERSION = 3
RAW_SUFFIXES = (".h264", ".264", ".avc", ".hevc", ".h265", ".265")  # re-probed from version 2
PROBE_THREADS = 8  # few files: threads overlap the I/O
PROCESS_MIN = 64  # new or changed files from which probing uses processes (see module doc)
CHUNK = 16  # files per task sent to a probing process
SAVE_EVERY = 2000  # probe results appended to the file at a time during a long build
# how probing processes start: fork on Linux (spawn re-imports torch in every worker, ~3 s per
# pool, and breaks under a `python -` main), the platform's default (spawn) elsewhere
PROCESS_START = "fork" if sys.platform.startswith("linux") else None

Entry = dict[str, Any]
_ENCODER = json.JSONEncoder(separators=(",", ":"))  # reused: json.dumps(...) makes one per call


class VideoIndex:
    """Cached probe results under `root`: `lookup` returns metadata or a reason per video."""

    def __init__(
        self,
        root: str | Path,
        threads: int = PROBE_THREADS,
        workers: int | None = None,
        process_min: int = PROCESS_MIN,
    ) -> None:
        """Load `root/.tritemporal_index.json` when present and valid (else start empty);
        `workers` probing processes (default: one per core) from `process_min` files."""
        self.root, self.path = Path(root), Path(root) / INDEX_FILE
        self.threads, self.process_min = threads, process_min
        self.workers = workers or os.cpu_count() or 1
        self.entries: dict[str, Entry] = {}
        self.probed = 0  # probes made by the last `lookup`
        self.mode = "none"  # how the last `lookup` probed: none, threads or processes
        self._lines: int | None = None  # lines after the header of a valid file, else None
        self._writable = True
        if self.path.is_file():
            try:
                self._load(self.path.read_text())
            except (OSError, UnicodeDecodeError) as exc:
                log.warning("ignoring unreadable video index %s (%s); re-probing", self.path, exc)

    def _load(self, text: str) -> None:
        lines = text.splitlines()
        try:
            header = json.loads(lines[0]) if lines else None
        except ValueError:
            header = None
        version = header.get("version") if isinstance(header, dict) else None
        if version not in (2, INDEX_VERSION):
            log.warning("ignoring %s: it is from another index version; re-probing", self.path)
            return
        self._lines = len(lines) - 1
        try:  # one parse for the whole file; line by line only when a line is torn
            rows = json.loads("[" + ",".join(lines[1:]) + "]")
        except ValueError:
            rows, self._lines = [], None  # the next save rewrites the file without it
            for line in lines[1:]:
                with contextlib.suppress(ValueError):
                    rows.append(json.loads(line))
        for row in rows:
            if isinstance(row, list) and len(row) == 2 and isinstance(row[0], str):
                if isinstance(row[1], dict):
                    self.entries[row[0]] = row[1]
                else:
                    self.entries.pop(row[0], None)
        if version != INDEX_VERSION:  # the next save rewrites the file with the new header
            self._lines = None
            for key in [key for key in self.entries if key.lower().endswith(RAW_SUFFIXES)]:
                del self.entries[key]

    def lookup(self, files: dict[str, Path]) -> dict[str, VideoMeta | str]:
        """Metadata (or the reason it is unusable) of each `key -> path`, probing only changes;
        entries of other keys whose file is gone are dropped from the index."""
        results: dict[str, VideoMeta | str] = {}
        todo: dict[str, tuple[Path, int, int]] = {}
        for key, path in files.items():
            try:
                stat = path.stat()
            except OSError as exc:
                results[key] = f"cannot read it: {exc.strerror or exc}"
                continue
            if stat.st_size == 0:
                results[key] = "zero-byte file (an empty or failed download?)"
                continue
            entry = self.entries.get(key)
            if (
                entry
                and entry.get("size") == stat.st_size
                and entry.get("mtime_ns") == stat.st_mtime_ns
            ):
                results[key] = VideoMeta(**entry["meta"]) if "meta" in entry else entry["error"]
            else:
                todo[key] = (path, stat.st_size, stat.st_mtime_ns)
        changes: dict[str, Entry | None] = {key: None for key in self._gone(files)}
        self.probed, self.mode = len(todo), "none"
        if todo:
            begin = time.perf_counter()
            log.info("probing %d new or changed videos (%d cached)", len(todo), len(results))
            paths = [path for path, _, _ in todo.values()]
            for (key, (_, size, mtime)), result in zip(
                todo.items(), self._probe(paths), strict=True
            ):
                record: Entry = {"size": size, "mtime_ns": mtime}
                if isinstance(result, VideoMeta):
                    record["meta"] = asdict(result)
                else:
                    record["error"] = result
                changes[key] = record
                results[key] = result
                if len(changes) >= SAVE_EVERY:
                    self._save(changes)
                    changes = {}
            log.info(
                "probed %d videos in %.1f s (%s)", len(todo), time.perf_counter() - begin, self.mode
            )
        if changes:
            self._save(changes)
        return results

    def _gone(self, files: dict[str, Path]) -> list[str]:
        """Indexed keys not looked up whose file no longer exists (a subset listing keeps the
        rest: a manifest may name only some of the videos under the root)."""
        others = [key for key in self.entries if key not in files]
        return [key for key in others if not _path(self.root, key).exists()]

    def _probe(self, paths: list[Path]) -> Iterator[VideoMeta | str]:
        """Probe results in the order of `paths` (threads, or processes for many files)."""
        if len(paths) >= self.process_min and self.workers > 1:
            self.mode, done = "processes", 0
            try:
                context = multiprocessing.get_context(PROCESS_START)
                pool = ProcessPoolExecutor(min(self.workers, len(paths)), mp_context=context)
                try:
                    with workers_ignore_ctrl_c():  # map submits every chunk: processes start
                        results = pool.map(_probe, paths, chunksize=CHUNK)
                    for result in results:
                        done += 1
                        yield result
                finally:  # an interrupted lookup must not wait for the queued probes
                    pool.shutdown(cancel_futures=True)
                return
            except (BrokenProcessPool, OSError) as exc:
                log.warning(
                    "cannot probe in processes (%s: %s); probing the remaining %d in threads",
                    type(exc).__name__,
                    exc,
                    len(paths) - done,
                )
                paths = paths[done:]
        self.mode = "threads"
        pool = ThreadPoolExecutor(max(1, min(self.threads, len(paths))))
        try:
            yield from pool.map(_probe, paths)
        finally:
            pool.shutdown(cancel_futures=True)

    def _save(self, changes: dict[str, Entry | None]) -> None:
        """Record `changes` (already applied to the caller's view) in memory and on disk."""
        for key, entry in changes.items():
            if entry is None:
                self.entries.pop(key, None)
            else:
                self.entries[key] = entry
        if not self._writable:
            return
        lines = self._lines
        if lines is not None and lines + len(changes) <= 2 * max(len(self.entries), SAVE_EVERY):
            text = "".join(_line(key, entry) for key, entry in changes.items())
            try:
                with self.path.open("a") as handle:
                    handle.write(text)
                self._lines = lines + len(changes)
                return
            except OSError as exc:
                self._read_only(exc)
                return
        self.save()

    def save(self) -> bool:
        """Write the whole index compacted, atomically; False (with a warning) when the root
        is not writable."""
        header = json.dumps({"version": INDEX_VERSION}) + "\n"
        text = header + "".join(_line(key, entry) for key, entry in self.entries.items())
        try:
            write_text(self.path, text)
        except OSError as exc:
            self._read_only(exc)
            return False
        self._lines = len(self.entries)
        return True

    def _read_only(self, exc: OSError) -> None:
        self._writable = False
        log.warning(
            "cannot write the video index %s (%s); keeping it in memory, so the next start "
            "probes these videos again",
            self.path,
            exc.strerror or exc,
        )


def _line(key: str, entry: Entry | None) -> str:
    return _ENCODER.encode([key, entry]) + "\n"


def _path(root: Path, key: str) -> Path:
    """The file of an index key (relative to the root, or absolute)."""
    path = Path(key)
    return path if path.is_absolute() else root / path


def _probe(path: Path) -> VideoMeta | str:
    """Metadata, or the reason the video is unusable (never raises for a bad file)."""
    try:
        return decode.probe_video(path)
    except BadVideo as exc:
        return str(exc)
    except Exception as exc:  # a probe must not abort indexing of 100k files
        return f"cannot open it (truncated or corrupt video): {type(exc).__name__}: {exc}"
