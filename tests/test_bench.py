"""`tritemporal bench`: the timed step is the real training step, its numbers are consistent, and
the compiled step computes what the eager step computes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch.utils import flop_counter

from tests.conftest import TINY, tiny_config
from tritemporal.bench import (
    bench_config,
    bench_step,
    compare_steps,
    count_flops_by_op,
    count_model_flops,
    count_step_flops,
    flop_counter_mode,
    loss_and_grads,
    synthetic_batches,
)
from tritemporal.cli import main
from tritemporal.compile import compile_blocks
from tritemporal.model import TriTemporalModel
from tritemporal.train import autocast_for


@pytest.mark.slow
def test_bench_step_reports_a_consistent_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    sets = [*TINY, "train.device=cpu"]
    argv = ["bench", "--mode", "tri", "--steps", "2", "--warmup", "1", "--out", str(out)]
    assert main([*argv, *[a for s in sets for a in ("--set", s)]]) == 0
    report = json.loads(out.read_text())
    assert report["mode"] == "tri" and report["device"] == "cpu" and report["batch_size"] == 4
    assert report["flops_per_step"] > 0 and report["step_ms"] > 0
    assert report["clips_per_s"] == pytest.approx(4 / report["step_ms"] * 1e3, rel=1e-2)
    achieved = report["flops_per_step"] / (report["step_ms"] / 1e3) / 1e12
    assert report["achieved_tflops"] == pytest.approx(achieved, abs=0.01)
    fraction = achieved / report["matmul_tflops"]
    assert report["fraction_of_matmul"] == pytest.approx(fraction, rel=0.05, abs=1e-3)
    assert report["peak_rss_gib"] > 0
    assert report["compiled_vs_eager"] is None


def test_vjepa_mode_counts_fewer_flops_than_tri(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`vjepa` is the two-mask step alone: no NOW pass, no SOON or EVENTUALLY heads. The
    parameters bench reports are those `train` logs at start-up, split by part."""
    from tritemporal.train import train

    config = tiny_config("train.device=cpu", f"train.run_dir={tmp_path / 'run'}", "train.steps=1")
    caplog.set_level("INFO")
    reports = {
        mode: bench_step(config, mode, steps=1, warmup=0, matmul_size=64)
        for mode in ("vjepa", "tri")
    }
    assert 0 < reports["vjepa"]["flops_per_step"] < reports["tri"]["flops_per_step"]
    model = TriTemporalModel(config)
    counts = model.parameter_counts()
    assert reports["tri"]["params_m"] == {k: round(v / 1e6, 3) for k, v in counts.items()}
    train(config)
    line = model.describe_parameters()
    assert sum(line in record.getMessage() for record in caplog.records) == 2  # bench tri, train


def test_parameter_counts_split_the_model_by_part() -> None:
    model = TriTemporalModel(tiny_config())
    counts = model.parameter_counts()
    params = list(model.parameters())
    assert counts["total"] == sum(p.numel() for p in params)
    assert counts["trainable"] == sum(p.numel() for p in params if p.requires_grad)
    assert counts["total"] == sum(counts[k] for k in ("encoder", "predictor", "heads", "teacher"))
    assert (
        counts["teacher"] == counts["encoder"] == sum(p.numel() for p in model.teacher.parameters())
    )
    assert counts["trainable"] == counts["total"] - counts["teacher"]  # all but the EMA teacher
    line = model.describe_parameters()
    total, trainable = counts["total"] / 1e6, counts["trainable"] / 1e6
    assert line.startswith(f"{trainable:.2f}M trainable of {total:.2f}M params (")
    assert line.endswith(f"EMA teacher {counts['teacher'] / 1e6:.2f}M")


def test_unknown_mode_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="bench mode 'fast'"):
        bench_step(tiny_config("train.device=cpu"), "fast")


@pytest.mark.slow
def test_compiled_step_matches_eager_and_compiles_each_shape_once() -> None:
    """fp32 on CPU: compiled blocks give the eager loss and gradients to float rounding, and
    one graph serves every block of a pass (no per-block recompiles), also with an SDPA kernel
    bound to the predictor's blocks."""
    from torch._dynamo.utils import counters

    config = tiny_config("train.device=cpu", "backbone.depth=3", "predictor.sdpa_kernel=math")
    torch.manual_seed(0)
    model = TriTemporalModel(config).train()
    batch = synthetic_batches(config, torch.device("cpu"), count=1)[0]
    autocast = autocast_for(torch.device("cpu"), "fp32")
    eager = loss_and_grads(model, batch, autocast)
    torch._dynamo.reset()
    counters.clear()
    assert compile_blocks(model) == 3  # student encoder, teacher, predictor
    check = compare_steps(eager, loss_and_grads(model, batch, autocast))
    assert check["loss_rel_diff"] < 1e-5
    assert check["grad_rel_error"] < 1e-4
    # teacher (whole clip), student (short, long, NOW), predictor (short, long, SOON): 7 at most
    assert counters["stats"]["unique_graphs"] <= 7
    assert not counters["graph_break"]  # the model's profiler ranges break no graph


def test_flops_counted_on_two_clips_scale_to_the_full_batch() -> None:
    config = tiny_config("train.device=cpu", "train.batch_size=6")
    model = TriTemporalModel(config).train()
    batch = synthetic_batches(config, torch.device("cpu"), count=1)[0]
    autocast = autocast_for(torch.device("cpu"), "fp32")
    with flop_counter_mode() as counter:
        loss_and_grads(model, batch, autocast)
    scaled = count_model_flops(model, batch, autocast)
    assert scaled == pytest.approx(counter.get_total_flops(), rel=0.01)


@pytest.mark.slow
def test_flops_by_op_split_the_step_into_matmuls_and_attention() -> None:
    """The per-op counts `bench_gpu.py --profile` sorts into GEMMs and attention add up to the
    step's model FLOPs, and attention is counted under its own ops."""
    config = tiny_config("train.device=cpu", "train.batch_size=4")
    model = TriTemporalModel(config).train()
    batch = synthetic_batches(config, torch.device("cpu"), count=1)[0]
    autocast = autocast_for(torch.device("cpu"), "fp32")
    by_op = count_flops_by_op(model, batch, autocast)
    assert sum(by_op.values()) == count_model_flops(model, batch, autocast)
    attention = sum(n for op, n in by_op.items() if "attention" in op)
    matmuls = sum(n for op, n in by_op.items() if op in ("aten.mm", "aten.addmm", "aten.bmm"))
    assert attention > 0 and matmuls > 0
    assert attention + matmuls == sum(by_op.values())  # the tubelet embedding is a matmul too


@pytest.mark.slow
def test_recomputed_forwards_are_not_model_flops() -> None:
    counts = []
    for checkpointing in ("false", "true"):
        config = tiny_config(
            "train.device=cpu", f"backbone.activation_checkpointing={checkpointing}"
        )
        model = TriTemporalModel(config).train()
        batch = synthetic_batches(config, torch.device("cpu"), count=1)[0]
        counts.append(count_model_flops(model, batch, autocast_for(torch.device("cpu"), "fp32")))
    assert counts[0] == counts[1]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["vjepa", "tri"])
def test_the_parts_are_the_whole_step(mode: str) -> None:
    """The ranges the model opens hold the step's whole work: their FLOPs (each range's forward
    and the backward of what it ran) add up to the step's, and `vjepa` has no NOW, SOON or
    EVENTUALLY part."""
    config = bench_config(tiny_config("train.device=cpu", "train.batch_size=2"), mode)
    model = TriTemporalModel(config).train()
    batch = synthetic_batches(config, torch.device("cpu"), count=1)[0]
    autocast = autocast_for(torch.device("cpu"), "fp32")
    step = count_model_flops(model, batch, autocast)
    by_range = count_step_flops(model, batch, autocast).by_range
    names = list(by_range)
    assert sum(by_range.values()) == step
    later = ["student, NOW", "predictor, SOON", "EVENTUALLY head and loss"]
    assert all((name in names) == (mode == "tri") for name in later)
    assert names[:3] == ["teacher forward, whole clip", "tubelet embedding", "student, mask 0"]


@pytest.mark.slow
def test_bench_parts_reports_each_part_against_the_step(tmp_path: Path) -> None:
    out = tmp_path / "parts.json"
    sets = [a for s in [*TINY, "train.device=cpu"] for a in ("--set", s)]
    argv = ["bench", "--parts", "--mode", "tri", "--steps", "2", "--warmup", "1", "--out", str(out)]
    assert main([*argv, *sets]) == 0
    report = json.loads(out.read_text())
    parts = {row["part"]: row for row in report["parts"]}
    assert {"grad clip and AdamW", "EMA teacher update", "predictor, SOON"} <= set(parts)
    assert report["step_ms"] > 0 and all(row["ms"] > 0 for row in parts.values())
    assert report["parts_ms"] == pytest.approx(sum(r["ms"] for r in parts.values()), abs=0.01)
    row = parts["student, mask 0"]
    assert row["share_of_step"] == pytest.approx(row["ms"] / report["step_ms"], abs=1e-3)
    assert row["achieved_tflops"] == pytest.approx(row["flops"] / row["ms"] / 1e9, abs=1e-3)
    # read from profiles of the real step: nothing counted twice, each pass's backward found
    assert report["parts_ms"] <= report["profiled_step_ms"]
    assert row["ms"] == pytest.approx(row["forward_ms"] + row["backward_ms"], abs=0.01)
    ranges = {name: r for name, r in parts.items() if "backward_ms" in r}
    teacher = ranges.pop("teacher forward, whole clip")
    assert teacher["backward_ms"] == 0 and all(r["backward_ms"] > 0 for r in ranges.values())
    assert list(parts)[-2:] == ["grad clip and AdamW", "EMA teacher update"]


def test_compile_mode_reaches_torch_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    """`train.compile_mode` is torch.compile's mode for every compiled block function."""
    seen = []

    def fake_compile(fn: Callable, **kwargs: object) -> Callable:  # stands in for torch.compile
        seen.append(kwargs["mode"])
        return lambda *args: fn(*args)

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = TriTemporalModel(tiny_config())
    assert compile_blocks(model, "max-autotune-no-cudagraphs") == 3
    assert seen == ["max-autotune-no-cudagraphs"]  # one function, shared by every block


def test_attention_flops_are_counted_on_cpu_too() -> None:
    """CPU reports count SDPA as GPU ones do: 4 B H N^2 d forward, 2.5 times that backward."""
    q = torch.randn(2, 3, 16, 8, requires_grad=True)
    with flop_counter_mode() as counter:
        torch.nn.functional.scaled_dot_product_attention(q, q, q).sum().backward()
    assert counter.get_total_flops() == 4 * 2 * 3 * 16 * 16 * 8 * 3.5


def test_flop_formulas_leave_torch_registry_as_found() -> None:
    """Importing `tritemporal.bench` registers nothing in torch's global FLOP registry (checked
    in a fresh interpreter, since this one imported it already), and counting does not either."""
    check = (
        "import torch.utils.flop_counter as f; before = dict(f.flop_registry); "
        "import tritemporal.bench; assert f.flop_registry == before, 'import changed it'"
    )
    subprocess.run([sys.executable, "-c", check], check=True)
    before = dict(flop_counter.flop_registry)
    q = torch.randn(1, 2, 8, 4, requires_grad=True)
    with flop_counter_mode() as counter:
        torch.nn.functional.scaled_dot_product_attention(q, q, q).sum().backward()
    assert counter.get_total_flops() > 0
    assert flop_counter.flop_registry == before
