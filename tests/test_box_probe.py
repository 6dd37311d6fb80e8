"""The NOW detection probe: IoU, and a linear box regression that finds a box the tokens carry."""

from __future__ import annotations

import numpy as np
import pytest

from tritemporal.eval.box_probe import box_iou, box_predictions, leader_boxes, mean_iou_statistic


def test_box_iou() -> None:
    a = np.array([0.0, 0.0, 0.5, 0.5])
    assert box_iou(a, a) == pytest.approx(1.0)
    assert box_iou(a, np.array([0.25, 0.0, 0.75, 0.5])) == pytest.approx(1 / 3)
    assert box_iou(a, np.array([0.6, 0.6, 0.9, 0.9])) == 0.0
    assert np.isnan(box_iou(a, np.full(4, np.nan)))


def test_leader_boxes_from_facts() -> None:
    assert leader_boxes({}) is None and leader_boxes({"leader_box": [None, None]}) is None
    boxes = leader_boxes({"leader_box": [[0.1, 0.2, 0.3, 0.4], None]})
    assert boxes is not None and boxes.shape == (2, 4) and np.isnan(boxes[1]).all()


def test_the_probe_reads_a_box_the_tokens_carry_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    n, tokens, dim = 400, 8, 6
    centre = rng.uniform(0.3, 0.7, (n, 2))
    size = rng.uniform(0.05, 0.2, (n, 1))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    boxes[::7] = np.nan  # windows without a leader
    groups = np.repeat(np.arange(20), n // 20)
    x = rng.normal(size=(n, tokens, dim))
    x[:, 3, :3] = np.nan_to_num(np.concatenate([centre, size], axis=1)) * 10  # one token knows
    predicted, constant = box_predictions(x, boxes, groups)
    assert np.isnan(predicted[::7]).all() and np.isfinite(predicted[1]).all()
    everything = np.arange(n)
    read = mean_iou_statistic(predicted, boxes)(everything)
    blind = mean_iou_statistic(constant, boxes)(everything)
    assert read > 0.8 > blind + 0.3
    noise, _ = box_predictions(rng.normal(size=(n, tokens, dim)), boxes, groups)
    assert mean_iou_statistic(noise, boxes)(everything) < blind + 0.1
