"""Backbone registry: `backbone.name` in the config picks a function registered here.

A backbone is a context encoder plus the predictor that fills in masked tokens; every objective
talks to it through `Backbone` alone, so swapping the built-in ViT for Meta's V-JEPA 2 is one
config key. Register a variant with `@register_backbone` (its name is the function name with
underscores as dashes), build one with `create_backbone`, list them with `list_backbones`.
"""

from __future__ import annotations

import fnmatch
import logging
import warnings
from collections.abc import Callable
from dataclasses import replace

from torch import nn

from tritemporal.adapters.vit import VideoViT, VitArgs
from tritemporal.config import TriTemporalConfig
from tritemporal.data.common import IMAGENET_MEAN, IMAGENET_STD
from tritemporal.heads.predictor import MaskedPredictor

logger = logging.getLogger(__name__)

BackboneFactory = Callable[[TriTemporalConfig], "Backbone"]
_BACKBONES: dict[str, BackboneFactory] = {}


class Backbone(nn.Module):
    """The two trainable parts V-JEPA needs: a context encoder and a masked predictor.

    `encoder` exposes `embed(video) -> (B, N, D)`, `encode(tokens, grid, keep) -> (B, K, D)`,
    `grid(video)`, `embed_dim`; `predictor(context, context_idx, target_idx, grid, mask_index)`
    returns predictions (B, M, D) for the target indices. The EMA teacher is a copy of `encoder`.
    `pixel_mean` / `pixel_std` are the statistics the encoder expects its [0, 1] pixels
    normalized with (ImageNet's unless a pretrained processor config says otherwise);
    `lora_targets` names the Linear layers LoRA adapts by default in each part.
    """

    def __init__(
        self,
        encoder: nn.Module,
        predictor: nn.Module,
        pixel_mean: tuple[float, ...] = IMAGENET_MEAN,
        pixel_std: tuple[float, ...] = IMAGENET_STD,
        lora_targets: dict[str, tuple[list[str], str]] | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.predictor = predictor
        self.pixel_mean, self.pixel_std = tuple(pixel_mean), tuple(pixel_std)
        # default LoRA target modules and block-list name per part (backbone.lora)
        self.lora_targets = lora_targets or {
            "encoder": (["qkv"], "blocks"),
            "predictor": (["qkv"], "blocks"),
        }

    @property
    def embed_dim(self) -> int:
        """Width of the encoder's output tokens."""
        return self.encoder.embed_dim


def register_backbone(fn: BackboneFactory) -> BackboneFactory:
    """Decorator: register a backbone factory under its function name (underscores -> dashes)."""
    name = fn.__name__.replace("_", "-")
    if name in _BACKBONES:
        warnings.warn(f"backbone {name!r} registered twice; the later one wins", stacklevel=2)
    _BACKBONES[name] = fn
    return fn


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered backbone names matching a shell-style pattern, sorted."""
    return sorted(n for n in _BACKBONES if fnmatch.fnmatch(n, pattern))


def create_backbone(config: TriTemporalConfig) -> Backbone:
    """Build the backbone named by `backbone.name`, or fail with the list of known names."""
    name = config.backbone.name
    if name not in _BACKBONES:
        raise ValueError(
            f"backbone.name={name!r} is not a registered backbone; known: "
            f"{', '.join(list_backbones())}"
        )
    return _BACKBONES[name](config)


def _builtin_vit(config: TriTemporalConfig, args: VitArgs) -> Backbone:
    """Built-in ViT encoder + narrow predictor; `backbone.*` size keys override the variant."""
    b, clip = config.backbone, config.clip
    args = replace(
        args,
        embed_dim=b.embed_dim or args.embed_dim,
        depth=b.depth or args.depth,
        num_heads=b.num_heads or args.num_heads,
    )
    encoder = VideoViT(args, clip.channels, clip.tubelet_t, clip.patch, b.pos_embed, b.drop_path)
    encoder.activation_checkpointing = b.activation_checkpointing
    predictor = MaskedPredictor(args.embed_dim, config.predictor, b.pos_embed)
    predictor.activation_checkpointing = b.activation_checkpointing
    return Backbone(encoder, predictor)


@register_backbone
def vit_debug(config: TriTemporalConfig) -> Backbone:
    """64 wide, 2 deep: for unit tests only."""
    return _builtin_vit(config, VitArgs(embed_dim=64, depth=2, num_heads=4))


@register_backbone
def vit_tiny(config: TriTemporalConfig) -> Backbone:
    """ViT-Ti: 192 wide, 12 deep, 3 heads."""
    return _builtin_vit(config, VitArgs(embed_dim=192, depth=12, num_heads=3))


@register_backbone
def vit_small(config: TriTemporalConfig) -> Backbone:
    """ViT-S: 384 wide, 12 deep, 6 heads."""
    return _builtin_vit(config, VitArgs(embed_dim=384, depth=12, num_heads=6))


@register_backbone
def vit_base(config: TriTemporalConfig) -> Backbone:
    """ViT-B: 768 wide, 12 deep, 12 heads."""
    return _builtin_vit(config, VitArgs(embed_dim=768, depth=12, num_heads=12))


@register_backbone
def vit_large(config: TriTemporalConfig) -> Backbone:
    """ViT-L: 1024 wide, 24 deep, 16 heads (V-JEPA 2's ViT-L shape)."""
    return _builtin_vit(config, VitArgs(embed_dim=1024, depth=24, num_heads=16))


# Entries defined in other modules register on import; they import this module first.
from tritemporal.adapters import vjepa2 as _vjepa2  # noqa: E402, F401
