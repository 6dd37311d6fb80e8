"""Supervised objective: class-balanced cross-entropy of the outcome embedding on maneuver labels.

A thin linear classifier reads the OutcomeAbstractor's embedding (heads/outcome.py) and predicts
the clip's eventual maneuver, a label in `data.common.MANEUVERS` followed by
`data.extra_maneuvers` (-1: unlabelled, ignored). With `loss.lambda_ce` alone it is the
supervised ceiling of docs/evaluation.md (`configs/ceiling.yaml`: the same architecture trained
on the labels); beside the self-supervised objectives it uses whatever weak labels a corpus has.

Class balance comes from the batch, not from dataset counts: each labelled row is weighted by
one over its class's count in the batch, so every class present counts equally, and the loss is
the batch estimate of the mean over classes of each class's cross-entropy, the surrogate of the
balanced accuracy docs/evaluation.md reports. Two thirds of driving windows are keep_lane;
unweighted, the classifier learns the prior. Batch counts need no statistics stored with the
model (it loads the same way whatever corpus it meets next), follow whichever source or sampler
feeds it, and cost no pass over the data. A batch without labels gives 0 with a finite (zero)
gradient, and no branch waits for the device.

Under torchrun the loss covers the global batch, like EVENTUALLY's: the outcome embedding
arrives gathered from every process, the labels are gathered here in training, every process
computes the same loss, and DDP's average of the gathered gradients is that loss's gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tritemporal.runtime import gather_batch


def balanced_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over the classes present in `labels` of their rows' mean cross-entropy; rows
    labelled < 0 are ignored; 0 (with a zero, finite gradient) when no row is labelled."""
    num_classes = logits.shape[-1]
    valid = labels >= 0
    target = labels.clamp(min=0)
    counts = torch.bincount(target[valid], minlength=num_classes).float()  # (C,)
    weights = valid.float() / counts[target].clamp(min=1)  # (B,): 1 / its class's count
    per_row = F.cross_entropy(logits.float(), target, reduction="none")  # (B,)
    return (weights * per_row).sum() / weights.sum().clamp(min=1)  # sum of weights: classes


class OutcomeClassifier(nn.Module):
    """Linear classifier over the outcome embedding; computes the supervised loss."""

    def __init__(self, outcome_dim: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(outcome_dim, num_classes)

    def forward(self, outcome: torch.Tensor) -> torch.Tensor:
        """Outcome embeddings (B, out_dim) -> class logits (B, num_classes)."""
        return self.linear(outcome)

    def loss(self, outcome: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Class-balanced cross-entropy; `outcome` covers the global batch under torchrun
        (OutcomeAbstractor gathers it), `labels` are this process's rows."""
        if self.training:
            labels = gather_batch(labels)  # (world_size * B,); labels itself in one process
        return balanced_cross_entropy(self(outcome), labels)
