"""`tritemporal bench`: measured throughput, reported as JSON.

`bench_step` times the real training step (`train.train_step`: schedules, forward, backward,
clip, fused AdamW, EMA) on synthetic clips already on the device, so it measures the model and
not the loader: the median step time after warm-up (CUDA events on a GPU), clips/s, the step's
FLOPs (counted by `torch.utils.flop_counter` on one eager step), the achieved TFLOP/s and its
fraction of a bf16 (or the run's dtype) matmul timed in the same process, and peak memory.
Modes: `vjepa` is V-JEPA 2's two-mask step alone (comparable with Meta's official step); `tri`
adds SOON and EVENTUALLY.

`bench_data` times the training loader alone (decode, resample, crop, collate with masks) for
each worker count, so one can tell how many CPU cores keep a GPU busy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from tritemporal.compile import compile_blocks
from tritemporal.config import TriTemporalConfig
from tritemporal.data.loader import MaskCollator, TrainBatch, build_loader
from tritemporal.data.sources import build_dataset
from tritemporal.model import TriTemporalModel, scale_grad
from tritemporal.objectives.masks import MaskSet
from tritemporal.objectives.soon import soon_forecast
from tritemporal.train import (
    autocast_for,
    build_optimizer,
    compute_dtype,
    resolve_device,
    seed_everything,
    train_step,
)

logger = logging.getLogger(__name__)

MODES = ("vjepa", "tri")
SYNTHETIC_BATCHES = 4  # distinct batches cycled through (different masks each step)


def _count_cpu_attention() -> None:
    """Teach `FlopCounterMode` the CPU flash-attention ops, which PyTorch leaves uncounted (it
    knows the CUDA kernels only), so CPU reports count attention as GPU reports do."""
    aten = torch.ops.aten
    fwd = aten._scaled_dot_product_flash_attention_for_cpu
    bwd = aten._scaled_dot_product_flash_attention_for_cpu_backward
    if fwd not in flop_counter.flop_registry:

        @flop_counter.register_flop_formula(fwd)
        def _forward(q: tuple, k: tuple, v: tuple, *args: object, **kwargs: object) -> int:
            return flop_counter.sdpa_flop_count(q, k, v)

    if bwd not in flop_counter.flop_registry:

        @flop_counter.register_flop_formula(bwd)
        def _backward(
            grad: tuple, q: tuple, k: tuple, v: tuple, *args: object, **kwargs: object
        ) -> int:
            return flop_counter.sdpa_backward_flop_count(grad, q, k, v)


_count_cpu_attention()


def bench_config(config: TriTemporalConfig, mode: str, compile: bool = False) -> TriTemporalConfig:
    """The config a mode times: `vjepa` turns SOON and EVENTUALLY off, `tri` keeps all three;
    `compile` (or `train.compile` already set) compiles the blocks with `train.compile_mode`."""
    if mode not in MODES:
        raise ValueError(f"bench mode {mode!r}: use one of {', '.join(MODES)}")
    train = dataclasses.replace(config.train, compile=compile or config.train.compile)
    config = dataclasses.replace(config, train=train)
    if mode == "tri":
        return config
    loss = dataclasses.replace(config.loss, lambda_vjepa=1.0, lambda_soon=0.0, lambda_event=0.0)
    return dataclasses.replace(config, loss=loss)


def synthetic_batches(
    config: TriTemporalConfig, device: torch.device, count: int = SYNTHETIC_BATCHES
) -> list[TrainBatch]:
    """Random uint8 clips, labels and real masks (the loader's generators), on the device."""
    c, b = config.clip, config.train.batch_size
    collator = MaskCollator(config)
    g = torch.Generator().manual_seed(config.train.seed)
    batches = []
    for step in range(count):
        video = torch.randint(0, 256, (b, c.channels, c.total_frames, *c.hw), generator=g)
        labels = torch.randint(-1, 4, (b,), generator=g)
        masks = [gen(b, g) for gen in collator.generators]
        batch = TrainBatch(step=step, video=video.to(torch.uint8), labels=labels, masks=masks)
        batches.append(batch.to(device))
    return batches


def matmul_tflops(device: torch.device, dtype: torch.dtype, size: int, repeats: int = 10) -> float:
    """Achieved TFLOP/s of a square (size x size) @ (size x size) matmul in `dtype`."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    seconds = median_seconds(lambda: a @ b, device, warmup=3, repeats=repeats)
    return 2 * size**3 / seconds / 1e12


def median_seconds(
    fn: Callable[[], object], device: torch.device, warmup: int, repeats: int
) -> float:
    """Median wall time of `fn` (CUDA events on a GPU, so no host sync between calls)."""
    for _ in range(warmup):
        fn()
    if device.type != "cuda":
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)
    events = [
        (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
        for _ in range(repeats)
    ]
    for start, end in events:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize(device)
    return statistics.median(start.elapsed_time(end) / 1e3 for start, end in events)


def count_model_flops(
    model: TriTemporalModel, batch: TrainBatch, autocast: contextlib.AbstractContextManager
) -> int:
    """Model FLOPs of one training step on `batch` (matmuls, convolutions, attention; forward
    and backward): the sum of `count_flops_by_op`."""
    return sum(count_flops_by_op(model, batch, autocast).values())


def count_flops_by_op(
    model: TriTemporalModel, batch: TrainBatch, autocast: contextlib.AbstractContextManager
) -> dict[str, int]:
    """Model FLOPs of one training step on `batch` per aten op ("aten.mm", "aten.addmm", the
    attention ops...), counted by `FlopCounterMode` on its first two clips and scaled to the batch.

    Every op of the step is linear in the batch except the EVENTUALLY logits (B x B x E, a
    rounding error here), so two clips give the count without holding a second full-batch
    step in memory. Activation checkpointing is off while counting: recomputed forwards are
    hardware work, not model work.
    """
    flags = {m: m.activation_checkpointing for m in model.modules() if _has_checkpointing(m)}
    pair = TrainBatch(
        step=batch.step,
        video=batch.video[:2],
        labels=batch.labels[:2],
        masks=[MaskSet(context=m.context[:2], target=m.target[:2]) for m in batch.masks],
    )
    try:
        for m in flags:
            m.activation_checkpointing = False
        with FlopCounterMode(display=False) as counter:
            loss_and_grads(model, pair, autocast)
    finally:
        for m, flag in flags.items():
            m.activation_checkpointing = flag
    counts = counter.get_flop_counts()["Global"]
    return {str(op): flops * batch.video.shape[0] // 2 for op, flops in counts.items()}


def _has_checkpointing(module: torch.nn.Module) -> bool:
    return hasattr(module, "activation_checkpointing")


def loss_and_grads(
    model: TriTemporalModel, batch: TrainBatch, autocast: contextlib.AbstractContextManager
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss and every gradient (flattened, float32) of one forward/backward, weights kept."""
    model.zero_grad(set_to_none=True)
    with autocast:
        out = model(batch.video, batch.masks, batch.labels, diagnostics=False)
    out.loss.backward()
    grads = [p.grad.detach().float().flatten() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    return out.loss.detach().float(), torch.cat(grads)


def compare_steps(
    reference: tuple[torch.Tensor, torch.Tensor], other: tuple[torch.Tensor, torch.Tensor]
) -> dict[str, float]:
    """Relative loss difference, relative gradient error and gradient cosine of two steps."""
    (loss_a, grad_a), (loss_b, grad_b) = reference, other
    return {
        "loss_a": float(loss_a),
        "loss_b": float(loss_b),
        "loss_rel_diff": float((loss_a - loss_b).abs() / loss_a.abs()),
        "grad_rel_error": float((grad_a - grad_b).norm() / grad_a.norm()),
        "grad_cosine": float(torch.nn.functional.cosine_similarity(grad_a, grad_b, dim=0)),
    }


def _peak_memory_gib(device: torch.device) -> dict:
    """Peak allocated GPU memory, or the process's peak resident memory on CPU."""
    if device.type == "cuda":
        return {"peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)}
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
    return {"peak_rss_gib": round(rss_kib / 2**20, 2)}


def step_setup(
    config: TriTemporalConfig,
) -> tuple[
    torch.device, TriTemporalModel, torch.optim.Optimizer, contextlib.AbstractContextManager
]:
    """What the training loop builds for a step: device, seeded model, AdamW, autocast."""
    device = resolve_device(config.train.device)
    seed_everything(config.train.seed)
    model = TriTemporalModel(config).to(device).train()
    return (
        device,
        model,
        build_optimizer(model, config),
        autocast_for(device, config.train.precision),
    )


def median_step_seconds(
    model: TriTemporalModel,
    optimizer: torch.optim.Optimizer,
    batches: list[TrainBatch],
    config: TriTemporalConfig,
    autocast: contextlib.AbstractContextManager,
    warmup: int,
    steps: int,
) -> float:
    """Median seconds of `train_step` over `steps` steps after `warmup`, cycling `batches`."""
    device = batches[0].video.device
    step_numbers = iter(range(1, 1 + warmup + steps))

    def run() -> None:
        i = next(step_numbers)
        train_step(model, optimizer, batches[i % len(batches)], i, config, autocast)

    return median_seconds(run, device, warmup, steps)


def _matmul_reference(
    device: torch.device, config: TriTemporalConfig, size: int | None
) -> tuple[int, float]:
    """The side of the square matmul timed as the reference, and its TFLOP/s in the dtype the
    step's matmuls run in (8192 on a GPU, 1024 on a CPU unless `size` is given)."""
    size = size or (8192 if device.type == "cuda" else 1024)
    return size, matmul_tflops(device, compute_dtype(device, config.train.precision), size)


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def bench_step(
    config: TriTemporalConfig,
    mode: str = "tri",
    steps: int = 20,
    warmup: int = 5,
    compile: bool = False,
    matmul_size: int | None = None,
) -> dict:
    """Time the full training step of `config` in `mode`; returns the JSON-ready report."""
    config = bench_config(config, mode, compile)
    compile = config.train.compile
    device, model, optimizer, autocast = step_setup(config)
    batches = synthetic_batches(config, device)
    b = config.train.batch_size
    flops = count_model_flops(model, batches[0], autocast)  # eager, before any compile
    check = None
    if compile:
        eager = loss_and_grads(model, batches[0], autocast)
        compile_blocks(model, config.train.compile_mode)
        check = compare_steps(eager, loss_and_grads(model, batches[0], autocast))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    wall_start = time.perf_counter()  # warm-up (where compiling happens) and timed steps
    seconds = median_step_seconds(model, optimizer, batches, config, autocast, warmup, steps)
    wall = time.perf_counter() - wall_start
    memory = _peak_memory_gib(device)

    size, peak = _matmul_reference(device, config, matmul_size)
    achieved = flops / seconds / 1e12
    masks = MaskCollator(config).generators
    report = {
        "mode": mode,
        "backbone": config.backbone.name,
        "device": _device_name(device),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "precision": str(compute_dtype(device, config.train.precision)).removeprefix("torch."),
        "compile": compile,
        "compile_mode": config.train.compile_mode if compile else None,
        "activation_checkpointing": config.backbone.activation_checkpointing,
        "batch_size": b,
        "clip": {"frames": config.clip.total_frames, "size": list(config.clip.hw)},
        "tokens": {
            "clip": config.clip.grid[0] * config.clip.grid[1] * config.clip.grid[2],
            "context_per_mask": [m.num_context for m in masks],
            "target_per_mask": [m.num_target for m in masks],
        },
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "warmup_steps": warmup,
        "timed_steps": steps,
        "step_ms": round(seconds * 1e3, 2),
        "clips_per_s": round(b / seconds, 2),
        "flops_per_step": flops,
        "tflops_per_clip": round(flops / b / 1e12, 4),
        "achieved_tflops": round(achieved, 3),
        "matmul_tflops": round(peak, 3),
        "matmul_size": size,
        "fraction_of_matmul": round(achieved / peak, 4),
        "warmup_and_timed_s": round(wall, 1),
        "compiled_vs_eager": check,
        **memory,
    }
    logger.info(
        "%s %s batch %d: %.1f ms/step, %.1f clips/s, %.1f TFLOP/s = %.0f%% of matmul",
        mode, config.backbone.name, b, seconds * 1e3, b / seconds, achieved, 100 * achieved / peak,
    )  # fmt: skip
    return report


Part = tuple[str, int, Callable[[], torch.Tensor]]  # (name, tokens per clip, forward)


def step_parts(model: TriTemporalModel, batch: TrainBatch, config: TriTemporalConfig) -> list[Part]:
    """The passes one training step makes, each as a forward to run alone at the step's shapes.

    Student and predictor passes start from leaf inputs that require grad, so their backward
    computes what the step's backward computes (input gradients included); the teacher runs
    without grad, as in the step. Order and token counts follow `TriTemporalModel.forward`.
    """
    enc, pred = model.backbone.encoder, model.backbone.predictor
    grid, lam = config.clip.grid, config.loss
    video = model.normalize(batch.video)
    b = video.shape[0]
    with torch.no_grad():
        targets = model.teacher_targets(video)
        tokens = enc.embed(video)

    def leaf(shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, device=tokens.device, dtype=tokens.dtype).requires_grad_()

    token_leaf = leaf(tokens.shape)
    n = tokens.shape[1]
    parts: list[Part] = [
        ("teacher forward, whole clip", n, lambda: model.teacher_targets(video)),
        ("tubelet embedding", n, lambda: enc.embed(video)),
    ]
    if lam.lambda_vjepa > 0:
        for i, mask in enumerate(batch.masks):
            k, m = mask.context.shape[1], mask.target.shape[1]
            context = leaf((b, k, tokens.shape[2]))
            parts += [
                (f"student, mask {i}", k, lambda c=mask.context: enc.encode(token_leaf, grid, c)),
                (
                    f"predictor, mask {i}",
                    k + m,
                    lambda x=context, c=mask.context, t=mask.target, i=i: pred(x, c, t, grid, i),
                ),
            ]
    event = lam.lambda_event > 0
    if lam.lambda_soon > 0 or event:
        now_idx = model.now_idx.expand(b, -1)
        now = leaf((b, now_idx.shape[1], tokens.shape[2]))
        parts.append(
            ("student, NOW", now_idx.shape[1], lambda: enc.encode(token_leaf, grid, now_idx))
        )
    if lam.lambda_soon > 0:
        soon_tokens = now_idx.shape[1] + model.soon_idx.shape[1]
        parts.append(
            (
                "predictor, SOON",
                soon_tokens,
                lambda: soon_forecast(model.backbone, now, model.now_idx, model.soon_idx, grid),
            )
        )
    if event:
        event_tokens = targets[:, model.event_idx[0]]
        now_last = targets[:, model.now_last_idx[0]]

        def eventually() -> torch.Tensor:  # the step stops (or scales) the gradient into NOW
            outcome = model.outcome(scale_grad(now, lam.event_encoder_grad))
            return model.eventually(outcome, event_tokens, now_last, batch.labels)[0]

        parts.append(("EVENTUALLY head and loss", now_idx.shape[1], eventually))
    return parts


def bench_parts(
    config: TriTemporalConfig,
    mode: str = "tri",
    steps: int = 10,
    warmup: int = 3,
    compile: bool = False,
    matmul_size: int | None = None,
) -> dict:
    """Time each pass of the step alone, and the optimizer and EMA: where the step's time goes.

    Each part's forward (and backward, for the parts that train) is timed on its own at the
    step's shapes, with its model FLOPs counted eagerly first; the whole step is timed too, so
    the report shows each part's share of it and what the parts do not account for.
    """
    config = bench_config(config, mode, compile)
    device, model, optimizer, autocast = step_setup(config)
    batch = synthetic_batches(config, device, count=1)[0]

    def run(forward: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def call() -> None:
            model.zero_grad(set_to_none=True)
            with autocast:
                out = forward()
            if out.requires_grad:
                out.float().sum().backward()

        return call

    with autocast:
        parts = step_parts(model, batch, config)
    flops = {}
    for name, _, forward in parts:
        with FlopCounterMode(display=False) as counter:
            run(forward)()
        flops[name] = counter.get_total_flops()
    for p in model.parameters():  # what the optimizer sees after a backward
        p.grad = torch.zeros_like(p) if p.requires_grad else None
    max_norm = config.optim.grad_clip or float("inf")
    params = [p for p in model.parameters() if p.requires_grad]
    rest = {
        "grad clip and AdamW": lambda: (
            torch.nn.utils.clip_grad_norm_(params, max_norm),
            optimizer.step(),
        ),
        "EMA teacher update": lambda: model.update_teacher(0.999),
    }
    rest_ms = {name: median_seconds(fn, device, warmup, steps) * 1e3 for name, fn in rest.items()}
    if config.train.compile:
        compile_blocks(model, config.train.compile_mode)
    rows = [
        {
            "part": name,
            "tokens_per_clip": tokens,
            "ms": median_seconds(run(forward), device, warmup, steps) * 1e3,
            "flops": flops[name],
        }
        for name, tokens, forward in parts
    ]
    rows += [{"part": name, "ms": ms, "flops": 0} for name, ms in rest_ms.items()]
    step_ms = 1e3 * median_step_seconds(model, optimizer, [batch], config, autocast, warmup, steps)
    _, peak = _matmul_reference(device, config, matmul_size)
    for row in rows:
        tflops = row["flops"] / row["ms"] / 1e9 if row["flops"] else None
        row.update(
            ms=round(row["ms"], 3),
            share_of_step=round(row["ms"] / step_ms, 4),
            achieved_tflops=round(tflops, 3) if tflops else None,
            fraction_of_matmul=round(tflops / peak, 4) if tflops else None,
        )
    parts_ms = sum(row["ms"] for row in rows)
    return {
        "mode": mode,
        "backbone": config.backbone.name,
        "device": _device_name(device),
        "compile": config.train.compile,
        "compile_mode": config.train.compile_mode if config.train.compile else None,
        "batch_size": config.train.batch_size,
        "step_ms": round(step_ms, 3),
        "parts_ms": round(parts_ms, 3),
        "unattributed_ms": round(step_ms - parts_ms, 3),
        "matmul_tflops": round(peak, 3),
        "parts": rows,
    }


def bench_data(
    config: TriTemporalConfig,
    workers: list[int],
    batches: int = 20,
    gpu_clips_per_s: float | None = None,
) -> dict:
    """Loader throughput (clips/s, decoded frames/s) per worker count, after one warm-up batch;
    with `gpu_clips_per_s` (a step's rate from `bench_step`), the cores it takes to feed it."""
    dataset = build_dataset(config)
    frames_per_clip = config.clip.total_frames
    results = []
    for n in workers:
        data = dataclasses.replace(config.data, num_workers=n)
        train = dataclasses.replace(config.train, steps=batches + 1)
        run = dataclasses.replace(config, data=data, train=train)
        iterator = iter(build_loader(run, dataset))
        next(iterator)  # start-up and worker spawn are not throughput
        start, clips = time.perf_counter(), 0
        for batch in iterator:
            clips += batch.video.shape[0]
        seconds = time.perf_counter() - start
        rate = clips / seconds
        results.append(
            {
                "workers": n,
                "clips_per_s": round(rate, 2),
                "frames_per_s": round(rate * frames_per_clip, 1),
                "clips_per_s_per_worker": round(rate / max(n, 1), 2),
                "seconds": round(seconds, 2),
            }
        )
        logger.info("workers %d: %.1f clips/s, %.0f frames/s", n, rate, rate * frames_per_clip)
    per_core = [r["clips_per_s_per_worker"] for r in results if r["workers"] > 0]
    feed = None
    if gpu_clips_per_s and per_core:
        feed = {
            "gpu_clips_per_s": gpu_clips_per_s,
            "clips_per_s_per_core": max(per_core),
            "cores_per_gpu": math.ceil(gpu_clips_per_s / max(per_core)),
        }
    return {
        "mode": "data",
        "source": config.data.source,
        "backend": config.data.backend,
        "clip": {"frames": frames_per_clip, "size": list(config.clip.hw)},
        "batch_size": config.train.batch_size,
        "batches": batches,
        "cpu_count": os.cpu_count(),
        "dataset_samples": len(dataset),
        "results": results,
        "feeding": feed,
    }
