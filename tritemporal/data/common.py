"""Constants and small helpers every data source shares: label vocabulary and normalization."""

from __future__ import annotations

import torch

# Outcome (maneuver) vocabulary. A label is the index into this tuple; -1 means "unlabelled".
# Sources may only emit names listed here, so labels mean the same thing across datasets.
MANEUVERS: tuple[str, ...] = (
    "keep_lane",
    "lane_change_left",
    "lane_change_right",
    "brake",
    "stop",
    "turn_left",
    "turn_right",
    "yield",
)
UNLABELLED = -1

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def maneuver_id(name: str) -> int:
    """Index of a maneuver name in MANEUVERS, with a clear error for unknown names."""
    try:
        return MANEUVERS.index(name)
    except ValueError:
        raise ValueError(f"unknown maneuver {name!r}; known: {', '.join(MANEUVERS)}") from None


def normalize_video(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames (T, H, W, C) -> float32 (C, T, H, W) normalized with ImageNet mean/std."""
    video = frames.permute(3, 0, 1, 2).float().div_(255.0)  # (C, T, H, W)
    mean = torch.tensor(IMAGENET_MEAN, dtype=video.dtype).view(-1, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=video.dtype).view(-1, 1, 1, 1)
    return (video - mean) / std
