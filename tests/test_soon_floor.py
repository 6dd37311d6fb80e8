"""The copy-last floor of SOON (`predictor.soon_base=copy_last`): an untrained model forecasts
the fair copy-last exactly, the present gets no gradient from it, and training learns the change
below copying; and autoregressive SOON (`predictor.soon_mode=autoregressive`): causal teacher
forcing, a rollout on its own outputs, the same floor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import tiny_config, vjepa2_overrides
from tritemporal.model import TriTemporalModel

FLOOR = ["predictor.soon_base=copy_last", "clip.soon_frames=4"]  # two SOON steps
SOON_ONLY = ["loss.lambda_vjepa=0", "loss.lambda_event=0"]
AR = ["predictor.soon_mode=autoregressive"]


def _clips(model: TriTemporalModel, b: int = 2, seed: int = 1) -> torch.Tensor:
    c = model.config.clip
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, c.total_frames, *c.hw), generator=g, dtype=torch.uint8)


def _fair_copy_last(model: TriTemporalModel, video: torch.Tensor) -> torch.Tensor:
    """What the evaluation scores as copy-last: the teacher over the NOW frames alone, its last
    step repeated at every SOON step (B, M_soon, D)."""
    c = model.config.clip
    now_steps, soon_steps, _ = c.slices
    hw = c.grid[1] * c.grid[2]
    present = model.present_targets(model.normalize(video))
    last = present.view(video.shape[0], now_steps, hw, -1)[:, -1:]
    return last.expand(-1, soon_steps, -1, -1).flatten(1, 2)


@pytest.mark.parametrize(
    "backbone", ["vit", "vit-sincos", "vjepa2", "vit-lora", "actions", "rollout", "vjepa2-rollout"]
)
def test_an_untrained_model_forecasts_the_fair_copy_last_exactly(
    backbone: str, vjepa2_dir: Path
) -> None:
    extra = {
        "vit": [],
        "vit-sincos": ["backbone.pos_embed=sincos"],
        "vjepa2": vjepa2_overrides(vjepa2_dir),
        "vit-lora": ["backbone.lora.r=4"],
        "actions": ["predictor.action_conditioning=true"],
        "rollout": [*AR, "predictor.action_conditioning=true"],
        "vjepa2-rollout": vjepa2_overrides(vjepa2_dir, *AR),
    }[backbone]
    torch.manual_seed(0)
    model = TriTemporalModel(tiny_config(*FLOOR, *extra)).eval()
    if model.action is not None:  # forecasts under the training-mean action
        model.action.fit_statistics(torch.randn(64, 3, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():  # a student that trained away from its teacher: the start stays
        for p in model.backbone.encoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    video = _clips(model)
    with torch.no_grad():
        forecast = model.encode(video)["soon"]
        expected = _fair_copy_last(model, video)
    torch.testing.assert_close(forecast, expected, rtol=0, atol=1e-6)
    # the test has teeth: without the floor the same weights forecast something else
    torch.manual_seed(0)
    plain = TriTemporalModel(tiny_config(*FLOOR[1:], *extra)).eval()
    if plain.action is not None:
        plain.action.load_state_dict(model.action.state_dict())
    with torch.no_grad():
        assert (plain.encode(video)["soon"] - expected).abs().mean() > 0.1


def test_the_closed_floor_teaches_its_change_map_first() -> None:
    """At zero the SOON loss reaches the change map only (the predictor's output is multiplied
    by it); once it opens, the predictor and the encoder learn from SOON too."""
    torch.manual_seed(0)
    model = TriTemporalModel(tiny_config(*FLOOR, *SOON_ONLY)).train()
    out = model(_clips(model, 4), [])
    out.loss.backward()
    assert model.soon_floor.change.weight.grad.abs().sum() > 0
    for part in (model.backbone.encoder, model.backbone.predictor):
        grads = [p.grad for p in part.parameters() if p.requires_grad]
        assert all(g is None or g.abs().sum() == 0 for g in grads)
    with torch.no_grad():
        model.soon_floor.change.weight.normal_(std=0.1)
    model.zero_grad()
    model(_clips(model, 4), []).loss.backward()
    for part in (model.backbone.encoder, model.backbone.predictor):
        assert sum(p.grad.abs().sum() for p in part.parameters() if p.grad is not None) > 0


@pytest.mark.parametrize("mode", ["joint", "autoregressive"])
def test_training_learns_the_change_below_copying(mode: str) -> None:
    """Planted: the SOON frames are the NOW frames shifted, so the future is predictable and
    unlike the present; a few steps on a fixed batch take the forecast below copy-last."""
    torch.manual_seed(0)
    frozen_teacher = ["optim.ema_start=1.0", "optim.ema_end=1.0"]
    config = tiny_config(*FLOOR, *SOON_ONLY, *frozen_teacher, f"predictor.soon_mode={mode}")
    model = TriTemporalModel(config).train()
    video = _clips(model, 4, seed=2)
    c = config.clip
    video[:, :, c.now_frames :] = video[:, :, : c.now_frames].roll(8, dims=-1)[:, :, -1:]
    with torch.no_grad():
        copy_l1 = (_fair_copy_last(model, video) - _soon_targets(model, video)).abs().mean()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(40):
        out = model(video, [])
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        l1 = (model.encode(video)["soon"] - _soon_targets(model, video)).abs().mean()
    assert model.soon_floor.change.weight.abs().mean() > 1e-3
    assert l1 < 0.8 * copy_l1


def _soon_targets(model: TriTemporalModel, video: torch.Tensor) -> torch.Tensor:
    return model.teacher_targets(model.normalize(video))[:, model.soon_idx[0]]


def test_the_gate_survives_save_and_load_and_is_counted(tmp_path: Path) -> None:
    model = TriTemporalModel(tiny_config(*FLOOR)).eval()
    with torch.no_grad():
        model.soon_floor.change.weight.normal_()
    model.save_pretrained(tmp_path / "saved")
    loaded = TriTemporalModel.from_pretrained(tmp_path / "saved")
    assert torch.equal(loaded.soon_floor.change.weight, model.soon_floor.change.weight)
    video = _clips(model)
    assert torch.equal(loaded.encode(video)["soon"], model.encode(video)["soon"])
    plain = TriTemporalModel(tiny_config(*FLOOR[1:]))
    d = model.backbone.embed_dim
    assert model.parameter_counts()["heads"] == plain.parameter_counts()["heads"] + d * d + d


def test_the_floor_is_frozen_without_soon_and_a_bad_value_is_refused() -> None:
    model = TriTemporalModel(tiny_config(*FLOOR, "loss.lambda_soon=0"))
    assert not any(p.requires_grad for p in model.soon_floor.parameters())
    with pytest.raises(ValueError, match="soon_base"):
        tiny_config("predictor.soon_base=copy")


def test_teacher_forcing_inputs_see_no_later_frame() -> None:
    """Changing the frames of SOON step 1 leaves step 0's teacher-forcing input as it was,
    while the whole-clip targets of step 0 change (attention mixes the future in)."""
    model = TriTemporalModel(tiny_config(*AR, "clip.soon_frames=6")).eval()
    c = model.config.clip
    hw = c.grid[1] * c.grid[2]
    video = _clips(model)
    later = video.clone()
    step1 = slice(c.now_frames + c.tubelet_t, c.now_frames + 2 * c.tubelet_t)
    later[:, :, step1] = 255 - later[:, :, step1]
    a, b = (model.causal_soon_inputs(model.normalize(v)) for v in (video, later))
    assert a.shape == (2, 2 * hw, model.backbone.embed_dim)  # steps 0 and 1 of 3
    torch.testing.assert_close(a[:, :hw], b[:, :hw], rtol=0, atol=1e-6)
    assert (a[:, hw:] - b[:, hw:]).abs().mean() > 0.1
    whole = [
        model.teacher_targets(model.normalize(v))[:, model.soon_idx[0]] for v in (video, later)
    ]
    assert (whole[0][:, :hw] - whole[1][:, :hw]).abs().mean() > 1e-3


def test_rollout_feeds_its_own_outputs_and_teacher_forcing_the_given_ones() -> None:
    from tritemporal.objectives.soon import SoonContext, soon_rollout

    torch.manual_seed(0)
    model = TriTemporalModel(tiny_config(*AR, "clip.soon_frames=4")).eval()
    c = model.config.clip
    hw = c.grid[1] * c.grid[2]
    video = model.normalize(_clips(model))
    with torch.no_grad():
        now = model.now_tokens(video)
        ctx = SoonContext(model.backbone, now, model.now_idx, model.soon_idx, c.grid)
        rolled = soon_rollout(ctx, 2)
        forced = soon_rollout(ctx, 2, given=model.causal_soon_inputs(video))
        again = soon_rollout(ctx, 2, given=rolled)
    torch.testing.assert_close(rolled[:, :hw], forced[:, :hw])  # step 0: from NOW alone
    assert (rolled[:, hw:] - forced[:, hw:]).abs().mean() > 1e-3
    torch.testing.assert_close(again, rolled)  # rollout = teacher forcing on its own outputs
    torch.testing.assert_close(model.encode(_clips(model))["soon"], rolled)


def test_autoregressive_training_reaches_every_part_and_logs_both_losses() -> None:
    from tritemporal.loader import MaskCollator

    torch.manual_seed(0)
    config = tiny_config(*AR, *FLOOR)
    model = TriTemporalModel(config).train()
    with torch.no_grad():
        model.soon_floor.change.weight.normal_(std=0.1)
    video = _clips(model, 4)
    batch = MaskCollator(config)(
        [{"video": v, "label": i % 2, "step": 0} for i, v in enumerate(video)]
    )
    out = model(batch.video, batch.masks, batch.labels)
    out.loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    m = out.metrics
    torch.testing.assert_close(m["loss_soon"], (m["loss_soon_forced"] + m["loss_soon_rollout"]) / 2)


def test_the_rollout_is_at_most_the_soon_window_and_at_least_one_step() -> None:
    with pytest.raises(ValueError, match="soon_rollout_steps=0"):
        tiny_config(*AR, "loss.soon_rollout_steps=0")
    model = TriTemporalModel(tiny_config(*AR, *SOON_ONLY, "loss.soon_rollout_steps=5"))
    out = model(_clips(model, 4), [])  # 1 SOON step
    assert torch.isfinite(out.metrics["loss_soon_rollout"])


@pytest.mark.parametrize("mode", ["joint", "autoregressive"])
def test_the_report_of_an_untrained_floored_model_is_copy_last_at_every_step(
    mode: str, eval_clips: Path
) -> None:
    from tests.conftest import EVAL
    from tritemporal.eval.report import evaluate

    torch.manual_seed(0)
    model = TriTemporalModel(tiny_config(*EVAL, *FLOOR, f"predictor.soon_mode={mode}")).eval()
    soon = evaluate(model, eval_clips, full=False)["soon"]
    assert soon["horizon_s"] == [0.25, 0.75]  # two SOON tubelet steps of 2 frames at 4 fps
    np.testing.assert_allclose(soon["model"]["l1"], soon["copy"]["l1"], rtol=1e-5)


def test_a_floored_forecast_from_now_tokens_needs_its_start() -> None:
    model = TriTemporalModel(tiny_config(*FLOOR, "predictor.action_conditioning=true")).eval()
    model.action.fit_statistics(torch.randn(64, 3, generator=torch.Generator().manual_seed(0)))
    video = _clips(model)
    clips = model.normalize(video)
    now = model.now_tokens(clips)
    actions = model.action.mean.float().expand(2, model.action.frames, 3)
    with pytest.raises(ValueError, match="soon_present"):
        model.forecast_from_now(now, actions)
    start = model.soon_present(clips)
    torch.testing.assert_close(
        model.forecast_from_now(now, actions, start), model.forecast(video, actions)
    )
    assert TriTemporalModel(tiny_config()).soon_present(clips) is None
