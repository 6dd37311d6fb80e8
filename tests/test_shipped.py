"""Shipped pretrained models: a saved folder under a registry key, as a backbone and as a source."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import tiny_config
from tritemporal.adapters import list_backbones, registry, shipped
from tritemporal.cli import main
from tritemporal.config import load_config
from tritemporal.eval.compare import default_name, load_source
from tritemporal.hub import HUB_WEIGHTS, MODEL_CARD
from tritemporal.model import TriTemporalModel
from tritemporal.train import train

KEY = "vit-debug-shipped-test"


@pytest.fixture
def shipped_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A trained-looking tiny model saved as a shipped folder, registered under KEY."""
    torch.manual_seed(0)
    model = TriTemporalModel(tiny_config())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    folder = tmp_path / "pretrained" / KEY
    model.save_pretrained(folder)
    monkeypatch.setattr(shipped, "SHIPPED_ROOT", tmp_path / "pretrained")
    monkeypatch.setitem(registry._BACKBONES, KEY, shipped.shipped_backbone(KEY, folder))
    return folder


def test_a_shipped_key_is_a_backbone_that_starts_from_its_weights(shipped_folder: Path) -> None:
    assert KEY in list_backbones()
    saved = load_file(shipped_folder / HUB_WEIGHTS)
    model = TriTemporalModel(tiny_config(f"backbone.name={KEY}"))
    for name, tensor in model.backbone.state_dict().items():
        assert torch.equal(tensor, saved[f"backbone.{name}"]), name
    for (name, t), s in zip(
        model.teacher.state_dict().items(),
        model.backbone.encoder.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(t, s), f"the teacher starts as the shipped encoder: {name}"
    # the heads are the fine-tune's own: freshly initialised, not read from the folder
    assert not torch.equal(
        model.outcome.state_dict()["pool.queries"], saved["outcome.pool.queries"]
    )


def test_a_shipped_key_loads_as_a_saved_folder(shipped_folder: Path) -> None:
    by_key = TriTemporalModel.from_pretrained(KEY)
    by_path = TriTemporalModel.from_pretrained(shipped_folder)
    video = torch.randint(0, 256, (2, 3, 8, 32, 32), dtype=torch.uint8)
    a, b = by_key.encode(video), by_path.encode(video)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_another_architecture_is_refused_with_the_keys_to_set(shipped_folder: Path) -> None:
    config = tiny_config(f"backbone.name={KEY}", "predictor.depth=3", "backbone.depth=3")
    with pytest.raises(ValueError, match=r"predictor\.depth=2, not 3") as err:
        TriTemporalModel(config)
    assert "backbone.depth unset (vit-debug's), not 3" in str(err.value)
    assert str(shipped_folder) in str(err.value)


def test_a_damaged_weights_file_names_itself(shipped_folder: Path) -> None:
    data = (shipped_folder / HUB_WEIGHTS).read_bytes()
    (shipped_folder / HUB_WEIGHTS).write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="damaged or unreadable"):
        TriTemporalModel(tiny_config(f"backbone.name={KEY}"))


def test_export_writes_the_folder_a_shipped_model_is(tmp_path: Path) -> None:
    run = train(tiny_config(f"train.run_dir={tmp_path / 'run'}", "train.steps=2"))
    notes = tmp_path / "notes.md"
    notes.write_text("| probe | base |\n|---|---|\n| ego lane | 0.9 |\n")
    out = ["--out", str(tmp_path / "folder")]
    assert main(["export", str(run), *out, "--notes", str(tmp_path / "missing.md")]) == 2
    assert not (tmp_path / "folder").exists()
    assert main(["export", str(run), *out]) == 0
    assert main(["export", str(run), *out, "--notes", str(notes)]) == 0  # replaces the card
    assert main(["curves", str(run), "--keys", "loss", "target_std"]) == 0
    assert (run / "curves.png").read_bytes().startswith(b"\x89PNG")
    card = (tmp_path / "folder" / MODEL_CARD).read_text()
    assert "- Steps: 2" in card and "| ego lane | 0.9 |" in card
    video = torch.randint(0, 256, (2, 3, 8, 32, 32), dtype=torch.uint8)
    a = TriTemporalModel.from_pretrained(run).encode(video)
    b = TriTemporalModel.from_pretrained(tmp_path / "folder").encode(video)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert main(["curves", str(tmp_path / "folder")]) == 2  # no metrics.jsonl: a clear error


def test_teacher_source_exports_the_ema_encoder(tmp_path: Path) -> None:
    run = train(tiny_config(f"train.run_dir={tmp_path / 'run'}", "train.steps=2"))
    assert main(["export", f"teacher:{run}", "--out", str(tmp_path / "t")]) == 0
    trained = TriTemporalModel.from_pretrained(run)
    saved = load_file(tmp_path / "t" / HUB_WEIGHTS)
    teacher = trained.teacher.state_dict()
    assert any(
        not torch.equal(v, teacher[k]) for k, v in trained.backbone.encoder.state_dict().items()
    ), "two steps apart: student and teacher differ"
    for name, tensor in teacher.items():
        assert torch.equal(saved[f"backbone.encoder.{name}"], tensor), name
    with pytest.raises(ValueError, match="holds no EMA teacher"):
        load_source(f"teacher:{tmp_path / 't'}")
    assert default_name(f"teacher:{run}/") == "teacher:run"


def test_the_shipped_base_is_small_and_loads_both_ways() -> None:
    """vit-tiny-drive: in the package, <= 25 MB, a backbone key and a from_pretrained source."""
    folder = shipped.shipped_models()["vit-tiny-drive"]
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 25 * 2**20
    assert (folder / MODEL_CARD).read_text().count("configs/pretrain_small.yaml") >= 1
    assert "vit-tiny-drive" in list_backbones()
    base = TriTemporalModel.from_pretrained("vit-tiny-drive")
    config = load_config(str(Path(__file__).parents[1] / "configs" / "quickstart.yaml"))
    assert config.backbone.name == "vit-tiny-drive"
    tuned = TriTemporalModel(config)  # the quickstart starts from the shipped weights
    for name, tensor in base.backbone.state_dict().items():
        assert torch.equal(tensor, tuned.backbone.state_dict()[name]), name
    video = torch.randint(0, 256, (2, 3, 16, 64, 128), dtype=torch.uint8)
    assert base.encode(video)["now"].shape == (2, 4 * 4 * 8, 192)


def test_the_front_base_is_small_and_loads_both_ways() -> None:
    """vit-tiny-front: in the package, <= 25 MB, its card names its recipe, and it encodes
    128x256 front-camera clips as a saved folder and as a fine-tune's backbone."""
    folder = shipped.shipped_models()["vit-tiny-front"]
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 25 * 2**20
    assert "configs/pretrain_front.yaml" in (folder / MODEL_CARD).read_text()
    base = TriTemporalModel.from_pretrained("vit-tiny-front")
    recipe = str(Path(__file__).parents[1] / "configs" / "pretrain_front.yaml")
    tuned = TriTemporalModel(load_config(recipe, ["backbone.name=vit-tiny-front"]))
    for name, tensor in base.backbone.state_dict().items():
        assert torch.equal(tensor, tuned.backbone.state_dict()[name]), name
    video = torch.randint(0, 256, (2, 3, 16, 128, 256), dtype=torch.uint8)
    assert base.encode(video)["now"].shape == (2, 4 * 4 * 8, 192)


def test_a_fine_tune_of_a_shipped_base_names_it_in_its_card(
    shipped_folder: Path, tmp_path: Path
) -> None:
    model = TriTemporalModel(tiny_config(f"backbone.name={KEY}"))
    model.save_pretrained(tmp_path / "tuned")
    card = (tmp_path / "tuned" / MODEL_CARD).read_text()
    assert f"- Base model: `{KEY}`, the pretrained base shipped with tritemporal" in card
