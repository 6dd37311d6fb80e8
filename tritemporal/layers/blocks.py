"""Transformer building blocks shared by every encoder and predictor, read bottom-up:
attention -> MLP -> block -> running a stack of blocks (activation checkpointing, the SDPA
kernel choice, the `block_forward` hook that compile swaps).

Backbones (`adapters/`) and heads (`heads/`) both build on these, so they live below both.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.checkpoint import checkpoint

from tritemporal.layers.tokens import apply_rope

RopeTables = tuple[torch.Tensor, torch.Tensor]


class Attention(nn.Module):
    """Multi-head self-attention (SDPA), with optional 3D RoPE on queries and keys."""

    def __init__(self, dim: int, num_heads: int, use_rope: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.use_rope = use_rope

    def forward(self, x: torch.Tensor, rope: RopeTables | None = None) -> torch.Tensor:
        """Attend over all tokens of x (B, N, D)."""
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, N, head_dim)
        if self.use_rope:
            assert rope is not None, "a RoPE attention layer needs position tables"
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """Two-layer GELU MLP."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP token-wise."""
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block with stochastic depth."""

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float, use_rope: bool, drop_path: float
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, use_rope)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor, rope: RopeTables | None = None) -> torch.Tensor:
        """One residual attention + MLP step."""
        x = x + self._drop(self.attn(self.norm1(x), rope))
        return x + self._drop(self.mlp(self.norm2(x)))

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_path == 0.0:
            return x
        keep = 1.0 - self.drop_path
        mask = x.new_empty(x.shape[0], 1, 1).bernoulli_(keep)
        return x * mask / keep


BlockForward = Callable[[nn.Module, torch.Tensor, RopeTables | None], torch.Tensor]

# `backbone.sdpa_kernel` / `predictor.sdpa_kernel` -> the one SDPA kernel allowed ("auto": all,
# in PyTorch's order, which picks cuDNN's on an H100)
SDPA_BACKENDS = {
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}
CUDA_ONLY_KERNELS = ("cudnn", "efficient")


def sdpa_backend(kernel: str, device: torch.device) -> contextlib.AbstractContextManager:
    """A context in which SDPA uses only `kernel` ("auto": PyTorch's choice) on `device`.

    Entered inside the (compiled) block function: dynamo traces it and keys graphs on it, while
    a context around a compiled call would be ignored by graphs traced under another one.
    """
    if kernel in CUDA_ONLY_KERNELS and device.type != "cuda":
        # a speed choice, not a result: a model trained with it still runs on a CPU (warned in
        # eager mode; a warning inside a compiled block would split its graph)
        if not torch.compiler.is_compiling():
            warnings.warn(
                f"sdpa_kernel={kernel!r} (backbone.sdpa_kernel or predictor.sdpa_kernel) runs "
                f"on CUDA only; on {device.type} PyTorch picks the attention kernel instead",
                stacklevel=2,
            )
        kernel = "auto"
    if kernel == "auto":
        return contextlib.nullcontext()
    return sdpa_kernel(SDPA_BACKENDS[kernel])


def call_block(
    block: nn.Module, x: torch.Tensor, rope: RopeTables | None, kernel: str = "auto"
) -> torch.Tensor:
    """Run one built-in block: the default `block_forward` of encoders and predictors.

    Encoders and predictors call their blocks through a `block_forward` attribute so that
    `tritemporal.compile.compile_blocks` can swap in one compiled function for every block, and
    `use_sdpa_kernel` can bind the attention kernel the config asks for.
    """
    with sdpa_backend(kernel, x.device):
        return block(x, rope)


def use_sdpa_kernel(module: nn.Module, kernel: str) -> None:
    """Make every block of `module` (an encoder or predictor) attend with `kernel`."""
    if kernel != "auto":
        module.block_forward = functools.partial(module.block_forward, kernel=kernel)


def run_blocks(
    blocks: nn.ModuleList,
    x: torch.Tensor,
    rope: RopeTables | None,
    use_checkpoint: bool,
    forward: BlockForward = call_block,
) -> torch.Tensor:
    """Run a stack of blocks with `forward(block, x, rope)`, optionally recomputing each
    block's activations in the backward pass to save memory."""
    for block in blocks:
        if use_checkpoint and torch.is_grad_enabled():
            x = checkpoint(forward, block, x, rope, use_reentrant=False)
        else:
            x = forward(block, x, rope)
    return x


def init_weights(module: nn.Module) -> None:
    """Truncated-normal linear weights, zero biases (as in V-JEPA)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
