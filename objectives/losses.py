"""Loss functions shared by the objectives: latent L1, InfoNCE and supervised contrastive."""

from __future__ import annotations

import torch
import torch.nn.functional as F

_MASKED_LOGIT = -1e9  # finite, so rows with no candidate give 0 * finite, never NaN


def masked_l1(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over predicted (masked) tokens; inputs (B, M, D) already gathered."""
    return (prediction.float() - target.float()).abs().mean()


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE: row i of `a` should match row i of `b` among all rows of the batch.

    Both (B, E) are L2-normalized here; logits are cosine similarities / temperature; the loss is
    the mean of the a->b and b->a cross-entropies (as in CLIP).
    """
    a = F.normalize(a.float(), dim=-1)
    b = F.normalize(b.float(), dim=-1)
    logits = a @ b.t() / temperature  # (B, B)
    labels = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


def supervised_contrastive(
    z: torch.Tensor, labels: torch.Tensor, temperature: torch.Tensor
) -> torch.Tensor:
    """SupCon (Khosla et al. 2020, L_out): pull same-label embeddings together.

    `z` (B, E) is L2-normalized here; `labels` (B,) with -1 for unlabelled rows, which are left
    out as anchors and as candidates. Rows without a positive partner do not count; with none at
    all the loss is 0 (nothing to learn from). Written with masks, not boolean indexing, so the
    step never waits on the GPU to learn how many rows are labelled.
    """
    z = F.normalize(z.float(), dim=-1)
    n = z.shape[0]
    keep = labels >= 0
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    positives = (labels[:, None] == labels[None, :]) & keep[:, None] & keep[None, :] & ~self_mask
    hidden = self_mask | ~keep[None, :]  # never a candidate: itself, unlabelled rows
    logits = (z @ z.t() / temperature).masked_fill(hidden, _MASKED_LOGIT)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos_log_prob = (log_prob * positives).sum(dim=1) / positives.sum(dim=1).clamp(min=1)
    has_pos = positives.any(dim=1)
    return -(pos_log_prob * has_pos).sum() / has_pos.sum().clamp(min=1)


def effective_rank(z: torch.Tensor) -> torch.Tensor:
    """RankMe (Garrido et al. 2023): exp(entropy) of the L1-normalized singular values of z (N, E).

    The one RankMe of the project: training logs it (`outcome_rank`), `eval` reports it. Computed
    in float32 whatever z's dtype (bf16/fp16 features are upcast first, as `eval` upcasts them).
    Edges: at most min(N, E) (a batch of 8 spans at most 8 directions); one nonzero sample gives
    1; all-zero features give 0 (no direction spanned); singular values below the float32 noise
    floor (s_max * max(N, E) * eps, as in `torch.linalg.matrix_rank`) count as zero, so a rank-1
    matrix gives 1 exactly; NaN when z holds a non-finite value (a diverged step is reported, not
    crashed on). Returns a 0-d float32 tensor on z's device.
    """
    if z.ndim != 2:
        raise ValueError(f"effective_rank needs 2-D features (N, E), got shape {tuple(z.shape)}")
    z = z.float()
    finite = torch.isfinite(z).all()
    s = torch.linalg.svdvals(torch.where(finite, z, torch.zeros_like(z)))  # descending
    noise = s[:1] * max(z.shape) * torch.finfo(s.dtype).eps
    s = torch.where(s > noise, s, torch.zeros_like(s))
    total = s.sum()
    p = s / total.clamp(min=torch.finfo(s.dtype).tiny)
    rank = torch.exp(torch.special.entr(p).sum())  # entr(0) = 0: 0 log 0 = 0
    rank = torch.where(total > 0, rank, torch.zeros_like(rank))
    return torch.where(finite, rank, torch.full_like(rank, float("nan")))
