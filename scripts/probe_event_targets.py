"""Probe candidate EVENTUALLY targets for the eventual maneuver, before training toward them.

For the windows of the first N videos of a folder: the shipped base's teacher and an untrained
copy give pooled and per-slot views of the far future, the pixels give a row-profile change, and
the annotations give the ego's future motion (`data/ego_motion.py`). Each candidate is read by
the linear probe of `compare` (z-scored, class-balanced logistic regression, 5 folds holding
whole videos out), after PCA to 256 dimensions where wider; balanced accuracy with a 95%
interval from 200 bootstrap resamples of videos (docs/results/eventually_targets.md).

    python scripts/probe_event_targets.py runs/train300 60 runs/targets60.json
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
from sklearn.decomposition import PCA

from tritemporal.data.ego_motion import future_motion
from tritemporal.data.windows import WindowSpec
from tritemporal.eval.compare import bootstrap_interval, video_resamples
from tritemporal.eval.metrics import classification_metrics
from tritemporal.eval.probes import linear_probe_predictions
from tritemporal.eval.report import eval_dataset, random_init_copy
from tritemporal.model import TriTemporalModel

MAX_DIMS = 256


def teacher_candidates(model: TriTemporalModel, video: torch.Tensor) -> dict[str, torch.Tensor]:
    """Views of the far future from a model's teacher for a batch of clips (uint8)."""
    c = model.config.clip
    now_steps, soon_steps, _ = c.slices
    t, h, w = c.grid
    clips = model.normalize(video)
    tokens = model.teacher_targets(clips)
    b, _, d = tokens.shape
    tokens = tokens.view(b, t, h * w, d)
    last = tokens[:, now_steps - 1]
    alone = model.present_targets(clips).view(b, now_steps, h * w, d)[:, -1]
    window = tokens[:, now_steps + soon_steps :].mean(1)
    future = tokens[:, now_steps:].mean(1)
    return {
        "pooled_change": (window - last).mean(1),
        "pooled_window": window.mean(1),
        "slot_change": (window - last).flatten(1),
        "slot_future_change": (future - last).flatten(1),
        "slot_change_norm": (window - last).norm(dim=-1),
        "pooled_now_leak": (last - alone).mean(1),  # what seeing the future adds to the present
        "slot_now_leak": (last - alone).flatten(1),
    }


def pixel_candidate(video: torch.Tensor, now_frames: int, eventually_frames: int) -> torch.Tensor:
    """Row profile (mean over the width) of the EVENTUALLY frames minus the last NOW frame."""
    frames = video.float() / 255
    last = frames[:, :, now_frames - 1].mean(-1)
    window = frames[:, :, -eventually_frames:].mean(2).mean(-1)
    return (window - last).flatten(1)


def probe(x: np.ndarray, y: np.ndarray, groups: np.ndarray, names: list[str]) -> dict:
    """Balanced accuracy of the linear probe on x, with its bootstrap interval over videos."""
    if x.shape[1] > MAX_DIMS:
        x = PCA(min(MAX_DIMS, len(x)), random_state=0).fit_transform(x)
    pred, _ = linear_probe_predictions(x, y, names, 5, 0, groups)

    def accuracy(idx: np.ndarray) -> float:
        return classification_metrics(y[idx], pred[idx], names)["balanced_accuracy"]

    low, high = bootstrap_interval(accuracy, video_resamples(groups, 200, 0))
    return {"value": accuracy(np.arange(len(y))), "low": low, "high": high, "dims": x.shape[1]}


def main(data: str, n_videos: int, out: str) -> None:
    """Probe every candidate on the windows of the first `n_videos` videos of `data`."""
    base = TriTemporalModel.from_pretrained("vit-tiny-drive")
    teachers = {"base": base, "random": random_init_copy(base, 0)}
    dataset = eval_dataset(base.config, data)
    keep = np.flatnonzero(dataset.video_ids < n_videos)
    spec, clip = WindowSpec.from_config(base.config), base.config.clip
    feats: dict[str, list[np.ndarray]] = {}
    labels = []
    start = time.time()
    with torch.no_grad():
        for first in range(0, len(keep), 32):
            samples = [dataset[int(i)] for i in keep[first : first + 32]]
            video = torch.stack([s["video"] for s in samples])
            labels += [int(s["label"]) for s in samples]
            for name, model in teachers.items():
                for key, value in teacher_candidates(model, video).items():
                    feats.setdefault(f"{name}/{key}", []).append(value.numpy())
            pixels = pixel_candidate(video, clip.now_frames, clip.eventually_frames)
            feats.setdefault("pixels/row_profile_change", []).append(pixels.numpy())
            print(f"{first + len(samples)}/{len(keep)} windows, {time.time() - start:.0f} s")
    videos = dataset.video_windows()[:n_videos]  # in window order: the kept windows, in turn
    motion = [future_motion(v.annotation, spec, v.starts).numpy() for v in videos]
    feats["ego/future_motion"] = motion
    y, groups, names = np.array(labels), dataset.video_ids[keep], list(dataset.label_names)
    results = {}
    for key, parts in feats.items():
        results[key] = probe(np.concatenate(parts).astype(np.float32), y, groups, names)
        r = results[key]
        print(f"{key:34s} {r['value']:.3f} [{r['low']:.3f}, {r['high']:.3f}] dims {r['dims']}")
    summary = {"windows": len(keep), "videos": len(np.unique(groups)), "results": results}
    with open(out, "w") as handle:
        json.dump(summary, handle, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
