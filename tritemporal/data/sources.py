"""Data sources by `data.source`: synthetic shapes, a folder of videos, or highway-env clips.

Every source yields uint8 clips (C, T, H, W) cut as NOW | SOON | EVENTUALLY with the outcome
label of the EVENTUALLY window. A source that cannot deliver real data raises; nothing falls
back to another source or to random tensors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import get_args

from torch.utils.data import Dataset

from tritemporal.config import DataSource, TriTemporalConfig
from tritemporal.data.front_camera import CameraGeometry
from tritemporal.data.highway import POLICY, POLICY_FRONT, format_summary, make_clips
from tritemporal.data.highway_front import FrontSettings
from tritemporal.data.synthetic import SyntheticDrivingShapes
from tritemporal.data.videos import VideoClips

logger = logging.getLogger(__name__)

DatasetFactory = Callable[[TriTemporalConfig], Dataset]
_SOURCES: dict[str, DatasetFactory] = {}
HIGHWAY_DONE = "make_clips_summary.json"


def register_source(name: DataSource) -> Callable[[DatasetFactory], DatasetFactory]:
    """Decorator: make a dataset factory available as `data.source: NAME`."""
    assert name in get_args(DataSource), f"add {name!r} to config.DataSource first"

    def wrap(fn: DatasetFactory) -> DatasetFactory:
        _SOURCES[name] = fn
        return fn

    return wrap


def build_dataset(config: TriTemporalConfig) -> Dataset:
    """The dataset named by `data.source`; unknown sources are an error, never a fallback."""
    source = config.data.source
    if source not in _SOURCES:
        raise ValueError(
            f"data.source={source!r} is not available; available: {', '.join(sorted(_SOURCES))}"
        )
    return _SOURCES[source](config)


@register_source("synthetic")
def _synthetic(config: TriTemporalConfig) -> Dataset:
    if config.data.root is not None:
        raise ValueError(
            f"data.root={config.data.root!r} is set but data.source=synthetic reads no files; "
            "drop data.root or set data.source=videos"
        )
    return SyntheticDrivingShapes(config.clip, config.data.num_clips, seed=config.train.seed)


@register_source("videos")
def _videos(config: TriTemporalConfig) -> Dataset:
    if config.data.root is None:
        raise ValueError(
            "data.source=videos needs data.root: a folder with videos/ (.mp4, .ts, .mov, any "
            "container PyAV reads) and "
            "optional annotations/<clip>.json (or data.manifest, a CSV of paths under data.root)"
        )
    return VideoClips(config, train=True)


@register_source("highway")
def _highway(config: TriTemporalConfig) -> Dataset:
    return VideoClips(config, train=True, root=ensure_highway_clips(config))


def highway_cache_dir(config: TriTemporalConfig) -> Path:
    """Where generated clips live: data.root, else a folder keyed by every generation setting
    and the policy version (clips made by an older driving policy are not reused)."""
    if config.data.root is not None:
        return Path(config.data.root)
    h = config.data.highway
    width_height = h.image_size[::-1]  # the old data.highway.size order: caches stay valid
    spec = [h.scenario, h.num_videos, h.seconds, width_height, h.seed, config.data.fps, POLICY]
    if h.zoom != 1.0:  # the default view keeps the keys of caches made before the setting
        spec.append(h.zoom)
    if h.camera != "top":
        spec.append({"camera": h.camera, "policy": POLICY_FRONT, **dataclasses.asdict(h.front)})
    key = hashlib.blake2b(json.dumps(spec).encode(), digest_size=6).hexdigest()
    base = Path(os.environ.get("TRITEMPORAL_CACHE", Path.home() / ".cache" / "tritemporal"))
    return base / f"highway-{h.scenario}-{key}"


def front_settings(config: TriTemporalConfig) -> FrontSettings:
    """`data.highway.front` as the settings `make_clips` takes."""
    front = dataclasses.asdict(config.data.highway.front)
    vary = {key: front.pop(key) for key in ("vary_geometry", "vary_look")}
    return FrontSettings(CameraGeometry(**front), **vary)


def ensure_highway_clips(config: TriTemporalConfig) -> Path:
    """Generate the configured highway-env clips once (atomically), then reuse them."""
    root = highway_cache_dir(config)
    if (root / HIGHWAY_DONE).is_file():
        return root
    if root.exists() and any(root.iterdir()):
        raise ValueError(
            f"data.root={root} holds files but no completed highway clip set ({HIGHWAY_DONE}); "
            "point data.root to an empty folder, or use data.source=videos for existing videos"
        )
    h = config.data.highway
    logger.info(
        "generating %d highway-env clips of %.0f s (%s) into %s; later runs reuse them",
        h.num_videos, h.seconds, h.scenario, root,
    )  # fmt: skip
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    summary = make_clips(
        tmp, h.num_videos, h.scenario, h.seed, config.data.fps, tuple(h.image_size), h.seconds,
        workers=h.workers, zoom=h.zoom, camera=h.camera, front=front_settings(config),
    )  # fmt: skip
    (tmp / HIGHWAY_DONE).write_text(json.dumps(summary, indent=1))
    logger.info("%s", format_summary(summary))
    root.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, root)  # atomic; replaces an empty data.root folder too
    return root
