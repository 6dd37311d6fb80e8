"""Objective 2, SOON: forecast the near future in latent space.

Context = every token of the NOW window (the student's one NOW pass, shared with EVENTUALLY);
targets = every token of the SOON window. The predictor places `MaskToken.SOON` at all SOON
positions and regresses the teacher's layer-normed SOON embeddings with L1. The student never
sees a SOON pixel, so this is a forecast, not an inpainting. With action conditioning
(`predictor.action_conditioning`, heads/action.py) each SOON mask token also carries the ego's
actions of its time step: the forecast of the future those actions cause. With the copy-last
floor (`predictor.soon_base: copy_last`, heads/soon_floor.py) the forecast starts at copying the
teacher's last NOW step and the predictor learns the change.

Autoregressive SOON (`predictor.soon_mode: autoregressive`) forecasts one tubelet step at a time:
step k from NOW plus steps 0..k-1 as further context tokens. It trains as V-JEPA 2-AC trains its
predictor: teacher forcing, where steps 0..k-1 are the teacher's encodings of those frames from
passes that stopped there (`TriTemporalModel.causal_soon_inputs`: no later frame leaks in), plus
a rollout of the first `loss.soon_rollout_steps` steps on the predictor's own outputs, which is
how it forecasts at inference. The two L1s are averaged into `loss_soon`.
"""

from __future__ import annotations

import torch

from tritemporal.adapters.registry import Backbone
from tritemporal.heads.soon_floor import CopyLastFloor
from tritemporal.layers.tokens import MaskToken, gather_tokens
from tritemporal.objectives.losses import masked_l1


def soon_forecast(
    backbone: Backbone,
    now_context: torch.Tensor,
    now_idx: torch.Tensor,
    soon_idx: torch.Tensor,
    grid: tuple[int, int, int],
    target_cond: torch.Tensor | None = None,
    floor: CopyLastFloor | None = None,
    present: torch.Tensor | None = None,
) -> torch.Tensor:
    """Predicted SOON embeddings (B, M_soon, D) from the encoded NOW tokens; `target_cond`
    (B, M_soon, P) is the action embedding of each SOON token, if conditioned; `floor`, if
    given, starts the forecast at copying `present` (B, hw, D), the teacher's last NOW step."""
    b = now_context.shape[0]
    context_idx = now_idx.expand(b, -1)
    target_idx = soon_idx.expand(b, -1)
    pred = backbone.predictor(
        now_context, context_idx, target_idx, grid, MaskToken.SOON, target_cond=target_cond
    )
    return pred if floor is None else floor(pred, present)


def soon_rollout(
    backbone: Backbone,
    now_context: torch.Tensor,
    now_idx: torch.Tensor,
    soon_idx: torch.Tensor,
    grid: tuple[int, int, int],
    steps: int,
    target_cond: torch.Tensor | None = None,
    floor: CopyLastFloor | None = None,
    present: torch.Tensor | None = None,
    given: torch.Tensor | None = None,
) -> torch.Tensor:
    """The first `steps` SOON steps forecast one at a time (B, steps * hw, D): step k from NOW
    and steps 0..k-1, which are `given` (B, >= (steps - 1) * hw, D: teacher forcing) or else the
    forecast's own (rollout). With `floor`, step 0 starts at copying `present` (B, hw, D) and
    step k at copying step k - 1."""
    b = now_context.shape[0]
    hw = grid[1] * grid[2]
    if not 0 < steps * hw <= soon_idx.shape[-1]:
        raise ValueError(f"{steps} SOON steps asked of a window of {soon_idx.shape[-1] // hw}")
    context, context_idx = now_context, now_idx.expand(b, -1)
    target_idx = soon_idx.expand(b, -1)
    base = present
    forecast = []
    for k in range(steps):
        span = slice(k * hw, (k + 1) * hw)
        cond = None if target_cond is None else target_cond[:, span]
        step_idx = target_idx[:, span]
        pred = backbone.predictor(
            context, context_idx, step_idx, grid, MaskToken.SOON, target_cond=cond
        )
        pred = pred if floor is None else floor(pred, base)
        forecast.append(pred)
        before = pred if given is None else given[:, span].to(pred.dtype)
        base = before
        context = torch.cat([context, before.to(context.dtype)], dim=1)
        context_idx = torch.cat([context_idx, step_idx], dim=1)
    return torch.cat(forecast, dim=1)


def soon_rollout_loss(
    backbone: Backbone,
    now_context: torch.Tensor,
    now_idx: torch.Tensor,
    soon_idx: torch.Tensor,
    grid: tuple[int, int, int],
    targets: torch.Tensor,
    given: torch.Tensor,
    rollout_steps: int,
    target_cond: torch.Tensor | None = None,
    floor: CopyLastFloor | None = None,
    present: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced and rollout L1 of autoregressive SOON against the teacher's SOON
    embeddings; `given` (B, (S - 1) * hw, D) are the causal inputs of teacher forcing."""
    b, hw = now_context.shape[0], grid[1] * grid[2]
    soon = gather_tokens(targets, soon_idx.expand(b, -1))  # (B, S * hw, D)
    steps = soon.shape[1] // hw
    args = (backbone, now_context, now_idx, soon_idx, grid)
    forced = soon_rollout(*args, steps, target_cond, floor, present, given)
    rolled = soon_rollout(*args, rollout_steps, target_cond, floor, present)
    return masked_l1(forced, soon), masked_l1(rolled, soon[:, : rollout_steps * hw])


def soon_loss(
    backbone: Backbone,
    now_context: torch.Tensor,
    now_idx: torch.Tensor,
    soon_idx: torch.Tensor,
    grid: tuple[int, int, int],
    targets: torch.Tensor,
    target_cond: torch.Tensor | None = None,
    floor: CopyLastFloor | None = None,
    present: torch.Tensor | None = None,
) -> torch.Tensor:
    """L1 between the SOON forecast and the teacher's SOON embeddings."""
    args = (backbone, now_context, now_idx, soon_idx, grid)
    pred = soon_forecast(*args, target_cond, floor, present)
    return masked_l1(pred, gather_tokens(targets, soon_idx.expand(pred.shape[0], -1)))
