"""The official V-JEPA 2 backbone (transformers' VJEPA2Model) behind the registry, offline."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from transformers import VJEPA2Model

from tests.conftest import (
    PIXEL_MEAN,
    scramble_tokens,
    tiny_config,
    tiny_vjepa2_config,
    vjepa2_overrides,
)
from tritemporal.adapters import vjepa2 as adapter
from tritemporal.adapters.registry import create_backbone, list_backbones
from tritemporal.adapters.vjepa2_meta import convert_meta_checkpoint
from tritemporal.cli import main
from tritemporal.layers.tokens import MaskToken, Rope3D, gather_tokens, grid_coords
from tritemporal.loader import MaskCollator
from tritemporal.model import TriTemporalModel
from tritemporal.train import train


def _video(config, batch: int = 2, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.rand(batch, config.clip.channels, config.clip.total_frames, *config.clip.hw)


def _masks(config, batch: int = 2):
    samples = [{"video": v, "label": 0, "step": 0} for v in _video(config, batch)]
    return MaskCollator(config)(samples).masks


def test_registry_lists_official_entries() -> None:
    for name in ("vjepa2", "vjepa2-vitl", "vjepa2-vith", "vjepa2-vitg", "vjepa2-vitg-384"):
        assert name in list_backbones("vjepa2*")
    assert adapter.HUB_IDS["vjepa2-vitl"] == "facebook/vjepa2-vitl-fpc64-256"


def test_encoder_matches_transformers_with_every_token_visible(vjepa2_dir: Path) -> None:
    config = tiny_config(*vjepa2_overrides(vjepa2_dir))
    ours = create_backbone(config).eval()
    reference = VJEPA2Model.from_pretrained(vjepa2_dir).eval()
    video = _video(config)
    with torch.no_grad():
        expected = reference.get_vision_features(video.permute(0, 2, 1, 3, 4))  # (B, T, C, H, W)
        got = ours.encoder(video)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= 1e-5


def test_predictor_matches_transformers(vjepa2_dir: Path) -> None:
    config = tiny_config(*vjepa2_overrides(vjepa2_dir))
    ours = create_backbone(config).eval()
    reference = VJEPA2Model.from_pretrained(vjepa2_dir).eval()
    video, grid = _video(config), config.clip.grid
    with torch.no_grad():
        full = reference.get_vision_features(video.permute(0, 2, 1, 3, 4))
        for mask in _masks(config):
            # transformers' predictor always uses mask token 1
            expected = reference.predictor(full, [mask.context], [mask.target]).last_hidden_state
            context = gather_tokens(full, mask.context)
            got = ours.predictor(context, mask.context, mask.target, grid, MaskToken.LONG)
            assert (got - expected).abs().max() <= 1e-5


def test_context_output_ignores_masked_pixels(vjepa2_dir: Path) -> None:
    config = tiny_config(*vjepa2_overrides(vjepa2_dir))
    encoder = create_backbone(config).encoder.eval()
    video = _video(config)
    with torch.no_grad():
        for mask in _masks(config):
            before = encoder(video, keep=mask.context)
            after = encoder(scramble_tokens(video, mask.target, config), keep=mask.context)
            assert torch.equal(before, after)


def test_wide_clips_get_true_positions(vjepa2_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 32 x 48 clip: transformers' square-grid decomposition would misplace tokens; ours not."""
    config = tiny_config(*vjepa2_overrides(vjepa2_dir), "clip.image_size=[32, 48]")
    encoder = create_backbone(config).encoder.eval()
    grid = config.clip.grid  # (4, 4, 6)
    keep = torch.tensor([[0, 5, 6, 23, 24, 95]])
    seen = []
    real_angles = Rope3D.angles
    monkeypatch.setattr(Rope3D, "angles", lambda self, c: seen.append(c) or real_angles(self, c))
    with torch.no_grad():
        out = encoder(_video(config, batch=1), keep=keep)
    assert out.shape == (1, 6, 48)
    true = grid_coords(grid)[keep[0]]
    assert torch.equal(seen[0][0], true)
    side = 32 // 8  # transformers: crop_size // patch_size for both height and width
    square = torch.stack([keep[0] // side**2, keep[0] % side**2 // side, keep[0] % side], -1)
    assert not torch.equal(square, true)


def test_pixel_stats_and_soon_token_from_the_checkpoint(vjepa2_dir: Path) -> None:
    model = TriTemporalModel(tiny_config(*vjepa2_overrides(vjepa2_dir)))
    assert torch.allclose(model.pixel_mean.flatten(), torch.tensor(PIXEL_MEAN))
    tokens = model.backbone.predictor.hf.embeddings.mask_tokens
    assert torch.equal(tokens[MaskToken.SOON], tokens[1]) and tokens[1].any()


def test_full_training_step_on_vjepa2(vjepa2_dir: Path) -> None:
    config = tiny_config(*vjepa2_overrides(vjepa2_dir))
    model = TriTemporalModel(config).train()
    video, labels = _video(config, batch=4), torch.tensor([0, 0, 1, 1])
    out = model(video, _masks(config, batch=4), labels)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert all(p.grad is None and not p.requires_grad for p in model.teacher.parameters())


def test_training_run_and_frozen_bf16_teacher(vjepa2_dir: Path, tmp_path: Path) -> None:
    overrides = vjepa2_overrides(
        vjepa2_dir, "backbone.teacher=frozen", "backbone.teacher_dtype=bfloat16"
    )
    config = tiny_config(*overrides, f"train.run_dir={tmp_path}", "train.steps=2")
    model = TriTemporalModel(config)
    assert next(model.teacher.parameters()).dtype == torch.bfloat16
    before = [p.clone() for p in model.teacher.parameters()]
    model.update_teacher(0.5)
    assert all(torch.equal(a, b) for a, b in zip(before, model.teacher.parameters(), strict=True))
    train(config)


def test_bf16_ema_teacher_is_refused(vjepa2_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"needs backbone.teacher=frozen"):
        tiny_config(*vjepa2_overrides(vjepa2_dir, "backbone.teacher_dtype=bfloat16"))


def test_activation_checkpointing_gives_same_gradients(vjepa2_dir: Path) -> None:
    grads = []
    for flag in ("false", "true"):
        config = tiny_config(
            *vjepa2_overrides(vjepa2_dir, f"backbone.activation_checkpointing={flag}")
        )
        torch.manual_seed(0)  # same head initialization in both runs
        model = TriTemporalModel(config).train()
        model(_video(config, batch=4), _masks(config, batch=4), None).loss.backward()
        grads.append(model.backbone.encoder.hf.layer[0].mlp.fc1.weight.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def _hub_cache(vjepa2_dir: Path, cache: Path, repo: str, revision: str = "main") -> None:
    """Lay out a Hugging Face cache (models--org--name/snapshots/<sha>) by hand."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    root = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(vjepa2_dir, root / "snapshots" / sha)
    (root / "refs").mkdir()
    (root / "refs" / revision).write_text(sha)


def test_loads_from_a_hub_cache_offline(vjepa2_dir: Path, tmp_path: Path) -> None:
    _hub_cache(vjepa2_dir, tmp_path, "tiny-org/vjepa2-tiny", revision="v1")
    overrides = [
        "backbone.name=vjepa2",
        "backbone.pretrained=tiny-org/vjepa2-tiny@v1",
        f"backbone.cache_dir={tmp_path}",
        "backbone.local_files_only=true",
    ]
    model = TriTemporalModel(tiny_config(*overrides))
    reference = TriTemporalModel(tiny_config(*vjepa2_overrides(vjepa2_dir)))
    a, b = model.backbone.state_dict(), reference.backbone.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.allclose(model.pixel_mean.flatten(), torch.tensor(PIXEL_MEAN))


def test_missing_weights_offline_is_a_clear_error(tmp_path: Path) -> None:
    overrides = [
        "backbone.name=vjepa2-vitl",
        f"backbone.cache_dir={tmp_path}",
        "backbone.local_files_only=true",
    ]
    with pytest.raises(FileNotFoundError, match=r"facebook/vjepa2-vitl-fpc64-256: the network"):
        create_backbone(tiny_config(*overrides))
    with pytest.raises(ValueError, match=r"needs backbone.pretrained"):
        create_backbone(tiny_config("backbone.name=vjepa2"))


def test_tubelet_mismatch_is_a_clear_error(vjepa2_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"set clip.tubelet_t=2 and clip.patch=8"):
        create_backbone(tiny_config(*vjepa2_overrides(vjepa2_dir), "clip.patch=16"))


def _meta_layout(model: VJEPA2Model) -> dict[str, dict[str, torch.Tensor]]:
    """The state dicts Meta's V-JEPA 2 training code saves, built from a transformers model."""
    sd = model.state_dict()
    encoder, predictor = {}, {}
    prefix = "module.backbone."
    for key, value in sd.items():
        if key.startswith("encoder."):
            name = key.removeprefix("encoder.")
            name = name.replace("embeddings.patch_embeddings.", "patch_embed.")
            name = name.replace("layer.", "blocks.").replace("layernorm.", "norm.")
            name = name.replace("attention.proj", "attn.proj")
            encoder[prefix + name] = value
        else:
            name = key.removeprefix("predictor.")
            if name == "embeddings.mask_tokens":
                for i, token in enumerate(value):
                    predictor[f"{prefix}mask_tokens.{i}"] = token.clone()
                continue
            name = name.replace("embeddings.predictor_embeddings.", "predictor_embed.")
            name = name.replace("layer.", "predictor_blocks.")
            name = name.replace("layernorm.", "predictor_norm.").replace("proj.", "predictor_proj.")
            name = name.replace("attention.predictor_proj", "attn.proj")
            predictor[prefix + name] = value
    for sd_part in (encoder, predictor):
        for key in [k for k in sd_part if ".attention.query." in k]:
            parts = [sd_part.pop(key.replace("query", n)) for n in ("query", "key", "value")]
            sd_part[key.replace("attention.query", "attn.qkv")] = torch.cat(parts)
    return {"encoder": encoder, "predictor": predictor}


def test_convert_meta_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(1)
    target = VJEPA2Model(tiny_vjepa2_config()).eval()
    student = VJEPA2Model(tiny_vjepa2_config()).eval()
    checkpoint = {
        "encoder": _meta_layout(student)["encoder"],
        "target_encoder": _meta_layout(target)["encoder"],
        "predictor": _meta_layout(target)["predictor"],
        "epoch": 3,
    }
    torch.save(checkpoint, tmp_path / "latest.pt")
    out = convert_meta_checkpoint(
        tmp_path / "latest.pt", tmp_path / "hf", num_heads=4, pred_num_heads=2, crop_size=32
    )
    loaded = VJEPA2Model.from_pretrained(out)
    a, b = loaded.state_dict(), target.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.config.num_hidden_layers == 2 and loaded.config.pred_num_mask_tokens == 10
    create_backbone(tiny_config(*vjepa2_overrides(out)))  # usable as backbone.pretrained
    args = ["convert-meta", str(tmp_path / "latest.pt"), "--out", str(tmp_path / "cli")]
    assert main([*args, "--num-heads", "4", "--pred-num-heads", "2", "--encoder", "encoder"]) == 0
    from_cli = VJEPA2Model.from_pretrained(tmp_path / "cli").state_dict()
    key = "encoder.layer.0.mlp.fc1.weight"
    assert torch.equal(from_cli[key], student.state_dict()[key])
    assert not torch.equal(from_cli[key], target.state_dict()[key])
    with pytest.raises(ValueError, match="--num-heads"):
        convert_meta_checkpoint(tmp_path / "latest.pt", tmp_path / "x")
    torch.save({"encoder": {}}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="lacks"):
        convert_meta_checkpoint(tmp_path / "bad.pt", tmp_path / "y", num_heads=4)
