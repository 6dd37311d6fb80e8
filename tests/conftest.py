"""Shared fixtures: tiny configs that run a full tri-temporal step in well under a second."""

from __future__ import annotations

import pytest

from tritemporal.config import TriTemporalConfig, load_config

TINY = [
    "backbone.name=vit-debug",
    "predictor.embed_dim=32",
    "predictor.depth=2",
    "predictor.num_heads=4",
    "outcome.dim=32",
    "outcome.num_heads=4",
    "outcome.out_dim=16",
    "clip.now_frames=4",
    "clip.soon_frames=2",
    "clip.eventually_frames=2",
    "clip.image_size=32",
    "clip.patch=8",
    "train.batch_size=4",
    "train.steps=6",
    "train.log_every=2",
    "train.ckpt_every=3",
    "train.progress=false",
    "optim.warmup_steps=2",
    "optim.lr=1e-3",
    "data.num_clips=16",
]


def tiny_config(*overrides: str) -> TriTemporalConfig:
    """The tiny CPU test config with extra dotted overrides."""
    return load_config(None, [*TINY, *overrides])


@pytest.fixture
def tiny() -> TriTemporalConfig:
    """A fresh tiny config."""
    return tiny_config()
