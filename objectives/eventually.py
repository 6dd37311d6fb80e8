"""Objective 3, EVENTUALLY: align the outcome embedding with the teacher's view of the far future.

Student side: the OutcomeAbstractor's embedding of the NOW tokens (heads/outcome.py).
Target side: the EMA teacher's layer-normed tokens, mean-pooled. With `loss.event_target=change`
(default) the target is where the scene moved: the pooled EVENTUALLY window minus the pooled last
NOW step; with `window` it is the EVENTUALLY window itself. A small trainable MLP projects it to
the outcome size and a BatchNorm without affine standardises it over the batch. The teacher gets
no gradient.

Symmetric InfoNCE over the batch pulls a clip's NOW outcome toward its own future and away from
the other clips' futures; the temperature is learnable (log-parameterized) and clamped to
[loss.temperature_min, loss.temperature_max]. When maneuver labels are in the batch, a supervised
contrastive term (weight loss.lambda_supcon) also pulls clips with the same eventual maneuver
together.

Why the target is a standardised change: pooled teacher features of driving clips are mostly
the road, which every clip shares (cosine ~0.999 between clips). Unstandardised, both sides
drifted to one constant vector within ~50 steps: a fixed point where InfoNCE sits at log(batch)
with zero gradient (docs/PERFORMANCE.md). Standardised over the batch (here, and at the end of the
OutcomeAbstractor), neither side can be constant. Subtracting the present removes the scenery
that NOW and EVENTUALLY share, so matching a clip to its own future takes knowing where it is
heading, not which road it is on.

Under torchrun the objective sees the global batch, as one process would: the outcome embedding
arrives gathered from every process (heads/outcome.py), and in training the pooled teacher
targets and the labels are gathered here (no gradient needed), so the standardisation, InfoNCE
and SupCon run over the global batch. Every process then computes the same loss; the gather's
backward sums its gradient over processes and DDP/FSDP average it, which is the global loss's
gradient exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tritemporal.config import LossConfig
from tritemporal.objectives.losses import info_nce, supervised_contrastive
from tritemporal.runtime import gather_batch


class EventuallyAlignment(nn.Module):
    """Teacher-side target projection + learnable temperature; computes the EVENTUALLY loss."""

    def __init__(self, encoder_dim: int, out_dim: int, config: LossConfig) -> None:
        super().__init__()
        self.target_proj = nn.Sequential(
            nn.Linear(encoder_dim, encoder_dim), nn.GELU(), nn.Linear(encoder_dim, out_dim)
        )
        self.standardize = nn.BatchNorm1d(out_dim, affine=False, track_running_stats=False)
        self.change = config.event_target == "change"
        self.log_temperature = nn.Parameter(torch.tensor(math.log(config.temperature)))
        self.log_t_min = math.log(config.temperature_min)
        self.log_t_max = math.log(config.temperature_max)
        self.lambda_supcon = config.lambda_supcon

    @property
    def temperature(self) -> torch.Tensor:
        """Current clamped temperature."""
        return self.log_temperature.clamp(self.log_t_min, self.log_t_max).exp()

    def target(self, event_tokens: torch.Tensor, now_tokens: torch.Tensor) -> torch.Tensor:
        """Teacher EVENTUALLY tokens (B, N_ev, D) and last NOW step tokens (B, N_hw, D), both
        layer-normed -> standardised target (B, out_dim); in training under torchrun, for the
        global batch."""
        pooled = event_tokens.float().mean(dim=1)
        if self.change:
            pooled = pooled - now_tokens.float().mean(dim=1)
        if self.training:
            pooled = gather_batch(pooled)  # (world_size * B, D); pooled itself in one process
        return self.standardize(self.target_proj(pooled))

    def forward(
        self,
        outcome: torch.Tensor,
        event_tokens: torch.Tensor,
        now_tokens: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return the EVENTUALLY loss and its parts (InfoNCE, SupCon, target embedding).

        `outcome` covers the global batch under torchrun (OutcomeAbstractor gathers it); the
        other inputs are this process's rows."""
        target = self.target(event_tokens, now_tokens)
        if labels is not None and self.training:
            labels = gather_batch(labels)
        temperature = self.temperature
        nce = info_nce(outcome, target, temperature)
        parts = {"loss_nce": nce.detach(), "event_target": target.detach()}
        loss = nce
        if labels is not None and self.lambda_supcon > 0:
            supcon = supervised_contrastive(outcome, labels, temperature)
            if supcon is not None:
                loss = loss + self.lambda_supcon * supcon
                parts["loss_supcon"] = supcon.detach()
        return loss, parts
