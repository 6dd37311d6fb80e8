"""`tritemporal compare`: several models on the same held-out windows, every number with a 95%
bootstrap interval over held-out videos (the table of the protocol in `docs/evaluation.md`).

Each source is what `TriTemporalModel.from_pretrained` takes (run dir, checkpoint, saved folder,
Hub id) or `random:SOURCE`, a copy of SOURCE's architecture with every weight re-initialised from
`seed` (the random-init reference), or `teacher:RUN`, a run's EMA teacher used as the encoder (the
encoder V-JEPA evaluates and releases). Each source is loaded, encodes the held-out folder once with
its own config's clip settings (`report.eval_dataset`, `report.extract`) and is dropped.
`ego-status` (row `ego_status`) loads no model: the ego-status guard (AD-MLP), whose features are
the NOW frames' own ego series (`anticipation.ego_status_features`), read from the annotations of
the windows the first model source cuts, so it is matched window by window and decodes nothing.

How windows are matched: a window is (video, start time), cut by `data.WindowSpec` (fps, NOW /
SOON / EVENTUALLY frames, gap, stride). Every source must give the same spec, label vocabulary
and window list, else `compare` refuses: rows measured on different windows are not comparable.
Resolution and patch size may differ (each source sees the same windows at its own geometry).

Metrics (per source; the cross-validated probes are fitted once, with folds that hold whole
videos out, and their out-of-fold predictions are kept per window):

- `eventually.{outcome,now_mean}.{balanced_accuracy,macro_f1}`: linear probe of the eventual
  maneuver on the outcome embedding and on mean NOW features;
- `now.<task>.balanced_accuracy`: attentive probes on NOW tokens for ego lane and speed tertile
  and, when the annotations carry `scene` (schema v2), left / right lane state and leader gap
  (no leader, or tertile of the gap) and leader closing speed (no leader, or tertile; a fact of
  motion, which one frame's pixels do not show);
- `now.leader_box.iou` (front-camera clips, whose scene facts carry `leader_box`): the mean IoU
  of the leader's image box regressed linearly from the last NOW step's tokens (`box_probe`);
  its reference in `chance` is the IoU a constant box (the training folds' mean) reaches;
- `soon.l1_over_copy.+<h>s`: SOON forecast L1 over copying the last NOW step, per horizon (< 1:
  better than copying; the copy comes from the teacher's pass over the NOW frames alone);
- `rankme.{now,outcome}`: RankMe (`objectives.losses.effective_rank`) of the features;
- `ttm.+<d>s` (e.g. `ttm.+0.5s`, `ttm.+1s`): time to maneuver, the balanced accuracy of a binary
  linear probe (the EVENTUALLY probe's folds and seed) of "a maneuver starts d seconds after the
  NOW window ends" against "keep lane throughout" (targets: `anticipation.ttm_targets`), on the
  outcome embedding. A horizon with too few windows of either class stays empty (a warning).

The ego-status row fills `eventually.outcome.*` (its ego vector is its outcome) and `ttm.*`; its
other cells stay empty ("-").

Intervals: videos are resampled with replacement (`bootstrap` times, seeded; every source sees
the same resamples) and each metric is recomputed from the kept per-window predictions; the
interval is the 2.5-97.5 percentile. RankMe's resamples repeat windows, which span fewer
directions: its interval sits mostly below the full-set value and reads as a lower range. A
group (e.g. three fine-tuning seeds) is one more row: the mean over its members, and per
resample the mean of its members' metrics.

Artifacts in `out` (`COMPARISON_JSON`, `COMPARISON_MD`, `COMPARISON_PNG`, `TIME_TO_MANEUVER_PNG`):
the JSON holds `data`, `windows`, `videos`, `bootstrap`, `seed`, `ttm` (the horizons in seconds),
`chance` (metric -> 1 / classes), `columns` (metric -> readable name) and `rows` (`name`, `source`
or `members`, `series` for ego-status: the ego series it read, `metrics`: metric -> {`value`,
`low`, `high`}); the Markdown is the same table; comparison.png draws one panel per metric and
time_to_maneuver.png the `ttm.*` cells as one curve per row over the horizons.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tritemporal.config import TriTemporalConfig
from tritemporal.data.annotations import LANE_STATES, SCENE_LEADER, load_annotation
from tritemporal.data.common import UNLABELLED
from tritemporal.data.videos import FrameReader, VideoClips, find_videos
from tritemporal.eval.anticipation import (
    TTM_HORIZONS,
    ego_status_features,
    probed_targets,
    ttm_key,
)
from tritemporal.eval.box_probe import box_predictions, leader_boxes, mean_iou_statistic
from tritemporal.eval.metrics import classification_metrics
from tritemporal.eval.plots import plot_intervals, plot_time_to_maneuver
from tritemporal.eval.probes import (
    AttentiveProbeSpec,
    Progress,
    attentive_probe_predictions,
    fold_count,
    linear_probe_predictions,
    usable_classes,
)
from tritemporal.eval.progress import phase
from tritemporal.eval.report import (
    Features,
    eval_dataset,
    extract,
    frames_in_memory,
    now_tasks,
    random_init_copy,
    soon_horizons,
)
from tritemporal.hub import Located, locate
from tritemporal.model import TriTemporalModel
from tritemporal.objectives.losses import effective_rank

logger = logging.getLogger(__name__)

COMPARISON_JSON = "comparison.json"
COMPARISON_MD = "comparison.md"
COMPARISON_PNG = "comparison.png"
TIME_TO_MANEUVER_PNG = "time_to_maneuver.png"
RANDOM_PREFIX = "random:"
TEACHER_PREFIX = "teacher:"
EGO_STATUS = "ego-status"  # the pseudo-source of the ego-status guard (loads no model)
EGO_STATUS_NAME = "ego_status"  # its default row name
FEATURES = ("outcome", "now_mean")  # EVENTUALLY probes run on these `Features` fields
PARTS = ("eventually", "now", "soon", "rankme", "ttm")  # column families; `parts` picks some
EVENTUALLY_METRICS = ["balanced_accuracy", "macro_f1"]
TTM_CLASSES = ["keep_lane", "maneuver"]  # the time-to-maneuver probe's classes (targets 0, 1)
LEADER_BOX_IOU = "now.leader_box.iou"  # front-camera clips: the detection probe (box_probe.py)

Statistic = Callable[[np.ndarray], float]  # window indices (with repeats) -> metric
CPU = torch.device("cpu")


def video_resamples(groups: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
    """`n` bootstrap resamples of the windows: videos drawn with replacement, all their windows."""
    videos, inverse = np.unique(groups, return_inverse=True)
    windows = [np.flatnonzero(inverse == v) for v in range(len(videos))]
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(videos), size=(n, len(videos)))
    return [np.concatenate([windows[v] for v in row]) for row in draws]


def bootstrap_interval(
    statistic: Statistic, resamples: list[np.ndarray], level: float = 0.95
) -> tuple[float, float]:
    """The central `level` percentile interval of `statistic` over the resamples."""
    values = np.array([statistic(idx) for idx in resamples], dtype=np.float64)
    if not np.isfinite(values).any():
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)


def rate_interval(hits: np.ndarray, videos: np.ndarray, bootstrap: int, seed: int) -> list:
    """95% interval of a hit rate over resamples of the videos its windows come from."""
    rate = lambda idx: float(np.mean(hits[idx])) if len(idx) else float("nan")  # noqa: E731
    return list(bootstrap_interval(rate, video_resamples(videos, bootstrap, seed)))


def brackets(interval: list[float]) -> str:
    """A 95% interval as printed: [low, high]."""
    return f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def _split_prefix(source: str) -> tuple[str, str]:
    """A source's prefix ("", `random:` or `teacher:`) and the source it applies to."""
    prefix = next((p for p in (RANDOM_PREFIX, TEACHER_PREFIX) if source.startswith(p)), "")
    return prefix, source.removeprefix(prefix)


def locate_source(source: str) -> tuple[str, Located]:
    """A source's prefix and where its model lives, checked without loading any weights: an
    unknown source, or `teacher:` on a saved folder (which holds no teacher), is an error."""
    prefix, base = _split_prefix(source)
    if not base:
        raise ValueError(f"source {source!r}: write {prefix}RUN with the run to use")
    try:
        found = locate(base)
    except OSError as exc:  # FileNotFoundError, the Hub's not-found errors
        raise ValueError(f"unknown source {source!r}: {exc}") from exc
    if prefix == TEACHER_PREFIX and not found.is_checkpoint:
        raise ValueError(
            f"source {source!r}: a saved model folder holds no EMA teacher; name a run "
            "directory or a checkpoint folder"
        )
    return prefix, found


def load_source(
    source: str, seed: int = 0, located: tuple[str, Located] | None = None
) -> TriTemporalModel:
    """The model a source names: `random:SOURCE` is SOURCE's architecture with fresh seeded
    weights; `teacher:RUN` is a run's (or checkpoint's) EMA teacher as the encoder. `located`
    is `locate_source(source)` when the caller has it already."""
    prefix, found = located or locate_source(source)
    model = TriTemporalModel.from_pretrained(found.path)
    if prefix == RANDOM_PREFIX:
        return random_init_copy(model, seed)
    if prefix == TEACHER_PREFIX:
        model.adopt_teacher()
    return model


def default_name(source: str) -> str:
    """A source's row name: its last path part (run folder, Hub repo), any prefix kept;
    `ego_status` for `ego-status`."""
    if source == EGO_STATUS:
        return EGO_STATUS_NAME
    prefix, base = _split_prefix(source)
    base = base.rstrip("/")
    return prefix + (base.split("/")[-1] or base)


def _classifier(y: np.ndarray, pred: np.ndarray, names: list[str], key: str) -> Statistic:
    """Statistic of out-of-fold predictions of some windows (y -1 where a window is not scored)."""

    def statistic(idx: np.ndarray) -> float:
        sel = idx[y[idx] >= 0]
        if len(sel) == 0:
            return float("nan")
        return classification_metrics(y[sel], pred[sel], names)[key]

    return statistic


@dataclass(frozen=True)
class ProbePhase:
    """How a probe reports its progress: the phase's name, units, units per fold, device."""

    desc: str
    unit: str
    per_fold: int
    device: torch.device


def _probe_stats(
    y: np.ndarray,
    names: list[str],
    groups: np.ndarray,
    fit: Callable,
    metrics: list[str],
    shown: ProbePhase,
) -> dict[str, Statistic]:
    """Out-of-fold predictions of `fit(keep, y_kept, progress)` -> one statistic per metric, or
    none when the labels cannot be probed (fewer than 2 classes with 2+ windows, or one video)."""
    keep = (y >= 0) & usable_classes(y, 2)
    if len(np.unique(y[keep])) < 2 or len(np.unique(groups[keep])) < 2:
        return {}
    pred = np.full(len(y), -1)
    total = fold_count(y[keep], groups=groups[keep]) * shown.per_fold
    with phase(shown.desc, total, shown.unit, shown.device) as advance:
        pred[keep] = fit(keep, y[keep], advance)
    scored = np.where(keep, y, -1)
    return {m: _classifier(scored, pred, names, m) for m in metrics}


def linear_statistics(
    x: np.ndarray,
    y: np.ndarray,
    names: list[str],
    groups: np.ndarray,
    seed: int,
    metrics: list[str],
    shown: ProbePhase,
) -> dict[str, Statistic]:
    """`metrics` of the linear probe of labels y (-1: not scored) on features x (N, D), from
    its out-of-fold predictions over held-out videos (`_probe_stats`)."""

    def fit(keep: np.ndarray, y_kept: np.ndarray, progress: Progress) -> np.ndarray:
        return linear_probe_predictions(
            x[keep], y_kept, names, seed=seed, groups=groups[keep], progress=progress
        )[0]

    return _probe_stats(y, names, groups, fit, metrics, shown)


def eventually_statistics(
    x: np.ndarray,
    feat: str,
    labels: np.ndarray,
    names: list[str],
    groups: np.ndarray,
    seed: int,
    shown: ProbePhase,
) -> dict[str, Statistic]:
    """The EVENTUALLY column of features x (a row's `feat`): `eventually.<feat>.<metric>`."""
    found = linear_statistics(x, labels, names, groups, seed, EVENTUALLY_METRICS, shown)
    return {f"eventually.{feat}.{m}": s for m, s in found.items()}


def ttm_statistics(
    x: np.ndarray,
    targets: dict[str, np.ndarray],
    groups: np.ndarray,
    seed: int,
    row: str,
    device: torch.device = CPU,
) -> dict[str, Statistic]:
    """The time-to-maneuver cells of features x (a row's EVENTUALLY features): per metric key,
    the balanced accuracy of the binary probe of its targets (1 / 0 / -1 per window)."""
    stats = {}
    for key, y in targets.items():
        shown = ProbePhase(f"{row} time-to-maneuver probe {key}", "folds", 1, device)
        found = linear_statistics(x, y, TTM_CLASSES, groups, seed, ["balanced_accuracy"], shown)
        if found:  # empty when the targets cannot be probed
            stats[key] = found["balanced_accuracy"]
    return stats


def scene_at_windows(
    dataset: VideoClips, features: Features, config_manifest: str | None
) -> dict[str, list]:
    """Every scene fact at each window's last NOW frame (empty when a video lacks them)."""
    found = {key: ann for key, _, ann in find_videos(dataset.root, config_manifest)}
    assert features.paths is not None and features.times is not None, "extract keeps both"
    spec = dataset.spec
    at = features.times + (spec.now_frames - 1) / spec.fps
    facts: dict[str, list] = {}
    for key in dict.fromkeys(features.paths):
        path = found.get(key)
        ann = None if path is None else load_annotation(path, list(dataset.label_names))
        if ann is None or not ann.scene:
            return {}
        rows = [i for i, p in enumerate(features.paths) if p == key]
        for name, values in ann.scene_at(torch.from_numpy(at[rows])).items():
            facts.setdefault(name, [None] * len(at))
            for i, v in zip(rows, values, strict=True):
                facts[name][i] = v
    return facts


def scene_tasks(facts: dict[str, list]) -> dict[str, tuple[np.ndarray, list[str]]]:
    """The lane and leader facts of `scene_at_windows` as classes (none without facts)."""
    if not facts:
        return {}
    tasks = {}
    for name in ("left_lane", "right_lane"):
        ids = {state: i for i, state in enumerate(LANE_STATES)}
        tasks[name] = (np.array([ids[v] for v in facts[name]]), list(LANE_STATES))
    tertiles = {"leader_gap": ["near", "middle", "far"], "leader_closing": ["slow", "mid", "fast"]}
    for name in SCENE_LEADER:
        tasks[name] = (_leader_bins(facts[name]), ["no_leader", *tertiles[name]])
    return tasks


def _leader_bins(values: list[float | None]) -> np.ndarray:
    """Class per window of a leader fact: 0 without a leader, else 1-3 by tertile of the value
    among windows with one (tertiles keep the classes balanced on any corpus)."""
    x = np.array([np.nan if v is None else float(v) for v in values])
    present = np.isfinite(x)
    bins = np.zeros(len(x), dtype=np.int64)
    if present.any():
        edges = np.quantile(x[present], [1 / 3, 2 / 3])
        bins[present] = 1 + np.digitize(x[present], edges)
    return bins


def source_statistics(
    features: Features,
    tasks: dict,
    names: list[str],
    horizons: list[float],
    seed: int,
    source: str = "",
    device: torch.device = CPU,
    parts: Sequence[str] = PARTS,
) -> dict[str, Statistic]:
    """Every metric of one source (named `source` in progress lines) in the column families
    `parts` as a function of the windows it is computed on."""
    groups = features.groups
    assert groups is not None, "video datasets group windows by video"
    stats: dict[str, Statistic] = {}
    labels = np.where(features.labels == UNLABELLED, -1, features.labels)
    for feat in FEATURES if "eventually" in parts else ():
        shown = ProbePhase(f"{source} EVENTUALLY probe on {feat}", "folds", 1, device)
        x = getattr(features, feat)
        stats |= eventually_statistics(x, feat, labels, names, groups, seed, shown)
    for task, (y, task_names) in tasks.items() if "now" in parts else ():

        def fit_now(
            keep: np.ndarray, y_kept: np.ndarray, progress: Progress, task_names: list = task_names
        ) -> np.ndarray:
            tokens = features.now_tokens[keep]
            return attentive_probe_predictions(
                tokens, y_kept, task_names, seed=seed, groups=groups[keep], progress=progress
            )[0]

        epochs = AttentiveProbeSpec().epochs
        shown = ProbePhase(f"{source} NOW probe {task}", "epochs", epochs, device)
        found = _probe_stats(y, task_names, groups, fit_now, ["balanced_accuracy"], shown)
        stats |= {f"now.{task}.{m}": s for m, s in found.items()}
    if "soon" in parts:
        model, copy = features.soon_windows["model_l1"], features.soon_windows["copy_l1"]
        for step, h in enumerate(horizons):
            stats[f"soon.l1_over_copy.+{h:g}s"] = lambda idx, s=step: float(
                model[idx, s].sum() / max(copy[idx, s].sum(), 1e-12)
            )
    ranked = (("now", features.now_mean), ("outcome", features.outcome))
    for feat, x in ranked if "rankme" in parts else ():
        stats[f"rankme.{feat}"] = lambda idx, x=x: float(effective_rank(torch.from_numpy(x[idx])))
    return stats


def column_name(key: str) -> str:
    """Readable column header of a metric key."""
    if key.startswith("ttm."):  # the horizon holds a dot of its own (ttm.+0.5s)
        return f"time to maneuver {key.removeprefix('ttm.')} bal. acc."
    part, *rest = key.split(".", 2)
    short = {"balanced_accuracy": "bal. acc.", "macro_f1": "macro-F1", "now_mean": "mean NOW"}
    words = [short.get(w, w) for w in rest]
    if part == "soon":
        return f"SOON L1 / copy-last {rest[-1]}"
    return f"{part.upper() if part != 'rankme' else 'RankMe'} " + " ".join(words)


def _check_matched(datasets: list[VideoClips], sources: list[str]) -> None:
    """Refuse sources whose configs cut different windows from the held-out folder."""
    first = datasets[0]
    for data, source in zip(datasets[1:], sources[1:], strict=True):
        same = data.spec == first.spec and tuple(data.label_names) == tuple(first.label_names)
        if not same or not np.array_equal(data.video_ids, first.video_ids):
            raise ValueError(
                f"source {source!r} cuts different windows than {sources[0]!r} "
                f"({data.spec} vs {first.spec}; labels {list(data.label_names)} vs "
                f"{list(first.label_names)}): compare sources with the same data.fps, "
                "data.stride_s, data.gap_s, clip.*_frames and data.extra_maneuvers"
            )


def compare(
    sources: list[str],
    data: str | Path,
    names: list[str] | None = None,
    groups: dict[str, list[str]] | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    parts: Sequence[str] = PARTS,
    ttm: Sequence[float] = TTM_HORIZONS,
) -> dict:
    """The comparison table (see the module docstring) of `sources` on the held-out `data`,
    with the column families `parts` (a subset of `PARTS`; the NOW probes take most of the
    time, so `("soon",)` compares forecasts in a fraction of it) and the time-to-maneuver
    horizons `ttm` (seconds; empty: none)."""
    names, groups = _checked_request(sources, names, groups, bootstrap, parts, ttm)
    horizons = [float(d) for d in ttm] if "ttm" in parts else []
    # every source is checked before any is encoded; one model is held in memory at a time
    located = [None if s == EGO_STATUS else locate_source(s) for s in sources]
    datasets = [None if where is None else eval_dataset(where[1].config, data) for where in located]
    held_out = _held_out(datasets, sources, data, horizons)
    dataset = held_out.dataset
    ego = None  # its errors (missing series) come before any encoding too
    if EGO_STATUS in sources:
        ego = ego_status_features(dataset.video_windows(), dataset.spec, data)
    resamples = video_resamples(dataset.video_ids, bootstrap, seed)
    rows, per_source, chance, n = [], {}, {}, len(dataset)
    readers: dict[tuple, FrameReader] = {}  # held-out frames in memory, per size they are cut to
    for name, source, where, data_i in zip(names, sources, located, datasets, strict=True):
        row: dict = {"name": name, "source": source}
        if where is None:
            assert ego is not None, "built above whenever ego-status is a source"
            per_source[name], found = _ego_status_statistics(ego[0], held_out, seed, parts)
            row["series"] = ego[1]
        else:
            assert data_i is not None, "every model source has its dataset"
            _read_from_memory(data_i, where[1].config, readers)
            logger.info("encoding %d windows with %s", len(data_i), source)
            per_source[name], found = _encode_and_score(
                source, where, data_i, held_out, seed, batch_size, device, parts
            )
        chance |= found
        rows.append(row | {"metrics": _cells(per_source[name], n, resamples, name)})
    chance |= {ttm_key(d): 0.5 for d in horizons}  # maneuver vs keep lane
    for group, members in groups.items():
        keys = [k for k in per_source[members[0]] if all(k in per_source[m] for m in members)]
        mean = {k: _mean_of([per_source[m][k] for m in members]) for k in keys}
        cells = _cells(mean, n, resamples, group)
        rows.append({"name": group, "members": members, "metrics": cells})
    measured = (k for r in rows for k in r["metrics"])
    keys = list(dict.fromkeys([*measured, *(ttm_key(d) for d in horizons)]))  # thin: "-"
    return {
        "data": str(data),
        "windows": len(dataset),
        "videos": len(np.unique(dataset.video_ids)),
        "bootstrap": bootstrap,
        "seed": seed,
        "ttm": horizons,
        "chance": {k: round(v, 4) for k, v in chance.items() if k in keys},
        "columns": {k: column_name(k) for k in keys},
        "rows": rows,
    }


def _checked_request(
    sources: list[str],
    names: list[str] | None,
    groups: dict[str, list[str]] | None,
    bootstrap: int,
    parts: Sequence[str],
    ttm: Sequence[float],
) -> tuple[list[str], dict[str, list[str]]]:
    """The row names and groups of a `compare` call, after checking its arguments."""
    unknown_parts = [p for p in parts if p not in PARTS]
    if unknown_parts or not parts:
        raise ValueError(f"parts {list(parts)}: choose one or more of {', '.join(PARTS)}")
    if any(not 0 < d < float("inf") for d in ttm) or len(set(ttm)) != len(ttm):
        raise ValueError(f"ttm {list(ttm)}: give distinct horizons in seconds > 0, e.g. 0.5,1,2,3")
    names = list(names) if names else [default_name(s) for s in sources]
    if len(names) != len(sources) or len(set(names)) != len(names):
        raise ValueError(
            f"need one distinct name per source (--names): {len(sources)} sources, {names}"
        )
    groups = groups or {}
    for group, members in groups.items():
        unknown = [m for m in members if m not in names]
        if unknown or group in names or not members:
            raise ValueError(
                f"group {group!r}: members {unknown or members} must be source names "
                f"({', '.join(names)}) and the group name must be new"
            )
    if bootstrap < 1:
        raise ValueError(f"bootstrap must be >= 1 resample, got {bootstrap}")
    return names, groups


@dataclass(frozen=True)
class HeldOut:
    """The windows every row is measured on (cut by the first model source's config), their
    eventual maneuvers (-1: unlabelled) and time-to-maneuver targets (metric key -> (N,))."""

    dataset: VideoClips
    labels: np.ndarray
    targets: dict[str, np.ndarray]


def _held_out(
    datasets: list[VideoClips | None], sources: list[str], data: str | Path, horizons: list[float]
) -> HeldOut:
    """The held-out windows of the model sources' datasets (None: ego-status), once checked
    to match and to hold labelled windows of 2+ videos."""
    models = [(d, s) for d, s in zip(datasets, sources, strict=True) if d is not None]
    if not models:
        raise ValueError(
            f"{EGO_STATUS} needs a model source beside it: its windows are the ones the first "
            "model source's config cuts"
        )
    _check_matched([d for d, _ in models], [s for _, s in models])
    dataset = models[0][0]
    counts = {k: v for k, v in dataset.summary.label_counts.items() if k != "unlabelled"}
    if not any(counts.values()):
        raise ValueError(
            f"{data} has no labelled windows: compare needs annotations/<video>.json beside the "
            "videos (make-clips writes them)"
        )
    if len(np.unique(dataset.video_ids)) < 2:
        raise ValueError(f"{data} holds one video: held-out probes need 2+ videos (100+ advised)")
    spec = dataset.spec
    eventual = dataset.window_maneuvers(spec.eventually_offset_s, spec.eventually_frames / spec.fps)
    labels = np.where(eventual == UNLABELLED, -1, eventual)
    targets = probed_targets(dataset, horizons) if horizons else {}
    return HeldOut(dataset, labels, targets)


def _ego_status_statistics(
    x: np.ndarray, held_out: HeldOut, seed: int, parts: Sequence[str]
) -> tuple[dict[str, Statistic], dict[str, float]]:
    """The ego-status row: its vector x (windows, now_frames * F) read as the row's outcome
    (the `eventually.outcome.*` cells) and probed for time to maneuver; and its chance."""
    groups, labels = held_out.dataset.video_ids, held_out.labels
    names = list(held_out.dataset.label_names)
    stats, chance = {}, {}
    if "eventually" in parts:
        shown = ProbePhase(f"{EGO_STATUS} EVENTUALLY probe", "folds", 1, CPU)
        stats |= eventually_statistics(x, "outcome", labels, names, groups, seed, shown)
        chance["eventually.outcome.balanced_accuracy"] = _chance(labels)
    stats |= ttm_statistics(x, held_out.targets, groups, seed, EGO_STATUS)
    return stats, chance


def _read_from_memory(
    dataset: VideoClips, config: TriTemporalConfig, readers: dict[tuple, FrameReader]
) -> None:
    """Point a source's held-out dataset at decoded frames in memory, decoded once for every
    source that cuts them to the same size (the windows are the same: `_check_matched`)."""
    key = (dataset.transform.out_hw, dataset.backend)
    if key not in readers:
        frames_in_memory(dataset, config)
        readers[key] = dataset.reader
    dataset.reader = readers[key]


def _encode_and_score(
    source: str,
    located: tuple[str, Located],
    dataset: VideoClips,
    held_out: HeldOut,
    seed: int,
    batch_size: int,
    device: str | torch.device,
    parts: Sequence[str] = PARTS,
) -> tuple[dict[str, Statistic], dict[str, float]]:
    """Encode the held-out windows with one source (then drop it): its statistics and the
    balanced-accuracy chance of each probe it ran."""
    model = load_source(source, seed, located).to(device)
    device = model.pixel_mean.device
    forecast = "soon" in parts  # the predictor and teacher passes only feed the SOON columns
    with phase(f"{source} extract features", len(dataset), "windows", device) as advance:
        features = extract(model, dataset, batch_size, progress=advance, forecast=forecast)
    labels = np.where(features.labels == UNLABELLED, -1, features.labels)
    assert np.array_equal(labels, held_out.labels), "the rows' windows are matched one by one"
    tasks, boxes = {}, None
    if "now" in parts:
        facts = scene_at_windows(dataset, features, model.config.data.manifest)
        tasks = now_tasks(features) | scene_tasks(facts)
        boxes = leader_boxes(facts)
    horizons = soon_horizons(model.config)
    names = list(dataset.label_names)
    stats = source_statistics(features, tasks, names, horizons, seed, source, device, parts)
    chance = {}
    if boxes is not None:  # front-camera clips: where the leader is in the image
        with phase(f"{source} NOW probe leader_box", 1, "fits", device) as advance:
            predicted, constant = box_predictions(features.now_tokens, boxes, features.groups)
            advance(1)
        stats[LEADER_BOX_IOU] = mean_iou_statistic(predicted, boxes)
        chance[LEADER_BOX_IOU] = mean_iou_statistic(constant, boxes)(np.arange(len(boxes)))
    assert features.groups is not None, "video datasets group windows by video"
    stats |= ttm_statistics(
        features.outcome, held_out.targets, features.groups, seed, source, device
    )
    chance |= {f"now.{task}.balanced_accuracy": _chance(y) for task, (y, _) in tasks.items()}
    if "eventually" in parts:
        chance |= {f"eventually.{f}.balanced_accuracy": _chance(features.labels) for f in FEATURES}
    return stats, chance


def _mean_of(parts: list[Statistic]) -> Statistic:
    """The statistic averaging `parts` (one per group member) on the same windows."""
    return lambda idx: float(np.nanmean([p(idx) for p in parts]))


def _cells(
    stats: dict[str, Statistic], windows: int, resamples: list[np.ndarray], row: str
) -> dict:
    """Each statistic on all `windows` and its bootstrap interval over the resamples (the
    progress of row `row` counted in metrics)."""
    everything = np.arange(windows)
    cells = {}
    with phase(f"{row} bootstrap intervals", len(stats), "metrics", CPU) as advance:
        for key, statistic in stats.items():
            cells[key] = _cell(statistic(everything), *bootstrap_interval(statistic, resamples))
            advance(1)
    return cells


def _chance(y: np.ndarray) -> float:
    """Balanced-accuracy chance of a probe on labels y: 1 / classes with 2+ labelled windows."""
    labelled = y[y >= 0]
    return 1 / max(1, len(np.unique(labelled[usable_classes(labelled, 2)])))


def _cell(value: float, low: float, high: float) -> dict[str, float]:
    """A metric's point estimate and interval, rounded for the JSON."""
    return {"value": round(value, 4), "low": round(low, 4), "high": round(high, 4)}


def markdown_table(result: dict) -> str:
    """The comparison as a Markdown table: rows sources, columns metrics, `value [low, high]`."""
    columns = result["columns"]
    head = ["source", *columns.values()]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["rows"]:
        cells = [row["name"]]
        for key in columns:
            m = row["metrics"].get(key)
            interval = "-" if m is None else f"{m['low']:.3f}, {m['high']:.3f}"
            cells.append("-" if m is None else f"{m['value']:.3f} [{interval}]")
        lines.append("| " + " | ".join(cells) + " |")
    chance = ", ".join(f"{columns[k]} {v:.2f}" for k, v in result["chance"].items())
    note = (
        f"{result['windows']} windows of {result['videos']} held-out videos; 95% intervals from "
        f"{result['bootstrap']} bootstrap resamples of videos (seed {result['seed']}). "
        f"Chance: {chance or 'n/a'}."
    )
    return "\n".join([*lines, "", note])


def plotted_rows(rows: list[dict]) -> list[dict]:
    """The rows the plots draw: a group stands for its members (their seeds stay in the
    table and the JSON), so a 3-seed comparison of ten rows draws ten lines, not forty."""
    grouped = {member for row in rows for member in row.get("members", [])}
    return [row for row in rows if row["name"] not in grouped]


def write_comparison(result: dict, out: str | Path) -> Path:
    """comparison.json, comparison.md, comparison.png and, with time-to-maneuver horizons,
    time_to_maneuver.png (both plots: `plotted_rows`) in `out`; returns the folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / COMPARISON_JSON).write_text(json.dumps(result, indent=1))
    (out / COMPARISON_MD).write_text(markdown_table(result) + "\n")
    values = {
        row["name"]: {k: (m["value"], m["low"], m["high"]) for k, m in row["metrics"].items()}
        for row in plotted_rows(result["rows"])
    }
    title = f"{result['videos']} held-out videos, 95% bootstrap intervals over videos"
    ratios = {k: 1.0 for k in result["columns"] if k.startswith("soon.")}  # = copy-last
    title += " (dashed: chance, or copy-last for SOON)"
    reference = result["chance"] | ratios
    plot_intervals(values, result["columns"], out / COMPARISON_PNG, title, reference)
    if result.get("ttm"):  # absent from results written before the key existed
        missing = (float("nan"),) * 3  # a thin horizon, or a row without the column
        curves = {n: [v.get(ttm_key(d), missing) for d in result["ttm"]] for n, v in values.items()}
        ttm_title = f"maneuver vs keep lane on {result['videos']} held-out videos"
        plot_time_to_maneuver(result["ttm"], curves, out / TIME_TO_MANEUVER_PNG, ttm_title)
    return out
