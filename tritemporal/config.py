"""Typed, validated configuration: nested dataclasses loaded from YAML with dotted overrides.

Every key a user can set lives here, with its default. `load_config` reads a YAML file, applies
`--set KEY=VALUE` overrides, rejects unknown keys (with a "did you mean") and validates the result;
every error names the dotted key, the bad value and what to change. Checks live in three places:
value types and closed choices (`Literal[...]`) where a value is parsed, each section's own rules
in its `validate()` beside its fields, and the few rules that span sections in `_check_across`.

This is the package's bottom layer: it imports nothing from `tritemporal`. Closed choice sets are
defined once here as Literals, and the registries above derive from them (highway scenarios in
`data/highway.py`, `data.source` in `data/sources.py`; tests check that they agree). Backbone
names are an open set (users register their own), so `backbone.name` stays `str`; it is checked
by `adapters.registry.create_backbone`, whose error lists the registered names. Sizes are
`[H, W]` everywhere.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

PosEmbed = Literal["rope", "rope-interleaved", "sincos"]
# "auto": PyTorch picks per call (cuDNN's kernel on an H100); the others allow only one kernel:
# cuDNN's or the memory-efficient one (CUDA only: elsewhere PyTorch picks), FlashAttention-2, math
SdpaKernel = Literal["auto", "cudnn", "flash", "efficient", "math"]
Teacher = Literal["ema", "frozen"]
TeacherDtype = Literal["float32", "bfloat16"]
LoraPart = Literal["encoder", "predictor"]
DataSource = Literal["synthetic", "videos", "highway"]
# "auto": per file, the one measured faster for its container and codec (data/decode.py,
# AUTO_BACKENDS; docs/PERFORMANCE.md "Decoder per format"); "decord" or "pyav" force one
VideoBackend = Literal["auto", "decord", "pyav"]
OnError = Literal["skip", "raise"]
TrainCrop = Literal["random_resized", "center"]
SoonBase = Literal["none", "copy_last"]  # predictor.soon_base
SoonMode = Literal["joint", "autoregressive"]  # predictor.soon_mode
HighwayCamera = Literal["top", "front"]  # data.highway.camera, make-clips --camera
# decoded-frame cache (data/frame_cache.py): "auto" when the decoded corpus fits data.cache_max_gb
CacheMode = Literal["auto", "on", "off"]
HighwayScenario = Literal["highway", "merge", "roundabout", "intersection"]
Schedule = Literal["cosine", "constant"]
EventTarget = Literal["change", "window", "ego"]
LabelEvents = Literal["all", "auto"]
Precision = Literal["auto", "bf16", "fp32"]
# torch.compile modes for the per-block functions. The modes that add CUDA graphs
# ("reduce-overhead", "max-autotune") are refused: a no-grad pass calls the same compiled block
# once per layer, CUDA graph trees start a new generation at each call without a pending
# backward, and the next layer overwrites the output it reads (seen on an H100, PERFORMANCE.md)
CompileMode = Literal["default", "max-autotune-no-cudagraphs"]
_CUDA_GRAPHS = (
    "adds CUDA graphs, which break per-block compilation (each no-grad block call overwrites "
    "the last one's output)"
)
DistStrategy = Literal["ddp", "fsdp"]


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _at_least(section: str, values: object, minimum: int, *names: str) -> None:
    """Each named field of a section must be >= `minimum`."""
    for name in names:
        value = getattr(values, name)
        _check(value >= minimum, f"{section}.{name}={value} must be >= {minimum}")


class _Section:
    """A config section; `validate` holds the rules of its own keys."""

    def validate(self) -> None:
        """Raise ValueError for a bad value; sections without rules beyond their types pass."""


@dataclass
class LoraConfig(_Section):
    """LoRA on the backbone (peft): r=0 disables it; base weights then stay frozen."""

    r: int = 0
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] | None = None  # None: the backbone's attention projections
    layers: list[int] | None = None  # block indices to adapt; None: every block
    apply_to: list[LoraPart] = field(default_factory=lambda: ["encoder"])  # encoder, predictor
    train_predictor: bool = True  # without predictor LoRA: fine-tune it fully (True) or freeze

    def validate(self) -> None:
        """backbone.lora.* rules."""
        _check(self.r >= 0, f"backbone.lora.r={self.r} must be >= 0 (0 disables LoRA)")
        _check(0 <= self.dropout < 1, f"backbone.lora.dropout={self.dropout} must be in [0, 1)")
        _check(
            bool(self.apply_to),
            f"backbone.lora.apply_to={self.apply_to}: a non-empty list of encoder, predictor",
        )


@dataclass
class BackboneConfig(_Section):
    """Which encoder to build (a key of the backbone registry) and how it encodes positions."""

    name: str = "vit-tiny"  # open set: checked by adapters.registry.create_backbone
    pretrained: str | None = None  # Hub repo id (optionally @revision) or a local folder
    revision: str | None = None  # Hub branch, tag or commit of `pretrained`
    cache_dir: str | None = None  # Hugging Face cache folder (default: the HF_HOME cache)
    token: str | None = None  # Hub token; prefer HF_TOKEN or `hf auth login` (never saved)
    local_files_only: bool = False  # never touch the network; use the cache or a local folder
    random_init: bool = False  # vjepa2-*: the checkpoint's architecture, random weights (bench)
    teacher: Teacher = "ema"  # EMA of the student, or frozen (the pretrained weights)
    teacher_dtype: TeacherDtype = "float32"  # bfloat16 halves teacher memory (frozen teacher)
    pos_embed: PosEmbed = "rope"  # rope (V-JEPA 2), rope-interleaved or sincos (V-JEPA 1)
    embed_dim: int | None = None  # None keeps the registered variant's width
    depth: int | None = None
    num_heads: int | None = None
    drop_path: float = 0.0
    activation_checkpointing: bool = False  # recompute block activations in backward (memory)
    sdpa_kernel: SdpaKernel = "auto"  # attention kernel of encoder and teacher
    lora: LoraConfig = field(default_factory=LoraConfig)

    def validate(self) -> None:
        """backbone.* rules (and backbone.lora.*)."""
        self.lora.validate()
        for key in ("embed_dim", "depth", "num_heads"):
            value = getattr(self, key)
            _check(
                value is None or value >= 1,
                f"backbone.{key}={value} must be >= 1 (or null: the registered variant's)",
            )
        _check(0 <= self.drop_path < 1, f"backbone.drop_path={self.drop_path} must be in [0, 1)")
        _check(
            not (self.random_init and self.pretrained),
            f"backbone.random_init=true ignores weights, but backbone.pretrained="
            f"{self.pretrained!r} names some: drop one of the two",
        )
        _check(
            self.lora.r == 0 or self.teacher_dtype == "float32",
            "backbone.teacher_dtype=bfloat16 is for full teachers; under backbone.lora the "
            "teacher already shares the base weights and holds only adapter copies",
        )
        _check(
            self.teacher_dtype == "float32" or self.teacher == "frozen",
            "backbone.teacher_dtype=bfloat16 needs backbone.teacher=frozen: an EMA step moves "
            "weights by (1 - 0.99925) of their gap, below bfloat16's resolution, so a bfloat16 "
            "EMA teacher would silently stop updating",
        )


@dataclass
class PredictorConfig(_Section):
    """Narrow transformer that fills in masked tokens (V-JEPA 2: 384 wide, 12 deep, 12 heads)."""

    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 12
    num_mask_tokens: int = 3  # one learned mask token per objective: short, long, SOON
    sdpa_kernel: SdpaKernel = "auto"  # attention kernel of the predictor
    # SOON forecasts take the ego's actions (action.signals) during the SOON window and its
    # state at the last NOW frame (heads/action.py); off: forecasts from pixels alone
    action_conditioning: bool = False
    # where the SOON forecast starts: none, the predictor's output as is (V-JEPA's); copy_last,
    # the teacher's last NOW step copied forward plus a zero-initialised linear map of the
    # predictor's change, so an untrained model forecasts "nothing moves" and training learns the
    # change (heads/soon_floor.py)
    soon_base: SoonBase = "none"
    # how the SOON steps are forecast: joint, every step at once from NOW (one predictor call);
    # autoregressive, one tubelet step at a time from NOW and the steps before it, trained as
    # V-JEPA 2-AC is (teacher forcing plus a rollout on its own outputs, loss.soon_rollout_steps)
    # and rolled out on its own outputs at inference (objectives/soon.py)
    soon_mode: SoonMode = "joint"

    def validate(self) -> None:
        """predictor.* rules."""
        _at_least("predictor", self, 1, "embed_dim", "depth", "num_heads", "num_mask_tokens")
        _check(
            self.embed_dim % self.num_heads == 0,
            f"predictor.embed_dim={self.embed_dim} must be divisible by "
            f"predictor.num_heads={self.num_heads}",
        )


@dataclass
class ActionConfig(_Section):
    """Ego signals an action-conditioned SOON predictor takes (predictor.action_conditioning)."""

    # numeric ego series of the annotation schema (annotations' `ego`), in this order
    signals: list[str] = field(default_factory=lambda: ["speed", "steering", "acceleration"])

    def validate(self) -> None:
        """action.* rules."""
        _check(
            len(self.signals) > 0 and all(isinstance(s, str) and s for s in self.signals),
            f"action.signals={self.signals}: name one or more ego series (e.g. speed, steering)",
        )
        _check(
            "time" not in self.signals and len(set(self.signals)) == len(self.signals),
            f"action.signals={self.signals}: distinct series names, not `time`",
        )


@dataclass
class OutcomeConfig(_Section):
    """The OutcomeAbstractor: learned queries over NOW tokens -> compact EVENTUALLY embedding."""

    num_queries: int = 4
    dim: int = 256  # width of the queries and cross-attention
    num_heads: int = 4
    out_dim: int = 128  # size of the outcome embedding

    def validate(self) -> None:
        """outcome.* rules."""
        _at_least("outcome", self, 1, "num_queries", "dim", "num_heads", "out_dim")
        _check(
            self.dim % self.num_heads == 0,
            f"outcome.dim={self.dim} must be divisible by outcome.num_heads={self.num_heads}",
        )


@dataclass
class ClipConfig(_Section):
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
    def action_rows(self) -> slice:
        """Frames an action-conditioned forecast takes: the last NOW frame (the ego's state),
        then every SOON frame (its actions)."""
        return slice(self.now_frames - 1, self.now_frames + self.soon_frames)

    @property
    def slices(self) -> tuple[int, int, int]:
        """Tubelet steps of the NOW, SOON and EVENTUALLY windows."""
        t = self.tubelet_t
        return self.now_frames // t, self.soon_frames // t, self.eventually_frames // t

    def validate(self) -> None:
        """clip.* rules; divisors are checked before anything divides by them."""
        keys = ("tubelet_t", "patch", "now_frames", "soon_frames", "eventually_frames", "channels")
        for key in keys:
            value = getattr(self, key)
            _check(value > 0, f"clip.{key}={value} must be positive")
        t = self.tubelet_t
        for key in ("now_frames", "soon_frames", "eventually_frames"):
            value = getattr(self, key)
            _check(
                value % t == 0,
                f"clip.{key}={value} must be divisible by clip.tubelet_t={t}; "
                f"use a multiple of {t}",
            )
        _check(
            self.num_frames is None or self.num_frames == self.total_frames,
            f"clip.num_frames={self.num_frames} must equal now_frames + soon_frames + "
            f"eventually_frames = {self.now_frames} + {self.soon_frames} + "
            f"{self.eventually_frames} = {self.total_frames}; fix one of them or drop "
            "clip.num_frames",
        )
        if isinstance(self.image_size, list):
            _check(
                len(self.image_size) == 2, f"clip.image_size={self.image_size} must be N or [H, W]"
            )
        for name, size in zip(("height", "width"), self.hw, strict=True):
            _check(
                size > 0 and size % self.patch == 0,
                f"clip.image_size {name} {size} must be a positive multiple of clip.patch="
                f"{self.patch}; try {max(1, round(size / self.patch)) * self.patch}",
            )


@dataclass
class MaskConfig(_Section):
    """V-JEPA 2 multi-block masks, repeated over the full temporal extent."""

    short_num_blocks: int = 8
    short_scale: float = 0.15
    long_num_blocks: int = 2
    long_scale: float = 0.7
    aspect_min: float = 0.75
    aspect_max: float = 1.5

    def validate(self) -> None:
        """mask.* rules."""
        for kind in ("short", "long"):
            scale = getattr(self, f"{kind}_scale")
            _check(0 < scale < 1, f"mask.{kind}_scale={scale} must be in (0, 1)")
        _at_least("mask", self, 1, "short_num_blocks", "long_num_blocks")
        _check(
            0 < self.aspect_min <= self.aspect_max,
            f"mask.aspect_min={self.aspect_min}, mask.aspect_max={self.aspect_max}: "
            "need 0 < min <= max",
        )


@dataclass
class FrontCameraConfig(_Section):
    """The windshield camera of `data.highway.camera: front` (defaults: the published front
    cameras of comma2k19, nuScenes and KITTI; see `data/front_camera.py`)."""

    height_m: float = 1.4
    pitch_deg: float = 0.0  # > 0 tilts it down
    yaw_deg: float = 0.0  # > 0 turns it right
    hfov_deg: float = 65.0  # horizontal field of view
    forward_m: float = 0.5  # ahead of the car's centre
    lateral_m: float = 0.0  # right of the car's centre line
    # each video draws height, pitch, yaw and field of view from dash-cam ranges, ignoring the
    # four values above (false: every video uses them), and its look (colours, light, noise)
    vary_geometry: bool = True
    vary_look: bool = True

    def validate(self) -> None:
        """data.highway.front.* rules."""
        check_camera_geometry(dataclasses.asdict(self), "data.highway.front")


# what a car can carry: setting -> (low, high, unit); data/front_camera.py checks the same
CAMERA_LIMITS = {
    "height_m": (0.5, 4.0, "m"),
    "pitch_deg": (-30.0, 30.0, "degrees"),
    "yaw_deg": (-30.0, 30.0, "degrees"),
    "hfov_deg": (20.0, 150.0, "degrees"),
    "forward_m": (-3.0, 3.0, "m"),
    "lateral_m": (-1.0, 1.0, "m"),
}


def check_camera_geometry(values: dict[str, Any], where: str) -> None:
    """Raise ValueError naming `where`.KEY when a camera setting is outside `CAMERA_LIMITS`."""
    for name, (low, high, unit) in CAMERA_LIMITS.items():
        value = values[name]
        _check(
            low <= value <= high, f"{where}.{name}={value} must lie in [{low:g}, {high:g}] {unit}"
        )


@dataclass
class HighwayConfig(_Section):
    """The highway-env driving clips `data.source: highway` generates once and caches."""

    scenario: str = "highway"  # a HighwayScenario, or a mix: highway,merge / highway=0.7,merge=0.3
    num_videos: int = 24
    seconds: float = 20.0
    image_size: list[int] = field(default_factory=lambda: [128, 128])  # rendered [H, W]
    seed: int = 0
    workers: int = 1  # processes simulating at once; the clips do not depend on it
    # camera zoom: 1 is the default view, 1.5 shows the road 1.5 times larger (less of it): a
    # camera geometry to test whether a result holds beyond the one trained on
    zoom: float = 1.0
    camera: HighwayCamera = "top"  # top: the map view; front: the windshield (data.highway.front)
    front: FrontCameraConfig = field(default_factory=FrontCameraConfig)

    def validate(self) -> None:
        """data.highway.* rules."""
        self.front.validate()
        _at_least("data.highway", self, 1, "num_videos", "workers")
        known = typing.get_args(HighwayScenario)
        _check(
            all(item.partition("=")[0].strip() in known for item in self.scenario.split(",")),
            f"data.highway.scenario={self.scenario!r}: use one of {', '.join(known)}, or a mix "
            "such as highway,merge (equal shares) or highway=0.7,merge=0.3",
        )
        _check(self.seconds > 0, f"data.highway.seconds={self.seconds} must be positive")
        _check(
            0.25 <= self.zoom <= 4,
            f"data.highway.zoom={self.zoom} must lie in [0.25, 4] (1: the default view)",
        )
        _check(
            len(self.image_size) == 2 and min(self.image_size) >= 16,
            f"data.highway.image_size={self.image_size}: need [height, width], each >= 16",
        )


@dataclass
class AutoLabelConfig(_Section):
    """Thresholds of maneuver labels derived from ego series (`tritemporal label --from-ego`).

    Defaults and where they come from (docs/data.md, "Labels from ego signals"): brake_drop and
    stop_speed are the simulator's own definitions (highway.BRAKE_DROP, STOP_SPEED), so the auto
    labels are scored against its truth on the same terms; 0.3 m/s^2 is the smallest sustained
    deceleration counted (coasting sheds less); a lane change moves the car by about one lane
    (3.5-4 m; highway-env's lanes are 4 m), so 2/3 of a 3.5 m lane counts; a turn changes the
    heading by ~90 degrees, half of that counts.
    """

    resample_hz: float = 10.0  # series are resampled to this rate before any threshold
    max_gap_s: float = 2.0  # a longer hole in the series (GPS dropout) splits it; no event spans it
    smooth_s: float = 0.5  # centred moving average of speed and heading before derivatives
    brake_decel: float = 0.3  # m/s^2: deceleration that counts toward a brake
    brake_drop: float = 2.5  # m/s: the speed lost over one brake
    stop_speed: float = 1.0  # m/s: below it the car stands
    stop_min_s: float = 0.5  # for at least this long
    turn_rate: float = 3.0  # deg/s: yaw rate that counts toward a turn
    turn_min_deg: float = 45.0  # heading change of a turn
    road_window_s: float = 10.0  # running median of the heading: the road's direction
    lane_lateral_speed: float = 0.25  # m/s across the road that counts toward a lane change
    lane_offset_m: float = 2.3  # lateral displacement of one lane change
    lane_max_s: float = 8.0  # a lane change lasts at most this long
    lane_max_heading_deg: float = 20.0  # net heading change over a lane change (not a turn)
    join_s: float = 0.5  # movements this close together are one maneuver

    def validate(self) -> None:
        """data.auto_labels.* rules: every threshold positive."""
        for name, value in dataclasses.asdict(self).items():
            _check(value > 0, f"data.auto_labels.{name}={value} must be positive")


def _retired_highway_size(value: Any) -> str:
    """The fix for `data.highway.size`, which was [W, H] (today's key is [H, W])."""
    swapped = list(value)[::-1] if isinstance(value, list) and len(value) == 2 else None
    example = f" (here data.highway.image_size: {swapped})" if swapped else ""
    return (
        f"data.highway.size={value!r} is now data.highway.image_size in [H, W] order: "
        f"write [H, W]{example}"
    )


# Keys that no longer exist: a user-written config naming one gets the message for its fix
_RETIRED_KEYS = {"data.highway.size": _retired_highway_size}


@dataclass
class DataConfig(_Section):
    """Where clips come from and how they are cut. Nothing is ever a fallback for bad video."""

    source: DataSource = "synthetic"
    root: str | None = None  # videos: folder with videos/ (+ annotations/); highway: cache folder
    manifest: str | None = None  # videos: CSV with a `path` column (relative to root) instead
    backend: VideoBackend = "auto"  # video decoder: auto, decord or pyav
    fps: float = 8.0  # clips are resampled to this frame rate
    # frame rate of raw .h264/.hevc streams, which carry no timestamps: it overrides the rate in
    # their headers (VUI timing); None uses that rate, and a stream without one is unusable
    raw_fps: float | None = None
    gap_s: float = 0.0  # seconds skipped between SOON and EVENTUALLY
    stride_s: float = 1.0  # seconds between the starts of consecutive windows of one video
    on_error: OnError = "skip"  # bad videos/annotations: skip (counted and listed) or raise
    train_crop: TrainCrop = "random_resized"  # random_resized (V-JEPA 2) or center
    crop_scale: list[float] = field(default_factory=lambda: [0.3, 1.0])
    crop_aspect: list[float] = field(default_factory=lambda: [0.75, 1.35])
    hflip: bool = False  # flipping swaps left/right maneuvers, so labels are swapped with it
    # which annotated events label the training windows: all (hand events win over auto ones)
    # or auto (only those `tritemporal label --from-ego` derived: train as a user with no hand
    # labels does, on a corpus that has them); evaluation always reads every event
    label_events: LabelEvents = "all"
    extra_maneuvers: list[str] = field(default_factory=list)  # names beyond MANEUVERS
    num_clips: int = 512  # size of the synthetic set
    num_workers: int = 0
    prefetch_factor: int = 2
    # decode a video corpus once into memory (data/frame_cache.py): auto = when it fits
    # cache_max_gb; on = always (an error when it does not fit); off = decode every sample.
    # Cached, the loader on CPU needs no worker: the step gets every core
    cache: CacheMode = "auto"
    # GB of decoded frames one training process may cache; null: a quarter of the memory
    # available at start-up, split between the processes of a node
    cache_max_gb: float | None = None
    highway: HighwayConfig = field(default_factory=HighwayConfig)
    auto_labels: AutoLabelConfig = field(default_factory=AutoLabelConfig)

    def validate(self) -> None:
        """data.* rules (and data.highway.*, data.auto_labels.*)."""
        _at_least("data", self, 1, "num_clips", "prefetch_factor")
        _at_least("data", self, 0, "num_workers")
        _check(self.fps > 0, f"data.fps={self.fps} must be positive")
        _check(
            self.raw_fps is None or self.raw_fps > 0,
            f"data.raw_fps={self.raw_fps} must be positive (the raw streams' frames per second), "
            "or null to read it from each stream's headers",
        )
        _check(self.gap_s >= 0, f"data.gap_s={self.gap_s} must be >= 0")
        _check(self.stride_s > 0, f"data.stride_s={self.stride_s} must be positive")
        scale, aspect = self.crop_scale, self.crop_aspect
        _check(
            len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1,
            f"data.crop_scale={scale}: need [min, max] with 0 < min <= max <= 1",
        )
        _check(
            len(aspect) == 2 and 0 < aspect[0] <= aspect[1],
            f"data.crop_aspect={aspect}: need [min, max] with 0 < min <= max",
        )
        _check(
            self.cache_max_gb is None or self.cache_max_gb > 0,
            f"data.cache_max_gb={self.cache_max_gb} must be > 0 (or null: a quarter of the "
            "available memory)",
        )
        _check(
            self.cache != "on" or self.source != "synthetic",
            "data.cache=on with data.source=synthetic: synthetic clips are drawn, not decoded; "
            "use data.cache=auto or off, or a video source (videos, highway)",
        )
        self.highway.validate()
        self.auto_labels.validate()


@dataclass
class OptimConfig(_Section):
    """AdamW, warmup then cosine or constant LR, and the weight-decay and EMA schedules."""

    lr: float = 5.25e-4
    start_lr: float = 1e-5  # LR at step 0, ramping linearly to `lr` over `warmup_steps`
    final_lr: float = 1e-6  # cosine end point (ignored by the constant schedule)
    warmup_steps: int = 100
    schedule: Schedule = "cosine"
    weight_decay: float = 0.04
    final_weight_decay: float = 0.04  # cosine from weight_decay to this (V-JEPA 2: constant)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    ema_start: float = 0.99925  # teacher momentum at step 0 (V-JEPA 2: constant 0.99925)
    ema_end: float = 0.99925  # ...ramping linearly to this at the last step

    def validate(self) -> None:
        """optim.* rules."""
        _check(self.lr > 0, f"optim.lr={self.lr} must be positive")
        _at_least("optim", self, 0, "warmup_steps")
        _check(
            len(self.betas) == 2 and all(0 <= x < 1 for x in self.betas),
            f"optim.betas={self.betas}: two values in [0, 1)",
        )
        _check(self.grad_clip >= 0, f"optim.grad_clip={self.grad_clip} must be >= 0 (0 disables)")
        for key in ("ema_start", "ema_end"):
            value = getattr(self, key)
            _check(0 <= value <= 1, f"optim.{key}={value} must be in [0, 1]")


@dataclass
class LossConfig(_Section):
    """Weights of the objectives, the EVENTUALLY contrastive settings and the supervised one."""

    lambda_vjepa: float = 1.0
    lambda_soon: float = 1.0
    # predictor.soon_mode=autoregressive: the rollout loss unrolls the first this-many SOON steps
    # (all of them if the window has fewer) on the predictor's own outputs (V-JEPA 2-AC rolls
    # out 2); teacher forcing covers every step
    soon_rollout_steps: int = 2
    lambda_event: float = 0.25
    lambda_supcon: float = 0.1  # supervised contrastive on outcome labels, when a batch has them
    # class-balanced cross-entropy of a linear classifier on the outcome embedding, from the
    # maneuver labels (0: no classifier is built; alone, it is the supervised ceiling)
    lambda_ce: float = 0.0
    # share of that cross-entropy's gradient that reaches the encoder (1: end to end; 0: the
    # encoder is left to the other objectives and only the outcome head and classifier learn)
    ce_encoder_grad: float = 1.0
    # EVENTUALLY target: "change" = teacher's EVENTUALLY window minus its last NOW step (where the
    # scene moved), "window" = the EVENTUALLY window itself (mostly the scenery it keeps), "ego" =
    # the ego's own motion from the last NOW frame to EVENTUALLY's end (data/ego_motion.py: needs
    # the `speed` and `heading` or `yaw_rate` series of every video; no maneuver label is used)
    event_target: EventTarget = "change"
    # share of the EVENTUALLY gradient that reaches the encoder: 0 keeps NOW/SOON features from
    # being reshaped by it (with standardised embeddings, 1 and even 0.1 collapsed the NOW tokens
    # of a 600-step quickstart, docs/PERFORMANCE.md)
    event_encoder_grad: float = 0.0
    # VICReg's variance and covariance terms on the student's context tokens against dimensional
    # collapse (objectives/variance.py; VICReg weighs them 25 and 1 against its invariance 25)
    lambda_var: float = 0.0
    lambda_cov: float = 0.0
    temperature: float = 0.1  # initial InfoNCE temperature (learnable)
    temperature_min: float = 0.01
    temperature_max: float = 1.0

    @property
    def trains_ego_target(self) -> bool:
        """Whether EVENTUALLY trains toward the ego's future motion (on, target `ego`): what
        makes the data carry, and the trainer standardise, that motion."""
        return self.lambda_event > 0 and self.event_target == "ego"

    def validate(self) -> None:
        """loss.* rules."""
        weights = ("lambda_vjepa", "lambda_soon", "lambda_event", "lambda_ce")
        for key in (*weights, "lambda_supcon", "lambda_var", "lambda_cov"):
            _check(getattr(self, key) >= 0, f"loss.{key}={getattr(self, key)} must be >= 0")
        _check(
            max(getattr(self, key) for key in weights) > 0,
            "loss.lambda_vjepa, loss.lambda_soon, loss.lambda_event and loss.lambda_ce are all "
            "0: nothing to train",
        )
        _at_least("loss", self, 1, "soon_rollout_steps")
        for key in ("event_encoder_grad", "ce_encoder_grad"):
            value = getattr(self, key)
            _check(0 <= value <= 1, f"loss.{key}={value} must be in [0, 1]")
        _check(
            0 < self.temperature_min <= self.temperature <= self.temperature_max,
            f"loss.temperature={self.temperature} must lie in [loss.temperature_min, "
            f"loss.temperature_max] = [{self.temperature_min}, {self.temperature_max}]",
        )


@dataclass
class TrainConfig(_Section):
    """The run: length, batch, where it writes, how often it logs and saves."""

    steps: int = 1000
    batch_size: int = 8
    run_dir: str = "runs/default"
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda" or "cuda:N"
    precision: Precision = "auto"  # auto (bf16 on CUDA, fp32 on CPU), bf16 or fp32
    log_every: int = 10
    ckpt_every: int = 100
    keep_checkpoints: int = 3  # numbered checkpoints kept besides the one `last` points to
    compile: bool = False  # torch.compile each transformer block (static token counts per pass)
    # torch.compile's mode for those blocks: "max-autotune-no-cudagraphs" tunes Triton GEMMs
    # against cuBLAS (minutes of compile per token count)
    compile_mode: CompileMode = field(
        default="default",
        metadata={"refused": dict.fromkeys(("reduce-overhead", "max-autotune"), _CUDA_GRAPHS)},
    )
    progress: bool = True
    # fp8 GEMMs in the transformer blocks (torchao float8 training; CUDA compute capability
    # 8.9+; tritemporal/fp8.py says which layers and why)
    fp8: bool = False

    def validate(self) -> None:
        """train.* rules."""
        _at_least("train", self, 1, "steps", "log_every", "ckpt_every")
        _check(
            self.batch_size >= 2,
            f"train.batch_size={self.batch_size} must be >= 2 (InfoNCE needs negatives)",
        )
        _at_least("train", self, 0, "keep_checkpoints")
        _check(
            self.device in ("auto", "cpu") or self.device.startswith(("cuda", "mps")),
            f"train.device={self.device!r}: use auto, cpu, cuda or cuda:N",
        )
        _check(
            not (self.fp8 and self.precision == "fp32"),
            "train.fp8=true with train.precision=fp32: fp8 GEMMs replace bf16 ones; use "
            "precision auto or bf16",
        )


@dataclass
class EvalConfig(_Section):
    """The evaluation hook during training: probes and forecast errors on held-out clips."""

    every: int = 0  # run every N steps (0: never)
    data: str | None = None  # held-out videos folder (videos/ + annotations/)
    max_samples: int = 256  # first windows, in video order, per hook (0: all); span 2+ videos

    def validate(self) -> None:
        """eval.* rules."""
        _check(self.every >= 0, f"eval.every={self.every} must be >= 0 (0 disables the hook)")
        _check(self.max_samples >= 0, f"eval.max_samples={self.max_samples} must be >= 0 (0: all)")
        _check(
            self.every == 0 or self.data is not None,
            "eval.every is set but eval.data is not: give a held-out videos folder "
            "(e.g. tritemporal make-clips --out runs/eval_clips --seed 1000)",
        )


@dataclass
class DistConfig(_Section):
    """Multi-process training under torchrun (ignored in a single process)."""

    # "ddp": every process holds the whole model and gradients are averaged; "fsdp": FSDP2
    # shards parameters, gradients and optimizer state per transformer block (ViT-H/g)
    strategy: DistStrategy = "ddp"


@dataclass
class TriTemporalConfig:
    """The whole configuration of a tri-temporal V-JEPA run."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    action: ActionConfig = field(default_factory=ActionConfig)
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
        """Build and validate from a nested dict (a stored config: older keys are upgraded)."""
        return _load(_upgrade(data), source)

    def validate(self) -> None:
        """Raise ValueError naming the key, the bad value and the fix for any bad setting."""
        for section in dataclasses.fields(self):
            getattr(self, section.name).validate()
        _check_across(self)


def _check_across(config: TriTemporalConfig) -> None:
    """The rules that span sections."""
    _check(
        not config.loss.trains_ego_target or config.data.source != "synthetic",
        "loss.event_target=ego with data.source=synthetic: the target is the ego's own future "
        "motion, which only annotated videos carry; use data.source=videos or highway",
    )
    _check(
        config.dist.strategy == "ddp" or config.backbone.lora.r == 0,
        f"dist.strategy=fsdp with backbone.lora.r={config.backbone.lora.r}: the LoRA teacher "
        "runs the student's modules with its EMA tensors swapped in, which sharded parameters "
        "do not allow; use dist.strategy=ddp (LoRA trains few weights, so replicas fit)",
    )
    _check(
        not config.predictor.action_conditioning or config.loss.lambda_soon > 0,
        "predictor.action_conditioning=true with loss.lambda_soon=0: the action module learns "
        "only from the SOON forecast; set loss.lambda_soon > 0 or turn conditioning off",
    )


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
    overrides = list(overrides or [])
    for item in overrides:
        apply_override(data, item)
    return _load(data, source, overrides)


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


def _load(
    data: dict[str, Any], source: str, overrides: list[str] | None = None
) -> TriTemporalConfig:
    config = _build(TriTemporalConfig, data, prefix="", source=source, overrides=overrides or [])
    config.validate()
    return config


def _upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A config stored by an older version (checkpoint, Hub folder) in today's keys: its
    data.highway.size [W, H] becomes data.highway.image_size [H, W]. Written configs are not
    upgraded: `load_config` names the fix instead."""
    section = data.get("data") if isinstance(data, dict) else None
    highway = section.get("highway") if isinstance(section, dict) else None
    if not isinstance(highway, dict) or "size" not in highway:
        return data
    data = copy.deepcopy(data)
    highway = data["data"]["highway"]
    size = highway.pop("size")
    highway.setdefault("image_size", size[::-1] if isinstance(size, list) else size)
    return data


def _build(cls: type, data: Any, prefix: str, source: str, overrides: list[str]) -> Any:
    """Recursively turn a nested dict into dataclass `cls`, coercing and checking value types.
    An error about a key names where it was set: the `--set` override, else `source`."""
    if not isinstance(data, dict):
        raise ValueError(
            f"{source}: {prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}"
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        where = _set_by(dotted, overrides) or source
        if dotted in _RETIRED_KEYS:
            raise ValueError(f"{where}: {_RETIRED_KEYS[dotted](value)}")
        if key not in fields:
            raise ValueError(f"{where}: unknown key {dotted}{_did_you_mean(prefix, str(key), cls)}")
        kind = hints[key]
        refused = fields[key].metadata.get("refused", {})  # known values a choice turns down
        if refused and not (isinstance(value, str) and value in typing.get_args(kind)):
            why = f" {refused[value]};" if isinstance(value, str) and value in refused else ":"
            choices = ", ".join(typing.get_args(kind))
            raise ValueError(f"{where}: {dotted}={value!r}{why} use one of {choices}")
        if dataclasses.is_dataclass(kind):
            kwargs[key] = _build(kind, value, f"{dotted}.", source, overrides)
        else:
            kwargs[key] = _coerce(value, kind, dotted, where)
    return cls(**kwargs)


def _set_by(dotted: str, overrides: list[str]) -> str | None:
    """`--set KEY=VALUE` for the last override that set `dotted` (or a key inside it, or the
    section holding it), None when the key came from the file or dict."""
    for item in reversed(overrides):
        key = item.split("=", 1)[0].strip()
        if key == dotted or key.startswith(f"{dotted}.") or dotted.startswith(f"{key}."):
            return f"--set {item}"
    return None


# Names researchers carry over from other trainers -> our name for the same setting.
_SYNONYMS = {
    "learning_rate": "lr",
    "base_lr": "lr",
    "min_lr": "final_lr",
    "end_lr": "final_lr",
    "warmup": "warmup_steps",
    "warmup_iters": "warmup_steps",
    "wd": "weight_decay",
    "epochs": "steps",
    "iters": "steps",
    "iterations": "steps",
    "max_steps": "steps",
    "num_steps": "steps",
    "batch": "batch_size",
    "bs": "batch_size",
    "clip_grad": "grad_clip",
    "max_grad_norm": "grad_clip",
    "workers": "num_workers",
    "output_dir": "run_dir",
    "out_dir": "run_dir",
    "log_dir": "run_dir",
    "dtype": "precision",
    "amp": "precision",
    "tau": "temperature",
    "optimizer": "optim",
    "model": "backbone",
}


def _did_you_mean(prefix: str, key: str, cls: type) -> str:
    """The hint after "unknown key": this section's name for it (`bs` -> `batch_size`), else the
    key of that name in another section (`train.lr` -> `optim.lr`), else a near spelling here,
    else the section's keys."""
    names = [f.name for f in dataclasses.fields(cls)]
    name = _SYNONYMS.get(key, key)
    if name in names:
        return f"; did you mean {prefix}{name}?"
    elsewhere = [k for k in _dotted_keys(TriTemporalConfig) if k.rsplit(".", 1)[-1] == name]
    if elsewhere:
        return f"; did you mean {' or '.join(elsewhere)}?"
    close = difflib.get_close_matches(key, names, n=1)
    if close:
        return f"; did you mean {prefix}{close[0]}?"
    return f"; known keys: {names}"


def _dotted_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key (leaves and sections) of config dataclass `cls`."""
    keys = []
    for name, kind in typing.get_type_hints(cls).items():
        keys.append(f"{prefix}{name}")
        if dataclasses.is_dataclass(kind):
            keys += _dotted_keys(kind, f"{prefix}{name}.")
    return keys


def _choices(options: tuple[Any, ...]) -> str:
    """'a or b' / 'one of a, b, c' for an error message."""
    names = [str(o) for o in options]
    return " or ".join(names) if len(names) == 2 else f"one of {', '.join(names)}"


def _coerce(value: Any, kind: Any, key: str, source: str) -> Any:
    """Check `value` against a type hint; accept ints for floats and numeric strings like 3e-4."""
    if typing.get_origin(kind) is Literal:
        choices = typing.get_args(kind)
        if isinstance(value, bool) and {"on", "off"} <= set(choices):
            value = "on" if value else "off"  # YAML 1.1 reads on/off (and yes/no) as booleans
        if isinstance(value, str) and value in choices:
            return value
        raise ValueError(f"{source}: {key}={value!r}: use {_choices(choices)}")
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
            return [_coerce(v, item_kind, f"{key}[{i}]", source) for i, v in enumerate(value)]
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
