"""CPU threads: torch's intra-op pool sized to the cores the DataLoader workers leave free.

torch starts one intra-op thread per core, and each DataLoader worker is another busy process
(torch itself sets one thread in every worker). On 2 cores with 1 worker that is 3 busy threads;
a second CPU-bound process beside it makes OpenMP's spinning threads wait on each other, and the
quickstart fell by 10x and more, not the 2x that sharing explains (`docs/PERFORMANCE.md`). So
training on CPU takes the cores this process may run on (`os.sched_getaffinity`, which cgroup
cpusets and `taskset` narrow; `os.cpu_count` ignores both) minus the loader workers, at least 1.
With the decoded-frame cache (`data/frame_cache.py`) the loader needs no worker on CPU, so the
step takes every core that other processes leave free: the count is checked at start-up and at
every logged step (`busy_elsewhere`, below). On a GPU the count is left alone: the host thread
launches kernels, its intra-op pool sits idle.

Evaluation (`eval`, `compare`) has no loader workers but long phases of small CPU ops (encoding
windows, fitting probes), where two spinning threads beside a busy process are slower than one
(`docs/PERFORMANCE.md`). So each phase also leaves out the cores other processes keep busy at its
start (`busy_elsewhere`: Linux's count of runnable threads, minus this process's), and sizes the
BLAS pools numpy and scikit-learn use (threadpoolctl) to the same count. In a container whose
/proc/stat shows the whole host's load, that count is the host's: pin the count with an override.

Override, first set wins: `TRITEMPORAL_NUM_THREADS`, then the usual `OMP_NUM_THREADS` and
`MKL_NUM_THREADS` (torchrun sets `OMP_NUM_THREADS=1` for several processes per node).
"""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

THREADS_ENV = "TRITEMPORAL_NUM_THREADS"
OVERRIDE_ENVS = (THREADS_ENV, "OMP_NUM_THREADS", "MKL_NUM_THREADS")  # first set wins

PROC_STAT = Path("/proc/stat")  # Linux: `procs_running`, the runnable threads right now
BUSY_SAMPLES, BUSY_INTERVAL_S = 5, 0.01  # median of 5 reads 10 ms apart: a blip is not load

logger = logging.getLogger(__name__)


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # macOS and Windows have no affinity call


def busy_elsewhere() -> int:
    """Threads of other processes ready to run now (the median of a few reads of Linux's
    `procs_running`, less this process's running threads); 0 where the OS does not say."""
    if not PROC_STAT.is_file():
        return 0
    reads = []
    for i in range(BUSY_SAMPLES):
        if i:
            time.sleep(BUSY_INTERVAL_S)
        running = _procs_running()
        if running is None:
            return 0
        reads.append(running - _own_running_threads())
    return max(0, round(statistics.median(reads)))


def _procs_running() -> int | None:
    """`procs_running` of /proc/stat, or None when it cannot be read."""
    try:
        for line in PROC_STAT.read_text().splitlines():
            if line.startswith("procs_running "):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _own_running_threads() -> int:
    """This process's threads in state R (running or runnable), at least 1: the reader."""
    running = 0
    for stat in Path("/proc/self/task").glob("*/stat"):
        with contextlib.suppress(OSError):  # a thread may end while we look
            if stat.read_text().rpartition(")")[2].split()[0] == "R":
                running += 1
    return max(1, running)


def intra_op_threads(
    cores: int, workers: int, env: Mapping[str, str], busy: int = 0
) -> tuple[int, str]:
    """Intra-op threads for a process with `workers` loader workers on `cores` cores, `busy` of
    them kept busy by other processes, and why.

    The first of `OVERRIDE_ENVS` set to a positive integer wins; an unusable value warns and is
    skipped. Otherwise the cores left after the workers (and the busy cores), at least 1.
    """
    for name in OVERRIDE_ENVS:
        value = env.get(name, "").strip()
        if not value:
            continue
        if value.isdigit() and int(value) > 0:
            return int(value), f"{name}={value}"
        warnings.warn(f"{name}={value!r} is not a positive integer; ignored", stacklevel=2)
    why = f"{cores} available cores - {workers} loader worker(s)"
    if busy:
        why += f" - {busy} busy with other processes"
    return max(1, cores - workers - busy), why


def cpu_thread_count(device: torch.device, workers: int, busy: int = 0) -> tuple[int, str]:
    """The intra-op threads a run on `device` with `workers` loader workers gets while `busy`
    cores are taken by other processes, and why."""
    if device.type != "cpu":
        return torch.get_num_threads(), f"torch's own count on {device.type}"
    return intra_op_threads(available_cores(), workers, os.environ, busy)


def size_cpu_threads(
    device: torch.device, workers: int, busy: int = 0, previous: int | None = None
) -> int:
    """Set torch's intra-op threads for a run on `device` (CPU only) with `workers` loader
    workers beside `busy` cores of other work, and log why (when it differs from `previous`);
    returns the count (on a GPU, torch's own, left alone)."""
    threads, why = cpu_thread_count(device, workers, busy)
    if device.type != "cpu" or threads == previous:
        return threads
    workers_note = ", 1 in each loader worker" if workers else ""
    logger.info("cpu threads: %d intra-op (%s)%s", threads, why, workers_note)
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
def phase_threads(device: torch.device) -> Iterator[int]:
    """Threads for one phase of evaluation work on `device` (CPU only): the available cores less
    those other processes keep busy now, for torch and the BLAS pools alike; restored on exit."""
    if device.type != "cpu":
        yield torch.get_num_threads()
        return
    threads, why = cpu_thread_count(device, 0, busy_elsewhere())
    logger.debug("cpu threads: %d (%s)", threads, why)
    with kept_threads():
        torch.set_num_threads(threads)
        with threadpool_limits(limits=threads, user_api="blas"):
            yield threads
