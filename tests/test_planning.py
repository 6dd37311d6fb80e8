"""Planning toward a maneuver: action rows from a plan, the cross-entropy method on a planted
scorer, the scorer's files, `tritemporal plan` end to end and the action report's part, on
tiny models and a few short highway-env clips."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import tiny_config
from tritemporal.cli import main
from tritemporal.data.annotations import Annotation, load_annotation
from tritemporal.data.highway import make_clips
from tritemporal.data.windows import WindowSpec
from tritemporal.eval import planning
from tritemporal.eval.actions import action_lines, action_report
from tritemporal.eval.maneuver_scorer import (
    SCORER_CONFIG,
    ManeuverScorer,
    maneuver_features,
    pool_steps,
    scorer_from_pooled,
)
from tritemporal.eval.planning import (
    CemSpec,
    ControlBounds,
    action_windows,
    check_plannable,
    lanes_on_both_sides,
    last_now_frame,
    native_controls,
    plan_rows,
    plan_toward,
)
from tritemporal.eval.report import eval_dataset
from tritemporal.heads.probe import LinearProbe
from tritemporal.model import TriTemporalModel
from tritemporal.train import train

COND = ["predictor.action_conditioning=true"]
LABELS = ["keep_lane", "lane_change_left", "lane_change_right"]
FAST = CemSpec(population=24, elites=4, iterations=3)
# env seeds -> clip names: the keep-lane ones (4, 5, 1) drive in a middle lane of four, 13 has a
# left and 11, 12 a right lane change. Sorted by name they are videos 0-5, and the report's seed-0
# split fits its scorer on videos 3, 2, 5 (the lane changes) and plans on 0, 1, 4.
CLIPS = {"c0": 4, "c1": 5, "c2": 13, "c3": 11, "c4": 1, "c5": 12}
DATA = [
    *COND, "data.source=videos", "data.fps=8", "data.stride_s=0.5", "clip.image_size=32",
    "train.batch_size=2", "train.steps=2", "train.ckpt_every=2",
]  # fmt: skip


def _model(*extra: str, seed: int = 0) -> TriTemporalModel:
    """A tiny conditioned model with statistics of plausible speed, steering, acceleration."""
    torch.manual_seed(seed)
    model = TriTemporalModel(tiny_config(*COND, *extra)).eval()
    n = len(model.action.signals)
    g = torch.Generator().manual_seed(0)
    model.action.fit_statistics(torch.randn(256, n, generator=g) * 0.1 + 1.0)
    return model


def test_action_rows_integrate_speed_and_hold_other_signals() -> None:
    signals = ("yaw_rate", "acceleration", "speed", "steering")
    state = torch.tensor([0.3, 0.5, 2.0, 0.01])
    controls = torch.zeros(2, 4, 2)
    controls[0, :, 0], controls[0, :, 1] = 0.1, -6.0  # brake hard: 2 m/s stops within 3 frames
    controls[1, :, 0], controls[1, :, 1] = -0.05, 2.0
    rows = plan_rows(signals, state, controls, fps=8.0)
    assert rows.shape == (2, 5, 4)
    assert torch.equal(rows[:, 0], state.expand(2, 4))  # the state row is the window's own
    assert torch.equal(rows[:, 1:, 0], torch.full((2, 4), 0.3))  # held
    assert torch.equal(rows[:, 1:, 3], controls[..., 0]) and torch.equal(
        rows[:, 1:, 1], controls[..., 1]
    )
    assert torch.allclose(rows[0, 1:, 2], torch.tensor([1.25, 0.5, 0.0, 0.0]))  # floored at 0
    assert torch.allclose(rows[1, 1:, 2], torch.tensor([2.25, 2.5, 2.75, 3.0]))
    bounds = ControlBounds()
    draws = bounds.uniform(500, 3, torch.Generator().manual_seed(0))
    assert (draws >= bounds.low).all() and (draws <= bounds.high).all()
    assert draws[..., 0].min() < -0.1 and draws[..., 1].max() > 2.0  # they fill the box
    with pytest.raises(ValueError, match=r"ControlBounds.steering=\(0.1, -0.1\)"):
        ControlBounds(steering=(0.1, -0.1))


def _planted(model: TriTemporalModel, monkeypatch: pytest.MonkeyPatch) -> tuple:
    """A forecast whose channel 0 is the mean planned steering, and a scorer whose left
    logit falls and right logit rises with that channel: (scorer, the action rows forecast)."""
    c = model.config.clip
    steps, (_, h, w) = c.slices[1], c.grid
    d = model.backbone.embed_dim
    steer = model.action.signals.index("steering")
    seen: list[torch.Tensor] = []

    def forecast(now: torch.Tensor, actions: torch.Tensor, present=None) -> torch.Tensor:
        seen.append(actions)
        out = torch.zeros(len(actions), steps * h * w, d)
        out[..., 0] = actions[:, 1:, steer].mean(dim=1, keepdim=True)
        return out

    monkeypatch.setattr(model, "forecast_from_now", forecast)
    unit = torch.zeros(1, steps * h * w, d)
    unit[..., 0] = 1.0
    now = pool_steps(torch.zeros(1, h * w, d), 1, (h, w))
    x = maneuver_features(pool_steps(unit, steps, (h, w)), now, steps)[0]
    weight = torch.stack([torch.zeros_like(x), -x, x])
    probe = LinearProbe(torch.zeros_like(x), torch.ones_like(x), weight, torch.zeros(3), LABELS)
    return ManeuverScorer(probe, steps, (h, w), "planted"), seen


def test_cem_steers_left_for_left_and_right_for_right(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model("clip.soon_frames=4")  # two SOON steps, planned apart
    scorer, seen = _planted(model, monkeypatch)
    c = model.config.clip
    now = torch.zeros(1, c.slices[0] * c.grid[1] * c.grid[2], model.backbone.embed_dim)
    present = torch.zeros(1, c.grid[1] * c.grid[2], model.backbone.embed_dim)
    state = torch.tensor([20.0, 0.0, 0.0])  # speed, steering, acceleration
    bounds = ControlBounds()
    for maneuver, sign in (("lane_change_left", -1), ("lane_change_right", 1)):
        gen = torch.Generator().manual_seed(0)
        plan = plan_toward(model, now, present, state, scorer, maneuver, bounds, CemSpec(), gen)
        assert plan.controls.shape == (c.soon_frames, 2)
        assert sign * plan.controls[:, 0].mean() > 0.1, plan.controls  # near the bound of 0.15
        assert plan.probability > 0.9 and np.isclose(plan.probability, np.exp(plan.log_prob))
        low, high = bounds.low.numpy(), bounds.high.numpy()
        assert ((plan.controls >= low) & (plan.controls <= high)).all()
        # one vector per SOON step, repeated over its frames; speed follows the acceleration
        assert np.array_equal(plan.controls[0], plan.controls[1])
        expected = plan_rows(model.action.signals, state, torch.from_numpy(plan.controls)[None], 8)
        assert torch.allclose(plan.actions, expected[0])
    every = torch.cat(seen)
    assert every[:, 1:, 1].abs().max() <= 0.15 + 1e-6 and every[:, 1:, 2].min() >= -6.0
    assert (every[:, 0] == state).all()


def test_scorer_saves_loads_and_refuses_another_model(tmp_path: Path) -> None:
    model = _model()
    c = model.config.clip
    steps, (_, h, w) = c.slices[1], c.grid
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(30, steps * h * w, model.backbone.embed_dim, generator=g)
    present = torch.randn(30, h * w, model.backbone.embed_dim, generator=g)
    labels = np.arange(30) % 3
    pooled, now = pool_steps(tokens, steps, (h, w)), pool_steps(present, 1, (h, w))
    scorer = scorer_from_pooled(model, pooled, now, labels, LABELS)
    scorer.save(tmp_path)
    loaded = ManeuverScorer.load(tmp_path, model)
    assert loaded.label_names == LABELS and loaded.fingerprint == scorer.fingerprint
    assert torch.allclose(loaded.log_probs(tokens, present), scorer.log_probs(tokens, present))
    assert json.loads((tmp_path / SCORER_CONFIG).read_text())["fitted_on"] == 30
    with pytest.raises(ValueError, match="fitted on another model's SOON tokens"):
        ManeuverScorer.load(tmp_path, _model(seed=1))
    with pytest.raises(ValueError, match=r"takes \d+ features"):
        scorer.log_probs(tokens[:, :, :8], present[:, :, :8])
    with pytest.raises(ValueError, match=r"2\+ maneuvers"):
        scorer_from_pooled(model, pooled, now, np.zeros(30, dtype=np.int64), LABELS)
    with pytest.raises(FileNotFoundError, match="no maneuver scorer"):
        ManeuverScorer.load(tmp_path / "none", model)


def test_planning_refuses_what_it_cannot_plan(tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model()
    scorer, _ = _planted(model, monkeypatch)
    with pytest.raises(ValueError, match="action-conditioned"):
        check_plannable(TriTemporalModel(tiny), scorer, "lane_change_left")
    with pytest.raises(ValueError, match=r"has no \['acceleration'\]"):
        check_plannable(_model("action.signals=[speed,steering]"), scorer, "lane_change_left")
    with pytest.raises(ValueError, match="'brake' is not one the scorer knows"):
        check_plannable(model, scorer, "brake")


def test_lanes_on_both_sides_from_scene_facts_or_the_lane_series() -> None:
    t = torch.arange(3, dtype=torch.float64)
    lanes = Annotation(ego_time=t, ego={"lane": torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)})
    assert [lanes_on_both_sides(lanes, x) for x in (0.0, 1.0, 2.0)] == [False, True, False]
    scene = {"left_lane": ("free", "occupied", "no_lane"), "right_lane": ("free",) * 3}
    facts = Annotation(ego_time=t, scene=scene)
    assert [lanes_on_both_sides(facts, x) for x in (0.0, 1.0, 2.0)] == [True, True, False]
    assert not lanes_on_both_sides(Annotation(ego_time=t, ego={"speed": t}), 1.0)


def test_window_frames_map_to_native_frames() -> None:
    spec = WindowSpec(fps=4.0, now_frames=4, soon_frames=2, eventually_frames=2)
    controls = np.array([[0.1, 1.0], [0.2, 2.0]])
    assert last_now_frame(spec, 1.0, 8.0, 100) == 14  # 1.75 s at 8 fps
    first, rows = native_controls(spec, 1.0, 8.0, 100, controls)  # SOON frames 16 and 18
    assert first == 14 and np.array_equal(rows, controls[[0, 0, 1, 1]])
    same = WindowSpec(fps=8.0, now_frames=4, soon_frames=2, eventually_frames=2)
    first, rows = native_controls(same, 1.0, 8.0, 100, controls)
    assert first == 8 + 3 and np.array_equal(rows, controls)  # start frame + now_frames - 1


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(videos folder of six 8 s highway-env clips at 8 fps, a tiny conditioned run on them)."""
    root = tmp_path_factory.mktemp("planning")
    for name, seed in CLIPS.items():
        make_clips(root / "made" / name, 1, seed=seed, fps=8.0, image_size=(64, 64), seconds=8.0)
        for sub, suffix in (("videos", ".mp4"), ("annotations", ".json")):
            (root / "data" / sub).mkdir(parents=True, exist_ok=True)
            made = root / "made" / name / sub / f"clip_00000{suffix}"
            shutil.move(made, root / "data" / sub / f"{name}{suffix}")
    run = root / "run"
    train(tiny_config(*DATA, f"data.root={root / 'data'}", f"train.run_dir={run}"))
    return root / "data", run


@pytest.mark.slow
def test_last_now_frame_is_the_state_rows_frame(sim: tuple[Path, Path]) -> None:
    data, run = sim
    model = TriTemporalModel.from_pretrained(run)
    dataset = eval_dataset(model.config, str(data))
    w = action_windows(model, dataset)
    keys = [v.key for v in dataset.video_windows()]
    for i in range(len(w.videos)):
        ego = load_annotation(data / "annotations" / f"{Path(keys[w.videos[i]]).stem}.json").ego
        start = float(w.starts[i])
        k = last_now_frame(dataset.spec, start, 8.0, len(ego["speed"]))
        assert k == round(start * 8) + model.config.clip.now_frames - 1
        state = torch.stack([ego[name][k] for name in model.action.signals]).float()
        assert torch.allclose(w.actions[i, 0], state, atol=1e-5)


@pytest.mark.slow
def test_plan_command_prints_the_table_and_writes_the_plot(
    sim: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture, caplog
) -> None:
    data, run = sim
    video = data / "videos" / "c0.mp4"
    out = tmp_path / "plan"
    argv = ["plan", str(video), "--checkpoint", str(run), "--toward", "lane_change_left"]
    assert main([*argv, "--at", "2.5", "--scorer-data", str(data), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "plan toward lane_change_left" in printed and "recorded steer" in printed
    assert "p(lane_change_left): planned" in printed and "recorded actions" in printed
    table = [line for line in printed.splitlines() if line.startswith(("   2.", "   3."))]
    assert [float(line.split()[0]) for line in table] == [3.0, 3.125]  # SOON frames of 2.5 s
    assert (out / "plan.png").read_bytes().startswith(b"\x89PNG")
    record = json.loads((out / "plan.json").read_text())
    steering = np.array(record["planned"]["steering"])
    assert np.all(np.abs(steering) <= 0.15 + 1e-6) and len(steering) == 2
    recorded = load_annotation(data / "annotations" / "c0.json").signals_at(torch.tensor([3.0]))
    assert record["recorded"]["steering"][0] == pytest.approx(float(recorded["steering"][0]))
    weights = (out / "maneuver_scorer.safetensors").stat().st_mtime_ns
    caplog.set_level(logging.INFO)
    assert main([*argv[:-1], "turn_left", "--out", str(out)]) == 2  # no --scorer-data: loaded
    assert "loaded from" in caplog.text and "--toward turn_left: the maneuver scorer" in caplog.text
    assert (out / "maneuver_scorer.safetensors").stat().st_mtime_ns == weights
    bare = tmp_path / "bare.mp4"  # no annotation: the training-mean state, nothing recorded
    shutil.copy(video, bare)
    assert main(["plan", str(bare), *argv[2:], "--out", str(out)]) == 0
    assert "recorded" not in capsys.readouterr().out
    assert json.loads((out / "plan.json").read_text())["recorded"] is None


@pytest.mark.slow
def test_plan_command_errors_name_the_flag(
    sim: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data, run = sim
    video = str(data / "videos" / "c0.mp4")
    plain = tmp_path / "plain"
    TriTemporalModel(tiny_config()).save_pretrained(plain)
    cases = {
        "is not action-conditioned": ["--checkpoint", str(plain), "--toward", "lane_change_left"],
        "--toward 'fly': unknown maneuver": ["--checkpoint", str(run), "--toward", "fly"],
        "--at 30 s is beyond video": [
            "--checkpoint", str(run), "--toward", "lane_change_left", "--at", "30"
        ],
        "pass --scorer-data DATA": [
            "--checkpoint", str(run), "--toward", "lane_change_left", "--out", str(tmp_path / "o")
        ],
    }  # fmt: skip
    for message, args in cases.items():
        caplog.clear()
        assert main(["plan", video, *args]) == 2, message
        assert message in caplog.text


@pytest.mark.slow
def test_report_plans_toward_lane_changes_and_replays_them(
    sim: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, run = sim
    model = TriTemporalModel.from_pretrained(run)
    replays = []
    real = planning.replay

    def spy(annotation, start_frame, controls, hold_s, image_size=None):
        replays.append((Path(annotation), start_frame, np.array(controls), hold_s))
        return real(annotation, start_frame, controls, hold_s, image_size)

    monkeypatch.setattr(planning, "replay", spy)
    kwargs = {"plan_windows": 0, "max_queries": 4, "bootstrap": 50, "cem": FAST}
    report = action_report(model, str(data), toward_windows=1, **kwargs)
    toward = report["toward"]
    assert "skipped" not in toward, toward
    assert toward["windows"] == 1 and toward["scorer"]["videos"] == 3
    assert {"lane_change_left", "lane_change_right"} <= set(toward["scorer"]["labels"])
    for part in (toward["steering_sign"], toward["replay"]):
        assert part["pairs"] == 2  # 1 window x 2 maneuvers
        assert set(part["by_maneuver"]) == {"lane_change_left", "lane_change_right"}
        for name in ("planned", "random"):
            low, high = part[f"{name}_interval"]
            assert 0 <= low <= part[name] <= high <= 1
    assert toward["replay"]["errors"] == 0 and toward["replay"]["hold_s"] == 3.75
    assert len(replays) == 4  # the plan and a random plan per pair
    for annotation, frame, controls, hold_s in replays:
        assert annotation.stem in ("c0", "c1", "c4")  # the planning half
        ego = json.loads(annotation.read_text())["ego"]
        assert frame % 4 == 3 and frame < len(ego["time"])  # windows start every 4 frames
        assert controls.shape == (2, 2) and np.all(np.abs(controls[:, 0]) <= 0.15 + 1e-6)
        assert hold_s == 3.75
    assert any("toward a lane change" in line for line in action_lines(report))
    off = action_report(model, str(data), toward_windows=0, **kwargs)
    assert "toward" not in off and not any("toward" in line for line in action_lines(off))
