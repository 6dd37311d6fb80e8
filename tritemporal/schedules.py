"""Learning-rate, weight-decay and EMA-momentum schedules: pure functions of the step.

Nothing here keeps state, so a resumed run gets the same values as an uninterrupted one without
replaying anything.
"""

from __future__ import annotations

import math

from tritemporal.config import OptimConfig


def lr_at(step: int, total_steps: int, optim: OptimConfig) -> float:
    """Linear warmup from start_lr to lr, then cosine to final_lr (or constant)."""
    if step < optim.warmup_steps:
        return optim.start_lr + (optim.lr - optim.start_lr) * step / optim.warmup_steps
    if optim.schedule == "constant":
        return optim.lr
    span = max(1, total_steps - optim.warmup_steps)
    progress = min(1.0, (step - optim.warmup_steps) / span)
    return optim.final_lr + (optim.lr - optim.final_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def weight_decay_at(step: int, total_steps: int, optim: OptimConfig) -> float:
    """Cosine from weight_decay to final_weight_decay over the run (constant when equal)."""
    progress = min(1.0, step / max(1, total_steps))
    wd0, wd1 = optim.weight_decay, optim.final_weight_decay
    return wd1 + (wd0 - wd1) * 0.5 * (1 + math.cos(math.pi * progress))


def ema_momentum_at(step: int, total_steps: int, optim: OptimConfig) -> float:
    """Linear from ema_start to ema_end over the run (V-JEPA 2: constant 0.99925)."""
    progress = min(1.0, step / max(1, total_steps))
    return optim.ema_start + (optim.ema_end - optim.ema_start) * progress
