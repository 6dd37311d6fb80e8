"""Regional torch.compile: every transformer block runs through one compiled function.

Encoders and predictors call their blocks through a `block_forward` attribute
(`layers/blocks.call_block`, or `adapters/vjepa2.hf_layer_forward` for transformers' layers).
`compile_blocks` swaps it for a `torch.compile`d version, shared by every block of every module
that uses the same function, so the 24 blocks of a ViT-L compile once, not 24 times.

Why blocks and not the whole step: the step holds data-dependent bookkeeping (mask gathers,
the contrastive batch, diagnostics) that would split a whole-step graph anyway, while blocks
hold nearly all FLOPs and memory traffic (RoPE, attention, MLP, norms: fused by Inductor).
Token counts are static per pass (each mask generator has fixed K and M, NOW and SOON windows
are fixed), so one step compiles a handful of graphs once: the teacher's whole clip, the
student's short-mask, long-mask and NOW contexts, and the predictor's three inputs.
"""

from __future__ import annotations

import torch
from torch import nn

# one graph per (token count, width, grad mode, dtype) seen in a step: ~7 for the tri step, more
# with LoRA or eval passes; the default limit of 8 would silently fall back to eager
RECOMPILE_LIMIT = 64


def compile_blocks(model: nn.Module, mode: str = "default") -> int:
    """Compile the block function of every module that has one with torch.compile's `mode`;
    returns how many modules were switched."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), RECOMPILE_LIMIT))
    compiled: dict[object, object] = {}
    switched = 0
    for module in model.modules():
        forward = getattr(module, "block_forward", None)
        if forward is None or forward in compiled.values():
            continue
        if forward not in compiled:
            compiled[forward] = torch.compile(forward, mode=mode, dynamic=False)
        module.block_forward = compiled[forward]
        switched += 1
    return switched
