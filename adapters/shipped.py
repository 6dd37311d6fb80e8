"""Pretrained models shipped inside the package, each a saved-model folder under a registry key.

`tritemporal/pretrained/<key>/` holds what `TriTemporalModel.save_pretrained` writes (config.json,
model.safetensors, README.md model card) plus its evaluation report. One folder, two ways in:

- `backbone.name: <key>` in a training config: the built-in ViT encoder and predictor of the
  shipped architecture, starting from its weights (the EMA teacher starts as a copy of that
  encoder, as with any backbone). This is how a fine-tune starts from the shipped base.
- `TriTemporalModel.from_pretrained("<key>")`: `hub.locate` resolves the key to the folder and
  loads it exactly as it loads a saved folder or a Hub download.

The fine-tuning config must describe the architecture the weights were trained with (encoder
width, depth and heads, position embedding, predictor, tubelet and patch size). A mismatch is an
error naming each key and the value to set, never a silent override: the clip geometry (frames,
image size, fps) and every training setting stay the user's.
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path

from huggingface_hub.constants import CONFIG_NAME
from safetensors import SafetensorError
from safetensors.torch import load_file

from tritemporal.adapters.registry import (
    Backbone,
    BackboneFactory,
    create_backbone,
    register_backbone,
)
from tritemporal.checkpoint import MODEL_FILE
from tritemporal.config import TriTemporalConfig

SHIPPED_ROOT = Path(str(resources.files("tritemporal") / "pretrained"))


def shipped_models() -> dict[str, Path]:
    """Registry key -> folder of every model shipped with the package."""
    if not SHIPPED_ROOT.is_dir():
        return {}
    found = (p for p in sorted(SHIPPED_ROOT.iterdir()) if (p / CONFIG_NAME).is_file())
    return {folder.name: folder for folder in found}


def shipped_config(folder: Path) -> TriTemporalConfig:
    """The training config recorded in a shipped folder's config.json."""
    path = folder / CONFIG_NAME
    return TriTemporalConfig.from_dict(json.loads(path.read_text())["config"], source=str(path))


def architecture_mismatches(config: TriTemporalConfig, base: TriTemporalConfig) -> list[str]:
    """`key=value` settings `config` must change to hold `base`'s weights (empty: it fits)."""
    fixes = []
    for key in ("embed_dim", "depth", "num_heads"):
        mine, theirs = getattr(config.backbone, key), getattr(base.backbone, key)
        if mine is not None and mine != theirs:
            want = (
                f"={theirs} (or leave it unset)" if theirs else f" unset ({base.backbone.name}'s)"
            )
            fixes.append(f"backbone.{key}{want}, not {mine}")
    pairs = [("backbone", "pos_embed"), ("clip", "patch"), ("clip", "tubelet_t")]
    pairs += [("clip", "channels")]
    pairs += [("predictor", k) for k in ("embed_dim", "depth", "num_heads", "num_mask_tokens")]
    for section, key in pairs:
        mine = getattr(getattr(config, section), key)
        theirs = getattr(getattr(base, section), key)
        if mine != theirs:
            fixes.append(f"{section}.{key}={theirs}, not {mine}")
    return fixes


def shipped_backbone(key: str, folder: Path) -> BackboneFactory:
    """A registry factory: the shipped architecture's backbone with the shipped weights."""

    def factory(config: TriTemporalConfig) -> Backbone:
        base = shipped_config(folder)
        fixes = architecture_mismatches(config, base)
        if fixes:
            raise ValueError(
                f"backbone.name={key!r} starts from weights trained with another architecture "
                f"({folder / CONFIG_NAME}); set " + "; ".join(fixes)
            )
        b = base.backbone
        own = dataclasses.replace(
            config.backbone,
            name=b.name,
            embed_dim=b.embed_dim,
            depth=b.depth,
            num_heads=b.num_heads,
        )
        backbone = create_backbone(dataclasses.replace(config, backbone=own))
        load_weights(backbone, folder / MODEL_FILE)
        return backbone

    factory.__doc__ = f"{key}: shipped pretrained weights ({folder.name}/README.md)."
    return factory


def load_weights(backbone: Backbone, path: Path) -> None:
    """Encoder and predictor tensors of a saved model's weights file into `backbone`."""
    try:
        state = load_file(path)
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path} is damaged or unreadable ({exc}); reinstall tritemporal") from exc
    for part in ("encoder", "predictor"):
        prefix = f"backbone.{part}."
        own = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        getattr(backbone, part).load_state_dict(own, strict=True)


for _key, _folder in shipped_models().items():
    register_backbone(shipped_backbone(_key, _folder), name=_key)
