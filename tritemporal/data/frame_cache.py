"""Decoded-frame cache (`data.cache`): a video corpus that fits in memory is decoded once.

Why: on 2 cores the quickstart trained at about half the rate `tritemporal bench` times for its
step, because decoding held a core (one loader worker beside one intra-op thread, `threads.py`),
and it decoded the same 24 videos every epoch. Decoded once into memory, a sample is a slice of
an array: on CPU the loader needs no worker and the step gets every core.

What is cached: per video, the native frames its windows read (`VideoClips.native_frames`, the
union over its windows at `data.fps`), after the deterministic part of a view. With centre crops
(`data.train_crop=center`, or an evaluation set) that is the centre crop resized to
`clip.image_size`, so sampling only slices; with random-resized crops it is the decoded frame at
its own size, because the crop box is drawn on it (resizing first would change the view). The
random part (crop box, flip) still runs per sample from the sample's generator, and the frames are
read by `decode.read_frames`, as an uncached sample reads them: a cached run sees the batches an
uncached one sees, bit for bit. Layout: one flat uint8 tensor; per video its byte offset, frame
size and sorted native indices. `FrameCache.read` stands in for `read_frames` on the dataset
(`VideoClips.reader`).

When: `auto` caches when the decoded frames fit `data.cache_max_gb` (unset: `MEMORY_FRACTION` of
the memory available at start-up, split between the processes of a node); `on` always, and stops
with the size it needs when they do not fit; `off` never. Loader workers: none on CPU (sampling
is a slice; a worker would only take a core from the step); on a GPU `data.num_workers` workers
still crop and resize, and the tensor is moved to shared memory before they start, so each maps
the same pages under any start method, with no copy per worker (the budget is then also capped
by half of /dev/shm's free space).

Under torchrun every process caches the whole corpus (over the epochs a rank's slice of the
batch comes from any video), each in its own memory: the default budget divides by
LOCAL_WORLD_SIZE. Filling decodes chunks of frames in a DataLoader's worker processes (the
available cores, split between the node's processes) behind a progress bar.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from tritemporal.config import TriTemporalConfig
from tritemporal.data.decode import VideoDecodeError, VideoMeta, read_frames
from tritemporal.data.transforms import center_box, crop_resize
from tritemporal.data.videos import VideoClips
from tritemporal.runtime import local_world_size
from tritemporal.threads import available_cores

MEMORY_FRACTION = 0.25  # of the available memory, when data.cache_max_gb is unset
SHM_FRACTION = 0.5  # of /dev/shm's free space, when loader workers share the cache there
CHUNK_BYTES = 32 * 2**20  # decoded frames per fill task, at most (fewer when /dev/shm is small)
FILL_PREFETCH = 2  # fill tasks in flight per worker
GB = 1e9  # data.cache_max_gb counts decimal gigabytes
SHM = Path("/dev/shm")
_UNLIMITED = 2**60  # cgroup v1 reports "no limit" as a number near 2**63


@dataclass(frozen=True)
class CachedVideo:
    """One video's frames in the cache: which native frames, at what size, from which byte."""

    path: str
    meta: VideoMeta
    indices: np.ndarray  # sorted native frame indices, int64
    height: int
    width: int
    offset: int  # in the cache's buffer

    @property
    def frame_bytes(self) -> int:
        """Bytes of one cached uint8 RGB frame."""
        return self.height * self.width * 3

    @property
    def nbytes(self) -> int:
        """Bytes of all of this video's cached frames."""
        return len(self.indices) * self.frame_bytes


@dataclass(frozen=True)
class CachePlan:
    """What a cache of a dataset would hold, known before any frame is decoded."""

    videos: list[CachedVideo]
    backend: str  # data.backend, as the dataset reads with it
    resize: tuple[int, int] | None  # frames centre-cropped and resized to (H, W); None: decoded
    total_videos: int  # the dataset's videos; more than len(videos) when planning stopped early
    nbytes: int

    @property
    def complete(self) -> bool:
        """Whether every video was planned (`plan_cache` stops once past its limit)."""
        return len(self.videos) == self.total_videos

    @property
    def frames(self) -> int:
        """Frames planned, over all planned videos."""
        return sum(len(v.indices) for v in self.videos)


def plan_cache(dataset: VideoClips, limit: int | None = None) -> CachePlan:
    """Every video's place in a cache of `dataset`; stops once past `limit` bytes, if given."""
    t = dataset.transform
    resize = t.out_hw if not dataset.train or t.train_crop == "center" else None
    videos, offset = [], 0
    for path, meta, indices in dataset.native_frames():
        height, width = resize or (meta.height, meta.width)
        videos.append(CachedVideo(path, meta, indices.astype(np.int64), height, width, offset))
        offset += videos[-1].nbytes
        if limit is not None and offset > limit:
            break
    return CachePlan(videos, dataset.backend, resize, dataset.summary.videos_used, offset)


class FrameCache:
    """Every planned video's frames in one uint8 tensor; `read` stands in for `read_frames`."""

    def __init__(self, plan: CachePlan, shared: bool = False) -> None:
        """Allocate the buffer (in shared memory when loader workers will read it)."""
        self.buffer = torch.empty(plan.nbytes, dtype=torch.uint8)
        if shared:  # before any worker starts: each maps these pages, none copies them
            self.buffer.share_memory_()
        self.videos = {video.path: video for video in plan.videos}

    @property
    def nbytes(self) -> int:
        """Bytes of decoded frames held."""
        return self.buffer.numel()

    def frames(self, video: CachedVideo) -> torch.Tensor:
        """All cached frames of `video`, (N, H, W, 3) uint8: a view of the buffer."""
        flat = self.buffer[video.offset : video.offset + video.nbytes]
        return flat.view(len(video.indices), video.height, video.width, 3)

    def read(
        self,
        path: str,
        indices: Sequence[int],
        backend: str = "auto",
        meta: VideoMeta | None = None,
    ) -> torch.Tensor:
        """Native frames `indices` of `path` (repeats allowed) as uint8 (T, H, W, 3), from memory;
        `read_frames`' signature, whose backend and probe it does not need."""
        video = self.videos[str(path)]
        wanted = np.asarray(indices, dtype=np.int64)
        rows = np.searchsorted(video.indices, wanted)
        assert rows.max() < len(video.indices) and np.array_equal(video.indices[rows], wanted), (
            f"frames {wanted.tolist()} of {path} are not all in the frame cache"
        )
        return self.frames(video)[torch.from_numpy(rows)]


class _Chunks(Dataset):
    """Fill task k: chunk k's frames decoded by `read_frames` (and centre-cropped and resized
    when the plan says so), (n, H, W, 3) uint8."""

    def __init__(self, plan: CachePlan, chunks: list[tuple[int, int, int]]) -> None:
        self.plan, self.chunks = plan, chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, k: int) -> torch.Tensor:
        number, start, stop = self.chunks[k]
        video = self.plan.videos[number]
        frames = read_frames(video.path, video.indices[start:stop], self.plan.backend, video.meta)
        _, height, width, _ = frames.shape
        if self.plan.resize is not None:
            box = center_box(height, width, self.plan.resize)
            frames = crop_resize(frames, box, self.plan.resize).permute(1, 2, 3, 0).contiguous()
        elif (height, width) != (video.height, video.width):
            raise VideoDecodeError(
                f"video {video.path}: decodes to {width}x{height} frames but was indexed at "
                f"{video.width}x{video.height}; re-encode it or set data.cache=off"
            )
        return frames


def fill_cache(
    plan: CachePlan, shared: bool = False, progress: bool = False, workers: int | None = None
) -> FrameCache:
    """Decode every planned frame into a new `FrameCache` with `workers` processes (None: the
    available cores, split between the node's processes; 0: in this process)."""
    assert plan.complete, "a plan that stopped at its limit cannot fill a cache"
    cache = FrameCache(plan, shared)
    workers, chunk_bytes = _fill_settings(plan, workers)
    chunks = []  # (video number, first row, end row)
    for number, video in enumerate(plan.videos):
        step, count = max(1, chunk_bytes // video.frame_bytes), len(video.indices)
        chunks += [(number, a, min(a + step, count)) for a in range(0, count, step)]
    workers = min(workers, len(chunks))
    decoded = DataLoader(
        _Chunks(plan, chunks),
        batch_size=None,
        num_workers=workers if workers > 1 else 0,  # one worker only adds a copy
        prefetch_factor=FILL_PREFETCH if workers > 1 else None,
    )
    with tqdm(total=plan.frames, unit="frame", desc="frame cache", disable=not progress) as bar:
        for (number, start, stop), frames in zip(chunks, decoded, strict=True):
            cache.frames(plan.videos[number])[start:stop] = frames
            bar.update(stop - start)
    return cache


def _fill_settings(plan: CachePlan, workers: int | None) -> tuple[int, int]:
    """Fill processes and bytes per task: the decoded chunks in flight pass through /dev/shm,
    so they are kept to half of its free space (a 64 MB Docker default included)."""
    if workers is None:
        workers = available_cores() // local_world_size()
    if workers <= 1 or not plan.videos:
        return 0, CHUNK_BYTES
    free = shm_free()
    if free is None:
        return workers, CHUNK_BYTES
    chunk_bytes = min(CHUNK_BYTES, free // (2 * (FILL_PREFETCH + 1) * workers))
    if chunk_bytes < max(v.frame_bytes for v in plan.videos):
        return 0, CHUNK_BYTES  # not one frame per task fits: decode in this process
    return workers, chunk_bytes


def available_memory() -> int | None:
    """Bytes this process may still take: the kernel's MemAvailable, capped by a cgroup memory
    limit (less its usage, reclaimable file cache not counted); None when nothing says."""
    known = []
    meminfo = _read("/proc/meminfo")
    for line in (meminfo or "").splitlines():
        if line.startswith("MemAvailable:"):
            known.append(int(line.split()[1]) * 1024)
    for folder, limit_name, usage_name, cache_name in (
        ("/sys/fs/cgroup", "memory.max", "memory.current", "inactive_file"),  # cgroup v2
        ("/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes",
         "total_inactive_file"),  # cgroup v1
    ):  # fmt: skip
        limit, usage = _read(f"{folder}/{limit_name}"), _read(f"{folder}/{usage_name}")
        if not (limit and limit.strip().isdigit() and usage and usage.strip().isdigit()):
            continue  # no such cgroup, or "max": no limit
        if int(limit) >= _UNLIMITED:
            continue
        stat = (_read(f"{folder}/memory.stat") or "").splitlines()
        counts = dict(line.split()[:2] for line in stat if len(line.split()) >= 2)
        reclaimable = int(counts.get(cache_name, 0))
        known.append(max(0, int(limit) - int(usage) + reclaimable))
    if not known and hasattr(os, "sysconf"):  # no /proc (macOS): the physical memory
        with contextlib.suppress(ValueError, OSError):
            known.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return min(known) if known else None


def shm_free() -> int | None:
    """Free bytes of /dev/shm, where torch's shared tensors live on Linux (None: no such place)."""
    return shutil.disk_usage(SHM).free if SHM.is_dir() else None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def cache_budget(max_gb: float | None, shared: bool) -> tuple[int | None, str]:
    """Bytes of decoded frames this process may cache, and where that number comes from (None:
    the available memory is unknown)."""
    if max_gb is not None:
        budget, why = int(max_gb * GB), f"data.cache_max_gb={max_gb:g}"
    else:
        available = available_memory()
        if available is None:
            return None, "the available memory is unknown: set data.cache_max_gb"
        processes = local_world_size()
        budget = int(available * MEMORY_FRACTION / processes)
        why = f"{MEMORY_FRACTION:.0%} of the {size_text(available)} available"
        why += f" / {processes} processes on this node" if processes > 1 else ""
    free = shm_free() if shared else None
    if free is not None and free * SHM_FRACTION < budget:
        budget = int(free * SHM_FRACTION)
        why = f"{SHM_FRACTION:.0%} of /dev/shm's {size_text(free)} free, where workers share it"
    return budget, why


def size_text(nbytes: float) -> str:
    """Decimal kB, MB or GB: '10.0 kB', '51.2 MB', '3.20 GB'."""
    if nbytes < 1e6:
        return f"{nbytes / 1e3:.1f} kB"
    return f"{nbytes / 1e6:.1f} MB" if nbytes < GB else f"{nbytes / GB:.2f} GB"


def loader_workers(configured: int, cached: bool, on_cpu: bool) -> int:
    """DataLoader workers: none on CPU with the cache (sampling is a slice), else configured."""
    return 0 if cached and on_cpu else configured


@dataclass(frozen=True)
class CacheDecision:
    """What `data.cache` came to: the cache (None: off), the loader's workers, and a line for
    the log ("24 videos, 51.2 MB decoded in 3.2 s", or why it is off)."""

    cache: FrameCache | None
    workers: int
    summary: str


def attach_frame_cache(
    dataset: object, config: TriTemporalConfig, on_cpu: bool, progress: bool = False
) -> CacheDecision:
    """Apply `data.cache` to a training dataset: plan, check the budget, fill, and make the
    dataset read from memory; raises (data.cache=on) when the frames do not fit."""
    d = config.data
    if d.cache == "off":
        return CacheDecision(None, d.num_workers, "off (data.cache=off)")
    if not isinstance(dataset, VideoClips):
        return CacheDecision(None, d.num_workers, f"off (data.source={d.source} decodes nothing)")
    workers = loader_workers(d.num_workers, True, on_cpu)
    budget, why = cache_budget(d.cache_max_gb, shared=workers > 0)
    if budget is None and d.cache == "auto":
        return CacheDecision(None, d.num_workers, f"off (data.cache=auto: {why})")
    plan = plan_cache(dataset, limit=budget if d.cache == "auto" else None)
    if budget is not None and plan.nbytes > budget:
        need = size_text(plan.nbytes) if plan.complete else f"more than {size_text(plan.nbytes)}"
        what = f"the decoded frames of {plan.total_videos} videos need {need}"
        if d.cache == "on":
            raise ValueError(
                f"data.cache=on: {what} ({_shape(plan)}), over the {size_text(budget)} budget "
                f"({why}); raise data.cache_max_gb, or set data.cache=auto (cache only what "
                "fits) or data.cache=off"
            )
        return CacheDecision(
            None, d.num_workers, f"off (data.cache=auto: {what}, over {size_text(budget)}: {why})"
        )
    clock = time.perf_counter()
    cache = fill_cache(plan, shared=workers > 0, progress=progress)
    dataset.reader = cache.read
    seconds = time.perf_counter() - clock
    summary = f"{len(plan.videos)} videos, {size_text(cache.nbytes)} decoded in {seconds:.1f} s"
    return CacheDecision(cache, workers, summary)


def _shape(plan: CachePlan) -> str:
    """'1920 frames at 64x128' (resized), or '1920 frames at their decoded size'."""
    if plan.resize is None:
        return f"{plan.frames} frames at their decoded size, which random crops are drawn on"
    return f"{plan.frames} frames at {plan.resize[0]}x{plan.resize[1]}"
