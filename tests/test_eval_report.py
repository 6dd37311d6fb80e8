"""`tritemporal eval` end to end on tiny models and short highway-env clips, and the hook."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import EVAL, tiny_config
from tritemporal.cli import main
from tritemporal.eval.report import REPORT_FILE, evaluate, random_init_copy, summary_table
from tritemporal.heads.probe import PROBE_CONFIG, PROBE_WEIGHTS, LinearProbe
from tritemporal.metrics import read_metrics
from tritemporal.model import TriTemporalModel
from tritemporal.threads import THREADS_ENV
from tritemporal.train import train

PNG = b"\x89PNG"


def _model() -> TriTemporalModel:
    torch.manual_seed(0)
    return TriTemporalModel(tiny_config(*EVAL)).eval()


@pytest.mark.slow
def test_report_has_every_part_and_is_deterministic(
    eval_clips: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(THREADS_ENV, "1")  # reruns are bit-identical on a pinned thread count
    model = _model()
    report = evaluate(model, eval_clips, tmp_path / "a", seed=1)
    assert report["samples"] > 20 and len(report["label_counts"]) >= 2
    assert report["split"] == "stratified folds by video"
    ev = report["eventually"]
    assert set(ev) == {"outcome", "now_mean", "random_init_outcome", "random_init_now_mean"}
    for probes in ev.values():
        assert 0 <= probes["linear"]["accuracy"] <= 1 and 0 <= probes["knn"]["macro_f1"] <= 1
    soon = report["soon"]
    assert soon["horizon_s"] == [0.25]  # one SOON tubelet of 2 frames at 4 fps
    assert set(soon) == {"horizon_s", "model", "copy", "mean"}
    assert "ego_lane" in report["now"] or "ego_speed_tertile" in report["now"]
    assert {"now", "outcome", "random_init_outcome"} <= set(report["collapse"])
    written = json.loads((tmp_path / "a" / REPORT_FILE).read_text())
    assert written == json.loads(json.dumps(report))
    for name in ("eventually_confusion", "eventually_projection", "soon_error"):
        assert (tmp_path / "a" / f"{name}.png").read_bytes().startswith(PNG)
    probe = LinearProbe.load(tmp_path / "a")
    assert probe.embed_dim == model.config.outcome.out_dim
    assert probe.fingerprint == model.outcome_fingerprint()  # predict checks it
    assert set(probe.label_names) <= set(report["label_counts"]) and len(probe.label_names) >= 2
    table = summary_table(report)
    for part in ("EVENTUALLY probes", "SOON, L1", "NOW attentive probes", "RankMe"):
        assert part in table
    again = evaluate(_model(), eval_clips, tmp_path / "b", seed=1)
    assert json.dumps(again, sort_keys=True) == json.dumps(report, sort_keys=True)


@pytest.mark.slow
def test_soon_errors_against_a_direct_computation(eval_clips: Path) -> None:
    from tritemporal.eval.report import eval_dataset, extract

    model = _model()
    sample = eval_dataset(model.config, eval_clips)[0]
    features = extract(model, [sample], batch_size=1)
    video = sample["video"][None]
    with torch.no_grad():
        forecast = model.encode(video)["soon"]
        targets = model.teacher_targets(model.normalize(video))
        present = model.present_targets(model.normalize(video))
    soon_t = targets[:, model.soon_idx[0]]
    last_now = present[:, -soon_t.shape[1] :]  # the last NOW tubelet step, NOW frames alone
    expected = {
        "model_l1": (forecast - soon_t).abs().mean(),
        "copy_l1": (last_now - soon_t).abs().mean(),
    }
    for key, value in expected.items():
        assert features.soon[key].shape == (1,)
        assert abs(float(features.soon[key][0]) - float(value)) < 1e-5, key


def test_soon_baselines_know_only_the_present() -> None:
    """Planted: two clips share their NOW frames and differ in their future. The copy-last and
    mean baselines of one must be what the other's present predicts: the future is unseen."""
    from tritemporal.eval.report import extract

    model = _model()
    c = model.config.clip
    gen = torch.Generator().manual_seed(0)
    shape = (c.channels, c.total_frames, *c.hw)
    present = torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8)
    other = present.clone()
    other[:, c.now_frames :] = torch.randint(0, 256, other[:, c.now_frames :].shape, generator=gen)
    features = extract(model, [{"video": present, "label": 0}, {"video": other, "label": 0}])
    clips = model.normalize(torch.stack([present, other]))
    with torch.no_grad():
        targets = model.teacher_targets(clips)
        swapped = model.present_targets(clips.flip(0))  # each clip's present, from the other
    now_steps, soon_steps, _ = c.slices
    hw = c.grid[1] * c.grid[2]
    soon_t = targets[:, model.soon_idx[0]].view(2, soon_steps, hw, -1)
    guesses = {
        "copy_l1": swapped.view(2, now_steps, hw, -1)[:, -1:],
        "mean_l1": swapped.view(2, now_steps, hw, -1).mean(dim=(1, 2), keepdim=True),
    }
    for key, guess in guesses.items():
        expected = (guess - soon_t).abs().mean(dim=(2, 3)).numpy()
        np.testing.assert_allclose(features.soon_windows[key], expected, atol=1e-5, err_msg=key)
    # the test has teeth: the whole-clip pass's NOW tokens differ between the two clips
    whole_now = targets[:, model.now_idx[0]]
    assert (whole_now[0] - whole_now[1]).abs().max() > 1e-3


def test_eval_phases_report_progress_and_size_threads(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a terminal a phase logs its progress with an ETA, then its total and threads;
    a phase on CPU runs on the cores other processes leave free and restores the count."""
    from tritemporal import threads
    from tritemporal.eval import progress

    for name in threads.OVERRIDE_ENVS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 1)
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    before = torch.get_num_threads()
    cpu = torch.device("cpu")
    with (
        caplog.at_level("INFO", logger=progress.__name__),
        progress.phase("extract features", 10, "windows", cpu) as advance,
    ):
        assert torch.get_num_threads() == 3
        advance(4)
        advance(6)
    assert torch.get_num_threads() == before
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("extract features: 4/10 windows, ETA") for line in lines)
    assert lines[-1].startswith("extract features: 10 windows in ") and "(3 threads)" in lines[-1]


def test_random_init_copy_changes_weights_but_not_the_original() -> None:
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fresh = random_init_copy(model, seed=3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    changed = [k for k, v in fresh.state_dict().items() if not torch.equal(before[k], v)]
    assert any("backbone.encoder.blocks.0.attn.qkv.weight" in k for k in changed)


@pytest.mark.slow
def test_eval_command_and_training_hook(
    eval_clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    overrides = [*EVAL, "data.source=synthetic", f"train.run_dir={tmp_path / 'run'}"]
    overrides += ["train.steps=2", "eval.every=2", f"eval.data={eval_clips}", "eval.max_samples=0"]
    run = train(tiny_config(*overrides))
    record = read_metrics(run)[-1]
    assert record["step"] == 2 and 0 <= record["eval/outcome_linear_acc"] <= 1
    assert record["eval/soon_l1"] > 0 and "eval/outcome_rankme" in record
    out = tmp_path / "report"
    assert (
        main(["eval", "--checkpoint", str(run), "--data", str(eval_clips), "--out", str(out)]) == 0
    )
    assert (out / REPORT_FILE).is_file()
    printed = capsys.readouterr().out
    assert "EVENTUALLY probes, balanced accuracy" in printed and "copy last NOW step" in printed
    # predict attaches the probe eval saved: outcome probabilities per window
    video = sorted((eval_clips / "videos").iterdir())[0]
    pred = tmp_path / "pred.npz"
    args = ["predict", str(video), "--checkpoint", str(run), "--probe", str(out)]
    assert main([*args, "--out", str(pred), "--device", "cpu"]) == 0
    with np.load(pred) as loaded:
        assert loaded["label_names"].tolist() == LinearProbe.load(out).label_names
        np.testing.assert_allclose(loaded["probs"].sum(axis=1), 1.0, rtol=1e-5)
    assert "outcome probabilities of" in capsys.readouterr().out


def test_eval_hook_needs_data() -> None:
    with pytest.raises(ValueError, match=r"eval.every is set but eval.data is not"):
        tiny_config("eval.every=5")


@pytest.mark.slow
def test_windows_of_one_video_skip_the_held_out_probes(eval_clips: Path, tmp_path: Path) -> None:
    """A hook capped to a few windows of one video cannot hold a video out: it says so."""
    from tritemporal.eval.report import hook_scalars

    for name in (PROBE_WEIGHTS, PROBE_CONFIG):  # left by an earlier run in the same folder
        (tmp_path / name).write_text("stale")
    report = evaluate(_model(), eval_clips, tmp_path, full=False, max_samples=3)
    assert "2+ videos" in report["eventually"]["outcome"]["skipped"]
    assert "eval/soon_l1" in hook_scalars(report)
    assert not (tmp_path / PROBE_WEIGHTS).exists() and not (tmp_path / PROBE_CONFIG).exists()
    assert "EVENTUALLY probes: skipped (windows of one video only" in summary_table(report)


def test_summary_table_lines() -> None:
    """The printed table is a pure function of the report dict."""
    linear = {"balanced_accuracy": 0.3521, "chance_balanced": 0.25}
    report = {
        "samples": 12,
        "split": "stratified folds by video",
        "label_counts": {"keep_lane": 8, "brake": 4},
        "eventually": {
            "outcome": {"linear": linear, "knn": {"balanced_accuracy": 0.254}},
            "now_mean": {"linear": {**linear, "balanced_accuracy": 0.4}, "knn": linear},
        },
        "soon": {
            "horizon_s": [0.25, 0.75],
            "model": {"l1": [0.101, 0.102]},
            "copy": {"l1": [0.107, 0.119]},
            "mean": {"l1": [0.197, 0.198]},
        },
        "now": {"ego_lane": {"balanced_accuracy": 0.26, "chance_balanced": 0.25}},
        "collapse": {"now": {"rankme": 1.52, "dim": 192}, "outcome": {"rankme": 9.5, "dim": 64}},
    }
    assert summary_table(report).splitlines() == [
        "12 windows (stratified folds by video): keep_lane 8, brake 4",
        "",
        "EVENTUALLY probes, balanced accuracy (chance 0.25)  linear    kNN",
        "  outcome embedding                                  0.352  0.254",
        "  mean NOW features                                  0.400  0.352",
        "",
        "SOON, L1 to teacher targets  +0.25 s  +0.75 s",
        "  model forecast               0.101    0.102",
        "  copy last NOW step           0.107    0.119",
        "",
        "NOW attentive probes, balanced accuracy  probe  chance",
        "  ego_lane                               0.260   0.250",
        "",
        "RankMe (effective rank)  rank  of dim",
        "  mean NOW features       1.5     192",
        "  outcome embedding       9.5      64",
    ]
    report["now"] = {}
    assert "NOW attentive probes: none" in summary_table(report)
    del report["now"]
    assert "NOW attentive" not in summary_table(report)
