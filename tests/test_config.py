"""Config loading, overrides and validation messages."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from tritemporal.config import (
    SdpaKernel,
    TriTemporalConfig,
    apply_override,
    load_config,
    save_config,
)
from tritemporal.layers.blocks import SDPA_BACKENDS

CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"
CONFIGS = sorted(CONFIGS_DIR.glob("*.yaml"))


def _keys(cls: type, prefix: str = "") -> dict[str, typing.Any]:
    """Every dotted key of a config dataclass with its type hint."""
    keys = {}
    for name, kind in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(kind):
            keys.update(_keys(kind, f"{prefix}{name}."))
        else:
            keys[f"{prefix}{name}"] = kind
    return keys


KEYS = _keys(TriTemporalConfig)
CHOICE_KEYS = {k: v for k, v in KEYS.items() if typing.get_origin(v) is typing.Literal}
INT_KEYS = [k for k, v in KEYS.items() if v is int or int in typing.get_args(v)]


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
        ("clip.tubelet_t=0", r"clip.tubelet_t=0 must be positive"),
        ("clip.patch=0", r"clip.patch=0 must be positive"),
        ("predictor.num_heads=0", r"predictor.num_heads=0 must be >= 1"),
        ("outcome.num_heads=0", r"outcome.num_heads=0 must be >= 1"),
        (
            "backbone.lora.apply_to=[encoder, head]",
            r"apply_to\[1\]='head': use encoder or predictor",
        ),
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


@pytest.mark.parametrize(
    ("override", "hint"),
    [
        ("train.step=5", "train.steps"),  # a near spelling
        ("train.epochs=3", "train.steps"),  # names from other trainers
        ("train.bs=8", "train.batch_size"),
        ("train.batch=8", "train.batch_size"),
        ("optim.learning_rate=1e-3", "optim.lr"),
        ("optim.wd=0.1", "optim.weight_decay"),
        ("train.lr=1e-3", "optim.lr"),  # the right name in another section
        ("train.learning_rate=1e-3", "optim.lr"),
        ("data.workers=2", "data.num_workers"),
    ],
)
def test_unknown_override_is_blamed_on_set_with_a_synonym(override: str, hint: str) -> None:
    key = override.split("=")[0]
    with pytest.raises(ValueError) as caught:
        load_config(CONFIGS_DIR / "quickstart.yaml", [override])
    assert str(caught.value) == f"--set {override}: unknown key {key}; did you mean {hint}?"


def test_errors_in_the_file_still_name_the_file(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("train:\n  step: 3\n")
    with pytest.raises(ValueError, match=rf"^{config}: unknown key train.step; did you mean"):
        load_config(config, ["train.steps=3", "optim.lr=1e-3"])  # valid overrides are not blamed
    with pytest.raises(ValueError, match=r"^--set train.steps=abc: train.steps must be int"):
        load_config(None, ["train.steps=abc"])


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
    assert set(typing.get_args(SdpaKernel)) == {"auto", *SDPA_BACKENDS}


@pytest.mark.parametrize("key", sorted(CHOICE_KEYS))
def test_choices_are_checked_where_parsed(key: str) -> None:
    choices = typing.get_args(CHOICE_KEYS[key])
    with pytest.raises(ValueError, match=rf"{key}='nope': use .*{choices[-1]}"):
        load_config(None, [f"{key}=nope"])
    with pytest.raises(ValueError, match=rf"{key}=3: use "):
        load_config(None, [f"{key}=3"])


@pytest.mark.parametrize("key", INT_KEYS)
@pytest.mark.parametrize("value", [0, -1])
def test_bad_integers_name_their_key_never_crash(key: str, value: int) -> None:
    try:
        load_config(None, [f"{key}={value}"])
    except ValueError as exc:  # anything else (ZeroDivisionError, ...) fails the test
        assert key in str(exc)


def test_highway_image_size_is_height_width_and_the_old_key_says_the_fix(tmp_path: Path) -> None:
    quickstart = load_config(Path(CONFIGS[0]).with_name("quickstart.yaml"))
    assert quickstart.data.highway.image_size == quickstart.clip.image_size == [64, 128]
    fix = (
        r"data.highway.size=\[128, 64\] is now data.highway.image_size in \[H, W\] order: "
        r"write \[H, W\] \(here data.highway.image_size: \[64, 128\]\)"
    )
    with pytest.raises(ValueError, match=fix):
        load_config(None, ["data.highway.size=[128, 64]"])
    old = tmp_path / "old.yaml"
    old.write_text("data:\n  highway:\n    size: [128, 64]\n")
    with pytest.raises(ValueError, match=fix):
        load_config(old)


def test_stored_configs_with_the_old_highway_size_still_load() -> None:
    stored = TriTemporalConfig().to_dict()
    del stored["data"]["highway"]["image_size"]
    stored["data"]["highway"]["size"] = [128, 64]  # [W, H], as checkpoints before it saved
    assert TriTemporalConfig.from_dict(stored).data.highway.image_size == [64, 128]
    assert stored["data"]["highway"]["size"] == [128, 64]  # the caller's dict is left alone
