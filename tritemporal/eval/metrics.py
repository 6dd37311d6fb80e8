"""Plain-numpy evaluation metrics, so reports need no sklearn and every number is JSON-ready.

The classification metrics score outcome probes (keep_lane / lane_change_left / ...); RankMe and
the per-dimension std of L2-normalized features flag a collapsed EVENTUALLY embedding, which a
probe accuracy alone can hide when one class dominates. RankMe is
`objectives.losses.effective_rank`, the function training logs as `outcome_rank`: the report and
the logs give the same number for the same features.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tritemporal.objectives.losses import effective_rank


def to_numpy(x: Any) -> np.ndarray:
    """A numpy array from a numpy array, list or torch tensor (detached, on the CPU)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.float()  # bf16/fp16 have no numpy dtype
        x = x.numpy()
    return np.asarray(x)


def as_labels(y: Any, num_classes: int, name: str = "y") -> np.ndarray:
    """Integer class ids (N,) in [0, num_classes), or a ValueError saying what is wrong."""
    arr = to_numpy(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D class ids, got shape {arr.shape}")
    integral = np.issubdtype(arr.dtype, np.integer) or (
        np.issubdtype(arr.dtype, np.number) and bool(np.all(arr == np.round(arr)))
    )
    if arr.size and not integral:
        raise ValueError(f"{name} must hold integer class ids, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(
            f"{name} holds class ids in [{arr.min()}, {arr.max()}], "
            f"outside [0, {num_classes}) given {num_classes} label names"
        )
    return arr


def as_features(x: Any, name: str = "x") -> np.ndarray:
    """Float64 features (N, D), or a ValueError for another shape or an empty array."""
    arr = to_numpy(x).astype(np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds non-finite values")
    return arr


def classification_metrics(y_true: Any, y_pred: Any, label_names: list[str]) -> dict:
    """Accuracy, balanced accuracy, macro-F1, recall per class, confusion, support, chance."""
    names = [str(n) for n in label_names]
    c = len(names)
    if c == 0:
        raise ValueError("label_names is empty")
    true = as_labels(y_true, c, "y_true")
    pred = as_labels(y_pred, c, "y_pred")
    if len(true) != len(pred):
        raise ValueError(f"y_true has {len(true)} labels but y_pred has {len(pred)}")
    if len(true) == 0:
        raise ValueError("no samples to score")
    confusion = np.zeros((c, c), dtype=np.int64)
    np.add.at(confusion, (true, pred), 1)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    hits = np.diag(confusion)
    present = np.flatnonzero(support)
    recall = hits[present] / support[present]
    precision = np.divide(
        hits[present], predicted[present], out=np.zeros(len(present)), where=predicted[present] > 0
    )
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(len(present)), where=denom > 0)
    n = len(true)
    return {
        "accuracy": float(hits.sum() / n),
        "balanced_accuracy": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "per_class_recall": {names[i]: float(r) for i, r in zip(present, recall, strict=True)},
        "confusion": confusion.tolist(),
        "support": {name: int(s) for name, s in zip(names, support, strict=True)},
        "chance": float(support.max() / n),
        "chance_balanced": float(1 / len(present)),
    }


def feature_stats(x: Any) -> dict:
    """RankMe, dim and the mean/min per-dimension std of L2-normalized rows (collapse -> ~0)."""
    arr = as_features(x)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    unit = arr / np.maximum(norms, 1e-12)
    std = unit.std(axis=0)  # spread-out features: ~1/sqrt(D) per dimension
    return {
        "rankme": float(effective_rank(torch.from_numpy(arr))),
        "dim": int(arr.shape[1]),
        "std_mean": float(std.mean()),
        "std_min": float(std.min()),
    }
