"""Hub-ready folders: save/load round trips, peft adapter format, merge, push (network faked)."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import VJEPA2Model

from tests.conftest import tiny_config, vjepa2_overrides
from tritemporal.cli import main
from tritemporal.files import default_mode
from tritemporal.hub import (
    ADAPTER_DIR,
    HUB_CONFIG,
    HUB_WEIGHTS,
    MODEL_CARD,
    merge_to_transformers,
)
from tritemporal.layers.tokens import MaskToken
from tritemporal.model import TriTemporalModel
from tritemporal.train import train

LORA = ["backbone.lora.r=4", "backbone.lora.alpha=8", "backbone.lora.apply_to=[encoder, predictor]"]


def _video(config, batch: int = 2) -> torch.Tensor:
    torch.manual_seed(3)
    return torch.randint(
        0, 256, (batch, 3, config.clip.total_frames, *config.clip.hw), dtype=torch.uint8
    )


def _perturb(model: TriTemporalModel) -> None:
    """Move every trainable tensor (LoRA B starts at zero) so round trips test real values."""
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))


def test_builtin_round_trip_is_exact(tmp_path: Path) -> None:
    config = tiny_config()
    model = TriTemporalModel(config).eval()
    _perturb(model)
    folder = tmp_path / "saved"
    model.save_pretrained(folder)
    assert {HUB_CONFIG, HUB_WEIGHTS, MODEL_CARD} <= {p.name for p in folder.iterdir()}
    assert not any(k.startswith("teacher.") for k in load_file(folder / HUB_WEIGHTS))
    loaded = TriTemporalModel.from_pretrained(folder)
    video = _video(config)
    a, b = model.encode(video), loaded.encode(video)
    assert all(torch.equal(a[k], b[k]) for k in a)
    card = (folder / MODEL_CARD).read_text()
    assert "not a driving policy" in card and "vit-debug" in card


def test_lora_round_trip_keeps_base_by_reference(vjepa2_dir: Path, tmp_path: Path) -> None:
    config = tiny_config(*vjepa2_overrides(vjepa2_dir, *LORA))
    model = TriTemporalModel(config).eval()
    _perturb(model)
    folder = tmp_path / "saved"
    model.save_pretrained(folder, model_card_kwargs={"step": 123})
    meta = json.loads((folder / HUB_CONFIG).read_text())
    assert meta["base_model"] == {"id": str(vjepa2_dir), "revision": None}
    weights = load_file(folder / HUB_WEIGHTS)
    assert "backbone.encoder.hf.layer.0.attention.query.base_layer.weight" not in weights
    assert "outcome.head.weight" in weights
    assert (folder / ADAPTER_DIR / "adapter_config.json").is_file()
    loaded = TriTemporalModel.from_pretrained(folder)
    video = _video(config)
    a, b = model.encode(video), loaded.encode(video)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert "Steps: 123" in (folder / MODEL_CARD).read_text()


def test_adapter_loads_with_peft_on_the_base_model(vjepa2_dir: Path, tmp_path: Path) -> None:
    config = tiny_config(*vjepa2_overrides(vjepa2_dir, *LORA))
    model = TriTemporalModel(config).eval()
    _perturb(model)
    folder = tmp_path / "saved"
    model.save_pretrained(folder)
    peft_model = PeftModel.from_pretrained(
        VJEPA2Model.from_pretrained(vjepa2_dir), folder / ADAPTER_DIR
    ).eval()
    video = model.normalize(_video(config))
    with torch.no_grad():
        expected = peft_model.base_model.model.get_vision_features(video.permute(0, 2, 1, 3, 4))
        ours = model.backbone.encoder(video)
    assert (ours - expected).abs().max() <= 1e-5


def test_merge_matches_unmerged_outputs(vjepa2_dir: Path, tmp_path: Path) -> None:
    config = tiny_config(*vjepa2_overrides(vjepa2_dir, *LORA))
    model = TriTemporalModel(config).eval()
    _perturb(model)
    folder = tmp_path / "saved"
    model.save_pretrained(folder)
    loaded = TriTemporalModel.from_pretrained(folder)
    out = merge_to_transformers(loaded, loaded.config, tmp_path / "merged")
    merged = VJEPA2Model.from_pretrained(out).eval()
    written = [p for p in [*folder.rglob("*"), *out.iterdir()] if p.is_file()]
    assert {p.relative_to(tmp_path).as_posix() for p in written} >= {
        f"saved/{ADAPTER_DIR}/adapter_model.safetensors",
        "merged/model.safetensors",
    }
    # the umask's mode (0644 under 022): safetensors and transformers alone write 0600
    assert {stat.S_IMODE(p.stat().st_mode) for p in written} == {default_mode()}
    video = model.normalize(_video(config))
    with torch.no_grad():
        full = merged.get_vision_features(video.permute(0, 2, 1, 3, 4))
        assert (model.backbone.encoder(video) - full).abs().max() <= 1e-5
        ctx, tgt = torch.tensor([[0, 1, 2, 3]] * 2), torch.tensor([[9, 10]] * 2)
        ours = model.backbone.predictor(full[:, :4], ctx, tgt, config.clip.grid, MaskToken.LONG)
        theirs = merged.predictor(full, [ctx], [tgt]).last_hidden_state
        assert (ours - theirs).abs().max() <= 1e-5
    builtin = TriTemporalModel(tiny_config())
    with pytest.raises(ValueError, match="needs a vjepa2"):
        merge_to_transformers(builtin, builtin.config, tmp_path / "m")


class FakeHub:
    """Stands in for HfApi's network calls and keeps what would have been uploaded."""

    calls: ClassVar[list] = []
    keep: ClassVar[Path]

    def __init__(self, token: str | None = None) -> None:
        self.token = token

    def create_repo(
        self, repo_id: str, private: bool | None = False, exist_ok: bool = False
    ) -> SimpleNamespace:
        FakeHub.calls.append(("create_repo", repo_id, private, exist_ok))
        return SimpleNamespace(repo_id=repo_id)

    def create_branch(self, repo_id: str, branch: str, exist_ok: bool = False) -> None:
        FakeHub.calls.append(("create_branch", repo_id, branch))

    def upload_folder(
        self, repo_id: str, folder_path: str, revision=None, commit_message=None, **options
    ) -> SimpleNamespace:
        assert options.get("repo_type", "model") == "model"
        kept = Path(FakeHub.keep) / "uploaded"
        shutil.copytree(folder_path, kept)
        FakeHub.calls.append(("upload_folder", repo_id, revision, commit_message))
        return SimpleNamespace(commit_url="https://huggingface.co/fake/commit/1")


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> type[FakeHub]:
    import huggingface_hub.hub_mixin

    import tritemporal.hub
    import tritemporal.model

    FakeHub.calls, FakeHub.keep = [], tmp_path
    monkeypatch.setattr(huggingface_hub.hub_mixin, "HfApi", FakeHub)  # the mixin's upload
    monkeypatch.setattr(tritemporal.model, "HfApi", FakeHub)  # our branch creation
    monkeypatch.setattr(tritemporal.hub, "get_token", lambda: "hf_fake")
    return FakeHub


def test_push_a_run_builds_the_folder_and_makes_one_commit(fake_hub, tmp_path: Path) -> None:
    run = train(tiny_config(f"train.run_dir={tmp_path / 'run'}", "train.steps=2"))
    code = main(["push", str(run), "--repo-id", "me/tiny", "--private", "--revision", "exp1"])
    assert code == 0
    names = [c[0] for c in fake_hub.calls]
    # the branch exists before the one upload commit (the mixin re-asserts the repo, exist_ok)
    assert names[:2] == ["create_repo", "create_branch"] and names[-1] == "upload_folder"
    assert names.count("upload_folder") == 1 and set(names) == {*names[:2], "upload_folder"}
    assert fake_hub.calls[0] == ("create_repo", "me/tiny", True, True)
    assert fake_hub.calls[-1][2] == "exp1"  # uploaded to the branch
    uploaded = tmp_path / "uploaded"
    assert {HUB_CONFIG, HUB_WEIGHTS, MODEL_CARD} <= {p.name for p in uploaded.iterdir()}
    TriTemporalModel.from_pretrained(uploaded)
    assert "Steps: 2" in (uploaded / MODEL_CARD).read_text()


def test_push_errors(fake_hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = TriTemporalModel(tiny_config())
    with pytest.raises(ValueError, match="not USER/NAME"):
        model.push_to_hub("no-slash")
    with pytest.raises(ValueError, match="not USER/NAME"):
        model.push_to_hub("a/b/c")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / HUB_CONFIG).write_text("{}")
    with pytest.raises(FileNotFoundError, match="not a complete tritemporal model folder"):
        TriTemporalModel.from_pretrained(tmp_path / "half")
    assert main(["push", str(tmp_path / "half"), "--repo-id", "me/x"]) == 2
    import tritemporal.hub

    monkeypatch.setattr(tritemporal.hub, "get_token", lambda: None)
    with pytest.raises(ValueError, match="no Hugging Face token"):
        model.push_to_hub("me/x")
    assert fake_hub.calls == []  # nothing reached the Hub
    assert fake_hub.calls == []


def test_one_loading_path_for_runs_checkpoints_folders_and_hub_ids(tmp_path: Path) -> None:
    """A run dir, one of its checkpoints, a saved folder and a Hub id (from a local cache, at a
    revision) all load through TriTemporalModel.from_pretrained into the same model."""
    run = train(tiny_config(f"train.run_dir={tmp_path / 'run'}", "train.steps=2"))
    from_run = TriTemporalModel.from_pretrained(run)
    from_ckpt = TriTemporalModel.from_pretrained(run / "checkpoints" / "last")
    folder = tmp_path / "saved"
    from_run.save_pretrained(folder)
    sha = "0123456789abcdef0123456789abcdef01234567"
    cache = tmp_path / "hf-cache"
    repo = cache / "models--me--tiny"
    shutil.copytree(folder, repo / "snapshots" / sha)
    (repo / "refs").mkdir()
    (repo / "refs" / "exp1").write_text(sha)
    from_hub = TriTemporalModel.from_pretrained(
        "me/tiny", revision="exp1", cache_dir=cache, local_files_only=True
    )
    video = _video(from_run.config)
    expected = from_run.encode(video)
    for model in (from_ckpt, TriTemporalModel.from_pretrained(folder), from_hub):
        assert not model.training
        out = model.encode(video)
        assert all(torch.equal(expected[k], out[k]) for k in expected)
    with pytest.raises(FileNotFoundError, match="missing does not exist"):
        TriTemporalModel.from_pretrained(tmp_path / "missing")


def test_damaged_saved_weights_name_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "saved"
    TriTemporalModel(tiny_config()).save_pretrained(folder)
    data = (folder / HUB_WEIGHTS).read_bytes()
    (folder / HUB_WEIGHTS).write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"{HUB_WEIGHTS} is damaged"):
        TriTemporalModel.from_pretrained(folder)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """A current folder holding runs/quickstart and runs/quickstart-lora (empty), HOME=it, and
    a Hub download that records its repo id and serves a tiny saved model."""
    import tritemporal.hub

    for name in ("quickstart", "quickstart-lora"):
        (tmp_path / "runs" / name).mkdir(parents=True)
    saved = tmp_path / "hub-snapshot"
    TriTemporalModel(tiny_config()).save_pretrained(saved)
    downloads = []

    def snapshot_download(repo_id: str, **options: object) -> str:
        downloads.append(repo_id)
        return str(saved)

    monkeypatch.setattr(tritemporal.hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(tritemporal.hub, "get_token", lambda: "hf_fake")  # push checks it first
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    return SimpleNamespace(root=tmp_path, downloads=downloads)


@pytest.mark.parametrize(
    ("source", "parent", "close"),
    [
        ("runs/quickstrat", "runs/", "runs/quickstart, runs/quickstart-lora"),
        ("./runs/quickstrat", "runs/", "runs/quickstart"),
        ("~/runs/quickstrat", "/runs/", "/runs/quickstart"),  # parent shown expanded
        ("runs/quickstrat/checkpoints/last", "runs/", "runs/quickstart"),
        ("runz/quickstart/checkpoints", "the current folder", "close names: runs"),
        ("vit-tiny-drve", "the current folder", "vit-tiny-drive (shipped)"),
        ("quickstart", "the current folder", "no close names"),
    ],
)
def test_a_missing_folder_is_not_a_hub_id(
    workdir: SimpleNamespace, source: str, parent: str, close: str
):
    with pytest.raises(FileNotFoundError) as err:
        TriTemporalModel.from_pretrained(source)
    message = str(err.value)
    assert message.startswith(f"folder {source} does not exist (") and "\n" not in message
    assert f"{parent} has no " in message and close in message
    assert workdir.downloads == []  # the Hub was never asked


def test_owner_name_goes_to_the_hub_unless_folder_owner_exists(workdir: SimpleNamespace) -> None:
    model = TriTemporalModel.from_pretrained("facebook/vjepa2-vitl-fpc64-256")
    assert workdir.downloads == ["facebook/vjepa2-vitl-fpc64-256"] and not model.training
    with pytest.raises(FileNotFoundError, match="not a Hub repo id, because runs/ exists here"):
        TriTemporalModel.from_pretrained("runs/vjepa2-vitl-fpc64-256")
    assert len(workdir.downloads) == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "--checkpoint", "runs/quickstrat", "--data", "data"],
        [
            "eval",
            "--checkpoint",
            "hub-snapshot",
            "--data",
            "data",
            "--unconditioned",
            "runs/quikstart",
        ],
        ["predict", "video.mp4", "--checkpoint", "runs/quickstrat"],
        ["push", "runs/quickstrat", "--repo-id", "me/tiny"],
        ["merge", "runs/quickstrat", "out"],
        ["export", "runs/quickstrat", "--out", "out"],
        ["export", "teacher:runs/quickstrat", "--out", "out"],
        ["compare", "random:runs/quickstrat", "hub-snapshot", "--data", "d", "--out", "o"],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_every_command_says_the_folder_is_missing_in_one_line(
    workdir: SimpleNamespace, argv: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    assert main(argv) == 2
    (error,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "does not exist (runs/ has no " in error and "close names: runs/quickstart" in error
    assert "\n" not in error and workdir.downloads == []
