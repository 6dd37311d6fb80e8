"""Per-video metadata (frames, fps, duration, size) probed once and cached beside the data.

Why a cache: probing opens every file, which for 100k videos takes minutes; a restart should only
`stat` them. `data.root/.tritemporal_index.json` maps each video's key (its path relative to the
root, or its absolute path when outside it) to its size and mtime_ns and either its metadata or
the reason it is unusable; an entry is re-probed only when the size or mtime changes. Only facts
about the file live here: checks that depend on the config (too short for the window span,
annotation errors) are made by the dataset on every start. A read-only root keeps the index in
memory and says so once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tritemporal.data import decode
from tritemporal.data.decode import BadVideo, VideoMeta

log = logging.getLogger(__name__)

INDEX_FILE = ".tritemporal_index.json"
INDEX_VERSION = 1
PROBE_THREADS = 8  # probing is mostly I/O and C code that releases the GIL


class VideoIndex:
    """Cached probe results under `root`: `lookup` returns metadata or a reason per video."""

    def __init__(self, root: str | Path, threads: int = PROBE_THREADS) -> None:
        """Load `root/.tritemporal_index.json` when present and valid (else start empty)."""
        self.root, self.path, self.threads = Path(root), Path(root) / INDEX_FILE, threads
        self.entries: dict[str, dict[str, Any]] = {}
        self.probed = 0  # probes made by the last `lookup`
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                if data.get("version") == INDEX_VERSION and isinstance(data.get("videos"), dict):
                    self.entries = data["videos"]
                else:
                    log.warning("ignoring %s: it is from another index version", self.path)
            except (OSError, ValueError, AttributeError) as exc:
                log.warning("ignoring unreadable video index %s (%s); re-probing", self.path, exc)

    def lookup(self, files: dict[str, Path]) -> dict[str, VideoMeta | str]:
        """Metadata (or the reason it is unusable) of each `key -> path`, probing only changes."""
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
        self.probed = len(todo)
        if todo:
            begin = time.perf_counter()
            log.info("probing %d new or changed videos (%d cached)", len(todo), len(results))
            with ThreadPoolExecutor(max(1, min(self.threads, len(todo)))) as pool:
                probed = pool.map(_probe, [path for path, _, _ in todo.values()])
                for (key, (_, size, mtime)), result in zip(todo.items(), probed, strict=True):
                    entry = {"size": size, "mtime_ns": mtime}
                    if isinstance(result, VideoMeta):
                        entry["meta"] = asdict(result)
                    else:
                        entry["error"] = result
                    self.entries[key] = entry
                    results[key] = result
            log.info("probed %d videos in %.1f s", len(todo), time.perf_counter() - begin)
            self.save()
        return results

    def save(self) -> bool:
        """Write the index atomically; False (with a warning) when the root is not writable."""
        data = {"version": INDEX_VERSION, "videos": self.entries}
        tmp = self.path.with_name(f"{INDEX_FILE}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(data, separators=(",", ":")))
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            log.warning(
                "cannot write the video index %s (%s); keeping it in memory, so the next start "
                "probes these videos again",
                self.path,
                exc.strerror or exc,
            )
            return False
        return True


def _probe(path: Path) -> VideoMeta | str:
    """Metadata, or the reason the video is unusable (never raises for a bad file)."""
    try:
        return decode.probe_video(path)
    except BadVideo as exc:
        return str(exc)
    except Exception as exc:  # a probe must not abort indexing of 100k files
        return f"cannot open it (truncated or corrupt video): {type(exc).__name__}: {exc}"
