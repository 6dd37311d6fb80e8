"""Inference over a whole video: slide the training windows along it and summarize each one.

Why: a trained model is used on real drives, not on single clips. A video is cut into
NOW | SOON | (gap) | EVENTUALLY windows exactly as training cuts it (`data.fps`, `clip.*_frames`,
`data.gap_s`, a stride of `data.stride_s` unless given), each window decoded with `data.backend`
and centre-cropped to `clip.image_size` (the evaluation view), and encoded in batches. Windows
are decoded one batch at a time, so a long video never sits in memory. Per window it keeps the
EVENTUALLY embedding, the mean NOW token, a cheap SOON summary and, given a `LinearProbe` (the
one `tritemporal eval` fits and saves), outcome probabilities; consecutive EVENTUALLY
embeddings are compared so that a drop in similarity marks a change of the predicted outcome.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure  # no pyplot: no display, no global backend

from tritemporal.config import TriTemporalConfig
from tritemporal.data.video_windows import VideoWindows
from tritemporal.files import atomic_path
from tritemporal.heads.probe import LinearProbe
from tritemporal.model import TriTemporalModel
from tritemporal.runtime import resolve_device

log = logging.getLogger(__name__)


def predict_video(
    model: TriTemporalModel,
    video: str | Path,
    stride_s: float | None = None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    probe: LinearProbe | None = None,
) -> dict[str, np.ndarray]:
    """Slide over a whole video: per-window time, EVENTUALLY embedding, mean NOW feature, SOON
    forecast summary, and outcome probabilities when given a probe.

    Moves `model` (and `probe`) to `device` and puts it in eval mode. Returns numpy arrays:
    `time` (W,), `eventually` (W, E), `now_mean` (W, D), `soon_norm` (W,), `outcome_similarity`
    (W-1,), with a probe `probs` (W, C) and `label_names` (C,), and `meta` (a JSON string).
    """
    device = resolve_device(device)
    model.to(device).eval()
    if probe is not None:
        _check_probe(probe, model.config)
        probe.to(device).eval()
    windows = VideoWindows.open(model.config, video, stride_s)
    log.info(
        "%s: %d windows of %.2f s every %g s", windows.path, len(windows), windows.spec.span_s,
        windows.spec.stride_s,
    )  # fmt: skip
    parts: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for _, clips in windows.batches(batch_size):
            out = model.encode(clips.to(device))
            eventually = out["eventually"].float()
            summary = {
                "eventually": eventually,
                "now_mean": out["now"].float().mean(dim=1),
                "soon_norm": out["soon"].float().norm(dim=-1).mean(dim=-1),
            }
            if probe is not None:
                summary["probs"] = probe(eventually).softmax(dim=-1)
            for key, value in summary.items():
                parts.setdefault(key, []).append(value.cpu().numpy())
    result = {key: np.concatenate(values) for key, values in parts.items()}
    unit = F.normalize(torch.from_numpy(result["eventually"]), dim=-1)
    result["outcome_similarity"] = (unit[1:] * unit[:-1]).sum(dim=-1).numpy()
    result["time"] = windows.starts.astype(np.float64)
    if probe is not None:
        result["label_names"] = np.array(probe.label_names)
    result["meta"] = np.array(json.dumps(_meta(model.config, windows)))
    return result


def _check_probe(probe: LinearProbe, config: TriTemporalConfig) -> None:
    """A ValueError when the probe takes embeddings of another size than the model's."""
    if probe.embed_dim != config.outcome.out_dim:
        raise ValueError(
            f"the probe takes {probe.embed_dim}-dim EVENTUALLY embeddings but this model's are "
            f"{config.outcome.out_dim}-dim (outcome.out_dim): use the probe that `tritemporal "
            "eval` saved for this checkpoint"
        )


def _meta(config: TriTemporalConfig, windows: VideoWindows) -> dict:
    """What a prediction file needs to be read without the model: video, timing, model."""
    s, m = windows.spec, windows.meta
    return {
        "video": str(windows.path),
        "fps": s.fps,
        "windows": len(windows),
        "stride_s": s.stride_s,
        "span_s": s.span_s,
        "gap_s": s.gap_s,
        "frames": {"now": s.now_frames, "soon": s.soon_frames, "eventually": s.eventually_frames},
        "video_fps": m.fps,
        "video_duration_s": m.duration,
        "image_size": list(config.clip.hw),
        "backend": windows.backend,
        "model": config.backbone.name,
    }


def read_meta(result: dict) -> dict:
    """The JSON `meta` entry of a result or a loaded .npz file as a dict ({} when absent)."""
    return json.loads(str(result["meta"])) if "meta" in result else {}


def save_predictions(result: dict, path: str | Path) -> Path:
    """Write `result` to a compressed .npz (with its JSON `meta`); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {key: np.asarray(value) for key, value in result.items()}
    arrays.setdefault("meta", np.array("{}"))
    with atomic_path(path) as tmp, tmp.open("wb") as handle:  # a handle: numpy adds no .npz
        np.savez_compressed(handle, **arrays)
    return path


def plot_timeline(result: dict, path: str | Path) -> Path:
    """PNG timeline: EVENTUALLY principal components, outcome similarity, class probabilities."""
    path = Path(path)
    time = np.asarray(result["time"], dtype=np.float64)
    eventually = np.asarray(result["eventually"], dtype=np.float64)
    similarity = np.asarray(result["outcome_similarity"], dtype=np.float64)
    probs = result.get("probs")
    meta = read_meta(result)
    panels = 3 if probs is not None else 2
    fig = Figure(figsize=(11, 2.4 * panels + 0.8), layout="constrained")
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    marker = "o" if len(time) <= 60 else None

    components, explained = _principal_components(eventually, 3)
    for k in range(components.shape[1]):
        label = f"PC{k + 1} ({explained[k]:.0%})"
        axes[0].plot(time, components[:, k], marker=marker, markersize=3, label=label)
    axes[0].set_ylabel("EVENTUALLY\n(principal comp.)")
    if components.shape[1]:
        axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    else:
        axes[0].text(
            0.5, 0.5, "needs 2+ distinct windows", ha="center", transform=axes[0].transAxes
        )

    if len(similarity):
        axes[1].plot(time[1:], similarity, color="tab:red", marker=marker, markersize=3)
    low = float(similarity.min(initial=1.0))
    pad = max(0.005, 0.1 * (1.0 - low))  # zoom on the range used: small drops stay visible
    axes[1].set_ylim(low - pad, 1.0 + pad)
    axes[1].axhline(1.0, color="grey", linewidth=0.5)
    axes[1].set_ylabel("cos(EV(t), EV(t-1))\ndrop = outcome change")

    if probs is not None:
        probs = np.asarray(probs, dtype=np.float64)
        names = [str(n) for n in result.get("label_names", range(probs.shape[1]))]
        axes[2].stackplot(time, probs.T, labels=names, alpha=0.85)
        axes[2].set_ylim(0.0, 1.0)
        axes[2].set_ylabel("outcome\nprobability")
        axes[2].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")

    axes[-1].set_xlabel("window start (s)")
    for ax in axes:
        ax.grid(alpha=0.3)
    name = Path(meta.get("video", "video")).name
    stride = meta.get("stride_s")
    detail = f"{len(time)} window{'s' * (len(time) != 1)}" + (
        f", every {stride:g} s" if stride else ""
    )
    fig.suptitle(f"{name}: NOW -> EVENTUALLY timeline ({detail})")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, format="png")
    return path


def _principal_components(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Projection of rows of `x` (W, E) on its first <= k principal axes, and variance shares."""
    centred = x - x.mean(axis=0, keepdims=True)
    if len(x) < 2 or not np.any(centred):
        return centred[:, :0], np.zeros(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(k, len(s))
    variance = s**2
    return centred @ vt[:k].T, variance[:k] / variance.sum()
