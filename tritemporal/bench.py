"""`tritemporal bench`: measured throughput, reported as JSON.

`bench_step` times the real training step (`train.train_step`: schedules, forward, backward,
clip, fused AdamW, EMA) on synthetic clips already on the device, so it measures the model and
not the loader: the median step time after warm-up (CUDA events on a GPU), clips/s, the step's
FLOPs (counted by `torch.utils.flop_counter` on one eager step), the achieved TFLOP/s and its
fraction of a bf16 (or the run's dtype) matmul timed in the same process, and peak memory.
Modes: `vjepa` is V-JEPA 2's two-mask step alone (comparable with Meta's official step); `tri`
adds SOON and EVENTUALLY.

`bench_parts` profiles the same `train_step` with `torch.profiler` and reads where its time goes
from the named ranges the model opens around each pass (`tritemporal.step_ranges`): each pass's
forward plus the backward of the autograd nodes its forward made (matched by autograd's node
sequence numbers), then clipping with AdamW and the EMA update (what the step runs after the
backward, up to and after torch's `Optimizer.step` range). FLOPs are split the same way.

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
from collections import Counter
from collections.abc import Callable, Iterable

import torch
from torch.autograd import DeviceType
from torch.autograd.profiler_util import FunctionEvent
from torch.profiler import ProfilerActivity, profile
from torch.utils import flop_counter
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from tritemporal import step_ranges
from tritemporal.compile import compile_blocks
from tritemporal.config import TriTemporalConfig
from tritemporal.data.ego_motion import motion_size
from tritemporal.data.sources import build_dataset
from tritemporal.data.windows import WindowSpec
from tritemporal.fp8 import apply_fp8
from tritemporal.loader import MaskCollator, TrainBatch, build_loader
from tritemporal.model import TriTemporalModel
from tritemporal.runtime import resolve_device
from tritemporal.train import (
    DivergenceGuard,
    autocast_for,
    build_optimizer,
    compute_dtype,
    seed_everything,
    train_step,
)

logger = logging.getLogger(__name__)

MODES = ("vjepa", "tri")
SYNTHETIC_BATCHES = 4  # distinct batches cycled through (different masks each step)

# the parts of a step that the profiler shows without a range of ours: what runs after the
# backward up to the end of torch's `Optimizer.step#...` range, and what runs after it
CLIP_AND_ADAMW = "grad clip and AdamW"
EMA_UPDATE = "EMA teacher update"
OPTIMIZER_STEP = "Optimizer.step#"
EVALUATE = "autograd::engine::evaluate_function: "  # one backward node, as the profiler names it


def _cpu_attention_forward(q: tuple, k: tuple, v: tuple, *args: object, **kwargs: object) -> int:
    return flop_counter.sdpa_flop_count(q, k, v)


def _cpu_attention_backward(
    grad: tuple, q: tuple, k: tuple, v: tuple, *args: object, **kwargs: object
) -> int:
    return flop_counter.sdpa_backward_flop_count(grad, q, k, v)


# the CPU flash-attention ops, which torch's FLOP registry leaves uncounted (it knows the CUDA
# kernels only): passed to each counter, so torch's global registry stays as it is
CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_forward,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward,
}


def flop_counter_mode() -> FlopCounterMode:
    """torch's `FlopCounterMode` that also counts CPU attention, as GPU reports count it."""
    return FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS)


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
        signals = None  # an action-conditioned predictor's ego signals, standard normal
        if config.predictor.action_conditioning:
            signals = torch.randn(b, c.total_frames, len(config.action.signals), generator=g)
        motion = None  # the ego EVENTUALLY target's future motion, standard normal
        if config.loss.trains_ego_target:
            motion = torch.randn(b, motion_size(WindowSpec.from_config(config)), generator=g)
        batch = TrainBatch(
            step=step,
            video=video.to(torch.uint8),
            labels=labels,
            masks=masks,
            signals=signals,
            ego_motion=motion,
        )
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
    attention ops...): `count_step_flops(...).by_op`."""
    return count_step_flops(model, batch, autocast).by_op


@dataclasses.dataclass
class StepFlops:
    """Model FLOPs of one training step per aten op and per range of `tritemporal.step_ranges`
    (the range's forward and the backward of the nodes it made), and each range's tokens per
    clip (the rows of its largest forward matmul, per clip)."""

    by_op: dict[str, int]
    by_range: dict[str, int]
    tokens: dict[str, int]


def count_step_flops(
    model: TriTemporalModel, batch: TrainBatch, autocast: contextlib.AbstractContextManager
) -> StepFlops:
    """Model FLOPs of one training step on `batch`, counted by `FlopCounterMode` on its first
    two clips and scaled to the batch.

    Every op of the step is linear in the batch except the EVENTUALLY logits (B x B x E, a
    rounding error here), so two clips give the count without holding a second full-batch
    step in memory. Activation checkpointing is off while counting: recomputed forwards are
    hardware work, not model work.
    """
    flags = {m: m.activation_checkpointing for m in model.modules() if _has_checkpointing(m)}
    pair = batch.head(2)
    try:
        for m in flags:
            m.activation_checkpointing = False
        with (
            flop_counter_mode() as counter,
            _RangeFlops(counter, range_names(len(batch.masks))) as ranges,
        ):
            loss_and_grads(model, pair, autocast)
    finally:
        for m, flag in flags.items():
            m.activation_checkpointing = flag
    b, n = batch.video.shape[0], pair.video.shape[0]
    return StepFlops(
        by_op={str(op): f * b // n for op, f in counter.get_flop_counts()["Global"].items()},
        by_range={name: f * b // n for name, f in ranges.flops.items()},
        tokens={name: rows // n for name, rows in ranges.rows.items()},
    )


def range_names(masks: int) -> set[str]:
    """Every range of `tritemporal.step_ranges` a step with `masks` spatial masks can open."""
    return {name.format(i) for name in step_ranges.RANGES for i in range(masks)}


class _RangeFlops(TorchDispatchMode):
    """Splits what `counter` (a `FlopCounterMode` entered first) counts by the step's ranges.

    The mode sees `record_function` open and close ranges (they are ops too). A forward op goes
    to the range open around it; a backward op to the range whose forward made its autograd
    node, known by the node's sequence number (autograd numbers nodes in creation order, so
    the nodes a range made are those numbered between its opening and its closing).
    """

    def __init__(self, counter: FlopCounterMode, names: set[str]) -> None:
        super().__init__()
        self.counter, self.names = counter, names
        self.open: list[tuple[str, int]] = []  # (range name, first node number)
        self.made: list[tuple[range, str]] = []  # (node numbers, range name)
        self.flops: Counter[str] = Counter()
        self.rows: Counter[str] = Counter()  # rows of each range's largest forward matmul

    def __torch_dispatch__(
        self,
        func: torch._ops.OpOverload,
        types: tuple,
        args: tuple = (),
        kwargs: dict | None = None,
    ) -> object:
        """Run `func` (counted by the mode below), adding its FLOPs to its range's."""
        if func is torch.ops.profiler._record_function_enter_new.default:
            self.open.append((args[0], torch._C._autograd._get_sequence_nr()))
        elif func is torch.ops.profiler._record_function_exit._RecordFunction:
            name, first = self.open.pop()
            if name in self.names:
                self.made.append((range(first, torch._C._autograd._get_sequence_nr()), name))
        before = self.counter.get_total_flops()
        out = func(*args, **(kwargs or {}))
        node = torch._C._current_autograd_node()
        if node is None:
            name = next((name for name, _ in reversed(self.open) if name in self.names), None)
            if name and func in (torch.ops.aten.mm.default, torch.ops.aten.addmm.default):
                self.rows[name] = max(self.rows[name], args[-2].shape[0])
        else:
            name = next((name for nodes, name in self.made if node._sequence_nr() in nodes), None)
        if name:
            self.flops[name] += self.counter.get_total_flops() - before
        return out


def _has_checkpointing(module: torch.nn.Module) -> bool:
    return hasattr(module, "activation_checkpointing")


def loss_and_grads(
    model: TriTemporalModel, batch: TrainBatch, autocast: contextlib.AbstractContextManager
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss and every gradient (flattened, float32) of one forward/backward, weights kept."""
    model.zero_grad(set_to_none=True)
    with autocast:
        out = model(**batch.inputs(), diagnostics=False)
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
    config: TriTemporalConfig, fp8: bool = True
) -> tuple[
    torch.device, TriTemporalModel, torch.optim.Optimizer, contextlib.AbstractContextManager
]:
    """What the training loop builds for a step: device, seeded model (fp8 GEMMs under
    `train.fp8` unless `fp8=False`), AdamW, autocast."""
    device = resolve_device(config.train.device)
    seed_everything(config.train.seed)
    model = TriTemporalModel(config).to(device).train()
    if model.action is not None:  # synthetic signals are standard normal: unit statistics
        model.action.fit_statistics(torch.randn(1024, len(model.action.signals)))
    if config.loss.trains_ego_target:  # so is the synthetic future motion
        model.eventually.fit_statistics(torch.randn(1024, len(model.eventually.motion_mean)))
    if config.train.fp8 and fp8:
        apply_fp8(model, device)
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
    """Median seconds of `train_step` over `steps` steps after `warmup`, cycling `batches`
    (one `DivergenceGuard` across the steps, as the training loop keeps one)."""
    device = batches[0].video.device
    step_numbers = iter(range(1, 1 + warmup + steps))
    guard = DivergenceGuard(model)

    def run() -> None:
        i = next(step_numbers)
        train_step(model, optimizer, batches[i % len(batches)], i, config, autocast, guard=guard)

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
    device, model, optimizer, autocast = step_setup(config, fp8=False)
    batches = synthetic_batches(config, device)
    b = config.train.batch_size
    flops = count_model_flops(model, batches[0], autocast)  # eager bf16, before fp8 and compile
    fp8_check = None
    if config.train.fp8:  # checked like compile: the bf16 step's loss and gradients
        reference = loss_and_grads(model, batches[0], autocast)
        apply_fp8(model, device)  # the same parameters: the optimizer holds them already
        fp8_check = compare_steps(reference, loss_and_grads(model, batches[0], autocast))
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
        "params_m": {k: round(v / 1e6, 3) for k, v in model.parameter_counts().items()},
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
        "fp8": config.train.fp8,
        "fp8_vs_bf16": fp8_check,
        **memory,
    }
    logger.info(
        "%s %s batch %d: %.1f ms/step, %.1f clips/s, %.1f TFLOP/s = %.0f%% of matmul | %s",
        mode, config.backbone.name, b, seconds * 1e3, b / seconds, achieved, 100 * achieved / peak,
        model.describe_parameters(),
    )  # fmt: skip
    return report


def profile_step(
    model: TriTemporalModel,
    optimizer: torch.optim.Optimizer,
    batch: TrainBatch,
    step: int,
    config: TriTemporalConfig,
    autocast: contextlib.AbstractContextManager,
    guard: DivergenceGuard,
) -> tuple[dict[str, Counter], float]:
    """Run `train_step` once under `torch.profiler` (CPU, and CUDA on a GPU): its parts' times
    (`step_part_times`) and its wall seconds, profiler included."""
    device = batch.video.device
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        train_step(model, optimizer, batch, step, config, autocast, guard=guard)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    return step_part_times(prof.events(), range_names(len(batch.masks))), seconds


def step_part_times(events: Iterable[FunctionEvent], names: set[str]) -> dict[str, Counter]:
    """Microseconds of each part of one profiled training step, in the order the step ran them,
    keyed by (clock, phase): clock "cpu" (host) or "cuda" (kernels); phase "forward" and
    "backward" for the ranges in `names`, "step" for clipping with AdamW and the EMA update.

    A range's backward is the backward nodes its forward made: the profiler tags both a
    forward op and the node it made with the node's sequence number, and the last range to
    record a number made that node (an op that makes no node records the next free number).
    """
    # host events only: kernels reach a part through the host op that launched them
    events = sorted(
        (e for e in events if e.device_type == DeviceType.CPU), key=lambda e: e.time_range.start
    )
    times: dict[str, Counter] = {}

    def add(part: str, phase: str, event: FunctionEvent) -> None:
        counts = times.setdefault(part, Counter())
        counts["cpu", phase] += event.cpu_time_total
        counts["cuda", phase] += event.device_time_total

    made: dict[int, str | None] = {}  # autograd node number -> the range that made it
    backward = []
    for e in events:
        evaluating = [a for a in _ancestry(e) if a.name.startswith(EVALUATE)]
        if evaluating == [e]:
            backward.append(e)
        elif not evaluating:
            part = next((a.name for a in _ancestry(e) if a.name in names), None)
            if e.sequence_nr >= 0:
                made[e.sequence_nr] = part
            if part == e.name and part not in {a.name for a in _ancestry(e.cpu_parent)}:
                add(part, "forward", e)
    for e in backward:
        if made.get(e.sequence_nr):
            add(made[e.sequence_nr], "backward", e)
    optimizer_steps = [e for e in events if e.name.startswith(OPTIMIZER_STEP)]
    if optimizer_steps:
        backward_end = max((e.time_range.end for e in backward), default=0)
        step_end = optimizer_steps[-1].time_range.end
        for e in events:  # the host's own ops after the backward, not a runtime call like a sync
            if e.cpu_parent or e.name.startswith((EVALUATE, "cuda")):
                continue
            if backward_end <= e.time_range.start and e.time_range.end <= step_end:
                add(CLIP_AND_ADAMW, "step", e)
            elif e.time_range.start >= step_end:
                add(EMA_UPDATE, "step", e)
    return times


def _ancestry(event: FunctionEvent | None) -> Iterable[FunctionEvent]:
    """The event and the events it runs inside, innermost first."""
    while event is not None:
        yield event
        event = event.cpu_parent


def bench_parts(
    config: TriTemporalConfig,
    mode: str = "tri",
    steps: int = 10,
    warmup: int = 3,
    compile: bool = False,
    matmul_size: int | None = None,
) -> dict:
    """Where the real step's time goes: `train_step` profiled `steps` times and read by the
    ranges the model opens (`step_part_times`), each part with its model FLOPs.

    A part's time is its mean over the profiled steps: CUDA kernel time on a GPU (its host
    time is `cpu_ms`), host time on a CPU, where the profiler's own cost (under a microsecond
    an op) adds to it. The step is timed unprofiled (`step_ms`, as `bench_step` times it);
    `unattributed_ms` is what no part holds (loss sums, gradient accumulation into `.grad`,
    idle GPU time).
    """
    config = bench_config(config, mode, compile)
    device, model, optimizer, autocast = step_setup(config)
    batch = synthetic_batches(config, device, count=1)[0]
    flops = count_step_flops(model, batch, autocast)  # eager, before any compile
    if config.train.compile:
        compile_blocks(model, config.train.compile_mode)
    step_ms = 1e3 * median_step_seconds(model, optimizer, [batch], config, autocast, warmup, steps)
    totals: dict[str, Counter] = {}
    profiled_s = 0.0
    guard = DivergenceGuard(model)
    for i in range(1 + warmup + steps, 1 + warmup + 2 * steps):
        parts, seconds = profile_step(model, optimizer, batch, i, config, autocast, guard)
        profiled_s += seconds
        for part, times in parts.items():
            totals.setdefault(part, Counter()).update(times)
    clock = "cuda" if device.type == "cuda" else "cpu"
    _, peak = _matmul_reference(device, config, matmul_size)
    rows = []
    for part, us in totals.items():
        ms = {key: t / steps / 1e3 for key, t in us.items()}  # mean per step
        row = {"part": part}
        if part in flops.tokens:  # a pass (clipping with AdamW and the EMA have no tokens)
            row["tokens_per_clip"] = flops.tokens[part]
        row["ms"] = sum(t for (c, _), t in ms.items() if c == clock)
        if (clock, "forward") in ms:
            row["forward_ms"] = round(ms[clock, "forward"], 3)
            row["backward_ms"] = round(ms.get((clock, "backward"), 0.0), 3)
        row["cpu_ms"] = round(sum(t for (c, _), t in ms.items() if c == "cpu"), 3)
        rows.append(_rated(row, flops.by_range.get(part, 0), step_ms, peak))
    parts_ms = sum(row["ms"] for row in rows)
    return {
        "mode": mode,
        "backbone": config.backbone.name,
        "device": _device_name(device),
        "compile": config.train.compile,
        "compile_mode": config.train.compile_mode if config.train.compile else None,
        "batch_size": config.train.batch_size,
        "clock": "cuda kernels" if clock == "cuda" else "cpu",
        "profiled_steps": steps,
        "step_ms": round(step_ms, 3),
        "profiled_step_ms": round(profiled_s / steps * 1e3, 3),
        "parts_ms": round(parts_ms, 3),
        "unattributed_ms": round(step_ms - parts_ms, 3),
        "matmul_tflops": round(peak, 3),
        "parts": rows,
    }


def _rated(row: dict, flops: int, step_ms: float, peak: float) -> dict:
    """`row` with its FLOPs, share of the step and achieved rate; its ms rounded."""
    tflops = flops / row["ms"] / 1e9 if flops and row["ms"] else None
    return {
        **row,
        "ms": round(row["ms"], 3),
        "flops": flops,
        "share_of_step": round(row["ms"] / step_ms, 4),
        "achieved_tflops": round(tflops, 3) if tflops else None,
        "fraction_of_matmul": round(tflops / peak, 4) if tflops else None,
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
