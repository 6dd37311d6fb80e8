"""Config loading, overrides and validation messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritemporal.config import TriTemporalConfig, apply_override, load_config, save_config

CONFIGS = sorted(Path(__file__).resolve().parents[1].joinpath("configs").glob("*.yaml"))


def test_defaults_are_valid_and_vjepa2_like() -> None:
    config = load_config()
    assert config.clip.total_frames == 16 and config.clip.grid == (8, 16, 16)
    assert (config.mask.short_num_blocks, config.mask.short_scale) == (8, 0.15)
    assert (config.mask.long_num_blocks, config.mask.long_scale) == (2, 0.7)
    assert config.optim.ema_start == config.optim.ema_end == 0.99925
    assert (config.optim.lr, config.optim.weight_decay) == (5.25e-4, 0.04)
    assert (config.predictor.embed_dim, config.predictor.depth) == (384, 12)
    assert (config.loss.lambda_vjepa, config.loss.lambda_soon, config.loss.lambda_event) == (
        1.0,
        1.0,
        0.25,
    )


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_load(path: Path) -> None:
    load_config(path)


def test_overrides_parse_types() -> None:
    config = load_config(
        None,
        ["optim.lr=3e-4", "train.steps=7", "clip.image_size=[64, 96]", "backbone.pretrained=x/y"],
    )
    assert config.optim.lr == 3e-4 and isinstance(config.optim.lr, float)
    assert config.train.steps == 7
    assert config.clip.hw == (64, 96) and config.clip.grid == (8, 4, 6)
    assert config.backbone.pretrained == "x/y"


def test_yaml_round_trip(tmp_path: Path) -> None:
    config = load_config(None, ["train.steps=3", "clip.image_size=[32, 48]"])
    save_config(config, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("clip.num_frames=20", r"clip.num_frames=20 must equal now_frames \+ soon_frames"),
        ("clip.soon_frames=3", r"clip.soon_frames=3 must be divisible by clip.tubelet_t=2"),
        (
            "clip.image_size=250",
            r"clip.image_size height 250 must be a positive multiple of clip.patch=16; try 256",
        ),
        ("clip.image_size=[256, 450]", r"width 450 .* try 448"),
        ("mask.short_scale=1.5", r"mask.short_scale=1.5 must be in \(0, 1\)"),
        ("mask.long_scale=0", r"mask.long_scale=0.0 must be in \(0, 1\)"),
        ("train.batch_size=1", r"train.batch_size=1 must be >= 2"),
        ("optim.schedule=linear", r"optim.schedule='linear': use cosine or constant"),
        ("backbone.pos_embed=learned", r"backbone.pos_embed='learned'"),
        ("train.steps=many", r"train.steps must be int, got 'many'"),
        ("loss.temperature=5", r"loss.temperature=5.0 must lie in"),
        ("train.compile_mode=fast", r"train.compile_mode='fast': use one of default, max-"),
        ("train.compile_mode=reduce-overhead", r"adds CUDA graphs, which break per-block"),
        ("predictor.sdpa_kernel=fa3", r"predictor.sdpa_kernel='fa3': use one of auto, cudnn"),
    ],
)
def test_validation_names_key_and_fix(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_config(None, [override])


def test_unknown_key_suggests_the_right_one() -> None:
    with pytest.raises(
        ValueError, match=r"unknown key optim.warmup_step; did you mean optim.warmup_steps"
    ):
        load_config(None, ["optim.warmup_step=1"])
    with pytest.raises(
        ValueError, match=r"unknown key clip.now_frame; did you mean clip.now_frames"
    ):
        load_config(None, ["clip.now_frame=4"])
    with pytest.raises(ValueError, match=r"unknown key optimizer; did you mean optim"):
        TriTemporalConfig.from_dict({"optimizer": {}})


def test_bad_override_syntax_and_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="KEY=VALUE"):
        apply_override({}, "optim.lr")
    with pytest.raises(ValueError, match="dotted"):
        apply_override({}, "lr=3")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_config(bad)
    section = tmp_path / "section.yaml"
    section.write_text("train: 5\n")
    with pytest.raises(ValueError, match="train must be a mapping"):
        load_config(section)


def test_every_sdpa_kernel_key_has_a_kernel() -> None:
    from tritemporal.adapters.vit import SDPA_BACKENDS
    from tritemporal.config import SDPA_KERNELS

    assert set(SDPA_KERNELS) == {"auto", *SDPA_BACKENDS}
