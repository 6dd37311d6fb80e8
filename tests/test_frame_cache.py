"""The decoded-frame cache: the same batches as decoding, the budget decision, shared workers."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from tests.conftest import tiny_config
from tests.test_videos import annotate, codes, write_video
from tritemporal import threads
from tritemporal import train as train_module
from tritemporal.data import frame_cache
from tritemporal.data.decode import read_frames
from tritemporal.data.frame_cache import (
    attach_frame_cache,
    cache_budget,
    fill_cache,
    loader_workers,
    plan_cache,
)
from tritemporal.data.videos import VideoClips
from tritemporal.loader import build_loader
from tritemporal.train import train


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Two videos: 25 fps (4 s, 64x64) and 5 fps (4 s, 48x80), one with steering and labels."""
    write_video(tmp_path / "videos" / "fast.mp4", 100, 25)
    write_video(tmp_path / "videos" / "slow.mkv", 20, 5, size=(48, 80))
    t = [k / 10 for k in range(41)]
    ego = {"time": t, "speed": [2.0] * 41, "steering": [0.1 * x for x in t]}
    annotate(tmp_path / "annotations" / "fast.json", [], ego)
    return tmp_path


def video_config(root: Path, *extra: str):
    """Tiny config on `root`: 8 frames at 8 fps, 32x48 clips, stride 0.5 s, 3 steps of 4."""
    return tiny_config(
        "data.source=videos", f"data.root={root}", "data.fps=8", "data.stride_s=0.5",
        "clip.image_size=[32,48]", "train.steps=3", *extra,
    )  # fmt: skip


CROPS = {
    "center-hflip": ["data.train_crop=center", "data.hflip=true"],  # cached resized: a slice
    "random-resized": ["data.train_crop=random_resized"],  # cached as decoded, cropped per sample
}


@pytest.mark.parametrize("workers", [0, 2], ids=["fill-in-process", "fill-2-workers"])
@pytest.mark.parametrize("crop", sorted(CROPS))
def test_cached_batches_are_the_decoded_batches(root: Path, crop: str, workers: int) -> None:
    config = video_config(root, *CROPS[crop])
    decoded = VideoClips(config)
    cached = VideoClips(config)
    plan = plan_cache(cached)
    assert (plan.resize is not None) == (crop == "center-hflip")
    cache = fill_cache(plan, workers=workers)
    cached.reader = cache.read
    assert len(decoded) == 14  # 7 windows of 1 s every 0.5 s in each 4 s video
    pairs = zip(build_loader(config, decoded), build_loader(config, cached), strict=True)
    for a, b in pairs:  # 12 samples of 14: every video, crops and flips drawn per sample
        assert torch.equal(a.video, b.video) and torch.equal(a.labels, b.labels)
    for i in (0, 13):  # the evaluation view too
        one, two = decoded[i], cached[i]
        assert torch.equal(one["video"], two["video"]) and one["signals"].keys() == {
            *two["signals"]
        }
        assert all(torch.equal(one["signals"][k], two["signals"][k]) for k in one["signals"])


def test_cache_holds_each_needed_native_frame_once(root: Path) -> None:
    data = VideoClips(video_config(root, "data.train_crop=random_resized"))
    plan = plan_cache(data)
    fast, slow = plan.videos  # sorted by key: fast.mp4, slow.mkv
    # 25 fps read at 8 fps over 0 .. 4 s: floor(25 k / 8), k = 0 .. 31; 5 fps: every frame
    assert fast.indices.tolist() == sorted({25 * k // 8 for k in range(32)})
    assert slow.indices.tolist() == list(range(20))
    assert (slow.height, slow.width) == (48, 80)
    assert plan.nbytes == 32 * 64 * 64 * 3 + 20 * 48 * 80 * 3
    cache = fill_cache(plan)
    frames = cache.read(fast.path, [6, 3, 3, 96])  # any order, repeats
    assert codes(frames.permute(3, 0, 1, 2)) == [6, 3, 3, 96]
    assert torch.equal(frames, read_frames(fast.path, [6, 3, 3, 96]))


def test_auto_caches_what_fits_and_decodes_what_does_not(root: Path) -> None:
    need = 32 * 32 * 48 * 3 + 20 * 32 * 48 * 3  # both videos resized to 32x48 (centre crops)
    fits = video_config(root, "data.train_crop=center", f"data.cache_max_gb={need / 1e9}")
    data = VideoClips(fits)
    decision = attach_frame_cache(data, fits, on_cpu=True)
    assert decision.cache is not None and decision.cache.nbytes == need
    assert data.reader == decision.cache.read and decision.workers == 0
    assert decision.summary.startswith("2 videos, 239.6 kB decoded in ")

    over = video_config(root, "data.train_crop=center", f"data.cache_max_gb={need / 2e9}")
    data = VideoClips(over)
    decision = attach_frame_cache(data, over, on_cpu=True)
    assert decision.cache is None and data.reader is read_frames
    assert decision.workers == over.data.num_workers
    assert "over 119.8 kB: data.cache_max_gb=" in decision.summary
    assert "more than" in decision.summary  # planning stopped at the video past the budget


def test_on_over_the_budget_is_an_error_naming_the_key(root: Path) -> None:
    config = video_config(root, "data.train_crop=center", "data.cache=on", "data.cache_max_gb=1e-5")
    need = r"data.cache=on: .* 2 videos need 239.6 kB \(52 frames at 32x48\), over the 10.0 kB"
    with pytest.raises(ValueError, match=need + r" budget \(data.cache_max_gb=1e-05\); raise"):
        attach_frame_cache(VideoClips(config), config, on_cpu=True)


def test_off_and_sources_without_decoding_are_left_alone(root: Path) -> None:
    config = video_config(root, "data.cache=off")
    data = VideoClips(config)
    assert attach_frame_cache(data, config, on_cpu=True).summary == "off (data.cache=off)"
    assert data.reader is read_frames
    synthetic = tiny_config("data.num_workers=1")
    decision = attach_frame_cache(object(), synthetic, on_cpu=True)
    assert decision.cache is None and decision.workers == 1


@pytest.mark.parametrize(
    ("configured", "cached", "on_cpu", "expected"),
    [(1, True, True, 0), (4, True, False, 4), (1, False, True, 1), (0, True, True, 0)],
)
def test_loader_workers(configured: int, cached: bool, on_cpu: bool, expected: int) -> None:
    assert loader_workers(configured, cached, on_cpu) == expected


def test_budget_default_share_and_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frame_cache, "available_memory", lambda: 8_000_000_000)
    monkeypatch.setattr(frame_cache, "shm_free", lambda: 1_000_000_000)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert cache_budget(None, shared=False) == (2_000_000_000, "25% of the 8.00 GB available")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun: every process caches its own copy
    assert cache_budget(None, shared=False)[0] == 500_000_000
    assert cache_budget(3.0, shared=False) == (3_000_000_000, "data.cache_max_gb=3")
    budget, why = cache_budget(3.0, shared=True)  # workers share it through /dev/shm
    assert budget == 500_000_000 and "/dev/shm" in why
    monkeypatch.setattr(frame_cache, "available_memory", lambda: None)
    assert cache_budget(None, shared=False)[0] is None


def test_available_memory_is_positive_here() -> None:
    available = frame_cache.available_memory()
    assert available is None or available > 0


def test_loader_workers_read_the_parents_buffer_not_a_copy(root: Path) -> None:
    config = video_config(root, "data.train_crop=center", "data.num_workers=1")
    data = VideoClips(config)
    decision = attach_frame_cache(data, config, on_cpu=False)  # a GPU run keeps its worker
    assert decision.workers == 1 and decision.cache.buffer.is_shared()
    loader = DataLoader(data, batch_size=7, num_workers=1, persistent_workers=True, collate_fn=list)
    first = [s["video"] for batch in loader for s in batch]  # the worker is up and stays up
    assert first[0].any()
    decision.cache.buffer.fill_(0)  # written by this process after the worker started
    second = [s["video"] for batch in loader for s in batch]
    assert len(second) == len(data) and not any(v.any() for v in second)


def _threads_per_step(
    monkeypatch: pytest.MonkeyPatch, cores: int, busy: Iterator[int]
) -> list[int]:
    """Training on `cores` cores while other processes keep `next(busy)` of them busy at each
    check: the list that fills with torch's thread count at every step."""
    monkeypatch.setattr(threads, "available_cores", lambda: cores)
    monkeypatch.setattr(train_module, "busy_elsewhere", lambda: next(busy))
    for name in threads.OVERRIDE_ENVS:
        monkeypatch.delenv(name, raising=False)
    seen: list[int] = []
    real_step = train_module.train_step

    def counting_step(*args: object, **kwargs: object) -> object:
        seen.append(torch.get_num_threads())
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", counting_step)
    return seen


@pytest.mark.parametrize(("cache", "threads_seen"), [("auto", 3), ("off", 2)])
def test_training_threads_follow_the_cache(
    root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    cache: str,
    threads_seen: int,
) -> None:
    """3 cores, data.num_workers=1: cached, the step runs on 3 threads; decoding, on 2."""
    seen = _threads_per_step(monkeypatch, 3, itertools.repeat(0))  # an idle machine
    caplog.set_level("INFO", logger="tritemporal.train")
    before = torch.get_num_threads()
    train(
        video_config(
            root,
            f"data.cache={cache}",
            "data.num_workers=1",
            "train.steps=2",
            "train.ckpt_every=2",
            f"train.run_dir={tmp_path / 'run'}",
        )
    )
    assert seen == [threads_seen] * 2 and torch.get_num_threads() == before
    if cache == "auto":
        line = "frame cache: 2 videos, 623.6 kB decoded in "  # random crops: decoded size
        assert line in caplog.text
        assert ", loader workers 1 -> 0, torch threads 2 -> 3" in caplog.text
    else:
        assert "frame cache: off (data.cache=off)" in caplog.text


def test_training_threads_make_room_for_a_process_that_starts_midway(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Cached on 2 idle cores the step takes both; from the first logged step on, another
    busy process takes one, and the step drops to one thread (logged once)."""
    seen = _threads_per_step(monkeypatch, 2, itertools.chain([0], itertools.repeat(1)))
    caplog.set_level("INFO", logger="tritemporal.threads")
    overrides = ["data.cache=on", "train.steps=4", "train.log_every=1", "train.ckpt_every=4"]
    train(video_config(root, *overrides, f"train.run_dir={tmp_path / 'run'}"))
    assert seen == [2, 1, 1, 1]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cpu threads")]
    assert lines == [
        "cpu threads: 2 intra-op (2 available cores - 0 loader worker(s))",
        "cpu threads: 1 intra-op (2 available cores - 0 loader worker(s) - 1 busy with other "
        "processes)",
    ]


def test_cache_key_reads_yaml_booleans_and_checks_values() -> None:
    videos = "data.source=videos"
    assert tiny_config(videos, "data.cache=on").data.cache == "on"  # YAML 1.1: on is true
    assert tiny_config(videos, "data.cache=off").data.cache == "off"
    assert tiny_config(videos, "data.cache=auto").data.cache == "auto"
    with pytest.raises(ValueError, match=r"data.cache='never': use one of auto, on, off"):
        tiny_config("data.cache=never")
    with pytest.raises(ValueError, match=r"data.cache_max_gb=0.0 must be > 0"):
        tiny_config("data.cache_max_gb=0")
    with pytest.raises(ValueError, match=r"data.cache=on with data.source=synthetic"):
        tiny_config("data.source=synthetic", "data.cache=on")
