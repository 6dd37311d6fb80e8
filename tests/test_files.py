"""Files the project writes: atomic, and with the mode the umask gives (never safetensors' 0600)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import tiny_config
from tritemporal.checkpoint import save_checkpoint
from tritemporal.data.annotations import Event, write_annotation
from tritemporal.data.importers.base import place_video
from tritemporal.files import atomic_path, current_umask, default_mode, write_text
from tritemporal.heads.probe import LinearProbe
from tritemporal.model import TriTemporalModel
from tritemporal.predict import save_predictions

UMASKS = {0o022: 0o644, 0o077: 0o600}  # umask -> the mode every written file must have


@pytest.fixture(params=sorted(UMASKS), ids=lambda mask: f"umask{mask:03o}")
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under a umask, restoring the process's own afterwards."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _modes(folder: Path) -> dict[str, int]:
    """Permission bits of every regular file under `folder` (links left out)."""
    return {
        str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def test_umask_is_read_without_changing_it(umask: int) -> None:
    assert current_umask() == umask and default_mode() == UMASKS[umask]
    assert os.umask(umask) == umask  # still in force


def test_every_saved_file_has_the_umask_mode(umask: int, tmp_path: Path) -> None:
    """save_pretrained, a training checkpoint, the eval probe, an annotation and predictions:
    0644 under umask 022, 0600 under 077 (safetensors alone would write 0600 under both)."""
    model = TriTemporalModel(tiny_config())
    model.save_pretrained(tmp_path / "saved")
    optimizer = torch.optim.AdamW(model.parameters())
    save_checkpoint(tmp_path / "run", 1, model, optimizer, {"note": "test"})
    e, c = 4, 2
    probe = LinearProbe(
        torch.zeros(e), torch.ones(e), torch.zeros(c, e), torch.zeros(c), ["a", "b"]
    )
    probe.save(tmp_path / "eval")
    write_annotation(tmp_path / "data" / "annotations" / "v.json", [Event("brake", 0.0, 1.0)])
    save_predictions({"time": np.zeros(3)}, tmp_path / "out" / "v.predictions.npz")
    modes = _modes(tmp_path)
    for name in (
        "saved/model.safetensors",
        "saved/config.json",
        "run/checkpoints/step_00000001/model.safetensors",
        "run/checkpoints/step_00000001/optimizer.safetensors",
        "eval/eventually_probe.safetensors",
        "eval/eventually_probe.json",
        "data/annotations/v.json",
        "out/v.predictions.npz",
    ):
        assert name in modes
    assert modes == dict.fromkeys(modes, UMASKS[umask])
    assert not [p for p in tmp_path.rglob(".*.part")]  # no temporary names left behind


def test_a_copied_video_takes_the_umask_mode_not_the_source_s(umask: int, tmp_path: Path) -> None:
    src = tmp_path / "src.mp4"
    src.write_bytes(b"not really a video")
    src.chmod(0o600)
    placed = place_video(src, tmp_path / "out" / "videos" / "a.mp4", copy=True)
    assert stat.S_IMODE(placed.stat().st_mode) == UMASKS[umask]
    link = place_video(src, tmp_path / "out" / "videos" / "b.mp4", copy=False)
    assert link.is_symlink() and stat.S_IMODE(src.stat().st_mode) == 0o600  # source untouched


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = write_text(tmp_path / "a.json", "old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
