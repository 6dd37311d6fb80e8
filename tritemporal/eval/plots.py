"""PNG figures for evaluation reports, drawn on bare matplotlib Figures.

No pyplot: nothing touches a display or the global backend, so report code can run headless and
inside tests or training processes without leaking figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from tritemporal.eval.metrics import as_features, as_labels, to_numpy

DPI = 110


def _save(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as a PNG at `path` (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    return path


def plot_confusion(confusion: Any, label_names: list[str], path: str | Path, title: str) -> Path:
    """Annotated confusion heat map (rows true, cols predicted), colours row-normalized."""
    counts = to_numpy(confusion).astype(np.int64)
    c = len(label_names)
    if counts.shape != (c, c):
        raise ValueError(f"confusion has shape {counts.shape}, expected ({c}, {c}) for the labels")
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    side = max(3.5, 0.9 * c + 2.0)
    fig = Figure(figsize=(side + 1.0, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="share of true class")
    for i in range(c):
        for j in range(c):
            colour = "white" if share[i, j] > 0.5 else "black"
            text = f"{counts[i, j]}\n{share[i, j]:.0%}" if rows[i, 0] else "0"
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize="small")
    names = [str(n) for n in label_names]
    ax.set_xticks(range(c), names, rotation=30, ha="right")
    ax.set_yticks(range(c), [f"{n} ({rows[i, 0]})" for i, n in enumerate(names)])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (support)")
    ax.set_title(title)
    return _save(fig, path)


def plot_projection(x: Any, y: Any, label_names: list[str], path: str | Path, title: str) -> Path:
    """2-D PCA scatter of features x (N, D) coloured by class, with a legend."""
    feats = as_features(x)
    labels = as_labels(y, len(label_names))
    if len(labels) != len(feats):
        raise ValueError(f"x has {len(feats)} samples but y has {len(labels)} labels")
    centred = feats - feats.mean(axis=0, keepdims=True)
    coords = np.zeros((len(feats), 2))
    explained = np.zeros(2)
    if len(feats) >= 2 and np.any(centred):
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        k = min(2, len(s))
        coords[:, :k] = centred @ vt[:k].T
        explained[:k] = (s**2)[:k] / (s**2).sum()
    fig = Figure(figsize=(7.5, 5.5), layout="constrained")
    ax = fig.subplots()
    for cls in np.unique(labels):
        sel = labels == cls
        name = f"{label_names[cls]} ({int(sel.sum())})"
        ax.scatter(coords[sel, 0], coords[sel, 1], s=12, alpha=0.7, label=name)
    ax.set_xlabel(f"PC1 ({explained[0]:.0%})")
    ax.set_ylabel(f"PC2 ({explained[1]:.0%})")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    return _save(fig, path)


def plot_horizon(
    horizon_s: list[float],
    series: dict[str, list[float]],
    path: str | Path,
    title: str,
    ylabel: str,
) -> Path:
    """One line per series over forecast horizons in seconds (e.g. model vs baselines)."""
    hx = np.asarray(horizon_s, dtype=np.float64)
    if hx.ndim != 1 or len(hx) == 0:
        raise ValueError(f"horizon_s must be a non-empty list, got shape {hx.shape}")
    if not series:
        raise ValueError("series is empty")
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.subplots()
    for name, values in series.items():
        vy = np.asarray(values, dtype=np.float64)
        if vy.shape != hx.shape:
            raise ValueError(f"series {name!r} has {vy.size} values for {hx.size} horizons")
        ax.plot(hx, vy, marker="o", markersize=4, label=str(name))
    ax.set_xlabel("horizon (s)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    return _save(fig, path)


def plot_bars(
    groups: dict[str, dict[str, float]], path: str | Path, title: str, ylabel: str
) -> Path:
    """Grouped bars: one group per outer key, one bar per inner key, values written on top."""
    if not groups:
        raise ValueError("groups is empty")
    bars = list(dict.fromkeys(name for inner in groups.values() for name in inner))
    if not bars:
        raise ValueError("groups hold no values")
    width = 0.8 / len(bars)
    centres = np.arange(len(groups))
    fig = Figure(figsize=(max(6.0, 1.2 * len(groups) * max(1, len(bars) / 2) + 2), 4.5))
    fig.set_layout_engine("constrained")
    ax = fig.subplots()
    for b, bar in enumerate(bars):
        xs, heights = [], []
        for g, inner in enumerate(groups.values()):
            if bar in inner and inner[bar] is not None:
                xs.append(centres[g] + (b - (len(bars) - 1) / 2) * width)
                heights.append(float(inner[bar]))
        drawn = ax.bar(xs, heights, width=width, label=str(bar))
        ax.bar_label(drawn, fmt="%.2f", fontsize="x-small", padding=1)
    ax.set_xticks(centres, [str(g) for g in groups])
    ax.set_ylabel(ylabel)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(title)
    return _save(fig, path)
