"""Loss functions against hand computations."""

from __future__ import annotations

import math

import torch

from tritemporal.objectives.losses import (
    effective_rank,
    info_nce,
    masked_l1,
    supervised_contrastive,
)


def test_masked_l1_is_mean_abs() -> None:
    pred = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    target = torch.tensor([[[0.0, 2.0], [5.0, 4.5]]])
    assert math.isclose(float(masked_l1(pred, target)), (1 + 0 + 2 + 0.5) / 4)


def test_info_nce_against_hand_computation() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    t = torch.tensor(0.5)
    # cosine similarities: a0=(1,0), a1=(0,1); b0=(0.6,0.8), b1=(0,1)
    s = [[0.6, 0.0], [0.8, 1.0]]
    logits = [[x / 0.5 for x in row] for row in s]

    def ce(row: list[float], k: int) -> float:
        return -row[k] + math.log(sum(math.exp(x) for x in row))

    a_to_b = (ce(logits[0], 0) + ce(logits[1], 1)) / 2
    cols = [[logits[0][j], logits[1][j]] for j in range(2)]
    b_to_a = (ce(cols[0], 0) + ce(cols[1], 1)) / 2
    assert math.isclose(float(info_nce(a, b, t)), (a_to_b + b_to_a) / 2, rel_tol=1e-6)


def test_info_nce_collapse_is_worst_case() -> None:
    b = 8
    same = torch.ones(b, 4)
    assert math.isclose(float(info_nce(same, same, torch.tensor(0.1))), math.log(b), rel_tol=1e-6)
    eye = torch.eye(b)
    assert float(info_nce(eye, eye, torch.tensor(0.1))) < 0.01


def test_supervised_contrastive_against_hand_computation() -> None:
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    labels = torch.tensor([0, 0, 1, -1])  # the unlabelled row is dropped
    t = torch.tensor(1.0)
    # remaining: rows 0 and 1 are positives of each other; row 2 has no positive (skipped)
    # for row 0: logits vs others = [1 (row1), 0 (row2)] -> log p(row1) = 1 - log(e + 1)
    expected = -(1 - math.log(math.e + 1))
    assert math.isclose(float(supervised_contrastive(z, labels, t)), expected, rel_tol=1e-6)


def test_supervised_contrastive_without_positives_is_zero_with_finite_gradient() -> None:
    for labels in (torch.tensor([0, 1, 2]), torch.tensor([-1, -1, -1])):
        z = torch.randn(3, 4, requires_grad=True)
        loss = supervised_contrastive(z, labels, torch.tensor(0.1))
        loss.backward()
        assert float(loss) == 0.0
        assert torch.isfinite(z.grad).all() and not z.grad.any()


def test_effective_rank() -> None:
    assert math.isclose(float(effective_rank(torch.eye(5))), 5.0, rel_tol=1e-4)
    rank_one = torch.randn(6, 1) @ torch.randn(1, 4)
    assert float(effective_rank(rank_one)) < 1.01
