"""Planning toward a maneuver: which steering and acceleration make the forecast a lane change?

V-JEPA 2-AC plans toward the embedding of a goal frame; a driver has no picture of the future to
aim at, only an outcome ("end up in the lane to my left"). Here the goal is a maneuver, scored on
the action-conditioned SOON forecast itself:

- **Maneuver scorer** (`eval/maneuver_scorer.py`): a linear probe of maneuver log-probabilities
  on pooled SOON tokens and their change from the present, fitted on the teacher's real SOON
  tokens of labelled windows, scoring the model's forecast here.
- **Cross-entropy method toward a maneuver.** Steering (rad) and acceleration (m/s^2), one vector
  per SOON tubelet step (repeated over its frames, as the action module averages them), sampled
  within what a car can do (`ControlBounds`); cost = -log p(maneuver | forecast under them).
  The state row stays the window's own (an observation); speed follows the planned acceleration.
- **The simulator's verdict.** For a highway-env clip, `replay_lane_shift` drives the ego with a
  plan from the window's last NOW frame (`data.highway_replay`) and says which lane it ends in.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from tritemporal.data.annotations import Annotation, load_annotation, read_annotation_json
from tritemporal.data.highway_replay import VIDEO_SUFFIX, replay
from tritemporal.data.video_files import annotation_of
from tritemporal.data.video_windows import VideoWindows
from tritemporal.data.videos import VideoClips, label_vocabulary
from tritemporal.data.windows import WindowSpec, native_indices
from tritemporal.eval.maneuver_scorer import ManeuverScorer, soon_maneuvers
from tritemporal.eval.plots import save_figure
from tritemporal.eval.progress import phase
from tritemporal.files import write_text
from tritemporal.model import TriTemporalModel

CONTROLS = ("steering", "acceleration")  # what the planner chooses, in this order
PLAN_JSON = "plan.json"
PLAN_PNG = "plan.png"

logger = logging.getLogger(__name__)


@dataclass
class ActionWindows:
    """What the evaluation needs of every held-out window, read from annotations alone."""

    actions: torch.Tensor  # (N, 1 + soon_frames, F): state row, then the SOON frames
    soon_maneuver: np.ndarray  # (N,) maneuver id during the SOON part (UNLABELLED: none)
    videos: np.ndarray  # (N,)
    starts: np.ndarray  # (N,) seconds


def action_windows(model: TriTemporalModel, dataset: VideoClips) -> ActionWindows:
    """Actions, SOON maneuvers, videos and start times of every window (no video decoding)."""
    assert model.action is not None
    frames = model.action.frames
    values = dataset.signal_values(model.action.signals, model.config.clip.action_rows)
    return ActionWindows(
        actions=values.view(len(dataset), frames, -1).float(),
        soon_maneuver=soon_maneuvers(model.config, dataset),
        videos=np.asarray(dataset.video_ids),
        starts=dataset.window_starts,
    )


@dataclass(frozen=True)
class CemSpec:
    """Cross-entropy method: one vector per SOON step, `iterations` rounds of `population`
    samples, refitted to the best `elites`."""

    population: int = 64
    elites: int = 8
    iterations: int = 5


@dataclass(frozen=True)
class ControlBounds:
    """What a car can do: the steering (rad) and acceleration (m/s^2) ranges the planner searches
    and random baselines draw from."""

    steering: tuple[float, float] = (-0.15, 0.15)
    acceleration: tuple[float, float] = (-6.0, 3.0)

    def __post_init__(self) -> None:
        for name in CONTROLS:
            low, high = getattr(self, name)
            if not (np.isfinite(low) and np.isfinite(high) and low < high):
                raise ValueError(f"ControlBounds.{name}=({low}, {high}): need finite low < high")

    @property
    def low(self) -> torch.Tensor:
        """(2,) lower bounds: steering, acceleration."""
        return torch.tensor([self.steering[0], self.acceleration[0]])

    @property
    def high(self) -> torch.Tensor:
        """(2,) upper bounds: steering, acceleration."""
        return torch.tensor([self.steering[1], self.acceleration[1]])

    def uniform(self, n: int, steps: int, generator: torch.Generator) -> torch.Tensor:
        """`n` random plans (n, steps, 2), uniform within the bounds."""
        u = torch.rand(n, steps, 2, generator=generator)
        return self.low + u * (self.high - self.low)


def plan_rows(
    signals: tuple[str, ...], state: torch.Tensor, controls: torch.Tensor, fps: float
) -> torch.Tensor:
    """Action rows (P, 1 + soon_frames, F) of plans `controls` (P, soon_frames, 2) [steering,
    acceleration] from the state row (F,): steering and acceleration as planned, `speed`
    integrated from the state's with the planned acceleration (dt = 1/fps, floored at 0), any
    other signal held at its state value."""
    p, frames, _ = controls.shape
    state = state.reshape(-1).float().to(controls.device)
    rows = state.expand(p, 1 + frames, -1).clone()
    for k, name in enumerate(CONTROLS):
        rows[:, 1:, signals.index(name)] = controls[..., k]
    if "speed" in signals:
        v, s = state[signals.index("speed")].expand(p), signals.index("speed")
        for j in range(frames):  # the floor applies frame by frame: a stopped car stays put
            v = (v + controls[:, j, 1] / fps).clamp(min=0.0)
            rows[:, 1 + j, s] = v
    return rows


def check_plannable(model: TriTemporalModel, scorer: ManeuverScorer, maneuver: str) -> int:
    """The logit index of `maneuver`, or a ValueError saying why the model cannot plan toward it."""
    if model.action is None:
        raise ValueError(
            "planning needs an action-conditioned model (predictor.action_conditioning=true when "
            "it was trained)"
        )
    missing = [name for name in CONTROLS if name not in model.action.signals]
    if missing:
        raise ValueError(
            f"planning chooses {' and '.join(CONTROLS)}, but the model's action.signals "
            f"{list(model.action.signals)} has no {missing}"
        )
    if maneuver not in scorer.label_names:
        raise ValueError(
            f"maneuver {maneuver!r} is not one the scorer knows: {', '.join(scorer.label_names)} "
            "(those its training windows showed in their SOON part)"
        )
    return scorer.label_names.index(maneuver)


@dataclass(frozen=True)
class Plan:
    """A plan: controls per SOON frame, the action rows the forecast took, log p(maneuver)."""

    controls: np.ndarray  # (soon_frames, 2): steering rad, acceleration m/s^2
    actions: torch.Tensor  # (1 + soon_frames, F), in action.signals order
    log_prob: float

    @property
    def probability(self) -> float:
        """The scorer's probability of the asked maneuver under the plan."""
        return float(np.exp(self.log_prob))


@torch.no_grad()
def maneuver_log_prob(
    model: TriTemporalModel,
    now: torch.Tensor,
    present: torch.Tensor,
    actions: torch.Tensor,
    scorer: ManeuverScorer,
    k: int,
) -> torch.Tensor:
    """(P,) log p(maneuver k) of the forecasts of one window (NOW tokens (1, N, D), teacher
    present (1, h*w, D)) under action rows (P, 1 + soon_frames, F)."""
    start = present if model.soon_floor is not None else None  # a floored forecast's start
    forecast = model.forecast_from_now(now, actions.to(now.device), start)
    return scorer.log_probs(forecast, present)[:, k].cpu()


def per_frame(steps: torch.Tensor, tubelet_t: int) -> torch.Tensor:
    """Per-step plans (P, steps, 2) -> per-frame (P, steps * tubelet_t, 2)."""
    return steps.repeat_interleave(tubelet_t, dim=1)


@torch.no_grad()
def plan_toward(
    model: TriTemporalModel,
    now: torch.Tensor,
    present: torch.Tensor,
    state: torch.Tensor,
    scorer: ManeuverScorer,
    maneuver: str,
    bounds: ControlBounds = ControlBounds(),
    spec: CemSpec = CemSpec(),
    generator: torch.Generator | None = None,
) -> Plan:
    """The cross-entropy method's controls toward `maneuver` for one window: NOW tokens (1, N, D),
    the teacher's present (1, h*w, D) and the state row (F,) in action.signals' units."""
    k = check_plannable(model, scorer, maneuver)
    a, fps = model.action, model.config.data.fps
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    low, high = bounds.low, bounds.high
    mu = torch.zeros(2).clamp(low, high).expand(a.soon_steps, 2)  # start near coasting
    sigma = ((high - low) / 2).expand(a.soon_steps, 2)

    def cost(plans: torch.Tensor) -> torch.Tensor:
        rows = plan_rows(a.signals, state, per_frame(plans, a.tubelet_t), fps)
        return -maneuver_log_prob(model, now, present, rows, scorer, k)

    for _ in range(spec.iterations):
        noise = torch.randn(spec.population, a.soon_steps, 2, generator=generator)
        plans = torch.maximum(torch.minimum(mu + sigma * noise, high), low)
        elite = plans[cost(plans).argsort()[: spec.elites]]
        mu, sigma = elite.mean(0), torch.maximum(elite.std(0), (high - low) / 100)
    controls = per_frame(mu[None], a.tubelet_t)
    rows = plan_rows(a.signals, state, controls, fps)
    return Plan(controls[0].numpy(), rows[0], -float(cost(mu[None])[0]))


def last_now_frame(spec: WindowSpec, start: float, native_fps: float, frames: int) -> int:
    """The native frame a window starting at `start` s shows as its last NOW frame (its state
    row), as windows.py picks frames: frame_times -> native_indices."""
    t = spec.frame_times(start)[spec.now_frames - 1]
    return int(native_indices(np.array([t]), native_fps, frames)[0])


def native_controls(
    spec: WindowSpec, start: float, native_fps: float, frames: int, controls: np.ndarray
) -> tuple[int, np.ndarray]:
    """(takeover frame, controls per native frame step from it) of per-SOON-frame controls
    (soon_frames, 2): step k (frame k -> k + 1) takes the row of the first SOON frame at or after
    native frame k + 1; at data.fps = the clip's fps, the rows as they are."""
    times = spec.frame_times(start)[spec.now_frames - 1 : spec.now_frames + spec.soon_frames]
    shown = native_indices(times, native_fps, frames)  # last NOW frame, then each SOON frame
    steps = np.arange(shown[0], shown[-1])
    rows = np.searchsorted(shown[1:], steps + 1).clip(0, len(controls) - 1)
    return int(shown[0]), np.asarray(controls)[rows]


def highway_annotation(video: str | Path) -> Path | None:
    """The annotation of a highway-env clip (source.generator "highway-env", its video beside
    it, as make-clips writes them), or None for any other video."""
    path = annotation_of(video)
    if path is None or not (path.parent.parent / "videos" / f"{path.stem}{VIDEO_SUFFIX}").is_file():
        return None
    source = read_annotation_json(path).get("source")
    return path if isinstance(source, dict) and source.get("generator") == "highway-env" else None


def replay_lane_shift(
    annotation: Path, spec: WindowSpec, start: float, controls: np.ndarray, horizon_s: float
) -> tuple[int, bool]:
    """(lanes moved, < 0 to the left; crashed) when the simulator replays the clip to the last
    NOW frame of the window starting at `start` s, drives the ego with `controls` (soon_frames,
    2), then keeps its lane until `horizon_s` after the takeover."""
    data = read_annotation_json(annotation)
    fps, frames = float(data["source"]["fps"]), len(data["ego"]["time"])
    frame, rows = native_controls(spec, start, fps, frames, controls)
    hold_s = max(0.0, horizon_s - spec.soon_frames / spec.fps)
    run = replay(annotation, frame, rows, hold_s)
    return run.end_lane - run.start_lane, run.crashed


def lanes_on_both_sides(annotation: Annotation, time: float) -> bool:
    """Whether the ego has a lane on each side at `time` s: from scene facts (left_lane and
    right_lane not "no_lane"), else from the ego's `lane` series (0 < lane < the highest lane
    it is ever in; lane 0 is the leftmost); False when the annotation says neither."""
    scene = annotation.scene_at(torch.tensor([time], dtype=torch.float64))
    if "left_lane" in scene and "right_lane" in scene:
        return scene["left_lane"][0] != "no_lane" and scene["right_lane"][0] != "no_lane"
    if "lane" not in annotation.ego:
        return False
    lane = float(annotation.signals_at(torch.tensor([time], dtype=torch.float64))["lane"][0])
    return 0 < lane < float(annotation.ego["lane"].max())


# --- `tritemporal plan`: one window of one video -------------------------------------------


def open_window(model: TriTemporalModel, video: str | Path, at: float | None) -> VideoWindows:
    """The window of `video` starting at `at` s (None: its first window), cut as training cuts
    them."""
    windows = VideoWindows.open(model.config, video)
    if at is None:
        return dataclasses.replace(windows, starts=windows.starts[:1])
    last = windows.meta.duration - windows.spec.span_s
    if not 0 <= at <= last + 1e-6:
        raise ValueError(
            f"--at {at:g} s is beyond video {video}: it lasts {windows.meta.duration:.2f} s and "
            f"a window spans {windows.spec.span_s:.2f} s, so windows start from 0 to {last:.2f} s"
        )
    return dataclasses.replace(windows, starts=np.array([float(at)]))


def recorded_actions(
    model: TriTemporalModel, video: str | Path, start: float
) -> torch.Tensor | None:
    """The window's own action rows (1 + soon_frames, F) from the video's annotation; None
    without one, or when it lacks one of action.signals."""
    path = annotation_of(video)
    if path is None:
        return None
    annotation = load_annotation(path, label_vocabulary(model.config.data.extra_maneuvers))
    signals = model.action.signals
    missing = [name for name in signals if name not in annotation.ego]
    if missing:
        logger.warning("%s has no ego series %s: no recorded actions to compare", path, missing)
        return None
    times = WindowSpec.from_config(model.config).frame_times(start)[model.config.clip.action_rows]
    at = annotation.signals_at(torch.from_numpy(times))
    return torch.stack([at[name] for name in signals], dim=-1).float()


@dataclass(frozen=True)
class VideoPlan:
    """`tritemporal plan`'s result for one window of one video."""

    video: str
    start: float  # s, the window's start
    maneuver: str
    times: np.ndarray  # (soon_frames,) s of each SOON frame in the video
    plan: Plan
    recorded: np.ndarray | None  # (soon_frames, 2) the window's own steering, acceleration
    recorded_probability: float | None  # the scorer's p(maneuver) under the recorded actions
    bounds: ControlBounds


@torch.no_grad()
def plan_video(
    model: TriTemporalModel,
    windows: VideoWindows,
    scorer: ManeuverScorer,
    maneuver: str,
    seed: int = 0,
    bounds: ControlBounds = ControlBounds(),
    spec: CemSpec = CemSpec(),
) -> VideoPlan:
    """Plan toward `maneuver` from the first window of `windows` (see `open_window`)."""
    k = check_plannable(model, scorer, maneuver)
    model.eval()
    start, c, device = float(windows.starts[0]), model.config.clip, model.pixel_mean.device
    own = recorded_actions(model, windows.path, start)
    if own is None:
        logger.warning("%s: no recorded state; planning from the training-mean state", windows.path)
    state = own[0] if own is not None else model.action.mean.float().cpu()
    gen = torch.Generator().manual_seed(seed)
    recorded, probability = None, None
    with phase(f"planning toward {maneuver}", 1, "plans", device) as advance:
        clips = model.normalize(windows.clip(0)[None].to(device))
        now, present = model.now_tokens(clips), model.present_step(clips)
        plan = plan_toward(model, now, present, state, scorer, maneuver, bounds, spec, gen)
        if own is not None:
            log_p = maneuver_log_prob(model, now, present, own[None], scorer, k)
            probability = float(log_p.exp()[0])
            recorded = own[1:, [model.action.signals.index(s) for s in CONTROLS]].numpy()
        advance(1)
    times = windows.spec.frame_times(start)[c.now_frames : c.now_frames + c.soon_frames]
    return VideoPlan(str(windows.path), start, maneuver, times, plan, recorded, probability, bounds)


def plan_lines(result: VideoPlan) -> list[str]:
    """The table `tritemporal plan` prints: planned (and recorded) controls per SOON frame."""
    head = f"{'time s':>8} {'steering rad':>13} {'accel m/s^2':>12}"
    if result.recorded is not None:
        head += f" {'recorded steer':>15} {'recorded accel':>15}"
    lines = [
        f"plan toward {result.maneuver}: {result.video}, window at {result.start:.2f} s (SOON "
        f"{result.times[0]:.2f}-{result.times[-1]:.2f} s)",
        head,
    ]
    for j, t in enumerate(result.times):
        row = f"{t:>8.3f} {result.plan.controls[j, 0]:>13.4f} {result.plan.controls[j, 1]:>12.3f}"
        if result.recorded is not None:
            row += f" {result.recorded[j, 0]:>15.4f} {result.recorded[j, 1]:>15.3f}"
        lines.append(row)
    line = f"p({result.maneuver}): planned {result.plan.probability:.3f}"
    if result.recorded_probability is not None:
        line += f", recorded actions {result.recorded_probability:.3f}"
    return [*lines, line]


def plan_figure(result: VideoPlan) -> Figure:
    """Planned (and recorded) steering and acceleration over the SOON window, with the bounds."""
    fig = Figure(figsize=(7.5, 5.0), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True)
    units = ("steering (rad)", "acceleration (m/s$^2$)")
    for k, (ax, unit) in enumerate(zip(axes, units, strict=True)):
        ax.plot(result.times, result.plan.controls[:, k], marker="o", label="planned")
        if result.recorded is not None:
            ax.plot(result.times, result.recorded[:, k], marker="s", ls="--", label="recorded")
        for bound in getattr(result.bounds, CONTROLS[k]):
            ax.axhline(bound, color="grey", lw=0.8, ls=":")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    axes[1].set_xlabel("time in the video (s)")
    title = f"toward {result.maneuver}: p = {result.plan.probability:.3f}"
    if result.recorded_probability is not None:
        title += f" (recorded actions {result.recorded_probability:.3f})"
    axes[0].set_title(title)
    return fig


def write_plan(result: VideoPlan, out: str | Path) -> tuple[Path, Path]:
    """PLAN_JSON and PLAN_PNG (the controls over the SOON window) in `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "video": result.video,
        "start_s": result.start,
        "maneuver": result.maneuver,
        "soon_times_s": result.times.tolist(),
        "planned": _by_control(result.plan.controls),
        "recorded": None if result.recorded is None else _by_control(result.recorded),
        "probability": {
            "planned": result.plan.probability,
            "recorded": result.recorded_probability,
        },
        "bounds": {n: list(getattr(result.bounds, n)) for n in CONTROLS},
    }
    write_text(out / PLAN_JSON, json.dumps(record, indent=1) + "\n")
    return out / PLAN_JSON, save_figure(plan_figure(result), out / PLAN_PNG)


def _by_control(controls: np.ndarray) -> dict[str, list[float]]:
    """Controls (frames, 2) as {"steering": [...], "acceleration": [...]}."""
    return {name: controls[:, k].tolist() for k, name in enumerate(CONTROLS)}
