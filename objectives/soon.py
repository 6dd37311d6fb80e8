"""Objective 2, SOON: forecast the near future in latent space.

Context = every token of the NOW window (the student's one NOW pass, shared with EVENTUALLY);
targets = every token of the SOON window. The predictor places `MaskToken.SOON` at all SOON
positions and regresses the teacher's layer-normed SOON embeddings with L1. The student never
sees a SOON pixel, so this is a forecast, not an inpainting. With action conditioning
(`predictor.action_conditioning`, heads/action.py) each SOON mask token also carries the ego's
actions of its time step: the forecast of the future those actions cause. With the copy-last
floor (`predictor.soon_base: copy_last`, heads/soon_floor.py) the forecast starts at copying the
last NOW step and the predictor learns the change.
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
) -> torch.Tensor:
    """Predicted SOON embeddings (B, M_soon, D) from the encoded NOW tokens; `target_cond`
    (B, M_soon, P) is the action embedding of each SOON token, if conditioned; `floor`, if
    given, starts the forecast at copying the last NOW step."""
    b = now_context.shape[0]
    context_idx = now_idx.expand(b, -1)
    target_idx = soon_idx.expand(b, -1)
    pred = backbone.predictor(
        now_context, context_idx, target_idx, grid, MaskToken.SOON, target_cond=target_cond
    )
    return pred if floor is None else floor(pred, now_context)


def soon_loss(
    backbone: Backbone,
    now_context: torch.Tensor,
    now_idx: torch.Tensor,
    soon_idx: torch.Tensor,
    grid: tuple[int, int, int],
    targets: torch.Tensor,
    target_cond: torch.Tensor | None = None,
    floor: CopyLastFloor | None = None,
) -> torch.Tensor:
    """L1 between the SOON forecast and the teacher's SOON embeddings."""
    pred = soon_forecast(backbone, now_context, now_idx, soon_idx, grid, target_cond, floor)
    return masked_l1(pred, gather_tokens(targets, soon_idx.expand(pred.shape[0], -1)))
