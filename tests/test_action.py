"""Action-conditioned SOON: a no-op at the start on both predictors, a module that learns,
statistics that travel with the model, and clear errors on missing or malformed actions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from tests.conftest import TINY, tiny_config, vjepa2_overrides
from tests.test_videos import annotate, write_video
from tritemporal.cli import main
from tritemporal.config import load_config
from tritemporal.data.annotations import Event
from tritemporal.data.videos import VideoClips
from tritemporal.eval.actions import ACTIONS_JSON, ACTIONS_PNG, action_report, write_action_report
from tritemporal.loader import MaskCollator
from tritemporal.model import TriTemporalModel
from tritemporal.train import train

COND = ["predictor.action_conditioning=true"]
SOON_ONLY = ["loss.lambda_vjepa=0", "loss.lambda_event=0"]


def _fit(model: TriTemporalModel) -> None:
    """Statistics of plausible speed (m/s), steering (rad) and acceleration (m/s^2)."""
    g = torch.Generator().manual_seed(0)
    values = torch.randn(256, 3, generator=g) * torch.tensor([4.0, 0.05, 1.0])
    model.action.fit_statistics(values + torch.tensor([25.0, 0.0, 0.0]))


def _actions(model: TriTemporalModel, b: int, seed: int) -> torch.Tensor:
    """Random actions (B, 1 + soon_frames, 3) around the fitted statistics."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, model.action.frames, 3, generator=g)
    return model.action.mean.float() + z * model.action.std.float()


def _clips(model: TriTemporalModel, b: int = 2) -> torch.Tensor:
    c = model.config.clip
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (b, 3, c.total_frames, *c.hw), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("backbone", ["vit", "vjepa2", "vit-lora", "vjepa2-lora"])
def test_conditioning_starts_as_a_no_op(backbone: str, vjepa2_dir: Path) -> None:
    lora = ["backbone.lora.r=4", "backbone.lora.apply_to=[encoder,predictor]"]
    base = {
        "vit": [],
        "vjepa2": vjepa2_overrides(vjepa2_dir),
        "vit-lora": lora,
        "vjepa2-lora": vjepa2_overrides(vjepa2_dir, *lora),
    }[backbone]
    torch.manual_seed(0)
    plain = TriTemporalModel(tiny_config(*base)).eval()
    torch.manual_seed(0)
    model = TriTemporalModel(tiny_config(*base, *COND)).eval()
    _fit(model)
    video = _clips(model)
    expected = plain.encode(video)["soon"]
    for seed in (0, 1):  # whatever the actions, the untrained module adds nothing
        assert torch.equal(model.forecast(video, _actions(model, 2, seed)), expected)
    assert all(p.requires_grad for p in model.action.parameters())  # LoRA leaves it trainable


def test_the_module_learns_and_actions_then_change_the_forecast() -> None:
    model = TriTemporalModel(tiny_config(*COND, *SOON_ONLY))
    _fit(model)
    video = _clips(model, 4)
    c = model.config.clip
    signals = _actions(model, 4, 2)[:, :1].expand(4, c.total_frames, 3).clone()
    signals[:, c.now_frames :] += torch.randn(4, c.total_frames - c.now_frames, 3)
    out = model(video, [], signals=signals)
    out.loss.backward()
    last = model.action.mlp[-1]
    assert last.weight.grad.abs().sum() > 0 and last.bias.grad.abs().sum() > 0
    with torch.no_grad():
        for p in model.action.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.eval()
    a, b = _actions(model, 4, 3), _actions(model, 4, 4)
    assert not torch.allclose(model.forecast(video, a), model.forecast(video, b))
    assert torch.equal(model.forecast(video, a), model.forecast(video, a))


def test_forecast_from_now_frames_alone_and_encode_under_the_mean_action() -> None:
    model = TriTemporalModel(tiny_config(*COND)).eval()
    _fit(model)
    with torch.no_grad():
        for p in model.action.parameters():
            p.add_(0.1 * torch.randn_like(p))  # a module that is no longer a no-op
    video = _clips(model)
    c = model.config.clip
    actions = _actions(model, 2, 5)
    full = model.forecast(video, actions)
    now_only = model.forecast(video[:, :, : c.now_frames], actions)
    assert torch.allclose(full, now_only, atol=1e-5)  # SOON pixels are never read
    mean = model.action.mean.float().expand(2, model.action.frames, 3)
    assert torch.allclose(model.encode(video)["soon"], model.forecast(video, mean), atol=1e-6)
    assert torch.allclose(model.encode(video, actions=actions)["soon"], full, atol=1e-6)


def test_statistics_and_weights_survive_save_and_load(tmp_path: Path) -> None:
    model = TriTemporalModel(tiny_config(*COND)).eval()
    _fit(model)
    with torch.no_grad():
        model.action.mlp[-1].weight.normal_()
    model.save_pretrained(tmp_path / "saved")
    loaded = TriTemporalModel.from_pretrained(tmp_path / "saved")
    assert loaded.action is not None and bool(loaded.action.fitted)
    for name, tensor in model.action.state_dict().items():
        assert torch.equal(loaded.action.state_dict()[name], tensor), name
    video, actions = _clips(model), _actions(model, 2, 6)
    assert torch.equal(loaded.forecast(video, actions), model.forecast(video, actions))


def test_bad_actions_and_unconditioned_models_are_refused(tiny) -> None:
    model = TriTemporalModel(tiny_config(*COND)).eval()
    video = _clips(model)
    with pytest.raises(RuntimeError, match="no signal statistics"):
        model.forecast(video, torch.zeros(2, model.action.frames, 3))
    _fit(model)
    with pytest.raises(ValueError, match=r"actions must be \(B, 3, 3\)"):
        model.forecast(video, torch.zeros(2, 5, 3))
    with pytest.raises(ValueError, match="T = 4 or 8"):
        model.forecast(video[:, :, :6], _actions(model, 2, 0))
    soon_only = TriTemporalModel(tiny_config(*COND, *SOON_ONLY))
    _fit(soon_only)
    with pytest.raises(ValueError, match="needs the clips' ego signals"):
        soon_only(video, [], signals=None)
    with pytest.raises(ValueError, match="action-conditioned model"):
        TriTemporalModel(tiny).forecast(video, _actions(model, 2, 0))
    with pytest.raises(ValueError, match="non-finite"):
        model.action.fit_statistics(torch.tensor([[1.0, float("nan"), 0.0]] * 3))
    with pytest.raises(ValueError, match=r"loss.lambda_soon=0"):
        tiny_config(*COND, "loss.lambda_soon=0")
    with pytest.raises(ValueError, match=r"action.signals"):
        tiny_config(*COND, "action.signals=[]")


def _ego(seconds: float, fps: float, names: tuple[str, ...], offset: float) -> dict:
    """Ego series: speed, steering and acceleration as ramps, sampled at `fps`."""
    t = [k / fps for k in range(int(seconds * fps) + 1)]
    ramps = {"speed": (20.0, 1.0), "steering": (0.0, 0.01), "acceleration": (-1.0, 0.5)}
    ego: dict = {"time": t}
    for name in names:
        start, slope = ramps[name]
        ego[name] = [start + offset + slope * x for x in t]
    return ego


@pytest.fixture
def signal_root(tmp_path: Path) -> Path:
    """Three 4 s videos at 8 fps: two with all three series, one without acceleration."""
    all_three = ("speed", "steering", "acceleration")
    for i, names in enumerate([all_three, all_three, all_three[:2]]):
        write_video(tmp_path / "videos" / f"v{i}.mp4", 32, 8)
        annotate(tmp_path / "annotations" / f"v{i}.json", [], _ego(4.0, 10.0, names, i))
    return tmp_path


def _video_config(root: Path, *extra: str):
    return tiny_config(
        "data.source=videos", f"data.root={root}", "data.fps=8", "clip.image_size=64", *extra
    )


def test_videos_without_a_required_series_are_skipped_or_refused(signal_root: Path) -> None:
    data = VideoClips(_video_config(signal_root, *COND))
    assert data.summary.videos_used == 2
    (path, reason), *_ = data.summary.skipped
    assert path == "videos/v2.mp4" and "no ego series ['acceleration']" in reason
    assert VideoClips(_video_config(signal_root)).summary.videos_used == 3  # not required
    with pytest.raises(ValueError, match=r"v2.json has no ego series"):
        VideoClips(_video_config(signal_root, *COND, "data.on_error=raise"))
    collate = MaskCollator(_video_config(signal_root, *COND))
    batch = collate([{**data[i], "step": 0} for i in (0, 4)])
    assert batch.signals is not None and batch.signals.shape == (2, 8, 3)
    times = torch.tensor([data[4]["time"] + k / 8 for k in range(6)])  # NOW + SOON frames
    assert torch.allclose(batch.signals[1, :6, 0], 20.0 + 1 + times)  # v1's speed at frame times


@pytest.mark.slow
def test_training_fits_statistics_on_the_training_windows(
    signal_root: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    config = _video_config(signal_root, *COND, f"train.run_dir={run}", "train.steps=2")
    train(config)
    model = TriTemporalModel.from_pretrained(run)
    data = VideoClips(config)
    c = config.clip
    values = data.signal_values(tuple(config.action.signals), c.action_rows)
    assert torch.allclose(model.action.mean, values.double().mean(0).float())
    assert torch.allclose(model.action.std, values.double().std(0).float())
    synthetic = tiny_config(*COND, f"train.run_dir={tmp_path / 'synthetic'}")
    with pytest.raises(ValueError, match=r"data.source=synthetic has none"):
        train(synthetic)


def test_signal_names_come_from_the_config() -> None:
    config = load_config(None, ["action.signals=[speed, yaw_rate]", *COND])
    assert config.action.signals == ["speed", "yaw_rate"]


SEGMENT_S = 0.25  # the planted steering holds for one tubelet step (2 frames at 8 fps)


def _planted_video(root: Path, name: str, seconds: float, rng: np.random.Generator) -> None:
    """A 32 px video whose only content is a bright band at the row its steering selects (-1:
    top, 0: middle, +1: bottom), drawn afresh every SEGMENT_S: the future of each window
    depends only on the actions, never on its past. Steering segments are lane-change events."""
    fps, size = 8, 32
    n = int(seconds * fps)
    per = int(SEGMENT_S * fps)
    steer = np.repeat(rng.integers(-1, 2, size=-(-n // per)), per)[:n].astype(float)
    frames = np.full((n, size, size, 3), 30, np.uint8)
    for k, a in enumerate(steer):
        row = 14 + int(8 * a)
        frames[k, row : row + 4] = 230
    path = root / "videos" / f"{name}.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "4", "g": "4"})
        stream.height = stream.width = size
        stream.pix_fmt = "yuv420p"
        for img in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode())
    times = [k / fps for k in range(n)]
    events = [
        Event(
            "lane_change_left" if steer[k] < 0 else "lane_change_right",
            k / fps,
            k / fps + SEGMENT_S,
        )
        for k in range(0, n, per)
        if steer[k]
    ]
    speed = (20.0 + 0.1 * rng.standard_normal(n)).tolist()
    ego = {"time": times, "speed": speed, "steering": steer.tolist()}
    annotate(root / "annotations" / f"{name}.json", events, ego)


PLANTED = [
    *COND, "action.signals=[speed,steering]", "clip.soon_frames=4", "data.fps=8",
    "data.stride_s=0.25", "data.source=videos", "data.train_crop=center", "loss.lambda_event=0",
    "loss.lambda_vjepa=0", "optim.lr=3e-3", "train.batch_size=8", "train.steps=200",
    "train.log_every=50", "train.ckpt_every=200", "optim.warmup_steps=10",
]  # fmt: skip


@pytest.mark.slow
def test_planted_actions_give_a_large_gain_and_retrieve_their_maneuver(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(8):
        _planted_video(tmp_path / "train", f"t{i}", 8.0, rng)
    for i in range(4):
        _planted_video(tmp_path / "heldout", f"h{i}", 8.0, rng)
    run = tmp_path / "run"
    train(tiny_config(*PLANTED, f"data.root={tmp_path / 'train'}", f"train.run_dir={run}"))
    model = TriTemporalModel.from_pretrained(run)
    report = action_report(model, str(tmp_path / "heldout"), plan_windows=12, seed=0)
    true, shuffled = report["soon_l1"]["true_actions"], report["soon_l1"]["shuffled_actions"]
    assert all(t < s for t, s in zip(true, shuffled, strict=True)), report["soon_l1"]
    assert report["action_gain"][-1] > 0.3, report["action_gain"]
    for gain, (low, high) in zip(
        report["action_gain"], report["action_gain_interval"], strict=True
    ):
        assert low - 1e-6 <= gain <= high + 1e-6 and low > 0.1  # 4 videos: wide, but above 0
    assert report["consistency"]["pairs"] > 0
    for m in ("lane_change_left", "lane_change_right"):
        r = report["counterfactual"]["maneuvers"][m]
        assert r["injected"] > 2 * r["own_actions"], (m, r)
        assert r["injected_interval"][0] > r["own_actions_interval"][1], (m, r)  # apart
    steering = report["planning"]["signals"]["steering"]  # the cross-entropy method finds them
    assert steering["planned"]["sign_agreement"] >= 0.9 and steering["planned"]["correlation"] > 0.9
    low, high = steering["planned"]["sign_agreement_interval"]
    assert low <= steering["planned"]["sign_agreement"] <= high and low > 0.5
    write_action_report(report, tmp_path / "eval")
    assert (tmp_path / "eval" / ACTIONS_PNG).read_bytes().startswith(b"\x89PNG")
    assert (
        json.loads((tmp_path / "eval" / ACTIONS_JSON).read_text())["windows"] == report["windows"]
    )


def test_bench_times_the_conditioned_step(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    sets = [*TINY, *COND, "train.device=cpu"]
    argv = ["bench", "--mode", "tri", "--steps", "1", "--warmup", "1", "--out", str(out)]
    assert main([*argv, *[a for s in sets for a in ("--set", s)]]) == 0
    assert json.loads(out.read_text())["flops_per_step"] > 0


@pytest.mark.slow
def test_docs_action_snippet_runs_as_written(
    signal_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = Path(__file__).resolve().parent.parent / "docs" / "training.md"
    section = page.read_text().split('\n## Action-conditioned SOON: "what if I brake here?"\n')[1]
    code = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], flags=re.S)[0]
    monkeypatch.chdir(tmp_path)
    train(
        _video_config(signal_root, *COND, "train.run_dir=runs/quickstart_actions", "train.steps=1")
    )
    namespace: dict = {}
    exec(compile(code, str(page), "exec"), namespace)
    c = namespace["model"].config.clip
    assert namespace["soon"].shape[:2] == (1, c.grid[1] * c.grid[2] * c.slices[1])
