"""Data sources end to end: highway-env clips generated once and cached, bench, make-clips."""

from __future__ import annotations

import hashlib
import json
import math
import typing
from pathlib import Path

import av
import pytest

from tests.conftest import tiny_config
from tritemporal.cli import main
from tritemporal.config import DataSource, load_config
from tritemporal.data import highway, sources
from tritemporal.data.annotations import load_annotation
from tritemporal.metrics import read_metrics
from tritemporal.train import train

HIGHWAY = [
    "data.source=highway",
    "data.highway.num_videos=2",
    "data.highway.seconds=4",
    "data.highway.image_size=[64, 64]",
    "data.fps=4",
    "data.stride_s=0.5",
]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TRITEMPORAL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.slow
def test_highway_source_generates_once_then_reuses(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tiny_config(*HIGHWAY)
    dataset = sources.build_dataset(config)
    root = sources.highway_cache_dir(config)
    assert root.parent == cache and (root / sources.HIGHWAY_DONE).is_file()
    assert len(list((root / "videos").glob("*.mp4"))) == 2
    assert len(dataset) > 0 and dataset[0]["video"].shape == (3, 8, 32, 32)
    monkeypatch.setattr(sources, "make_clips", lambda *a, **k: pytest.fail("regenerated"))
    assert len(sources.build_dataset(config)) == len(dataset)


def test_sources_are_the_config_choices() -> None:
    assert set(sources._SOURCES) == set(typing.get_args(DataSource))


def test_highway_cache_key_is_unchanged_by_the_height_width_order() -> None:
    config = load_config(None, ["data.highway.image_size=[64, 128]", "data.fps=4"])
    h = config.data.highway
    spec = [h.scenario, h.num_videos, h.seconds, [128, 64], h.seed, 4.0, highway.POLICY]  # [W, H]
    key = hashlib.blake2b(json.dumps(spec).encode(), digest_size=6).hexdigest()
    assert sources.highway_cache_dir(config).name == f"highway-highway-{key}"


def test_a_zoomed_camera_has_its_own_cache() -> None:
    default = load_config(None, ["data.highway.image_size=[64, 128]"])
    zoomed = load_config(None, ["data.highway.image_size=[64, 128]", "data.highway.zoom=1.4"])
    assert sources.highway_cache_dir(default) != sources.highway_cache_dir(zoomed)
    with pytest.raises(ValueError, match=r"data\.highway\.zoom=9"):
        load_config(None, ["data.highway.zoom=9"])


def test_highway_refuses_a_foreign_non_empty_root(tmp_path: Path) -> None:
    (tmp_path / "something.txt").write_text("x")
    with pytest.raises(ValueError, match="holds files but no completed highway clip set"):
        sources.build_dataset(tiny_config(*HIGHWAY, f"data.root={tmp_path}"))


@pytest.mark.slow
def test_train_on_highway_clips_writes_data_summary(cache: Path, tmp_path: Path) -> None:
    run_dir = train(tiny_config(*HIGHWAY, f"train.run_dir={tmp_path / 'run'}", "train.steps=2"))
    summary = json.loads((run_dir / "data_summary.json").read_text())
    assert summary["videos_used"] == 2 and summary["skipped"] == []
    assert read_metrics(run_dir)[-1]["step"] == 2


@pytest.mark.slow
def test_make_clips_and_bench_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "clips"
    args = [
        "make-clips",
        "--out",
        str(out),
        "--num",
        "1",
        "--seconds",
        "5",
        "--image-size",
        "64x96",
    ]
    assert main([*args, "--fps", "4", "--seed", "5"]) == 0
    printed = capsys.readouterr().out
    assert "1 highway videos" in printed and "keep_lane" in printed  # the class-balance table
    assert "64x96 px (HxW)" in printed
    with av.open(str(next((out / "videos").glob("*.mp4")))) as video:  # HEIGHTxWIDTH
        assert (video.streams.video[0].height, video.streams.video[0].width) == (64, 96)
    (annotation,) = (out / "annotations").glob("*.json")
    load_annotation(annotation)
    assert main(["make-clips", "--out", str(out), "--image-size", "big"]) == 2
    assert main(["make-clips", "--out", str(out), "--size", "96x64"]) == 2  # the old flag
    assert "now --image-size HEIGHTxWIDTH" in caplog.text and "--image-size 64x96" in caplog.text

    report = tmp_path / "bench.json"
    bench = ["bench", "--data", "--workers", "0", "1", "--batches", "2", "--out", str(report)]
    bench += ["--gpu-clips-per-s", "100"]
    overrides = ["data.source=videos", f"data.root={out}", "data.fps=4", "data.stride_s=0.25"]
    overrides += ["clip.image_size=32", "clip.patch=8", "train.batch_size=2"]
    assert main([*bench, *[a for o in overrides for a in ("--set", o)]]) == 0
    result = json.loads(report.read_text())
    assert result["results"][0]["workers"] == 0 and result["results"][0]["clips_per_s"] > 0
    feed = result["feeding"]  # from the worker runs only: worker 0 shares the main process
    assert feed["clips_per_s_per_core"] == result["results"][1]["clips_per_s_per_worker"]
    assert feed["cores_per_gpu"] == math.ceil(100 / feed["clips_per_s_per_core"])
