"""Files the project writes: whole or not at all, with the permissions the umask gives.

`atomic_path` hands out a temporary name in the target's folder; whatever the caller writes
there (a safetensors file, JSON, an MP4, a copy or a link) gets the mode a plain
`open(path, "w")` would give a new file (0o666 less the umask: 0644 under the usual 022) and is
renamed over the target with `os.replace`, so a reader sees the old file or the new one, never
half of one, and a failure or Ctrl-C leaves the target as it was. The mode is set explicitly
because some writers do not honour the umask: safetensors (and transformers through it) writes
0600 files, `tempfile.mkstemp` creates 0600 ones, `shutil.copy2` copies the source's mode.
`write_text` is the one-call form for text; `set_default_mode` fixes files that a
library wrote in place (transformers' `save_pretrained`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

_UMASK_LOCK = threading.Lock()
_PROC_STATUS = Path("/proc/self/status")  # Linux >= 4.7 lists the umask without changing it


def current_umask() -> int:
    """The process umask, read without leaving it changed."""
    with contextlib.suppress(OSError, ValueError):
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _UMASK_LOCK:  # os.umask can only be read by setting it: restrictive for the instant
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def default_mode() -> int:
    """The mode a new file gets from `open(path, "w")`: 0o666 less the umask."""
    return 0o666 & ~current_umask()


def set_default_mode(path: str | Path) -> None:
    """Give a file the project wrote `default_mode()` (a symlink is left alone: chmod would
    change the file it points to)."""
    path = Path(path)
    if not path.is_symlink():
        os.chmod(path, default_mode())


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` (an empty file the caller may overwrite or replace) that
    is renamed onto `path` with `default_mode()` when the block ends without an error; on an
    error or an interrupt it is removed and `path` is untouched. The folder must exist."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        set_default_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # the error that stopped the write is the one to see
            tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically with `default_mode()`; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
