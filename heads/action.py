"""Action conditioning of the SOON forecast: "what will the scene look like if I do this?".

Input: the ego's signals (`action.signals`, e.g. speed, steering, acceleration) from the last
NOW frame through the SOON window, (B, 1 + soon_frames, F) in their own units. Row 0 is the
ego's *state* when the forecast is made; rows 1.. are the *actions* taken while the future
unfolds. Each SOON tubelet step k gets one vector: its frames' actions averaged, next to the
state, standardised with statistics of the training windows, through a 2-layer MLP to the
predictor's width. That vector is added to every SOON mask token of step k, before the
predictor's first block.

Why this design:
- Adding to the mask tokens changes nothing inside either predictor. The built-in one and
  transformers' pretrained V-JEPA 2 predictor both take it as `target_cond` (LoRA adapts their
  layers, not this input). The tokens that forecast step k read the actions of step k, and
  attention spreads them to the rest. V-JEPA 2-AC interleaves action tokens with frame tokens;
  this is the lighter variant for a predictor that forecasts all SOON steps in one pass.
- The MLP's last layer starts at zero, so a conditioned model forecasts exactly what the
  unconditioned one does until training moves it. Switching conditioning on for a pretrained
  V-JEPA 2 predictor starts from that predictor's forecasts.
- The standardisation statistics are buffers: they travel with the checkpoint,
  `save_pretrained` and the Hub folder. Forecasts from new actions then use the scale the module
  was trained with. Until `fit_statistics` runs (the trainer calls it on the training windows),
  the module refuses to run, rather than guess a scale.
"""

from __future__ import annotations

import torch
from torch import nn

from tritemporal.layers.standardize import fit_standardization


class ActionConditioner(nn.Module):
    """Ego signals (B, 1 + soon_frames, F) -> an additive embedding (B, soon_steps, width) for the
    mask tokens of each SOON tubelet step."""

    def __init__(self, signals: list[str], width: int, tubelet_t: int, soon_steps: int) -> None:
        super().__init__()
        self.signals = tuple(signals)
        self.tubelet_t, self.soon_steps = tubelet_t, soon_steps
        n = len(self.signals)
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))
        self.register_buffer("fitted", torch.tensor(False))
        self.mlp = nn.Sequential(nn.Linear(2 * n, width), nn.GELU(), nn.Linear(width, width))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self.gain = width**0.5  # see `forward`

    @property
    def frames(self) -> int:
        """Rows of signals one forecast takes: the state, then every SOON frame."""
        return 1 + self.tubelet_t * self.soon_steps

    def fit_statistics(self, values: torch.Tensor) -> None:
        """Set the standardisation from ego signals of training windows, (N, F)."""
        signals = str(list(self.signals))
        fit_standardization(values, self.mean, self.std, self.fitted, "action", signals)

    def forward(self, signals: torch.Tensor) -> torch.Tensor:
        """Per-step embedding (B, soon_steps, width) of the state and the SOON actions."""
        if not bool(self.fitted):
            raise RuntimeError(
                "the action module has no signal statistics yet: train the model (the trainer "
                "fits them on the training windows) or call fit_statistics(values)"
            )
        b, rows, n = signals.shape
        if rows != self.frames or n != len(self.signals):
            raise ValueError(
                f"actions must be (B, {self.frames}, {len(self.signals)}): {list(self.signals)} "
                f"at the last NOW frame, then at each of the {self.frames - 1} SOON frames; got "
                f"{tuple(signals.shape)}"
            )
        z = (signals.float() - self.mean.float()) / self.std.float()
        state = z[:, :1].expand(b, self.soon_steps, n)
        steps = z[:, 1:].reshape(b, self.soon_steps, self.tubelet_t, n).mean(dim=2)
        # Adam moves each weight of the zero-initialised last layer by about lr per step, so
        # unscaled the embedding grows at ~lr per entry while the mask tokens it is added to
        # carry position embeddings of order 1 per entry: the predictor's first LayerNorm then
        # drowns it, and in a planted test it stayed a no-op through 150 steps. The gain puts
        # the embedding on the scale of the tokens (it is still exactly zero at the start).
        return self.gain * self.mlp(torch.cat([steps, state], dim=-1))

    def for_targets(self, embedding: torch.Tensor, target_idx: torch.Tensor, first: int, hw: int):
        """Each target token's row of `embedding` (B, soon_steps, W): token index `i` lies in
        tubelet step `i // hw`, and SOON's steps start at `first` -> (B, M, W)."""
        step = (target_idx // hw - first).clamp(0, self.soon_steps - 1)
        return torch.gather(embedding, 1, step.unsqueeze(-1).expand(-1, -1, embedding.shape[-1]))
