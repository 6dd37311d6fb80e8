"""The GPU experiments of docs/PERFORMANCE.md in one process: run once per lent GPU, read the JSON.

    python scripts/bench_gpu.py --out DIR [--budget-s 480] [--tiny]

At configs/bench_vitl.yaml with the built-in ViT-L/16 (16 x 256^2, bf16, compiled blocks), in
order of importance, each stage writing its JSON as soon as it has it (a run cut short keeps
what it measured), and no stage started once `--budget-s` is nearly spent:

1. results.jsonl: `tritemporal bench` for each mode at its baseline batch, then at larger
   batches (BATCHES: the largest first, smaller ones only if it fails); a batch whose memory,
   scaled linearly from the baseline's peak, would exceed the card's is skipped unrun. A
   larger batch is the lever left for the short passes (the 344-token student pass ran at 33%
   of the matmul rate at batch 16 and 50% at 32, docs/PERFORMANCE.md), and an H200's 141 GB
   holds twice the batch an H100's 80 GB does.
2. parts_MODE.json: `tritemporal bench --parts` at each mode's fastest batch (the real step
   profiled, its kernel time split by the passes the model names).
3. With `--knobs`, each knob alone at each mode's fastest batch (KNOBS).
4. With `--attention`, attention.json: every SDPA call of one `tri` step timed alone under
   cuDNN's, FlashAttention-2's and the memory-efficient kernels; when the fastest for the
   encoder's or the predictor's calls is not cuDNN's, it joins the knobs.
5. With `--profile`, profile_MODE.json: the kernels of one step at each mode's fastest batch,
   with the time, FLOPs and TFLOP/s of its GEMMs, its attention and the rest.
6. With `--configs`, configs.jsonl: the users' configurations (issue 20), the `tri` step at
   16 x 256^2 (ViT-g-384: 16 x 384^2) compiled, for each backbone x (full fine-tuning, LoRA
   r=16 on encoder and predictor) x (bf16, fp8) in `CONFIG_ORDER`: the largest batch that fits
   (doubling from 8, skipping a batch whose memory, scaled from the last, would not fit; with
   activation checkpointing where no batch of 16 fits without it), its clips/s, fraction of the
   matmul rate and peak memory; and LoRA against full fine-tuning at the latter's largest batch
   (lora_vs_full.json: the 1.3x target compares them at one batch). The `vjepa` step in fp8 is
   `--knobs fp8`.
7. summary.md: all of it as Markdown tables, also printed at the end.

`--tiny` runs the same flow on CPU with tiny models, to test this script before spending GPU
time. Earlier rounds' variants are in this file's git history and their numbers in
docs/bench/h100_run1..6: eager, transformers' layers, checkpointing (rounds 1-2); attention
kernels, CUDA graphs and max-autotune (round 3: cuDNN's attention won for both parts, CUDA
graphs break per-block compilation, max-autotune's tuning outlasted the lease). This flow as
it stands ran on an H200 in 197 s: docs/bench/h200_run7_*.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import sys
import time
from argparse import Namespace
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel
from torch.utils import flop_counter

from tritemporal.bench import (
    bench_config,
    bench_parts,
    bench_step,
    compare_steps,
    count_flops_by_op,
    loss_and_grads,
    median_seconds,
    step_setup,
    synthetic_batches,
)
from tritemporal.compile import compile_blocks
from tritemporal.config import TriTemporalConfig, load_config
from tritemporal.layers.blocks import SDPA_BACKENDS
from tritemporal.model import TriTemporalModel
from tritemporal.runtime import resolve_device
from tritemporal.train import DivergenceGuard, compute_dtype, train_step

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "bench_vitl.yaml"
VIT = ["backbone.name=vit-large"]
# the measured bests of docs/PERFORMANCE.md, re-timed on each machine: the reference
BASELINES = {"tri": 16, "vjepa": 32}  # mode -> batch (larger ones run out of 80 GB)
# mode -> larger batches to try after the baseline, largest first (they fit in 141 GB)
BATCHES = {"tri": (32, 24), "vjepa": (64, 48)}
MEMORY_HEADROOM = 0.95  # a batch predicted to need more than this share of the card is skipped
# knobs `--knobs` tries one at a time: name -> config overrides. `--attention` adds
# "attention kernels" when it finds a faster kernel than cuDNN's for a part.
KNOBS = {
    "max-autotune": ["train.compile_mode=max-autotune-no-cudagraphs"],
    "fp8": ["train.fp8=true"],  # torchao float8 GEMMs in the blocks (tritemporal/fp8.py)
}
KERNEL_KNOB = "attention kernels"
TINY = [
    "backbone.embed_dim=64", "backbone.depth=2", "backbone.num_heads=4",
    "predictor.embed_dim=32", "predictor.depth=2", "predictor.num_heads=4",
    "outcome.dim=32", "outcome.num_heads=4", "outcome.out_dim=16",
    "clip.image_size=64", "train.device=cpu", "train.precision=fp32",
]  # fmt: skip
VARIANT_SECONDS = 60  # do not start a variant with less than this left of the budget
# knobs that compile longer need more left: max-autotune tuned 18 GEMM shapes for 8 minutes on
# an H100 and had not finished
KNOB_SECONDS = {"max-autotune": 540}

logger = logging.getLogger("bench_gpu")

# issue 20: (backbone, tuning, precision) in the order worth the lease: the two targets on
# ViT-L, ViT-g LoRA fitting one card at batch >= 16, then the rest
CONFIG_ORDER = [
    ("vjepa2-vitl", "full", "bf16"), ("vjepa2-vitl", "lora", "bf16"),
    ("vjepa2-vitg", "lora", "bf16"), ("vjepa2-vitl", "full", "fp8"),
    ("vjepa2-vitl", "lora", "fp8"), ("vjepa2-vith", "full", "bf16"),
    ("vjepa2-vith", "lora", "bf16"), ("vjepa2-vitg", "full", "bf16"),
    ("vjepa2-vitg-384", "lora", "bf16"), ("vjepa2-vitg-384", "full", "bf16"),
    ("vjepa2-vith", "lora", "fp8"), ("vjepa2-vitg", "lora", "fp8"),
]  # fmt: skip
CROP = {"vjepa2-vitg-384": 384}  # pixels; the others 256
TUNINGS = {
    "full": [],
    "lora": ["backbone.lora.r=16", "backbone.lora.alpha=16",
             "backbone.lora.apply_to=[encoder, predictor]"],
}  # fmt: skip
PRECISIONS = {"bf16": [], "fp8": ["train.fp8=true"]}
FIRST_BATCH, MAX_BATCH, FIT_TARGET = 8, 128, 16
CONFIG_SECONDS = 150  # a configuration compiles and times 2-4 batches: do not start one with less
# --tiny: the built-in ViT in place of each V-JEPA 2 size (random_init builds the real ones)
TINY_BACKBONE = ["backbone.name=vit-base", "backbone.embed_dim=64", "backbone.depth=2",
                 "backbone.num_heads=4", "backbone.random_init=false"]  # fmt: skip


def kernel_profile(config: TriTemporalConfig, mode: str, top: int = 20) -> dict:
    """Kernels of one compiled step of `mode`, by device time, and the time, FLOPs and TFLOP/s
    of its GEMMs, its attention and everything else: which kind of work holds the step below
    the matmul rate, and how fast the step could be if only one kind got faster."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    config = bench_config(config, mode, compile=True)
    device, model, optimizer, autocast = step_setup(config)
    batch = synthetic_batches(config, device, count=1)[0]
    flops = Counter()
    for op, count in count_flops_by_op(model, batch, autocast).items():
        flops[kernel_kind(op)] += count
    compile_blocks(model)
    guard = DivergenceGuard(model)
    for step in range(3):  # compile and warm up
        train_step(model, optimizer, batch, step, config, autocast, guard=guard)
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    _synchronize(device)
    with profile(activities=activities) as prof:
        train_step(model, optimizer, batch, 3, config, autocast, guard=guard)
        _synchronize(device)
    # on a GPU the kernels alone (the ops that launch them carry the same time again); on a CPU
    # each op's own time
    attr = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = [
        e for e in prof.key_averages()
        if getattr(e, attr) > 0 and (not cuda or e.device_type == DeviceType.CUDA)
    ]  # fmt: skip
    events.sort(key=lambda e: getattr(e, attr), reverse=True)
    ms = Counter()
    for e in events:
        ms[kernel_kind(e.key)] += getattr(e, attr) / 1e3
    total = sum(ms.values())
    kinds = {
        kind: {
            "ms": round(ms[kind], 2),
            "share": round(ms[kind] / total, 4),
            "tflop": round(flops[kind] / 1e12, 2),
            "tflops": round(flops[kind] / ms[kind] / 1e9, 1) if flops[kind] and ms[kind] else None,
        }
        for kind in KERNEL_KINDS
    }
    return {
        "mode": mode,
        "batch_size": config.train.batch_size,
        "busy_ms": round(total, 2),
        "kinds": kinds,
        "kernels": [
            {"name": e.key[:120], "kind": kernel_kind(e.key), "calls": e.count,
             "ms": round(getattr(e, attr) / 1e3, 3),
             "share": round(getattr(e, attr) / 1e3 / total, 4)}
            for e in events[:top]
        ],
    }  # fmt: skip


# what a kernel (GPU) or op (CPU, FlopCounterMode) name says it computes; attention first, since
# cuDNN's attention kernels are GEMM-like by name ("wgmma")
KERNEL_KINDS = ("attention", "gemm", "other")
ATTENTION_MARKERS = ("attention", "sdpa", "flash", "fmha")
GEMM_MARKERS = ("gemm", "nvjet", "cutlass", "triton_tem", "aten.mm", "aten::mm", "addmm", "bmm")


def kernel_kind(name: str) -> str:
    """The kind of work a kernel's (GPU) or an op's (CPU) name says: attention, gemm, other."""
    name = name.lower()
    if any(marker in name for marker in ATTENTION_MARKERS):
        return "attention"
    return "gemm" if any(marker in name for marker in GEMM_MARKERS) else "other"


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def precision_check(config: TriTemporalConfig) -> dict:
    """How far bf16 moves the loss and gradients from float32, eager and compiled: the yardstick
    for "the compiled step agrees with the eager one within bf16 error"."""
    # not resolve_device: it turns TF32 on, and the float32 reference must be true float32
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = TriTemporalModel(config).to(device).train()
    batch = synthetic_batches(config, device, count=1)[0]
    fp32 = loss_and_grads(model, batch, contextlib.nullcontext())
    bf16 = torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    eager = loss_and_grads(model, batch, bf16)
    compile_blocks(model)
    compiled = loss_and_grads(model, batch, bf16)
    return {
        "bf16_eager_vs_fp32": compare_steps(fp32, eager),
        "bf16_compiled_vs_fp32": compare_steps(fp32, compiled),
        "bf16_compiled_vs_bf16_eager": compare_steps(eager, compiled),
    }


def environment() -> dict:
    """What the numbers were measured on."""
    info = {"torch": torch.__version__, "python": sys.version.split()[0]}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            sms=props.multi_processor_count,
            flash_sdp=torch.backends.cuda.flash_sdp_enabled(),
            cudnn_sdp=torch.backends.cuda.cudnn_sdp_enabled(),
        )
    return info


# the fused kernels `auto` chooses among: every kernel of the config keys but the math one
FUSED_KERNELS = tuple(name for name in SDPA_BACKENDS if name != "math")


def attention_calls(config: TriTemporalConfig) -> tuple[Counter, dict[str, int]]:
    """Every SDPA call of one eager training step, (q shape, k shape, with grad) -> calls, and
    the attention width (heads x head width) of the encoder and of the predictor."""
    device, model, _, autocast = step_setup(config)
    widths = {"backbone": model.backbone.embed_dim, "predictor": model.backbone.predictor.embed_dim}
    batch = synthetic_batches(config, device, count=1)[0]
    calls: Counter = Counter()
    original = F.scaled_dot_product_attention

    def spy(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        grad = torch.is_grad_enabled() and q.requires_grad
        calls[(tuple(q.shape), tuple(k.shape), grad)] += 1
        return original(q, k, v, *args, **kwargs)

    F.scaled_dot_product_attention = spy
    try:
        loss_and_grads(model, batch, autocast)
    finally:
        F.scaled_dot_product_attention = original
    return calls, widths


def time_attention(config: TriTemporalConfig, steps: int, warmup: int) -> dict:
    """Each SDPA call of the step timed alone under each kernel: which kernel suits which head
    width, how much of the step attention takes with each, and the fastest kernel for the
    encoder's and for the predictor's calls (`backbone.sdpa_kernel`, `predictor.sdpa_kernel`)."""
    device = resolve_device(config.train.device)
    dtype = compute_dtype(device, config.train.precision)
    calls, widths = attention_calls(config)
    rows, totals = [], dict.fromkeys(FUSED_KERNELS, 0.0)
    per_part = {part: dict.fromkeys(FUSED_KERNELS, 0.0) for part in widths}
    best_total = 0.0
    for (q_shape, k_shape, grad), count in calls.items():
        q = torch.randn(q_shape, device=device, dtype=dtype, requires_grad=grad)
        k = torch.randn(k_shape, device=device, dtype=dtype, requires_grad=grad)
        v = torch.randn(k_shape, device=device, dtype=dtype, requires_grad=grad)
        _, h, _, d = q_shape
        flops = flop_counter.sdpa_flop_count(q_shape, k_shape, k_shape)
        if grad:
            flops += flop_counter.sdpa_backward_flop_count(q_shape, q_shape, k_shape, k_shape)
        row = {"q": list(q_shape), "k": list(k_shape), "grad": grad, "calls": count}
        parts = [part for part, width in widths.items() if width == h * d]
        call = _attention_call(q, k, v, grad)
        best = math.inf
        for name in FUSED_KERNELS:
            try:
                with sdpa_kernel(SDPA_BACKENDS[name]):
                    ms = median_seconds(call, device, warmup, steps) * 1e3
            except RuntimeError as exc:  # this kernel does not take this shape or device
                row[name] = {"error": str(exc).splitlines()[0][:160]}
                ms = math.nan
            else:
                row[name] = {"ms": round(ms, 3), "tflops": round(flops / ms / 1e9, 1)}
                best = min(best, ms)
            totals[name] += count * ms
            for part in parts:
                per_part[part][name] += count * ms
        best_total += count * best
        rows.append(row)
    fastest = {
        part: min((ms, name) for name, ms in kernels.items() if not math.isnan(ms))[1]
        for part, kernels in per_part.items()
        if any(not math.isnan(ms) for ms in kernels.values())
    }
    return {
        "batch_size": config.train.batch_size,
        "widths": widths,
        "ms_per_step": {name: round(ms, 2) for name, ms in totals.items()},
        "ms_per_step_best_kernel_per_shape": round(best_total, 2),
        "ms_per_step_per_part": {
            part: {name: round(ms, 2) for name, ms in kernels.items()}
            for part, kernels in per_part.items()
        },
        "fastest_kernel_per_part": fastest,
        "calls": rows,
    }


def _attention_call(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grad: bool) -> Callable:
    """One SDPA forward (and backward): fresh gradients each call, as in a step."""

    def call() -> None:
        out = F.scaled_dot_product_attention(q, k, v)
        if grad:
            q.grad = k.grad = v.grad = None
            out.backward(torch.ones_like(out))

    return call


def run_variant(name: str, mode: str, batch: int, overrides: list[str], args: Namespace) -> dict:
    """`bench_step` of one compiled variant, appended to DIR/results.jsonl (an error in place
    of the numbers when it fails, see `guarded`)."""
    sets = [*VIT, *overrides, *_tiny(args), f"train.batch_size={_batch(batch, args)}"]
    config = load_config(CONFIG, sets)
    report = guarded(name, lambda: bench_step(config, mode, args.steps, args.warmup, True))
    report.setdefault("mode", mode)
    report.setdefault("batch_size", batch)
    report.update(variant=name, overrides=overrides)
    with (Path(args.out) / "results.jsonl").open("a") as f:
        f.write(json.dumps(report) + "\n")
    return report


def guarded(name: str, measure: Callable[[], dict]) -> dict:
    """`measure()`, or its error in place of the numbers, so that one failing stage or knob does
    not cost the others theirs; then compiled graphs and cached GPU memory are released."""
    try:
        report = measure()
    except Exception as exc:  # out of memory, a knob that does not work on this card
        logger.exception("%s failed", name)
        report = {"error": f"{type(exc).__name__}: {exc}"[:400]}
    logger.info("%s: %s", name, json.dumps(report)[:600])
    torch._dynamo.reset()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return report


def summarize(out: Path) -> str:
    """The run's numbers as Markdown tables (also DIR/summary.md), to read at a glance."""
    lines = []
    attention = _read_json(out / "attention.json")
    if "ms_per_step_per_part" in attention:
        rows = [
            [f"{part} (width {attention['widths'][part]})", *(kernels[k] for k in FUSED_KERNELS)]
            for part, kernels in attention["ms_per_step_per_part"].items()
        ]
        lines += _markdown_table(["attention, ms per step", *FUSED_KERNELS], rows)
        lines += [f"fastest per part: {attention['fastest_kernel_per_part']}", ""]
    for mode in BASELINES:
        parts = _read_json(out / f"parts_{mode}.json")
        if "parts" in parts:
            rows = [
                [r["part"], r["ms"], f"{r['share_of_step']:.1%}", r["achieved_tflops"]]
                for r in parts["parts"]
            ]
            unattributed = f"{parts['unattributed_ms'] / parts['step_ms']:.1%}"
            rows.append(["step / not in the parts", parts["step_ms"], unattributed, ""])
            ms = f"ms ({parts['clock']})"  # CUDA kernel time on a GPU
            header = [f"{mode} part, batch {parts['batch_size']}", ms, "share of step", "TFLOP/s"]
            lines += _markdown_table(header, rows)
        profile = _read_json(out / f"profile_{mode}.json")
        if "kinds" in profile:
            rows = [
                [kind, r["ms"], f"{r['share']:.1%}", r["tflop"], r["tflops"]]
                for kind, r in profile["kinds"].items()
            ]
            rows.append(["busy", profile["busy_ms"], "", "", ""])
            header = [f"{mode} kernels, batch {profile['batch_size']}", "ms", "share", "TFLOP"]
            lines += _markdown_table([*header, "TFLOP/s"], rows)
    configs = out / "configs.jsonl"
    if configs.exists():
        rows = []
        for line in configs.read_text().splitlines():
            r = json.loads(line)
            f = r["fastest"] or {}
            memory = f.get("peak_memory_gib")
            rows.append([
                r["backbone"], r["tuning"], r["precision"], f.get("device", ""),
                f"{r['largest_batch']}{' (ckpt)' if r['largest_batch_checkpointing'] else ''}",
                f.get("batch", ""), f.get("clips_per_s", "failed"),
                f"{f['fraction_of_matmul']:.1%}" if f else "", memory,
            ])  # fmt: skip
        header = ["backbone", "tuning", "precision", "card", "largest batch", "fastest batch",
                  "clips/s", "of matmul", "peak GiB"]  # fmt: skip
        lines += _markdown_table(header, rows)
        ratios = _read_json(out / "lora_vs_full.json").get("rows", [])
        if ratios:
            rows = [[r["backbone"], r["precision"], r["batch"], r["full_clips_per_s"],
                     r["lora_clips_per_s"], r["lora_over_full"]] for r in ratios]  # fmt: skip
            header = [
                "backbone",
                "precision",
                "batch",
                "full clips/s",
                "LoRA clips/s",
                "LoRA / full",
            ]
            lines += _markdown_table(header, rows)
    results = out / "results.jsonl"
    if results.exists():
        lines += ["| variant | batch | clips/s | of matmul | peak GiB | compiled vs eager grads |"]
        lines += ["|---|---|---|---|---|---|"]
        for line in results.read_text().splitlines():
            r = json.loads(line)
            if "error" in r:
                lines.append(f"| {r['variant']} | {r['batch_size']} | {r['error'][:80]} | | | |")
                continue
            error = (r.get("compiled_vs_eager") or {}).get("grad_rel_error")
            check = f"{error:.1e}" if error is not None else ""
            memory = r.get("peak_memory_gib", r.get("peak_rss_gib"))
            lines.append(
                f"| {r['variant']} | {r['batch_size']} | {r['clips_per_s']} | "
                f"{r['fraction_of_matmul']:.1%} | {memory} | {check} |"
            )
    return "\n".join(lines) + "\n"


def user_config(name: str, tuning: str, precision: str, args: Namespace) -> dict:
    """One (backbone, tuning, precision) of CONFIG_ORDER: the largest batch that fits and its
    speed (module docstring, stage 6); every timed batch is in `batches`."""
    size = CROP.get(name, 256)
    sets = [f"backbone.name={name}", "backbone.random_init=true", f"clip.image_size={size}"]
    sets += [*TUNINGS[tuning], *PRECISIONS[precision]]
    limit = MAX_BATCH
    if args.tiny:  # fp32 on CPU, but fp8 replaces bf16 GEMMs
        sets += [*TINY, *TINY_BACKBONE, *["train.precision=bf16"] * (precision == "fp8")]
        limit = FIT_TARGET

    def run(batch: int, checkpointing: bool) -> dict:
        extra = [f"train.batch_size={batch}"]
        extra += ["backbone.activation_checkpointing=true"] * checkpointing
        config = load_config(CONFIG, [*sets, *extra])
        return guarded(
            f"{name} {tuning} {precision} b{batch}",
            lambda: bench_step(config, "tri", args.steps, args.warmup, True),
        )

    timed: dict[tuple[int, bool], dict] = {}
    for checkpointing in (False, True):
        batch, last = FIRST_BATCH, None
        while batch <= limit:
            card = _card_memory_gib()
            if last and card and last["peak_memory_gib"] * 2 > MEMORY_HEADROOM * card:
                break  # doubling would not fit: stop before an out-of-memory run
            report = run(_batch(batch, args), checkpointing)
            timed[batch, checkpointing] = report
            if "error" in report:
                break
            last, batch = report, batch * 2
        fits = [b for (b, c), r in timed.items() if c == checkpointing and "error" not in r]
        if fits and max(fits) >= FIT_TARGET:
            break  # checkpointing is only for configurations that miss batch 16 without it
    ok = {key: r for key, r in timed.items() if "error" not in r}
    best = max(ok, key=lambda key: ok[key]["clips_per_s"]) if ok else None
    largest = max(ok, key=lambda key: (key[0], not key[1])) if ok else None
    return {
        "backbone": name, "tuning": tuning, "precision": precision, "crop": size,
        "largest_batch": largest[0] if largest else None,
        "largest_batch_checkpointing": largest[1] if largest else None,
        "fastest": {"batch": best[0], "checkpointing": best[1], **_row(ok[best])} if best else None,
        "batches": [
            {"batch": b, "checkpointing": c, **(_row(r) if "error" not in r else r)}
            for (b, c), r in timed.items()
        ],
    }  # fmt: skip


def _row(report: dict) -> dict:
    """What the speed table keeps of a bench report."""
    keys = ("clips_per_s", "fraction_of_matmul", "peak_memory_gib", "device", "fp8_vs_bf16")
    return {key: report.get(key) for key in keys}


def lora_at_full_batch(rows: list[dict]) -> list[dict]:
    """LoRA against full fine-tuning at the latter's largest batch (LoRA's doubling passes
    through it), per backbone and precision both ran."""
    out = []
    for full in (r for r in rows if r["tuning"] == "full" and r["largest_batch"]):
        lora = next(
            (r for r in rows if r["tuning"] == "lora" and r["backbone"] == full["backbone"]
             and r["precision"] == full["precision"]), None,
        )  # fmt: skip
        batch = full["largest_batch"]
        speed, same = _speed_at(full, batch), _speed_at(lora, batch) if lora else None
        if speed and same:
            out.append({
                "backbone": full["backbone"], "precision": full["precision"], "batch": batch,
                "full_clips_per_s": speed, "lora_clips_per_s": same,
                "lora_over_full": round(same / speed, 3),
            })  # fmt: skip
    return out


def _speed_at(row: dict, batch: int) -> float | None:
    """clips/s of a configuration at `batch` without checkpointing, if it ran there."""
    for timed in row["batches"]:
        if timed["batch"] == batch and not timed["checkpointing"] and "clips_per_s" in timed:
            return timed["clips_per_s"]
    return None


def _markdown_table(header: list[str], rows: list[list]) -> list[str]:
    """A Markdown table's lines, then a blank line."""
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    return [*lines, *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows), ""]


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _tiny(args: Namespace) -> list[str]:
    return TINY if args.tiny else []


def _batch(batch: int, args: Namespace) -> int:
    return max(2, batch // 8) if args.tiny else batch


def main() -> int:
    """Run the stages in order, writing JSON as it goes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--budget-s", type=float, default=480.0)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="CPU dry run with tiny models")
    parser.add_argument(
        "--modes", nargs="*", default=["tri", "vjepa"], choices=list(BASELINES),
        help="batch sweeps of the built-in ViT-L (none: skip them)",
    )  # fmt: skip
    parser.add_argument("--knobs", nargs="*", default=[], choices=list(KNOBS))
    parser.add_argument("--attention", action="store_true", help="time each SDPA call's kernels")
    parser.add_argument("--profile", action="store_true", help="end with kernel profiles")
    parser.add_argument(
        "--configs", type=int, nargs="?", const=len(CONFIG_ORDER), default=0, metavar="N",
        help="time N (default all) of the users' configurations (CONFIG_ORDER)",
    )  # fmt: skip
    parser.add_argument(
        "--configs-from", type=int, default=0, metavar="K",
        help="start at CONFIG_ORDER[K] (a second device call continues the first)",
    )  # fmt: skip
    parser.add_argument(
        "--precision-check", type=int, metavar="BATCH",
        help="first compare fp32, bf16 eager and bf16 compiled (tri, ViT-L) at this batch",
    )  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "environment.json").write_text(json.dumps(environment(), indent=1))

    def time_left(stage: str, seconds: float = VARIANT_SECONDS) -> bool:
        if time.perf_counter() - start < args.budget_s - seconds:
            return True
        logger.warning("budget spent: skipping %s", stage)
        return False

    def stage(name: str, measure: Callable[[], dict]) -> dict:
        """Run one measurement and write DIR/name; a failure is written there instead, and the
        run goes on to the next stage."""
        if not time_left(name):
            return {}
        report = guarded(name, measure)
        (out / name).write_text(json.dumps(report, indent=1))
        return report

    def config_at(mode: str, *overrides: str) -> TriTemporalConfig:
        batch = _batch(BASELINES[mode], args)
        return load_config(CONFIG, [*VIT, *_tiny(args), f"train.batch_size={batch}", *overrides])

    if args.precision_check:
        batch = f"train.batch_size={args.precision_check}"
        stage("precision.json", lambda: precision_check(config_at("tri", batch)))
    fastest = {}  # mode -> (clips/s, batch) of its fastest batch
    for mode in args.modes:
        if time_left(f"{mode} b{BASELINES[mode]}"):
            fastest[mode] = sweep_batches(mode, args, time_left)

    def at_fastest(mode: str) -> TriTemporalConfig:
        return config_at(mode, f"train.batch_size={_batch(fastest[mode][1], args)}")

    for mode in fastest:
        stage(f"parts_{mode}.json", lambda m=mode: parts(at_fastest(m), m, args))
    knobs = {knob: KNOBS[knob] for knob in args.knobs}
    if args.attention:
        attention = stage(
            "attention.json", lambda: time_attention(config_at("tri"), args.steps, args.warmup)
        )
        kernels = attention.get("fastest_kernel_per_part", {})
        if any(kernel != "cudnn" for kernel in kernels.values()):  # cuDNN's is what auto picks
            knobs[KERNEL_KNOB] = [f"{part}.sdpa_kernel={k}" for part, k in kernels.items()]
    for mode, (_, batch) in fastest.items():
        for knob, overrides in knobs.items():
            if time_left(f"{mode} {knob}", KNOB_SECONDS.get(knob, VARIANT_SECONDS)):
                run_variant(f"{mode} b{batch} {knob}", mode, batch, overrides, args)
    if args.profile:
        for mode in fastest:
            stage(f"profile_{mode}.json", lambda m=mode: kernel_profile(at_fastest(m), m))
    rows = []
    for name, tuning, precision in CONFIG_ORDER[args.configs_from :][: args.configs]:
        if not time_left(f"{name} {tuning} {precision}", CONFIG_SECONDS):
            break
        rows.append(user_config(name, tuning, precision, args))
        with (out / "configs.jsonl").open("a") as f:
            f.write(json.dumps(rows[-1]) + "\n")
    if rows:
        (out / "lora_vs_full.json").write_text(
            json.dumps({"rows": lora_at_full_batch(rows)}, indent=1)
        )
    summary = summarize(out)
    (out / "summary.md").write_text(summary)
    print(summary)
    logger.info("done in %.0f s", time.perf_counter() - start)
    return 0


def sweep_batches(mode: str, args: Namespace, time_left: Callable[[str], bool]) -> tuple:
    """The baseline batch, then BATCHES largest first until one runs; returns (clips/s, batch)
    of the fastest. A batch is skipped unrun when the baseline's peak memory, scaled linearly
    (an overestimate: weights and optimizer state do not grow), exceeds the card's."""
    base = BASELINES[mode]
    report = run_variant(f"{mode} b{base}", mode, base, [], args)
    best = (report.get("clips_per_s", 0.0), base)
    peak, card = report.get("peak_memory_gib"), _card_memory_gib()
    for batch in BATCHES[mode]:
        if peak and card and peak * batch / base > MEMORY_HEADROOM * card:
            logger.info("%s b%d skipped: ~%.0f of %.0f GiB", mode, batch, peak * batch / base, card)
            continue
        if not time_left(f"{mode} b{batch}"):
            break
        report = run_variant(f"{mode} b{batch}", mode, batch, [], args)
        if "error" not in report:
            best = max(best, (report["clips_per_s"], batch))
            break
    return best


def parts(config: TriTemporalConfig, mode: str, args: Namespace) -> dict:
    """`tritemporal bench --parts` of one mode, compiled."""
    return bench_parts(config, mode, args.steps, args.warmup, True)


def _card_memory_gib() -> float | None:
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(0).total_memory / 2**30


if __name__ == "__main__":
    sys.exit(main())
