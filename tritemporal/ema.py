"""The EMA teacher update: teacher <- m * teacher + (1 - m) * student, fused over all tensors."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """Move every teacher parameter toward its student twin with one foreach lerp."""
    t_params = list(teacher.parameters())
    s_params = [p.detach() for p in student.parameters()]
    assert len(t_params) == len(s_params), "teacher and student must have the same parameters"
    torch._foreach_lerp_(t_params, s_params, 1.0 - momentum)
