"""The training loop: config -> data -> model -> optimizer -> steps -> logs and checkpoints.

Read it top to bottom: `train` builds everything once, then each step sets the scheduled LR and
weight decay, runs the tri-temporal forward under autocast, steps AdamW, moves the EMA teacher,
logs every `train.log_every` steps and saves every `train.ckpt_every` steps (and at the end).
`train_step` never waits on the GPU: the loss is checked and metrics are read on logged and saved
steps only, and `train.compile` compiles each transformer block (`compile.py`).
Under torchrun (`torchrun --nproc_per_node=N -m tritemporal.cli train ...`) every process runs
this same loop on its slice of the global `train.batch_size`, with the model wrapped by DDP or
FSDP2 (`dist.strategy`, see `distributed.py`); rank 0 alone writes the run directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from tritemporal.checkpoint import find_last_checkpoint, load_checkpoint, save_checkpoint
from tritemporal.compile import compile_blocks
from tritemporal.config import TriTemporalConfig, save_config
from tritemporal.data.sources import build_dataset
from tritemporal.distributed import parallelize, unwrap
from tritemporal.eval.report import eval_dataset, evaluate, hook_scalars
from tritemporal.loader import TrainBatch, build_loader, local_batch_size
from tritemporal.metrics import MetricsWriter, format_record
from tritemporal.model import StepOutput, TriTemporalModel
from tritemporal.runtime import (
    distributed,
    full_parameters,
    is_main,
    main_process_first,
    mean_over_ranks,
    rank,
    resolve_device,
    world_size,
)
from tritemporal.schedules import ema_momentum_at, lr_at, weight_decay_at

CONFIG_FILE = "config.yaml"
DATA_SUMMARY_FILE = "data_summary.json"  # videos used, skipped files and why, label counts

logger = logging.getLogger(__name__)


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the run stopped without saving the bad state."""


def compute_dtype(device: torch.device, precision: str) -> torch.dtype:
    """The matmul dtype of a step: bf16 on CUDA (unless fp32 is asked for), fp32 on CPU unless
    bf16 is."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.bfloat16 if use_bf16 else torch.float32


def autocast_for(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast where `compute_dtype` says bf16; plain fp32 otherwise."""
    if compute_dtype(device, precision) != torch.bfloat16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def build_optimizer(model: TriTemporalModel, config: TriTemporalConfig) -> torch.optim.AdamW:
    """AdamW over trainable parameters; biases, norms and other 1-D/scalar tensors get no decay."""
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 else decay).append(param)
    o = config.optim
    groups = [
        {"params": decay, "weight_decay": o.weight_decay, "apply_wd": True},
        {"params": no_decay, "weight_decay": 0.0, "apply_wd": False},
    ]
    fused = next(model.parameters()).is_cuda
    return torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps, fused=fused or None)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def prepare_run_dir(config: TriTemporalConfig, resume: bool) -> tuple[Path, Path | None]:
    """Create the run dir; refuse to overwrite an existing run's checkpoints without --resume."""
    run_dir = Path(config.train.run_dir)
    last = find_last_checkpoint(run_dir) if run_dir.exists() else None
    if resume and last is None:
        raise FileNotFoundError(
            f"--resume: no checkpoint in {run_dir / 'checkpoints'}; start without --resume"
        )
    if not resume and last is not None:
        raise FileExistsError(
            f"{run_dir} already holds checkpoints (last: {last.name}); pass --resume to continue "
            f"it or choose a new train.run_dir"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir, last


def train(config: TriTemporalConfig, resume: bool = False) -> Path:
    """Run (or resume) training as configured; returns the run directory.

    Under torchrun every process calls it; they join one process group for the run.
    """
    with distributed(resolve_device(config.train.device)) as device:
        return _train(config, resume, device)


def _train(config: TriTemporalConfig, resume: bool, device: torch.device) -> Path:
    """`train` in this process, on `device`."""
    run_dir, last = prepare_run_dir(config, resume)
    t = config.train
    local_batch_size(t.batch_size, world_size())  # a batch that does not split fails here
    seed_everything(t.seed)
    with main_process_first():  # rank 0 builds any clip cache or video index once
        dataset = build_dataset(config)  # fails on bad data before any model is built
        eval_data = None
        if config.eval.every:  # built now so a bad eval folder fails before training starts
            eval_data = eval_dataset(config, config.eval.data)
    summary = getattr(dataset, "summary", None)
    if summary is not None:
        logger.info("data: %s", summary.format())
        if is_main():
            (run_dir / DATA_SUMMARY_FILE).write_text(json.dumps(summary.to_dict(), indent=1))
    model = TriTemporalModel(config).to(device)
    step_module = parallelize(model, config.dist.strategy, device)  # what the step calls
    optimizer = build_optimizer(model, config)
    if t.compile:
        compile_blocks(model, t.compile_mode)

    start_step = 0
    if last is not None:
        state = load_checkpoint(last, model, optimizer)
        start_step = int(state["step"])
        logger.info("resumed %s at step %d", last, start_step)
    if is_main():
        save_config(config, run_dir / CONFIG_FILE)
    if start_step >= t.steps:
        logger.info("run already finished (%d/%d steps)", start_step, t.steps)
        return run_dir

    student = [(n, p) for n, p in model.named_parameters() if not n.startswith("teacher.")]
    trainable = sum(p.numel() for _, p in student if p.requires_grad)
    total = sum(p.numel() for _, p in student)
    logger.info(
        "backbone %s | trainable %.2fM / %.2fM params (%.2f%%) | device %s | %d steps from %d",
        config.backbone.name, trainable / 1e6, total / 1e6, 100 * trainable / total, device,
        t.steps, start_step,
    )  # fmt: skip
    loader = build_loader(config, dataset, start_step, rank(), world_size())
    writer = MetricsWriter(run_dir) if is_main() else None
    autocast = autocast_for(device, t.precision)
    show_bar = t.progress and sys.stderr.isatty() and is_main()
    bar = tqdm(total=t.steps, initial=start_step, disable=not show_bar, desc="train")

    def save(step: int) -> Path:
        return save_checkpoint(
            run_dir, step, model, optimizer, config.to_dict(), t.keep_checkpoints
        )

    model.train()
    step = start_step
    window_start, window_clips = time.perf_counter(), 0
    try:
        for batch in loader:
            assert batch.step == step, f"loader out of sync: batch {batch.step} at step {step}"
            evaluating = eval_data is not None and (step + 1) % config.eval.every == 0
            logging_step = (step + 1) % t.log_every == 0 or step + 1 == t.steps or evaluating
            saving = (step + 1) % t.ckpt_every == 0 or step + 1 == t.steps
            out, scalars = train_step(
                step_module, optimizer, batch.to(device), step, config, autocast, logging_step
            )
            step += 1
            window_clips += batch.video.shape[0]
            bar.update(1)
            if (logging_step or saving) and not torch.isfinite(out.loss):
                _diverged(step - 1, out, run_dir)  # the only host sync between logged steps

            if logging_step:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                speed = window_clips * world_size() / (time.perf_counter() - window_start)  # global
                values = {**out.metrics, **scalars, "clips_per_s": speed}
                record = {"step": step, **mean_over_ranks(values)}
                if evaluating:
                    record.update(run_eval_hook(model, eval_data, config))
                if writer is not None:
                    writer.write(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)
                if not show_bar:
                    logger.info(format_record(record))
                window_start, window_clips = time.perf_counter(), 0
            if saving:
                save(step)
    except KeyboardInterrupt:
        if world_size() > 1:  # processes stop at different points: a gathering save could hang
            logger.warning("interrupted at step %d; --resume continues from the last save", step)
        elif step > start_step:
            logger.warning("interrupted at step %d; saved %s (use --resume)", step, save(step))
        raise
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return run_dir


def run_eval_hook(model: TriTemporalModel, data: object, config: TriTemporalConfig) -> dict:
    """The fast evaluation (EVENTUALLY probes, SOON error, collapse) on the held-out clips."""
    model.eval()
    try:
        with full_parameters(model):  # every process evaluates; FSDP2 needs them all
            report = evaluate(model, data, max_samples=config.eval.max_samples, full=False)
    finally:
        model.train()
    return hook_scalars(report)


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: TrainBatch,
    step: int,
    config: TriTemporalConfig,
    autocast: contextlib.AbstractContextManager,
    diagnostics: bool = False,
) -> tuple[StepOutput, dict[str, torch.Tensor | float]]:
    """One whole training step on a batch already on the device: schedules, forward, backward,
    clip, AdamW, EMA. It never waits on the GPU; `tritemporal bench` times exactly this.
    `model` is the model or the module `distributed.parallelize` returned for it (DDP's)."""
    scalars = apply_schedules(optimizer, step, config)
    with autocast:
        out: StepOutput = model(batch.video, batch.masks, batch.labels, diagnostics=diagnostics)
    scalars.update(optimize(unwrap(model), optimizer, out.loss, step, config))
    return out, scalars


def apply_schedules(optimizer: torch.optim.Optimizer, step: int, config: TriTemporalConfig) -> dict:
    """Set this step's LR and weight decay on every param group; return them for logging."""
    t, o = config.train, config.optim
    lr, wd = lr_at(step, t.steps, o), weight_decay_at(step, t.steps, o)
    for group in optimizer.param_groups:
        group["lr"] = lr
        group["weight_decay"] = wd if group["apply_wd"] else 0.0
    return {"lr": lr, "weight_decay": wd}


def optimize(
    model: TriTemporalModel,
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    step: int,
    config: TriTemporalConfig,
) -> dict[str, torch.Tensor | float]:
    """Backward, clip, AdamW step, then move the EMA teacher; returns grad norm and momentum.

    The grad norm stays a device tensor: clipping multiplies by min(1, max / norm) on the device,
    so nothing here waits for the GPU.
    """
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    max_norm = config.optim.grad_clip or float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    momentum = ema_momentum_at(step, config.train.steps, config.optim)
    model.update_teacher(momentum)
    return {"grad_norm": grad_norm, "ema_momentum": momentum}


def _diverged(step: int, out: StepOutput, run_dir: Path) -> None:
    """Stop with a message naming the step, the bad parts and the last good checkpoint.

    The loss is checked on logged and saved steps only (a check is a host sync); a non-finite
    loss poisons the weights, so it is still there by then and nothing bad is ever saved.
    """
    parts = ", ".join(f"{k}={float(v):.4g}" for k, v in out.metrics.items() if k.startswith("loss"))
    last = find_last_checkpoint(run_dir)
    kept = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
    raise TrainingDivergedError(
        f"loss is not finite at step {step} ({parts}; checked on logged steps, so it may have "
        f"turned earlier); stopped without saving this state; "
        f"{kept}. Lower optim.lr, raise optim.warmup_steps or check the data, then --resume."
    )
