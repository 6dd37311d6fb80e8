"""Long evaluation phases (extraction, each probe): threads sized per phase, a bar with an ETA.

`eval` and `compare` run for minutes on CPU: on a terminal each phase draws a tqdm bar (rate and
ETA); elsewhere (a log file, `nohup`, CI) the phase logs a line with its count and ETA at most
every `LOG_EVERY_S` seconds, so a long phase is never silent. Either way the phase ends with one
line of its count, duration and threads, which is what `docs/PERFORMANCE.md` reads phase times
from. Each phase sizes its CPU threads when it starts (`threads.phase_threads`), so a process that
starts competing midway is met at the next phase.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator

import torch
from tqdm.auto import tqdm

from tritemporal.threads import phase_threads

logger = logging.getLogger(__name__)

LOG_EVERY_S = 30.0  # without a terminal: one progress line per this many seconds at most


@contextlib.contextmanager
def phase(
    desc: str, total: int, unit: str, device: torch.device
) -> Iterator[Callable[[int], None]]:
    """A progress reporter for `total` units of work on `device`: call the yielded function with
    the units just done."""
    with phase_threads(device) as threads, _reporter(desc, total, unit, threads) as advance:
        yield advance


@contextlib.contextmanager
def _reporter(desc: str, total: int, unit: str, threads: int) -> Iterator[Callable[[int], None]]:
    """`phase`'s bar or log lines around the caller's work."""
    show = sys.stderr.isatty()
    bar = tqdm(total=total, desc=desc, unit=unit, disable=not show, leave=False, dynamic_ncols=True)
    start = last_log = time.perf_counter()
    done = 0

    def advance(units: int) -> None:
        nonlocal done, last_log
        done += units
        bar.update(units)
        now = time.perf_counter()
        if not show and now - last_log >= LOG_EVERY_S and done < total:
            eta = (now - start) / done * (total - done)
            logger.info("%s: %d/%d %s, ETA %.0f s", desc, done, total, unit, eta)
            last_log = now

    try:
        yield advance
    finally:
        bar.close()
    took = time.perf_counter() - start
    logger.info("%s: %d %s in %.1f s (%d threads)", desc, done, unit, took, threads)
