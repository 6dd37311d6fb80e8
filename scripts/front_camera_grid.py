"""A grid of simulated front-camera frames: one traffic state seen through several dash-cam
geometries (rows: the calibrated default, comma2k19- and KITTI-like mounts, and a phone on the
dash, pitched and yawed), at three moments in three looks (time of day, colours, noise).

    python scripts/front_camera_grid.py docs/figures/front_camera_grid.png

Frames are rendered at 128x256 (the corpus' size) and shown at 2x; the title of each row gives
its height, pitch, yaw and horizontal field of view.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from tritemporal.data.front_camera import CameraGeometry
from tritemporal.data.front_render import FrontRenderer, Style
from tritemporal.data.highway import highway_gym

SIZE = (128, 256)
GEOMETRIES = {
    "default\n1.4 m, 65 deg": CameraGeometry(),
    "comma2k19-like\n1.22 m, 65 deg": CameraGeometry(height_m=1.22, hfov_deg=65.2),
    "KITTI-like\n1.65 m, 81 deg": CameraGeometry(height_m=1.65, hfov_deg=81.4),
    "phone on the dash\n1.2 m, 55 deg,\npitch 3, yaw -2": CameraGeometry(
        height_m=1.2, pitch_deg=3.0, yaw_deg=-2.0, hfov_deg=55.0
    ),
}
LOOKS = [
    Style(noise=0.0),
    Style.varied(np.random.default_rng(5)),
    Style.varied(np.random.default_rng(11)),
]


def frames(seed: int = 3, steps: int = (6, 14, 22)) -> list[list[np.ndarray]]:
    """Rows of frames: per geometry, the ego's view at three moments, each in another look."""
    rows: list[list[np.ndarray]] = [[] for _ in GEOMETRIES]
    with highway_gym("highway", 4.0, SIZE, 10.0) as env:
        env.reset(seed=seed)
        u = env.unwrapped
        idle = u.action_type.actions_indexes["IDLE"]
        renderers = [
            [FrontRenderer(u.road, g, look, SIZE, seed) for look in LOOKS]
            for g in GEOMETRIES.values()
        ]
        for k in range(max(steps) + 1):
            if k in steps:
                column = steps.index(k)
                others = [v for v in u.road.vehicles if v is not u.vehicle]
                for row, by_look in zip(rows, renderers, strict=True):
                    row.append(by_look[column].render(u.vehicle, others, float(u.time)))
            env.step(idle)
    return rows


def main(out: str) -> None:
    """Write the grid (matplotlib) to `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = frames()
    fig, axes = plt.subplots(len(rows), 3, figsize=(12, 1.75 * len(rows) + 0.4))
    for r, (title, row) in enumerate(zip(GEOMETRIES, rows, strict=True)):
        for c, image in enumerate(row):
            axes[r, c].imshow(image)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(title, fontsize=8)
    fig.suptitle(
        "make-clips --camera front: one traffic state, four camera geometries, three looks"
    )
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "front_camera_grid.png")
