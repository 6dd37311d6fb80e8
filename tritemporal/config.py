"""Typed, validated configuration: nested dataclasses loaded from YAML with dotted overrides.

Every key a user can set lives here, with its default. `load_config` reads a YAML file, applies
`--set KEY=VALUE` overrides, rejects unknown keys (with a "did you mean") and validates the result;
every error names the dotted key, the bad value and what to change.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

POS_EMBEDS = ("rope", "rope-interleaved", "sincos")
# "auto": PyTorch picks per call (cuDNN's kernel on an H100); the others allow only one kernel:
# cuDNN's or the memory-efficient one (CUDA only: elsewhere PyTorch picks), FlashAttention-2, math
SDPA_KERNELS = ("auto", "cudnn", "flash", "efficient", "math")
# torch.compile modes for the per-block functions. The modes that add CUDA graphs
# ("reduce-overhead", "max-autotune") are refused: a no-grad pass calls the same compiled block
# once per layer, CUDA graph trees start a new generation at each call without a pending
# backward, and the next layer overwrites the output it reads (seen on an H100, PERFORMANCE.md)
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


@dataclass
class LoraConfig:
    """LoRA on the backbone (peft): r=0 disables it; base weights then stay frozen."""

    r: int = 0
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] | None = None  # None: the backbone's attention projections
    layers: list[int] | None = None  # block indices to adapt; None: every block
    apply_to: list[str] = field(default_factory=lambda: ["encoder"])  # encoder and/or predictor
    train_predictor: bool = True  # without predictor LoRA: fine-tune it fully (True) or freeze


@dataclass
class BackboneConfig:
    """Which encoder to build (a key of the backbone registry) and how it encodes positions."""

    name: str = "vit-tiny"
    pretrained: str | None = None  # Hub repo id (optionally @revision) or a local folder
    revision: str | None = None  # Hub branch, tag or commit of `pretrained`
    cache_dir: str | None = None  # Hugging Face cache folder (default: the HF_HOME cache)
    token: str | None = None  # Hub token; prefer HF_TOKEN or `hf auth login` (never saved)
    local_files_only: bool = False  # never touch the network; use the cache or a local folder
    random_init: bool = False  # vjepa2-*: the checkpoint's architecture, random weights (bench)
    teacher: str = "ema"  # "ema" (EMA of the student) or "frozen" (the pretrained weights)
    teacher_dtype: str = "float32"  # "bfloat16" halves teacher memory (frozen teacher only)
    pos_embed: str = "rope"  # "rope" (V-JEPA 2), "rope-interleaved" or "sincos" (V-JEPA 1)
    embed_dim: int | None = None  # None keeps the registered variant's width
    depth: int | None = None
    num_heads: int | None = None
    drop_path: float = 0.0
    activation_checkpointing: bool = False  # recompute block activations in backward (memory)
    sdpa_kernel: str = "auto"  # attention kernel of encoder and teacher (see SDPA_KERNELS)
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class PredictorConfig:
    """Narrow transformer that fills in masked tokens (V-JEPA 2: 384 wide, 12 deep, 12 heads)."""

    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 12
    num_mask_tokens: int = 3  # one learned mask token per objective: short, long, SOON
    sdpa_kernel: str = "auto"  # attention kernel of the predictor (see SDPA_KERNELS)


@dataclass
class OutcomeConfig:
    """The OutcomeAbstractor: learned queries over NOW tokens -> compact EVENTUALLY embedding."""

    num_queries: int = 4
    dim: int = 256  # width of the queries and cross-attention
    num_heads: int = 4
    out_dim: int = 128  # size of the outcome embedding


@dataclass
class ClipConfig:
    """How a training clip is cut in time (NOW | SOON | EVENTUALLY) and in space (tubelets)."""

    now_frames: int = 8
    soon_frames: int = 4
    eventually_frames: int = 4
    num_frames: int | None = None  # optional; when set it must equal now + soon + eventually
    tubelet_t: int = 2
    patch: int = 16
    image_size: int | list[int] = 256  # int for square, or [height, width]
    channels: int = 3

    @property
    def total_frames(self) -> int:
        """Frames per training clip: NOW + SOON + EVENTUALLY."""
        return self.now_frames + self.soon_frames + self.eventually_frames

    @property
    def hw(self) -> tuple[int, int]:
        """Image (height, width) in pixels."""
        if isinstance(self.image_size, int):
            return self.image_size, self.image_size
        return int(self.image_size[0]), int(self.image_size[1])

    @property
    def grid(self) -> tuple[int, int, int]:
        """Token grid (T', H', W') of a whole clip."""
        h, w = self.hw
        return self.total_frames // self.tubelet_t, h // self.patch, w // self.patch

    @property
    def slices(self) -> tuple[int, int, int]:
        """Tubelet steps of the NOW, SOON and EVENTUALLY windows."""
        t = self.tubelet_t
        return self.now_frames // t, self.soon_frames // t, self.eventually_frames // t


@dataclass
class MaskConfig:
    """V-JEPA 2 multi-block masks, repeated over the full temporal extent."""

    short_num_blocks: int = 8
    short_scale: float = 0.15
    long_num_blocks: int = 2
    long_scale: float = 0.7
    aspect_min: float = 0.75
    aspect_max: float = 1.5


@dataclass
class HighwayConfig:
    """The highway-env driving clips `data.source: highway` generates once and caches."""

    scenario: str = "highway"  # highway, merge, roundabout or intersection
    num_videos: int = 24
    seconds: float = 20.0
    size: list[int] = field(default_factory=lambda: [128, 128])  # rendered [width, height]
    seed: int = 0


@dataclass
class DataConfig:
    """Where clips come from and how they are cut. Nothing is ever a fallback for bad video."""

    source: str = "synthetic"  # synthetic, videos or highway
    root: str | None = None  # videos: folder with videos/ (+ annotations/); highway: cache folder
    manifest: str | None = None  # videos: CSV with a `path` column (relative to root) instead
    backend: str = "decord"  # decord or pyav
    fps: float = 8.0  # clips are resampled to this frame rate
    gap_s: float = 0.0  # seconds skipped between SOON and EVENTUALLY
    stride_s: float = 1.0  # seconds between the starts of consecutive windows of one video
    on_error: str = "skip"  # bad videos/annotations: skip (counted and listed) or raise
    train_crop: str = "random_resized"  # random_resized (V-JEPA 2) or center
    crop_scale: list[float] = field(default_factory=lambda: [0.3, 1.0])
    crop_aspect: list[float] = field(default_factory=lambda: [0.75, 1.35])
    hflip: bool = False  # flipping swaps left/right maneuvers, so labels are swapped with it
    extra_maneuvers: list[str] = field(default_factory=list)  # names beyond MANEUVERS
    num_clips: int = 512  # size of the synthetic set
    num_workers: int = 0
    prefetch_factor: int = 2
    highway: HighwayConfig = field(default_factory=HighwayConfig)


@dataclass
class OptimConfig:
    """AdamW, warmup then cosine or constant LR, and the weight-decay and EMA schedules."""

    lr: float = 5.25e-4
    start_lr: float = 1e-5  # LR at step 0, ramping linearly to `lr` over `warmup_steps`
    final_lr: float = 1e-6  # cosine end point (ignored by the constant schedule)
    warmup_steps: int = 100
    schedule: str = "cosine"  # "cosine" or "constant"
    weight_decay: float = 0.04
    final_weight_decay: float = 0.04  # cosine from weight_decay to this (V-JEPA 2: constant)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    ema_start: float = 0.99925  # teacher momentum at step 0 (V-JEPA 2: constant 0.99925)
    ema_end: float = 0.99925  # ...ramping linearly to this at the last step


@dataclass
class LossConfig:
    """Weights of the three objectives and the EVENTUALLY contrastive settings."""

    lambda_vjepa: float = 1.0
    lambda_soon: float = 1.0
    lambda_event: float = 0.25
    lambda_supcon: float = 0.1  # supervised contrastive on outcome labels, when a batch has them
    # EVENTUALLY target: "change" = teacher's EVENTUALLY window minus its last NOW step (where the
    # scene moved), "window" = the EVENTUALLY window itself (mostly the scenery it keeps)
    event_target: str = "change"
    # share of the EVENTUALLY gradient that reaches the encoder: 0 keeps NOW/SOON features from
    # being reshaped by it (with standardised embeddings, 1 and even 0.1 collapsed the NOW tokens
    # of a 600-step quickstart, docs/PERFORMANCE.md)
    event_encoder_grad: float = 0.0
    temperature: float = 0.1  # initial InfoNCE temperature (learnable)
    temperature_min: float = 0.01
    temperature_max: float = 1.0


@dataclass
class TrainConfig:
    """The run: length, batch, where it writes, how often it logs and saves."""

    steps: int = 1000
    batch_size: int = 8
    run_dir: str = "runs/default"
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda" or "cuda:N"
    precision: str = "auto"  # "auto" (bf16 on CUDA, fp32 on CPU), "bf16" or "fp32"
    log_every: int = 10
    ckpt_every: int = 100
    keep_checkpoints: int = 3  # numbered checkpoints kept besides the one `last` points to
    compile: bool = False  # torch.compile each transformer block (static token counts per pass)
    # torch.compile's mode for those blocks: "max-autotune-no-cudagraphs" tunes Triton GEMMs
    # against cuBLAS (minutes of compile per token count)
    compile_mode: str = "default"
    progress: bool = True


@dataclass
class EvalConfig:
    """The evaluation hook during training: probes and forecast errors on held-out clips."""

    every: int = 0  # run every N steps (0: never)
    data: str | None = None  # held-out videos folder (videos/ + annotations/)
    max_samples: int = 256  # first windows, in video order, per hook (0: all); span 2+ videos


@dataclass
class DistConfig:
    """Multi-process training under torchrun (ignored in a single process)."""

    # "ddp": every process holds the whole model and gradients are averaged; "fsdp": FSDP2
    # shards parameters, gradients and optimizer state per transformer block (ViT-H/g)
    strategy: str = "ddp"


@dataclass
class TriTemporalConfig:
    """The whole configuration of a tri-temporal V-JEPA run."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    outcome: OutcomeConfig = field(default_factory=OutcomeConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    dist: DistConfig = field(default_factory=DistConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict for artifacts (YAML/JSON ready); a Hub token is never included."""
        data = dataclasses.asdict(self)
        data["backbone"]["token"] = None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TriTemporalConfig:
        """Build and validate from a nested dict; unknown keys are errors."""
        config = _build(cls, data, prefix="", source=source)
        validate(config)
        return config


# ---------------------------------------------------------------------------------------------
# Loading and overrides


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> TriTemporalConfig:
    """Read a YAML config (or the defaults when `path` is None) and apply `KEY=VALUE` overrides."""
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist; see configs/ for examples")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ValueError(f"config file {path} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"config file {path} must hold a mapping of sections, got {loaded!r}")
        data = loaded or {}
        source = str(path)
    for item in overrides or []:
        apply_override(data, item)
    return TriTemporalConfig.from_dict(data, source=source)


def apply_override(data: dict[str, Any], item: str) -> None:
    """Set a dotted `KEY=VALUE` (value parsed as YAML) into a nested dict, in place."""
    if "=" not in item:
        raise ValueError(f"override {item!r} must look like KEY=VALUE, e.g. optim.lr=3e-4")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) < 2 or not all(parts):
        raise ValueError(f"override key {key!r} must be dotted SECTION.NAME, e.g. train.steps")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {key!r}: {part!r} is a value, not a section")
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None


def save_config(config: TriTemporalConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (without any Hub token)."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def _build(cls: type, data: Any, prefix: str, source: str) -> Any:
    """Recursively turn a nested dict into dataclass `cls`, coercing and checking value types."""
    if not isinstance(data, dict):
        raise ValueError(
            f"{source}: {prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}"
        )
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else f"; known keys: {names}"
            raise ValueError(f"{source}: unknown key {prefix}{key}{hint}")
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            kwargs[key] = _build(kind, value, f"{prefix}{key}.", source)
        else:
            kwargs[key] = _coerce(value, kind, f"{prefix}{key}", source)
    return cls(**kwargs)


def _coerce(value: Any, kind: Any, key: str, source: str) -> Any:
    """Check `value` against a type hint; accept ints for floats and numeric strings like 3e-4."""
    options = typing.get_args(kind) if _is_union(kind) else (kind,)
    if value is None:
        if type(None) in options:
            return None
        raise ValueError(f"{source}: {key} must not be empty")
    for option in options:
        if option is type(None):
            continue
        origin = typing.get_origin(option)
        if origin is list and isinstance(value, list | tuple):
            (item_kind,) = typing.get_args(option)
            return [_coerce(v, item_kind, key, source) for v in value]
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and not isinstance(value, bool):
            if isinstance(value, int | float):
                return float(value)
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
        if option is str and isinstance(value, str):
            return value
    names = " or ".join(getattr(o, "__name__", str(o)) for o in options if o is not type(None))
    raise ValueError(f"{source}: {key} must be {names}, got {value!r}")


def _is_union(kind: Any) -> bool:
    return typing.get_origin(kind) in (typing.Union, types.UnionType)


# ---------------------------------------------------------------------------------------------
# Validation


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def validate(config: TriTemporalConfig) -> None:
    """Raise ValueError naming the key, the bad value and the fix for any inconsistent setting."""
    c = config.clip
    for key in ("now_frames", "soon_frames", "eventually_frames"):
        value = getattr(c, key)
        _check(value > 0, f"clip.{key}={value} must be positive")
        _check(
            value % c.tubelet_t == 0,
            f"clip.{key}={value} must be divisible by clip.tubelet_t={c.tubelet_t}; "
            f"use a multiple of {c.tubelet_t}",
        )
    _check(c.tubelet_t > 0, f"clip.tubelet_t={c.tubelet_t} must be positive")
    if c.num_frames is not None:
        _check(
            c.num_frames == c.total_frames,
            f"clip.num_frames={c.num_frames} must equal now_frames + soon_frames + "
            f"eventually_frames = {c.now_frames} + {c.soon_frames} + {c.eventually_frames} = "
            f"{c.total_frames}; fix one of them or drop clip.num_frames",
        )
    if isinstance(c.image_size, list):
        _check(len(c.image_size) == 2, f"clip.image_size={c.image_size} must be N or [H, W]")
    _check(c.patch > 0, f"clip.patch={c.patch} must be positive")
    for name, size in zip(("height", "width"), c.hw, strict=True):
        _check(
            size > 0 and size % c.patch == 0,
            f"clip.image_size {name} {size} must be a positive multiple of clip.patch={c.patch}; "
            f"try {max(1, round(size / c.patch)) * c.patch}",
        )

    m = config.mask
    for kind in ("short", "long"):
        scale = getattr(m, f"{kind}_scale")
        blocks = getattr(m, f"{kind}_num_blocks")
        _check(0 < scale < 1, f"mask.{kind}_scale={scale} must be in (0, 1)")
        _check(blocks >= 1, f"mask.{kind}_num_blocks={blocks} must be >= 1")
    _check(
        0 < m.aspect_min <= m.aspect_max,
        f"mask.aspect_min={m.aspect_min}, mask.aspect_max={m.aspect_max}: need 0 < min <= max",
    )

    b, p, o = config.backbone, config.predictor, config.outcome
    _check(
        b.pos_embed in POS_EMBEDS,
        f"backbone.pos_embed={b.pos_embed!r}: use one of {', '.join(POS_EMBEDS)}",
    )
    _check(0 <= b.drop_path < 1, f"backbone.drop_path={b.drop_path} must be in [0, 1)")
    _check(
        not (b.random_init and b.pretrained),
        f"backbone.random_init=true ignores weights, but backbone.pretrained={b.pretrained!r} "
        "names some: drop one of the two",
    )
    _check(b.teacher in ("ema", "frozen"), f"backbone.teacher={b.teacher!r}: use ema or frozen")
    lo_ra = b.lora
    _check(
        lo_ra.r == 0 or b.teacher_dtype == "float32",
        "backbone.teacher_dtype=bfloat16 is for full teachers; under backbone.lora the teacher "
        "already shares the base weights and holds only adapter copies",
    )
    _check(lo_ra.r >= 0, f"backbone.lora.r={lo_ra.r} must be >= 0 (0 disables LoRA)")
    _check(0 <= lo_ra.dropout < 1, f"backbone.lora.dropout={lo_ra.dropout} must be in [0, 1)")
    _check(
        bool(lo_ra.apply_to) and set(lo_ra.apply_to) <= {"encoder", "predictor"},
        f"backbone.lora.apply_to={lo_ra.apply_to}: a non-empty list of encoder, predictor",
    )
    _check(
        b.teacher_dtype in ("float32", "bfloat16"),
        f"backbone.teacher_dtype={b.teacher_dtype!r}: use float32 or bfloat16",
    )
    _check(
        b.teacher_dtype == "float32" or b.teacher == "frozen",
        "backbone.teacher_dtype=bfloat16 needs backbone.teacher=frozen: an EMA step moves "
        "weights by (1 - 0.99925) of their gap, below bfloat16's resolution, so a bfloat16 EMA "
        "teacher would silently stop updating",
    )
    for key, kernel in (("backbone", b.sdpa_kernel), ("predictor", p.sdpa_kernel)):
        _check(
            kernel in SDPA_KERNELS,
            f"{key}.sdpa_kernel={kernel!r}: use one of {', '.join(SDPA_KERNELS)}",
        )
    _check(
        p.embed_dim % p.num_heads == 0,
        f"predictor.embed_dim={p.embed_dim} must be divisible by predictor.num_heads={p.num_heads}",
    )
    _check(p.depth >= 1, f"predictor.depth={p.depth} must be >= 1")
    _check(p.num_mask_tokens >= 1, f"predictor.num_mask_tokens={p.num_mask_tokens} must be >= 1")
    _check(
        o.dim % o.num_heads == 0,
        f"outcome.dim={o.dim} must be divisible by outcome.num_heads={o.num_heads}",
    )
    _check(
        o.num_queries >= 1 and o.out_dim >= 1,
        "outcome.num_queries and outcome.out_dim must be >= 1",
    )

    d = config.data
    _check(
        d.source in ("synthetic", "videos", "highway"),
        f"data.source={d.source!r}: use synthetic, videos or highway",
    )
    _check(d.num_clips >= 1, f"data.num_clips={d.num_clips} must be >= 1")
    _check(d.num_workers >= 0, f"data.num_workers={d.num_workers} must be >= 0")
    _check(d.backend in ("decord", "pyav"), f"data.backend={d.backend!r}: use decord or pyav")
    _check(d.fps > 0, f"data.fps={d.fps} must be positive")
    _check(d.gap_s >= 0, f"data.gap_s={d.gap_s} must be >= 0")
    _check(d.stride_s > 0, f"data.stride_s={d.stride_s} must be positive")
    _check(d.on_error in ("skip", "raise"), f"data.on_error={d.on_error!r}: use skip or raise")
    _check(
        d.train_crop in ("random_resized", "center"),
        f"data.train_crop={d.train_crop!r}: use random_resized or center",
    )
    _check(
        len(d.crop_scale) == 2 and 0 < d.crop_scale[0] <= d.crop_scale[1] <= 1,
        f"data.crop_scale={d.crop_scale}: need [min, max] with 0 < min <= max <= 1",
    )
    _check(
        len(d.crop_aspect) == 2 and 0 < d.crop_aspect[0] <= d.crop_aspect[1],
        f"data.crop_aspect={d.crop_aspect}: need [min, max] with 0 < min <= max",
    )
    h = d.highway
    _check(
        h.scenario in ("highway", "merge", "roundabout", "intersection"),
        f"data.highway.scenario={h.scenario!r}: use highway, merge, roundabout or intersection",
    )
    _check(h.num_videos >= 1, f"data.highway.num_videos={h.num_videos} must be >= 1")
    _check(h.seconds > 0, f"data.highway.seconds={h.seconds} must be positive")
    _check(
        len(h.size) == 2 and min(h.size) >= 16,
        f"data.highway.size={h.size}: need [width, height], each >= 16",
    )

    op = config.optim
    _check(op.lr > 0, f"optim.lr={op.lr} must be positive")
    _check(
        op.schedule in ("cosine", "constant"),
        f"optim.schedule={op.schedule!r}: use cosine or constant",
    )
    _check(op.warmup_steps >= 0, f"optim.warmup_steps={op.warmup_steps} must be >= 0")
    _check(
        len(op.betas) == 2 and all(0 <= x < 1 for x in op.betas),
        f"optim.betas={op.betas}: two values in [0, 1)",
    )
    _check(op.grad_clip >= 0, f"optim.grad_clip={op.grad_clip} must be >= 0 (0 disables)")
    for key in ("ema_start", "ema_end"):
        value = getattr(op, key)
        _check(0 <= value <= 1, f"optim.{key}={value} must be in [0, 1]")

    lo = config.loss
    for key in ("lambda_vjepa", "lambda_soon", "lambda_event", "lambda_supcon"):
        _check(getattr(lo, key) >= 0, f"loss.{key}={getattr(lo, key)} must be >= 0")
    _check(
        max(lo.lambda_vjepa, lo.lambda_soon, lo.lambda_event) > 0,
        "loss.lambda_vjepa, loss.lambda_soon and loss.lambda_event are all 0: nothing to train",
    )
    _check(
        0 <= lo.event_encoder_grad <= 1,
        f"loss.event_encoder_grad={lo.event_encoder_grad} must be in [0, 1]",
    )
    _check(
        lo.event_target in ("change", "window"),
        f"loss.event_target={lo.event_target!r}: use change or window",
    )
    _check(
        0 < lo.temperature_min <= lo.temperature <= lo.temperature_max,
        f"loss.temperature={lo.temperature} must lie in [loss.temperature_min, "
        f"loss.temperature_max] = [{lo.temperature_min}, {lo.temperature_max}]",
    )

    e = config.eval
    _check(e.every >= 0, f"eval.every={e.every} must be >= 0 (0 disables the hook)")
    _check(
        e.every == 0 or e.data is not None,
        "eval.every is set but eval.data is not: give a held-out videos folder "
        "(e.g. tritemporal make-clips --out eval_clips --seed 1000)",
    )
    t = config.train
    _check(t.steps >= 1, f"train.steps={t.steps} must be >= 1")
    _check(
        t.batch_size >= 2, f"train.batch_size={t.batch_size} must be >= 2 (InfoNCE needs negatives)"
    )
    _check(t.log_every >= 1, f"train.log_every={t.log_every} must be >= 1")
    _check(t.ckpt_every >= 1, f"train.ckpt_every={t.ckpt_every} must be >= 1")
    _check(t.keep_checkpoints >= 0, f"train.keep_checkpoints={t.keep_checkpoints} must be >= 0")
    _check(
        t.precision in ("auto", "bf16", "fp32"),
        f"train.precision={t.precision!r}: use auto, bf16 or fp32",
    )
    _check(
        t.device == "auto" or t.device == "cpu" or t.device.startswith(("cuda", "mps")),
        f"train.device={t.device!r}: use auto, cpu, cuda or cuda:N",
    )
    _check(
        t.compile_mode not in CUDA_GRAPH_MODES,
        f"train.compile_mode={t.compile_mode!r} adds CUDA graphs, which break per-block "
        "compilation (each no-grad block call overwrites the last one's output); use default or "
        "max-autotune-no-cudagraphs",
    )
    _check(
        t.compile_mode in COMPILE_MODES,
        f"train.compile_mode={t.compile_mode!r}: use one of {', '.join(COMPILE_MODES)}",
    )
    _check(
        config.dist.strategy in ("ddp", "fsdp"),
        f"dist.strategy={config.dist.strategy!r}: use ddp or fsdp",
    )
    _check(
        config.dist.strategy == "ddp" or b.lora.r == 0,
        f"dist.strategy=fsdp with backbone.lora.r={b.lora.r}: the LoRA teacher runs the student's "
        "modules with its EMA tensors swapped in, which sharded parameters do not allow; use "
        "dist.strategy=ddp (LoRA trains few weights, so replicas fit)",
    )
