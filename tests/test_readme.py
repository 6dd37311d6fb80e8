"""The README's Python snippet runs as written, on a tiny trained run in its place."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import tiny_config
from tritemporal.model import TriTemporalModel
from tritemporal.train import train

README = Path(__file__).resolve().parent.parent / "README.md"


def python_section_code() -> str:
    """The first ```python block under the README's "## Python" heading."""
    section = README.read_text().split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "README's Python section lost its code block"
    return blocks[0]


def test_python_snippet_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    train(tiny_config("train.run_dir=runs/quickstart", "train.steps=1"))
    namespace: dict = {}
    exec(compile(python_section_code(), str(README), "exec"), namespace)
    assert set(namespace["out"]) == {"now", "soon", "eventually"}
    assert (tmp_path / "runs" / "my-model" / "model.safetensors").is_file()  # runs/: ignored
    TriTemporalModel.from_pretrained(tmp_path / "runs" / "my-model")


def test_curves_command_draws_metrics_the_quickstart_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from tritemporal.cli import main
    from tritemporal.config import load_config

    (command,) = re.findall(r"`(tritemporal curves [^`]*)`", README.read_text())
    quickstart = load_config(README.parent / "configs" / "quickstart.yaml")
    tiny = tiny_config("train.run_dir=runs/quickstart", "train.steps=2")
    # the tiny run logs what the quickstart logs: the same objectives, no eval hook
    assert quickstart.loss == tiny.loss and quickstart.eval.every == tiny.eval.every == 0
    monkeypatch.chdir(tmp_path)
    train(tiny)
    argv = shlex.split(command)
    assert main(argv[1:]) == 0, command
    assert "never logged" not in caplog.text
    assert (tmp_path / "runs" / "quickstart" / "curves.png").is_file()
    assert main(["curves", "runs/quickstart", "--keys", "eval/now_rankme", "loss"]) == 0
    assert "skipped ['eval/now_rankme']: never logged" in caplog.text
    assert main(["curves", "runs/quickstart", "--keys", "eval/now_rankme"]) == 2  # none at all


def worked_example_commands() -> list[str]:
    """The bash block of the README's import worked example, continuation lines joined."""
    section = README.read_text().split("### Worked example: from a download to `train`", 1)[1]
    block = re.findall(r"```bash\n(.*?)```", section.split("\n## ", 1)[0], flags=re.S)[0]
    joined = block.replace("\\\n", " ")
    return [line.split("#", 1)[0].strip() for line in joined.splitlines() if line.strip()]


@pytest.mark.slow
def test_import_worked_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import TINY
    from tests.dataset_fixtures import write_demo
    from tritemporal.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(README.parent / "configs")
    commands = worked_example_commands()
    assert commands[0] == "python -m tests.dataset_fixtures demo"
    write_demo(tmp_path / "demo")
    for command in commands[1:]:
        argv = shlex.split(command)
        assert argv[0] == "tritemporal", command
        extra = []  # the tiny model in place of the quickstart's, to keep the suite fast
        if argv[1] == "train":
            extra = [a for s in TINY if not s.startswith("train.steps") for a in ("--set", s)]
        elif argv[1] == "eval":
            extra = ["--max-samples", "24", "--out", str(tmp_path / "eval")]
        assert main([*argv[1:], *extra]) == 0, command
    assert len(list((tmp_path / "demo" / "bdd_train" / "videos").rglob("*.mov"))) == 8
    assert (tmp_path / "demo" / "comma" / "videos").is_dir()
    assert (tmp_path / "eval" / "report.json").is_file()


def test_cpu_torch_line_comes_before_the_package_install() -> None:
    text = README.read_text()
    cpu = text.index("pip install torch --index-url https://download.pytorch.org/whl/cpu")
    package = text.index("\npip install -e . && tritemporal train")  # the first command
    assert cpu < package, "a literal reader would pull the CUDA build first"
    assert "torch==" not in text  # no version pin of one machine's setup


def test_evaluate_commands_write_under_the_ignored_runs_folder() -> None:
    section = README.read_text().split("## Evaluate:", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    written = []
    for line in "".join(commands).replace("\\\n", " ").splitlines():
        argv = shlex.split(line.split("#", 1)[0])
        written += [argv[i + 1] for i, a in enumerate(argv) if a in ("--out", "--data")]
    written += re.findall(r"eval\.data=(\S+?)`", section)
    assert "runs/eval_clips" in written and len(written) >= 6
    assert all(path.startswith("runs/") for path in written), written
    ignored = (README.parent / ".gitignore").read_text().split()
    assert "runs/" in ignored  # nothing the README writes lands untracked in the repo root
