"""Meta's pretrained V-JEPA 2 (transformers' `VJEPA2Model`) behind the `Backbone` interface.

The weights live in transformers' own modules (so LoRA targets, merges and `save_pretrained` keep
transformers' names), but the forward passes are ours:

- `VJEPA2Encoder.forward` always encodes every token; a V-JEPA student must see only the visible
  ones. Here the tubelet embedding runs once for the whole clip, the kept tokens are gathered, and
  transformers' layers run on them alone (about 4x fewer FLOPs for V-JEPA 2's masks).
- transformers derives RoPE positions from flat indices with a square `crop_size // patch_size`
  grid, so other resolutions or wide frames (e.g. 256 x 448) get wrong positions. Here positions
  are the tokens' true (t, h, w) coordinates, rotated with V-JEPA 2's released frequency layout
  (`Rope3D`), so every grid is right and the official square case matches exactly (tested).

Mask tokens of the pretrained predictor (it holds `pred_num_mask_tokens`, 10 in the releases):
index 0 serves the short spatial masks and 1 the long ones (`MaskToken.SHORT`, `.LONG`), as in
Meta's pretraining (one token per mask generator, in order), so fine-tuning starts from the tokens
trained for those tasks. SOON uses index 2 (`MaskToken.SOON`), a token Meta never trained (it is
zero in the releases); it starts as a copy of token 1, whose task (predicting large masked
regions over the whole clip) is the closest.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from tritemporal.adapters.registry import IMAGENET_MEAN, IMAGENET_STD, Backbone, register_backbone
from tritemporal.config import BackboneConfig, TriTemporalConfig
from tritemporal.layers.blocks import BlockForward, RopeTables, run_blocks, sdpa_backend
from tritemporal.layers.tokens import (
    MaskToken,
    Rope3D,
    apply_rope,
    gather_tokens,
    token_coords,
    tubelet_linear,
)

if TYPE_CHECKING:
    from transformers import VJEPA2Model

logger = logging.getLogger(__name__)

HUB_IDS = {
    "vjepa2-vitl": "facebook/vjepa2-vitl-fpc64-256",
    "vjepa2-vith": "facebook/vjepa2-vith-fpc64-256",
    "vjepa2-vitg": "facebook/vjepa2-vitg-fpc64-256",
    "vjepa2-vitg-384": "facebook/vjepa2-vitg-fpc64-384",
}
# Architectures of the released checkpoints, for `backbone.random_init` (no download): transformers'
# VJEPA2Config defaults are the ViT-L; the predictor (384 wide, 12 deep) is the same in all.
ARCHITECTURES = {
    "vjepa2-vitl": {},
    "vjepa2-vith": {"hidden_size": 1280, "num_hidden_layers": 32, "num_attention_heads": 16},
    "vjepa2-vitg": {
        "hidden_size": 1408, "num_hidden_layers": 40, "num_attention_heads": 22,
        "mlp_ratio": 6144 / 1408,
    },
    "vjepa2-vitg-384": {
        "hidden_size": 1408, "num_hidden_layers": 40, "num_attention_heads": 22,
        "mlp_ratio": 6144 / 1408, "crop_size": 384,
    },
}  # fmt: skip
PROCESSOR_FILES = ("video_preprocessor_config.json", "preprocessor_config.json")


def hf_layer_forward(
    layer: nn.Module, x: torch.Tensor, rope: RopeTables | None, kernel: str = "auto"
) -> torch.Tensor:
    """One transformers `VJEPA2Layer` on tokens x (B, N, D) with our RoPE tables (SDPA with
    `kernel`, see `layers.blocks.sdpa_backend`)."""
    attn = layer.attention
    b, n, d = x.shape
    h = layer.norm1(x)
    q, k, v = (
        proj(h).view(b, n, attn.num_attention_heads, -1).transpose(1, 2)  # (B, heads, N, hd)
        for proj in (attn.query, attn.key, attn.value)
    )
    q, k = apply_rope(q, *rope), apply_rope(k, *rope)
    dropout = attn.dropout_prob if attn.training else 0.0
    with sdpa_backend(kernel, x.device):
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
    x = x + layer.drop_path(attn.proj(out.transpose(1, 2).reshape(b, n, d)))
    return x + layer.drop_path(layer.mlp(layer.norm2(x)))


class VJEPA2Encoder(nn.Module):
    """transformers' V-JEPA 2 encoder, run on the visible tokens only with true 3D positions."""

    def __init__(self, hf_encoder: nn.Module, hf_config: object) -> None:
        super().__init__()
        self.hf = hf_encoder
        self.hf_config = hf_config  # kept to write merged weights back as a VJEPA2Model
        self.embed_dim = hf_config.hidden_size
        self.tubelet_t, self.patch = hf_config.tubelet_size, hf_config.patch_size
        self.rope = Rope3D(hf_config.hidden_size // hf_config.num_attention_heads)
        self.activation_checkpointing = False
        self.block_forward: BlockForward = hf_layer_forward

    def grid(self, video: torch.Tensor) -> tuple[int, int, int]:
        """Token grid (T', H', W') of a clip (B, C, T, H, W)."""
        _, _, t, h, w = video.shape
        return t // self.tubelet_t, h // self.patch, w // self.patch

    def embed(self, video: torch.Tensor) -> torch.Tensor:
        """Tubelet tokens (B, N, D) of a clip in our (B, C, T, H, W) layout.

        The one place the layouts meet: transformers' `VJEPA2Model` takes (B, T, C, H, W) and
        permutes back to (B, C, T, H, W) for its Conv3d; we apply that Conv3d's weights directly,
        as one matmul over tubelets (`tubelet_linear`).
        """
        return tubelet_linear(video, self.hf.embeddings.patch_embeddings.proj)

    def encode(
        self, tokens: torch.Tensor, grid: tuple[int, int, int], keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Encode embedded tokens; with `keep` (B, K) only those tokens -> (B, K, D)."""
        coords = token_coords(grid, keep, tokens.device)
        if keep is not None:
            tokens = gather_tokens(tokens, keep)
        rope = self.rope.angles(coords)
        x = run_blocks(
            self.hf.layer, tokens, rope, self.activation_checkpointing, self.block_forward
        )
        return self.hf.layernorm(x)

    def forward(self, video: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Encode a clip (B, C, T, H, W), optionally only the `keep` token indices."""
        return self.encode(self.embed(video), self.grid(video), keep)


class VJEPA2Predictor(nn.Module):
    """transformers' pretrained V-JEPA 2 predictor behind our predictor interface."""

    def __init__(self, hf_predictor: nn.Module, hf_config: object) -> None:
        super().__init__()
        self.hf = hf_predictor
        self.embed_dim = hf_config.pred_hidden_size
        self.rope = Rope3D(hf_config.pred_hidden_size // hf_config.pred_num_attention_heads)
        self.activation_checkpointing = False
        self.block_forward: BlockForward = hf_layer_forward

    def forward(
        self,
        context: torch.Tensor,
        context_idx: torch.Tensor,
        target_idx: torch.Tensor,
        grid: tuple[int, int, int],
        mask_token: MaskToken,
        target_cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict encoder-width embeddings (B, M, D) of the `target_idx` (B, M) tokens;
        `target_cond` (B, M, P), if given, is added to their mask tokens (heads/action.py)."""
        emb = self.hf.embeddings
        b, k = context_idx.shape
        m = target_idx.shape[1]
        tokens = emb.mask_tokens  # (num_mask_tokens, 1, 1, P)
        token = mask_token.pick(tokens).view(1, 1, -1)
        queries = token.expand(b, m, -1) if target_cond is None else token + target_cond
        x = torch.cat([emb.predictor_embeddings(context), queries.to(token.dtype)], dim=1)
        index = torch.cat([context_idx, target_idx], dim=1)  # (B, K + M)
        coords = token_coords(grid, index, context.device)
        rope = self.rope.angles(coords)
        x = run_blocks(self.hf.layer, x, rope, self.activation_checkpointing, self.block_forward)
        return self.hf.proj(self.hf.layernorm(x[:, k:]))  # (B, M, D)


def split_revision(spec: str) -> tuple[str, str | None]:
    """`org/name@rev` -> (`org/name`, `rev`); local folders and plain ids get no revision."""
    if os.path.isdir(spec) or "@" not in spec:
        return spec, None
    repo, revision = spec.rsplit("@", 1)
    return repo, revision or None


def pretrained_source(b: BackboneConfig) -> tuple[str, str | None]:
    """Where to load from: `backbone.pretrained` or the registered Hub id, and the revision."""
    if b.pretrained is None:
        if b.name not in HUB_IDS:
            raise ValueError(
                f"backbone.name={b.name!r} needs backbone.pretrained: a Hub repo id (e.g. "
                f"{HUB_IDS['vjepa2-vitl']}) or a local folder saved with save_pretrained"
            )
        return HUB_IDS[b.name], b.revision
    repo, revision = split_revision(b.pretrained)
    if revision and b.revision and revision != b.revision:
        raise ValueError(
            f"backbone.pretrained={b.pretrained!r} names revision {revision!r} but "
            f"backbone.revision={b.revision!r}; give one"
        )
    return repo, revision or b.revision


def load_hf_vjepa2(b: BackboneConfig) -> VJEPA2Model:
    """`VJEPA2Model.from_pretrained` with revision, cache, token and offline settings."""
    from huggingface_hub.utils import HFValidationError
    from transformers import VJEPA2Model

    source, revision = pretrained_source(b)
    try:
        model = VJEPA2Model.from_pretrained(
            source,
            revision=revision,
            cache_dir=b.cache_dir,
            token=b.token,
            local_files_only=b.local_files_only,
            drop_path_rate=b.drop_path,
            attn_implementation="sdpa",
            dtype=torch.float32,
        )
    except (OSError, HFValidationError) as exc:
        where = f"{source}@{revision}" if revision else source
        offline = b.local_files_only or os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "")
        hint = (
            "the network is off (backbone.local_files_only or HF_HUB_OFFLINE) and it is not in "
            "the cache: download it once online, or set backbone.pretrained to a local folder"
            if offline
            else "check the repo id / folder, backbone.revision, and your token for private repos"
        )
        raise FileNotFoundError(
            f"cannot load V-JEPA 2 weights from {where}: {hint} ({exc})"
        ) from exc
    if getattr(model.config, "model_type", None) != "vjepa2":
        raise ValueError(f"{source} is a {model.config.model_type!r} model, not V-JEPA 2")
    return model


def random_vjepa2(b: BackboneConfig) -> VJEPA2Model:
    """A randomly initialised `VJEPA2Model` with a released checkpoint's architecture (or the
    sizes `backbone.embed_dim/depth/num_heads` set), for benchmarks: nothing is downloaded."""
    # transformers takes seconds to import: on first use
    from transformers import VJEPA2Config, VJEPA2Model

    if b.name not in ARCHITECTURES:
        raise ValueError(
            f"backbone.random_init needs a sized backbone.name ({', '.join(ARCHITECTURES)}), "
            f"got {b.name!r}"
        )
    arch = dict(ARCHITECTURES[b.name])
    sizes = {
        "hidden_size": b.embed_dim,
        "num_hidden_layers": b.depth,
        "num_attention_heads": b.num_heads,
    }
    arch.update({k: v for k, v in sizes.items() if v is not None})  # backbone.* size overrides
    config = VJEPA2Config(**arch, drop_path_rate=b.drop_path)
    config._attn_implementation = "sdpa"
    return VJEPA2Model(config)


def pixel_stats(b: BackboneConfig) -> tuple[tuple[float, ...], tuple[float, ...], int | None]:
    """Mean, std and crop size from the checkpoint's processor config, else ImageNet's."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError

    source, revision = pretrained_source(b)
    for name in PROCESSOR_FILES:
        if os.path.isdir(source):
            path = Path(source) / name
            if not path.is_file():
                continue
        else:
            try:
                path = hf_hub_download(
                    source, name, revision=revision, cache_dir=b.cache_dir, token=b.token,
                    local_files_only=b.local_files_only,
                )  # fmt: skip
            except (EntryNotFoundError, LocalEntryNotFoundError, OSError):
                continue
        spec = json.loads(Path(path).read_text())
        crop = spec.get("crop_size")
        crop = crop.get("height") if isinstance(crop, dict) else crop
        mean = tuple(spec.get("image_mean", IMAGENET_MEAN))
        return mean, tuple(spec.get("image_std", IMAGENET_STD)), crop
    logger.info("no processor config for %s; using ImageNet mean/std", source)
    return IMAGENET_MEAN, IMAGENET_STD, None


def build_vjepa2(config: TriTemporalConfig) -> Backbone:
    """Load the pretrained model and wrap its encoder and predictor."""
    b, clip = config.backbone, config.clip
    hf = random_vjepa2(b) if b.random_init else load_hf_vjepa2(b)
    c = hf.config
    if (c.tubelet_size, c.patch_size) != (clip.tubelet_t, clip.patch):
        raise ValueError(
            f"{b.pretrained or b.name} uses tubelets {c.tubelet_size}x{c.patch_size}x"
            f"{c.patch_size}; set clip.tubelet_t={c.tubelet_size} and clip.patch={c.patch_size}"
        )
    mean, std, crop = (IMAGENET_MEAN, IMAGENET_STD, None) if b.random_init else pixel_stats(b)
    if crop is not None and tuple(clip.hw) != (crop, crop):
        logger.info(
            "%s was pretrained on %dx%d crops; clip.image_size=%s runs on its own token grid "
            "with true RoPE coordinates", b.pretrained or b.name, crop, crop, clip.image_size,
        )  # fmt: skip
    _init_soon_mask_token(hf.predictor.embeddings.mask_tokens)
    encoder = VJEPA2Encoder(hf.encoder, c)
    predictor = VJEPA2Predictor(hf.predictor, c)
    encoder.activation_checkpointing = predictor.activation_checkpointing = (
        b.activation_checkpointing
    )
    targets = (["query", "value"], "layer")  # transformers' attention projections
    return Backbone(encoder, predictor, mean, std, {"encoder": targets, "predictor": targets})


@torch.no_grad()
def _init_soon_mask_token(tokens: torch.Tensor) -> None:
    """Start the never-trained SOON mask token as a copy of the long-mask token (see above)."""
    soon, long = MaskToken.SOON, MaskToken.LONG
    if tokens.shape[0] > soon and not tokens[soon].any():
        tokens[soon].copy_(tokens[long])


@register_backbone
def vjepa2(config: TriTemporalConfig) -> Backbone:
    """Any V-JEPA 2 checkpoint: backbone.pretrained = Hub id[@revision] or a local folder."""
    return build_vjepa2(config)


@register_backbone
def vjepa2_vitl(config: TriTemporalConfig) -> Backbone:
    """facebook/vjepa2-vitl-fpc64-256: ViT-L/16, 1024 wide, 24 layers (~326M with predictor)."""
    return build_vjepa2(config)


@register_backbone
def vjepa2_vith(config: TriTemporalConfig) -> Backbone:
    """facebook/vjepa2-vith-fpc64-256: ViT-H/16, 1280 wide, 32 layers (~654M)."""
    return build_vjepa2(config)


@register_backbone
def vjepa2_vitg(config: TriTemporalConfig) -> Backbone:
    """facebook/vjepa2-vitg-fpc64-256: ViT-g/16, 1408 wide, 40 layers (~1.04B)."""
    return build_vjepa2(config)


@register_backbone
def vjepa2_vitg_384(config: TriTemporalConfig) -> Backbone:
    """facebook/vjepa2-vitg-fpc64-384: ViT-g/16 at 384 px crops (~1.04B)."""
    return build_vjepa2(config)
