"""decord is optional (issue 27, item 10): where it has no wheel, `auto` reads with PyAV and
`data.backend=decord` says how to install it; pyproject.toml installs it where its wheels are."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

from tests.test_videos import code, config, write_video
from tritemporal.data import decode
from tritemporal.data.decode import AUTO_BACKENDS, auto_backend, read_frames
from tritemporal.data.video_windows import VideoWindows
from tritemporal.data.videos import VideoClips

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_decord(monkeypatch: pytest.MonkeyPatch) -> None:
    """`import decord` fails, as on a machine without its wheel (macOS arm64, aarch64 Linux)."""
    monkeypatch.setitem(sys.modules, "decord", None)


def test_decord_chosen_but_missing_says_how_to_install(tmp_path: Path, no_decord: None) -> None:
    path = write_video(tmp_path / "videos" / "a.mp4", 16, 8)
    install = r"data\.backend=decord needs the decord package, .* `pip install decord`"
    with pytest.raises(ValueError, match=install):
        read_frames(path, [0], "decord")
    with pytest.raises(ValueError, match=install):  # when the dataset is built, not at a sample
        VideoClips(config(tmp_path, "data.backend=decord"))
    with pytest.raises(ValueError, match=install):
        VideoWindows.open(config(tmp_path, "data.backend=decord"), path)
    assert not decode.decord_installed()
    assert [code(f) for f in read_frames(path, [3, 1], "pyav")] == [3, 1]


def test_auto_reads_with_pyav_when_decord_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_decord: None
) -> None:
    monkeypatch.setitem(AUTO_BACKENDS, (".mp4", "h264"), "decord")  # as if measured faster
    path = write_video(tmp_path / "videos" / "a.mp4", 16, 8, size=(64, 128))
    assert auto_backend(path) == "pyav"
    assert [code(f) for f in read_frames(path, [3, 1], "auto")] == [3, 1]
    data = VideoClips(config(tmp_path))  # the default backend is auto
    assert len(data) == 2 and data[1]["video"].shape[1] == 8


def _platform_check(monkeypatch: pytest.MonkeyPatch):
    """scripts/check_platforms.py as a module (its targets; running it needs the network)."""
    path = REPO / "scripts" / "check_platforms.py"
    spec = importlib.util.spec_from_file_location("check_platforms", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def test_decord_is_required_exactly_where_it_has_wheels(monkeypatch: pytest.MonkeyPatch) -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = {Requirement(text).name: Requirement(text) for text in project["dependencies"]}
    decord, av = requirements["decord"], requirements["av"]
    assert av.marker is None  # PyAV, the default decoder, installs everywhere
    for target in _platform_check(monkeypatch).TARGETS:
        environment = {**default_environment(), **target.markers}
        assert decord.marker.evaluate(environment) == target.decord, target.name
