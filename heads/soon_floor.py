"""The copy-last floor of the SOON forecast (`predictor.soon_base: copy_last`).

"Nothing moves" is the forecast every model must beat: the last NOW step's tokens, copied to
every SOON step. V-JEPA's predictor forecasts from scratch and starts far above that baseline;
here the forecast starts at it and learns the change:

    forecast[s] = present + change(predictor[s] - present)

`present` is the teacher's last NOW step from a pass over the NOW frames alone, layer-normed:
exactly the copy-last that `eval` and `compare` score against (`present_targets`), so an untrained
model forecasts it exactly and no training step can start worse. `change` is a linear map
initialised to zero; training opens it as far as the predictor beats copying.

Two simpler versions were measured and dropped (docs/results/front_camera.md): the student's own
present as the base drifts away from the EMA teacher's targets while the student trains, and a
gate per channel (`present + g * (predictor - present)`) moves by about the learning rate per step
under AdamW, too slowly to open in a 600-step run; the linear map sums over every channel of the
predictor's output, so it opens within tens of steps.
"""

from __future__ import annotations

import torch
from torch import nn


class CopyLastFloor(nn.Module):
    """The present copied forward, plus a zero-initialised linear map of the predicted change."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.change = nn.Linear(embed_dim, embed_dim)
        nn.init.zeros_(self.change.weight)
        nn.init.zeros_(self.change.bias)

    def forward(self, predicted: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Forecast (B, M, D) float32 from the predictor's (B, M, D), M a whole number of SOON
        steps in time-major order, and the present (B, hw, D) it starts from."""
        b, m, d = predicted.shape
        hw = present.shape[1]
        if m % hw:
            raise ValueError(f"{m} SOON tokens are not whole steps of {hw} present tokens")
        base = present.float()[:, None]  # (B, 1, hw, D), repeated over the SOON steps
        step = predicted.float().view(b, m // hw, hw, d)
        return (base + self.change(step - base).float()).view(b, m, d)
