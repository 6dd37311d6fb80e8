"""Convert checkpoints trained with Meta's own V-JEPA 2 code into this backbone's format.

Meta's training script saves a `.pt` with `encoder`, `predictor` and `target_encoder` state dicts
(keys under `module.backbone.`, attention as one fused `qkv` linear, mask tokens as a parameter
list). This writes a transformers `VJEPA2Model` folder (config.json + model.safetensors) that
`backbone.pretrained` (or `VJEPA2Model.from_pretrained`) loads. By default the EMA
`target_encoder` is taken, as Meta does for its released weights.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from tritemporal.files import set_default_mode

if TYPE_CHECKING:
    from transformers import VJEPA2Config

# Attention heads by encoder width for Meta's released sizes (L, H, g); others need --num-heads.
HEADS_BY_WIDTH = {1024: 16, 1280: 16, 1408: 22}
PRED_HEADS_BY_WIDTH = {384: 12}
_PREFIXES = ("module.", "backbone.", "_orig_mod.")
_BLOCK_PARTS = {
    "norm1": "norm1",
    "attn.proj": "attention.proj",
    "norm2": "norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}


def _strip(key: str) -> str:
    """Drop the DDP / wrapper / compile prefixes Meta's checkpoints carry."""
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def _blocks(sd: dict[str, torch.Tensor], meta: str, hf: str) -> dict[str, torch.Tensor]:
    """Rename Meta's `{meta}.{i}.*` blocks to transformers' `{hf}.{i}.*`, splitting fused qkv."""
    out = {}
    pattern = re.compile(rf"{re.escape(meta)}\.(\d+)\.(.+)\.(weight|bias)$")
    for key, value in sd.items():
        match = pattern.match(key)
        if not match:
            continue
        i, part, kind = match.groups()
        if part == "attn.qkv":
            for name, chunk in zip(("query", "key", "value"), value.chunk(3, dim=0), strict=True):
                out[f"{hf}.{i}.attention.{name}.{kind}"] = chunk.clone()
        elif part in _BLOCK_PARTS:
            out[f"{hf}.{i}.{_BLOCK_PARTS[part]}.{kind}"] = value
        else:
            raise ValueError(f"unexpected key {key!r} in a V-JEPA 2 checkpoint")
    return out


def meta_to_hf_state_dict(
    encoder: dict[str, torch.Tensor], predictor: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Meta's encoder + predictor state dicts -> one `VJEPA2Model` state dict."""
    enc = {_strip(k): v for k, v in encoder.items()}
    pred = {_strip(k): v for k, v in predictor.items()}
    if "pos_embed" in enc:
        raise ValueError("this checkpoint has absolute position embeddings (V-JEPA 1), not RoPE")
    out = {
        "encoder.embeddings.patch_embeddings.proj.weight": enc["patch_embed.proj.weight"],
        "encoder.embeddings.patch_embeddings.proj.bias": enc["patch_embed.proj.bias"],
        "encoder.layernorm.weight": enc["norm.weight"],
        "encoder.layernorm.bias": enc["norm.bias"],
        "predictor.embeddings.predictor_embeddings.weight": pred["predictor_embed.weight"],
        "predictor.embeddings.predictor_embeddings.bias": pred["predictor_embed.bias"],
        "predictor.layernorm.weight": pred["predictor_norm.weight"],
        "predictor.layernorm.bias": pred["predictor_norm.bias"],
        "predictor.proj.weight": pred["predictor_proj.weight"],
        "predictor.proj.bias": pred["predictor_proj.bias"],
    }
    out.update(_blocks(enc, "blocks", "encoder.layer"))
    out.update(_blocks(pred, "predictor_blocks", "predictor.layer"))
    count = sum(1 for k in pred if re.fullmatch(r"mask_tokens\.\d+", k))
    tokens = [pred[f"mask_tokens.{i}"].reshape(1, 1, -1) for i in range(count)]
    out["predictor.embeddings.mask_tokens"] = torch.stack(tokens)  # (n, 1, 1, P)
    return out


def _depth(sd: dict[str, torch.Tensor], prefix: str) -> int:
    """Number of blocks under `prefix` (keys `{prefix}.{i}.*`)."""
    pattern = re.compile(rf"{re.escape(prefix)}\.(\d+)\.")
    return 1 + max(int(m.group(1)) for k in sd if (m := pattern.match(k)))


def infer_config(
    state_dict: dict[str, torch.Tensor],
    num_heads: int | None = None,
    pred_num_heads: int | None = None,
    crop_size: int = 256,
    frames_per_clip: int = 64,
) -> VJEPA2Config:
    """Read the architecture off a converted state dict (heads from Meta's sizes or given)."""
    from transformers import VJEPA2Config  # transformers takes seconds to import: on first use

    patch = state_dict["encoder.embeddings.patch_embeddings.proj.weight"]
    width, tubelet, size = patch.shape[0], patch.shape[2], patch.shape[3]
    pred_width = state_dict["predictor.embeddings.predictor_embeddings.weight"].shape[0]
    heads = num_heads or HEADS_BY_WIDTH.get(width)
    pred_heads = pred_num_heads or PRED_HEADS_BY_WIDTH.get(pred_width)
    if heads is None or pred_heads is None:
        raise ValueError(
            f"cannot tell the number of attention heads of a {width}-wide encoder / "
            f"{pred_width}-wide predictor; pass --num-heads and --pred-num-heads"
        )
    hidden = state_dict["encoder.layer.0.mlp.fc1.weight"].shape[0]
    pred_hidden = state_dict["predictor.layer.0.mlp.fc1.weight"].shape[0]
    return VJEPA2Config(
        patch_size=size,
        tubelet_size=tubelet,
        crop_size=crop_size,
        frames_per_clip=frames_per_clip,
        hidden_size=width,
        num_attention_heads=heads,
        num_hidden_layers=_depth(state_dict, "encoder.layer"),
        mlp_ratio=hidden / width,
        in_chans=patch.shape[1],
        qkv_bias="encoder.layer.0.attention.query.bias" in state_dict,
        pred_hidden_size=pred_width,
        pred_num_attention_heads=pred_heads,
        pred_num_hidden_layers=_depth(state_dict, "predictor.layer"),
        pred_mlp_ratio=pred_hidden / pred_width,
        pred_num_mask_tokens=state_dict["predictor.embeddings.mask_tokens"].shape[0],
    )


def convert_meta_checkpoint(
    path: str | Path,
    out_dir: str | Path,
    encoder_key: str = "target_encoder",
    num_heads: int | None = None,
    pred_num_heads: int | None = None,
    crop_size: int = 256,
) -> Path:
    """Convert Meta's `.pt` into a `VJEPA2Model` folder; returns the folder."""
    from transformers import VJEPA2Model  # transformers takes seconds to import: on first use

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    missing = [k for k in (encoder_key, "predictor") if k not in checkpoint]
    if missing:
        raise ValueError(
            f"{path} lacks {missing}; Meta's V-JEPA 2 checkpoints hold 'encoder', 'predictor' "
            f"and 'target_encoder' (found: {sorted(checkpoint)[:8]})"
        )
    state_dict = meta_to_hf_state_dict(checkpoint[encoder_key], checkpoint["predictor"])
    config = infer_config(state_dict, num_heads, pred_num_heads, crop_size)
    model = VJEPA2Model(config)
    result = model.load_state_dict(state_dict, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{path}: converted weights do not fit V-JEPA 2 (missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]})"
        )
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    for weights in out_dir.glob("*.safetensors"):  # transformers writes them 0600
        set_default_mode(weights)
    return out_dir
