"""Objective 1, spatial masked prediction: V-JEPA's multi-block latent inpainting.

For each mask of the step (short 8 x 0.15 and long 2 x 0.7 blocks, repeated over time) the
student encodes only the visible tokens of the whole clip, the predictor fills in the masked
ones (`MaskToken.SHORT` for short masks, `LONG` for long), and an L1 loss compares them with the
teacher's layer-normed embeddings of those tokens. The loss is the mean over the masks of the step;
the student's context tokens come back too, for the variance regulariser (objectives/variance.py).
"""

from __future__ import annotations

import torch
from torch.profiler import record_function

from tritemporal import step_ranges
from tritemporal.adapters.registry import Backbone
from tritemporal.layers.tokens import MaskToken, gather_tokens
from tritemporal.objectives.losses import masked_l1
from tritemporal.objectives.masks import MaskSet


def spatial_masked_loss(
    backbone: Backbone,
    tokens: torch.Tensor,
    grid: tuple[int, int, int],
    targets: torch.Tensor,
    masks: list[MaskSet],
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Mean L1 over masks between predicted and teacher embeddings of the masked tokens, and the
    student's context tokens (B, K, D) of each mask."""
    losses, contexts = [], []
    for mask_token, mask in zip((MaskToken.SHORT, MaskToken.LONG), masks, strict=True):
        with record_function(step_ranges.STUDENT_MASK.format(mask_token.value)):
            context = backbone.encoder.encode(tokens, grid, keep=mask.context)  # (B, K, D)
            contexts.append(context)
        with record_function(step_ranges.PREDICTOR_MASK.format(mask_token.value)):
            pred = backbone.predictor(context, mask.context, mask.target, grid, mask_token)
            losses.append(masked_l1(pred, gather_tokens(targets, mask.target)))
    return torch.stack(losses).mean(), contexts
