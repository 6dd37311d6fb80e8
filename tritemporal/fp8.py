"""fp8 GEMMs in training (`train.fp8`): torchao's float8 training on the transformer blocks.

Why: the kernel profile of the `vjepa` step on an H200 (docs/PERFORMANCE.md) has the bf16 GEMMs
at 98% of the card's matmul rate, holding 597 of the 640 ms that 64 clips may take to reach
100 clips/s; only a faster GEMM moves it, and an H100/H200's fp8 tensor cores do twice bf16's
FLOPs.

Which layers: every `nn.Linear` inside a transformer block (attention's qkv / query-key-value
and output projections, the MLP's two layers; under LoRA the frozen base layers, while the
rank-r adapters stay bf16) of the encoders (student and EMA teacher) and the
predictor, which hold nearly all of the step's FLOPs. Left in bf16: layers whose sizes are not
multiples of 16 (the fp8 GEMM needs them), and everything outside the blocks: the predictor's
input and output projections, the outcome head, the EVENTUALLY target projection and the action
module, which are small and feed the losses (InfoNCE logits are sensitive to rounding).
Scaling is torchao's dynamic tensorwise recipe (e4m3 forward, e5m2 gradients), its fastest;
weights stay in their own dtype (the optimizer and the EMA see ordinary parameters), and only
the GEMMs' inputs are cast. Convert before `torch.compile`, which fuses the casts.

The GEMMs run in fp8 on CUDA cards of compute capability 8.9+ (Ada, Hopper, Blackwell); on a
CPU torch emulates them (slowly), which is how the tests check the conversion and its accuracy.
"""

from __future__ import annotations

import logging
import re

import torch
from torch import nn

logger = logging.getLogger(__name__)

BLOCK_PATH = re.compile(r"(^|\.)(blocks|layer)\.\d+\.")  # ours: blocks.N; transformers: layer.N
FP8_MIN_CAPABILITY = (8, 9)


def fp8_layer(module: nn.Module, name: str) -> bool:
    """Whether `train.fp8` converts this module (module docstring)."""
    return (
        type(module) is nn.Linear
        and BLOCK_PATH.search(name) is not None
        and "lora_" not in name  # LoRA's rank-r adapters: tiny GEMMs, kept in bf16
        and module.in_features % 16 == 0
        and module.out_features % 16 == 0
    )


def apply_fp8(model: nn.Module, device: torch.device) -> int:
    """Swap the block GEMMs of `model` for torchao's Float8Linear in place; the number swapped.
    Raises with the fix when torchao is missing."""
    try:
        from torchao.float8 import convert_to_float8_training  # optional: train.fp8 only
    except ImportError as exc:
        raise ImportError(
            "train.fp8=true needs torchao (pip install torchao; the GPU image may need its "
            "wheel carried)"
        ) from exc
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < FP8_MIN_CAPABILITY:
        raise ValueError(
            f"train.fp8=true: {torch.cuda.get_device_name(device)} has no fp8 tensor cores "
            f"(compute capability {torch.cuda.get_device_capability(device)} < 8.9); use bf16"
        )
    linear = sum(isinstance(m, nn.Linear) for m in model.modules())
    chosen = [n for n, m in model.named_modules() if fp8_layer(m, n)]
    convert_to_float8_training(model, module_filter_fn=lambda m, fqn: fp8_layer(m, fqn))
    swapped = sum(1 for m in model.modules() if type(m).__name__ == "Float8Linear")
    logger.info("train.fp8: %d of %d Linear layers run fp8 GEMMs", swapped, linear)
    if device.type != "cuda":
        logger.warning("train.fp8 on %s: fp8 GEMMs are emulated (slow); for tests only", device)
    assert swapped == len(chosen), (swapped, len(chosen))
    return swapped
