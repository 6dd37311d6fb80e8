"""The supervised objective (loss.lambda_ce) and the ceiling config that trains on it alone."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import TINY, tiny_config
from tritemporal.config import load_config
from tritemporal.data.common import MANEUVERS
from tritemporal.loader import MaskCollator
from tritemporal.metrics import read_metrics
from tritemporal.model import TriTemporalModel
from tritemporal.objectives.supervised import balanced_cross_entropy
from tritemporal.train import train

ROOT = Path(__file__).resolve().parents[1]
CEILING = ROOT / "configs" / "ceiling.yaml"
LABELS_ONLY = (
    "loss.lambda_vjepa=0",
    "loss.lambda_soon=0",
    "loss.lambda_event=0",
    "loss.lambda_ce=1",
)


def _batch(config, labels: list[int], seed: int = 0):
    torch.manual_seed(seed)
    c = config.clip
    samples = [
        {"video": torch.randn(c.channels, c.total_frames, *c.hw), "label": y, "step": seed}
        for y in labels
    ]
    return MaskCollator(config)(samples)


def _inputs(config, labels: list[int]) -> tuple:
    batch = _batch(config, labels)
    return batch.video, batch.masks, batch.labels


def test_no_classifier_and_no_loss_ce_when_lambda_ce_is_0() -> None:
    config = tiny_config()
    model = TriTemporalModel(config)
    out = model(*_inputs(config, [0, 1, 0, 2]))
    assert model.classifier is None
    assert "loss_ce" not in out.metrics
    assert not any(name.startswith("classifier.") for name in model.state_dict())


def test_loss_ce_is_logged_and_weighted_beside_the_other_losses() -> None:
    config = tiny_config("loss.lambda_ce=0.5")
    model = TriTemporalModel(config)
    out = model(*_inputs(config, [0, 1, 0, 2]))
    m = out.metrics
    expected = m["loss_vjepa"] + m["loss_soon"] + 0.25 * m["loss_event"] + 0.5 * m["loss_ce"]
    assert torch.isclose(out.loss, expected)
    assert model.classifier.linear.out_features == len(MANEUVERS)


def test_extra_maneuvers_widen_the_classifier() -> None:
    model = TriTemporalModel(tiny_config("loss.lambda_ce=1", "data.extra_maneuvers=[overtake]"))
    assert model.classifier.linear.out_features == len(MANEUVERS) + 1


def test_class_balance_on_a_hand_example() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, 0.0, 3.0], [0.0, 1.0, 0.0]])
    labels = torch.tensor([0, 0, 0, 1])
    rows = F.cross_entropy(logits, labels, reduction="none")
    # keep_lane's three rows count as much as the one rarer row
    expected = (rows[:3].mean() + rows[3]) / 2
    assert torch.isclose(balanced_cross_entropy(logits, labels), expected)
    # the same as torch's weighted mean with weights 1 / class count
    weight = torch.tensor([1 / 3, 1.0, 1.0])
    assert torch.isclose(expected, F.cross_entropy(logits, labels, weight=weight))


def test_unlabelled_rows_are_ignored() -> None:
    logits = torch.randn(5, 4, requires_grad=True)
    labels = torch.tensor([0, -1, 2, -1, 2])
    loss = balanced_cross_entropy(logits, labels)
    labelled = torch.tensor([0, 2, 4])
    assert torch.isclose(loss, balanced_cross_entropy(logits[labelled], labels[labelled]))
    loss.backward()
    assert torch.equal(logits.grad[[1, 3]], torch.zeros(2, 4))


def test_a_batch_without_labels_gives_zero_with_a_finite_gradient() -> None:
    logits = torch.randn(3, 4, requires_grad=True)
    loss = balanced_cross_entropy(logits, torch.full((3,), -1))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros(3, 4))


def test_labels_are_required_when_lambda_ce_is_set() -> None:
    config = tiny_config(*LABELS_ONLY)
    batch = _batch(config, [0, 1, 0, 2])
    with pytest.raises(ValueError, match="lambda_ce"):
        TriTemporalModel(config)(batch.video, batch.masks)


def test_labels_alone_is_a_valid_config_and_nothing_at_all_is_not() -> None:
    assert tiny_config(*LABELS_ONLY).loss.lambda_ce == 1
    with pytest.raises(ValueError, match="lambda_ce are all 0"):
        tiny_config(*LABELS_ONLY[:3])
    with pytest.raises(ValueError, match=r"loss.ce_encoder_grad=2.0 must be in \[0, 1\]"):
        tiny_config("loss.ce_encoder_grad=2")


@pytest.mark.parametrize("share", [1.0, 0.0])
@pytest.mark.parametrize("event", [0.0, 0.25], ids=["labels-only", "with-eventually"])
def test_the_encoder_learns_from_labels_as_configured(share: float, event: float) -> None:
    # EVENTUALLY keeps its default stop-gradient (loss.event_encoder_grad=0): with share 1 the
    # cross-entropy gets its own outcome-head pass, through which the encoder learns
    config = tiny_config(
        *LABELS_ONLY, f"loss.lambda_event={event}", f"loss.ce_encoder_grad={share}"
    )
    model = TriTemporalModel(config)
    out = model(*_inputs(config, [0, 1, 0, 2]))
    out.loss.backward()
    assert ("target_std" in out.metrics) == (event > 0)  # labels alone: the teacher does not run
    grads = [p.grad for p in model.backbone.encoder.parameters() if p.grad is not None]
    assert bool(grads and any(g.abs().sum() > 0 for g in grads)) == (share > 0)
    assert model.classifier.linear.weight.grad.abs().sum() > 0


def test_a_few_steps_on_a_fixed_batch_reduce_it() -> None:
    config = tiny_config(*LABELS_ONLY)
    torch.manual_seed(0)
    model = TriTemporalModel(config).train()
    batch = _batch(config, [0, 1, 0, 2])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(10):
        out = model(batch.video, batch.masks, batch.labels)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.metrics["loss_ce"].item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_the_ceiling_config_trains_and_its_classifier_round_trips(tmp_path: Path) -> None:
    tiny = [*TINY, "data.source=synthetic", "train.steps=2", "train.batch_size=4"]
    config = load_config(CEILING, [*tiny, f"train.run_dir={tmp_path / 'run'}"])
    assert (config.loss.lambda_ce, config.loss.ce_encoder_grad) == (1.0, 1.0)
    run_dir = train(config)
    records = read_metrics(run_dir)
    assert records and all(math.isfinite(r["loss_ce"]) for r in records)
    assert all("loss_event" not in r for r in records)
    trained = TriTemporalModel.from_pretrained(run_dir)  # the checkpoint, teacher included
    trained.save_pretrained(tmp_path / "saved")
    loaded = TriTemporalModel.from_pretrained(tmp_path / "saved")  # student + heads only
    for model in (trained, loaded):
        assert model.classifier is not None
    weight = loaded.classifier.linear.weight
    assert torch.equal(weight, trained.classifier.linear.weight)
    assert not torch.equal(weight, TriTemporalModel(config).classifier.linear.weight)


@pytest.mark.slow
def test_the_ceiling_under_two_ddp_processes_gives_the_losses_of_one(tmp_path: Path) -> None:
    # drop path off: its random draws differ between one process and two
    sets = [*TINY, "data.source=synthetic", "train.log_every=1", "backbone.drop_path=0"]
    args = ["train", "--config", str(CEILING), *(a for s in sets for a in ("--set", s))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    runs = {}
    for name, launcher in (("one", [sys.executable]), ("two", torchrun)):
        runs[name] = tmp_path / name
        command = [
            *launcher,
            "-m",
            "tritemporal.cli",
            *args,
            "--set",
            f"train.run_dir={runs[name]}",
        ]
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    one, two = (read_metrics(runs[name]) for name in ("one", "two"))
    assert len(one) == len(two) == 6
    for a, b in zip(one, two, strict=True):
        for key in ("loss_ce", "grad_norm"):
            assert math.isclose(a[key], b[key], rel_tol=1e-4), (a["step"], key)
