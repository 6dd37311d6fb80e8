"""The V-JEPA mechanics of TriTemporalModel: context isolation, teacher, targets, gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import scramble_tokens, tiny_config
from tritemporal.ema import ema_update
from tritemporal.loader import MaskCollator
from tritemporal.model import TriTemporalModel
from tritemporal.objectives.masks import MaskSet


def _batch(config, seed: int = 0):
    torch.manual_seed(seed)
    c = config.clip
    samples = [
        {"video": torch.randn(c.channels, c.total_frames, *c.hw), "label": i % 2, "step": seed}
        for i in range(config.train.batch_size)
    ]
    return MaskCollator(config)(samples)


@pytest.mark.parametrize("pos_embed", ["rope", "sincos"])
def test_context_encoder_ignores_masked_pixels(pos_embed: str) -> None:
    config = tiny_config(f"backbone.pos_embed={pos_embed}")
    model = TriTemporalModel(config).eval()
    batch = _batch(config)
    for mask in batch.masks:
        encoder = model.backbone.encoder
        before = encoder(batch.video, keep=mask.context)
        after = encoder(scramble_tokens(batch.video, mask.target, config), keep=mask.context)
        assert before.shape == (batch.video.shape[0], mask.context.shape[1], encoder.embed_dim)
        assert torch.equal(before, after)
        # ...while the teacher, which sees the whole clip, does change
        changed = model.teacher(scramble_tokens(batch.video, mask.target, config))
        assert not torch.allclose(changed, model.teacher(batch.video))


def test_now_pass_never_sees_the_future() -> None:
    config = tiny_config()
    model = TriTemporalModel(config).eval()
    batch = _batch(config)
    now_frames = config.clip.now_frames
    future = batch.video.clone()
    future[:, :, now_frames:] = torch.randn_like(future[:, :, now_frames:])
    a, b = model.encode(batch.video), model.encode(future)
    for key in ("now", "soon", "eventually"):
        assert torch.equal(a[key], b[key]), key


def test_targets_are_layer_normed_without_affine() -> None:
    config = tiny_config()
    model = TriTemporalModel(config)
    targets = model.teacher_targets(_batch(config).video)
    assert torch.allclose(targets.mean(-1), torch.zeros(()), atol=1e-5)
    assert torch.allclose(targets.var(-1, unbiased=False), torch.ones(()), atol=1e-3)
    assert not targets.requires_grad


def test_every_trainable_param_gets_grad_and_teacher_none() -> None:
    config = tiny_config()
    model = TriTemporalModel(config).train()
    batch = _batch(config)
    out = model(batch.video, batch.masks, batch.labels)
    out.loss.backward()
    assert all(not p.requires_grad for p in model.teacher.parameters())
    assert all(p.grad is None for p in model.teacher.parameters())
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    zero = [
        n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() == 0
    ]
    assert missing == [] and zero == []
    assert {"loss", "loss_vjepa", "loss_soon", "loss_event", "loss_supcon"} <= out.metrics.keys()
    expected = (
        out.metrics["loss_vjepa"] + out.metrics["loss_soon"] + 0.25 * out.metrics["loss_event"]
    )
    assert torch.allclose(out.metrics["loss"], expected)


def test_teacher_is_a_copy_and_ema_moves_by_momentum() -> None:
    config = tiny_config()
    model = TriTemporalModel(config)
    student, teacher = model.backbone.encoder, model.teacher
    for s, t in zip(student.parameters(), teacher.parameters(), strict=True):
        assert torch.equal(s, t)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    before = [t.clone() for t in teacher.parameters()]
    ema_update(teacher, student, momentum=0.9)
    for t0, t1, s in zip(before, teacher.parameters(), student.parameters(), strict=True):
        assert torch.allclose(t1, 0.9 * t0 + 0.1 * s, atol=1e-6)


def test_teacher_stays_in_eval_mode() -> None:
    model = TriTemporalModel(tiny_config("backbone.drop_path=0.5")).train()
    assert model.backbone.encoder.training and not model.teacher.training


def test_masks_context_and_target_disjoint_in_batch(tiny) -> None:
    batch = _batch(tiny)
    n = tiny.clip.grid[0] * tiny.clip.grid[1] * tiny.clip.grid[2]
    for mask in batch.masks:
        for ctx, tgt in zip(mask.context.tolist(), mask.target.tolist(), strict=True):
            assert not set(ctx) & set(tgt)
            assert len(ctx) + len(tgt) == n


@pytest.mark.slow
def test_tiny_model_overfits_a_fixed_batch() -> None:
    """On one fixed batch of synthetic road clips every loss falls fast (teacher frozen)."""
    from tritemporal.data.synthetic import SyntheticDrivingShapes

    config = tiny_config("optim.ema_start=1.0", "optim.ema_end=1.0")
    data = SyntheticDrivingShapes(config.clip, num_clips=4, seed=0)
    batch = MaskCollator(config)([{**data[i], "step": 0} for i in range(4)])
    torch.manual_seed(0)
    model = TriTemporalModel(config).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(80):  # the encoder learns from V-JEPA and SOON alone (EVENTUALLY stops grad)
        out = model(batch.video, batch.masks, batch.labels)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append({k: float(v) for k, v in out.metrics.items()})
    first = losses[0]
    last = {k: sum(step[k] for step in losses[-5:]) / 5 for k in first}
    assert last["loss_vjepa"] < 0.8 * first["loss_vjepa"]
    assert last["loss_soon"] < 0.8 * first["loss_soon"]
    assert last["loss_nce"] < 0.05 * first["loss_nce"]


def test_wrong_clip_shape_is_a_clear_error(tiny) -> None:
    model = TriTemporalModel(tiny)
    with pytest.raises(ValueError, match="clip"):
        model.encode(torch.randn(2, 3, 5, 32, 32))


def test_context_indices_are_respected_per_sample(tiny) -> None:
    """Different samples may keep different tokens; each row is encoded with its own positions."""
    model = TriTemporalModel(tiny).eval()
    video = _batch(tiny).video[:2]
    keep = torch.tensor([[0, 5, 9], [1, 2, 30]])
    both = model.backbone.encoder(video, keep=keep)
    one = model.backbone.encoder(video[1:], keep=keep[1:])
    assert torch.allclose(both[1:], one, atol=1e-6)
    assert F.mse_loss(both[0], both[1]) > 0
    assert isinstance(_batch(tiny).masks[0], MaskSet)


def _kernels_seen(model: TriTemporalModel, config, monkeypatch: pytest.MonkeyPatch) -> set:
    """(width of q, was the math kernel alone allowed) for every SDPA call of one step."""
    import torch.nn.functional as F

    from tritemporal.bench import synthetic_batches

    seen = set()
    original = F.scaled_dot_product_attention

    def spy(q: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        math_only = not torch.backends.cuda.flash_sdp_enabled()
        seen.add((q.shape[1] * q.shape[-1], math_only))
        return original(q, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    batch = synthetic_batches(config, torch.device("cpu"), count=1)[0]
    model(batch.video, batch.masks, batch.labels)
    return seen


@pytest.mark.parametrize("vjepa2", [False, True])
def test_each_part_attends_with_the_kernel_its_key_names(
    vjepa2: bool, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """predictor.sdpa_kernel reaches the predictor's attention only (built-in and transformers'
    layers), the results stay the same, and a CUDA-only kernel falls back, warned, on a CPU."""
    from tests.conftest import vjepa2_overrides

    base = vjepa2_overrides(request.getfixturevalue("vjepa2_dir")) if vjepa2 else []
    config = tiny_config(*base)
    torch.manual_seed(0)
    auto = TriTemporalModel(config).eval()
    math = TriTemporalModel(tiny_config(*base, "predictor.sdpa_kernel=math")).eval()
    math.load_state_dict(auto.state_dict())
    seen = _kernels_seen(math, config, monkeypatch)
    math_only = {width for width, only in seen if only}  # the predictor's width alone
    assert len(math_only) == 1 and auto.backbone.embed_dim not in math_only
    assert (auto.backbone.embed_dim, False) in seen
    assert not any(only for _, only in _kernels_seen(auto, config, monkeypatch))
    batch_video = torch.rand(2, 3, config.clip.total_frames, *config.clip.hw)
    torch.testing.assert_close(math.encode(batch_video)["soon"], auto.encode(batch_video)["soon"])
    cudnn = TriTemporalModel(tiny_config(*base, "backbone.sdpa_kernel=cudnn")).eval()
    cudnn.load_state_dict(auto.state_dict())
    with pytest.warns(UserWarning, match=r"sdpa_kernel='cudnn' .* CUDA only; on cpu PyTorch"):
        out = cudnn.encode(batch_video)["soon"]  # a model trained on GPUs still runs on a CPU
    torch.testing.assert_close(out, auto.encode(batch_video)["soon"])
