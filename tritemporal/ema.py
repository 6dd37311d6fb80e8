"""The EMA teacher update: teacher <- m * teacher + (1 - m) * student, fused over all tensors."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def ema_lerp_(
    ema: list[torch.Tensor],
    new: list[torch.Tensor],
    momentum: float,
    skip: torch.Tensor | None = None,
) -> None:
    """ema <- m * ema + (1 - m) * new in one foreach lerp; where `skip` (a 0-dim bool tensor)
    is true, `ema` stays as it is, decided on the device without waiting for it."""
    if skip is None:
        torch._foreach_lerp_(ema, new, 1.0 - momentum)
        return
    # the scalar path's weight as a float32 tensor (bit-identical results), or 0: ema + 0 * diff
    weight = torch.where(skip, 0.0, 1.0 - momentum)
    torch._foreach_lerp_(ema, new, [weight] * len(ema))


@torch.no_grad()
def ema_update(
    teacher: nn.Module, student: nn.Module, momentum: float, skip: torch.Tensor | None = None
) -> None:
    """Move every teacher parameter toward its student twin (not where `skip` is true)."""
    t_params = list(teacher.parameters())
    s_params = [p.detach() for p in student.parameters()]
    assert len(t_params) == len(s_params), "teacher and student must have the same parameters"
    ema_lerp_(t_params, s_params, momentum, skip)
