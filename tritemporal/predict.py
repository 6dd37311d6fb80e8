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

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure  # no pyplot: no display, no global backend

from tritemporal.config import TriTemporalConfig
from tritemporal.data.annotations import AnnotationError, load_annotation
from tritemporal.data.video_files import annotation_of
from tritemporal.data.video_windows import VideoWindows
from tritemporal.data.videos import label_vocabulary
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
    raw_fps: float | None = None,
) -> dict[str, np.ndarray]:
    """Slide over a whole video: per-window time, EVENTUALLY embedding, mean NOW feature, SOON
    forecast summary, and outcome probabilities when given a probe.

    Moves `model` (and `probe`) to `device` and puts it in eval mode. Returns numpy arrays:
    `time` (W,), `eventually` (W, E), `now_mean` (W, D), `soon_norm` (W,), `outcome_similarity`
    (W-1,), with a probe `probs` (W, C) and `label_names` (C,), and `meta` (a JSON string).
    `raw_fps` (default `data.raw_fps`) is the frame rate of a raw .h264/.hevc stream.
    """
    device = resolve_device(device)
    model.to(device).eval()
    if probe is not None:
        _check_probe(probe, model)
        probe.to(device).eval()
    windows = VideoWindows.open(model.config, video, stride_s, raw_fps)
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


def _check_probe(probe: LinearProbe, model: TriTemporalModel) -> None:
    """A ValueError when the probe takes embeddings of another size than the model's, or was
    fitted on another model's embeddings (its recorded fingerprint is not this model's)."""
    config = model.config
    if probe.embed_dim != config.outcome.out_dim:
        raise ValueError(
            f"the probe takes {probe.embed_dim}-dim EVENTUALLY embeddings but this model's are "
            f"{config.outcome.out_dim}-dim (outcome.out_dim): use the probe that `tritemporal "
            "eval` saved for this checkpoint"
        )
    if probe.fingerprint is None:  # an older probe file: LinearProbe.load warned
        return
    ours = model.outcome_fingerprint()
    if probe.fingerprint != ours:
        raise ValueError(
            f"the probe was fitted on another model's EVENTUALLY embeddings (model fingerprint "
            f"{probe.fingerprint}; this model's is {ours}), so its probabilities would not mean "
            "anything here: refit it on this model with `tritemporal eval --checkpoint SOURCE "
            "--data CLIPS --out DIR` (SOURCE: the checkpoint you predict with) and pass --probe DIR"
        )


def _meta(config: TriTemporalConfig, windows: VideoWindows) -> dict:
    """What a prediction file needs to be read without the model: video, timing, model, and
    the video's annotated events when it has an annotation."""
    s, m = windows.spec, windows.meta
    annotation, events = _annotated_events(config, windows.path)
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
        "eventually_range_s": list(s.eventually_range(0.0)),  # window t's outcome: t + [a, b)
        "annotation": None if annotation is None else str(annotation),
        "events": events,
    }


def _annotated_events(config: TriTemporalConfig, video: Path) -> tuple[Path | None, list[dict]]:
    """The video's annotation file (found as training finds it) and its events as dicts
    (maneuver, start, end, source); no events without one or from an unreadable one (warned)."""
    path = annotation_of(video)
    if path is None:
        return None, []
    try:
        annotation = load_annotation(path, label_vocabulary(config.data.extra_maneuvers))
    except AnnotationError as exc:
        log.warning("%s: its events are not drawn", exc)
        return path, []
    return path, [dataclasses.asdict(event) for event in annotation.events]


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


def timeline_figure(result: dict) -> Figure:
    """Timeline: EVENTUALLY principal components, outcome similarity, class probabilities, with
    the video's annotated events shaded at their time and the outcome's offset on the x label."""
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

    names = []
    if probs is not None:
        probs = np.asarray(probs, dtype=np.float64)
        names = [str(n) for n in result.get("label_names", range(probs.shape[1]))]
        axes[2].stackplot(time, probs.T, labels=names, alpha=0.85)
        axes[2].set_ylim(0.0, 1.0)
        axes[2].set_ylabel("outcome\nprobability")
        axes[2].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    _shade_events(axes, meta.get("events", []), names)

    xlabel = "window start t (s)"
    if "eventually_range_s" in meta:
        a, b = meta["eventually_range_s"]
        xlabel += f"; the outcome (EVENTUALLY) of window t is t + {a:g} s to t + {b:g} s"
    if meta.get("events"):
        xlabel += "; shaded: annotated events, at their own time"
    axes[-1].set_xlabel(xlabel)
    for ax in axes:
        ax.grid(alpha=0.3)
    name = Path(meta.get("video", "video")).name
    stride = meta.get("stride_s")
    detail = f"{len(time)} window{'s' * (len(time) != 1)}" + (
        f", every {stride:g} s" if stride else ""
    )
    fig.suptitle(f"{name}: NOW -> EVENTUALLY timeline ({detail})")
    return fig


def _shade_events(axes: np.ndarray, events: list[dict], label_names: list[str]) -> None:
    """Each annotated event as a span on every panel, named on the top one; a maneuver the probe
    knows takes its colour in the probability panel."""
    order = label_names + sorted({e["maneuver"] for e in events} - set(label_names))
    for event in events:
        colour = f"C{order.index(event['maneuver']) % 10}"
        for ax in axes:
            ax.axvspan(event["start"], event["end"], color=colour, alpha=0.15, linewidth=0)
        axes[0].text(
            event["start"], 0.98, event["maneuver"], transform=axes[0].get_xaxis_transform(),
            rotation=90, va="top", ha="right", fontsize="x-small", color=colour,
        )  # fmt: skip


def plot_timeline(result: dict, path: str | Path) -> Path:
    """`timeline_figure` written as a PNG at `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    timeline_figure(result).savefig(path, dpi=110, format="png")
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
