"""Wrapping the model for data-parallel training under torchrun: the one place it happens.

`parallelize` returns the module the training step calls; everything else (optimizer, EMA,
checkpoints, evaluation) keeps using the model itself, so state-dict names never change:
- `ddp`: `DistributedDataParallel` around the model: every process holds the whole model;
  gradients are averaged in buckets during the backward pass. The step calls the wrapper.
- `fsdp`: FSDP2 (`fully_shard`) on every transformer block of the student encoder, the
  predictor and the EMA teacher, on the teacher, then on the root: parameters, gradients and
  AdamW state are sharded, a block's weights are gathered only while it runs (ViT-H/g). It
  works in place: the step calls the model.

The process group, ranks and collectives are `tritemporal.runtime`'s.
"""

from __future__ import annotations

import logging
import warnings

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tritemporal.model import TriTemporalModel
from tritemporal.runtime import world_size

logger = logging.getLogger(__name__)


def parallelize(model: TriTemporalModel, strategy: str, device: torch.device) -> nn.Module:
    """Set `model` up for data-parallel training (`ddp` or `fsdp`) and return the module the
    training step calls: the DDP wrapper, or `model` itself (FSDP2, or a single process).
    Every process first takes rank 0's weights (FSDP2 does not broadcast them)."""
    if world_size() == 1:
        return model
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor, src=0)
    step_module: nn.Module = model
    if strategy == "fsdp":
        _fully_shard(model, device)
    else:
        device_ids = [device.index] if device.type == "cuda" else None
        step_module = DistributedDataParallel(model, device_ids=device_ids)
    logger.info("%s over %d processes", strategy, world_size())
    return step_module


def unwrap(module: nn.Module) -> TriTemporalModel:
    """The model inside what `parallelize` returned (the DDP wrapper's module, else itself)."""
    return module.module if isinstance(module, DistributedDataParallel) else module


def _fully_shard(model: TriTemporalModel, device: torch.device) -> None:
    """FSDP2 per transformer block (student encoder, predictor, teacher), teacher, root.

    A block is sharded as one communication group hooked on the submodules that hold its
    weights, not on the block itself: an adapter may run a block as a function of its
    submodules without calling the block (transformers' V-JEPA 2 layers, run with our RoPE),
    and FSDP2 gathers a group's weights only when a hooked module is called. FSDP2 then warns
    that the group's last output (the MLP's output projection, a view) must not be changed in
    place; both block kinds add it to the residual out of place, so the warning is silenced.
    FSDP2 cannot shard 0-dim parameters (the InfoNCE log-temperature): those stay whole on
    every process, and a hook averages their gradient over processes, as DDP would.
    """
    # torch.distributed's submodules take ~2 s to import: on use only
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    warnings.filterwarnings("ignore", r"FSDP2-wrapped module .* returned a view tensor")
    mesh = init_device_mesh(device.type, (world_size(),))
    backbone = model.backbone
    parts = [
        ("encoder", backbone.encoder),
        ("predictor", backbone.predictor),
        ("encoder", model.teacher),  # a copy of the encoder: same block-list name
    ]
    for part, module in parts:
        blocks = transformer_blocks(module, backbone.lora_targets[part][1])
        assert blocks, f"no transformer blocks found in the {part} ({type(module).__name__})"
        for block in blocks:
            fully_shard(weight_holders(block), mesh=mesh)
    fully_shard(model.teacher, mesh=mesh)
    scalars = {p for p in model.parameters() if p.ndim == 0}
    for param in scalars:
        if param.requires_grad:
            param.register_post_accumulate_grad_hook(_average_grad)
    fully_shard(model, mesh=mesh, ignored_params=scalars)


def _average_grad(param: torch.Tensor) -> None:
    """Average an unsharded parameter's gradient over processes (in place)."""
    dist.all_reduce(param.grad)
    param.grad.div_(world_size())


def weight_holders(module: nn.Module) -> list[nn.Module]:
    """`module` and its submodules that hold parameters of their own."""
    return [m for m in module.modules() if next(m.parameters(recurse=False), None) is not None]


def transformer_blocks(module: nn.Module, list_name: str) -> list[nn.Module]:
    """The blocks of every ModuleList called `list_name` in `module` (`blocks`, `layer`)."""
    return [
        block
        for name, child in module.named_modules()
        if name.rsplit(".", 1)[-1] == list_name and isinstance(child, nn.ModuleList)
        for block in child
    ]
