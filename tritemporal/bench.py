"""`tritemporal bench`: measured throughput, reported as JSON.

`--data` times the training loader alone (decode, resample, crop, collate with masks) for each
worker count, so one can tell how many CPU cores keep a GPU busy.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time

from tritemporal.config import TriTemporalConfig
from tritemporal.data.loader import build_loader
from tritemporal.data.sources import build_dataset

logger = logging.getLogger(__name__)


def bench_data(config: TriTemporalConfig, workers: list[int], batches: int = 20) -> dict:
    """Loader throughput (clips/s, decoded frames/s) per worker count, after one warm-up batch."""
    dataset = build_dataset(config)
    frames_per_clip = config.clip.total_frames
    results = []
    for n in workers:
        data = dataclasses.replace(config.data, num_workers=n)
        train = dataclasses.replace(config.train, steps=batches + 1)
        run = dataclasses.replace(config, data=data, train=train)
        iterator = iter(build_loader(run, dataset))
        next(iterator)  # start-up and worker spawn are not throughput
        start, clips = time.perf_counter(), 0
        for batch in iterator:
            clips += batch.video.shape[0]
        seconds = time.perf_counter() - start
        rate = clips / seconds
        results.append(
            {
                "workers": n,
                "clips_per_s": round(rate, 2),
                "frames_per_s": round(rate * frames_per_clip, 1),
                "clips_per_s_per_worker": round(rate / max(n, 1), 2),
                "seconds": round(seconds, 2),
            }
        )
        logger.info("workers %d: %.1f clips/s, %.0f frames/s", n, rate, rate * frames_per_clip)
    return {
        "mode": "data",
        "source": config.data.source,
        "backend": config.data.backend,
        "clip": {"frames": frames_per_clip, "size": list(config.clip.hw)},
        "batch_size": config.train.batch_size,
        "batches": batches,
        "cpu_count": os.cpu_count(),
        "dataset_samples": len(dataset),
        "results": results,
    }
