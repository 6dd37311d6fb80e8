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

from dataclasses import dataclass

import torch

from tritemporal.adapters.registry import Backbone
from tritemporal.heads.soon_floor import CopyLastFloor
from tritemporal.layers.tokens import MaskToken, gather_tokens
from tritemporal.objectives.losses import masked_l1


@dataclass(frozen=True)
class SoonContext:
    """What every SOON forecast of a batch reads: the encoded NOW tokens `now` (B, N_now, D) at
    `now_idx`, the SOON positions `soon_idx` of the token `grid`, the action embedding `cond`
    (B, M_soon, P) of each SOON token if conditioned, and the copy-last `floor` with the
    `present` (B, hw, D) it starts from, if floored."""

    backbone: Backbone
    now: torch.Tensor
    now_idx: torch.Tensor
    soon_idx: torch.Tensor
    grid: tuple[int, int, int]
    cond: torch.Tensor | None = None
    floor: CopyLastFloor | None = None
    present: torch.Tensor | None = None


def soon_forecast(ctx: SoonContext) -> torch.Tensor:
    """Every SOON step at once (B, M_soon, D) from the NOW tokens (V-JEPA's one predictor
    call; with a floor, it starts at copying the present)."""
    b = ctx.now.shape[0]
    context_idx, target_idx = ctx.now_idx.expand(b, -1), ctx.soon_idx.expand(b, -1)
    pred = ctx.backbone.predictor(
        ctx.now, context_idx, target_idx, ctx.grid, MaskToken.SOON, target_cond=ctx.cond
    )
    return pred if ctx.floor is None else ctx.floor(pred, ctx.present)


def soon_rollout(ctx: SoonContext, steps: int, given: torch.Tensor | None = None) -> torch.Tensor:
    """The first `steps` SOON steps forecast one at a time (B, steps * hw, D): step k from NOW
    and steps 0..k-1, which are `given` (B, >= (steps - 1) * hw, D: teacher forcing) or else the
    forecast's own (rollout). With a floor, step 0 starts at copying the present and step k at
    copying step k - 1."""
    b, hw = ctx.now.shape[0], ctx.grid[1] * ctx.grid[2]
    if not 0 < steps * hw <= ctx.soon_idx.shape[-1]:
        raise ValueError(f"{steps} SOON steps asked of a window of {ctx.soon_idx.shape[-1] // hw}")
    context, context_idx = ctx.now, ctx.now_idx.expand(b, -1)
    target_idx = ctx.soon_idx.expand(b, -1)
    base = ctx.present
    forecast = []
    for k in range(steps):
        span = slice(k * hw, (k + 1) * hw)
        cond = None if ctx.cond is None else ctx.cond[:, span]
        step_idx = target_idx[:, span]
        pred = ctx.backbone.predictor(
            context, context_idx, step_idx, ctx.grid, MaskToken.SOON, target_cond=cond
        )
        pred = pred if ctx.floor is None else ctx.floor(pred, base)
        forecast.append(pred)
        base = pred if given is None else given[:, span].to(pred.dtype)
        context = torch.cat([context, base.to(context.dtype)], dim=1)
        context_idx = torch.cat([context_idx, step_idx], dim=1)
    return torch.cat(forecast, dim=1)


def soon_targets(ctx: SoonContext, targets: torch.Tensor) -> torch.Tensor:
    """The teacher's SOON embeddings (B, M_soon, D) out of its whole-clip targets (B, N, D)."""
    return gather_tokens(targets, ctx.soon_idx.expand(ctx.now.shape[0], -1))


def soon_loss(ctx: SoonContext, targets: torch.Tensor) -> torch.Tensor:
    """L1 between the SOON forecast and the teacher's SOON embeddings."""
    return masked_l1(soon_forecast(ctx), soon_targets(ctx, targets))


def soon_rollout_loss(
    ctx: SoonContext, targets: torch.Tensor, given: torch.Tensor, rollout_steps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced and rollout L1 of autoregressive SOON against the teacher's SOON
    embeddings; `given` (B, (S - 1) * hw, D) are the causal inputs of teacher forcing."""
    soon = soon_targets(ctx, targets)  # (B, S * hw, D)
    hw = ctx.grid[1] * ctx.grid[2]
    forced = soon_rollout(ctx, soon.shape[1] // hw, given)
    rolled = soon_rollout(ctx, rollout_steps)
    return masked_l1(forced, soon), masked_l1(rolled, soon[:, : rollout_steps * hw])
