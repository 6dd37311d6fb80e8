"""Planning toward a lane change: the part of the action report that asks a planner for a maneuver.

A maneuver scorer (`eval/maneuver_scorer.py`) is fitted on the teacher's real SOON tokens of the
windows of half the held-out videos (a seeded split); on keep-lane windows of the other half
whose ego has a lane on each side, the cross-entropy method (`eval/planning.py`) plans steering
and acceleration (within `ControlBounds`) toward `lane_change_left` and toward
`lane_change_right`. The part reports how often the plan's mean steering has the asked sign
(< 0 left, > 0 right) and, for clips made by highway-env, how often the simulator, replaying the
clip with the plan from the window's last NOW frame and then keeping lane for the rest of
`TOWARD_HORIZON_S`, ends one lane to the asked side (`data/highway_replay.py`); both against
random actions drawn uniformly within the bounds, with 95% intervals over videos.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from tritemporal.data.annotations import DEFAULT_MANEUVER
from tritemporal.data.videos import VideoClips
from tritemporal.eval.compare import brackets, rate_interval
from tritemporal.eval.maneuver_scorer import ManeuverScorer, scorer_from_pooled
from tritemporal.eval.planning import (
    CONTROLS,
    ActionWindows,
    CemSpec,
    ControlBounds,
    highway_annotation,
    lanes_on_both_sides,
    maneuver_log_prob,
    per_frame,
    plan_rows,
    plan_toward,
    replay_lane_shift,
)
from tritemporal.model import TriTemporalModel

TOWARD = {"lane_change_left": -1, "lane_change_right": 1}  # maneuver -> lanes it moves the ego
TOWARD_HORIZON_S = 4.0  # a replay runs this long after the takeover: the plan, then lane keeping


@dataclass(frozen=True)
class TowardSpec:
    """Settings of the planning-toward-a-lane-change part."""

    cem: CemSpec
    bounds: ControlBounds
    seed: int
    bootstrap: int
    batch_size: int


def toward_report(
    model: TriTemporalModel,
    dataset: VideoClips,
    w: ActionWindows,
    bank: torch.Tensor,
    present: torch.Tensor,
    n: int,
    opts: TowardSpec,
) -> dict:
    """Planning toward a lane change (module docstring) from every window's pooled teacher SOON
    tokens `bank` (N, steps K) and pooled present (N, K): a scorer fitted on half the videos, up
    to `n` planned windows of the other half; with "skipped" (why) where it cannot run."""
    names, signals = list(dataset.label_names), model.action.signals
    out: dict = {
        "maneuvers": list(TOWARD),
        "split": "maneuver scorer fitted on the windows of half the held-out videos (teacher's "
        "real SOON tokens, seeded split); plans on keep-lane windows of the other half",
        "horizon_s": TOWARD_HORIZON_S,
        "bounds": {name: list(getattr(opts.bounds, name)) for name in CONTROLS},
        "cem": asdict(opts.cem),
        "windows": 0,
    }
    videos = np.unique(w.videos)
    if any(name not in signals for name in CONTROLS) or len(videos) < 2:
        why = f"needs {list(CONTROLS)} in action.signals {list(signals)} and 2+ held-out videos"
        return {**out, "skipped": why}
    rng = np.random.default_rng(opts.seed)
    fit_videos = rng.permutation(videos)[: len(videos) // 2]
    held_out = ~np.isin(w.videos, fit_videos)  # the half the plans are made on
    fit = ~held_out & (w.soon_maneuver >= 0)
    bank, present = bank[fit], present[fit]
    try:
        scorer = scorer_from_pooled(model, bank, present, w.soon_maneuver[fit], names, opts.seed)
    except ValueError as exc:
        return {**out, "skipped": str(exc)}
    out["scorer"] = {"videos": len(fit_videos), "windows": int(fit.sum())}
    out["scorer"]["labels"] = scorer.label_names
    absent = [m for m in TOWARD if m not in scorer.label_names]
    if absent:
        return {**out, "skipped": f"the scorer's windows show no {absent} in their SOON part"}
    keep = w.soon_maneuver == names.index(DEFAULT_MANEUVER)
    candidates = _lanes_both_sides(model, dataset, w, np.flatnonzero(keep & held_out))
    chosen = np.sort(rng.permutation(candidates)[:n])
    if not len(chosen):
        return {**out, "skipped": "no keep-lane window of the other half has a lane on each side"}
    out["windows"] = len(chosen)
    pairs = _toward_pairs(model, dataset, w, chosen, scorer, opts)
    where, sign = w.videos[pairs["window"]], pairs["sign"]
    hits = {k: pairs[k][:, :, 0].mean(axis=1) * sign > 0 for k in ("planned", "random")}
    out["steering_sign"] = _versus(hits["planned"], hits["random"], where, sign, opts.bootstrap)
    out["probability"] = {k: float(np.mean(pairs[f"{k}_p"])) for k in ("planned", "random")}
    hold_s = max(0.0, TOWARD_HORIZON_S - model.config.clip.soon_frames / dataset.spec.fps)
    out["replay"] = _replays(dataset, w, pairs, opts.bootstrap, hold_s)
    return out


def _lanes_both_sides(
    model: TriTemporalModel, dataset: VideoClips, w: ActionWindows, windows: np.ndarray
) -> np.ndarray:
    """The windows whose ego has a lane on each side at the last NOW frame (the annotation's
    scene facts, else its lane series)."""
    annotations = [v.annotation for v in dataset.video_windows()]
    last_now = model.config.clip.now_frames - 1
    keep = []
    for i in windows:
        annotation = annotations[w.videos[i]]
        t = float(dataset.spec.frame_times(w.starts[i])[last_now])
        if annotation is not None and lanes_on_both_sides(annotation, t):
            keep.append(i)
    return np.array(keep, dtype=np.int64)


@torch.no_grad()
def _toward_pairs(
    model: TriTemporalModel,
    dataset: VideoClips,
    w: ActionWindows,
    chosen: np.ndarray,
    scorer: ManeuverScorer,
    opts: TowardSpec,
) -> dict[str, np.ndarray]:
    """Per (window, maneuver of TOWARD): the window, the lane shift asked, the plan's and a
    random plan's controls (pairs, soon_frames, 2) and the scorer's p(maneuver) under each."""
    a, device = model.action, model.pixel_mean.device
    gen = torch.Generator().manual_seed(opts.seed)
    rows: dict[str, list] = {}
    for first in range(0, len(chosen), opts.batch_size):
        idx = chosen[first : first + opts.batch_size]
        clips = model.normalize(torch.stack([dataset[int(i)]["video"] for i in idx]).to(device))
        nows, presents = model.now_tokens(clips), model.present_step(clips)
        for i, q in enumerate(idx):
            now, present, state = nows[i : i + 1], presents[i : i + 1], w.actions[q, 0]
            for m, sign in TOWARD.items():
                plan = plan_toward(
                    model, now, present, state, scorer, m, opts.bounds, opts.cem, gen
                )
                random = per_frame(opts.bounds.uniform(1, a.soon_steps, gen), a.tubelet_t)
                actions = plan_rows(a.signals, state, random, model.config.data.fps)
                k = scorer.label_names.index(m)
                random_p = maneuver_log_prob(model, now, present, actions, scorer, k).exp()
                found = {"window": q, "sign": sign, "planned": plan.controls}
                found.update(random=random[0].numpy(), planned_p=plan.probability)
                found["random_p"] = float(random_p[0])
                for key, value in found.items():
                    rows.setdefault(key, []).append(value)
    return {key: np.asarray(values) for key, values in rows.items()}


def _replays(
    dataset: VideoClips,
    w: ActionWindows,
    pairs: dict[str, np.ndarray],
    bootstrap: int,
    hold_s: float,
) -> dict:
    """Where the held-out clip was made by highway-env: how often replaying it with the plan (and
    with the random plan) from the window's last NOW frame ends one lane to the asked side."""
    clips = {
        v: highway_annotation(dataset.root / x.key) for v, x in enumerate(dataset.video_windows())
    }
    hits: dict[str, list[bool]] = {"planned": [], "random": []}
    crashed = {"planned": 0, "random": 0}
    replayed, errors = [], []
    for j, q in enumerate(pairs["window"]):
        annotation = clips[w.videos[q]]
        if annotation is None:
            continue
        start = float(w.starts[q])
        try:
            runs = {
                k: replay_lane_shift(annotation, dataset.spec, start, pairs[k][j], TOWARD_HORIZON_S)
                for k in hits
            }
        except ValueError as exc:  # not the recorded episode (another highway-env version)
            errors.append(str(exc))
            continue
        replayed.append(j)
        for k, (lanes, crash) in runs.items():
            hits[k].append(lanes == pairs["sign"][j] and not crash)
            crashed[k] += int(crash)
    out: dict = {"hold_s": hold_s, "errors": len(errors)}
    if errors:
        out["first_error"] = errors[0]
    if not replayed:
        return {**out, "pairs": 0, "reason": "no planned window of a highway-env clip replayed"}
    where, sign = w.videos[pairs["window"][replayed]], pairs["sign"][replayed]
    rates = _versus(np.array(hits["planned"]), np.array(hits["random"]), where, sign, bootstrap)
    return {**out, **rates, "crashed": crashed}


def _versus(
    planned: np.ndarray, random: np.ndarray, videos: np.ndarray, sign: np.ndarray, bootstrap: int
) -> dict:
    """Hit rates of the plans and of random plans, with 95% intervals over videos, and per
    maneuver asked (`sign`: its TOWARD value)."""
    out: dict = {"pairs": len(planned), "by_maneuver": {}}
    for name, hits in (("planned", planned), ("random", random)):
        out[name] = float(np.mean(hits))
        out[f"{name}_interval"] = rate_interval(hits, videos, bootstrap, 0)
    for m, asked in TOWARD.items():
        mine = sign == asked
        if mine.any():
            each = (("planned", planned), ("random", random))
            out["by_maneuver"][m] = {k: float(np.mean(hits[mine])) for k, hits in each}
    return out


def toward_lines(toward: dict) -> list[str]:
    """The planning-toward-a-lane-change part of `action_lines`."""
    if "skipped" in toward:
        return [f"  toward a lane change: skipped ({toward['skipped']})"]
    scorer, sign, p = toward["scorer"], toward["steering_sign"], toward["probability"]
    lines = [
        f"  toward a lane change ({toward['windows']} keep-lane windows; scorer fitted on "
        f"{scorer['windows']} windows of {scorer['videos']} other videos):",
        f"    steering sign    {_versus_line(sign)}",
        f"    p(maneuver)      planned {p['planned']:.3f} vs random {p['random']:.3f}",
    ]
    replay = toward["replay"]
    if replay["pairs"]:
        crashed = replay["crashed"]
        crashes = f"; crashed {crashed['planned']} planned, {crashed['random']} random"
        lines.append(f"    replay in lane   {_versus_line(replay, crashes)}")
    else:
        lines.append(f"    replay: none ({replay['reason']}; {replay['errors']} errors)")
    return lines


def _versus_line(rates: dict, extra: str = "") -> str:
    """`planned R [lo, hi] vs random R [lo, hi] (N pairs; left planned R, right planned R)`."""
    each = ", ".join(f"{m} {r['planned']:.3f}" for m, r in rates["by_maneuver"].items())
    return (
        f"planned {rates['planned']:.3f} {brackets(rates['planned_interval'])} vs random "
        f"{rates['random']:.3f} {brackets(rates['random_interval'])} ({rates['pairs']} pairs; "
        f"planned {each}{extra})"
    )
