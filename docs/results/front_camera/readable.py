"""How readable is the eventual maneuver from what a window's NOW part holds? Two linear probes
(class-balanced logistic regression, folds that hold whole videos out; balanced accuracy), one
per kind of input:

- `facts`: the scene facts at the first and last NOW frame (leader present, gap, closing speed,
  left and right lane states) and the ego's speed and its change: perception done perfectly;
- `pixels`: the last NOW frame in grey, 4x4-pooled, and its difference from the first: no
  perception at all.

    python docs/results/front_camera/readable.py facts  HELD_OUT_FOLDER [HxW]
    python docs/results/front_camera/readable.py pixels HELD_OUT_FOLDER HxW

Windows are cut as configs/ceiling.yaml cuts them (4 fps, NOW 2 s, gap 1 s, EVENTUALLY 1 s);
`pixels` reads every second window.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score

from tritemporal.config import load_config
from tritemporal.data.videos import VideoClips
from tritemporal.eval.probes import linear_probe_predictions


def facts(ds: VideoClips) -> tuple[np.ndarray, np.ndarray]:
    """Scene facts and ego speed of every window's NOW part, (windows, 20), and its index."""
    spec, rows = ds.spec, []
    for video in ds.video_windows():
        for start in video.starts:
            times = torch.tensor([start + k / spec.fps for k in range(spec.now_frames)])
            scene, ego = video.annotation.scene_at(times), video.annotation.signals_at(times)
            row: list[float] = []
            for k in (0, spec.now_frames - 1):
                gap, closing = scene["leader_gap"][k], scene["leader_closing"][k]
                row += [gap is None, 0 if gap is None else min(gap, 100) / 100]
                row += [0 if closing is None else closing / 10]
                for side in ("left_lane", "right_lane"):
                    row += [scene[side][k] == s for s in ("free", "occupied", "no_lane")]
            row += [float(ego["speed"][-1]) / 30, float(ego["speed"][-1] - ego["speed"][0]) / 5]
            rows.append(row)
    return np.array(rows, dtype=float), np.arange(len(ds))


def pixels(ds: VideoClips) -> tuple[np.ndarray, np.ndarray]:
    """Pooled grey pixels of every second window's last NOW frame, its change, and their index."""
    index, rows = np.arange(0, len(ds), 2), []
    for i in index:
        grey = ds[int(i)]["video"][:, : ds.spec.now_frames].float().mean(0)  # (T, H, W)
        pooled = torch.nn.functional.avg_pool2d(grey[None], 4)[0]
        rows.append(torch.cat([pooled[-1].flatten(), (pooled[-1] - pooled[0]).flatten()]).numpy())
    return np.array(rows), index


def main(kind: str, root: str, size: str = "64x128") -> None:
    """Print the probe's balanced accuracy on the held-out folder `root`."""
    height, width = (int(v) for v in size.split("x"))
    overrides = ["data.source=videos", f"data.root={root}", f"clip.image_size=[{height},{width}]"]
    ds = VideoClips(load_config("configs/ceiling.yaml", overrides), train=False)
    spec = ds.spec
    labels = ds.window_maneuvers(spec.eventually_offset_s, spec.eventually_frames / spec.fps)
    x, index = {"facts": facts, "pixels": pixels}[kind](ds)
    y, groups = labels[index], ds.video_ids[index]
    keep = np.isin(y, [c for c in np.unique(y) if (y == c).sum() >= 5])
    pred, _ = linear_probe_predictions(x[keep], y[keep], list(ds.label_names), groups=groups[keep])
    score = balanced_accuracy_score(y[keep], pred)
    print(f"{kind} -> eventual maneuver on {root} ({keep.sum()} windows): {score:.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
