"""PNG figures for evaluation reports, drawn on bare matplotlib Figures.

No pyplot: nothing touches a display or the global backend, so report code can run headless and
inside tests or training processes without leaking figures. Each `*_figure` function returns its
Figure (tests read its artists); each `plot_*` writes that figure as a PNG.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from tritemporal.eval.metrics import as_features, as_labels, to_numpy

DPI = 110

logger = logging.getLogger(__name__)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as a PNG at `path` (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    return path


def confusion_figure(confusion: Any, label_names: list[str], title: str) -> Figure:
    """Annotated confusion heat map (rows true, cols predicted), colours row-normalized.

    Classes with neither a true nor a predicted sample are left out: a vocabulary class absent
    from the evaluation data would only add an empty row and column.
    """
    counts = to_numpy(confusion).astype(np.int64)
    c = len(label_names)
    if counts.shape != (c, c):
        raise ValueError(f"confusion has shape {counts.shape}, expected ({c}, {c}) for the labels")
    present = np.flatnonzero(counts.sum(axis=1) + counts.sum(axis=0))
    if len(present) == 0:
        raise ValueError("confusion holds no samples")
    counts = counts[np.ix_(present, present)]
    names = [str(label_names[i]) for i in present]
    c = len(names)
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
    ax.set_xticks(range(c), names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(c), [f"{n} ({rows[i, 0]})" for i, n in enumerate(names)])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (support)")
    ax.set_title(textwrap.fill(title, int(9 * side), break_on_hyphens=False))  # narrow: few classes
    return fig


def plot_confusion(confusion: Any, label_names: list[str], path: str | Path, title: str) -> Path:
    """`confusion_figure` written as a PNG at `path`."""
    return save_figure(confusion_figure(confusion, label_names, title), path)


def projection_figure(x: Any, y: Any, label_names: list[str], title: str) -> Figure:
    """2-D PCA scatter of features x (N, D) coloured by class, with a legend in class order.

    Classes are drawn largest first with markers that grow as a class shrinks, so a class of a
    few windows stays visible on top of thousands of keep_lane points.
    """
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
    classes, sizes = np.unique(labels, return_counts=True)
    handles = {}
    for cls, size in sorted(zip(classes, sizes, strict=True), key=lambda cs: -cs[1]):
        sel = labels == cls
        marker = 12.0 * min(4.0, float(np.sqrt(sizes.max() / size)))  # 12 .. 48 points^2
        handles[cls] = ax.scatter(
            coords[sel, 0], coords[sel, 1], s=marker, alpha=0.7, color=f"C{cls % 10}",
            edgecolors="none", label=f"{label_names[cls]} ({int(size)})",
        )  # fmt: skip
    ax.set_xlabel(f"PC1 ({explained[0]:.0%})")
    ax.set_ylabel(f"PC2 ({explained[1]:.0%})")
    ax.legend(
        handles=[handles[cls] for cls in classes], loc="upper left", bbox_to_anchor=(1.01, 1.0),
        fontsize="small",
    )  # fmt: skip
    ax.grid(alpha=0.3)
    ax.set_title(title)
    return fig


def plot_projection(x: Any, y: Any, label_names: list[str], path: str | Path, title: str) -> Path:
    """`projection_figure` written as a PNG at `path`."""
    return save_figure(projection_figure(x, y, label_names, title), path)


def horizon_figure(
    horizon_s: list[float], series: dict[str, list[float]], title: str, ylabel: str
) -> Figure:
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
    return fig


def plot_horizon(
    horizon_s: list[float],
    series: dict[str, list[float]],
    path: str | Path,
    title: str,
    ylabel: str,
) -> Path:
    """`horizon_figure` written as a PNG at `path`."""
    return save_figure(horizon_figure(horizon_s, series, title, ylabel), path)


def bars_figure(
    groups: dict[str, dict[str, float]], title: str, ylabel: str, chance: float | None = None
) -> Figure:
    """Grouped bars: one group per outer key, one bar per inner key, values written on top,
    and a dashed line at `chance` when given (pass it whenever the title names chance)."""
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
    if chance is not None:
        ax.axhline(chance, color="black", linestyle="--", linewidth=1, label=f"chance {chance:.2f}")
    names = [str(g) for g in groups]
    ax.set_xticks(centres, names, rotation=20, ha="right", rotation_mode="anchor")
    ax.set_ylabel(ylabel)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")  # off the bars
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(title)
    return fig


def plot_bars(
    groups: dict[str, dict[str, float]],
    path: str | Path,
    title: str,
    ylabel: str,
    chance: float | None = None,
) -> Path:
    """`bars_figure` written as a PNG at `path`."""
    return save_figure(bars_figure(groups, title, ylabel, chance), path)


def intervals_figure(
    rows: dict[str, dict[str, tuple[float, float, float]]],
    columns: dict[str, str],
    title: str,
    reference: dict[str, float] | None = None,
) -> Figure:
    """One panel per metric (column key -> title): each row's value as a dot with its interval
    as a horizontal bar, rows top to bottom, and a dashed line at the metric's reference value
    when given (chance for a probe, 1 for a ratio to a baseline)."""
    if not rows or not columns:
        raise ValueError("rows and columns must be non-empty")
    reference = reference or {}
    names = list(rows)
    ncols = min(4, len(columns))
    nrows = -(-len(columns) // ncols)
    fig = Figure(figsize=(3.6 * ncols, 0.6 + (0.35 * len(names) + 0.9) * nrows))
    fig.set_layout_engine("constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
    ys = np.arange(len(names))[::-1]
    for ax, (key, label) in zip(axes, columns.items(), strict=False):
        for y, name in zip(ys, names, strict=True):
            if key not in rows[name]:
                continue
            value, low, high = rows[name][key]
            ax.errorbar(
                value, y, xerr=[[max(value - low, 0.0)], [max(high - value, 0.0)]], fmt="o",
                color=f"C{names.index(name) % 10}", capsize=3, markersize=4,
            )  # fmt: skip
        if key in reference:
            ax.axvline(reference[key], color="black", linestyle="--", linewidth=1)
        if not any(key in rows[name] for name in names):  # e.g. a horizon too thin to probe
            ax.text(0.5, 0.5, "n/a", transform=ax.transAxes, ha="center", va="center",
                    backgroundcolor="white")  # fmt: skip
        ax.set_title(textwrap.fill(label, 32), fontsize="small")
        ax.grid(alpha=0.3, axis="x")
        ax.tick_params(labelsize="x-small")
    for ax in axes[len(columns) :]:
        ax.set_visible(False)
    axes[0].set_yticks(ys, names)
    fig.suptitle(title)
    return fig


def plot_intervals(
    rows: dict[str, dict[str, tuple[float, float, float]]],
    columns: dict[str, str],
    path: str | Path,
    title: str,
    reference: dict[str, float] | None = None,
) -> Path:
    """`intervals_figure` written as a PNG at `path`."""
    return save_figure(intervals_figure(rows, columns, title, reference), path)


def time_to_maneuver_figure(
    horizons: list[float],
    rows: dict[str, list[tuple[float, float, float]]],
    title: str,
    chance: float = 0.5,
) -> Figure:
    """Balanced accuracy of maneuver vs keep lane by seconds from the NOW window's end to the
    maneuver's onset: one line per row (value, low, high per horizon) with its interval shaded,
    chance dashed. Time runs left to right towards the onset; a nan point leaves a gap."""
    hx = np.asarray(horizons, dtype=np.float64)
    if hx.ndim != 1 or len(hx) == 0 or not rows:
        raise ValueError(f"need horizons and rows, got {len(hx)} horizons and {len(rows)} rows")
    order = np.argsort(hx)
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.subplots()
    shade = 0.2 if len(rows) <= 5 else 0.07  # many overlapping bands would hide the lines
    for i, (name, points) in enumerate(rows.items()):
        v = np.asarray(points, dtype=np.float64)
        if v.shape != (len(hx), 3):
            raise ValueError(f"row {name!r} has {len(v)} points for {len(hx)} horizons")
        colour = f"C{i % 10}"  # the row's colour in `intervals_figure` too
        style = {"marker": "osD^"[i // 10 % 4], "linestyle": ("-", "--", ":", "-.")[i // 10 % 4]}
        ax.plot(hx[order], v[order, 0], markersize=4, color=colour, label=str(name), **style)
        ax.fill_between(hx[order], v[order, 1], v[order, 2], color=colour, alpha=shade, linewidth=0)
    ax.axhline(chance, color="black", linestyle="--", linewidth=1, label=f"chance {chance:.2f}")
    ax.set_xticks(hx[order])
    ax.invert_xaxis()
    ax.set_xlabel("seconds from the end of NOW to the maneuver's onset")
    ax.set_ylabel("balanced accuracy")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    return fig


def plot_time_to_maneuver(
    horizons: list[float],
    rows: dict[str, list[tuple[float, float, float]]],
    path: str | Path,
    title: str,
) -> Path:
    """`time_to_maneuver_figure` written as a PNG at `path`."""
    return save_figure(time_to_maneuver_figure(horizons, rows, title), path)


def trailing_mean(values: Any, window: int) -> np.ndarray:
    """Mean of each value and the `window - 1` before it (fewer at the start), as TensorBoard
    smooths: a point never averages steps logged after it."""
    if window < 1:
        raise ValueError(f"smoothing window {window} must be >= 1 (1: no smoothing)")
    v = np.asarray(values, dtype=np.float64)
    sums = np.concatenate([[0.0], np.cumsum(v)])
    end = np.arange(1, len(v) + 1)
    start = np.maximum(end - window, 0)
    return (sums[end] - sums[start]) / (end - start)


def curves_figure(records: list[dict], keys: list[str], title: str, smooth: int = 1) -> Figure:
    """One panel per metric over training steps, from metrics.jsonl records (`step` + values);
    a record without a key (logged on other steps, e.g. the eval hook's) is skipped, and a key
    no record holds is left out with a warning (an error when none is found). `smooth` > 1
    draws `trailing_mean` over that many logged points, the raw line faint behind it."""
    if not keys:
        raise ValueError("keys is empty: name the metrics to draw (e.g. target_std)")
    if smooth < 1:
        raise ValueError(f"smooth={smooth} must be >= 1 (1: the raw values only)")
    known = sorted({k for r in records for k in r} - {"step"})
    found = [k for k in keys if k in known]
    missing = [k for k in keys if k not in known]
    if not found:
        raise ValueError(f"no record holds {missing}; logged metrics: {', '.join(known)}")
    if missing:
        logger.warning("skipped %s: never logged; logged metrics: %s", missing, ", ".join(known))
    fig = Figure(figsize=(4.0 * len(found), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(found)))
    for ax, key in zip(axes, found, strict=True):
        steps, values = zip(*[(r["step"], r[key]) for r in records if key in r], strict=True)
        marker = "o" if len(steps) < 30 else None
        if smooth > 1:
            ax.plot(steps, values, color="C0", alpha=0.3, linewidth=1, label="logged")
            mean = trailing_mean(values, smooth)
            ax.plot(steps, mean, color="C0", label=f"mean of last {smooth}")
            ax.legend(fontsize="x-small")
        else:
            ax.plot(steps, values, color="C0", marker=marker, markersize=3)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.set_title(key)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return fig


def plot_curves(
    records: list[dict], keys: list[str], path: str | Path, title: str, smooth: int = 1
) -> Path:
    """`curves_figure` written as a PNG at `path`."""
    return save_figure(curves_figure(records, keys, title, smooth), path)
