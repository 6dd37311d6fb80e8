"""`train.fp8`: which layers run fp8 GEMMs, and that the step agrees with bf16 (on CPU torch
emulates the fp8 GEMMs, so the accuracy is checked here and the speed on a GPU)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("torchao.float8")

from tests.conftest import TINY, tiny_config, vjepa2_overrides
from tritemporal.bench import loss_and_grads, synthetic_batches
from tritemporal.cli import main
from tritemporal.fp8 import apply_fp8, fp8_layer
from tritemporal.model import TriTemporalModel
from tritemporal.train import train

CPU = torch.device("cpu")
WIDE = ["backbone.embed_dim=64", "backbone.num_heads=4"]  # multiples of 16 everywhere


def _fp8_names(model: torch.nn.Module) -> set[str]:
    return {n for n, m in model.named_modules() if type(m).__name__ == "Float8Linear"}


def test_the_block_gemms_and_nothing_else_turn_fp8() -> None:
    torch.manual_seed(0)
    model = TriTemporalModel(tiny_config(*WIDE))
    assert apply_fp8(model, CPU) == 24  # 3 stacks (student, teacher, predictor) x 2 blocks x 4
    names = _fp8_names(model)
    assert "backbone.encoder.blocks.0.attn.qkv" in names and "teacher.blocks.1.mlp.fc2" in names
    assert "backbone.predictor.blocks.0.mlp.fc1" in names
    for kept in ("backbone.predictor.embed", "backbone.predictor.proj", "outcome.head",
                 "outcome.pool.q", "eventually.target_proj.0"):  # fmt: skip
        assert kept not in names and kept in dict(model.named_modules())
    assert not fp8_layer(torch.nn.Linear(24, 48), "blocks.0.attn.proj")  # 24: not a multiple of 16


def test_fp8_step_agrees_with_bf16() -> None:
    config = tiny_config(*WIDE)
    torch.manual_seed(0)
    model = TriTemporalModel(config).train()
    batch = synthetic_batches(config, CPU, count=1)[0]
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16)
    reference = loss_and_grads(model, batch, bf16)
    weights = [p for p in model.parameters()]
    apply_fp8(model, CPU)
    assert [p for p in model.parameters()] == weights  # the optimizer and EMA see the same ones
    fp8 = loss_and_grads(model, batch, bf16)
    assert abs(fp8[0] - reference[0]) / abs(reference[0]) < 0.02
    cosine = torch.nn.functional.cosine_similarity(
        torch.cat([g.flatten() for g in fp8[1]]), torch.cat([g.flatten() for g in reference[1]]), 0
    )
    assert cosine > 0.98


def test_under_lora_the_frozen_base_layers_turn_fp8(vjepa2_dir: Path) -> None:
    lora = ["backbone.lora.r=16", "backbone.lora.alpha=16", "backbone.lora.apply_to=[encoder]"]
    torch.manual_seed(0)
    model = TriTemporalModel(tiny_config(*vjepa2_overrides(vjepa2_dir, *lora)))
    swapped = apply_fp8(model, CPU)
    names = _fp8_names(model)
    assert swapped == len(names) > 0
    assert all(".layer." in n for n in names)  # transformers' VJEPA2 layers
    assert any(n.endswith("base_layer") for n in names)  # LoRA's frozen base GEMM
    assert not any("lora_" in n for n in names)  # the rank-r adapters stay bf16


def test_training_with_fp8_saves_a_checkpoint_any_model_loads(tmp_path: Path) -> None:
    run = train(tiny_config(*WIDE, "train.fp8=true", "train.precision=bf16", "train.steps=2",
                            f"train.run_dir={tmp_path / 'run'}"))  # fmt: skip
    model = TriTemporalModel.from_pretrained(run)  # a bf16 model: the same weight names
    assert not _fp8_names(model)


def test_bench_reports_the_fp8_check(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    sets = [*TINY, *WIDE, "train.fp8=true", "train.precision=bf16", "train.device=cpu"]
    argv = ["bench", "--mode", "tri", "--steps", "1", "--warmup", "1", "--out", str(out)]
    assert main([*argv, *[a for s in sets for a in ("--set", s)]]) == 0
    report = json.loads(out.read_text())
    assert report["fp8"] and report["fp8_vs_bf16"]["grad_cosine"] > 0.98


def test_bad_fp8_settings_say_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"train\.fp8=true with train\.precision=fp32"):
        tiny_config("train.fp8=true", "train.precision=fp32")
    monkeypatch.setitem(sys.modules, "torchao.float8", None)  # torchao not installed
    with pytest.raises(ImportError, match="pip install torchao"):
        apply_fp8(TriTemporalModel(tiny_config(*WIDE)), CPU)
