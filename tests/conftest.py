"""Shared fixtures: tiny configs and a tiny V-JEPA 2 checkpoint, all offline."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
from pathlib import Path

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing in the tests may reach the network

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


HAS_DECORD = importlib.util.find_spec("decord") is not None  # wheels: x86-64 Linux, Windows


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Where decord is not installed, skip the tests marked `decord` or given it as a parameter."""
    if HAS_DECORD:
        return
    skip = pytest.mark.skip(reason="decord is not installed (its wheels: x86-64 Linux, Windows)")
    for item in items:
        callspec = getattr(item, "callspec", None)
        if "decord" in item.keywords or (callspec and "decord" in callspec.params.values()):
            item.add_marker(skip)


def tiny_config(*overrides: str) -> TriTemporalConfig:
    """The tiny CPU test config with extra dotted overrides."""
    return load_config(None, [*TINY, *overrides])


@pytest.fixture
def tiny() -> TriTemporalConfig:
    """A fresh tiny config."""
    return tiny_config()


def tiny_vjepa2_config():
    """A VJEPA2Config matching the tiny clip (tubelet 2 x 8 x 8, 32 px, 8 frames)."""
    from transformers import VJEPA2Config

    return VJEPA2Config(
        patch_size=8,
        tubelet_size=2,
        crop_size=32,
        frames_per_clip=8,
        hidden_size=48,
        num_attention_heads=4,
        num_hidden_layers=2,
        pred_hidden_size=24,
        pred_num_attention_heads=2,
        pred_num_hidden_layers=2,
        pred_num_mask_tokens=10,
    )


PIXEL_MEAN = [0.5, 0.4, 0.3]
PIXEL_STD = [0.2, 0.25, 0.3]


@pytest.fixture(scope="session")
def vjepa2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random V-JEPA 2 saved with save_pretrained, with trained-looking mask tokens 0-1."""
    from transformers import VJEPA2Model

    torch.manual_seed(0)
    model = VJEPA2Model(tiny_vjepa2_config()).eval()
    with torch.no_grad():
        model.predictor.embeddings.mask_tokens[:2].normal_()  # 2..9 stay zero, as released
    folder = tmp_path_factory.mktemp("vjepa2-tiny")
    model.save_pretrained(folder)
    processor = {"crop_size": {"height": 32, "width": 32}, "image_mean": PIXEL_MEAN}
    processor["image_std"] = PIXEL_STD
    (folder / "video_preprocessor_config.json").write_text(json.dumps(processor))
    return folder


def vjepa2_overrides(folder: Path, *extra: str) -> list[str]:
    """Tiny-config overrides that load the tiny V-JEPA 2 checkpoint through the registry."""
    return ["backbone.name=vjepa2", f"backbone.pretrained={folder}", *extra]


def scramble_tokens(
    video: torch.Tensor, index: torch.Tensor, config: TriTemporalConfig
) -> torch.Tensor:
    """Overwrite the pixels of the given token indices (per sample) with fresh noise."""
    c = config.clip
    _, hp, wp = c.grid
    out = video.clone()
    for b, row in enumerate(index.tolist()):
        for i in row:
            t, h, w = i // (hp * wp), (i // wp) % hp, i % wp
            ts, hs, ws = t * c.tubelet_t, h * c.patch, w * c.patch
            noise = torch.rand(c.channels, c.tubelet_t, c.patch, c.patch)
            out[b, :, ts : ts + c.tubelet_t, hs : hs + c.patch, ws : ws + c.patch] = noise
    return out


@pytest.fixture(scope="session")
def eval_clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three short labelled highway-env videos (64 x 64, 4 fps) for evaluation tests."""
    from tritemporal.data.highway import make_clips

    folder = tmp_path_factory.mktemp("eval-clips")
    make_clips(folder, 3, "highway", seed=2, fps=4.0, image_size=(64, 64), seconds=8.0)
    return folder


EVAL = ["data.fps=4", "data.stride_s=0.25", "clip.image_size=32"]


def sigint_as_in_a_terminal() -> None:
    """`preexec_fn` for a child that must react to Ctrl-C as in a terminal. A test run started in
    the background of a non-interactive shell (`cmd &` in a CI script, `nohup ... &`) inherits
    SIGINT ignored, passes that on to its children, and Python then installs no
    KeyboardInterrupt handler: the child would never see the SIGINT the test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
