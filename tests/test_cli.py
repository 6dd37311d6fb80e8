"""The `tritemporal` command line and the packaging of the user's top-level folders."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import TINY
from tritemporal.cli import main
from tritemporal.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]
PIP_WHEEL = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]


def _tiny_args() -> list[str]:
    """The tiny test config as --set flags, leaving train.steps to each test."""
    return [a for item in TINY if "train.steps" not in item for a in ("--set", item)]


def test_train_command_with_shortcuts(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    code = main(["train", *_tiny_args(), "--steps", "2", "--run-dir", str(run_dir), "--seed", "3"])
    assert code == 0
    assert read_metrics(run_dir)[-1]["step"] == 2
    assert "seed: 3" in (run_dir / "config.yaml").read_text()


def test_set_overrides_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  steps: 50\n")
    run_dir = tmp_path / "run"
    args = ["train", "--config", str(config), *_tiny_args(), "--set", "train.steps=1"]
    assert main([*args, "--run-dir", str(run_dir)]) == 0
    assert "steps: 1\n" in (run_dir / "config.yaml").read_text()


def test_data_root_means_videos_never_synthetic(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    code = main(["train", *_tiny_args(), "--data-root", str(tmp_path), "--run-dir", str(tmp_path)])
    assert code == 2
    assert f"data.root {tmp_path} has no videos/ folder" in caplog.text


def test_config_errors_exit_2_with_the_key(caplog: pytest.LogCaptureFixture) -> None:
    assert main(["train", "--set", "clip.soon_frames=3"]) == 2
    assert "clip.soon_frames=3 must be divisible by clip.tubelet_t=2" in caplog.text


@pytest.mark.slow
def test_console_script_and_script_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tritemporal.cli", "train", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--data-root" in out.stdout and "--resume" in out.stdout
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--set" in out.stdout


@pytest.mark.slow
def test_no_bare_top_level_modules_are_installed(tmp_path: Path) -> None:
    """adapters/heads/objectives ship only as tritemporal.*; a PyPI `adapters` may coexist."""
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns(".git", ".venv*", "runs", "build", "*.egg-info", "__pycache__")
    shutil.copytree(ROOT, source, ignore=ignore)
    subprocess.run(
        [*PIP_WHEEL, str(source), "-w", str(tmp_path / "wheel")],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "wheel").glob("tritemporal-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"tritemporal", "tritemporal-0.1.0.dist-info"}
    for sub in ("adapters", "heads", "objectives"):
        assert f"tritemporal/{sub}/__init__.py" in names
    code = "import tritemporal.adapters, tritemporal.heads, tritemporal.objectives"
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)
