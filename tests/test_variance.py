"""The variance-covariance regulariser (loss.lambda_var / lambda_cov, objectives/variance.py)."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_config
from tritemporal.loader import MaskCollator
from tritemporal.model import TriTemporalModel
from tritemporal.objectives.variance import variance_covariance


def test_variance_and_covariance_terms_have_their_textbook_values() -> None:
    torch.manual_seed(0)
    white = torch.randn(20000, 8)
    var, cov = variance_covariance([white[:8000], white[8000:].view(2, 6000, 8)])
    assert var.item() < 0.02 and cov.item() < 0.01  # unit std, uncorrelated: nothing to push
    collapsed = torch.randn(20000, 1).expand(-1, 8) * 0.5  # one direction, std 0.5 per feature
    var, cov = variance_covariance([collapsed])
    assert var.item() == pytest.approx(0.5, abs=0.02)  # relu(1 - 0.5) on every feature
    assert cov.item() == pytest.approx(8 * 7 * 0.25**2 / 8, rel=0.05)  # 56 covariances of 0.25


def test_the_regulariser_spreads_collapsed_tokens() -> None:
    """Tokens in 2 of 16 directions, optimised (Adam, as the network would be) under the step's
    weights: every direction ends up in use."""
    torch.manual_seed(0)
    base = torch.randn(512, 2) @ torch.randn(2, 16) * 0.2  # rank 2 of 16, std < 1
    x = (base + 0.01 * torch.randn(512, 16)).requires_grad_()

    def used(t: torch.Tensor) -> int:
        singular = torch.linalg.svdvals(t.detach() - t.detach().mean(0))
        return int((singular > 0.1 * singular[0]).sum())

    assert used(x) == 2
    opt = torch.optim.Adam([x], lr=0.01)
    for _ in range(200):
        var, cov = variance_covariance([x])
        opt.zero_grad()
        (var + 0.04 * cov).backward()
        opt.step()
    assert used(x) == 16


def test_loss_var_and_loss_cov_join_the_step_only_when_weighted() -> None:
    off = tiny_config()
    on = tiny_config("loss.lambda_var=1.0", "loss.lambda_cov=0.04")
    for config, expected in ((off, False), (on, True)):
        torch.manual_seed(0)
        model = TriTemporalModel(config)
        c = config.clip
        samples = [
            {"video": torch.rand(c.channels, c.total_frames, *c.hw), "label": 0, "step": 0}
            for _ in range(4)
        ]
        batch = MaskCollator(config)(samples)
        out = model(batch.video, batch.masks, batch.labels)
        assert ("loss_var" in out.metrics) is expected
        assert ("loss_cov" in out.metrics) is expected
        if expected:
            m = out.metrics
            weighted = sum(m[k] for k in ("loss_vjepa", "loss_soon")) + 0.25 * m["loss_event"]
            weighted = weighted + m["loss_var"] + 0.04 * m["loss_cov"]
            assert out.loss.item() == pytest.approx(weighted.item(), rel=1e-5)
            out.loss.backward()
            grads = [p.grad for p in model.backbone.encoder.parameters() if p.requires_grad]
            assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("key", ["lambda_var", "lambda_cov"])
def test_negative_weights_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match=f"loss.{key}"):
        tiny_config(f"loss.{key}=-1")
