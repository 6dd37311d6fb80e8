"""`tritemporal compare`: bootstrap intervals over videos, the table of several sources, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import tritemporal.eval.compare as compare_module
import tritemporal.model as model_module
from tests.conftest import EVAL, tiny_config
from tritemporal.cli import main, parse_groups
from tritemporal.eval.compare import (
    COMPARISON_JSON,
    COMPARISON_MD,
    COMPARISON_PNG,
    _leader_bins,
    bootstrap_interval,
    compare,
    default_name,
    markdown_table,
    plotted_rows,
    video_resamples,
)
from tritemporal.eval.report import frames_in_memory
from tritemporal.model import TriTemporalModel
from tritemporal.train import train

PNG = b"\x89PNG"


def _saved(folder: Path, *overrides: str, seed: int = 0) -> Path:
    """A tiny untrained model saved with save_pretrained (a valid compare source)."""
    torch.manual_seed(seed)
    TriTemporalModel(tiny_config(*EVAL, *overrides)).save_pretrained(folder)
    return folder


def test_bootstrap_interval_on_a_hand_example() -> None:
    """A constant metric has a zero-width interval; fewer videos give a wider one."""
    many = np.repeat(np.arange(40), 10)  # 40 videos of 10 windows
    few = np.repeat(np.arange(4), 100)  # 4 videos of 100 windows
    resamples = video_resamples(many, 500, seed=1)
    assert all(len(idx) == 400 for idx in resamples)  # equal-size videos: same window count
    low, high = bootstrap_interval(lambda idx: 0.7, resamples)
    assert low == high == 0.7
    again = video_resamples(many, 500, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(again, resamples, strict=True))
    # one value per window, the same over a video's windows, spread evenly over [-1, 1]
    widths = []
    for groups, n in ((many, 40), (few, 4)):
        values = np.linspace(-1, 1, n)[groups]
        mean = lambda idx, v=values: float(v[idx].mean())  # noqa: E731
        low, high = bootstrap_interval(mean, video_resamples(groups, 500, seed=1))
        assert low < 0.0 < high
        widths.append(high - low)
    assert widths[1] > 2 * widths[0]


def test_video_resamples_keep_videos_whole() -> None:
    groups = np.array([5, 5, 5, 9, 9, 2])
    for idx in video_resamples(groups, 50, seed=0):
        drawn = groups[idx]
        for video in np.unique(drawn):  # a drawn video brings all its windows, k times
            assert (drawn == video).sum() % (groups == video).sum() == 0


def test_markdown_table_is_a_pure_function_of_the_result() -> None:
    result = {
        "windows": 20,
        "videos": 4,
        "bootstrap": 10,
        "seed": 0,
        "chance": {"eventually.outcome.balanced_accuracy": 0.25},
        "columns": {"eventually.outcome.balanced_accuracy": "EVENTUALLY outcome bal. acc.",
                    "rankme.now": "RankMe now"},
        "rows": [
            {"name": "a", "metrics": {"eventually.outcome.balanced_accuracy":
                                      {"value": 0.5, "low": 0.4, "high": 0.61}}},
            {"name": "b", "metrics": {"rankme.now": {"value": 3.0, "low": 2.5, "high": 3.5}}},
        ],
    }  # fmt: skip
    assert markdown_table(result).splitlines() == [
        "| source | EVENTUALLY outcome bal. acc. | RankMe now |",
        "|---|---|---|",
        "| a | 0.500 [0.400, 0.610] | - |",
        "| b | - | 3.000 [2.500, 3.500] |",
        "",
        "20 windows of 4 held-out videos; 95% intervals from 10 bootstrap resamples of videos "
        "(seed 0). Chance: EVENTUALLY outcome bal. acc. 0.25.",
    ]


def test_default_names() -> None:
    assert default_name("runs/tri_s0/") == "tri_s0"
    assert default_name("random:runs/tri_s0") == "random:tri_s0"
    assert default_name("user/vit-tiny-drive") == "vit-tiny-drive"
    assert default_name("ego-status") == "ego_status"  # the pseudo-source of the guard


def test_parse_groups() -> None:
    assert parse_groups(["tri=s0,s1,s2", "x=a"]) == {"tri": ["s0", "s1", "s2"], "x": ["a"]}
    with pytest.raises(ValueError, match="NAME=A,B,C"):
        parse_groups(["tri"])


def test_unknown_source_and_bad_names(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(ValueError, match="unknown source '/no/such/run'"):
        compare(["/no/such/run"], data)
    with pytest.raises(ValueError, match="random:RUN"):
        compare(["random:"], data)
    with pytest.raises(ValueError, match="one distinct name per source"):
        compare(["a", "b"], data, names=["x"])
    with pytest.raises(ValueError, match="group 'g'"):
        compare(["a", "b"], data, names=["x", "y"], groups={"g": ["x", "z"]})
    args = ["compare", "/no/such/run", "--data", str(data), "--out", str(tmp_path / "o")]
    assert main(args) == 2


@pytest.mark.slow
def test_compare_refuses_other_windows_and_unlabelled_folders(
    eval_clips: Path, tmp_path: Path
) -> None:
    a = _saved(tmp_path / "a")
    b = _saved(tmp_path / "b", "data.stride_s=0.5")
    with pytest.raises(ValueError, match="cuts different windows"):
        compare([str(a), str(b)], eval_clips, bootstrap=5)
    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(eval_clips / "videos", unlabelled / "videos")
    with pytest.raises(ValueError, match="no labelled windows"):
        compare([str(a)], unlabelled, bootstrap=5)


@pytest.mark.slow
def test_compare_two_runs_and_random_init(
    eval_clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    runs = []
    for seed in (0, 1):
        overrides = [*EVAL, "data.source=synthetic", "train.steps=2", f"train.seed={seed}"]
        runs.append(str(train(tiny_config(*overrides, f"train.run_dir={tmp_path / f's{seed}'}"))))
    out = tmp_path / "cmp"
    args = ["compare", *runs, f"random:{runs[0]}", "--data", str(eval_clips), "--out", str(out)]
    args += ["--names", "s0", "s1", "random", "--group", "tri=s0,s1", "--bootstrap", "40"]
    assert main([*args, "--device", "cpu"]) == 0
    result = json.loads((out / COMPARISON_JSON).read_text())
    assert [r["name"] for r in result["rows"]] == ["s0", "s1", "random", "tri"]
    assert result["rows"][2]["source"] == f"random:{runs[0]}"
    assert result["rows"][3]["members"] == ["s0", "s1"]
    columns = result["columns"]
    for key in (
        "eventually.outcome.balanced_accuracy", "eventually.now_mean.macro_f1",
        "soon.l1_over_copy.+0.25s", "rankme.now", "rankme.outcome",
    ):  # fmt: skip
        assert key in columns, key
    assert "now.ego_lane.balanced_accuracy" in columns
    assert "now.left_lane.balanced_accuracy" in columns  # the clips carry scene facts (v2)
    assert "now.leader_closing.balanced_accuracy" in columns
    for row in result["rows"]:
        for key, m in row["metrics"].items():
            assert m["low"] - 1e-3 <= m["value"] <= m["high"] + 1e-3, (row["name"], key)
    s0, s1, random, tri = (r["metrics"] for r in result["rows"])
    for key in tri:  # the group's point is the mean of its members'
        assert abs(tri[key]["value"] - (s0[key]["value"] + s1[key]["value"]) / 2) < 1e-3
    assert random["rankme.now"] != s0["rankme.now"]  # fresh weights, not the run's
    table = (out / COMPARISON_MD).read_text()
    assert table.startswith("| source | ") and "| tri | " in table
    assert (out / COMPARISON_PNG).read_bytes().startswith(PNG)
    assert "| random | " in capsys.readouterr().out
    # --parts soon: the same SOON cells, no probe run
    soon_only = tmp_path / "soon_only"
    assert main([*args[:-2], "--bootstrap", "40", "--parts", "soon", "--out", str(soon_only)]) == 0
    fast = json.loads((soon_only / COMPARISON_JSON).read_text())
    assert set(fast["columns"]) == {k for k in columns if k.startswith("soon.")}
    assert fast["chance"] == {}
    for full_row, soon_row in zip(result["rows"], fast["rows"], strict=True):
        assert soon_row["metrics"] == {
            k: v for k, v in full_row["metrics"].items() if k.startswith("soon.")
        }


def test_cli_parts_are_the_compare_parts() -> None:
    from tritemporal.cli import COMPARE_PARTS, COMPARE_TTM
    from tritemporal.eval.anticipation import TTM_HORIZONS
    from tritemporal.eval.compare import PARTS

    assert COMPARE_PARTS == PARTS
    assert COMPARE_TTM == TTM_HORIZONS
    with pytest.raises(
        ValueError, match="choose one or more of eventually, now, soon, rankme, ttm"
    ):
        compare(["a"], "data", parts=("speed",))


def test_leader_bins_put_no_leader_apart_and_split_the_rest_in_tertiles() -> None:
    values = [None, 6.0, 1.0, 2.0, None, 3.0, 4.0, 5.0]
    assert _leader_bins(values).tolist() == [0, 3, 1, 1, 0, 2, 2, 3]
    assert _leader_bins([None, None]).tolist() == [0, 0]


def test_compare_decodes_the_held_out_videos_once_and_skips_unasked_forecasts(
    eval_clips: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = [str(_saved(tmp_path / "a")), str(_saved(tmp_path / "b", seed=1))]
    filled = []

    def spy(dataset: object, config: object) -> None:
        filled.append(dataset)
        frames_in_memory(dataset, config)

    def no_forecast(*args: object, **kwargs: object) -> None:
        raise AssertionError("the predictor ran for parts that show no SOON column")

    monkeypatch.setattr(compare_module, "frames_in_memory", spy)
    monkeypatch.setattr(model_module, "soon_forecast", no_forecast)
    parts = ("eventually", "rankme")
    cached = compare(sources, eval_clips, bootstrap=5, parts=parts)
    assert len(filled) == 1  # both sources cut 32x32 windows: one decode serves both
    monkeypatch.setattr(compare_module, "frames_in_memory", lambda dataset, config: None)
    decoded = compare(sources, eval_clips, bootstrap=5, parts=parts)  # read window by window
    assert [r["metrics"] for r in cached["rows"]] == [r["metrics"] for r in decoded["rows"]]


def test_plots_draw_a_group_in_place_of_its_members() -> None:
    rows = [{"name": n} for n in ("random", "a_s0", "a_s1", "b_s0")]
    rows.append({"name": "a", "members": ["a_s0", "a_s1"]})
    assert [r["name"] for r in plotted_rows(rows)] == ["random", "b_s0", "a"]


def test_front_clips_add_the_leader_box_probe(eval_clips: Path, tmp_path: Path) -> None:
    """Annotations with `scene.leader_box` (front-camera clips) add the detection cell, with
    the constant box's IoU as its reference."""
    data = tmp_path / "front"
    shutil.copytree(eval_clips, data)
    for path in (data / "annotations").glob("*.json"):
        raw = json.loads(path.read_text())
        scene = raw["scene"]  # a leader on every frame: the 3 videos then all have boxes
        gaps = [30.0 if g is None else g for g in scene["leader_gap"]]
        scene["leader_gap"] = gaps
        scene["leader_closing"] = [0.0 if c is None else c for c in scene["leader_closing"]]
        scene["leader_box"] = [[0.45, 0.5 - 2 / (g + 8), 0.55, 0.5 + 2 / (g + 8)] for g in gaps]
        path.write_text(json.dumps(raw))
    source = str(_saved(tmp_path / "m"))
    out = tmp_path / "cmp"
    assert main(["compare", source, "--data", str(data), "--out", str(out), "--parts", "now",
                 "--bootstrap", "20", "--device", "cpu"]) == 0  # fmt: skip
    result = json.loads((out / COMPARISON_JSON).read_text())
    cell = result["rows"][0]["metrics"]["now.leader_box.iou"]
    assert 0.0 < cell["value"] <= 1.0 and cell["low"] <= cell["value"] <= cell["high"]
    assert 0.0 < result["chance"]["now.leader_box.iou"] < 1.0
    assert "NOW leader_box iou" in (out / COMPARISON_MD).read_text()
