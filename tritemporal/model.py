"""TriTemporalModel: one module that holds every trainable part and computes the three losses.

Data path of one training step (one teacher pass, one student pass per spatial mask, one student
pass over NOW shared by SOON and EVENTUALLY):

    clip (B, C, T, H, W) = NOW | SOON | EVENTUALLY frames
      -> tubelet tokens (B, N, D), embedded once
      -> teacher (EMA, no grad): whole clip -> layer-normed targets (B, N, D)
      -> spatial:    student(visible tokens) -> predictor(mask tokens 0/1) -> L1 on masked tokens
      -> NOW pass:   student(NOW tokens)
           -> SOON:       predictor(mask token 2 at SOON positions) -> L1 vs teacher SOON tokens
                          (predictor.soon_base=copy_last: starts at copying the last NOW step;
                          soon_mode=autoregressive: step by step, teacher-forced + rolled out)
           -> EVENTUALLY: OutcomeAbstractor (on NOW, gradient stopped by default) -> InfoNCE
                          (+ SupCon) vs the teacher's change from NOW to EVENTUALLY, or vs the
                          ego's own future motion (loss.event_target=ego: no teacher needed)
           -> supervised (loss.lambda_ce > 0): outcome embedding -> linear classifier ->
                          class-balanced cross-entropy vs the maneuver labels
      -> variance (loss.lambda_var / lambda_cov > 0): VICReg's terms on every student context
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub import HfApi, ModelCard, ModelHubMixin
from torch import nn
from torch.profiler import record_function

from tritemporal import step_ranges
from tritemporal.adapters.lora import SharedBaseTeacher, apply_lora
from tritemporal.adapters.registry import Backbone, create_backbone
from tritemporal.config import TriTemporalConfig
from tritemporal.data.ego_motion import motion_size
from tritemporal.data.video_windows import VideoWindows
from tritemporal.data.videos import label_vocabulary
from tritemporal.data.windows import WindowSpec
from tritemporal.ema import ema_update
from tritemporal.heads.action import ActionConditioner
from tritemporal.heads.outcome import OutcomeAbstractor
from tritemporal.heads.soon_floor import CopyLastFloor
from tritemporal.hub import (
    check_push_target,
    locate,
    model_card,
    read_checkpoint_weights,
    read_folder_weights,
    write_model_folder,
)
from tritemporal.layers.blocks import use_sdpa_kernel
from tritemporal.objectives.eventually import EventuallyAlignment
from tritemporal.objectives.losses import effective_rank
from tritemporal.objectives.masks import MaskSet, window_indices
from tritemporal.objectives.soon import (
    SoonContext,
    soon_forecast,
    soon_loss,
    soon_rollout,
    soon_rollout_loss,
)
from tritemporal.objectives.spatial import spatial_masked_loss
from tritemporal.objectives.supervised import OutcomeClassifier
from tritemporal.objectives.variance import variance_covariance


def scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """x unchanged in the forward pass; its gradient multiplied by `scale` (0: stop-gradient)."""
    if scale == 1.0:
        return x
    return x.detach() if scale == 0.0 else x * scale + x.detach() * (1.0 - scale)


@dataclass
class StepOutput:
    """Total loss (with grad) and detached scalars to log."""

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]


# parts of `TriTemporalModel.parameter_counts` -> their name in `describe_parameters`
PARAMETER_PARTS = {
    "encoder": "encoder",
    "predictor": "predictor",
    "heads": "heads",
    "teacher": "EMA teacher",
}

# state-dict prefixes of what computes the EVENTUALLY embedding (`outcome_fingerprint`)
OUTCOME_PARTS = ("backbone.encoder.", "outcome.")


class TriTemporalModel(nn.Module, ModelHubMixin, library_name="tritemporal", license="apache-2.0"):
    """Backbone (student encoder + predictor), EMA teacher, outcome head and EVENTUALLY target.

    Saving, loading and pushing come from huggingface_hub's `ModelHubMixin`
    (`save_pretrained`, `from_pretrained`, `push_to_hub`); `tritemporal.hub` defines the folder.
    """

    def __init__(self, config: TriTemporalConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone: Backbone = create_backbone(config)
        use_sdpa_kernel(self.backbone.encoder, config.backbone.sdpa_kernel)  # teacher copies it
        use_sdpa_kernel(self.backbone.predictor, config.predictor.sdpa_kernel)
        if config.backbone.lora.r > 0:  # teacher shares the frozen base: EMA of adapters only
            apply_lora(self.backbone, config.backbone.lora)
            self.teacher = SharedBaseTeacher(self.backbone.encoder)
        else:
            self.teacher = copy.deepcopy(self.backbone.encoder).requires_grad_(False)
            if config.backbone.teacher_dtype == "bfloat16":
                self.teacher.to(torch.bfloat16)
        dim = self.backbone.embed_dim
        self.action = None  # the SOON predictor's action input, when conditioned
        if config.predictor.action_conditioning:
            c = config.clip
            width, soon_steps = self.backbone.predictor.embed_dim, c.slices[1]
            self.action = ActionConditioner(config.action.signals, width, c.tubelet_t, soon_steps)
        self.soon_floor = None  # the SOON forecast's copy-last start (predictor.soon_base)
        if config.predictor.soon_base == "copy_last":
            self.soon_floor = CopyLastFloor(dim)
        self.outcome = OutcomeAbstractor(dim, config.outcome)
        motion = motion_size(WindowSpec.from_config(config))  # the ego target's input size
        self.eventually = EventuallyAlignment(dim, config.outcome.out_dim, config.loss, motion)
        self.classifier = None  # built only when trained: saved models without one still load
        if config.loss.lambda_ce > 0:
            num_classes = len(label_vocabulary(config.data.extra_maneuvers))
            self.classifier = OutcomeClassifier(config.outcome.out_dim, num_classes)
        self._freeze_unused_parts()

        stats = (self.backbone.pixel_mean, self.backbone.pixel_std)
        for name, values in zip(("pixel_mean", "pixel_std"), stats, strict=True):
            self.register_buffer(name, torch.tensor(values).view(1, -1, 1, 1, 1), persistent=False)
        grid = config.clip.grid
        now, soon, _ = config.clip.slices
        for name, (start, stop) in {
            "now_idx": (0, now),
            "soon_idx": (now, now + soon),
            "event_idx": (now + soon, grid[0]),
            "now_last_idx": (now - 1, now),
        }.items():
            self.register_buffer(name, window_indices(grid, start, stop)[None], persistent=False)

    def _freeze_unused_parts(self) -> None:
        """Freeze the parts no objective with a weight > 0 trains (the predictor without V-JEPA
        and SOON, the outcome head without EVENTUALLY and cross-entropy), so an optimizer, a
        trainable count or a data-parallel wrapper sees only weights that get gradients."""
        lam = self.config.loss
        unused = {
            self.backbone.predictor: lam.lambda_vjepa == 0 and lam.lambda_soon == 0,
            self.soon_floor: lam.lambda_soon == 0,
            self.outcome: lam.lambda_event == 0 and lam.lambda_ce == 0,
            self.eventually: lam.lambda_event == 0,
        }
        for part, frozen in unused.items():
            if frozen and part is not None:
                part.requires_grad_(False)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per part (student encoder, predictor, heads, EMA teacher), their total and
        how many of them train; `describe_parameters` is the line the commands print."""
        # the teacher is never trained: an EMA of the encoder (under LoRA only buffers, not
        # counted: it shares the frozen base and keeps EMA copies of the adapters)
        prefixes = {"backbone.encoder.": "encoder", "backbone.predictor.": "predictor"}
        prefixes["teacher."] = "teacher"
        counts = dict.fromkeys(PARAMETER_PARTS, 0)
        trainable = 0
        for name, param in self.named_parameters():
            part = next((v for k, v in prefixes.items() if name.startswith(k)), "heads")
            counts[part] += param.numel()
            trainable += param.numel() if param.requires_grad else 0
        return {**counts, "total": sum(counts.values()), "trainable": trainable}

    def describe_parameters(self) -> str:
        """'2.69M trainable of 4.80M params (56.0%): encoder 2.10M, ...', the one breakdown
        `train` logs at start-up and `bench` reports."""
        n = self.parameter_counts()
        parts = ", ".join(
            f"{label} {n[k] / 1e6:.2f}M" for k, label in PARAMETER_PARTS.items() if n[k]
        )
        share = 100 * n["trainable"] / max(n["total"], 1)
        return (
            f"{n['trainable'] / 1e6:.2f}M trainable of {n['total'] / 1e6:.2f}M params "
            f"({share:.2f}%): {parts}"
        )

    def outcome_fingerprint(self) -> str:
        """16 hex digits of SHA-256 over the weights that make the EVENTUALLY embedding: every
        tensor of the student encoder and the outcome head (`weights_fingerprint`).

        A probe fitted on one model's embeddings records it, and `predict` refuses a probe
        whose fingerprint is another model's."""
        return self.weights_fingerprint(OUTCOME_PARTS)

    def weights_fingerprint(self, prefixes: tuple[str, ...]) -> str:
        """16 hex digits of SHA-256 over every tensor whose state-dict name starts with one of
        `prefixes` (name, dtype, shape and bytes): what something fitted on this model's
        outputs depends on. All bytes are hashed, not a sample, so any change of weight
        counts; that costs about 0.6 s per GB on one CPU core (ViT-L: under a second)."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.state_dict().items()):
            if name.startswith(prefixes):
                flat = tensor.detach().to("cpu").contiguous().reshape(-1)
                digest.update(f"{name} {flat.dtype} {tuple(tensor.shape)}\n".encode())
                digest.update(flat.view(torch.uint8).numpy())
        return digest.hexdigest()[:16]

    def train(self, mode: bool = True) -> TriTemporalModel:
        """Switch train/eval; the teacher always stays in eval mode (no drop path)."""
        super().train(mode)
        self.teacher.eval()
        return self

    def normalize(self, video: torch.Tensor, frames: int | None = None) -> torch.Tensor:
        """Clips as uint8 (0-255) or float in [0, 1] -> normalized with the backbone's stats
        (`frames`: the clips' length when not clip.total_frames, e.g. NOW alone)."""
        self._check_clip(video, frames=None if frames is None else (frames,))
        dtype = self.pixel_mean.dtype
        video = video.to(dtype) / 255.0 if video.dtype == torch.uint8 else video.to(dtype)
        return (video - self.pixel_mean) / self.pixel_std

    @torch.no_grad()
    def teacher_targets(self, video: torch.Tensor) -> torch.Tensor:
        """EMA teacher over the whole clip, layer-normed without affine: (B, N, D) float32."""
        out = self.teacher(video).float()
        return F.layer_norm(out, (out.shape[-1],))

    @torch.no_grad()
    def present_targets(self, video: torch.Tensor) -> torch.Tensor:
        """The teacher over the NOW frames alone, layer-normed: (B, N_now, D) float32.

        What a forecast baseline may know (copy the last NOW step, the mean NOW token): in the
        whole-clip pass attention mixes the SOON and EVENTUALLY frames into the NOW tokens, so
        a baseline taken from there has seen the future it is scored on. `video` is normalized,
        whole clips or the NOW frames.
        """
        return self.teacher_targets(video[:, :, : self.config.clip.now_frames])

    @torch.no_grad()
    def causal_soon_inputs(self, video: torch.Tensor) -> torch.Tensor:
        """Teacher forcing's inputs (B, (S - 1) * hw, D): each SOON step but the last, encoded
        by the teacher over the frames up to that step's end and layer-normed, so no encoding
        has seen a later frame (one teacher pass per step). `video` is normalized."""
        c = self.config.clip
        hw = c.grid[1] * c.grid[2]
        ends = range(c.now_frames + c.tubelet_t, c.now_frames + c.soon_frames, c.tubelet_t)
        steps = [self.teacher_targets(video[:, :, :end])[:, -hw:] for end in ends]
        if not steps:
            return video.new_zeros(video.shape[0], 0, self.backbone.embed_dim)
        return torch.cat(steps, dim=1)

    @torch.no_grad()
    def update_teacher(self, momentum: float, skip: torch.Tensor | None = None) -> None:
        """EMA step toward the student encoder (a frozen teacher keeps its initial weights);
        none where `skip`, a 0-dim bool tensor, is true (decided on the device)."""
        if self.config.backbone.teacher == "frozen":
            return
        if isinstance(self.teacher, SharedBaseTeacher):
            self.teacher.update(momentum, skip)
        else:
            ema_update(self.teacher, self.backbone.encoder, momentum, skip)

    def forward(
        self,
        video: torch.Tensor,
        masks: list[MaskSet],
        labels: torch.Tensor | None = None,
        diagnostics: bool = True,
        signals: torch.Tensor | None = None,
        ego_motion: torch.Tensor | None = None,
    ) -> StepOutput:
        """One tri-temporal training step's losses for a batch of clips (B, C, T, H, W).

        Objectives weighted 0 in `loss.*` are not computed at all (`loss.lambda_soon=0` and
        `loss.lambda_event=0` is V-JEPA's two-mask step). `diagnostics=False` skips the collapse
        monitors (spreads, RankMe: an SVD each), which the loop asks for on logged steps only.
        `labels` (B,) are maneuver ids (-1: none), used by SupCon and `loss.lambda_ce`; the
        outcome head runs once more for the latter only when `loss.ce_encoder_grad` differs
        from `loss.event_encoder_grad` (the monitors then read its embedding). `signals`
        (B, T, F) are the ego's `action.signals` at every frame of the clips, which an
        action-conditioned SOON predictor needs; `ego_motion` (B, 4 K) the ego's future motion,
        the EVENTUALLY target of `loss.event_target=ego`.
        """
        video = self.normalize(video)
        lam = self.config.loss
        event, ce = lam.lambda_event > 0, lam.lambda_ce > 0
        if (event or ce) and video.shape[0] < 2:
            raise ValueError(
                "the outcome head standardises over the clips of a batch (and EVENTUALLY "
                f"contrasts them): train.batch_size must be >= 2 per process, got {video.shape[0]}"
            )
        if ce and labels is None:
            raise ValueError("loss.lambda_ce > 0 trains on maneuver labels: pass `labels` (B,)")
        ego = lam.trains_ego_target
        if ego and ego_motion is None:
            raise ValueError(
                "loss.event_target=ego: pass the ego's future motion `ego_motion` (B, 4 K); the "
                "loader builds it from annotated videos (data.source=videos or highway)"
            )
        # the teacher is read by V-JEPA, SOON and the teacher-side EVENTUALLY targets only
        teach = lam.lambda_vjepa > 0 or lam.lambda_soon > 0 or (event and not ego)
        if teach:
            with record_function(step_ranges.TEACHER):
                targets = self.teacher_targets(video)
        with record_function(step_ranges.EMBED):
            tokens = self.backbone.encoder.embed(video)  # (B, N, D), shared by student passes
        grid = self.config.clip.grid
        b = video.shape[0]
        losses: dict[str, torch.Tensor] = {}
        contexts: list[torch.Tensor] = []  # every student pass's tokens, for the regulariser
        parts_soon: dict[str, torch.Tensor] = {}  # autoregressive SOON's two L1s, logged
        if lam.lambda_vjepa > 0:
            losses["loss_vjepa"], contexts = spatial_masked_loss(
                self.backbone, tokens, grid, targets, masks
            )
        if lam.lambda_soon > 0 or event or ce:
            now_idx = self.now_idx.expand(b, -1)
            with record_function(step_ranges.STUDENT_NOW):  # -> (B, N_now, D)
                now_context = self.backbone.encoder.encode(tokens, grid, keep=now_idx)
            contexts.append(now_context)
        if lam.lambda_soon > 0:
            joint = self.config.predictor.soon_mode == "joint"
            present = given = None
            if self.soon_floor is not None or not joint:  # the floor's start, teacher forcing
                with record_function(step_ranges.TEACHER_PRESENT):
                    present = self.soon_present(video)  # None without the floor
                    given = None if joint else self.causal_soon_inputs(video)
            with record_function(step_ranges.PREDICTOR_SOON):
                cond = None if self.action is None else self._action_cond(signals, window=True)
                ctx = SoonContext(
                    self.backbone, now_context, self.now_idx, self.soon_idx, grid, cond,
                    self.soon_floor, present,
                )  # fmt: skip
                if joint:
                    losses["loss_soon"] = soon_loss(ctx, targets)
                else:
                    rollout = min(lam.soon_rollout_steps, self.config.clip.slices[1])
                    forced, rolled = soon_rollout_loss(ctx, targets, given, rollout)
                    losses["loss_soon"] = (forced + rolled) / 2
                    parts_soon = {"loss_soon_forced": forced, "loss_soon_rollout": rolled}
        if event:
            with record_function(step_ranges.EVENTUALLY):
                outcome = self.outcome(scale_grad(now_context, lam.event_encoder_grad))  # (B, E)
                if ego:
                    source, now_last = ego_motion, None
                else:
                    source = targets[:, self.event_idx[0]]  # (B, N_ev, D)
                    now_last = targets[:, self.now_last_idx[0]]  # (B, H*W, D): last NOW step
                losses["loss_event"], parts = self.eventually(outcome, source, now_last, labels)
        if ce:
            with record_function(step_ranges.SUPERVISED):
                if not (event and lam.ce_encoder_grad == lam.event_encoder_grad):
                    # its own head pass when the encoder's share of the gradient differs
                    outcome = self.outcome(scale_grad(now_context, lam.ce_encoder_grad))
                losses["loss_ce"] = self.classifier.loss(outcome, labels)
        if lam.lambda_var > 0 or lam.lambda_cov > 0:
            losses["loss_var"], losses["loss_cov"] = variance_covariance(contexts)
        weights = {"loss_vjepa": lam.lambda_vjepa, "loss_soon": lam.lambda_soon}
        weights.update(loss_event=lam.lambda_event, loss_ce=lam.lambda_ce)
        weights.update(loss_var=lam.lambda_var, loss_cov=lam.lambda_cov)
        loss = sum(weights[k] * v for k, v in losses.items())  # config ensures one is > 0

        with torch.no_grad():
            metrics = {"loss": loss.detach(), **{k: v.detach() for k, v in losses.items()}}
            metrics.update({k: v.detach() for k, v in parts_soon.items()})
            if event:
                metrics["loss_nce"] = parts["loss_nce"]
                if "loss_supcon" in parts:
                    metrics["loss_supcon"] = parts["loss_supcon"]
            if diagnostics and teach:
                metrics["target_std"] = targets.float().flatten(0, 1).std(dim=0).mean()
            if diagnostics and event:
                metrics["temperature"] = self.eventually.temperature.detach()
            if diagnostics and (event or ce):
                metrics["outcome_std"] = F.normalize(outcome.float(), dim=-1).std(dim=0).mean()
                metrics["outcome_rank"] = effective_rank(outcome)
            if diagnostics and event:
                metrics["event_target_rank"] = effective_rank(parts["event_target"])
        return StepOutput(loss=loss, metrics=metrics)

    @torch.no_grad()
    def encode(
        self,
        video: torch.Tensor | str | Path,
        stride_s: float | None = None,
        batch_size: int = 8,
        actions: torch.Tensor | None = None,
        forecast: bool = True,
    ) -> dict[str, torch.Tensor]:
        """NOW tokens, SOON forecast and EVENTUALLY embedding of clips (B, C, T, H, W)
        (`forecast=False`: no SOON forecast, the predictor does not run).

        Clips are uint8 (0-255) or float in [0, 1]; normalization happens here. A video path is
        cut into windows as training cuts it (centre crop, stride `stride_s` or data.stride_s,
        encoded `batch_size` at a time): the same dict with windows leading, plus "time" (W,),
        each window's start in seconds. An action-conditioned model forecasts under `actions`
        (as `forecast` takes them) or, without them, under the training-mean state and action.
        """
        if isinstance(video, (str, Path)):
            windows = VideoWindows.open(self.config, video, stride_s)
            return self._encode_windows(windows, batch_size, forecast)
        video = self.normalize(video)
        b = video.shape[0]
        now = self.now_tokens(video)
        if not forecast:
            return {"now": now, "eventually": self.outcome(now)}
        cond = None
        if self.action is not None:  # the training-mean action, unless the caller's are given
            cond = self._action_cond(self._mean_actions(b) if actions is None else actions)
        soon = self._soon(now, cond, self.soon_present(video))
        return {"now": now, "soon": soon, "eventually": self.outcome(now)}

    @torch.no_grad()
    def forecast(self, video: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """SOON latents (B, M_soon, D) of clips under the ego actions `actions`: "what if I brake
        here?". `video` holds the NOW frames (B, C, now_frames, H, W) or whole windows;
        `actions` (B, 1 + soon_frames, F) are `action.signals` in their own units at the last
        NOW frame (the state), then at each SOON frame (the clip's own or any others)."""
        if self.action is None:
            raise ValueError(
                "forecast needs an action-conditioned model (predictor.action_conditioning=true "
                "when it was trained); use encode() for this model's SOON forecast"
            )
        c = self.config.clip
        self._check_clip(video, frames=(c.now_frames, c.total_frames))
        video = self.normalize(video[:, :, : c.now_frames], frames=c.now_frames)
        now = self.backbone.encoder(video)  # every token of the NOW frames: the NOW context
        return self.forecast_from_now(now, actions, self.soon_present(video))

    @torch.no_grad()
    def forecast_from_now(
        self, now: torch.Tensor, actions: torch.Tensor, present: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`forecast` from encoded NOW tokens (B, N_now, D): one encoder pass serves many
        action sequences (evaluation, planning). A floored model (`predictor.soon_base`) also
        needs the `present` it starts from, `soon_present` of the same clips."""
        if self.action is None:
            raise ValueError("forecast_from_now needs an action-conditioned model")
        if now.shape[0] != actions.shape[0]:  # one clip, many action sequences
            now = now.expand(actions.shape[0], -1, -1)
            present = None if present is None else present.expand(actions.shape[0], -1, -1)
        return self._soon(now, self._action_cond(actions.to(now.device)), present)

    @torch.no_grad()
    def soon_present(self, video: torch.Tensor) -> torch.Tensor | None:
        """Where a floored SOON forecast starts (B, hw, D): the teacher's last NOW step over the
        NOW frames alone, layer-normed, the copy-last the evaluation scores; None without the
        floor. `video` is normalized, whole clips or the NOW frames."""
        return None if self.soon_floor is None else self.present_step(video)

    def now_tokens(self, video: torch.Tensor) -> torch.Tensor:
        """The student's NOW tokens (B, N_now, D) of normalized clips: the context every time
        scale reads; one pass serves the EVENTUALLY head and any number of SOON forecasts."""
        return self.backbone.encoder(video, keep=self.now_idx.expand(len(video), -1))

    @torch.no_grad()
    def present_step(self, video: torch.Tensor) -> torch.Tensor:
        """The last step (B, hw, D) of `present_targets`: the present copied forward by the
        copy-last baseline, that has not seen the future. `video` is normalized."""
        grid = self.config.clip.grid
        return self.present_targets(video)[:, -grid[1] * grid[2] :]

    def _soon(
        self, now: torch.Tensor, cond: torch.Tensor | None, present: torch.Tensor | None
    ) -> torch.Tensor:
        """The SOON forecast (B, M_soon, D) from encoded NOW tokens, as training makes it."""
        if self.soon_floor is not None and present is None:
            raise ValueError(
                "a model with predictor.soon_base=copy_last forecasts from the teacher's present: "
                "pass present=model.soon_present(clips) with the NOW tokens"
            )
        grid = self.config.clip.grid
        ctx = SoonContext(
            self.backbone, now, self.now_idx, self.soon_idx, grid, cond, self.soon_floor, present
        )
        if self.config.predictor.soon_mode == "joint":
            return soon_forecast(ctx)
        return soon_rollout(ctx, self.config.clip.slices[1])

    def _action_cond(self, signals: torch.Tensor | None, window: bool = False) -> torch.Tensor:
        """The action embedding of every SOON target token (B, M_soon, P) from the actions
        (B, 1 + soon_frames, F), or from the signals of whole windows (B, T, F) if `window`."""
        assert self.action is not None
        if signals is None:
            raise ValueError(
                "predictor.action_conditioning=true: the step needs the clips' ego signals "
                f"({list(self.config.action.signals)}); the loader passes them from annotated "
                "videos (data.source=videos or highway)"
            )
        if window:
            signals = signals[:, self.config.clip.action_rows]
        b = signals.shape[0]
        embedding = self.action(signals)  # (B, soon_steps, P)
        hw = self.config.clip.grid[1] * self.config.clip.grid[2]
        now_steps = self.config.clip.slices[0]
        return self.action.for_targets(embedding, self.soon_idx.expand(b, -1), now_steps, hw)

    def _mean_actions(self, b: int) -> torch.Tensor:
        """The training-mean state and actions (B, 1 + soon_frames, F): the neutral input."""
        assert self.action is not None
        return self.action.mean.float().expand(b, self.action.frames, -1)

    @torch.no_grad()
    def sync_teacher(self) -> None:
        """Make the teacher equal to the student encoder (after loading student-only weights)."""
        for student, teacher in self._encoder_pairs():
            teacher.copy_(student)

    @torch.no_grad()
    def adopt_teacher(self) -> None:
        """Make the student encoder equal to the EMA teacher: the encoder V-JEPA evaluates and
        releases (its target encoder), smoother than the student at any one step."""
        for student, teacher in self._encoder_pairs():
            student.copy_(teacher)

    def _encoder_pairs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Matched (student, teacher) tensors of the encoder: every weight and buffer, or under
        LoRA each adapter weight and its EMA copy (the teacher shares the frozen base)."""
        if isinstance(self.teacher, SharedBaseTeacher):
            params = dict(self.backbone.encoder.named_parameters())
            emas = self.teacher.ema_tensors()
            return [(params[n], e) for n, e in zip(self.teacher.names, emas, strict=True)]
        student, teacher = self.backbone.encoder.state_dict(), self.teacher.state_dict()
        if student.keys() != teacher.keys():
            raise RuntimeError("the teacher's tensors no longer match the student encoder's")
        return [(student[name], tensor) for name, tensor in teacher.items()]

    def _encode_windows(
        self, windows: VideoWindows, batch_size: int, forecast: bool
    ) -> dict[str, torch.Tensor]:
        """`encode` of every window of a video, windows leading, plus "time" (start s)."""
        device = self.pixel_mean.device
        parts: dict[str, list[torch.Tensor]] = {}
        for _, clips in windows.batches(batch_size):
            for key, value in self.encode(clips.to(device), forecast=forecast).items():
                parts.setdefault(key, []).append(value)
        out = {key: torch.cat(values) for key, values in parts.items()}
        out["time"] = torch.from_numpy(windows.starts.copy()).to(device)
        return out

    # --- huggingface_hub ModelHubMixin: the folder layout is `tritemporal.hub`'s ------------

    def _save_pretrained(self, save_directory: Path) -> None:
        """Write config.json, the student + heads weights and (with LoRA) the peft adapter."""
        write_model_folder(self, self.config, Path(save_directory))

    def generate_model_card(self, **extras: object) -> ModelCard:
        """The README.md of a saved model; `model_card_kwargs` may add `step`, `data`, ..."""
        return ModelCard(model_card(self.config, extras))

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        *,
        force_download: bool = False,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
    ) -> TriTemporalModel:
        """A model in eval mode from a saved folder, a Hub repo id (at `revision`), a run
        directory (its last checkpoint) or a checkpoint folder."""
        return cls._from_pretrained(
            model_id=str(pretrained_model_name_or_path),
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
            token=token,
        )

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        **model_kwargs: object,
    ) -> TriTemporalModel:
        """Build the model its source's config describes and load its weights.

        The mixin's own `from_pretrained` reads config.json before this; ours is nested and a
        run directory has none, so `from_pretrained` comes straight here and `hub.locate` reads
        whichever config the source records.
        """
        found = locate(
            model_id,
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            token=token,
            local_files_only=local_files_only,
        )
        model = cls(found.config)
        if found.is_checkpoint:  # the whole state, teacher included
            model.load_state_dict(read_checkpoint_weights(found.path), strict=True)
        else:  # student + heads (+ LoRA); the teacher starts equal to the student
            model.load_state_dict(read_folder_weights(model, found.path), strict=False)
            model.sync_teacher()
        return model.eval()

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        revision: str | None = None,
        token: str | None = None,
        commit_message: str = "Upload tritemporal model",
        model_card_kwargs: dict | None = None,
    ) -> str:
        """Upload as one commit to `repo_id` (created if needed; `revision`: a branch, created
        if needed); returns the commit URL. The repo id and token are checked first."""
        token = check_push_target(repo_id, token)
        if revision:  # the mixin uploads to an existing branch only
            api = HfApi(token=token)
            api.create_repo(repo_id, private=private, exist_ok=True)
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = super().push_to_hub(
            repo_id,
            private=private,
            token=token,
            branch=revision,
            commit_message=commit_message,
            model_card_kwargs=model_card_kwargs,
        )
        return str(getattr(info, "commit_url", info))

    def _check_clip(self, video: torch.Tensor, frames: tuple[int, ...] | None = None) -> None:
        """Clear error when a clip does not have the configured shape (T: clip.total_frames,
        or one of `frames`)."""
        c = self.config.clip
        frames = frames or (c.total_frames,)
        ok = video.dim() == 5 and video.shape[2] in frames
        if not ok or (video.shape[1], *video.shape[3:]) != (c.channels, *c.hw):
            t = " or ".join(map(str, frames))
            raise ValueError(
                f"expected clips (B, C, T, H, W) with C = {c.channels}, T = {t}, (H, W) = "
                f"{tuple(c.hw)} from clip.*, got {tuple(video.shape)}"
            )
