"""Inference over a whole video: slide the training windows along it and summarize each one.

Why: a trained model is used on real drives, not on single clips. A video is cut into
NOW | SOON | (gap) | EVENTUALLY windows exactly as training cuts it (`data.fps`, `clip.*_frames`,
`data.gap_s`, a stride of `data.stride_s` unless given), each window decoded with `data.backend`
and centre-cropped to `clip.image_size` (the evaluation view), and encoded in batches. Windows
are decoded one batch at a time, so a long video never sits in memory. Per window it keeps the
EVENTUALLY embedding, the mean NOW token, a cheap SOON summary and, when a probe is attached to
the model (`model.probe` + `model.label_names`), outcome probabilities; consecutive EVENTUALLY
embeddings are compared so that a drop in similarity marks a change of the predicted outcome.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from tritemporal.config import TriTemporalConfig
from tritemporal.data.decode import BadVideo, VideoDecodeError, VideoMeta, probe_video, read_frames
from tritemporal.data.transforms import ClipTransform
from tritemporal.data.videos import label_vocabulary
from tritemporal.data.windows import WindowSpec, native_indices, window_starts

if TYPE_CHECKING:
    from tritemporal.model import TriTemporalModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoWindows:
    """The windows of one video, cut as training cuts them, and their evaluation views."""

    path: Path
    meta: VideoMeta
    spec: WindowSpec
    starts: np.ndarray  # (W,) window start times in seconds
    backend: str
    transform: ClipTransform

    @classmethod
    def open(
        cls, config: TriTemporalConfig, video: str | Path, stride_s: float | None = None
    ) -> VideoWindows:
        """Probe `video` and lay out its windows; clear errors for missing or short files."""
        path = Path(video)
        if not path.is_file():
            raise FileNotFoundError(f"video {path} does not exist (or is not a file)")
        spec = WindowSpec.from_config(config)
        if stride_s is not None:
            if not stride_s > 0:
                raise ValueError(f"stride_s={stride_s} must be positive")
            spec = dataclasses.replace(spec, stride_s=float(stride_s))
        try:
            meta = probe_video(path)
        except BadVideo as exc:
            raise ValueError(f"video {path} is unreadable: {exc}") from exc
        if not meta.fps > 0:
            raise ValueError(f"video {path} has no frame rate (fps={meta.fps}); re-encode it")
        starts = window_starts(meta.duration, spec)
        if len(starts) == 0:
            raise ValueError(
                f"video {path} is too short: {meta.duration:.2f} s ({meta.frames} frames at "
                f"{meta.fps:g} fps), but one window spans {spec.span_s:.2f} s (NOW "
                f"{spec.now_frames} + SOON {spec.soon_frames} frames, gap {spec.gap_s:g} s, "
                f"EVENTUALLY {spec.eventually_frames} frames at data.fps={spec.fps:g})"
            )
        transform = ClipTransform.from_config(config, label_vocabulary(config.data.extra_maneuvers))
        return cls(path, meta, spec, starts, config.data.backend, transform)

    def __len__(self) -> int:
        """Number of windows."""
        return len(self.starts)

    def clip(self, index: int) -> torch.Tensor:
        """Window `index` as the uint8 (C, T, H, W) evaluation view (centre crop)."""
        start = float(self.starts[index])
        frames_at = native_indices(self.spec.frame_times(start), self.meta.fps, self.meta.frames)
        try:
            frames = read_frames(self.path, frames_at, self.backend)
        except VideoDecodeError as exc:
            raise ValueError(f"{exc} (window at {start:.2f} s)") from exc
        return self.transform(frames, None)[0]

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """(start times, uint8 clips (B, C, T, H, W)) per batch, decoded only when reached."""
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        for first in range(0, len(self), batch_size):
            indices = range(first, min(first + batch_size, len(self)))
            yield self.starts[first : indices.stop], torch.stack([self.clip(i) for i in indices])


@torch.no_grad()
def encode_video(
    model: TriTemporalModel, video: str | Path, stride_s: float | None = None, batch_size: int = 8
) -> dict[str, torch.Tensor]:
    """`model.encode` of every window of a video, windows leading, plus "time" (start s)."""
    windows = VideoWindows.open(model.config, video, stride_s)
    device = model.pixel_mean.device
    parts: dict[str, list[torch.Tensor]] = {}
    for _, clips in windows.batches(batch_size):
        for key, value in model.encode(clips.to(device)).items():
            parts.setdefault(key, []).append(value)
    out = {key: torch.cat(values) for key, values in parts.items()}
    out["time"] = torch.from_numpy(windows.starts.copy()).to(device)
    return out


def predict_video(
    model: TriTemporalModel,
    video: str | Path,
    stride_s: float | None = None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
) -> dict[str, np.ndarray]:
    """Slide over a whole video: per-window time, EVENTUALLY embedding, mean NOW feature, SOON
    forecast summary, and outcome probabilities when a probe is attached.

    Moves `model` to `device` and puts it in eval mode. Returns numpy arrays: `time` (W,),
    `eventually` (W, E), `now_mean` (W, D), `soon_norm` (W,), `outcome_similarity` (W-1,),
    with a probe `probs` (W, C) and `label_names` (C,), and `meta` (a JSON string).
    """
    device = _resolve_device(device)
    model.to(device).eval()
    windows = VideoWindows.open(model.config, video, stride_s)
    probe, names = getattr(model, "probe", None), getattr(model, "label_names", None)
    use_probe = probe is not None and names is not None
    if use_probe:
        probe.to(device).eval()
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
            if use_probe:
                summary["probs"] = probe(eventually).float().softmax(dim=-1)
            for key, value in summary.items():
                parts.setdefault(key, []).append(value.cpu().numpy())
    result = {key: np.concatenate(values) for key, values in parts.items()}
    unit = F.normalize(torch.from_numpy(result["eventually"]), dim=-1)
    result["outcome_similarity"] = (unit[1:] * unit[:-1]).sum(dim=-1).numpy()
    result["time"] = windows.starts.astype(np.float64)
    if use_probe:
        names = [str(name) for name in names]
        if result["probs"].shape[1] != len(names):
            raise ValueError(
                f"model.probe gives {result['probs'].shape[1]} classes but model.label_names "
                f"has {len(names)}"
            )
        result["label_names"] = np.array(names)
    result["meta"] = np.array(json.dumps(_meta(model.config, windows)))
    return result


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


def _resolve_device(device: str | torch.device) -> torch.device:
    """`auto` -> CUDA when available; explicit devices are checked like training's."""
    if isinstance(device, torch.device):
        return device
    from tritemporal.train import resolve_device

    return resolve_device(device)


def read_meta(result: dict) -> dict:
    """The JSON `meta` entry of a result or a loaded .npz file as a dict ({} when absent)."""
    return json.loads(str(result["meta"])) if "meta" in result else {}


def save_predictions(result: dict, path: str | Path) -> Path:
    """Write `result` to a compressed .npz (with its JSON `meta`); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {key: np.asarray(value) for key, value in result.items()}
    arrays.setdefault("meta", np.array("{}"))
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:  # a file handle: numpy keeps the name as given
        np.savez_compressed(handle, **arrays)
    os.replace(tmp, path)
    return path


def plot_timeline(result: dict, path: str | Path) -> Path:
    """PNG timeline: EVENTUALLY principal components, outcome similarity, class probabilities."""
    try:
        from matplotlib.figure import Figure  # no pyplot: no display, no global backend
    except ImportError:
        raise ImportError("plot_timeline needs matplotlib: pip install matplotlib") from None
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
