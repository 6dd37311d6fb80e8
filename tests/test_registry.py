"""The backbone registry, parametrized over every registered name."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_config
from tritemporal.adapters.registry import (
    create_backbone,
    list_backbones,
    register_backbone,
)

WIDTHS = {
    "vjepa2": 48,
    "vit-debug": 64,
    "vit-tiny": 192,
    "vit-small": 384,
    "vit-base": 768,
    "vit-large": 1024,
}


def test_builtin_sizes_are_registered() -> None:
    assert set(WIDTHS) <= set(list_backbones())
    assert list_backbones("vit-l*") == ["vit-large"]


@pytest.mark.parametrize("name", list_backbones())
def test_every_backbone_builds_and_encodes(name: str, vjepa2_dir: Path) -> None:
    if name.startswith("vjepa2"):  # official entries load the tiny local checkpoint
        config = tiny_config(f"backbone.name={name}", f"backbone.pretrained={vjepa2_dir}")
    else:  # depth 1 keeps even ViT-L cheap while the registered width and heads are kept
        config = tiny_config(f"backbone.name={name}", "backbone.depth=1")
    backbone = create_backbone(config)
    assert backbone.embed_dim == WIDTHS.get(name, backbone.embed_dim)
    video = torch.randn(2, 3, config.clip.total_frames, *config.clip.hw)
    keep = torch.tensor([[0, 3, 7], [1, 2, 4]])
    tokens = backbone.encoder(video, keep=keep)
    assert tokens.shape == (2, 3, backbone.embed_dim)
    grid = config.clip.grid
    pred = backbone.predictor(tokens, keep, torch.tensor([[5, 6], [8, 9]]), grid, 1)
    assert pred.shape == (2, 2, backbone.embed_dim)


def test_unknown_backbone_lists_known_names() -> None:
    with pytest.raises(ValueError, match=r"backbone.name='vit-huge' .* known: .*vit-tiny"):
        create_backbone(tiny_config("backbone.name=vit-huge"))


def test_size_overrides_apply() -> None:
    backbone = create_backbone(tiny_config("backbone.embed_dim=48", "backbone.num_heads=2"))
    assert backbone.embed_dim == 48 and len(backbone.encoder.blocks) == 2


def test_register_warns_on_overwrite() -> None:
    def vit_debug(config):  # same name as a built-in
        raise AssertionError

    from tritemporal.adapters import registry

    original = registry._BACKBONES["vit-debug"]
    try:
        with pytest.warns(UserWarning, match="registered twice"):
            register_backbone(vit_debug)
    finally:
        registry._BACKBONES["vit-debug"] = original
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        create_backbone(tiny_config())
