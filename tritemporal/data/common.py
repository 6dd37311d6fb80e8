"""Constants every data source shares: the label vocabulary.

Sources yield uint8 clips (C, T, H, W); the model normalizes them on device with its backbone's
mean and std (ImageNet's unless a pretrained processor config says otherwise), so the data path
never needs to know which backbone runs.
"""

from __future__ import annotations

import math
from typing import Any

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


def finite_number(value: Any) -> bool:
    """A JSON number that is finite (bools, which Python counts as ints, are not numbers)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def maneuver_id(name: str) -> int:
    """Index of a maneuver name in MANEUVERS, with a clear error for unknown names."""
    try:
        return MANEUVERS.index(name)
    except ValueError:
        raise ValueError(f"unknown maneuver {name!r}; known: {', '.join(MANEUVERS)}") from None
