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
        if m != self.soon_steps * self.tokens_per_step:
            raise ValueError(
                f"the copy-last floor expects {self.soon_steps} SOON steps of "
                f"{self.tokens_per_step} tokens; got {m} SOON tokens"
            )
        step = predicted.view(b, self.soon_steps, self.tokens_per_step, d)
        return self.blend(step, self.present(now)[:, None], 0).view(b, m, d)

    def present(self, now: torch.Tensor) -> torch.Tensor:
        """The last NOW step (B, hw, D), layer-normed float32, gradient stopped: the base."""
        hw = self.tokens_per_step
        if now.shape[1] % hw:
            raise ValueError(f"{now.shape[1]} NOW tokens are not whole steps of {hw} tokens")
        last = now[:, -hw:].detach().float()
        return F.layer_norm(last, (last.shape[-1],))

    def blend(self, predicted: torch.Tensor, base: torch.Tensor, first: int) -> torch.Tensor:
        """`base` + gate * (`predicted` - `base`) for SOON steps `first`, `first` + 1, ...:
        `predicted` (B, S, hw, D) or one step (B, hw, D); float32."""
        steps = predicted.shape[1] if predicted.dim() == 4 else 1
        gate = self.gate[first : first + steps]
        gate = gate if predicted.dim() == 4 else gate[0]
        return base + gate * (predicted.float() - base)
