"""Objective 3, EVENTUALLY: align the outcome embedding with the teacher's view of the far future.

Student side: the OutcomeAbstractor's embedding of the NOW tokens (heads/outcome.py).
Target side, by `loss.event_target`:
- `change` (default): the EMA teacher's layer-normed tokens, mean-pooled: where the scene moved,
  the pooled EVENTUALLY window minus the pooled last NOW step;
- `window`: the pooled EVENTUALLY window itself;
- `ego`: the ego's own motion from the last NOW frame to EVENTUALLY's end (speed and heading
  change, lateral and along-track displacement; data/ego_motion.py), each entry standardised
  with the training windows' mean and std (buffers, fitted by the trainer, saved with the model).
  No teacher pass and no maneuver label: the car's odometry says where the scene went.
A small trainable MLP projects the target to the outcome size and a BatchNorm without affine
standardises it over the batch. The teacher gets no gradient.

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
from tritemporal.layers.standardize import fit_standardization
from tritemporal.objectives.losses import info_nce, supervised_contrastive
from tritemporal.runtime import gather_batch


class EventuallyAlignment(nn.Module):
    """Target projection (teacher tokens or ego motion) + learnable temperature; computes the
    EVENTUALLY loss. `motion_size` is the length of the ego-motion vector (event_target=ego)."""

    def __init__(
        self, encoder_dim: int, out_dim: int, config: LossConfig, motion_size: int = 0
    ) -> None:
        super().__init__()
        self.kind = config.event_target
        in_dim = motion_size if self.kind == "ego" else encoder_dim
        if in_dim < 1:
            raise ValueError("loss.event_target=ego needs the ego-motion vector's size (> 0)")
        self.target_proj = nn.Sequential(
            nn.Linear(in_dim, encoder_dim), nn.GELU(), nn.Linear(encoder_dim, out_dim)
        )
        if self.kind == "ego":
            self.register_buffer("motion_mean", torch.zeros(motion_size))
            self.register_buffer("motion_std", torch.ones(motion_size))
            self.register_buffer("motion_fitted", torch.tensor(False))
        self.standardize = nn.BatchNorm1d(out_dim, affine=False, track_running_stats=False)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(config.temperature)))
        self.log_t_min = math.log(config.temperature_min)
        self.log_t_max = math.log(config.temperature_max)
        self.lambda_supcon = config.lambda_supcon

    @property
    def temperature(self) -> torch.Tensor:
        """Current clamped temperature."""
        return self.log_temperature.clamp(self.log_t_min, self.log_t_max).exp()

    def fit_statistics(self, motion: torch.Tensor) -> None:
        """Set the ego target's standardisation from the training windows' motion (N, 4 K)."""
        if self.kind != "ego":
            raise ValueError(f"loss.event_target={self.kind} has no ego-motion statistics")
        buffers = (self.motion_mean, self.motion_std, self.motion_fitted)
        fit_standardization(motion, *buffers, "ego-motion", "the ego series")

    def target(self, source: torch.Tensor, now_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """The standardised target (B, out_dim) of this process's rows; in training under
        torchrun, of the global batch. `source` is the ego motion (B, 4 K) for the ego target,
        else the teacher's EVENTUALLY tokens (B, N_ev, D), with the last NOW step's tokens
        (B, N_hw, D) for `change` (both layer-normed)."""
        if self.kind == "ego":
            if not bool(self.motion_fitted):
                raise RuntimeError(
                    "the ego EVENTUALLY target has no motion statistics yet: the trainer fits "
                    "them on the training windows (or call fit_statistics(motion))"
                )
            pooled = (source.float() - self.motion_mean.float()) / self.motion_std.float()
        else:
            pooled = source.float().mean(dim=1)
            if self.kind == "change":
                assert now_tokens is not None, "the change target needs the last NOW step"
                pooled = pooled - now_tokens.float().mean(dim=1)
        if self.training:
            pooled = gather_batch(pooled)  # (world_size * B, F); pooled itself in one process
        return self.standardize(self.target_proj(pooled))

    def forward(
        self,
        outcome: torch.Tensor,
        source: torch.Tensor,
        now_tokens: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return the EVENTUALLY loss and its parts (InfoNCE, SupCon, target embedding).

        `outcome` covers the global batch under torchrun (OutcomeAbstractor gathers it); the
        other inputs are this process's rows (`target` says what `source` is)."""
        target = self.target(source, now_tokens)
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
