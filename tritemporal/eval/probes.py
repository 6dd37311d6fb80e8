"""Cross-validated probes that ask how much outcome information frozen features carry.

Every probe scores out-of-fold predictions over the same seeded split (it depends only on the
labels, the groups and the seed), so linear, kNN and attentive numbers on one label set are
comparable, and the same seed on the same number of CPU threads gives bit-identical results.
(The attentive probe's forward pass differs in the 8th digit between 1 and 2 threads, and its
training can turn that into a few different predictions among a thousand: `eval` sizes threads
to the free cores, so pin `TRITEMPORAL_NUM_THREADS` for bit-identical reruns.)

Why groups: windows cut from one video at a 0.5 s stride overlap and look alike, so a plain
stratified split lets a probe (a kNN above all) score by recognising the neighbouring window of
the same video. `groups` (the video of each window) keeps every video whole on one side of each
split: the probe must generalise to unseen videos, as a user's model must.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tritemporal.eval.metrics import as_features, as_labels, classification_metrics, to_numpy
from tritemporal.heads.attentive import AttentivePooler
from tritemporal.heads.probe import LinearProbe

Progress = Callable[[int], None]  # called with the units of work just done (folds, epochs)


def usable_classes(y: Any, min_count: int) -> np.ndarray:
    """Boolean mask of samples whose class has at least `min_count` members."""
    labels = to_numpy(y)
    if labels.ndim != 1:
        raise ValueError(f"y must be 1-D, got shape {labels.shape}")
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return counts[inverse.reshape(-1)] >= min_count


def fold_count(y: Any, folds: int = 5, groups: Any | None = None) -> int:
    """How many folds a probe of labels y makes (what its progress counts in): `folds`, at most
    the smallest class count and the number of groups."""
    _, counts = np.unique(to_numpy(y), return_counts=True)
    k = min(folds, int(counts.min()))
    return k if groups is None else min(k, len(np.unique(to_numpy(groups))))


def _folds(
    y: np.ndarray, folds: int, seed: int, groups: Any | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded stratified (train, test) index pairs, `fold_count` of them, whole groups on one
    side when `groups` is given."""
    # sklearn takes ~1.3 s to import: loaded when a probe runs, not with the training loop
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise ValueError(
            f"need >= 2 classes to probe, got {len(classes)} over {len(y)} samples "
            f"(class ids {classes.tolist()})"
        )
    k = fold_count(y, folds)
    if k < 2:
        rare = classes[counts < 2].tolist()
        raise ValueError(
            f"too few samples for 2 folds: class ids {rare} have a single sample; "
            "drop them first with y[usable_classes(y, 2)]"
        )
    if groups is None:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros((len(y), 1)), y))
    group_ids = to_numpy(groups).reshape(-1)
    if len(group_ids) != len(y):
        raise ValueError(f"groups has {len(group_ids)} entries but y has {len(y)} labels")
    k = fold_count(y, folds, group_ids)
    if k < 2:
        raise ValueError("groups holds a single group: held-out folds need windows of 2+ videos")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros((len(y), 1)), y, group_ids))


def _check(n_x: int, y: Any, label_names: list[str]) -> np.ndarray:
    """Class ids matching `n_x` samples, or a ValueError."""
    if len(label_names) == 0:
        raise ValueError("label_names is empty")
    labels = as_labels(y, len(label_names))
    if len(labels) != n_x:
        raise ValueError(f"features have {n_x} samples but y has {len(labels)} labels")
    return labels


def _result(labels: np.ndarray, pred: np.ndarray, label_names: list[str], k: int) -> dict:
    """classification_metrics of out-of-fold predictions plus the fold count and sample count."""
    return {**classification_metrics(labels, pred, label_names), "folds": k, "n": len(labels)}


def linear_probe_cv(
    x: Any,
    y: Any,
    label_names: list[str],
    folds: int = 5,
    seed: int = 0,
    groups: Any | None = None,
    progress: Progress | None = None,
) -> dict:
    """Out-of-fold StandardScaler + class-balanced LogisticRegression(C=1) probe of x (N, D).

    Balanced class weights: with 2/3 of windows in keep_lane, an unweighted probe learns to say
    keep_lane and its accuracy only restates the class share; weighted, it must separate the
    maneuvers, and balanced accuracy (chance 1/classes) measures how well it does.
    """
    pred, k = linear_probe_predictions(x, y, label_names, folds, seed, groups, progress)
    return _result(_check(len(pred), y, label_names), pred, label_names, k)


def linear_probe_predictions(
    x: Any,
    y: Any,
    label_names: list[str],
    folds: int = 5,
    seed: int = 0,
    groups: Any | None = None,
    progress: Progress | None = None,
) -> tuple[np.ndarray, int]:
    """`linear_probe_cv`'s out-of-fold class id of every sample (N,) and its fold count
    (`progress` is called with 1 after each fold)."""
    feats = as_features(x)
    labels = _check(len(feats), y, label_names)
    splits = _folds(labels, folds, seed, groups)
    pred = np.empty_like(labels)
    for train, test in splits:
        if len(np.unique(labels[train])) == 1:  # a video-held-out fold may see a single class
            pred[test] = labels[train][0]
        else:
            model = _logistic(seed).fit(feats[train], labels[train])
            pred[test] = model.predict(feats[test])
        if progress is not None:
            progress(1)
    return pred, len(splits)


def _logistic(seed: int) -> Any:
    """The linear probe: StandardScaler + class-balanced LogisticRegression(C=1), unfitted."""
    # sklearn takes ~1.3 s to import: loaded when a probe runs, not with the training loop
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(),
        LogisticRegression(max_iter=2000, C=1.0, class_weight="balanced", random_state=seed),
    )


def fit_linear_probe(
    x: Any, y: Any, label_names: list[str], seed: int = 0, fingerprint: str | None = None
) -> LinearProbe:
    """`linear_probe_cv`'s probe fitted on every sample of x (N, E), as a savable LinearProbe
    recording `fingerprint` (`TriTemporalModel.outcome_fingerprint` of the model behind x).

    Its classes are those present in y, in class-id order; with two, sklearn's single logit z
    becomes the logit pair (0, z), so the softmax equals sklearn's predict_proba.
    """
    feats = as_features(x)
    labels = _check(len(feats), y, label_names)
    if len(np.unique(labels)) < 2:
        raise ValueError(f"need >= 2 classes to fit a probe, got {np.unique(labels).tolist()}")
    pipeline = _logistic(seed).fit(feats, labels)
    scaler, logistic = pipeline[0], pipeline[-1]
    weight, bias = logistic.coef_, logistic.intercept_
    if len(logistic.classes_) == 2:
        weight = np.concatenate([np.zeros_like(weight), weight])
        bias = np.concatenate([np.zeros_like(bias), bias])
    return LinearProbe(
        mean=torch.from_numpy(scaler.mean_),
        scale=torch.from_numpy(scaler.scale_),
        weight=torch.from_numpy(weight),
        bias=torch.from_numpy(bias),
        label_names=[label_names[c] for c in logistic.classes_],
        fitted_on=len(labels),
        fingerprint=fingerprint,
    )


def _knn_predict(train: np.ndarray, train_y: np.ndarray, test: np.ndarray, k: int) -> np.ndarray:
    """Cosine kNN majority vote; a tied vote goes to the tied class of the nearest neighbour."""
    unit = lambda a: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)  # noqa: E731
    sim = unit(test) @ unit(train).T  # (n_test, n_train)
    k = min(k, len(train))
    order = np.argsort(-sim, axis=1, kind="stable")[:, :k]  # nearest first; ties by index
    votes_of = train_y[order]  # (n_test, k) neighbour classes, nearest first
    num_classes = int(train_y.max()) + 1
    votes = np.zeros((len(test), num_classes), dtype=np.int64)
    np.add.at(votes, (np.arange(len(test))[:, None], votes_of), 1)
    tied = votes == votes.max(axis=1, keepdims=True)  # (n_test, C)
    first = np.take_along_axis(tied, votes_of, axis=1).argmax(axis=1)  # nearest tied neighbour
    return votes_of[np.arange(len(test)), first]


def knn_probe_cv(
    x: Any,
    y: Any,
    label_names: list[str],
    k: int = 20,
    folds: int = 5,
    seed: int = 0,
    groups: Any | None = None,
) -> dict:
    """Out-of-fold cosine kNN probe of features x (N, D), k = min(k, train size)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    feats = as_features(x)
    labels = _check(len(feats), y, label_names)
    splits = _folds(labels, folds, seed, groups)
    pred = np.empty_like(labels)
    for train, test in splits:
        pred[test] = _knn_predict(feats[train], labels[train], feats[test], k)
    return _result(labels, pred, label_names, len(splits))


@dataclass(frozen=True)
class AttentiveProbeSpec:
    """An attentive probe's architecture and training. The defaults are every report's NOW
    probe: lr 5e-3 (V-JEPA 2 sweeps 1e-4..5e-3; 1e-3 underfits a few thousand windows).

    `positions` adds a learned embedding per token slot before pooling. Encoders with RoPE (the
    default, and V-JEPA 2) carry no absolute position in their output tokens, and a pooler that
    cross-attends over a set cannot tell where a token sat: without it, "is the lane left of the
    ego free?" is unanswerable from the tokens of a frame, whatever the encoder learned.

    `standardize` z-scores every feature with its mean and std over the training fold's tokens
    (MAE's non-affine BatchNorm before its linear probe, for the same reason). A pretrained
    encoder's tokens are far from isotropic: the shipped base puts 95% of their variance (after
    LayerNorm) in 3 directions, and its 50th direction has 1/5500 of the first's (random init:
    52% and 1/290). The per-token LayerNorm leaves that, and a probe with a fixed step reads the
    small directions as noise. On the base's tokens of 24 held-out videos, standardising moved the
    speed probe from 0.36 to 0.88 and ego lane from 0.80 to 1.00 (random init: 0.59 to 0.86, 0.99
    to 0.98).
    """

    epochs: int = 20
    num_queries: int = 1
    dim: int = 64
    lr: float = 5e-3
    num_heads: int = 4
    weight_decay: float = 0.01
    batch_size: int = 64
    positions: bool = True
    standardize: bool = True


def attentive_probe_cv(
    tokens: Any,
    y: Any,
    label_names: list[str],
    folds: int = 5,
    seed: int = 0,
    groups: Any | None = None,
    spec: AttentiveProbeSpec = AttentiveProbeSpec(),
    progress: Progress | None = None,
) -> dict:
    """Out-of-fold V-JEPA 2-style attentive probe (queries cross-attend) of tokens (N, T, D)."""
    pred, k = attentive_probe_predictions(
        tokens, y, label_names, folds, seed, groups, spec, progress
    )
    return _result(_check(len(pred), y, label_names), pred, label_names, k)


def attentive_probe_predictions(
    tokens: Any,
    y: Any,
    label_names: list[str],
    folds: int = 5,
    seed: int = 0,
    groups: Any | None = None,
    spec: AttentiveProbeSpec = AttentiveProbeSpec(),
    progress: Progress | None = None,
) -> tuple[np.ndarray, int]:
    """`attentive_probe_cv`'s out-of-fold class id of every sample (N,) and its fold count
    (`progress` is called with 1 after each training epoch of each fold)."""
    arr = to_numpy(tokens).astype(np.float32)
    if arr.ndim != 3 or 0 in arr.shape:
        raise ValueError(f"tokens must be non-empty (N, T, D), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("tokens hold non-finite values")
    if spec.dim % spec.num_heads:
        raise ValueError(f"dim {spec.dim} is not divisible by num_heads {spec.num_heads}")
    if spec.epochs < 1 or spec.batch_size < 1:
        raise ValueError(
            f"epochs and batch_size must be >= 1, got {spec.epochs} and {spec.batch_size}"
        )
    labels = _check(len(arr), y, label_names)
    splits = _folds(labels, folds, seed, groups)
    classes, dense = np.unique(labels, return_inverse=True)  # train only on classes present
    x_all = torch.from_numpy(arr)
    y_all = torch.from_numpy(dense.reshape(-1).astype(np.int64))
    pred = np.empty_like(labels)
    with torch.random.fork_rng(devices=[]):  # the caller's CPU RNG state comes back untouched
        for fold, (train, test) in enumerate(splits):
            torch.manual_seed(seed * 1000 + fold)  # module init draws from the global RNG
            generator = torch.Generator().manual_seed(seed * 1000 + fold)
            x_train, x_test = x_all[train], x_all[test]
            if spec.standardize:
                x_train, x_test = _standardized(x_train, x_test)
            probe = _AttentiveProbe(arr.shape[1], arr.shape[2], len(classes), spec)
            _fit(probe, x_train, y_all[train], spec, generator, progress)
            probe.eval()
            with torch.no_grad():
                logits = torch.cat([probe(chunk) for chunk in x_test.split(256)])
            pred[test] = classes[logits.argmax(dim=1).numpy()]
    return pred, len(splits)


def _standardized(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both token sets (N, T, D) z-scored per feature with the training tokens' statistics."""
    flat = train.flatten(0, 1)
    mean, std = flat.mean(dim=0), flat.std(dim=0).clamp_min(1e-6)
    return (train - mean) / std, (test - mean) / std


class _AttentiveProbe(nn.Module):
    """AttentivePooler (N, T, D) -> (N, Q, dim), then a linear head on the flattened queries."""

    def __init__(self, slots: int, in_dim: int, classes: int, spec: AttentiveProbeSpec) -> None:
        super().__init__()
        positions = slots if spec.positions else 0
        self.pool = AttentivePooler(in_dim, spec.dim, spec.num_queries, spec.num_heads, positions)
        self.head = nn.Linear(spec.num_queries * spec.dim, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Class logits (N, classes)."""
        return self.head(self.pool(tokens).flatten(1))


def _fit(
    probe: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    spec: AttentiveProbeSpec,
    generator: torch.Generator,
    progress: Progress | None = None,
) -> None:
    """AdamW + cross-entropy over seeded shuffled minibatches."""
    optimizer = torch.optim.AdamW(probe.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    probe.train()
    for _ in range(spec.epochs):
        for batch in torch.randperm(len(x), generator=generator).split(spec.batch_size):
            loss = F.cross_entropy(probe(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if progress is not None:
            progress(1)
