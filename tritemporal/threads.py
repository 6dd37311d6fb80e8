"""CPU threads: torch's intra-op pool sized to the cores the DataLoader workers leave free.

torch starts one intra-op thread per core, and each DataLoader worker is another busy process
(torch itself sets one thread in every worker). On 2 cores with 1 worker that is 3 busy threads;
a second CPU-bound process beside it makes OpenMP's spinning threads wait on each other, and the
quickstart fell by 10x and more, not the 2x that sharing explains (`docs/PERFORMANCE.md`). So
training on CPU takes the cores this process may run on (`os.sched_getaffinity`, which cgroup
cpusets and `taskset` narrow; `os.cpu_count` ignores both) minus the loader workers, at least 1.
With the decoded-frame cache (`data/frame_cache.py`) the loader needs no worker on CPU, so the
step takes every core. On a GPU the count is left alone: the host thread launches kernels, its
intra-op pool sits idle.

Override, first set wins: `TRITEMPORAL_NUM_THREADS`, then the usual `OMP_NUM_THREADS` and
`MKL_NUM_THREADS` (torchrun sets `OMP_NUM_THREADS=1` for several processes per node).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator, Mapping

import torch

THREADS_ENV = "TRITEMPORAL_NUM_THREADS"
OVERRIDE_ENVS = (THREADS_ENV, "OMP_NUM_THREADS", "MKL_NUM_THREADS")  # first set wins

logger = logging.getLogger(__name__)


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # macOS and Windows have no affinity call


def intra_op_threads(cores: int, workers: int, env: Mapping[str, str]) -> tuple[int, str]:
    """Intra-op threads for a process with `workers` loader workers on `cores` cores, and why.

    The first of `OVERRIDE_ENVS` set to a positive integer wins; an unusable value warns and is
    skipped. Otherwise the cores left after the workers, at least 1.
    """
    for name in OVERRIDE_ENVS:
        value = env.get(name, "").strip()
        if not value:
            continue
        if value.isdigit() and int(value) > 0:
            return int(value), f"{name}={value}"
        warnings.warn(f"{name}={value!r} is not a positive integer; ignored", stacklevel=2)
    return max(1, cores - workers), f"{cores} available cores - {workers} loader worker(s)"


def cpu_thread_count(device: torch.device, workers: int) -> tuple[int, str]:
    """The intra-op threads a run on `device` with `workers` loader workers gets, and why."""
    if device.type != "cpu":
        return torch.get_num_threads(), f"torch's own count on {device.type}"
    return intra_op_threads(available_cores(), workers, os.environ)


def size_cpu_threads(device: torch.device, workers: int) -> int:
    """Set torch's intra-op threads for a run on `device` (CPU only) with `workers` loader
    workers, and log why; returns the count (on a GPU, torch's own, left alone)."""
    threads, why = cpu_thread_count(device, workers)
    if device.type != "cpu":
        return threads
    logger.info("cpu threads: %d intra-op (%s), 1 in each loader worker", threads, why)
    torch.set_num_threads(threads)
    return threads


@contextlib.contextmanager
def kept_threads() -> Iterator[None]:
    """Restore torch's intra-op thread count on exit, whatever was set inside."""
    before = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def cpu_threads(device: torch.device, workers: int) -> Iterator[int]:
    """Size torch's intra-op threads for a run on `device` (CPU only), restoring them on exit."""
    with kept_threads():
        yield size_cpu_threads(device, workers)
