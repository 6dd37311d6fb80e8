"""The EVENTUALLY head and objective: standardised embeddings, change targets, no collapse."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_config
from tritemporal.config import LossConfig
from tritemporal.data.synthetic import SyntheticDrivingShapes
from tritemporal.heads.outcome import OutcomeAbstractor
from tritemporal.loader import MaskCollator
from tritemporal.model import TriTemporalModel, scale_grad
from tritemporal.objectives.eventually import EventuallyAlignment

B, N, D, E = 8, 6, 16, 4


def _objective(target: str = "change") -> EventuallyAlignment:
    torch.manual_seed(0)
    return EventuallyAlignment(D, E, LossConfig(event_target=target))


def _tokens(scenery: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(EVENTUALLY tokens, last NOW step tokens) sharing a per-clip scenery vector."""
    event, now = torch.randn(B, N, D), torch.randn(B, N, D)
    if scenery is not None:
        event, now = event + scenery[:, None], now + scenery[:, None]
    return event, now


def test_targets_are_standardised_over_the_batch() -> None:
    event, now = _tokens()
    target = _objective().target(event, now)
    assert target.shape == (B, E)
    assert torch.allclose(target.mean(0), torch.zeros(E), atol=1e-5)
    assert torch.allclose(target.var(0, unbiased=False), torch.ones(E), atol=1e-2)  # BN's eps


def test_change_target_ignores_scenery_that_now_and_eventually_share() -> None:
    torch.manual_seed(1)
    event, now = _tokens()
    scenery = 10 * torch.randn(B, D)  # the road each clip keeps from NOW to EVENTUALLY
    change = _objective("change")
    shifted = (event + scenery[:, None], now + scenery[:, None])
    assert torch.allclose(change.target(event, now), change.target(*shifted), atol=1e-4)
    window = _objective("window")  # the window target is dominated by it
    assert not torch.allclose(window.target(event, now), window.target(*shifted), atol=1e-1)


def test_a_collapsed_outcome_still_gets_a_gradient() -> None:
    """The failure this design removes: with unstandardised targets, one constant outcome and one
    constant target are a fixed point (loss = log B, zero gradient). Here targets stay spread, so
    a constant outcome is pushed apart."""
    objective = _objective()
    event, now = _tokens(scenery=5 * torch.randn(1, D).expand(B, D))  # one road for all
    outcome = torch.ones(B, E, requires_grad=True)
    loss, parts = objective(outcome, event, now)
    loss.backward()
    assert outcome.grad is not None and outcome.grad.abs().max() > 1e-3
    assert parts["event_target"].std(0).mean() > 0.5


def test_a_batch_of_one_is_a_clear_error(tiny) -> None:
    model = TriTemporalModel(tiny)
    c = tiny.clip
    video = torch.zeros(1, c.channels, c.total_frames, *c.hw)
    with pytest.raises(ValueError, match=r"train\.batch_size must be >= 2"):
        model(video, [])


def test_outcome_embedding_is_standardised_in_training_and_eval(tiny) -> None:
    torch.manual_seed(0)
    head = OutcomeAbstractor(D, tiny.outcome)
    tokens = torch.randn(32, N, D) + 3 * torch.randn(D)  # a shared component, as roads give
    z = head(tokens)
    assert torch.allclose(z.mean(0), torch.zeros(tiny.outcome.out_dim), atol=1e-4)
    with torch.no_grad():  # let the running statistics settle, as training does
        for _ in range(50):
            head(tokens)
    head.eval()  # running statistics: still centred on data like the training batches
    assert head(tokens).mean(0).abs().max() < head(tokens).std(0).mean()


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_event_gradient_reaches_the_encoder_only_as_configured(share: float) -> None:
    config = tiny_config(
        "loss.lambda_vjepa=0", "loss.lambda_soon=0", f"loss.event_encoder_grad={share}"
    )
    data = SyntheticDrivingShapes(config.clip, num_clips=4, seed=0)
    batch = MaskCollator(config)([{**data[i], "step": 0} for i in range(4)])
    torch.manual_seed(0)
    model = TriTemporalModel(config).train()
    model(batch.video, batch.masks, batch.labels).loss.backward()
    encoder = [p.grad for p in model.backbone.encoder.parameters()]
    reached = any(g is not None and g.abs().sum() > 0 for g in encoder)
    assert reached == (share > 0)
    assert all(p.grad is not None for p in model.outcome.parameters())


def test_scale_grad() -> None:
    x = torch.ones(3, requires_grad=True)
    assert torch.equal(scale_grad(x, 0.0), x) and not scale_grad(x, 0.0).requires_grad
    for scale in (0.25, 1.0):
        x.grad = None
        y = scale_grad(x, scale)
        assert torch.equal(y, x)
        y.sum().backward()
        assert torch.allclose(x.grad, torch.full((3,), scale))
