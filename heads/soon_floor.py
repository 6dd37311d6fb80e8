"""The copy-last floor of the SOON forecast (`predictor.soon_base: copy_last`).

"Nothing moves" is the forecast every model must beat: the last NOW step's tokens, copied to
every SOON step. V-JEPA's predictor forecasts from scratch and starts far above that baseline;
here the forecast starts at it and learns the change:

    forecast[s] = base + gate[s] * (predictor[s] - base),   base = layer_norm(last NOW step)

`gate` (one per SOON step and channel) starts at zero, so an untrained model forecasts copy-last
exactly (the fair one: the encoder saw the NOW frames alone, as `present_targets` scores it);
training opens each step and channel as far as the predictor beats copying there. The base is
the encoder's own present, layer-normed like the teacher's targets, with its gradient stopped:
the SOON loss must not pull the present toward the future (which would smooth every token
over time and make copying free), only teach the predictor and the gate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CopyLastFloor(nn.Module):
    """Copy the last NOW step forward, plus a zero-initialised gate toward the predictor."""

    def __init__(self, embed_dim: int, soon_steps: int, tokens_per_step: int) -> None:
        super().__init__()
        self.soon_steps = soon_steps
        self.tokens_per_step = tokens_per_step
        self.gate = nn.Parameter(torch.zeros(soon_steps, 1, embed_dim))

    def forward(self, predicted: torch.Tensor, now: torch.Tensor) -> torch.Tensor:
        """SOON forecast (B, M_soon, D) float32 from the predictor's (B, M_soon, D) and the
        encoded NOW tokens (B, N_now, D), both in time-major token order."""
        b, m, d = predicted.shape
        hw = self.tokens_per_step
        if m != self.soon_steps * hw or now.shape[1] % hw:
            raise ValueError(
                f"the copy-last floor expects {self.soon_steps} SOON steps of {hw} tokens and "
                f"whole NOW steps; got {m} SOON tokens and {now.shape[1]} NOW tokens"
            )
        last = now[:, -hw:].detach().float()
        base = F.layer_norm(last, (d,))[:, None]  # (B, 1, hw, D), repeated over SOON steps
        step = predicted.float().view(b, self.soon_steps, hw, d)
        return (base + self.gate * (step - base)).view(b, m, d)
