"""LoRA fine-tuning (peft) and the EMA teacher that shares the frozen base weights."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model
from transformers import VJEPA2Model

from tests.conftest import tiny_config, vjepa2_overrides
from tritemporal.adapters.lora import SharedBaseTeacher
from tritemporal.loader import MaskCollator
from tritemporal.metrics import read_metrics
from tritemporal.model import TriTemporalModel
from tritemporal.train import build_optimizer, train

LORA = ["backbone.lora.r=4", "backbone.lora.alpha=8"]


def _batch(config, seed: int = 0):
    torch.manual_seed(seed)
    c = config.clip
    videos = torch.rand(4, c.channels, c.total_frames, *c.hw)
    samples = [{"video": v, "label": i % 2, "step": seed} for i, v in enumerate(videos)]
    return MaskCollator(config)(samples)


def _trainable(module: torch.nn.Module) -> list[str]:
    return [n for n, p in module.named_parameters() if p.requires_grad]


def test_only_adapters_heads_and_predictor_train() -> None:
    model = TriTemporalModel(tiny_config(*LORA))
    encoder = _trainable(model.backbone.encoder)
    assert encoder and all(".lora_" in n for n in encoder)
    assert all(p.requires_grad for p in model.backbone.predictor.parameters())
    assert all(p.requires_grad for p in model.outcome.parameters())
    frozen = [n for n, p in model.backbone.encoder.named_parameters() if not p.requires_grad]
    assert "blocks.0.attn.qkv.base_layer.weight" in frozen


def test_trainable_count_matches_peft(vjepa2_dir: Path) -> None:
    overrides = vjepa2_overrides(vjepa2_dir, *LORA, "backbone.lora.apply_to=[encoder, predictor]")
    model = TriTemporalModel(tiny_config(*overrides))
    ours = sum(
        p.numel()
        for n, p in model.backbone.named_parameters()
        if p.requires_grad and not n.endswith("mask_tokens")
    )
    reference = VJEPA2Model.from_pretrained(vjepa2_dir)
    peft_config = PeftLoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"])
    trainable, _ = get_peft_model(reference, peft_config).get_nb_trainable_parameters()
    assert ours == trainable


def test_teacher_memory_is_a_small_fraction_of_the_base(vjepa2_dir: Path) -> None:
    model = TriTemporalModel(tiny_config(*vjepa2_overrides(vjepa2_dir, *LORA)))
    assert isinstance(model.teacher, SharedBaseTeacher)
    assert list(model.teacher.parameters()) == []
    teacher = sum(t.numel() * t.element_size() for t in model.teacher.state_dict().values())
    base = sum(p.numel() * p.element_size() for p in model.backbone.encoder.parameters())
    assert teacher < 0.1 * base, (teacher, base)


def test_teacher_starts_at_the_base_and_moves_by_ema_on_adapters_only() -> None:
    config = tiny_config(*LORA, "optim.ema_start=0.9", "optim.ema_end=0.9")
    model = TriTemporalModel(config).train()
    batch = _batch(config)
    video = model.normalize(batch.video)
    base = copy.deepcopy(model.backbone.encoder).eval()
    with torch.no_grad():
        assert torch.allclose(model.teacher(video), base(video), atol=1e-6)

    optimizer = build_optimizer(model, config)
    before = [t.clone() for t in model.teacher.ema_tensors()]
    model(batch.video, batch.masks, batch.labels).loss.backward()
    assert all(t.grad is None for t in model.teacher.ema_tensors())
    optimizer.step()
    model.update_teacher(0.9)
    params = dict(model.backbone.encoder.named_parameters())
    for name, old, new in zip(
        model.teacher.names, before, model.teacher.ema_tensors(), strict=True
    ):
        assert torch.allclose(new, 0.9 * old + 0.1 * params[name].detach(), atol=1e-7)
    assert model.backbone.encoder.training  # the teacher pass left the student in train mode


@pytest.mark.slow
def test_frozen_teacher_under_lora_stays_the_pretrained_encoder(tmp_path: Path) -> None:
    config = tiny_config(*LORA, "backbone.teacher=frozen", f"train.run_dir={tmp_path}")
    torch.manual_seed(0)
    reference = TriTemporalModel(config)
    video = reference.normalize(_batch(config).video)
    with torch.no_grad():
        expected = reference.teacher(video)
    train_module_run = train(config)
    assert read_metrics(train_module_run)[-1]["step"] == config.train.steps
    torch.manual_seed(0)
    model = TriTemporalModel(config)
    from tritemporal.checkpoint import load_checkpoint

    load_checkpoint(train_module_run, model, restore_rng=False)
    with torch.no_grad():
        assert torch.allclose(model.teacher(video), expected, atol=1e-6)
        assert not torch.allclose(model.backbone.encoder(video), expected, atol=1e-4)


@pytest.mark.slow
def test_lora_training_run_on_vjepa2_adapts_the_chosen_layers(
    vjepa2_dir: Path, tmp_path: Path
) -> None:
    overrides = vjepa2_overrides(vjepa2_dir, *LORA, "backbone.lora.layers=[1]")
    run = train(tiny_config(*overrides, f"train.run_dir={tmp_path / 'a'}"))
    records = read_metrics(run)
    assert records[-1]["step"] == 6 and all(r["loss"] == r["loss"] for r in records)
    model = TriTemporalModel(tiny_config(*overrides))
    adapted = {n.split(".lora_")[0] for n in _trainable(model.backbone.encoder)}
    assert adapted == {"hf.layer.1.attention.query", "hf.layer.1.attention.value"}


def test_unknown_target_modules_name_the_available_layers() -> None:
    with pytest.raises(
        ValueError, match=r"Linear layer names there: \['fc1', 'fc2', 'proj', 'qkv'\]"
    ):
        TriTemporalModel(tiny_config(*LORA, "backbone.lora.target_modules=[query]"))


def test_the_lora_step_keeps_no_gradient_or_optimizer_state_for_the_base(
    vjepa2_dir: Path,
) -> None:
    """What makes a LoRA step cheaper than full fine-tuning: the frozen base gets no weight
    gradient (its GEMMs' weight-gradient halves are skipped) and AdamW keeps no moments for it."""
    config = tiny_config(
        *vjepa2_overrides(vjepa2_dir, *LORA, "backbone.lora.apply_to=[encoder, predictor]")
    )
    model = TriTemporalModel(config).train()
    optimizer = build_optimizer(model, config)
    batch = _batch(config)
    model(batch.video, batch.masks, batch.labels).loss.backward()
    optimizer.step()
    frozen = [p for p in model.backbone.parameters() if not p.requires_grad]
    assert frozen and all(p.grad is None for p in frozen)
    state = {id(p) for p in optimizer.state}
    assert not any(id(p) in state for p in frozen)
    trained = sum(p.numel() for p in model.backbone.parameters() if p.requires_grad)
    assert trained < 0.5 * sum(p.numel() for p in frozen)
