"""Loss functions shared by the objectives: latent L1, InfoNCE and supervised contrastive."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
) -> torch.Tensor | None:
    """SupCon (Khosla et al. 2020, L_out): pull same-label embeddings together.

    `z` (B, E) is L2-normalized here; `labels` (B,) with -1 for unlabelled rows, which are left
    out. Returns None when no labelled row has a positive partner (nothing to learn from).
    """
    keep = labels >= 0
    z, labels = F.normalize(z[keep].float(), dim=-1), labels[keep]
    n = z.shape[0]
    if n < 2:
        return None
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    has_pos = positives.any(dim=1)
    if not has_pos.any():
        return None
    logits = (z @ z.t() / temperature).masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos_log_prob = log_prob.masked_fill(~positives, 0.0).sum(dim=1) / positives.sum(1).clamp(min=1)
    return -pos_log_prob[has_pos].mean()


def effective_rank(z: torch.Tensor) -> torch.Tensor:
    """RankMe (Garrido et al. 2023): exp(entropy) of the normalized singular values of z (N, E)."""
    s = torch.linalg.svdvals(z.float())
    p = s / s.sum().clamp(min=1e-12) + 1e-12
    return torch.exp(-(p * p.log()).sum())
