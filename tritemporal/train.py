"""The training loop: config -> data -> model -> optimizer -> steps -> logs and checkpoints.

Read it top to bottom: `train` builds everything once, then each step sets the scheduled LR and
weight decay, runs the tri-temporal forward under autocast, steps AdamW, moves the EMA teacher,
logs every `train.log_every` steps and saves every `train.ckpt_every` steps (and at the end).
`train_step` never waits on the GPU: a step whose loss or gradients are not finite is skipped on
the device (`DivergenceGuard`), the loop checks for one and reads metrics on logged and saved steps
only, and `train.compile` compiles each transformer block (`compile.py`).
Under torchrun (`torchrun --nproc_per_node=N -m tritemporal.cli train ...`) every process runs
this same loop on its slice of the global `train.batch_size`, with the model wrapped by DDP or
FSDP2 (`dist.strategy`, see `distributed.py`); rank 0 alone writes the run directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from tritemporal.checkpoint import (
    CHECKPOINTS_DIR,
    find_last_checkpoint,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from tritemporal.compile import compile_blocks
from tritemporal.config import TriTemporalConfig, save_config
from tritemporal.data.ego_motion import MOTION_PARTS
from tritemporal.data.frame_cache import CacheDecision, attach_frame_cache
from tritemporal.data.sources import build_dataset
from tritemporal.distributed import parallelize, unwrap
from tritemporal.eval.report import eval_dataset, evaluate, hook_scalars
from tritemporal.fp8 import apply_fp8
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
from tritemporal.threads import busy_elsewhere, cpu_thread_count, kept_threads, size_cpu_threads

CONFIG_FILE = "config.yaml"
DATA_SUMMARY_FILE = "data_summary.json"  # videos used, skipped files and why, label counts

logger = logging.getLogger(__name__)


class TrainingDivergedError(RuntimeError):
    """The loss or gradients became NaN or infinite; no update of that step was applied."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training; the message says what was saved and the command that resumes."""


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
    # fused (CUDA and CPU): one kernel per dtype, and the only AdamW that takes `found_inf`
    return torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps, fused=True)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def prepare_run_dir(config: TriTemporalConfig, resume: bool | str) -> tuple[Path, Path | None]:
    """Create the run dir and return the intact checkpoint to resume from (`last`, or the one
    `resume` names); refuse to overwrite an existing run's checkpoints without --resume."""
    run_dir = Path(config.train.run_dir)
    root = run_dir / CHECKPOINTS_DIR
    last = find_last_checkpoint(run_dir) if run_dir.exists() else None
    if resume and last is None:
        raise FileNotFoundError(f"--resume: no checkpoint in {root}; start without --resume")
    if not resume and last is not None:
        raise FileExistsError(
            f"{run_dir} already holds checkpoints (last: {last.name}); pass --resume to continue "
            f"it or choose a new train.run_dir"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        return run_dir, None
    if resume is True:
        return run_dir, resolve_checkpoint(run_dir)  # `last`, or an error naming an intact one
    named = root / Path(resume).name
    if len(Path(resume).parts) > 1 and Path(resume).resolve() != named.resolve():
        raise ValueError(
            f"--resume {resume}: not a checkpoint of this run; name one in {root} "
            f"(e.g. --resume {last.name}) or set train.run_dir to the run it belongs to"
        )
    return run_dir, resolve_checkpoint(named)


def fit_action_statistics(model: TriTemporalModel, dataset: object) -> None:
    """Standardise the action module's inputs with the training windows' ego signals: the state
    frame and the SOON frames of every window, from the annotations."""
    assert model.action is not None
    if not hasattr(dataset, "signal_values"):
        raise ValueError(
            f"predictor.action_conditioning=true needs ego signals, and data.source="
            f"{model.config.data.source} has none: use annotated videos (data.source=videos or "
            "highway)"
        )
    values = dataset.signal_values(model.action.signals, model.config.clip.action_rows)
    model.action.fit_statistics(values)
    stats = zip(model.action.signals, model.action.mean, model.action.std, strict=True)
    described = ", ".join(f"{n} {m:.3g} +- {s:.3g}" for n, m, s in stats)
    logger.info("action statistics over %d frames: %s", len(values), described)


def fit_motion_statistics(model: TriTemporalModel, dataset: object) -> None:
    """Standardise the ego EVENTUALLY target with the training windows' future motion, from
    the annotations (no decoding)."""
    if not hasattr(dataset, "ego_motion_values"):
        raise ValueError(
            f"loss.event_target=ego needs the ego series of annotated videos, and data.source="
            f"{model.config.data.source} has none: use data.source=videos or highway"
        )
    motion = dataset.ego_motion_values()
    model.eventually.fit_statistics(motion)
    std = model.eventually.motion_std.view(len(MOTION_PARTS), -1)[:, -1]
    described = ", ".join(f"{n} {s:.3g}" for n, s in zip(MOTION_PARTS, std, strict=True))
    logger.info(
        "ego-motion statistics over %d windows; std at EVENTUALLY's end: %s", len(motion), described
    )


def train(config: TriTemporalConfig, resume: bool | str = False) -> Path:
    """Run (or resume) training as configured; returns the run directory.

    `resume=True` continues from the run's `last` checkpoint; a checkpoint's name
    (`"step_00000300"`) continues from that one. Under torchrun every process calls it; they
    join one process group for the run.
    """
    with (
        distributed(resolve_device(config.train.device)) as device,
        kept_threads(),  # sized for the loader's workers once the frame cache is decided
    ):
        return _train(config, resume, device)


def _train(config: TriTemporalConfig, resume: bool | str, device: torch.device) -> Path:
    """`train` in this process, on `device`."""
    run_dir, resume_from = prepare_run_dir(config, resume)
    t = config.train
    local_batch_size(t.batch_size, world_size())  # a batch that does not split fails here
    seed_everything(t.seed)
    with main_process_first():  # rank 0 builds any clip cache or video index once
        dataset = build_dataset(config)  # fails on bad data before any model is built
        eval_data = None
        if config.eval.every:  # built now so a bad eval folder fails before training starts
            eval_data = eval_dataset(config, config.eval.data)
    summary = getattr(dataset, "summary", None)  # the dataset logged it when it was built
    if summary is not None and is_main():
        (run_dir / DATA_SUMMARY_FILE).write_text(json.dumps(summary.to_dict(), indent=1))
    model = TriTemporalModel(config).to(device)
    if model.action is not None and resume_from is None:  # a resumed run loads its own
        fit_action_statistics(model, dataset)
    if config.loss.trains_ego_target and resume_from is None:
        fit_motion_statistics(model, dataset)
    if t.fp8:  # before DDP/FSDP and compile: they wrap and fuse the converted layers
        apply_fp8(model, device)
    step_module = parallelize(model, config.dist.strategy, device)  # what the step calls
    optimizer = build_optimizer(model, config)
    if t.compile:
        compile_blocks(model, t.compile_mode)

    start_step = 0
    if resume_from is not None:
        state = load_checkpoint(resume_from, model, optimizer)
        start_step = int(state["step"])
        logger.info("resumed %s at step %d", resume_from, start_step)
    if is_main():
        save_config(config, run_dir / CONFIG_FILE)
    if start_step >= t.steps:
        logger.info("run already finished (%d/%d steps)", start_step, t.steps)
        return run_dir

    logger.info(
        "backbone %s | %s | device %s | %d steps from %d",
        config.backbone.name, model.describe_parameters(), device, t.steps, start_step,
    )  # fmt: skip
    show_bar = t.progress and sys.stderr.isatty() and is_main()
    cached = attach_frame_cache(dataset, config, device.type == "cpu", progress=show_bar)
    if is_main():
        _log_frame_cache(cached, config, device)
    loader_config = replace(config, data=replace(config.data, num_workers=cached.workers))
    loader = build_loader(loader_config, dataset, start_step, rank(), world_size())
    threads = _cpu_threads(device, cached.workers)  # no oversubscribed cores on CPU
    writer = MetricsWriter(run_dir) if is_main() else None
    autocast = autocast_for(device, t.precision)
    bar = tqdm(total=t.steps, initial=start_step, disable=not show_bar, desc="train")

    def save(step: int) -> Path:
        return save_checkpoint(
            run_dir, step, model, optimizer, config.to_dict(), t.keep_checkpoints
        )

    model.train()
    step = start_step
    guard = DivergenceGuard(model)
    window_start, window_clips = time.perf_counter(), 0
    try:
        for batch in loader:
            assert batch.step == step, f"loader out of sync: batch {batch.step} at step {step}"
            evaluating = eval_data is not None and (step + 1) % config.eval.every == 0
            logging_step = (step + 1) % t.log_every == 0 or step + 1 == t.steps or evaluating
            saving = (step + 1) % t.ckpt_every == 0 or step + 1 == t.steps
            out, scalars = train_step(
                step_module, optimizer, batch.to(device), step, config, autocast, logging_step,
                guard,
            )  # fmt: skip
            step += 1
            window_clips += batch.video.shape[0]
            bar.update(1)
            if logging_step or saving:
                _stop_if_diverged(guard, step, run_dir)  # the only host sync between logged steps

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
                threads = _cpu_threads(device, cached.workers, threads)  # load may have changed
                window_start, window_clips = time.perf_counter(), 0
            if saving:
                save(step)
    except KeyboardInterrupt as exc:
        raise TrainingInterrupted(
            _save_on_interrupt(step, start_step, guard, run_dir, save)
        ) from exc
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return run_dir


def _log_frame_cache(
    cached: CacheDecision, config: TriTemporalConfig, device: torch.device
) -> None:
    """One start-up line: what `data.cache` decided and what it changed for the loader and the
    CPU threads ("frame cache: 24 videos, 51.2 MB decoded in 3.2 s, loader workers 1 -> 0,
    torch threads 1 -> 2")."""
    line = f"frame cache: {cached.summary}"
    configured = config.data.num_workers
    if cached.workers != configured:
        line += f", loader workers {configured} -> {cached.workers}"
        if device.type == "cpu":
            before, after = (cpu_thread_count(device, n)[0] for n in (configured, cached.workers))
            line += f", torch threads {before} -> {after}"
    logger.info(line)


def _cpu_threads(device: torch.device, workers: int, previous: int | None = None) -> int:
    """Size the step's CPU threads to the cores the loader workers and other processes leave
    free now (logged when the count changes); on a GPU nothing is checked or changed."""
    if device.type != "cpu":
        return torch.get_num_threads()
    return size_cpu_threads(device, workers, busy_elsewhere(), previous)


def _save_on_interrupt(
    step: int, start_step: int, guard: DivergenceGuard, run_dir: Path, save: Callable[[int], Path]
) -> str:
    """Save what a Ctrl-C at `step` may keep; one line: where it is and the command to resume."""
    resume = f"resume with: {resume_command(run_dir)}"
    if world_size() > 1:  # processes stop at different points: a gathering save could hang
        kept = "not saved (each process stopped at its own step)"
    elif guard.first_bad_step() is not None:
        kept = f"not saved: step {guard.first_bad_step()} was not finite (updates skipped since)"
    elif step > start_step:
        return f"interrupted at step {step}; saved {save(step)}; {resume}"
    else:
        kept = "no step finished since the start"
    last = find_last_checkpoint(run_dir)
    if last is None:
        return f"interrupted at step {step}; {kept}, and the run has no checkpoint: start it again"
    return f"interrupted at step {step}; {kept}; the last save is {last}; {resume}"


def resume_command(run_dir: Path) -> str:
    """The shell command that continues the run in `run_dir` from its last checkpoint (with the
    config the run recorded, so it needs none of the original flags)."""
    config = shlex.quote(str(run_dir / CONFIG_FILE))
    launcher = "tritemporal"
    if world_size() > 1:
        launcher = f"torchrun --nproc_per_node={world_size()} -m tritemporal.cli"
    return f"{launcher} train --config {config} --resume"


def run_eval_hook(model: TriTemporalModel, data: object, config: TriTemporalConfig) -> dict:
    """The fast evaluation (EVENTUALLY probes, SOON error, collapse) on the held-out clips."""
    model.eval()
    try:
        with full_parameters(model):  # every process evaluates; FSDP2 needs them all
            report = evaluate(model, data, max_samples=config.eval.max_samples, full=False)
    finally:
        model.train()
    return hook_scalars(report)


class DivergenceGuard:
    """Remembers on the device the first step whose loss or gradients were not finite.

    From that step on `record` says skip, and a step changes nothing: fused AdamW takes the
    flag as its `found_inf` input (the hook GradScaler uses: parameters, moments and step
    counts stay as they were), the EMA teacher moves by a zero weight, and the running
    statistics the forward pass moved (the outcome head's BatchNorm) are put back. So no
    non-finite update is ever applied, and nothing waits for the device: the loop reads
    `first_bad_step` (one host sync) on logged and saved steps only, and stops there.
    """

    def __init__(self, model: TriTemporalModel) -> None:
        state = model.state_dict(keep_vars=True)
        self.buffers = [  # what a forward pass may move; the teacher's move in the EMA step
            b for n, b in model.named_buffers() if n in state and not n.startswith("teacher.")
        ]
        device = next(model.parameters()).device
        self.skip = torch.zeros((), dtype=torch.bool, device=device)
        self.first = torch.full((), -1, dtype=torch.int64, device=device)  # as logs number steps
        self.names: list[str] = []
        self.values: torch.Tensor | None = None  # that step's grad norm and losses

    def record(
        self, step: int, grad_norm: torch.Tensor, losses: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Note 0-based `step` if `grad_norm` is not finite; return whether to skip its update."""
        bad = ~torch.isfinite(grad_norm)
        first_now = bad & ~self.skip
        self.first = torch.where(first_now, step + 1, self.first)
        self.names = ["grad_norm", *losses]
        values = torch.stack([grad_norm.float(), *(v.float() for v in losses.values())])
        old = self.values if self.values is not None else values
        self.values = torch.where(first_now, values, old)
        self.skip = self.skip | bad
        return self.skip

    def save_buffers(self) -> list[torch.Tensor]:
        """Copies of the buffers a forward pass may move, taken before it."""
        return [b.clone() for b in self.buffers]

    def restore_buffers(self, saved: list[torch.Tensor]) -> None:
        """Put the saved buffers back if this step is skipped (on the device)."""
        for buffer, old in zip(self.buffers, saved, strict=True):
            buffer.copy_(torch.where(self.skip, old, buffer))

    def first_bad_step(self) -> int | None:
        """The first non-finite step (numbered as in the logs), or None; waits for the device."""
        first = int(self.first)
        return first if first >= 0 else None


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: TrainBatch,
    step: int,
    config: TriTemporalConfig,
    autocast: contextlib.AbstractContextManager,
    diagnostics: bool = False,
    guard: DivergenceGuard | None = None,
) -> tuple[StepOutput, dict[str, torch.Tensor | float]]:
    """One whole training step on a batch already on the device: schedules, forward, backward,
    clip, AdamW, EMA. It never waits on the GPU; `tritemporal bench` times exactly this.
    `model` is the model or the module `distributed.parallelize` returned for it (DDP's).
    `guard` carries the skip of non-finite steps across steps (a fresh one guards this step).
    """
    guard = guard if guard is not None else DivergenceGuard(unwrap(model))
    scalars = apply_schedules(optimizer, step, config)
    saved = guard.save_buffers()
    with autocast:
        out: StepOutput = model(**batch.inputs(), diagnostics=diagnostics)
    scalars.update(optimize(unwrap(model), optimizer, out, step, config, guard))
    guard.restore_buffers(saved)
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
    out: StepOutput,
    step: int,
    config: TriTemporalConfig,
    guard: DivergenceGuard,
) -> dict[str, torch.Tensor | float]:
    """Backward, clip, AdamW step, then move the EMA teacher; returns grad norm and momentum.
    A step whose loss or gradients are not finite (or any after one) changes nothing.

    Nothing here waits for the GPU: the grad norm stays a device tensor (clipping multiplies by
    min(1, max / norm) on the device) and so does the decision to skip (`DivergenceGuard`).
    """
    optimizer.zero_grad(set_to_none=True)
    # A non-finite loss makes every gradient NaN (x1 otherwise: bit-identical), and DDP's or
    # FSDP2's gradient reduction carries that to every process: the global grad norm then
    # decides the same on all of them, with no extra collective.
    loss = out.loss
    (loss * torch.where(torch.isfinite(loss.detach()), 1.0, float("nan"))).backward()
    max_norm = config.optim.grad_clip or float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    losses = {k: v for k, v in out.metrics.items() if k.startswith("loss")}
    losses["loss"] = loss.detach()  # what the backward pass used
    skip = guard.record(step, _whole(grad_norm), losses)
    optimizer.found_inf = skip.float()  # read by fused AdamW's step, as GradScaler sets it
    try:
        optimizer.step()
    finally:
        del optimizer.found_inf
    momentum = ema_momentum_at(step, config.train.steps, config.optim)
    model.update_teacher(momentum, skip)
    return {"grad_norm": grad_norm, "ema_momentum": momentum}


def _whole(t: torch.Tensor) -> torch.Tensor:
    """`t` as a plain tensor: under FSDP2 the grad norm is a DTensor, replicated on each rank."""
    if world_size() == 1:
        return t
    from torch.distributed.tensor import DTensor  # torch's; loaded only under torchrun

    return t.full_tensor() if isinstance(t, DTensor) else t


def _stop_if_diverged(guard: DivergenceGuard, step: int, run_dir: Path) -> None:
    """Raise, naming the first non-finite step, its values and the last good checkpoint, if
    there was one (a host sync: the loop calls it on logged and saved steps only)."""
    first = guard.first_bad_step()
    if first is None:
        return
    named = zip(guard.names, guard.values.tolist(), strict=True)
    values = ", ".join(f"{k}={v:.4g}" for k, v in named)
    last = find_last_checkpoint(run_dir)
    kept = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
    raise TrainingDivergedError(
        f"loss or gradients not finite at step {first} ({values}); steps {first} to {step} "
        f"applied no update (checked on logged and saved steps) and nothing was saved; {kept}. "
        f"Lower optim.lr, raise optim.warmup_steps or check the data, then --resume."
    )
