"""Inference over whole videos: windows cut as in training, arrays, files and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import tiny_config
from tests.test_videos import write_video
from tritemporal.cli import main
from tritemporal.data.videos import VideoClips
from tritemporal.heads.probe import LinearProbe
from tritemporal.model import TriTemporalModel
from tritemporal.predict import plot_timeline, predict_video, read_meta, save_predictions

# Tiny clip: 4 + 2 + 2 frames at data.fps=4 -> one window spans 2 s; a 6 s video at 8 fps
# (48 frames) holds windows starting at 0, 1, 2, 3, 4 s with the default stride of 1 s.
FPS_OVERRIDES = ("data.fps=4", "data.stride_s=1.0")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6 s, 8 fps, 32 x 64 numbered video under ROOT/videos/ (non-square: crop matters)."""
    root = tmp_path_factory.mktemp("drive")
    return write_video(root / "videos" / "drive.mp4", frames=48, fps=8, size=(32, 64))


@pytest.fixture(scope="module")
def model() -> TriTemporalModel:
    """A tiny random model in eval mode."""
    torch.manual_seed(0)
    return TriTemporalModel(tiny_config(*FPS_OVERRIDES)).eval()


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_encode_path_matches_training_windows(video: Path, backend: str) -> None:
    torch.manual_seed(0)
    config = tiny_config(*FPS_OVERRIDES, f"data.backend={backend}")
    model = TriTemporalModel(config).eval()
    out = model.encode(video, batch_size=2)  # batches of 2: 3 batches, the last one partial
    dataset = VideoClips(config, train=False, root=video.parents[1])  # the evaluation view
    clips = torch.stack([dataset[i]["video"] for i in range(len(dataset))])
    direct = model.encode(clips)

    assert len(dataset) == 5
    assert out["time"].tolist() == [dataset[i]["time"] for i in range(5)] == [0, 1, 2, 3, 4]
    for key in ("now", "soon", "eventually"):
        assert out[key].shape == direct[key].shape
        assert out[key].shape[0] == 5
        torch.testing.assert_close(out[key], direct[key], rtol=1e-4, atol=1e-5)


def test_encode_path_stride_and_tensor_path_unchanged(model: TriTemporalModel, video: Path) -> None:
    out = model.encode(str(video), stride_s=0.5)
    assert out["time"].tolist() == [0.5 * k for k in range(9)]
    assert torch.all(out["time"].diff() > 0)
    c = model.config
    clips = torch.randint(0, 256, (2, 3, c.clip.total_frames, 32, 32), dtype=torch.uint8)
    plain = model.encode(clips)
    assert set(plain) == {"now", "soon", "eventually"}
    assert plain["eventually"].shape == (2, c.outcome.out_dim)


def test_predict_video_arrays(model: TriTemporalModel, video: Path) -> None:
    result = predict_video(model, video, batch_size=3)
    w, e, d = 5, model.config.outcome.out_dim, model.backbone.embed_dim
    assert result["time"].tolist() == [0, 1, 2, 3, 4]
    assert result["eventually"].shape == (w, e)
    assert result["now_mean"].shape == (w, d)
    assert result["soon_norm"].shape == (w,)
    assert result["outcome_similarity"].shape == (w - 1,)
    assert "probs" not in result and "label_names" not in result
    for key in ("eventually", "now_mean", "soon_norm", "outcome_similarity"):
        assert np.isfinite(result[key]).all(), key
    assert np.all(np.abs(result["outcome_similarity"]) <= 1 + 1e-5)
    direct = model.encode(video)
    np.testing.assert_allclose(result["eventually"], direct["eventually"].numpy(), atol=1e-5)
    meta = read_meta(result)
    assert meta["video"] == str(video) and meta["windows"] == w and meta["fps"] == 4


def test_save_and_plot(model: TriTemporalModel, video: Path, tmp_path: Path) -> None:
    result = predict_video(model, video, stride_s=0.5)
    path = save_predictions(result, tmp_path / "out" / "drive.npz")
    with np.load(path, allow_pickle=False) as loaded:
        assert set(loaded.files) == set(result)
        for key, value in result.items():
            np.testing.assert_array_equal(loaded[key], value)
        meta = json.loads(str(loaded["meta"]))
    assert meta["windows"] == 9 and meta["stride_s"] == 0.5 and meta["model"] == "vit-debug"
    png = plot_timeline(result, tmp_path / "timeline.png")
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == PNG_MAGIC


def test_probe_adds_probabilities(video: Path, tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = TriTemporalModel(tiny_config(*FPS_OVERRIDES))
    names = ["keep_lane", "lane_change_left", "brake"]
    e = model.config.outcome.out_dim
    probe = LinearProbe(torch.zeros(e), torch.ones(e), torch.randn(3, e), torch.randn(3), names)
    result = predict_video(model, video, probe=probe)
    assert result["probs"].shape == (5, 3)
    np.testing.assert_allclose(result["probs"].sum(axis=1), 1.0, rtol=1e-5)
    assert result["label_names"].tolist() == names
    png = plot_timeline(result, tmp_path / "probs.png")
    assert png.read_bytes()[:8] == PNG_MAGIC
    with np.load(save_predictions(result, tmp_path / "p.npz")) as loaded:
        assert loaded["label_names"].tolist() == names
    other = LinearProbe(
        torch.zeros(e + 1), torch.ones(e + 1), torch.randn(3, e + 1), torch.randn(3), names
    )
    with pytest.raises(ValueError, match=rf"takes {e + 1}-dim .* are {e}-dim \(outcome.out_dim\)"):
        predict_video(model, video, probe=other)


def test_errors_name_the_file_and_the_span(model: TriTemporalModel, tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    with pytest.raises(FileNotFoundError, match=r"nope\.mp4 does not exist"):
        predict_video(model, missing)
    short = write_video(tmp_path / "short.mp4", frames=8, fps=8, size=(32, 32))  # 1 s < 2 s
    with pytest.raises(ValueError, match=r"short\.mp4 is too short: 1\.00 s .* spans 2\.00 s"):
        model.encode(short)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video at all" * 10)
    with pytest.raises(ValueError, match=r"garbage\.mp4 is unreadable"):
        predict_video(model, garbage)
    with pytest.raises(ValueError, match="stride_s"):
        predict_video(model, short, stride_s=0)


def test_cli_predict(
    video: Path, tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    from tritemporal.train import train

    run_dir = train(tiny_config(f"train.run_dir={tmp_path / 'run'}", "train.steps=1"))
    out, plot = tmp_path / "pred.npz", tmp_path / "pred.png"
    args = ["predict", str(video), "--checkpoint", str(run_dir), "--device", "cpu"]
    assert main([*args, "--out", str(out), "--plot", str(plot), "--batch-size", "4"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and str(plot) in printed
    with np.load(out) as loaded:
        assert loaded["time"].tolist() == [0, 1, 2, 3, 4, 5]  # the run's data.fps=8: 1 s spans
    assert plot.read_bytes()[:8] == PNG_MAGIC
    assert main(["predict", str(tmp_path / "missing.mp4"), "--checkpoint", str(run_dir)]) == 2
    assert main([*args, "--out", str(out), "--probe", str(tmp_path / "no-eval")]) == 2
    assert "no EVENTUALLY probe in" in caplog.text and "tritemporal eval" in caplog.text
    names = ["keep_lane", "brake"]
    LinearProbe(torch.zeros(5), torch.ones(5), torch.ones(2, 5), torch.zeros(2), names).save(
        tmp_path / "other-eval"
    )
    assert main([*args, "--out", str(out), "--probe", str(tmp_path / "other-eval")]) == 2
    assert "takes 5-dim EVENTUALLY embeddings" in caplog.text


def test_outcome_fingerprint_covers_what_the_probe_reads(tmp_path: Path) -> None:
    from tritemporal.train import train

    run = train(tiny_config(f"train.run_dir={tmp_path / 'run'}", "train.steps=1"))
    loaded = TriTemporalModel.from_pretrained(run)
    fingerprint = loaded.outcome_fingerprint()
    assert len(fingerprint) == 16 and int(fingerprint, 16) >= 0
    assert TriTemporalModel.from_pretrained(run).outcome_fingerprint() == fingerprint
    loaded.save_pretrained(tmp_path / "saved")  # the same weights in a saved folder
    assert TriTemporalModel.from_pretrained(tmp_path / "saved").outcome_fingerprint() == fingerprint
    with torch.no_grad():
        for part in (loaded.backbone.predictor, loaded.teacher):  # not on the EVENTUALLY path
            next(part.parameters()).add_(1.0)
        assert loaded.outcome_fingerprint() == fingerprint
        for part in (loaded.backbone.encoder, loaded.outcome):
            weight = next(part.parameters())
            weight.add_(1e-3)
            assert loaded.outcome_fingerprint() != fingerprint
            weight.sub_(1e-3)


def test_cli_predict_refuses_a_probe_of_another_checkpoint(
    video: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tritemporal.train import train

    run = train(tiny_config(f"train.run_dir={tmp_path / 'run'}", "train.steps=1"))
    ours = TriTemporalModel.from_pretrained(run).outcome_fingerprint()
    e, names = 16, ["keep_lane", "brake"]  # outcome.out_dim of the tiny config

    def probe_in(folder: str, fingerprint: str | None) -> str:
        weights = (torch.zeros(e), torch.ones(e), torch.randn(2, e), torch.zeros(2))
        LinearProbe(*weights, names, fingerprint=fingerprint).save(tmp_path / folder)
        return str(tmp_path / folder)

    args = ["predict", str(video), "--checkpoint", str(run), "--out", str(tmp_path / "p.npz")]
    assert main([*args, "--probe", probe_in("same", ours)]) == 0
    other = "0123456789abcdef"
    assert main([*args, "--probe", probe_in("other", other)]) == 2
    assert f"model fingerprint {other}; this model's is {ours}" in caplog.text
    assert "refit it on this model with `tritemporal eval --checkpoint" in caplog.text
    old = probe_in("old", None)
    config = json.loads((tmp_path / "old" / "eventually_probe.json").read_text())
    config.pop("model_fingerprint")  # as written before probes recorded one
    (tmp_path / "old" / "eventually_probe.json").write_text(json.dumps(config))
    caplog.clear()
    assert main([*args, "--probe", old]) == 0  # still used, with a warning
    assert "records no model fingerprint" in caplog.text


def test_timeline_shades_annotated_events_and_states_the_outcome_offset(
    model: TriTemporalModel, video: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from matplotlib.colors import to_rgb

    from tritemporal.data.annotations import Event, write_annotation
    from tritemporal.predict import timeline_figure

    drive = write_video(tmp_path / "videos" / "town" / "drive.mp4", frames=48, fps=8, size=(32, 64))
    note = tmp_path / "annotations" / "town" / "drive.json"
    write_annotation(note, [Event("lane_change_left", 1.0, 2.0, "auto"), Event("brake", 3.0, 4.0)])
    names = ["keep_lane", "brake"]
    e = model.config.outcome.out_dim
    probe = LinearProbe(torch.zeros(e), torch.ones(e), torch.randn(2, e), torch.zeros(2), names)
    result = predict_video(model, drive, probe=probe)
    meta = read_meta(result)
    assert meta["annotation"] == str(note)
    assert [(v["maneuver"], v["start"], v["end"]) for v in meta["events"]] == [
        ("lane_change_left", 1.0, 2.0), ("brake", 3.0, 4.0),
    ]  # fmt: skip
    # NOW 4 + SOON 2 frames at 4 fps, no gap: window t's outcome is [t + 1.5, t + 2) s
    assert meta["eventually_range_s"] == [1.5, 2.0]
    fig = timeline_figure(result)
    assert (
        "the outcome (EVENTUALLY) of window t is t + 1.5 s to t + 2 s" in fig.axes[-1].get_xlabel()
    )
    assert all(len(ax.patches) == 2 for ax in fig.axes)  # each event shaded on every panel
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["brake", "lane_change_left"]
    brake_stack = fig.axes[2].collections[names.index("brake")].get_facecolor()[0]
    brake_span = fig.axes[2].patches[1].get_facecolor()
    assert to_rgb(brake_span) == to_rgb(brake_stack)  # a maneuver keeps the probe's colour
    assert read_meta(predict_video(model, video))["events"] == []  # no annotations/ beside it
    note.write_text("{not json")
    assert read_meta(predict_video(model, drive))["events"] == []
    assert "unreadable JSON" in caplog.text and "its events are not drawn" in caplog.text
