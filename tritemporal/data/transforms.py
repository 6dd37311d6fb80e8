"""Spatial views of a clip: one crop box and one flip decision shared by all of its frames.

Why per clip: the model predicts across time, so every frame of a sample must show the same
region. Training draws V-JEPA 2's random-resized crop (area fraction in `data.crop_scale`, aspect
ratio in `data.crop_aspect` times the target W/H) from a passed `torch.Generator`, so a sample's
view is a pure function of its seed; evaluation resizes the frame to cover (H, W) and takes the
centre. A horizontal flip (opt-in, `data.hflip`) mirrors the road, so it also swaps left/right
labels and negates lateral ego signals. Output stays uint8 (C, T, H, W): the model normalizes
on device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tritemporal.config import TriTemporalConfig

Box = tuple[int, int, int, int]  # top, left, height, width in source pixels
# Signals that change sign in a mirrored world (left/right quantities).
MIRRORED_SIGNALS = ("steering", "yaw_rate", "lateral_acceleration", "lateral_velocity")


def center_box(height: int, width: int, out_hw: tuple[int, int]) -> Box:
    """The centred box that resize-to-cover then centre-crop to `out_hw` keeps of the frame."""
    oh, ow = out_hw
    scale = max(oh / height, ow / width)  # resize factor at which the frame covers (oh, ow)
    bh, bw = min(height, round(oh / scale)), min(width, round(ow / scale))
    return (height - bh) // 2, (width - bw) // 2, bh, bw


def random_resized_box(
    height: int,
    width: int,
    out_hw: tuple[int, int],
    scale: tuple[float, float],
    aspect: tuple[float, float],
    generator: torch.Generator,
) -> Box:
    """V-JEPA 2 / torchvision random-resized-crop box, aspect relative to the target W/H."""
    target = out_hw[1] / out_hw[0]
    lo, hi = target * aspect[0], target * aspect[1]
    area = height * width
    for _ in range(10):
        u = torch.rand(4, generator=generator).tolist()
        crop_area = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        ratio = math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u[1])
        bw, bh = round(math.sqrt(crop_area * ratio)), round(math.sqrt(crop_area / ratio))
        if 0 < bw <= width and 0 < bh <= height:
            top = min(int(u[2] * (height - bh + 1)), height - bh)
            left = min(int(u[3] * (width - bw + 1)), width - bw)
            return top, left, bh, bw
    ratio = width / height  # fallback: the whole frame, trimmed to the allowed aspect range
    if ratio < lo:
        bw, bh = width, min(height, round(width / lo))
    elif ratio > hi:
        bw, bh = min(width, round(height * hi)), height
    else:
        bw, bh = width, height
    return (height - bh) // 2, (width - bw) // 2, bh, bw


def crop_resize(frames: torch.Tensor, box: Box, out_hw: tuple[int, int]) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> the box resized (bilinear, antialiased) to uint8 (3, T, h, w)."""
    top, left, bh, bw = box
    x = frames[:, top : top + bh, left : left + bw].permute(0, 3, 1, 2)  # (T, 3, bh, bw)
    if (bh, bw) != tuple(out_hw):
        x = F.interpolate(x, size=out_hw, mode="bilinear", antialias=True, align_corners=False)
    return x.permute(1, 0, 2, 3).contiguous()  # (T, 3, h, w) -> (3, T, h, w)


def flip_label_map(names: tuple[str, ...]) -> tuple[int, ...]:
    """Label index -> index after a horizontal flip: `*_left` <-> `*_right` when both exist."""
    position = {name: i for i, name in enumerate(names)}
    mapping = []
    for i, name in enumerate(names):
        if name.endswith("_left"):
            mapping.append(position.get(name[: -len("_left")] + "_right", i))
        elif name.endswith("_right"):
            mapping.append(position.get(name[: -len("_right")] + "_left", i))
        else:
            mapping.append(i)
    return tuple(mapping)


class ClipTransform:
    """Frames (T, H, W, 3) -> uint8 (C, T, H, W) view; random crop and flip only when training."""

    def __init__(
        self,
        out_hw: tuple[int, int],
        label_names: tuple[str, ...],
        train_crop: str = "random_resized",
        scale: tuple[float, float] = (0.3, 1.0),
        aspect: tuple[float, float] = (0.75, 1.35),
        hflip: bool = False,
    ) -> None:
        """Target (H, W), label vocabulary (for flips) and the `data.*` augmentation settings."""
        if train_crop not in ("random_resized", "center"):
            raise ValueError(f"data.train_crop={train_crop!r}: use random_resized or center")
        self.out_hw, self.train_crop, self.hflip = (
            (int(out_hw[0]), int(out_hw[1])),
            train_crop,
            hflip,
        )
        self.scale, self.aspect = (float(scale[0]), float(scale[1])), (aspect[0], aspect[1])
        self.flip_map = flip_label_map(label_names)

    @classmethod
    def from_config(cls, config: TriTemporalConfig, label_names: tuple[str, ...]) -> ClipTransform:
        """The transform a run's `clip.hw` and `data.*` settings describe."""
        d = config.data
        scale, aspect = (d.crop_scale[0], d.crop_scale[1]), (d.crop_aspect[0], d.crop_aspect[1])
        return cls(config.clip.hw, label_names, d.train_crop, scale, aspect, d.hflip)

    def box(self, height: int, width: int, generator: torch.Generator | None) -> Box:
        """Crop box: random-resized when training with a generator, else the centre box."""
        if generator is None or self.train_crop == "center":
            return center_box(height, width, self.out_hw)
        return random_resized_box(height, width, self.out_hw, self.scale, self.aspect, generator)

    def __call__(
        self, frames: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, bool]:
        """The (C, T, H, W) view and whether it was mirrored (None generator: evaluation view)."""
        _, height, width, _ = frames.shape
        video = crop_resize(frames, self.box(height, width, generator), self.out_hw)
        flip = (
            self.hflip
            and generator is not None
            and bool(torch.rand(1, generator=generator).item() < 0.5)
        )
        return (video.flip(-1) if flip else video), flip

    def flip_label(self, label: int) -> int:
        """The label of the mirrored clip (-1 stays -1)."""
        return label if label < 0 else self.flip_map[label]

    @staticmethod
    def flip_signals(signals: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Ego signals of the mirrored clip: lateral quantities change sign."""
        return {k: (-v if k in MIRRORED_SIGNALS else v) for k, v in signals.items()}
