"""`tritemporal eval`: does the model see NOW, foresee SOON and sense EVENTUALLY?

On held-out clips (a videos folder with annotations), with every network frozen:

- EVENTUALLY: the outcome embedding -> eventual maneuver, by a cross-validated linear probe and
  a cosine kNN (k=20); compared with the same probes on mean-pooled NOW features of the same
  checkpoint and on a randomly initialised model of the same architecture.
- SOON: L1 and cosine distance of the predictor's forecast to the teacher's layer-normed SOON
  tokens per future tubelet step, against copying the last NOW step forward and against the
  mean NOW token. Both baselines come from the teacher's pass over the NOW frames alone: in its
  pass over the whole clip attention mixes the future into the NOW tokens, and a copy of those
  has seen what it is scored on (`TriTemporalModel.present_targets`).
- NOW: an attentive probe (learned queries, cross-attention, linear head) on the frozen NOW
  tokens for present-state labels from the annotations (ego speed tertile, ego lane).
- Collapse: RankMe and per-dimension std of NOW features and outcome embeddings.

With an output folder it also fits the EVENTUALLY linear probe on every labelled window and saves
it there (`heads.probe.PROBE_WEIGHTS` + `PROBE_CONFIG`) for `tritemporal predict --probe`.
`summary_table` turns a report into the few lines `tritemporal eval` prints.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tritemporal.config import TriTemporalConfig
from tritemporal.data.common import UNLABELLED
from tritemporal.data.frame_cache import attach_frame_cache
from tritemporal.data.videos import VideoClips
from tritemporal.eval.metrics import feature_stats
from tritemporal.eval.plots import plot_bars, plot_confusion, plot_horizon, plot_projection
from tritemporal.eval.probes import (
    AttentiveProbeSpec,
    Progress,
    attentive_probe_cv,
    fit_linear_probe,
    fold_count,
    knn_probe_cv,
    linear_probe_cv,
    usable_classes,
)
from tritemporal.eval.progress import phase
from tritemporal.heads.probe import PROBE_CONFIG, PROBE_WEIGHTS, LinearProbe
from tritemporal.loader import stack_signals
from tritemporal.model import TriTemporalModel

logger = logging.getLogger(__name__)

REPORT_FILE = "report.json"

# Readable names of the feature sets each EVENTUALLY probe runs on (report keys -> table, plot).
FEATURE_NAMES = {
    "outcome": "outcome embedding",
    "now_mean": "mean NOW features",
    "random_init_outcome": "random-init outcome embedding",
    "random_init_now_mean": "random-init mean NOW features",
}


@dataclasses.dataclass
class Features:
    """Frozen features of every evaluation window."""

    outcome: np.ndarray  # (N, E)
    now_mean: np.ndarray  # (N, D)
    now_tokens: np.ndarray  # (N, H*W, D): the last NOW tubelet step's tokens, the present
    labels: np.ndarray  # (N,) eventual maneuver ids, -1 unlabelled
    groups: np.ndarray | None  # (N,) video of each window: probes hold whole videos out
    signals: dict[str, np.ndarray]  # name -> (N,) value at the last NOW frame
    soon: dict[str, np.ndarray]  # "model_l1", "copy_l1", ... -> (S,) mean over windows
    soon_windows: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # -> (N, S) L1
    paths: list[str] | None = None  # (N,) video key of each window (dataset samples' "path")
    times: np.ndarray | None = None  # (N,) start of each window in seconds

    def groups_at(self, keep: np.ndarray) -> np.ndarray | None:
        """The video of each kept window, or None when the dataset has no videos to group by."""
        return None if self.groups is None else self.groups[keep]


def _one_video(groups: np.ndarray | None) -> bool:
    """True when every window comes from one video: no fold can hold a video out."""
    return groups is not None and len(np.unique(groups)) < 2


def eval_dataset(config: TriTemporalConfig, data: str | Path) -> VideoClips:
    """Held-out windows of a videos folder, cut like training, evaluation view (centre crop),
    labelled by every annotated event (the truth, whichever events the run trained on)."""
    data_config = dataclasses.replace(
        config.data, source="videos", root=str(data), hflip=False, label_events="all"
    )
    return VideoClips(dataclasses.replace(config, data=data_config), train=False)


def frames_in_memory(dataset: VideoClips, config: TriTemporalConfig) -> None:
    """Decode the held-out videos once into memory as `data.cache` allows (frame_cache.py):
    overlapping windows then slice frames instead of seeking and decoding each (10x faster
    reading of the 64x128 simulator clips on 2 cores); the frames read are the same."""
    # on_cpu=True: extract reads in a thread, never in loader worker processes
    decision = attach_frame_cache(dataset, config, on_cpu=True)
    logger.info("held-out frames: %s", decision.summary)


def extract(
    model: TriTemporalModel,
    dataset,
    batch_size: int = 16,
    max_samples: int = 0,
    progress: Progress | None = None,
    forecast: bool = True,
) -> Features:
    """Run the frozen model over the dataset once, keeping features and (with `forecast`)
    SOON errors."""
    return extract_many([model], dataset, batch_size, max_samples, [forecast], progress)[0]


@torch.no_grad()
def extract_many(
    models: Sequence[TriTemporalModel],
    dataset,
    batch_size: int = 16,
    max_samples: int = 0,
    forecasts: Sequence[bool] | None = None,
    progress: Progress | None = None,
) -> list[Features]:
    """`extract` for several models in one pass: each window is decoded once (the next batch
    in a background thread while this one is encoded). `forecasts[i]` False skips model i's
    SOON forecast and teacher passes (its `soon` stays empty): a reference needs its features
    only. `progress` is called with the windows of each batch."""
    forecasts = [True] * len(models) if forecasts is None else list(forecasts)
    if len(forecasts) != len(models):
        raise ValueError(f"{len(models)} models but {len(forecasts)} forecast flags")
    n = len(dataset) if max_samples <= 0 else min(max_samples, len(dataset))
    parts: list[dict[str, list]] = [{} for _ in models]
    labels, paths, times, signals = [], [], [], {}
    last_now = models[0].config.clip.now_frames - 1
    for samples in decoded_batches(dataset, n, batch_size):
        for model, forecast, kept in zip(models, forecasts, parts, strict=True):
            for key, value in _encode_batch(model, samples, forecast).items():
                kept.setdefault(key, []).append(value)
        for sample in samples:
            labels.append(int(sample["label"]))
            paths.append(str(sample.get("path", "")))
            times.append(float(sample.get("time", float("nan"))))
            for key, series in sample.get("signals", {}).items():
                signals.setdefault(key, []).append(float(series[last_now]))
        if progress is not None:
            progress(len(samples))
    complete = {k: np.array(v) for k, v in signals.items() if len(v) == n}
    video_ids = getattr(dataset, "video_ids", None)
    groups = None if video_ids is None else np.asarray(video_ids)[:n]
    shared = {"labels": np.array(labels, dtype=np.int64), "groups": groups, "signals": complete}
    shared |= {"paths": paths, "times": np.array(times)}
    features = []
    for kept in parts:
        arrays = {k: np.concatenate(v) for k, v in kept.items()}
        soon_windows = {k: arrays.pop(k) for k in list(arrays) if k.endswith("_l1")}
        soon = {k: v.mean(axis=0, dtype=np.float64) for k, v in soon_windows.items()}
        cosines = [k for k in arrays if k.endswith("_cos")]
        soon |= {k: arrays.pop(k).mean(axis=0, dtype=np.float64) for k in cosines}
        features.append(Features(**arrays, **shared, soon=soon, soon_windows=soon_windows))
    return features


def decoded_batches(dataset, n: int, batch_size: int) -> Iterator[list[dict]]:
    """The first `n` samples in batches, the next batch decoded in a background thread while
    the caller encodes this one (the decoders release the GIL); a decode error is raised here."""

    def load(start: int) -> list[dict]:
        return [dataset[i] for i in range(start, min(n, start + batch_size))]

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as pool:
        pending = pool.submit(load, 0) if n else None
        for start in range(0, n, batch_size):
            assert pending is not None
            samples = pending.result()
            following = start + batch_size
            pending = pool.submit(load, following) if following < n else None
            yield samples


def _encode_batch(
    model: TriTemporalModel, samples: list[dict], forecast: bool
) -> dict[str, np.ndarray]:
    """One batch of windows through a frozen model: features, and with `forecast` the SOON
    forecast's and both baselines' L1 (B, S) and cosine distance (B, S) to the teacher."""
    c = model.config.clip
    now_steps, soon_steps, _ = c.slices
    hw = c.grid[1] * c.grid[2]
    video = torch.stack([s["video"] for s in samples]).to(model.pixel_mean.device)
    actions = None
    if forecast and model.action is not None:  # conditioned on the window's own actions
        actions = stack_signals(samples, model.action.signals)[:, c.action_rows]
        actions = actions.to(video.device)
    out = model.encode(video, actions=actions, forecast=forecast)
    b = video.shape[0]
    now = out["now"].float()
    parts = {
        "outcome": out["eventually"].float(),
        "now_mean": now.mean(dim=1),
        "now_tokens": now.view(b, now_steps, hw, -1)[:, -1],
    }
    if forecast:
        clips = model.normalize(video)
        targets = model.teacher_targets(clips)  # (B, N, D): SOON targets as training sets them
        d = targets.shape[-1]
        now_t = model.present_targets(clips).view(b, now_steps, hw, d)  # baselines: NOW alone
        soon_t = targets[:, model.soon_idx[0]].view(b, soon_steps, hw, d)
        guesses = {
            "model": out["soon"].float().view(b, soon_steps, hw, d),
            "copy": now_t[:, -1:].expand_as(soon_t),
            "mean": now_t.mean(dim=(1, 2), keepdim=True).expand_as(soon_t),
        }
        for name, guess in guesses.items():
            parts[f"{name}_l1"] = (guess - soon_t).abs().mean(dim=(2, 3))  # (B, S)
            parts[f"{name}_cos"] = (1 - F.cosine_similarity(guess, soon_t, dim=-1)).mean(dim=2)
    return {k: v.cpu().numpy() for k, v in parts.items()}


def random_init_copy(model: TriTemporalModel, seed: int) -> TriTemporalModel:
    """The same architecture with every parameter re-initialised (pretrained weights dropped)."""
    fresh = copy.deepcopy(model)
    torch.manual_seed(seed)
    for module in fresh.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    fresh.sync_teacher()
    return fresh.eval()


def _probes(
    x: np.ndarray,
    y: np.ndarray,
    names: list[str],
    seed: int,
    groups: np.ndarray | None,
    progress: Progress | None = None,
) -> dict:
    """Linear and kNN probes on features x of labelled windows, or why they were skipped
    (`progress` counts the linear probe's folds)."""
    if _one_video(groups):
        return {"skipped": "windows of one video only: held-out folds need 2+ videos"}
    if len(set(y.tolist())) < 2:
        return {"skipped": "fewer than two maneuver classes with at least two windows"}
    return {
        "linear": linear_probe_cv(x, y, names, seed=seed, groups=groups, progress=progress),
        "knn": knn_probe_cv(x, y, names, k=20, seed=seed, groups=groups),
    }


def _labelled(features: Features) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Mask of windows with a maneuver whose class has 2+ windows, their labels and groups."""
    keep = (features.labels != UNLABELLED) & usable_classes(features.labels, 2)
    return keep, features.labels[keep], features.groups_at(keep)


def eventually_report(
    features: Features, random: Features, names: list[str], seed: int, device: torch.device
) -> dict:
    """Outcome embeddings vs mean NOW features vs a random-init model, with the same probes."""
    keep, y, groups = _labelled(features)
    sets = {
        "outcome": features.outcome,
        "now_mean": features.now_mean,
        "random_init_outcome": random.outcome,
        "random_init_now_mean": random.now_mean,
    }
    probed = len(set(y.tolist())) >= 2 and not _one_video(groups)
    folds = fold_count(y, groups=groups) if probed else 0
    with phase("EVENTUALLY probes", len(sets) * folds, "folds", device) as advance:
        return {name: _probes(x[keep], y, names, seed, groups, advance) for name, x in sets.items()}


def now_tasks(features: Features) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Present-state labels of every window from its ego signals: name -> (class ids, names)."""
    tasks = {}
    if "speed" in features.signals:
        speed = features.signals["speed"]
        edges = np.quantile(speed, [1 / 3, 2 / 3])
        tasks["ego_speed_tertile"] = (np.digitize(speed, edges), ["slow", "medium", "fast"])
    if "lane" in features.signals:
        lane = np.round(features.signals["lane"]).astype(int)
        values = sorted(set(lane.tolist()))
        tasks["ego_lane"] = (np.searchsorted(values, lane), [f"lane_{v}" for v in values])
    return tasks


def now_report(features: Features, seed: int, device: torch.device) -> dict:
    """Attentive probes for present-state labels found in the annotations."""
    report = {}
    spec = AttentiveProbeSpec()
    for name, (y, labels) in now_tasks(features).items():
        keep = usable_classes(y, 2)
        if len(set(y[keep].tolist())) < 2:
            continue
        tokens = features.now_tokens[keep]
        groups = features.groups_at(keep)
        if _one_video(groups):
            continue
        epochs = fold_count(y[keep], groups=groups) * spec.epochs
        with phase(f"NOW probe {name}", epochs, "epochs", device) as advance:
            report[name] = attentive_probe_cv(
                tokens, y[keep], labels, seed=seed, groups=groups, spec=spec, progress=advance
            )
    return report


def soon_horizons(config: TriTemporalConfig) -> list[float]:
    """Seconds after NOW ends at the middle of each SOON tubelet step."""
    c = config.clip
    return [round((k + 0.5) * c.tubelet_t / config.data.fps, 3) for k in range(c.slices[1])]


def soon_report(features: Features, config: TriTemporalConfig) -> dict:
    """Forecast error per SOON step (seconds after NOW ends) for the model and both baselines."""
    horizon = soon_horizons(config)

    def pick(key: str) -> list[float]:
        return [round(float(v), 5) for v in features.soon[key]]

    return {
        "horizon_s": horizon,
        **{name: {"l1": pick(f"{name}_l1"), "cosine_distance": pick(f"{name}_cos")}
           for name in ("model", "copy", "mean")},
    }  # fmt: skip


def evaluate(
    model: TriTemporalModel,
    data: str | Path | VideoClips,
    out_dir: str | Path | None = None,
    seed: int = 0,
    batch_size: int = 16,
    max_samples: int = 0,
    full: bool = True,
) -> dict:
    """The whole report (written with its PNG plots and fitted EVENTUALLY probe when `out_dir`
    is given); `full=False` skips the random-init baseline and the NOW attentive probes (the
    fast training-time hook)."""
    if isinstance(data, str | Path):
        dataset = eval_dataset(model.config, data)
        frames_in_memory(dataset, model.config)
    else:  # the caller's dataset, read as the caller set it up
        dataset = data
    names = list(dataset.label_names)
    if full:  # the random-init reference's features in the same pass (no SOON: not reported)
        device = model.pixel_mean.device
        n = len(dataset) if max_samples <= 0 else min(max_samples, len(dataset))
        models = [model, random_init_copy(model, seed)]
        with phase("extract features", n, "windows", device) as advance:
            features, random = extract_many(
                models, dataset, batch_size, max_samples, [True, False], advance
            )
    else:  # the training-time hook: quiet, on the threads the training loop set
        features = extract(model, dataset, batch_size, max_samples)
    report = {
        "data": str(getattr(data, "root", data)),
        "samples": len(features.labels),
        "split": "stratified folds" if features.groups is None else "stratified folds by video",
        "label_counts": {
            n: int((features.labels == i).sum())
            for i, n in enumerate(names)
            if (features.labels == i).any()
        },
        "soon": soon_report(features, model.config),
        "collapse": {
            "now": feature_stats(features.now_mean),
            "outcome": feature_stats(features.outcome),
        },
    }
    if full:
        report["eventually"] = eventually_report(features, random, names, seed, device)
        report["now"] = now_report(features, seed, device)
        report["collapse"]["random_init_outcome"] = feature_stats(random.outcome)
    else:
        keep, y, groups = _labelled(features)
        report["eventually"] = {"outcome": _probes(features.outcome[keep], y, names, seed, groups)}
    if out_dir is not None:
        probe = None
        if "linear" in report["eventually"]["outcome"]:  # the probe whose score the report gives
            keep, y, _ = _labelled(features)
            fingerprint = model.outcome_fingerprint()  # predict checks it is the same model
            probe = fit_linear_probe(features.outcome[keep], y, names, seed, fingerprint)
        write_report(report, features, names, Path(out_dir), probe)
    return report


def write_report(
    report: dict, features: Features, names: list[str], out: Path, probe: LinearProbe | None
) -> None:
    """report.json, the EVENTUALLY probe (stale probe files removed when there is none) and the
    plots: confusion, 2-D projection, SOON error vs horizon, summary."""
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_FILE).write_text(json.dumps(report, indent=1))
    if probe is not None:
        probe.save(out)
    else:  # a probe left by an earlier run would not match this report
        for name in (PROBE_WEIGHTS, PROBE_CONFIG):
            (out / name).unlink(missing_ok=True)
    ev = {k: v for k, v in report["eventually"].items() if "linear" in v}
    if "outcome" not in ev:
        return
    plot_confusion(
        ev["outcome"]["linear"]["confusion"], names, out / "eventually_confusion.png",
        "EVENTUALLY: linear probe on the outcome embedding (out-of-fold)",
    )  # fmt: skip
    labelled = features.labels != UNLABELLED
    plot_projection(
        features.outcome[labelled], features.labels[labelled], names,
        out / "eventually_projection.png", "Outcome embeddings (PCA) by eventual maneuver",
    )  # fmt: skip
    soon = report["soon"]
    series = {f"{k} (L1)": soon[k]["l1"] for k in ("model", "copy", "mean")}
    plot_horizon(
        soon["horizon_s"], series, out / "soon_error.png",
        "SOON: forecast error vs horizon", "L1 to teacher targets",
    )  # fmt: skip
    bars = {
        FEATURE_NAMES.get(name, name): {p: ev[name][p]["balanced_accuracy"] for p in ev[name]}
        for name in ev
    }
    chance = ev["outcome"]["linear"]["chance_balanced"]
    title = f"EVENTUALLY probes on unseen videos (chance {chance:.2f})"
    plot_bars(bars, out / "eventually_accuracy.png", title, "balanced accuracy", chance)


def hook_scalars(report: dict) -> dict[str, float]:
    """The few numbers the training-time hook logs (metrics.jsonl and TensorBoard)."""
    outcome = report["eventually"]["outcome"]
    soon, collapse = report["soon"], report["collapse"]
    scalars = {}
    if "linear" in outcome:
        scalars = {
            "eval/outcome_linear_acc": outcome["linear"]["accuracy"],
            "eval/outcome_linear_macro_f1": outcome["linear"]["macro_f1"],
            "eval/outcome_linear_balanced_acc": outcome["linear"]["balanced_accuracy"],
            "eval/outcome_knn_acc": outcome["knn"]["accuracy"],
            "eval/chance": outcome["linear"]["chance"],
        }
    return scalars | {
        "eval/soon_l1": float(np.mean(soon["model"]["l1"])),
        "eval/soon_l1_copy_last": float(np.mean(soon["copy"]["l1"])),
        "eval/outcome_rankme": collapse["outcome"]["rankme"],
        "eval/now_rankme": collapse["now"]["rankme"],
    }


def summary_table(report: dict) -> str:
    """The headline numbers of a report as short plain-text tables (what `tritemporal eval`
    prints): EVENTUALLY probes, SOON vs copying the last NOW step, NOW probes, RankMe."""
    counts = ", ".join(f"{name} {n}" for name, n in report["label_counts"].items())
    lines = [f"{report['samples']} windows ({report['split']}): {counts or 'no labels'}"]
    for section in (_eventually_lines, _soon_lines, _now_lines, _rank_lines):
        part = section(report)
        if part:
            lines += ["", *part]
    return "\n".join(lines)


def _eventually_lines(report: dict) -> list[str]:
    """Balanced accuracy of the linear and kNN probe per feature set, with chance."""
    ev = report["eventually"]
    scored = [probes["linear"] for probes in ev.values() if "linear" in probes]
    if not scored:
        return [f"EVENTUALLY probes: skipped ({ev['outcome']['skipped']})"]
    head = f"EVENTUALLY probes, balanced accuracy (chance {scored[0]['chance_balanced']:.2f})"
    rows = [
        [FEATURE_NAMES.get(name, name), *(_accuracy(probes.get(p)) for p in ("linear", "knn"))]
        for name, probes in ev.items()
    ]
    return _table([head, "linear", "kNN"], rows)


def _soon_lines(report: dict) -> list[str]:
    """L1 of the SOON forecast and of copying the last NOW step, per horizon."""
    soon = report["soon"]
    head = ["SOON, L1 to teacher targets", *(f"+{h:g} s" for h in soon["horizon_s"])]
    rows = [
        [label, *(f"{v:.3f}" for v in soon[key]["l1"])]
        for key, label in (("model", "model forecast"), ("copy", "copy last NOW step"))
    ]
    return _table(head, rows)


def _now_lines(report: dict) -> list[str]:
    """Balanced accuracy of each NOW attentive probe and its chance (none in a hook report)."""
    if "now" not in report:
        return []
    if not report["now"]:
        return [
            "NOW attentive probes: none (no speed or lane labels with 2+ classes over 2+ videos)"
        ]
    head = ["NOW attentive probes, balanced accuracy", "probe", "chance"]
    rows = [
        [task, _accuracy(m), f"{m['chance_balanced']:.3f}"] for task, m in report["now"].items()
    ]
    return _table(head, rows)


def _rank_lines(report: dict) -> list[str]:
    """RankMe of each feature set, out of its dimension."""
    names = {"now": "mean NOW features", **FEATURE_NAMES}
    rows = [
        [names.get(name, name), f"{stats['rankme']:.1f}", str(stats["dim"])]
        for name, stats in report["collapse"].items()
    ]
    return _table(["RankMe (effective rank)", "rank", "of dim"], rows)


def _accuracy(probe: dict | None) -> str:
    """A probe's balanced accuracy to 3 decimals, or "-" when it did not run."""
    return "-" if probe is None or "skipped" in probe else f"{probe['balanced_accuracy']:.3f}"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    """Aligned lines: the head, then the rows indented; first column left, the others right."""
    body = [[f"  {row[0]}", *row[1:]] for row in rows]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    lines = []
    for cells in [head, *body]:
        right = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        lines.append("  ".join([cells[0].ljust(widths[0]), *right]))
    return lines
