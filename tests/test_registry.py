"""The backbone registry, parametrized over every registered name."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_config
from tritemporal.adapters.registry import (
    Backbone,
    Encoder,
    Predictor,
    create_backbone,
    list_backbones,
    register_backbone,
)
from tritemporal.adapters.shipped import shipped_config, shipped_models
from tritemporal.layers.tokens import MaskToken

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
    elif name in shipped_models():  # shipped weights: their architecture, a tiny clip
        base = shipped_config(shipped_models()[name])
        arch = [f"predictor.{k}={getattr(base.predictor, k)}" for k in ("embed_dim", "depth")]
        arch += [f"predictor.num_heads={base.predictor.num_heads}", f"clip.patch={base.clip.patch}"]
        arch.append(f"clip.image_size={2 * base.clip.patch}")
        config = tiny_config(f"backbone.name={name}", *arch)
    else:  # depth 1 keeps even ViT-L cheap while the registered width and heads are kept
        config = tiny_config(f"backbone.name={name}", "backbone.depth=1")
    backbone = create_backbone(config)
    assert backbone.embed_dim == WIDTHS.get(name, backbone.embed_dim)
    video = torch.randn(2, 3, config.clip.total_frames, *config.clip.hw)
    keep = torch.tensor([[0, 3, 7], [1, 2, 4]])
    tokens = backbone.encoder(video, keep=keep)
    assert tokens.shape == (2, 3, backbone.embed_dim)
    grid = config.clip.grid
    pred = backbone.predictor(tokens, keep, torch.tensor([[5, 6], [8, 9]]), grid, MaskToken.LONG)
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


def test_a_backbone_in_a_new_module_registers_on_import(tmp_path: Path, monkeypatch) -> None:
    """As docs/architecture.md tells a user: @register_backbone in a module of theirs, imported
    first."""
    (tmp_path / "my_backbones.py").write_text(
        "from tritemporal.adapters import register_backbone\n"
        "from tritemporal.adapters.vit import vit_debug\n\n\n"
        "@register_backbone\n"
        "def toy_vit(config):\n"
        '    """A renamed vit-debug, standing in for a user\'s own encoder + predictor."""\n'
        "    return vit_debug(config)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from tritemporal.adapters import registry
    from tritemporal.model import TriTemporalModel

    monkeypatch.setattr(registry, "_BACKBONES", dict(registry._BACKBONES))
    importlib.import_module("my_backbones")
    assert "toy-vit" in list_backbones()
    model = TriTemporalModel(tiny_config("backbone.name=toy-vit"))
    assert model.backbone.embed_dim == 64


def test_backbone_parts_must_meet_the_protocols() -> None:
    backbone = create_backbone(tiny_config())
    with pytest.raises(TypeError, match=r"does not provide the Encoder interface .*embed"):
        Backbone(torch.nn.Linear(2, 2), backbone.predictor)
    assert isinstance(backbone.encoder, Encoder) and isinstance(backbone.predictor, Predictor)


def test_a_task_without_its_mask_token_is_an_error() -> None:
    backbone = create_backbone(tiny_config("predictor.num_mask_tokens=2"))
    context = torch.randn(2, 3, backbone.embed_dim)
    idx, target = torch.tensor([[0, 1, 2]] * 2), torch.tensor([[5, 6]] * 2)
    grid = tiny_config().clip.grid
    backbone.predictor(context, idx, target, grid, MaskToken.LONG)  # index 1: held
    with pytest.raises(ValueError, match=r"holds 2 mask token\(s\) but the SOON task uses token 2"):
        backbone.predictor(context, idx, target, grid, MaskToken.SOON)
