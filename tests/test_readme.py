"""The README's Python snippet runs as written, on a tiny trained run in its place."""

from __future__ import annotations

import re
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
    assert (tmp_path / "my-model" / "model.safetensors").is_file()
    TriTemporalModel.from_pretrained(tmp_path / "my-model")
