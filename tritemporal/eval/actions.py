"""Does the action-conditioned SOON forecast follow the actions? Evaluation and planning.

Run by `tritemporal eval` on an action-conditioned checkpoint (`predictor.action_conditioning`),
on held-out windows whose annotations carry `action.signals`. Every variant keeps the window's
own NOW context and its own state (signals at the last NOW frame: an observation). Only the
actions of the SOON frames (the intervention) are swapped:

- **SOON L1 per horizon** to the teacher's SOON tokens under the window's *true* actions,
  under *shuffled* actions, and under the training-mean action. Shuffled actions come from the
  window of another video whose state speed is nearest, so speed alone does not tell them
  apart. Copying the last NOW step (from the teacher's pass over the
  NOW frames alone, which has not seen the future) is the reference. The **action gain** is
  (shuffled - true) / shuffled: how much of the error the actions explain. With an
  unconditioned model trained on the same budget (`baseline`), its L1 over copy-last sits next to
  the conditioned model's.
- **Counterfactual retrieval**: keep-lane windows (their SOON part has no maneuver) are
  forecast under the actions of real lane-change-left / right and brake windows (speed-matched,
  other videos). Each forecast retrieves its nearest real future from a bank of every window's
  teacher SOON tokens (pooled to a coarse grid that keeps where things are). The report counts
  how often the retrieved future carries the injected maneuver, against how often the window's
  own keep-lane actions retrieve it.
- **Trajectory consistency**: windows one stride apart forecast the same future tubelet step
  (when the stride is a whole number of tubelet steps). For each such pair, the distance between
  the two forecasts against each forecast's distance to the truth, per horizon of the earlier
  window.
- **Planning** (V-JEPA 2-AC's test): for a sample of windows, the cross-entropy method searches
  standardised actions, one vector per SOON step, for the forecast closest (L1) to the window's
  real SOON tokens. The report gives how often the plan's steering sign and accelerate-or-brake
  agree with the truth where the true value is clearly non-zero (|z| > `clear_z`), and the
  correlation of planned and true values, against random actions drawn from the same prior.
- **Planning toward a lane change** (`toward`, eval/toward.py): the cross-entropy method asked
  for a lane change to either side, scored by the steering's sign and, for highway-env clips,
  by replaying the plan in the simulator; against random actions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tritemporal.data.annotations import DEFAULT_MANEUVER
from tritemporal.data.videos import VideoClips
from tritemporal.eval.compare import (
    bootstrap_interval,
    brackets,
    rate_interval,
    video_resamples,
)
from tritemporal.eval.maneuver_scorer import pool_steps
from tritemporal.eval.planning import (
    ActionWindows,
    CemSpec,
    ControlBounds,
    action_windows,
)
from tritemporal.eval.plots import plot_horizon
from tritemporal.eval.progress import phase
from tritemporal.eval.report import eval_dataset, extract, soon_horizons
from tritemporal.eval.toward import TowardSpec, toward_lines, toward_report
from tritemporal.model import TriTemporalModel

COUNTERFACTUALS = ("lane_change_left", "lane_change_right", "brake")


def speed_matched(
    speed: np.ndarray, videos: np.ndarray, queries: np.ndarray, donors: np.ndarray
) -> np.ndarray:
    """For each query window, the donor window of another video with the nearest speed (-1 when
    every donor shares the query's video)."""
    out = np.full(len(queries), -1, dtype=np.int64)
    if len(donors) == 0:
        return out
    for i, q in enumerate(queries):
        gap = np.abs(speed[donors] - speed[q])
        gap[videos[donors] == videos[q]] = np.inf
        best = int(np.argmin(gap))
        if np.isfinite(gap[best]):
            out[i] = donors[best]
    return out


def _speed_column(model: TriTemporalModel) -> int:
    """Which signal matches windows: `speed` when it is one, else the first."""
    signals = list(model.action.signals)
    return signals.index("speed") if "speed" in signals else 0


def _with_actions(own: torch.Tensor, donor: torch.Tensor) -> torch.Tensor:
    """The window's own state row with the donor's SOON actions."""
    return torch.cat([own[:, :1], donor[:, 1:]], dim=1)


def _l1_steps(pred: torch.Tensor, truth: torch.Tensor, steps: int) -> torch.Tensor:
    """Mean absolute error per SOON step: (B, M, D) pairs -> (B, steps)."""
    return (pred - truth).abs().view(pred.shape[0], steps, -1).mean(dim=2)


def _step_means(z: torch.Tensor, steps: int) -> torch.Tensor:
    """Standardised SOON actions (B, soon_frames, F) -> one vector per step (B, steps, F)."""
    return z.view(z.shape[0], steps, -1, z.shape[-1]).mean(dim=2)


def _raw(model: TriTemporalModel, own: torch.Tensor, z_steps: torch.Tensor) -> torch.Tensor:
    """Per-step standardised actions (P, steps, F) -> raw actions (P, 1 + soon_frames, F) with
    the window's own state row `own` (1, F)."""
    a = model.action
    frames = z_steps.repeat_interleave(a.tubelet_t, dim=1) * a.std.float() + a.mean.float()
    return torch.cat([own.expand(len(z_steps), 1, -1), frames], dim=1)


@torch.no_grad()
def plan(
    model: TriTemporalModel,
    now: torch.Tensor,
    state: torch.Tensor,
    truth: torch.Tensor,
    spec: CemSpec,
    generator: torch.Generator,
    present: torch.Tensor | None = None,
) -> torch.Tensor:
    """The cross-entropy method's actions (steps, F), standardised, for one window: NOW tokens
    (1, N_now, D), state row (1, F), teacher SOON tokens (1, M, D); a floored model's start
    `present` (1, hw, D)."""
    a = model.action
    steps, n = a.soon_steps, len(a.signals)
    mu, sigma = torch.zeros(steps, n), torch.ones(steps, n)
    for _ in range(spec.iterations):
        noise = torch.randn(spec.population, steps, n, generator=generator)
        z = mu + sigma * noise
        pred = model.forecast_from_now(now, _raw(model, state, z).to(now.device), present)
        cost = (pred - truth).abs().mean(dim=(1, 2)).cpu()
        elite = z[cost.argsort()[: spec.elites]]
        mu, sigma = elite.mean(0), elite.std(0).clamp(min=0.05)
    return mu


def _agreement(
    planned: np.ndarray, true: np.ndarray, videos: np.ndarray, clear_z: float, bootstrap: int
) -> dict:
    """Sign agreement where the truth is clearly non-zero (with its 95% interval over videos),
    and the correlation."""
    clear = np.abs(true) > clear_z
    agree, interval = None, None
    if clear.any():
        hits = np.sign(planned[clear]) == np.sign(true[clear])
        agree = float(np.mean(hits))
        interval = rate_interval(hits, videos[clear], bootstrap, 0)
    corr = None
    if len(true) > 2 and np.std(planned) > 0 and np.std(true) > 0:
        corr = float(np.corrcoef(planned, true)[0, 1])
    return {
        "clear_windows": int(clear.sum()),
        "sign_agreement": agree,
        "sign_agreement_interval": interval,
        "correlation": corr,
    }


def _planning_report(
    tally: _Tally, videos: np.ndarray, signals: list[str], clear_z: float, bootstrap: int
) -> dict:
    """Per signal: the plan's and random actions' agreement with the true SOON actions (mean
    standardised value over the SOON window)."""
    out = {"windows": len(tally.trues), "clear_z": clear_z, "signals": {}}
    if not tally.trues:  # planning skipped
        return out
    planned, random, true = (np.array(x) for x in (tally.plans, tally.randoms, tally.trues))
    where = videos[np.array(tally.planned_windows)]
    for f, name in enumerate(signals):
        out["signals"][name] = {
            "planned": _agreement(planned[:, f], true[:, f], where, clear_z, bootstrap),
            "random": _agreement(random[:, f], true[:, f], where, clear_z, bootstrap),
        }
    return out


def _plan_sample(w: ActionWindows, z: torch.Tensor, f: int | None, n: int, rng) -> np.ndarray:
    """Up to `n` windows to plan for: half where signal `f` (steering) clearly moves, the rest
    drawn from all windows."""
    everything = np.arange(len(w.videos))
    chosen: list[int] = []
    if f is not None:
        moving = everything[np.abs(z[:, 1:, f].mean(dim=1).numpy()) > 0.5]
        chosen = list(rng.permutation(moving)[: n // 2])
    rest = rng.permutation(np.setdiff1d(everything, chosen))
    return np.sort(np.array(chosen + list(rest[: n - len(chosen)]), dtype=np.int64))


@dataclass
class _Plan:
    """Which windows each part of the report uses, fixed before any video is decoded."""

    shuffled: np.ndarray  # (N,) the speed-matched window whose actions replace each one's
    queries: np.ndarray  # keep-lane windows for counterfactual retrieval (sorted)
    donors: dict[str, np.ndarray]  # maneuver -> per query, the window whose actions it gets
    planned: set[int]  # windows the cross-entropy method plans for
    shift: int  # SOON steps between windows one stride apart (0: not a whole number)


@dataclass
class _Tally:
    """What the pass over the windows accumulates."""

    sums: dict[str, torch.Tensor]  # variant -> (steps,) summed L1
    per_window: dict[str, list] = field(default_factory=dict)  # true / shuffled -> (B, steps)
    bank: list[torch.Tensor] = field(default_factory=list)  # pooled real SOON futures
    present: list[torch.Tensor] = field(default_factory=list)  # pooled teacher presents
    own: list[torch.Tensor] = field(default_factory=list)  # queries under their own actions
    injected: dict[str, list] = field(default_factory=dict)  # maneuver -> (windows, pooled)
    between: list[torch.Tensor] = field(default_factory=list)  # consistency, per pair
    to_truth: list[torch.Tensor] = field(default_factory=list)
    planned_windows: list[int] = field(default_factory=list)  # which windows were planned
    plans: list[np.ndarray] = field(default_factory=list)  # per planned window: (F,) each
    randoms: list[np.ndarray] = field(default_factory=list)
    trues: list[np.ndarray] = field(default_factory=list)
    previous: tuple | None = None  # (window, forecast, truth) of the last window of a batch


def _choose(
    model: TriTemporalModel,
    dataset: VideoClips,
    w: ActionWindows,
    z: torch.Tensor,
    rng: np.random.Generator,
    max_queries: int,
    plan_windows: int,
) -> _Plan:
    """Shuffled partners, counterfactual queries and donors, planned windows, the overlap."""
    a = model.action
    n = len(w.videos)
    speed = w.actions[:, 0, _speed_column(model)].numpy()
    everyone = np.arange(n)
    shuffled = speed_matched(speed, w.videos, everyone, everyone)
    if (shuffled < 0).any():
        raise ValueError(f"{dataset.root}: shuffled actions need windows of 2+ videos")
    names = list(dataset.label_names)
    keep = everyone[w.soon_maneuver == names.index(DEFAULT_MANEUVER)]
    queries = np.sort(rng.permutation(keep)[:max_queries])
    donors = {}
    for m in (m for m in COUNTERFACTUALS if m in names):
        pool = everyone[w.soon_maneuver == names.index(m)]
        matched = speed_matched(speed, w.videos, queries, pool)
        if (matched >= 0).any():
            donors[m] = matched
    steer = a.signals.index("steering") if "steering" in a.signals else None
    planned = set(_plan_sample(w, z, steer, plan_windows, rng).tolist()) if plan_windows else set()
    spec = dataset.spec
    shift = spec.stride_s * spec.fps / model.config.clip.tubelet_t
    whole = round(shift) if abs(shift - round(shift)) < 1e-6 else 0
    return _Plan(shuffled, queries, donors, planned, whole if 0 < whole < a.soon_steps else 0)


@torch.no_grad()
def action_report(
    model: TriTemporalModel,
    data: str | VideoClips,
    baseline: TriTemporalModel | None = None,
    batch_size: int = 16,
    seed: int = 0,
    max_queries: int = 256,
    plan_windows: int = 64,
    cem: CemSpec | None = None,
    clear_z: float = 0.5,
    bootstrap: int = 1000,
    toward_windows: int = 32,
    bounds: ControlBounds | None = None,
) -> dict:
    """The action-conditioning report (module docstring) of a conditioned model on `data`; the
    action gain carries a 95% interval from `bootstrap` resamples of held-out videos. Planning
    toward a lane change uses up to `toward_windows` windows (0: no `toward` part)."""
    if model.action is None:
        raise ValueError("the action report needs an action-conditioned model")
    dataset = eval_dataset(model.config, data) if isinstance(data, str) else data
    model.eval()
    a = model.action
    w = action_windows(model, dataset)
    z = (w.actions - a.mean.float().cpu()) / a.std.float().cpu()
    rng = np.random.default_rng(seed)
    plan_ = _choose(model, dataset, w, z, rng, max_queries, plan_windows)
    variants = ("true", "shuffled", "mean", "copy")
    tally = _Tally({k: torch.zeros(a.soon_steps, dtype=torch.float64) for k in variants})
    tally.injected = {m: [] for m in plan_.donors}
    gen = torch.Generator().manual_seed(seed)
    n, device = len(w.videos), model.pixel_mean.device
    with phase("action report: forecasts, retrieval, planning", n, "windows", device) as advance:
        for start in range(0, n, batch_size):
            idx = np.arange(start, min(n, start + batch_size))
            _score_batch(model, dataset, w, z, idx, plan_, tally, cem or CemSpec(), gen)
            advance(len(idx))
    horizons = soon_horizons(model.config)
    l1 = {k: (v / n).tolist() for k, v in tally.sums.items()}
    pairs = zip(l1["shuffled"], l1["true"], strict=True)
    report = {
        "windows": n,
        "signals": list(a.signals),
        "horizon_s": horizons,
        "soon_l1": {"true_actions": l1["true"], "shuffled_actions": l1["shuffled"],
                    "mean_action": l1["mean"], "copy_last": l1["copy"]},
        "action_gain": [(s - t) / s if s > 0 else float("nan") for s, t in pairs],
        "action_gain_interval": _gain_intervals(tally, w.videos, bootstrap, seed),
        "l1_over_copy": [t / cp for t, cp in zip(l1["true"], l1["copy"], strict=True)],
        "counterfactual": _retrieval(tally, w, list(dataset.label_names), plan_, bootstrap),
        "consistency": _consistency(tally, horizons[plan_.shift :] if plan_.shift else []),
        "planning": _planning_report(tally, w.videos, list(a.signals), clear_z, bootstrap),
    }  # fmt: skip
    if toward_windows > 0:
        toward = TowardSpec(
            cem or CemSpec(), bounds or ControlBounds(), seed, bootstrap, batch_size
        )
        with phase("action report: planning toward a lane change", 1, "parts", device) as advance:
            bank, present = torch.cat(tally.bank), torch.cat(tally.present)
            report["toward"] = toward_report(
                model, dataset, w, bank, present, toward_windows, toward
            )
            advance(1)
    if baseline is not None:
        held_out = eval_dataset(baseline.config, dataset.root)
        with phase("action report: unconditioned", len(held_out), "windows", device) as advance:
            soon = extract(baseline, held_out, batch_size, progress=advance).soon
        report["unconditioned"] = {
            "soon_l1": soon["model_l1"].tolist(),
            "copy_last": soon["copy_l1"].tolist(),
            "l1_over_copy": (soon["model_l1"] / soon["copy_l1"]).tolist(),
        }
    return report


def _score_batch(
    model: TriTemporalModel,
    dataset: VideoClips,
    w: ActionWindows,
    z: torch.Tensor,
    idx: np.ndarray,
    plan_: _Plan,
    tally: _Tally,
    cem: CemSpec,
    gen: torch.Generator,
) -> None:
    """One batch of windows: encode once, forecast under every variant, add to the tally."""
    a, c = model.action, model.config.clip
    steps, (_, gh, gw) = a.soon_steps, c.grid
    device = model.pixel_mean.device
    clips = model.normalize(torch.stack([dataset[int(i)]["video"] for i in idx]).to(device))
    targets = model.teacher_targets(clips)
    truth = targets[:, model.soon_idx[0]]
    now = model.now_tokens(clips)
    # the teacher's present: copy-last, the scorer's "now", and where a floored forecast starts
    teacher_now = model.present_step(clips)
    present = teacher_now if model.soon_floor is not None else None

    def forecast(rows: slice | np.ndarray, actions: torch.Tensor) -> torch.Tensor:
        start = None if present is None else present[rows]
        return model.forecast_from_now(now[rows], actions, start)

    every = slice(None)
    own = w.actions[idx].to(device)
    true_pred = forecast(every, own)
    shuffled = _with_actions(own, w.actions[plan_.shuffled[idx]].to(device))
    forecasts = {
        "true": true_pred,
        "shuffled": forecast(every, shuffled),
        "mean": forecast(every, _with_actions(own, a.mean.float().expand_as(own))),
        "copy": teacher_now.repeat(1, steps, 1),  # the forecast that knows only the present
    }
    for key, pred in forecasts.items():
        l1 = _l1_steps(pred, truth, steps).double().cpu()
        tally.sums[key] += l1.sum(0)
        if key in ("true", "shuffled"):
            tally.per_window.setdefault(key, []).append(l1)
    tally.bank.append(pool_steps(truth, steps, (gh, gw)).half().cpu())
    tally.present.append(pool_steps(teacher_now, 1, (gh, gw)).half().cpu())
    rows = np.flatnonzero(np.isin(idx, plan_.queries))
    if len(rows):
        tally.own.append(pool_steps(true_pred[rows], steps, (gh, gw)).half().cpu())
        at = np.searchsorted(plan_.queries, idx[rows])
        for m, matched in plan_.donors.items():
            ok = matched[at] >= 0
            acts = _with_actions(own[rows[ok]], w.actions[matched[at][ok]].to(device))
            pooled = pool_steps(forecast(rows[ok], acts), steps, (gh, gw))
            tally.injected[m].append((idx[rows[ok]], pooled.half().cpu()))
    if plan_.shift:
        batch = [(int(q), true_pred[i], truth[i]) for i, q in enumerate(idx)]
        for earlier, later in zip([tally.previous, *batch[:-1]], batch, strict=True):
            if earlier is not None and _successive(w, earlier[0], later[0], dataset):
                between, to_truth = _overlap(earlier, later, plan_.shift, steps, gh * gw)
                tally.between.append(between)
                tally.to_truth.append(to_truth)
        tally.previous = batch[-1]
    for i, q in enumerate(idx):
        if int(q) in plan_.planned:
            start = None if present is None else present[i : i + 1]
            mu = plan(model, now[i : i + 1], own[i : i + 1, 0], truth[i : i + 1], cem, gen, start)
            tally.planned_windows.append(int(q))
            tally.plans.append(mu.mean(0).numpy())
            tally.randoms.append(torch.randn(steps, len(a.signals), generator=gen).mean(0).numpy())
            tally.trues.append(_step_means(z[q : q + 1, 1:], steps)[0].mean(0).numpy())


def _gain_intervals(
    tally: _Tally, videos: np.ndarray, bootstrap: int, seed: int
) -> list[list[float]]:
    """Per horizon, the 95% interval of the action gain over resamples of held-out videos."""
    true = torch.cat(tally.per_window["true"]).numpy()
    shuffled = torch.cat(tally.per_window["shuffled"]).numpy()
    resamples = video_resamples(videos, bootstrap, seed)
    out = []
    for k in range(true.shape[1]):

        def gain(idx: np.ndarray, k: int = k) -> float:
            s = shuffled[idx, k].sum()
            return float((s - true[idx, k].sum()) / s) if s > 0 else float("nan")

        out.append(list(bootstrap_interval(gain, resamples)))
    return out


def _successive(w: ActionWindows, i: int, j: int, dataset: VideoClips) -> bool:
    """True when window j starts one stride after window i, in the same video."""
    stride = dataset.spec.stride_s
    return w.videos[i] == w.videos[j] and abs(w.starts[j] - w.starts[i] - stride) < 1e-6


def _overlap(
    earlier: tuple, later: tuple, shift: int, steps: int, hw: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per shared step: L1 between the two windows' forecasts, and their mean L1 to truth."""
    fi, ti = (x.view(steps, hw, -1) for x in earlier[1:])
    fj, tj = (x.view(steps, hw, -1) for x in later[1:])
    a, b = fi[shift:], fj[: steps - shift]
    between = (a - b).abs().mean(dim=(1, 2))
    to_truth = ((a - ti[shift:]).abs() + (b - tj[: steps - shift]).abs()).mean(dim=(1, 2)) / 2
    return between.cpu(), to_truth.cpu()


def _retrieval(
    tally: _Tally, w: ActionWindows, names: list[str], plan_: _Plan, bootstrap: int
) -> dict:
    """How often each injected maneuver's forecasts retrieve a real future with that maneuver,
    against the same windows' own (keep-lane) actions; 95% intervals over the queries' videos."""
    soon_maneuver = w.soon_maneuver
    bank = torch.cat(tally.bank).float()
    out = {"queries": len(plan_.queries), "bank": len(bank), "maneuvers": {}}
    if not tally.own:
        return out
    own = torch.cat(tally.own).float()
    own_hits = soon_maneuver[torch.cdist(own, bank).argmin(dim=1).numpy()]
    for m, parts in tally.injected.items():
        if not parts:
            continue
        windows = np.concatenate([p[0] for p in parts])
        pooled = torch.cat([p[1] for p in parts]).float()
        hits = soon_maneuver[torch.cdist(pooled, bank).argmin(dim=1).numpy()]
        target = names.index(m)
        injected = float(np.mean(hits == target))
        own = own_hits[np.searchsorted(plan_.queries, windows)] == target
        own_rate = float(np.mean(own))
        where = w.videos[windows]
        out["maneuvers"][m] = {
            "queries": len(windows),
            "injected": injected,
            "injected_interval": rate_interval(hits == target, where, bootstrap, 0),
            "own_actions": own_rate,
            "own_actions_interval": rate_interval(own, where, bootstrap, 0),
            "ratio": injected / own_rate if own_rate > 0 else None,
            "bank_share": float(np.mean(soon_maneuver == target)),
        }
    return out


def _consistency(tally: _Tally, horizons: list[float]) -> dict:
    """Mean distance between overlapping windows' forecasts of the same step, and to truth."""
    if not tally.between:
        return {"pairs": 0, "horizon_s": horizons}
    return {
        "pairs": len(tally.between),
        "horizon_s": horizons,
        "forecast_vs_forecast": torch.stack(tally.between).mean(0).tolist(),
        "forecast_vs_truth": torch.stack(tally.to_truth).mean(0).tolist(),
    }


ACTIONS_JSON = "actions.json"
ACTIONS_PNG = "soon_actions.png"


def write_action_report(report: dict, out: str | Path) -> Path:
    """actions.json and the SOON-error-per-horizon plot (true, shuffled, mean action, copy)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / ACTIONS_JSON).write_text(json.dumps(report, indent=1))
    names = {
        "true_actions": "true actions",
        "shuffled_actions": "shuffled actions (speed-matched)",
        "mean_action": "mean action",
        "copy_last": "copy last NOW step",
    }
    series = {label: report["soon_l1"][key] for key, label in names.items()}
    plot_horizon(
        report["horizon_s"], series, out / ACTIONS_PNG,
        "Action-conditioned SOON: forecast error vs horizon", "L1 to teacher targets",
    )  # fmt: skip
    return out


def action_lines(report: dict) -> list[str]:
    """The headline numbers of the action report, as `tritemporal eval` prints them."""
    fmt = lambda xs: " ".join(f"{x:.3f}" for x in xs)  # noqa: E731
    lines = [
        f"ACTIONS ({', '.join(report['signals'])}; {report['windows']} windows)",
        f"  horizon s          {fmt(report['horizon_s'])}",
        f"  L1 true actions    {fmt(report['soon_l1']['true_actions'])}",
        f"  L1 shuffled        {fmt(report['soon_l1']['shuffled_actions'])}",
        f"  L1 mean action     {fmt(report['soon_l1']['mean_action'])}",
        f"  action gain        {fmt(report['action_gain'])}  (95% over videos: "
        + ", ".join(f"[{lo:.3f}, {hi:.3f}]" for lo, hi in report["action_gain_interval"])
        + ")",
        f"  L1 / copy-last     {fmt(report['l1_over_copy'])}",
    ]
    if "unconditioned" in report:
        lines.append(f"  unconditioned / copy-last {fmt(report['unconditioned']['l1_over_copy'])}")
    for m, r in report["counterfactual"]["maneuvers"].items():
        lines.append(
            f"  retrieval {m}: injected {r['injected']:.3f} {brackets(r['injected_interval'])} vs "
            f"own actions {r['own_actions']:.3f} {brackets(r['own_actions_interval'])}"
            f" ({r['queries']} keep-lane windows)"
        )
    cons = report["consistency"]
    if cons["pairs"]:
        lines.append(
            f"  consistency ({cons['pairs']} pairs): between forecasts "
            f"{fmt(cons['forecast_vs_forecast'])}, to truth {fmt(cons['forecast_vs_truth'])}"
        )
    for name, r in report["planning"]["signals"].items():
        p, q = r["planned"], r["random"]
        if p["sign_agreement"] is None:
            continue
        lines.append(
            f"  planning {name}: sign agreement {p['sign_agreement']:.3f} "
            f"{brackets(p['sign_agreement_interval'])} (random {q['sign_agreement']:.3f} "
            f"{brackets(q['sign_agreement_interval'])}) on {p['clear_windows']} windows; "
            f"correlation {_num(p['correlation'])} (random {_num(q['correlation'])})"
        )
    if "toward" in report:
        lines += toward_lines(report["toward"])
    return lines


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"
