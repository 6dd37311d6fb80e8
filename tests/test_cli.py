"""The `tritemporal` command line and the packaging of the user's top-level folders."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

import tritemporal.cli
import tritemporal.train
from tests.conftest import TINY, sigint_as_in_a_terminal
from tritemporal.cli import main
from tritemporal.metrics import METRICS_FILE, read_metrics

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


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname in ("WARNING", "ERROR")]


def test_ctrl_c_in_training_saves_and_prints_the_command_that_resumes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    real_step, steps = tritemporal.train.train_step, []

    def ctrl_c_at_step_5(*args, **kwargs):
        if len(steps) == 4:
            raise KeyboardInterrupt
        steps.append(args[3])
        return real_step(*args, **kwargs)

    monkeypatch.setattr(tritemporal.train, "train_step", ctrl_c_at_step_5)
    assert main(["train", *_tiny_args(), "--steps", "6", "--run-dir", "runs/x"]) == 130
    (line,) = _warnings(caplog)
    assert line == (
        "interrupted at step 4; saved runs/x/checkpoints/step_00000004; "
        "resume with: tritemporal train --config runs/x/config.yaml --resume"
    )
    assert "Traceback" not in capsys.readouterr().err
    monkeypatch.setattr(tritemporal.train, "train_step", real_step)
    program, *argv = shlex.split(line.split("resume with: ")[1])
    assert program == "tritemporal" and main(argv) == 0  # the printed command, as printed
    assert [r["step"] for r in read_metrics(Path("runs/x"))] == [2, 4, 6]


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "--checkpoint", "run", "--data", "data"],
        ["compare", "run", "--data", "data", "--out", "out"],
        ["make-clips", "--out", "clips"],
        ["import", "bdd100k", "download", "--out", "data"],
        ["predict", "drive.mp4", "--checkpoint", "run"],
        ["bench"],
    ],
    ids=lambda argv: argv[0],
)
def test_ctrl_c_in_any_command_exits_130_with_one_line(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setitem(tritemporal.cli.COMMANDS, argv[0], interrupted)
    assert main(argv) == 130
    again = "; run it again to continue where it stopped" if argv[0] == "import" else ""
    assert _warnings(caplog) == [f"{argv[0]} interrupted (Ctrl-C){again}"]


@pytest.mark.slow
def test_sigint_stops_training_with_one_line_and_exit_130(tmp_path: Path) -> None:
    """A real Ctrl-C (SIGINT to the process group, as a terminal sends it) during training."""
    argv = ["train", *_tiny_args(), "--steps", "100000", "--run-dir", str(tmp_path / "run")]
    process = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-m", "tritemporal.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=sigint_as_in_a_terminal,
    )
    metrics = tmp_path / "run" / METRICS_FILE
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and metrics.read_text()) and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGINT)
    try:
        _, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGABRT)  # faulthandler: where it hangs
        _, err = process.communicate()
        pytest.fail(f"no exit 60 s after SIGINT:\n{err}")
    assert process.returncode == 130, err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if "WARNING" in line]
    assert f"; saved {tmp_path / 'run' / 'checkpoints'}/step_" in line
    config = tmp_path / "run" / "config.yaml"
    assert line.endswith(f"resume with: tritemporal train --config {config} --resume")


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
