"""The ego EVENTUALLY target (loss.event_target=ego): the future-motion vector on planted
trajectories, videos without the series skipped or refused, statistics fitted on the training
windows and saved with the model, and training that uses no teacher and no label."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import tiny_config
from tests.test_videos import annotate, write_video
from tritemporal.bench import bench_step
from tritemporal.data.annotations import Annotation, Event
from tritemporal.data.ego_motion import (
    MOTION_PARTS,
    future_motion,
    missing_motion_series,
    motion_size,
    motion_steps,
)
from tritemporal.data.videos import VideoClips
from tritemporal.data.windows import WindowSpec
from tritemporal.eval.report import eval_dataset
from tritemporal.hub import model_card
from tritemporal.loader import MaskCollator
from tritemporal.model import TriTemporalModel
from tritemporal.train import train

EGO = ["loss.event_target=ego"]
SPEC = WindowSpec(fps=4, now_frames=8, soon_frames=4, eventually_frames=4, gap_s=1.0)


def _annotation(**series: np.ndarray) -> Annotation:
    """An annotation with ego series sampled every 0.05 s over 20 s."""
    t = torch.arange(0, 20.0001, 0.05, dtype=torch.float64)
    ego = {name: torch.as_tensor(fn(t.numpy())) for name, fn in series.items()}
    return Annotation(ego_time=t, ego=ego)


def _part(vector: torch.Tensor, name: str) -> torch.Tensor:
    """One part (K,) of a future-motion vector (4 K,)."""
    return vector.view(len(MOTION_PARTS), -1)[MOTION_PARTS.index(name)]


def test_the_grid_runs_from_the_last_now_frame_to_the_last_eventually_frame() -> None:
    # last NOW frame 1.75 s, last EVENTUALLY frame 3 + 1 + 0.75 = 4.75 s: 12 steps of 0.25 s
    assert motion_steps(SPEC) == 12 and motion_size(SPEC) == 48


def test_constant_cruise_moves_only_along_and_braking_shows_in_speed() -> None:
    cruise = _annotation(speed=lambda t: 0 * t + 20.0, heading=lambda t: 0 * t + 0.3)
    v = future_motion(cruise, SPEC, np.array([2.0]))[0]
    assert torch.allclose(v, torch.zeros_like(v), atol=1e-5)  # no change: relative to t0
    brake = _annotation(speed=lambda t: 20.0 - 2.0 * t, heading=lambda t: 0 * t)
    v = future_motion(brake, SPEC, np.array([2.0]))[0]
    ahead = torch.arange(1, 13, dtype=torch.float32) / 4  # seconds after the last NOW frame
    assert torch.allclose(_part(v, "speed_change"), -2.0 * ahead, atol=1e-4)
    assert torch.allclose(_part(v, "along"), -(ahead**2), atol=1e-3)  # -a t^2 / 2, a = 2
    assert torch.allclose(_part(v, "lateral"), torch.zeros(12), atol=1e-6)


def test_a_lane_change_moves_sideways_and_mirrors_with_the_view() -> None:
    # a 3 s sine-shaped heading bump to the right from 4 s: the car ends 20 * integral sin(h)
    def heading(t: np.ndarray) -> np.ndarray:
        return np.where((t > 4) & (t < 7), 0.1 * np.sin(np.pi * (t - 4) / 3), 0.0)

    change = _annotation(speed=lambda t: 0 * t + 20.0, heading=heading)
    v = future_motion(change, SPEC, np.array([2.25]))[0]  # t0 = 4.0 s, end 7.0 s
    fine = np.linspace(4, 7, 3001)
    expected = np.trapezoid(20 * np.sin(heading(fine)), fine)
    assert _part(v, "lateral")[-1].item() == pytest.approx(expected, rel=1e-3)
    assert expected > 3.5  # about one lane to the right
    assert _part(v, "heading_change")[5].item() == pytest.approx(heading(np.array(5.5)), abs=1e-3)
    mirrored = future_motion(change, SPEC, np.array([2.25]), mirror=True)[0]
    for name in MOTION_PARTS:
        sign = -1 if name in ("heading_change", "lateral") else 1
        assert torch.allclose(_part(mirrored, name), sign * _part(v, name))


def test_yaw_rate_stands_in_for_heading() -> None:
    # a smooth turn and back (the rate has no jump for the linear interpolation to smear)
    def rate(t: np.ndarray) -> np.ndarray:
        return np.where((t > 4) & (t < 7), 0.1 * np.pi / 3 * np.sin(2 * np.pi * (t - 4) / 3), 0.0)

    def heading(t: np.ndarray) -> np.ndarray:
        return np.where((t > 4) & (t < 7), 0.05 * (1 - np.cos(2 * np.pi * (t - 4) / 3)), 0.0)

    speed = {"speed": lambda t: 0 * t + 20.0}
    from_rate = future_motion(_annotation(**speed, yaw_rate=rate), SPEC, np.array([2.25]))
    from_heading = future_motion(_annotation(**speed, heading=heading), SPEC, np.array([2.25]))
    assert torch.allclose(from_rate, from_heading, rtol=1e-2, atol=1e-3)  # 3 m across: 1 cm


def test_missing_series_are_named() -> None:
    assert "no ego series" in missing_motion_series(None)
    assert "no `speed`" in missing_motion_series(_annotation(heading=lambda t: 0 * t))
    reason = missing_motion_series(_annotation(speed=lambda t: 0 * t))
    assert "`heading` or `yaw_rate`" in reason and "speed" in reason
    with pytest.raises(ValueError, match="no `speed`"):
        future_motion(_annotation(heading=lambda t: 0 * t), SPEC, np.array([0.0]))


@pytest.fixture
def motion_root(tmp_path: Path) -> Path:
    """Three 4 s videos at 8 fps: two with speed and heading, one with speed alone."""
    t = [k / 10 for k in range(41)]
    for i in range(3):
        write_video(tmp_path / "videos" / f"v{i}.mp4", 32, 8)
        ego = {"time": t, "speed": [10.0 + i + 0.5 * x for x in t]}
        if i < 2:
            ego["heading"] = [0.05 * i * x for x in t]
        annotate(tmp_path / "annotations" / f"v{i}.json", [], ego)
    return tmp_path


def _config(root: Path, *extra: str):
    return tiny_config(
        "data.source=videos", f"data.root={root}", "data.fps=8", "clip.image_size=64", *extra
    )


def test_training_windows_carry_the_motion_and_bad_videos_follow_on_error(
    motion_root: Path,
) -> None:
    data = VideoClips(_config(motion_root, *EGO))
    assert data.summary.videos_used == 2
    (path, reason), *_ = data.summary.skipped
    assert path == "videos/v2.mp4" and "`heading` or `yaw_rate`" in reason
    assert "loss.event_target=ego" in reason
    with pytest.raises(ValueError, match=r"v2.json has no `heading`"):
        VideoClips(_config(motion_root, *EGO, "data.on_error=raise"))
    # not needed: without the ego target, and for evaluation windows (train=False)
    assert VideoClips(_config(motion_root)).summary.videos_used == 3
    assert VideoClips(_config(motion_root, *EGO), train=False).summary.videos_used == 3
    assert "ego_motion" not in VideoClips(_config(motion_root))[0]
    sample = data[1]
    spec = data.spec
    annotation = data._videos[0].annotation
    expected = future_motion(annotation, spec, np.array([sample["time"]]))[0]
    assert torch.equal(sample["ego_motion"], expected)
    batch = MaskCollator(_config(motion_root, *EGO))([{**data[i], "step": 0} for i in (0, 1)])
    assert batch.ego_motion is not None and batch.ego_motion.shape == (2, motion_size(spec))
    assert torch.allclose(_part(batch.ego_motion[0], "speed_change")[:2], torch.tensor([1, 2]) / 16)


def test_synthetic_clips_cannot_train_toward_the_ego_target() -> None:
    with pytest.raises(ValueError, match=r"event_target=ego with data\.source=synthetic"):
        tiny_config(*EGO)


def test_the_objective_refuses_to_run_before_its_statistics_are_fitted() -> None:
    config = tiny_config("data.source=videos", "data.root=/nowhere", *EGO)
    model = TriTemporalModel(config)
    k = motion_size(WindowSpec.from_config(config))
    with pytest.raises(RuntimeError, match="no motion statistics"):
        model.eventually.target(torch.zeros(4, k))
    with pytest.raises(ValueError, match=r"need \(N >= 2, 16\)"):
        model.eventually.fit_statistics(torch.zeros(5, 3))
    model.eventually.fit_statistics(torch.randn(50, k) * 3 + 1)
    assert model.eventually.target(torch.randn(4, k)).shape == (4, config.outcome.out_dim)


@pytest.mark.slow
def test_training_needs_no_teacher_nor_label_and_saves_the_statistics(
    motion_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    # EVENTUALLY alone, end to end: the teacher is never read, and labels are all -1
    config = _config(
        motion_root,
        *EGO,
        f"train.run_dir={run}",
        "train.steps=3",
        "train.batch_size=4",
        "loss.lambda_vjepa=0",
        "loss.lambda_soon=0",
        "loss.lambda_event=1",
        "loss.event_encoder_grad=1",
    )
    data = VideoClips(config)
    model = TriTemporalModel(config)
    batch = MaskCollator(config)([{**data[i], "step": 0} for i in range(4)])
    model.eventually.fit_statistics(data.ego_motion_values())
    with monkeypatch.context() as patch:
        patch.setattr(model, "teacher_targets", lambda *_: pytest.fail("the teacher ran"))
        out = model(batch.video, batch.masks, labels=None, ego_motion=batch.ego_motion)
    out.loss.backward()
    grads = [p.grad for p in model.backbone.encoder.parameters() if p.grad is not None]
    assert grads and sum(g.abs().sum() for g in grads) > 0  # end to end
    with pytest.raises(ValueError, match="pass the ego's future motion"):
        model(batch.video, batch.masks, batch.labels)
    train(config)
    loaded = TriTemporalModel.from_pretrained(run)
    values = data.ego_motion_values().double()
    assert bool(loaded.eventually.motion_fitted)
    assert torch.allclose(loaded.eventually.motion_mean, values.mean(0).float())
    assert torch.allclose(loaded.eventually.motion_std, values.std(0).clamp(min=1e-6).float())


def test_event_labels_can_come_from_auto_events_only(tmp_path: Path) -> None:
    write_video(tmp_path / "videos" / "v0.mp4", 64, 8)
    events = [
        Event("brake", 1.0, 3.0),  # a hand event (the simulator's truth)
        Event("lane_change_left", 5.0, 8.0, source="auto"),
    ]
    annotate(tmp_path / "annotations" / "v0.json", events)
    labels = {
        which: VideoClips(_config(tmp_path, f"data.label_events={which}"))._label.tolist()
        for which in ("all", "auto")
    }
    assert 3 in labels["all"] and 3 not in labels["auto"]  # brake: hand only
    assert 1 in labels["auto"] and labels["auto"].count(0) > labels["all"].count(0)
    # evaluation reads every event, whichever the run trained on
    held_out = eval_dataset(_config(tmp_path, "data.label_events=auto"), tmp_path)
    assert held_out._label.tolist() == labels["all"]


def test_the_model_card_says_which_target_trained_the_model() -> None:
    ego = model_card(tiny_config("data.source=videos", "data.root=/nowhere", *EGO), {})
    assert "EVENTUALLY x0.25 toward `ego`, the ego's own future motion" in ego
    assert "`heading` or `yaw_rate` series) (outcome head only; SupCon x0.1" in ego
    default = model_card(tiny_config(), {})
    assert "- Objectives: V-JEPA spatial x1; SOON x1; EVENTUALLY x0.25 toward `change`" in default


def test_the_benchmark_times_the_ego_target_step() -> None:
    config = tiny_config("data.source=videos", "data.root=/nowhere", *EGO, "train.device=cpu")
    report = bench_step(config, "tri", steps=1, warmup=0, matmul_size=64)
    assert report["clips_per_s"] > 0


def test_a_run_that_does_not_train_eventually_needs_no_ego_series(
    motion_root: Path, tmp_path: Path
) -> None:
    # event_target=ego but lambda_event=0 (e.g. the ceiling on configs/anticipation.yaml)
    run = [f"train.run_dir={tmp_path / 'run'}", "train.steps=1"]
    config = _config(motion_root, *EGO, "loss.lambda_event=0", *run)
    assert not config.loss.trains_ego_target
    assert VideoClips(config).summary.videos_used == 3  # v2 has no heading: not needed
    train(config)  # nor are ego-motion statistics fitted (v2 could not give them)
    assert not bool(TriTemporalModel.from_pretrained(tmp_path / "run").eventually.motion_fitted)
