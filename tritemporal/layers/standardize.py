"""Standardisation statistics kept as a module's buffers: fitted once on training values and
saved with the model, so that later inputs are scaled as training scaled them (the action
module's ego signals, the ego EVENTUALLY target's future motion)."""

from __future__ import annotations

import torch

MIN_STD = 1e-6  # an entry that never varies in training is centred but not scaled


@torch.no_grad()
def fit_standardization(
    values: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    fitted: torch.Tensor,
    what: str,
    of: str,
) -> None:
    """Copy the mean and std (at least MIN_STD) of `values` (N >= 2, F) into the buffers `mean`
    and `std` (F,) and set `fitted`; `what` and `of` name the statistics in the errors."""
    n = len(mean)
    if values.ndim != 2 or values.shape[1] != n or len(values) < 2:
        raise ValueError(
            f"{what} statistics need (N >= 2, {n}) values of {of}, got {tuple(values.shape)}"
        )
    values = values.double()
    if not torch.isfinite(values).all():
        raise ValueError(f"{what} statistics: non-finite values in {of}")
    mean.copy_(values.mean(0))
    std.copy_(values.std(0).clamp(min=MIN_STD))
    fitted.fill_(True)
