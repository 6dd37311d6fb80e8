"""The process runtime: which device, which process of how many, and the collectives.

`torchrun --nproc_per_node=N -m tritemporal.cli train ...` starts N processes with RANK,
LOCAL_RANK and WORLD_SIZE set; `distributed` joins them into one process group (NCCL on CUDA,
gloo on CPU) and gives each its device (cuda:LOCAL_RANK). Without torchrun, or with one
process, nothing here does anything: no process group, and every helper is the identity.

`gather_batch` lets the EVENTUALLY head and objective see the global batch (batch statistics
and contrastive negatives); `full_state_dicts` / `load_full_state_dicts` move weights and
optimizer state between a wrapped model and the single-process checkpoint format. Wrapping the
model for DDP / FSDP2 is `tritemporal.distributed`'s job, above the model.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

logger = logging.getLogger(__name__)


def resolve_device(name: str | torch.device) -> torch.device:
    """`auto` -> CUDA when available, else CPU; explicit CUDA requests must be satisfiable.

    On CUDA, float32 matmuls outside autocast (the EVENTUALLY head and losses) may use TF32.
    """
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={name!r} but CUDA is not available; use --device cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def world_size() -> int:
    """Processes training together (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def local_world_size() -> int:
    """Processes on this machine: torchrun's LOCAL_WORLD_SIZE (1 without torchrun)."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Whether this process writes the run directory and logs (rank 0)."""
    return rank() == 0


@contextlib.contextmanager
def workers_ignore_ctrl_c() -> Iterator[None]:
    """Start worker processes inside this block: they ignore SIGINT from their first instruction
    (an ignored signal stays ignored across fork and exec). A terminal's Ctrl-C reaches the whole
    process group; the parent alone handles it (stops handing out work, prints one line) and each
    worker finishes its item and exits, instead of printing a KeyboardInterrupt traceback. The
    parent ignores Ctrl-C meanwhile, so keep the block to starting the processes."""
    if threading.current_thread() is not threading.main_thread():  # signals are the main's
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def barrier() -> None:
    """Wait for every process (nothing in a single process)."""
    if world_size() > 1:
        dist.barrier()


@contextlib.contextmanager
def distributed(device: torch.device) -> Iterator[torch.device]:
    """Join torchrun's process group for the body and yield this process's device.

    Under torchrun (WORLD_SIZE > 1) a CUDA device becomes cuda:LOCAL_RANK and the group uses
    NCCL, otherwise gloo; ranks other than 0 log warnings only. A group that already exists is
    reused and left open; one made here is destroyed on exit. Otherwise `device` is yielded.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield device
        return
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        if device.index is not None:
            raise ValueError(
                f"train.device={device} picks one GPU, but under torchrun each process uses "
                "cuda:LOCAL_RANK; set train.device=cuda (or auto) and choose GPUs with "
                "CUDA_VISIBLE_DEVICES"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns_group = not dist.is_initialized()
    if owns_group:
        if device.type == "cuda":
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    if not is_main():  # for the rest of the process, so the CLI's last lines appear once too
        logging.getLogger("tritemporal").setLevel(logging.WARNING)
    try:
        yield device
    finally:
        if owns_group and dist.is_initialized():
            dist.destroy_process_group()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Run the body on rank 0, then on the others, so caches it writes are built only once."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


@contextlib.contextmanager
def full_parameters(model: nn.Module) -> Iterator[None]:
    """Gather an FSDP2 root's own parameters for calls that bypass its forward (evaluation's
    `encode`); nothing for other models. Every process must enter it together."""
    # torch.distributed's submodules take ~2 s to import: on use only
    from torch.distributed.fsdp import FSDPModule

    if not isinstance(model, FSDPModule):
        yield
        return
    model.unshard()
    try:
        yield
    finally:
        model.reshard()


def gather_batch(x: torch.Tensor) -> torch.Tensor:
    """Every process's `x` concatenated along dim 0 in rank order (`x` itself when alone).

    Differentiable: the backward pass sums over processes the gradient each one computed for
    this process's rows. When every process computes the same loss from the gathered batch,
    that sum is world_size times its gradient, and DDP's (or FSDP's) average over processes
    turns it back into exactly the gradient of that loss.
    """
    if world_size() == 1:
        return x
    # torch.distributed's submodules take ~2 s to import: on use only
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def mean_over_ranks(values: dict[str, Any]) -> dict[str, float]:
    """Scalars (tensors, DTensors or floats) as floats averaged over processes (one all_reduce)."""
    if world_size() == 1:
        return {k: float(v) for k, v in values.items()}
    # torch.distributed's submodules take ~2 s to import: on use only
    from torch.distributed.tensor import DTensor

    device = torch.device("cpu")
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    stacked = torch.stack(
        [
            torch.as_tensor(
                v.full_tensor() if isinstance(v, DTensor) else v, dtype=torch.float64, device=device
            ).reshape(())
            for v in values.values()
        ]
    )
    dist.all_reduce(stacked)
    return dict(zip(values, (stacked / world_size()).tolist(), strict=True))


def full_state_dicts(
    model: nn.Module, optimizer: torch.optim.Optimizer | None
) -> tuple[dict[str, torch.Tensor], dict | None]:
    """The model's and optimizer's whole state dicts as one process would have them, on CPU,
    on rank 0 (empty dicts elsewhere). Collective: every process must call it.

    The optimizer's comes back keyed by integer ids in param-group order, the format of
    `Optimizer.state_dict()`, so checkpoints do not depend on how the run was spread.
    """
    # torch.distributed's submodules take ~2 s to import: on use only
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(model, options=options)
    if optimizer is None:
        return weights, None
    named = get_optimizer_state_dict(model, optimizer, options=options)
    if not is_main():
        return weights, {}
    ids: dict[str, int] = {}
    groups = []
    for group in named["param_groups"]:
        for name in group["params"]:
            ids[name] = len(ids)
        groups.append({**group, "params": [ids[name] for name in group["params"]]})
    state = {ids[name]: entries for name, entries in named["state"].items()}
    return weights, {"state": state, "param_groups": groups}


def load_full_state_dicts(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    weights: dict[str, torch.Tensor],
    optimizer_state: dict | None,
) -> None:
    """Load single-process state dicts, read on rank 0 only (empty elsewhere), into a wrapped
    model and its optimizer: rank 0 broadcasts, each process keeps its part. Collective."""
    # torch.distributed's submodules take ~2 s to import: on use only
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_model_state_dict(model, weights, options=options)
    if optimizer is None:
        return
    named = {}
    if is_main():
        names = {param: name for name, param in model.named_parameters()}
        live = [names[p] for group in optimizer.param_groups for p in group["params"]]
        named = {
            "state": {live[i]: entries for i, entries in optimizer_state["state"].items()},
            "param_groups": [
                {**group, "params": [live[i] for i in group["params"]]}
                for group in optimizer_state["param_groups"]
            ],
        }
    set_optimizer_state_dict(model, optimizer, named, options=options)
