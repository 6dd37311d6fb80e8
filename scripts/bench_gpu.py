"""Every GPU number of docs/PERFORMANCE.md in one process: run once per lent GPU, read the JSON.

    python scripts/bench_gpu.py --out DIR [--budget-s 420] [--tiny]

Times `tritemporal bench`'s step (`tritemporal.bench.bench_step`) for each variant below, in
order of importance, at configs/bench_vitl.yaml (ViT-L/16, 16 x 256^2, bf16): eager against
compiled, V-JEPA-only against tri-temporal, the built-in ViT against transformers' V-JEPA 2
layers. A variant that runs out of memory is retried at the next smaller batch; the run stops
starting variants when `--budget-s` is nearly spent. Each result is appended to
DIR/results.jsonl as soon as it exists, so a run cut short keeps what it measured. One compiled
step is profiled (DIR/profile.json: the kernels that take the time). `--tiny` runs the same
flow on CPU with tiny models, to test this script before spending GPU time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from pathlib import Path

import torch

from tritemporal.bench import bench_step, compare_steps, loss_and_grads, synthetic_batches
from tritemporal.compile import compile_blocks
from tritemporal.config import TriTemporalConfig, load_config
from tritemporal.model import TriTemporalModel
from tritemporal.train import autocast_for, build_optimizer, resolve_device, train_step

CONFIG = "configs/bench_vitl.yaml"
VIT = ["backbone.name=vit-large"]
# (name, overrides, mode, compile, batch sizes to try in order)
VARIANTS = [
    ("vit-large vjepa eager", VIT, "vjepa", False, [16]),
    ("vit-large vjepa compiled", VIT, "vjepa", True, [32, 16]),
    ("vit-large tri compiled", VIT, "tri", True, [32, 16]),
    ("vjepa2-vitl vjepa compiled", [], "vjepa", True, [32, 16]),
    ("vjepa2-vitl tri compiled", [], "tri", True, [32, 16]),
    ("vit-large vjepa compiled b64", VIT, "vjepa", True, [64]),
    ("vit-large tri eager", VIT, "tri", False, [16]),
    ("vit-large vjepa compiled b16", VIT, "vjepa", True, [16]),
    ("vit-large tri compiled b16", VIT, "tri", True, [16]),
    ("vit-large tri compiled b24", VIT, "tri", True, [24]),
    (
        "vit-large tri compiled b32 checkpointed",
        [*VIT, "backbone.activation_checkpointing=true"],
        "tri",
        True,
        [32],
    ),
]
TINY = [
    "backbone.embed_dim=64", "backbone.depth=2", "backbone.num_heads=4",
    "predictor.embed_dim=32", "predictor.depth=2", "predictor.num_heads=4",
    "outcome.dim=32", "outcome.num_heads=4", "outcome.out_dim=16",
    "clip.image_size=64", "train.device=cpu", "train.precision=fp32",
]  # fmt: skip
VARIANT_SECONDS = 60  # do not start a variant with less than this left of the budget

logger = logging.getLogger("bench_gpu")


def profile_step(config: TriTemporalConfig, top: int = 25) -> dict:
    """Kernels of one compiled tri step, by device time: where the time goes."""
    from torch.profiler import ProfilerActivity, profile

    device = resolve_device(config.train.device)
    model = TriTemporalModel(config).to(device).train()
    optimizer = build_optimizer(model, config)
    autocast = autocast_for(device, config.train.precision)
    batch = synthetic_batches(config, device, count=1)[0]
    compile_blocks(model)
    for step in range(3):  # compile and warm up
        train_step(model, optimizer, batch, step, config, autocast)
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
        torch.cuda.synchronize(device)
    with profile(activities=activities) as prof:
        train_step(model, optimizer, batch, 3, config, autocast)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, attr, 0) > 0]
    total = sum(getattr(e, attr) for e in events)
    events.sort(key=lambda e: getattr(e, attr), reverse=True)
    return {
        "total_ms": round(total / 1e3, 2),
        "kernels": [
            {"name": e.key[:120], "ms": round(getattr(e, attr) / 1e3, 3), "calls": e.count,
             "share": round(getattr(e, attr) / total, 4)}
            for e in events[:top]
        ],
    }  # fmt: skip


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


def main() -> int:
    """Run the variants, then the profile, writing JSON as it goes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--budget-s", type=float, default=420.0)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="CPU dry run with tiny models")
    parser.add_argument("--only", nargs="*", help="run only the variants with these names")
    parser.add_argument("--no-profile", action="store_true", help="skip the kernel profile")
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
    results = out / "results.jsonl"
    extra = TINY if args.tiny else []
    if args.precision_check:
        sets = [*VIT, *extra, f"train.batch_size={args.precision_check}"]
        check = precision_check(load_config(CONFIG, sets))
        (out / "precision.json").write_text(json.dumps(check, indent=1))
        logger.info("precision: %s", json.dumps(check))
        torch._dynamo.reset()
    for name, overrides, mode, compiled, batches in VARIANTS:
        if args.only is not None and name not in args.only:
            continue
        for batch in batches:
            if time.perf_counter() - start > args.budget_s - VARIANT_SECONDS:
                logger.warning("budget spent: skipping %s", name)
                break
            sets = [*overrides, *extra, f"train.batch_size={batch // 8 if args.tiny else batch}"]
            try:
                report = bench_step(
                    load_config(CONFIG, sets), mode, args.steps, args.warmup, compiled
                )
            except torch.OutOfMemoryError as exc:
                report = {"variant": name, "batch_size": batch, "error": f"OOM: {exc}"[:300]}
            report["variant"] = name
            with results.open("a") as f:
                f.write(json.dumps(report) + "\n")
            logger.info("%s: %s", name, json.dumps(report)[:400])
            torch._dynamo.reset()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if "error" not in report:
                break
    if not args.no_profile and time.perf_counter() - start < args.budget_s - VARIANT_SECONDS:
        sets = [*VIT, *extra, f"train.batch_size={2 if args.tiny else 16}"]
        profile = profile_step(load_config(CONFIG, sets))
        (out / "profile.json").write_text(json.dumps(profile, indent=1))
        logger.info("profile: %s", json.dumps(profile["kernels"][:8]))
    logger.info("done in %.0f s", time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
