"""Synthetic top-down driving clips (`data.source: synthetic`) for the CPU quickstart and tests.

The world: a grey road seen from above, 3-4 lanes with scrolling dashed markings (their speed is
the ego's speed), a red ego car near the bottom of its lane and 1-3 other cars of other colours
driving at their own speeds. In every clip the ego performs one maneuver during the EVENTUALLY
window (the last `eventually_frames` frames):

* ``keep_lane``: nothing changes.
* ``lane_change_left`` / ``lane_change_right``: the ego slides one lane over.
* ``brake``: the ego slows hard: markings slow down and other cars move up relative to it.

Why the outcome is learnable from NOW, but not from one frame: lane changes are announced by an
amber indicator blinking (2 frames on, 2 off, random phase) on that side of the ego throughout
the clip, so a single frame may show it off; a brake is announced by a slower car ahead in the
ego's lane that closes in over NOW, while a car ahead in ``keep_lane`` / lane-change clips holds
its distance or pulls away, so only motion tells them apart. Distractors keep it honest: other
cars sometimes blink, cars in other lanes may be slow, and road colour, lane count and width,
speeds, car sizes and pixel noise are all randomized. Every clip is a pure function of
(seed, index), drawn with its own `torch.Generator`, so workers and resumed runs agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tritemporal.config import ClipConfig
from tritemporal.data.common import maneuver_id

LABEL_NAMES: tuple[str, ...] = ("keep_lane", "lane_change_left", "lane_change_right", "brake")
_LABEL_IDS = tuple(maneuver_id(name) for name in LABEL_NAMES)
EGO_COLOR = (235.0, 35.0, 35.0)
INDICATOR_COLOR = (255.0, 170.0, 0.0)
_CAR_COLORS = (
    (40.0, 90.0, 220.0),
    (40.0, 200.0, 220.0),
    (225.0, 225.0, 225.0),
    (30.0, 30.0, 45.0),
    (60.0, 170.0, 80.0),
    (150.0, 70.0, 200.0),
)


@dataclass
class SyntheticClip:
    """One rendered clip: uint8 frames (T, H, W, 3), MANEUVERS id, ego x centre per frame (T,)."""

    frames: torch.Tensor
    label: int
    ego_x: torch.Tensor


def _cover(lo: torch.Tensor, hi: torch.Tensor, first: int, n: int) -> torch.Tensor:
    """Fraction of pixels first..first+n-1 covered by [lo, hi) per frame: (T,) -> (T, n)."""
    p = torch.arange(first, first + n, dtype=torch.float32)
    return (torch.minimum(p + 1, hi[:, None]) - torch.maximum(p, lo[:, None])).clamp_(0.0, 1.0)


def _blend(patch: torch.Tensor, alpha: torch.Tensor, color: torch.Tensor) -> None:
    """Blend `color` (3,) into a (T, h, w, 3) view in place with opacity alpha (T, h, w)."""
    a = alpha.unsqueeze(-1)
    patch.mul_(1.0 - a).add_(a * color)


def _span(lo: torch.Tensor, hi: torch.Tensor, n: int) -> tuple[int, int]:
    """Pixel range [a, b) touched by [lo, hi) in any frame, clipped to [0, n)."""
    a = max(0, int(torch.floor(lo.min())))
    return a, max(a, min(n, int(torch.ceil(hi.max()))))


def _rect(
    img: torch.Tensor,
    y0: torch.Tensor,
    y1: torch.Tensor,
    x0: torch.Tensor,
    x1: torch.Tensor,
    color: torch.Tensor,
    on: torch.Tensor | None = None,
) -> None:
    """Blend an anti-aliased rectangle with per-frame edges (T,) and opacity into img in place."""
    _, h, w, _ = img.shape
    (ya, yb), (xa, xb) = _span(y0, y1, h), _span(x0, x1, w)
    if ya == yb or xa == xb:
        return
    alpha = _cover(y0, y1, ya, yb - ya)[:, :, None] * _cover(x0, x1, xa, xb - xa)[:, None, :]
    if on is not None:
        alpha = alpha * on[:, None, None]
    _blend(img[:, ya:yb, xa:xb], alpha, color)


class SyntheticDrivingShapes(torch.utils.data.Dataset):
    """Top-down toy road: ego car, lane markings, other cars; the ego's maneuver is cued in NOW."""

    def __init__(self, clip: ClipConfig, num_clips: int, seed: int = 0) -> None:
        """Build a deterministic set of `num_clips` clips shaped by `clip`."""
        if num_clips < 1:
            raise ValueError(f"data.num_clips={num_clips} must be >= 1")
        if clip.channels != 3:
            raise ValueError(f"clip.channels={clip.channels}: the synthetic source renders RGB (3)")
        self.clip, self.num_clips, self.seed = clip, int(num_clips), int(seed)

    def __len__(self) -> int:
        """Number of clips."""
        return self.num_clips

    @property
    def label_names(self) -> tuple[str, ...]:
        """The MANEUVERS names this source can emit."""
        return LABEL_NAMES

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        """uint8 video (C, T, H, W), int64 label into MANEUVERS and the index."""
        if not 0 <= index < self.num_clips:
            raise IndexError(f"index {index} out of range for {self.num_clips} synthetic clips")
        clip = self.render(index)
        return {
            "video": clip.frames.permute(3, 0, 1, 2),  # (T, H, W, C) -> (C, T, H, W)
            "label": torch.tensor(clip.label, dtype=torch.int64),
            "index": int(index),
        }

    def render(self, index: int) -> SyntheticClip:
        """Render clip `index` as uint8 frames; a pure function of (seed, index)."""
        mix = (self.seed * 0x9E3779B97F4A7C15 + (index + 1) * 0xBF58476D1CE4E5B9) % (2**63 - 1)
        g = torch.Generator().manual_seed(mix)
        stream = iter(torch.rand(128, generator=g).tolist())  # all scalar draws, in one call

        def uni(lo: float, hi: float) -> float:
            return lo + (hi - lo) * next(stream)

        def pick(n: int) -> int:
            return min(int(next(stream) * n), n - 1)

        def jitter(base: tuple[float, ...], amount: float) -> torch.Tensor:
            return torch.tensor([b + uni(-amount, amount) for b in base])

        c = self.clip
        h, w = c.hw
        t_total, start, n_ev = c.total_frames, c.now_frames + c.soon_frames, c.eventually_frames
        kind = (index + self.seed) % len(LABEL_NAMES)  # exactly balanced over any 4 consecutive
        name = LABEL_NAMES[kind]
        t = torch.arange(t_total, dtype=torch.float32)
        ones = torch.ones(t_total)
        # EVENTUALLY progress: 0 before the window, eased to 1 at the last frame.
        prog = ((t - start + 1) / n_ev).clamp(0.0, 1.0)
        ease = 0.5 - 0.5 * torch.cos(torch.pi * prog)

        # Static background as one row (W, 3): grass, road, solid edge lines; then broadcast.
        lanes = 3 + pick(2)
        road_w = w * uni(0.7, 0.92)
        road_x0 = uni(0.0, w - road_w)
        lane_w = road_w / lanes
        paint = torch.full((3,), uni(210, 250))
        line = max(1.0, 0.025 * w)
        row = jitter((40.0, 120.0, 45.0), 15).expand(w, 3).clone()
        grey = uni(60, 115)
        edges = [(road_x0, road_x0 + road_w, jitter((grey, grey, grey), 8))]
        edges += [(x - line / 2, x + line / 2, paint) for x in (road_x0, road_x0 + road_w)]
        for lo, hi, color in edges:
            a = _cover(torch.tensor([lo]), torch.tensor([hi]), 0, w)[0, :, None]
            row.mul_(1.0 - a).add_(a * color)
        # Channel-first storage viewed as (T, H, W, 3): the (C, T, H, W) permute is then free.
        img = torch.empty(3, t_total, h, w).permute(1, 2, 3, 0).copy_(row.expand(h, w, 3))

        # Ego motion: marking scroll is the cumulative ego speed; brake ramps it down in EVENTUALLY.
        v0 = h * uni(0.04, 0.09)
        lead_speed = v0
        if name == "brake":  # a slower car ahead closes in by 15-25% of the height before braking
            lead_speed = v0 - min(h * uni(0.15, 0.25) / start, 0.8 * v0)
            speed = v0 + (lead_speed * uni(0.2, 0.6) - v0) * ease
        else:
            speed = v0 * ones
        travel = torch.cumsum(torch.cat([torch.zeros(1), speed[1:]]), 0)  # world px moved by t

        period = h * uni(0.3, 0.4)
        dash_on = (torch.arange(h)[None, :] - travel[:, None] - uni(0, period)) % period
        dash_on = (dash_on < 0.5 * period).float()[:, :, None]  # (T, H, 1)
        for k in range(1, lanes):
            x = torch.tensor([road_x0 + k * lane_w - line / 2])
            xa, xb = _span(x, x + line, w)
            _blend(img[:, :, xa:xb], dash_on * _cover(x, x + line, xa, xb - xa)[0], paint)

        # Ego placement and lane change.
        if name == "lane_change_left":
            ego_lane, side = 1 + pick(lanes - 1), -1.0
        elif name == "lane_change_right":
            ego_lane, side = pick(lanes - 1), 1.0
        else:
            ego_lane, side = pick(lanes), 0.0
        car_h = h * uni(0.15, 0.19)
        car_w = min(lane_w * uni(0.45, 0.58), 0.75 * car_h)  # cars stay longer than wide
        ego_y0 = h * uni(0.68, 0.74)
        ego_x = road_x0 + (ego_lane + 0.5 + uni(-0.05, 0.05)) * lane_w + side * lane_w * ease

        # Other cars: screen y moves by (ego travel - own travel); positive = down, i.e. slower.
        cars: list[tuple[int, float, float]] = []  # (lane, top at t=0, speed relative to v0)
        if name == "brake":
            cars.append((ego_lane, ego_y0 - h * uni(0.33, 0.42) - car_h, lead_speed - v0))
        elif uni(0, 1) < 0.7:  # a car ahead that holds its distance or pulls away
            cars.append((ego_lane, h * uni(0.0, 0.4), h * uni(0.0, 0.1) / t_total))
        others = [k for k in range(lanes) if k != ego_lane]
        order = sorted(range(len(others)), key=lambda _: next(stream))
        for j in order[: 1 + pick(min(3, len(others)))]:
            rel = -h * uni(-0.25, 0.2) / t_total  # negative = slower than the ego: moves down
            top_max = 0.52 * h - car_h - max(-rel, 0.0) * t_total
            cars.append((others[j], uni(-0.1 * h, max(top_max, -0.1 * h)), rel))
        blinker = pick(len(cars) + 2) if uni(0, 1) < 0.35 else -1  # distractor indicator
        blink_phase = pick(4) if c.now_frames >= 4 else 0
        blink = (((t + blink_phase) % 4) < 2).float()
        amber = torch.tensor(INDICATOR_COLOR)
        bw, bh = max(1.5, 0.3 * car_w), max(1.5, 0.12 * car_h)

        def indicators(xc: torch.Tensor, top: torch.Tensor, direction: float) -> None:
            edge = xc + direction * car_w / 2
            for y in (top, top + car_h - bh):
                _rect(img, y, y + bh, edge - bw / 2, edge + bw / 2, amber, blink)

        for j, (lane, top0, rel) in enumerate(cars):
            top = top0 + travel - (v0 + rel) * t
            xc = ones * (road_x0 + (lane + 0.5 + uni(-0.08, 0.08)) * lane_w)
            color = jitter(_CAR_COLORS[pick(len(_CAR_COLORS))], 15)
            _rect(img, top, top + car_h, xc - car_w / 2, xc + car_w / 2, color)
            if j == blinker:
                indicators(xc, top, -1.0 if pick(2) else 1.0)

        ego_top = ones * ego_y0
        _rect(
            img,
            ego_top,
            ego_top + car_h,
            ego_x - car_w / 2,
            ego_x + car_w / 2,
            jitter(EGO_COLOR, 12),
        )
        if side != 0.0:
            indicators(ego_x, ego_top, side)

        img.add_(torch.randn(t_total, h, w, 1, generator=g).mul_(uni(1.0, 5.0)))
        frames = img.clamp_(0, 255).round_().to(torch.uint8)
        return SyntheticClip(frames=frames, label=_LABEL_IDS[kind], ego_x=ego_x)
