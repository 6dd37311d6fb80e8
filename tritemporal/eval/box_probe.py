"""A NOW probe of detection: where is the leader in the image? (`now.leader_box.iou`)

Front-camera clips annotate the leader's image box per frame (`scene.leader_box`, fractions of
the width and height). The probe regresses the box at each window's last NOW frame from the
last NOW step's tokens, flattened so that a token's place in the image is kept (a linear
detection head on a frozen encoder, as DINO-style linear probes read dense features): ridge
regression on z-scored features, its strength chosen by leave-one-out inside each training fold
(`RidgeCV`), with folds that hold whole videos out. The cell is the mean IoU of the out-of-fold
box with the true one over the windows that have a leader; `mean_box_iou` is the reference a
constant box (the training windows' mean) reaches.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

RIDGE_ALPHAS = tuple(10.0 ** np.arange(0, 6))  # z-scored features: 1 ... 1e5
FOLDS = 5


def leader_boxes(facts: dict[str, list]) -> np.ndarray | None:
    """The leader's box per window (N, 4), NaN rows without one; None when the annotations
    carry no boxes (top-down clips) or no window has a leader."""
    values = facts.get("leader_box")
    if values is None or all(v is None for v in values):
        return None
    return np.array([[np.nan] * 4 if v is None else list(v) for v in values], dtype=np.float64)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a and b (..., 4) as [left, top, right, bottom]."""
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    return inter / np.maximum(_area(a) + _area(b) - inter, 1e-12)


def _area(box: np.ndarray) -> np.ndarray:
    return np.clip(box[..., 2] - box[..., 0], 0, None) * np.clip(box[..., 3] - box[..., 1], 0, None)


def box_predictions(
    tokens: np.ndarray, boxes: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold boxes (N, 4) from the tokens (N, T, D) of the windows with a leader (NaN
    elsewhere), and the same for the constant mean box of each training fold."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    has = np.flatnonzero(np.isfinite(boxes).all(axis=1))
    predicted = np.full_like(boxes, np.nan)
    constant = np.full_like(boxes, np.nan)
    videos = len(np.unique(groups[has]))
    if videos < 2:
        return predicted, constant
    x = tokens[has].reshape(len(has), -1)
    splitter = GroupKFold(n_splits=min(FOLDS, videos))  # deterministic: no seed to pass
    for train, test in splitter.split(x, groups=groups[has]):
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS))
        model.fit(x[train], boxes[has][train])
        predicted[has[test]] = model.predict(x[test])
        constant[has[test]] = boxes[has][train].mean(axis=0)
    return predicted, constant


def mean_iou_statistic(predicted: np.ndarray, boxes: np.ndarray) -> Callable[[np.ndarray], float]:
    """Mean IoU over the windows `idx` (with repeats) that have a leader."""
    iou = box_iou(predicted, boxes)

    def statistic(idx: np.ndarray) -> float:
        kept = iou[idx]
        kept = kept[np.isfinite(kept)]
        return float(kept.mean()) if len(kept) else float("nan")

    return statistic
