"""The ego's own future motion: the EVENTUALLY target of `loss.event_target: ego`.

Why: the teacher's view of the far future reads the eventual maneuver at 0.5-0.6 balanced
accuracy at best (docs/results/pretrain_small.md), so InfoNCE toward it teaches no more than the
present shows. The car's odometry says where the scene went for free, with no maneuver label:
a lane change is a few metres of lateral motion, a brake a drop in speed (the self-supervised
target of PPGeo, ICLR 2023). Every importer writes the series this needs (BDD100K GPS speed and
course, comma2k19 speed and gyro yaw rate, KITTI oxts, the simulator).

What the vector holds, for a window whose last NOW frame is at t0 and whose EVENTUALLY window
ends at t1 (its last frame), on the grid t_k = t0 + k / fps, k = 1..K (K = (t1 - t0) * fps):

- `speed_change`   v(t_k) - v(t0)                                  m/s
- `heading_change` h(t_k) - h(t0)                                  rad, clockwise positive
- `lateral`        integral of v sin(h - h(t0)) from t0 to t_k     m, rightward positive
- `along`          integral of v cos(h - h(t0)) - v(t0)            m, ahead of constant speed

so 4 K numbers, relative to the present, in the units of the annotation schema. Heading comes
from `heading`, or is integrated from `yaw_rate` where only that is recorded (comma2k19). The
integrals run on a grid `SUBSTEPS` times finer than the frames (trapezoid rule on the linearly
interpolated series). A mirrored training view (data.hflip) mirrors the motion: heading change
and lateral motion change sign, as `ClipTransform.flip_signals` does for steering.

Nothing here is standardised: the EVENTUALLY objective keeps the training windows' mean and
standard deviation of every entry with the model (objectives/eventually.py), as the action
module does for its inputs.
"""

from __future__ import annotations

import numpy as np
import torch

from tritemporal.data.annotations import Annotation
from tritemporal.data.windows import WindowSpec

MOTION_PARTS = ("speed_change", "heading_change", "lateral", "along")
MIRRORED_PARTS = ("heading_change", "lateral")
HEADING_SERIES = ("heading", "yaw_rate")  # either one; heading is preferred when both exist
SUBSTEPS = 4  # integration steps per frame interval


def motion_steps(spec: WindowSpec) -> int:
    """K, the frames from the last NOW frame to the last EVENTUALLY frame."""
    last_now = (spec.now_frames - 1) / spec.fps
    last = spec.eventually_offset_s + (spec.eventually_frames - 1) / spec.fps
    return max(1, round((last - last_now) * spec.fps))


def motion_size(spec: WindowSpec) -> int:
    """Length of one window's future-motion vector: 4 parts x K steps."""
    return len(MOTION_PARTS) * motion_steps(spec)


def missing_motion_series(annotation: Annotation | None) -> str | None:
    """Why a video's annotation cannot give the future motion, or None when it can."""
    if annotation is None or annotation.ego_time is None:
        return "no ego series (annotations/<clip>.json `ego`)"
    have = sorted(annotation.ego)
    if "speed" not in annotation.ego:
        return f"no `speed` ego series (it has {have or 'none'})"
    if not any(name in annotation.ego for name in HEADING_SERIES):
        return f"no `heading` or `yaw_rate` ego series (it has {have or 'none'})"
    return None


def future_motion(
    annotation: Annotation, spec: WindowSpec, starts: np.ndarray, mirror: bool = False
) -> torch.Tensor:
    """The future-motion vectors (W, 4 K) float32 of the windows starting at `starts` (W,) s."""
    reason = missing_motion_series(annotation)
    if reason is not None:
        raise ValueError(f"cannot compute the ego's future motion: {reason}")
    steps = motion_steps(spec)
    dt = 1.0 / (spec.fps * SUBSTEPS)
    t0 = np.asarray(starts, dtype=np.float64).reshape(-1, 1) + (spec.now_frames - 1) / spec.fps
    fine = t0 + np.arange(steps * SUBSTEPS + 1) * dt  # (W, K * SUBSTEPS + 1), from t0
    at = annotation.signals_at(torch.from_numpy(fine))
    speed = at["speed"].double()
    if "heading" in at:
        heading = at["heading"].double()
        heading = heading - heading[:, :1]
    else:
        heading = _integral(at["yaw_rate"].double(), dt)
    lateral = _integral(speed * torch.sin(heading), dt)
    along = _integral(speed * torch.cos(heading) - speed[:, :1], dt)
    parts = {
        "speed_change": speed - speed[:, :1],
        "heading_change": heading,
        "lateral": lateral,
        "along": along,
    }
    sign = -1.0 if mirror else 1.0
    rows = [
        parts[name][:, SUBSTEPS::SUBSTEPS] * (sign if name in MIRRORED_PARTS else 1.0)
        for name in MOTION_PARTS
    ]
    return torch.cat(rows, dim=1).float()


def _integral(rate: torch.Tensor, dt: float) -> torch.Tensor:
    """Running trapezoid integral along the last axis, 0 at the first sample (same shape)."""
    steps = 0.5 * (rate[..., 1:] + rate[..., :-1]) * dt
    return torch.cat([torch.zeros_like(rate[..., :1]), steps.cumsum(dim=-1)], dim=-1)
