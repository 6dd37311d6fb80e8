"""`scripts/bench_gpu.py --configs` (issue 20): the batch search, the checkpointing fallback and
the LoRA-versus-full comparison, on a stand-in for the timed step (no GPU, no compiling)."""

from __future__ import annotations

import importlib.util
import json
from argparse import Namespace
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_gpu.py"


@pytest.fixture
def bench_gpu(monkeypatch: pytest.MonkeyPatch):
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "_card_memory_gib", lambda: 140.0)
    return module


def fake_step(gib_per_clip: float, checkpointed_gib: float, lora_speedup: float = 1.0):
    """A bench_step stand-in: memory grows with the batch (less with checkpointing), a batch
    over 140 GiB runs out of memory; clips/s grows slowly with the batch."""

    def step(config, mode, steps, warmup, compile):
        b = config.train.batch_size
        per_clip = checkpointed_gib if config.backbone.activation_checkpointing else gib_per_clip
        memory = 10 + per_clip * b
        if memory > 140:
            raise RuntimeError(f"CUDA out of memory at batch {b}")
        speed = (30 + b / 4) * (lora_speedup if config.backbone.lora.r else 1.0)
        return {"clips_per_s": speed, "fraction_of_matmul": 0.4, "peak_memory_gib": memory,
                "device": "H200", "fp8_vs_bf16": None}  # fmt: skip

    return step


ARGS = Namespace(tiny=False, steps=1, warmup=1)


def test_the_largest_batch_that_fits_is_found_without_an_oom_run(bench_gpu, monkeypatch) -> None:
    monkeypatch.setattr(bench_gpu, "bench_step", fake_step(gib_per_clip=3.0, checkpointed_gib=1.0))
    row = bench_gpu.user_config("vjepa2-vitl", "full", "bf16", ARGS)
    assert row["largest_batch"] == 32 and not row["largest_batch_checkpointing"]
    assert [b["batch"] for b in row["batches"]] == [8, 16, 32]  # 64 predicted at 202 GiB: skipped
    assert row["fastest"]["batch"] == 32 and row["crop"] == 256


def test_checkpointing_only_where_batch_16_does_not_fit(bench_gpu, monkeypatch) -> None:
    monkeypatch.setattr(bench_gpu, "bench_step", fake_step(gib_per_clip=12.0, checkpointed_gib=2.0))
    row = bench_gpu.user_config("vjepa2-vitg-384", "lora", "bf16", ARGS)
    plain = [b for b in row["batches"] if not b["checkpointing"]]
    assert [b["batch"] for b in plain] == [8]  # 16 would need 202 GiB
    assert row["largest_batch"] == 32 and row["largest_batch_checkpointing"]
    assert row["crop"] == 384


def test_lora_is_compared_with_full_fine_tuning_at_one_batch(
    bench_gpu, monkeypatch, tmp_path
) -> None:
    rows = []
    for tuning, speedup in (("full", 1.0), ("lora", 1.4)):
        monkeypatch.setattr(bench_gpu, "bench_step", fake_step(3.0, 1.0, lora_speedup=speedup))
        rows.append(bench_gpu.user_config("vjepa2-vitl", tuning, "bf16", ARGS))
    (ratio,) = bench_gpu.lora_at_full_batch(rows)
    assert ratio["batch"] == 32 and ratio["lora_over_full"] == pytest.approx(1.4)
    (tmp_path / "configs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "lora_vs_full.json").write_text(json.dumps({"rows": [ratio]}))
    summary = bench_gpu.summarize(tmp_path)
    assert "| vjepa2-vitl | lora | bf16 | H200 | 32 |" in summary and "| 1.4 |" in summary


def test_a_failing_configuration_is_a_row_not_a_crash(bench_gpu, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("no fp8 kernels on this card")

    monkeypatch.setattr(bench_gpu, "bench_step", broken)
    row = bench_gpu.user_config("vjepa2-vitl", "full", "fp8", ARGS)
    assert row["largest_batch"] is None and row["fastest"] is None
    assert "no fp8 kernels" in row["batches"][0]["error"]
