"""Evaluation toolkit: metrics against hand computations, probes on planted signal, plots."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tests.conftest import tiny_config
from tritemporal.eval.metrics import classification_metrics, feature_stats
from tritemporal.eval.plots import (
    bars_figure,
    confusion_figure,
    plot_bars,
    plot_confusion,
    plot_horizon,
    plot_projection,
    projection_figure,
)
from tritemporal.eval.probes import (
    _folds,
    _knn_predict,
    _logistic,
    attentive_probe_cv,
    fit_linear_probe,
    knn_probe_cv,
    linear_probe_cv,
    usable_classes,
)
from tritemporal.heads.probe import PROBE_CONFIG, PROBE_WEIGHTS, LinearProbe
from tritemporal.loader import MaskCollator
from tritemporal.model import TriTemporalModel
from tritemporal.objectives.losses import effective_rank

NAMES = ["keep_lane", "lane_change_left", "lane_change_right", "brake"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def planted(n: int = 200, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features = class-dependent mean + unit noise, 4 balanced classes."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    means = rng.normal(size=(4, d)) * 2.0
    return means[y] + rng.normal(size=(n, d)), y


def planted_tokens(n: int = 200, t: int = 8, d: int = 16, seed: int = 0):
    """Tokens (N, T, D) of noise where token 3 alone carries the class mean."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    tokens = rng.normal(size=(n, t, d)).astype(np.float32)
    tokens[:, 3] += (rng.normal(size=(4, d)) * 2.0)[y]
    return tokens, y


def shuffled(y: np.ndarray) -> np.ndarray:
    """Labels with any link to the features broken."""
    return np.random.default_rng(123).permutation(y)


def rankme(x) -> float:
    """The project's one RankMe (training's `outcome_rank`, the report's `rankme`) as a float."""
    return float(effective_rank(torch.as_tensor(x)))


def test_classification_metrics_by_hand() -> None:
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    m = classification_metrics(y_true, y_pred, ["a", "b", "c", "d"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion"] == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert m["per_class_recall"] == pytest.approx({"a": 2 / 3, "b": 0.5, "c": 1.0})
    assert m["support"] == {"a": 3, "b": 2, "c": 1, "d": 0}
    assert m["chance"] == pytest.approx(0.5)
    # precision a 1, b 1/2, c 1/2; F1 a 0.8, b 0.5, c 2/3; "d" is absent from y_true
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)
    assert m["chance_balanced"] == pytest.approx(1 / 3)  # "d" has no windows
    assert all(type(v) is float for v in (m["accuracy"], m["macro_f1"], m["chance"]))


def test_classification_metrics_accepts_tensors_and_rejects_bad_input() -> None:
    m = classification_metrics(torch.tensor([0, 1]), torch.tensor([0, 1]), ["a", "b"])
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0
    with pytest.raises(ValueError, match="y_pred has 1"):
        classification_metrics([0, 1], [0], ["a", "b"])
    with pytest.raises(ValueError, match="outside"):
        classification_metrics([0, 2], [0, 1], ["a", "b"])
    with pytest.raises(ValueError, match="no samples"):
        classification_metrics([], [], ["a", "b"])


def test_rankme_and_feature_stats() -> None:
    assert rankme(np.eye(8)) == pytest.approx(8.0)
    rank1 = np.outer(np.arange(1, 11), np.linspace(-1, 2, 6))
    assert rankme(rank1) == pytest.approx(1.0, abs=1e-6)
    x, _ = planted(d=32)
    stats = feature_stats(torch.from_numpy(x))
    assert stats["dim"] == 32 and 1.0 < stats["rankme"] <= 32.0
    assert stats["std_mean"] > 0.05
    collapsed = np.ones((50, 32)) + 1e-9 * np.random.default_rng(0).normal(size=(50, 32))
    stats = feature_stats(collapsed * np.linspace(1, 5, 50)[:, None])  # one direction, scaled
    assert stats["std_mean"] < 1e-6 and stats["std_min"] < 1e-6
    assert stats["rankme"] == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match="2-D"):
        rankme(np.ones(5))


def test_rankme_edges() -> None:
    """The semantics `effective_rank` documents, which training logs and the report share."""
    torch.manual_seed(0)
    assert rankme(torch.randn(1, 16)) == pytest.approx(1.0)  # one sample spans one direction
    assert rankme(torch.zeros(6, 4)) == 0.0  # nothing spanned
    wide = torch.randn(4, 32)  # N < D: at most N directions
    assert 3.0 < rankme(wide) <= 4.0 + 1e-5
    assert rankme(wide) == pytest.approx(rankme(1000 * wide), rel=1e-5)  # scale-free
    z = torch.randn(64, 8)
    for dtype in (torch.float16, torch.bfloat16):  # upcast first: the same as eval's float copy
        low = z.to(dtype)
        assert effective_rank(low).dtype == torch.float32
        assert rankme(low) == rankme(low.float()) == rankme(low.float().numpy())
    assert rankme(z) == pytest.approx(8.0, abs=0.5)
    assert np.isnan(rankme(torch.tensor([[1.0, float("inf")], [0.0, 1.0]])))
    with pytest.raises(ValueError, match="non-finite"):  # the report refuses what training flags
        feature_stats(np.array([[1.0, np.nan], [0.0, 1.0]]))


def test_training_log_and_report_give_the_same_rank() -> None:
    """`outcome_rank` in metrics.jsonl and the report's outcome `rankme`, on the same features."""
    config = tiny_config()
    torch.manual_seed(0)
    model = TriTemporalModel(config)
    c = config.clip
    samples = [
        {"video": torch.rand(c.channels, c.total_frames, *c.hw), "label": i % 2, "step": 0}
        for i in range(config.train.batch_size)
    ]
    batch = MaskCollator(config)(samples)
    seen = []
    model.outcome.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    logged = model(batch.video, batch.masks, batch.labels).metrics["outcome_rank"]
    (outcome,) = seen
    assert 1.0 < float(logged) <= config.train.batch_size
    assert feature_stats(outcome.numpy())["rankme"] == pytest.approx(float(logged), rel=1e-5)


def test_usable_classes() -> None:
    mask = usable_classes(np.array([0, 0, 1, 2, 2, 2]), 2)
    assert mask.tolist() == [True, True, False, True, True, True]


def test_linear_and_knn_probes_find_planted_signal() -> None:
    x, y = planted()
    for probe in (linear_probe_cv, knn_probe_cv):
        m = probe(x, y, NAMES)
        assert m["accuracy"] > 0.9, (probe.__name__, m)
        assert m["folds"] == 5 and m["n"] == 200
        assert sum(map(sum, m["confusion"])) == 200
        noise = probe(x, shuffled(y), NAMES)
        assert noise["accuracy"] < noise["chance"] + 0.15, (probe.__name__, noise)


def test_attentive_probe_finds_the_signal_token() -> None:
    # ~60 steps on 160 training clips: lr 5e-3 (V-JEPA 2 sweeps 1e-4..5e-3); 1e-3 underfits here
    tokens, y = planted_tokens()
    state = torch.get_rng_state()
    m = attentive_probe_cv(tokens, y, NAMES, epochs=20, lr=5e-3)
    assert torch.equal(torch.get_rng_state(), state)  # callers' RNG untouched
    assert m["accuracy"] > 0.9, m
    noise = attentive_probe_cv(torch.from_numpy(tokens), shuffled(y), NAMES, epochs=20, lr=5e-3)
    assert noise["accuracy"] < noise["chance"] + 0.15, noise


def test_probes_are_deterministic() -> None:
    x, y = planted(n=80)
    tokens, ty = planted_tokens(n=80)
    assert linear_probe_cv(x, y, NAMES, seed=3) == linear_probe_cv(x, y, NAMES, seed=3)
    assert knn_probe_cv(x, y, NAMES, seed=3) == knn_probe_cv(x, y, NAMES, seed=3)
    kw = {"seed": 3, "epochs": 3}
    assert attentive_probe_cv(tokens, ty, NAMES, **kw) == attentive_probe_cv(
        tokens, ty, NAMES, **kw
    )


def test_knn_ties_go_to_the_nearest_neighbour() -> None:
    train = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
    train_y = np.array([1, 0, 0, 1])
    test = np.array([[1.0, 0.01]])
    assert _knn_predict(train, train_y, test, k=3).tolist() == [0]  # 2 votes to 1
    assert _knn_predict(train, train_y, test, k=4).tolist() == [1]  # 2-2 tie: nearest wins
    assert _knn_predict(train, train_y, test, k=99).tolist() == [1]  # k capped at train size


def test_folds_by_video_keep_each_video_whole_and_defeat_leakage() -> None:
    """Windows of one video share a look and a label: a plain split lets kNN recognise the video;
    folds by video leave it nothing to recognise, so it falls to chance."""
    rng = np.random.default_rng(0)
    videos = np.repeat(np.arange(20), 10)  # 20 videos x 10 overlapping windows
    look = rng.normal(size=(20, 16)) * 3.0  # per-video appearance, unrelated to the maneuver
    y = np.repeat(rng.permutation(np.arange(20) % 2), 10)  # one maneuver per video, at random
    x = look[videos] + rng.normal(size=(200, 16))
    leaky = knn_probe_cv(x, y, NAMES, k=5)
    held_out = knn_probe_cv(x, y, NAMES, k=5, groups=videos)
    assert leaky["accuracy"] > 0.95
    assert held_out["accuracy"] < 0.7
    for train, test in _folds(y, 5, 0, videos):
        assert not set(videos[train]) & set(videos[test])
    assert linear_probe_cv(x, y, NAMES, groups=videos)["n"] == 200
    with pytest.raises(ValueError, match="single group"):
        linear_probe_cv(x, y, NAMES, groups=np.zeros(200, dtype=int))
    with pytest.raises(ValueError, match="groups has 199 entries"):
        knn_probe_cv(x, y, NAMES, groups=videos[:199])


def test_probe_fold_count_and_edge_cases() -> None:
    x, y = planted(n=40)
    y = y.copy()
    y[:3] = 0
    y[y == 3] = 2  # classes 0, 1, 2 with class sizes >= 3
    y[np.flatnonzero(y == 1)[3:]] = 0  # class 1 keeps 3 samples
    assert linear_probe_cv(x, y, NAMES)["folds"] == 3
    with pytest.raises(ValueError, match="2 classes"):
        linear_probe_cv(x, np.zeros(40, dtype=int), NAMES)
    single = y.copy()
    single[np.flatnonzero(single == 1)[1:]] = 0  # class 1 has one sample
    with pytest.raises(ValueError, match="too few samples for 2 folds"):
        knn_probe_cv(x, single, NAMES)
    keep = usable_classes(single, 2)
    assert knn_probe_cv(x[keep], single[keep], NAMES)["n"] == 39
    with pytest.raises(ValueError, match="40 samples but y has 39"):
        linear_probe_cv(x, y[:39], NAMES)
    with pytest.raises(ValueError, match=r"\(N, T, D\)"):
        attentive_probe_cv(x, y, NAMES)


def test_plots_write_pngs(tmp_path) -> None:
    x, y = planted(n=60)
    confusion = classification_metrics(y, shuffled(y), NAMES)["confusion"]
    paths = [
        plot_confusion(confusion, NAMES, tmp_path / "c.png", "confusion"),
        plot_projection(x, y, NAMES, tmp_path / "sub" / "p.png", "projection"),
        plot_horizon(
            [0.5, 1.0, 2.0],
            {"model": [0.9, 0.8, 0.6], "copy_last": [0.8, 0.6, 0.3]},
            tmp_path / "h.png",
            "horizon",
            "cosine",
        ),
        plot_bars(
            {"outcome": {"linear": 0.8, "knn": 0.7}, "random_init": {"linear": 0.3}},
            tmp_path / "b.png",
            "probes",
            "accuracy",
        ),
    ]
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
    with pytest.raises(ValueError, match="3 horizons"):
        plot_horizon([0.5, 1.0, 2.0], {"m": [1.0]}, tmp_path / "x.png", "t", "y")
