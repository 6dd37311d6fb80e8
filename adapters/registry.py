"""Backbone registry and the contract every backbone meets.

A backbone is a context encoder plus the predictor that fills in masked tokens; every objective
talks to it through `Backbone` alone, so swapping the built-in ViT for Meta's V-JEPA 2 is one
config key. The contract is written down as two `typing.Protocol`s, `Encoder` and `Predictor`,
checked on every backbone `create_backbone` builds.

Register a variant with `@register_backbone` in any module (its name is the function name with
underscores as dashes); importing that module registers it. Every module of this package is
imported with `tritemporal.adapters`, so the built-in entries (and a new file dropped here) are
always known. Build one with `create_backbone`, list them with `list_backbones`.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from tritemporal.config import TriTemporalConfig
from tritemporal.layers.blocks import BlockForward
from tritemporal.layers.tokens import Grid, MaskToken

# the statistics [0, 1] pixels are normalized with when a backbone does not say otherwise
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@runtime_checkable
class Encoder(Protocol):
    """The context encoder (student); the EMA teacher is a copy of it.

    - `embed(video)`: tubelet tokens of the whole clip (B, C, T, H, W) -> (B, N, D), computed once
      per step and shared by every student pass; positions that are added (sin-cos) are added
      here, positions that rotate (RoPE) are applied in `encode`.
    - `encode(tokens, grid, keep)`: run the transformer on the `keep` (B, K) token indices only
      (gathered from `tokens`, with their true 3D positions in the token `grid`), or on all
      tokens when `keep` is None -> (B, K or N, D), after the final norm. A student never sees a
      token outside `keep`: that is the V-JEPA rule, and the reason this is not a mask argument.
    - `forward(video, keep)`: `encode(embed(video), grid(video), keep)`.
    - `grid(video)`: the token grid (T', H', W') of a clip; `embed_dim`: D.
    - `blocks`: the transformer blocks are the items of a `nn.ModuleList` whose attribute name
      `Backbone.lora_targets[part][1]` gives (`blocks`, `layer`): LoRA and FSDP2 find them so.
    - `block_forward(block, x, rope)`: how one block runs; `compile_blocks` swaps in a compiled
      version and `use_sdpa_kernel` binds the attention kernel, so blocks run only through it.
    - `activation_checkpointing`: recompute each block's activations in the backward pass.
    """

    embed_dim: int
    activation_checkpointing: bool
    block_forward: BlockForward

    def grid(self, video: torch.Tensor) -> Grid:
        """Token grid (T', H', W') of a clip (B, C, T, H, W)."""
        ...

    def embed(self, video: torch.Tensor) -> torch.Tensor:
        """Tubelet tokens (B, N, D) of the whole clip."""
        ...

    def encode(
        self, tokens: torch.Tensor, grid: Grid, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Encode the `keep` (B, K) tokens only (all when None) -> (B, K, D)."""
        ...

    def __call__(self, video: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Encode a clip, optionally only the `keep` token indices."""
        ...


@runtime_checkable
class Predictor(Protocol):
    """The masked predictor: (context tokens, their indices, target indices) -> predictions.

    `predictor(context, context_idx, target_idx, grid, mask_token, target_cond=None)` places the
    learned token `mask_token` (a `MaskToken`: which task it solves), plus `target_cond`
    (B, M, embed_dim) when given (action conditioning), at every `target_idx` (B, M) position,
    mixes it with the encoded `context` (B, K, D) at `context_idx` (B, K), and returns
    encoder-width predictions (B, M, D) for the targets only. It raises when it holds fewer
    mask tokens than the task's index needs. `embed_dim` is its own (narrow) width;
    `block_forward` and `activation_checkpointing` mean what they mean for `Encoder`.
    """

    embed_dim: int
    activation_checkpointing: bool
    block_forward: BlockForward

    def __call__(
        self,
        context: torch.Tensor,
        context_idx: torch.Tensor,
        target_idx: torch.Tensor,
        grid: Grid,
        mask_token: MaskToken,
        target_cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predictions (B, M, D) for the `target_idx` tokens."""
        ...


class Backbone(nn.Module):
    """The two trainable parts V-JEPA needs: a context `Encoder` and a masked `Predictor`.

    `pixel_mean` / `pixel_std` are the statistics the encoder expects its [0, 1] pixels
    normalized with (ImageNet's unless a pretrained processor config says otherwise);
    `lora_targets` names, per part, the Linear layers LoRA adapts by default and the attribute
    name of its block list.
    """

    def __init__(
        self,
        encoder: Encoder,
        predictor: Predictor,
        pixel_mean: tuple[float, ...] = IMAGENET_MEAN,
        pixel_std: tuple[float, ...] = IMAGENET_STD,
        lora_targets: dict[str, tuple[list[str], str]] | None = None,
    ) -> None:
        super().__init__()
        for part, value, protocol in (
            ("encoder", encoder, Encoder),
            ("predictor", predictor, Predictor),
        ):
            if not isinstance(value, protocol):
                members = ", ".join(sorted(_protocol_members(protocol)))
                raise TypeError(
                    f"Backbone {part}: {type(value).__name__} does not provide the "
                    f"{protocol.__name__} interface ({members}); see "
                    f"tritemporal.adapters.registry.{protocol.__name__}"
                )
        self.encoder = encoder
        self.predictor = predictor
        self.pixel_mean, self.pixel_std = tuple(pixel_mean), tuple(pixel_std)
        self.lora_targets = lora_targets or {
            "encoder": (["qkv"], "blocks"),
            "predictor": (["qkv"], "blocks"),
        }

    @property
    def embed_dim(self) -> int:
        """Width of the encoder's output tokens."""
        return self.encoder.embed_dim


def _protocol_members(protocol: type) -> set[str]:
    """The attribute and method names a Protocol asks for."""
    names = set(getattr(protocol, "__annotations__", {}))
    return names | {n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")}


BackboneFactory = Callable[[TriTemporalConfig], Backbone]
_BACKBONES: dict[str, BackboneFactory] = {}


def register_backbone(fn: BackboneFactory, name: str | None = None) -> BackboneFactory:
    """Decorator: register a backbone factory under `name`, by default its function name with
    underscores as dashes."""
    name = name or fn.__name__.replace("_", "-")
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
            f"{', '.join(list_backbones())} (a backbone of your own registers when the module "
            "holding its @register_backbone function is imported)"
        )
    return _BACKBONES[name](config)
