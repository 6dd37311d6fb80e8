"""The maneuver scorer: how likely is each maneuver, given a SOON future and the present?

Planning toward a maneuver (`eval/planning.py`) needs a score of "this forecast is a lane change
to the left" that the cross-entropy method can climb. A SOON future's features are its tokens
pooled per tubelet step to a coarse grid (at most `BANK_GRID` x `BANK_GRID` cells, which keeps
where things are), beside their change from the present (the same pooling of the teacher's last
NOW step, repeated per step). A class-balanced linear probe (the evaluation's logistic
regression, as a `LinearProbe`) maps them to maneuver logits. It is fitted on the *teacher's
real* SOON tokens of labelled windows, each labelled with the maneuver of its SOON part, and at
planning time scores the model's *forecast*, which was trained to match those tokens. It records
a fingerprint of the weights that make teacher tokens and forecasts, and refuses to load for
another model.

A saved scorer is two files in one folder: `SCORER_WEIGHTS` (safetensors, float32: `mean`,
`scale`, `weight`, `bias` as in `LinearProbe`) and `SCORER_CONFIG` (JSON: `format`, `features`,
`token_grid` [h, w], `steps`, `cells` (pooled cells per side at most), `feature_dim`,
`label_names`, `fitted_on`, `model_fingerprint` (`TriTemporalModel.weights_fingerprint` of
`FORECAST_PARTS`)).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tritemporal.config import TriTemporalConfig
from tritemporal.data.videos import VideoClips
from tritemporal.eval.probes import fit_linear_probe
from tritemporal.eval.progress import phase
from tritemporal.eval.report import eval_dataset
from tritemporal.heads.probe import LinearProbe, read_probe_folder, write_probe_folder
from tritemporal.model import TriTemporalModel

BANK_GRID = 4  # SOON tokens are pooled per step to at most 4 x 4 cells
SCORER_WEIGHTS = "maneuver_scorer.safetensors"
SCORER_CONFIG = "maneuver_scorer.json"
SCORER_FORMAT = 1
# the weights behind teacher tokens and forecasts: the scorer belongs to them
FORECAST_PARTS = ("backbone.", "teacher.", "action.", "soon_floor.")
MAX_FIT_WINDOWS = 4096  # the scorer is fitted on at most this many windows (a seeded sample)

logger = logging.getLogger(__name__)


def pool_steps(tokens: torch.Tensor, steps: int, grid: tuple[int, int]) -> torch.Tensor:
    """Tokens of `steps` tubelet steps (B, steps * h * w, D) -> (B, steps * cells * D): each
    step's tokens averaged on a coarse grid of at most BANK_GRID x BANK_GRID cells."""
    b, _, d = tokens.shape
    h, w = grid
    x = tokens.reshape(b * steps, h, w, d).permute(0, 3, 1, 2)
    x = F.adaptive_avg_pool2d(x, (min(h, BANK_GRID), min(w, BANK_GRID)))
    return x.reshape(b, -1)


def maneuver_features(pooled: torch.Tensor, present: torch.Tensor, steps: int) -> torch.Tensor:
    """Pooled SOON steps (B, steps * K) and the pooled present (B or 1, K) -> (B, 2 steps K):
    the future, then its change from the present, per step."""
    return torch.cat([pooled, pooled - present.repeat(1, steps)], dim=1)


def soon_maneuvers(config: TriTemporalConfig, dataset: VideoClips) -> np.ndarray:
    """(N,) maneuver id of each window's SOON part (UNLABELLED without an annotation)."""
    c, fps = config.clip, dataset.spec.fps
    return dataset.window_maneuvers(c.now_frames / fps, c.soon_frames / fps)


@dataclass
class ManeuverScorer:
    """Maneuver log-probabilities of SOON futures (module docstring), for one model."""

    probe: LinearProbe
    steps: int  # SOON tubelet steps
    token_grid: tuple[int, int]  # (h, w) tokens per step
    fingerprint: str  # forecast_fingerprint of the model it was fitted on

    @property
    def label_names(self) -> list[str]:
        """Maneuvers in logit order."""
        return self.probe.label_names

    def log_probs(self, soon: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (B, C) of SOON tokens (B, M, D) given the present (B or 1, h*w, D)."""
        pooled = pool_steps(soon.float(), self.steps, self.token_grid)
        now = pool_steps(present.float(), 1, self.token_grid)
        x = maneuver_features(pooled, now, self.steps)
        if x.shape[1] != self.probe.embed_dim:
            raise ValueError(
                f"the maneuver scorer takes {self.probe.embed_dim} features, these SOON tokens "
                f"give {x.shape[1]}: it was fitted for another model"
            )
        return torch.log_softmax(self.probe.to(x.device)(x), dim=1)

    def save(self, folder: str | Path) -> Path:
        """Write SCORER_WEIGHTS and SCORER_CONFIG into `folder`; returns the weights' path."""
        config = {
            "format": SCORER_FORMAT,
            "features": "SOON tokens pooled per step, then their change from the present",
            "token_grid": list(self.token_grid),
            "steps": self.steps,
            "cells": BANK_GRID,
            "feature_dim": self.probe.embed_dim,
            "label_names": self.label_names,
            "fitted_on": self.probe.fitted_on,
            "model_fingerprint": self.fingerprint,
        }
        return write_probe_folder(Path(folder), SCORER_WEIGHTS, SCORER_CONFIG, self.probe, config)

    @classmethod
    def load(cls, folder: str | Path, model: TriTemporalModel) -> ManeuverScorer:
        """The scorer saved in `folder`, checked to belong to `model`."""
        folder = Path(folder)
        config, tensors = read_probe_folder(
            folder, SCORER_WEIGHTS, SCORER_CONFIG, SCORER_FORMAT, "maneuver scorer",
            f"`tritemporal plan --scorer-data DATA --out {folder}` fits and writes one",
        )  # fmt: skip
        ours = model.weights_fingerprint(FORECAST_PARTS)
        if config.get("model_fingerprint") != ours:
            raise ValueError(
                f"{folder / SCORER_CONFIG} was fitted on another model's SOON tokens (model "
                f"fingerprint {config.get('model_fingerprint')}; this model's is {ours}): its "
                "probabilities would not mean anything here; fit one for this model "
                "(`tritemporal plan --scorer-data DATA` with another --out)"
            )
        probe = LinearProbe(
            **tensors, label_names=config["label_names"], fitted_on=config["fitted_on"],
            fingerprint=ours,
        )  # fmt: skip
        return cls(probe, int(config["steps"]), tuple(config["token_grid"]), ours)


def scorer_from_pooled(
    model: TriTemporalModel,
    pooled: torch.Tensor,
    present: torch.Tensor,
    labels: np.ndarray,
    label_names: list[str],
    seed: int = 0,
) -> ManeuverScorer:
    """Fit a scorer on pooled teacher SOON tokens (N, steps K), the pooled present (N, K) and
    each window's SOON maneuver id (N,)."""
    c = model.config.clip
    steps = c.slices[1]
    if len(np.unique(labels)) < 2:
        present_names = [label_names[i] for i in np.unique(labels)]
        raise ValueError(
            f"the maneuver scorer needs windows of 2+ maneuvers in their SOON part; these "
            f"{len(labels)} windows have only {present_names}"
        )
    x = maneuver_features(pooled.float(), present.float(), steps)
    fingerprint = model.weights_fingerprint(FORECAST_PARTS)
    probe = fit_linear_probe(x, labels, label_names, seed, fingerprint)
    return ManeuverScorer(probe, steps, c.grid[1:], fingerprint)


@torch.no_grad()
def fit_scorer(
    model: TriTemporalModel,
    dataset: VideoClips,
    seed: int = 0,
    batch_size: int = 16,
    max_windows: int = MAX_FIT_WINDOWS,
) -> ManeuverScorer:
    """A scorer fitted on the teacher's real SOON tokens of `dataset`'s labelled windows (at
    most `max_windows`, a seeded sample), each labelled with its SOON part's maneuver."""
    labels = soon_maneuvers(model.config, dataset)
    windows = np.flatnonzero(labels >= 0)
    if len(windows) > max_windows:
        windows = np.sort(np.random.default_rng(seed).permutation(windows)[:max_windows])
    steps, grid = model.config.clip.slices[1], model.config.clip.grid[1:]
    device = model.pixel_mean.device
    pooled, present = [], []
    with phase("maneuver scorer: teacher SOON tokens", len(windows), "windows", device) as advance:
        for first in range(0, len(windows), batch_size):
            idx = windows[first : first + batch_size]
            clips = torch.stack([dataset[int(i)]["video"] for i in idx]).to(device)
            clips = model.normalize(clips)
            truth = model.teacher_targets(clips)[:, model.soon_idx[0]]
            pooled.append(pool_steps(truth, steps, grid).cpu())
            present.append(pool_steps(model.present_step(clips), 1, grid).cpu())
            advance(len(idx))
    if not pooled:
        raise ValueError(f"{dataset.root}: no labelled windows to fit a maneuver scorer on")
    names = list(dataset.label_names)
    return scorer_from_pooled(model, torch.cat(pooled), torch.cat(present), labels[windows], names)


def load_or_fit_scorer(
    model: TriTemporalModel,
    folder: str | Path,
    data: str | None,
    seed: int = 0,
    batch_size: int = 16,
) -> tuple[ManeuverScorer, bool]:
    """(scorer, whether it was fitted now): the one saved in `folder` for this model, else one
    fitted on the windows of the videos folder `data` and saved in `folder`."""
    if (Path(folder) / SCORER_CONFIG).is_file():
        try:
            return ManeuverScorer.load(folder, model), False
        except ValueError as exc:
            if data is None:
                raise
            logger.warning("%s; fitting a new one on %s", exc, data)
    if data is None:
        raise ValueError(
            f"no maneuver scorer for this model in {folder}: pass --scorer-data DATA (annotated "
            "training videos) to fit one"
        )
    scorer = fit_scorer(model, eval_dataset(model.config, data), seed, batch_size)
    scorer.save(folder)
    return scorer, True
