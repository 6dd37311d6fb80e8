"""Objective 3, EVENTUALLY: align the outcome embedding with the teacher's view of the far future.

Student side: the OutcomeAbstractor's embedding of the NOW tokens (heads/outcome.py).
Target side: the EMA teacher's layer-normed tokens of the EVENTUALLY window, mean-pooled, then a
small trainable MLP projection to the outcome size. The teacher itself gets no gradient.

Symmetric InfoNCE over the batch pulls a clip's NOW outcome toward its own future and away from
the other clips' futures; the temperature is learnable (log-parameterized) and clamped to
[loss.temperature_min, loss.temperature_max]. When maneuver labels are in the batch, a supervised
contrastive term (weight loss.lambda_supcon) also pulls clips with the same eventual maneuver
together.

Why this does not collapse: the target projection is trained, so a shortcut would be to map every
future to one point; but InfoNCE's denominator contains the other clips' targets, and identical
targets make every logit equal, giving the worst loss, log(B). The gradient therefore spreads the
targets apart (the uniformity term of contrastive learning), while the pooled teacher features it
projects are themselves kept from collapsing by the V-JEPA objectives' EMA-teacher dynamics. The
training loop logs the per-dimension std and effective rank of both embeddings to watch this.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tritemporal.config import LossConfig
from tritemporal.objectives.losses import info_nce, supervised_contrastive


class EventuallyAlignment(nn.Module):
    """Teacher-side target projection + learnable temperature; computes the EVENTUALLY loss."""

    def __init__(self, encoder_dim: int, out_dim: int, config: LossConfig) -> None:
        super().__init__()
        self.target_proj = nn.Sequential(
            nn.Linear(encoder_dim, encoder_dim), nn.GELU(), nn.Linear(encoder_dim, out_dim)
        )
        self.log_temperature = nn.Parameter(torch.tensor(math.log(config.temperature)))
        self.log_t_min = math.log(config.temperature_min)
        self.log_t_max = math.log(config.temperature_max)
        self.lambda_supcon = config.lambda_supcon

    @property
    def temperature(self) -> torch.Tensor:
        """Current clamped temperature."""
        return self.log_temperature.clamp(self.log_t_min, self.log_t_max).exp()

    def target(self, event_tokens: torch.Tensor) -> torch.Tensor:
        """Teacher EVENTUALLY tokens (B, N_ev, D), already layer-normed -> target (B, out_dim)."""
        pooled = F.layer_norm(event_tokens.mean(dim=1).float(), (event_tokens.shape[-1],))
        return self.target_proj(pooled)

    def forward(
        self,
        outcome: torch.Tensor,
        event_tokens: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return the EVENTUALLY loss and its parts (InfoNCE, SupCon, target embedding)."""
        target = self.target(event_tokens)
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
