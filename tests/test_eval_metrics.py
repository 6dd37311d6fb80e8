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
    curves_figure,
    plot_bars,
    plot_confusion,
    plot_curves,
    plot_horizon,
    plot_projection,
    projection_figure,
    trailing_mean,
)
from tritemporal.eval.probes import (
    AttentiveProbeSpec,
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


@pytest.mark.slow
def test_linear_and_knn_probes_find_planted_signal() -> None:
    x, y = planted()
    for probe in (linear_probe_cv, knn_probe_cv):
        m = probe(x, y, NAMES)
        assert m["accuracy"] > 0.9, (probe.__name__, m)
        assert m["folds"] == 5 and m["n"] == 200
        assert sum(map(sum, m["confusion"])) == 200
        noise = probe(x, shuffled(y), NAMES)
        assert noise["accuracy"] < noise["chance"] + 0.15, (probe.__name__, noise)


@pytest.mark.slow
def test_attentive_probe_finds_the_signal_token() -> None:
    # ~60 steps on 160 training clips: lr 5e-3 (V-JEPA 2 sweeps 1e-4..5e-3); 1e-3 underfits here
    tokens, y = planted_tokens()
    state = torch.get_rng_state()
    m = attentive_probe_cv(tokens, y, NAMES)
    assert torch.equal(torch.get_rng_state(), state)  # callers' RNG untouched
    assert m["accuracy"] > 0.9, m
    noise = attentive_probe_cv(torch.from_numpy(tokens), shuffled(y), NAMES)
    assert noise["accuracy"] < noise["chance"] + 0.15, noise


@pytest.mark.slow
def test_attentive_probe_reads_where_a_token_sits() -> None:
    """The same bright token at one of 4 slots, the class is the slot: a set pooler cannot
    answer (RoPE encoders give tokens no absolute position); the position embedding can."""
    rng = np.random.default_rng(0)
    n, t, d = 200, 8, 16
    y = np.arange(n) % 4
    tokens = rng.normal(size=(n, t, d)).astype(np.float32)
    tokens[np.arange(n), 2 * y] += rng.normal(size=d).astype(np.float32) * 3.0
    placed = attentive_probe_cv(tokens, y, NAMES)
    blind = attentive_probe_cv(tokens, y, NAMES, spec=AttentiveProbeSpec(positions=False))
    assert placed["accuracy"] > 0.7, placed
    assert blind["accuracy"] < blind["chance"] + 0.15, blind


@pytest.mark.slow
def test_attentive_probe_standardizes_features() -> None:
    """A pretrained encoder's tokens: two shared directions 10^4 times the scale of the one that
    carries the class. LayerNorm keeps the ratio and the probe sees noise; z-scoring each feature
    with the training fold's statistics brings the class to the surface."""
    rng = np.random.default_rng(0)
    n, t, d = 200, 8, 16
    y = np.arange(n) % 4
    tokens = rng.normal(size=(n, t, d)).astype(np.float32) * 0.01
    tokens[..., :2] += rng.normal(size=(n, 1, 2)).astype(np.float32) * 100.0
    tokens[:, :, 4] += 0.05 * (y[:, None] - 1.5)
    scaled = attentive_probe_cv(tokens, y, NAMES)
    raw = attentive_probe_cv(tokens, y, NAMES, spec=AttentiveProbeSpec(standardize=False))
    assert scaled["accuracy"] > 0.9, scaled
    assert raw["accuracy"] < raw["chance"] + 0.15, raw


@pytest.mark.slow
def test_probes_are_deterministic() -> None:
    x, y = planted(n=80)
    tokens, ty = planted_tokens(n=80)
    assert linear_probe_cv(x, y, NAMES, seed=3) == linear_probe_cv(x, y, NAMES, seed=3)
    assert knn_probe_cv(x, y, NAMES, seed=3) == knn_probe_cv(x, y, NAMES, seed=3)
    kw = {"seed": 3, "spec": AttentiveProbeSpec(epochs=3)}
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


def test_training_curves_skip_steps_without_the_metric(tmp_path) -> None:
    records = [{"step": 10, "loss": 1.0, "target_std": 0.5}, {"step": 20, "loss": 0.8}]
    records.append({"step": 20, "eval/now_rankme": 7.0})  # the eval hook's own record
    fig = curves_figure(records, ["target_std", "eval/now_rankme"], "run")
    assert [len(ax.lines[0].get_xdata()) for ax in fig.axes] == [1, 1]
    data = plot_curves(records, ["loss"], tmp_path / "c.png", "run").read_bytes()
    assert data.startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match=r"no record holds \['rank'\]; logged metrics: "):
        curves_figure(records, ["rank"], "run")


def test_training_curves_skip_a_missing_key_label_axes_and_smooth(
    caplog: pytest.LogCaptureFixture,
) -> None:
    records = [{"step": 10 * (i + 1), "loss": float(i % 2), "lr": 1e-3} for i in range(8)]
    fig = curves_figure(records, ["loss", "eval/now_rankme", "lr"], "run")
    assert "skipped ['eval/now_rankme']: never logged" in caplog.text
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "lr"]
    assert all(ax.get_xlabel() == "step" for ax in fig.axes)
    smoothed = curves_figure(records, ["loss"], "run", smooth=4)
    raw, mean = smoothed.axes[0].lines
    assert raw.get_alpha() == 0.3 and mean.get_alpha() is None  # raw faint behind the mean
    assert mean.get_ydata().tolist() == [0.0, 0.5, 1 / 3, 0.5, 0.5, 0.5, 0.5, 0.5]
    with pytest.raises(ValueError, match="smooth=0 must be >= 1"):
        curves_figure(records, ["loss"], "run", smooth=0)


def test_trailing_mean_averages_only_earlier_points() -> None:
    np.testing.assert_allclose(trailing_mean([1, 2, 3, 10], 2), [1, 1.5, 2.5, 6.5])
    assert trailing_mean([4.0, 5.0], 1).tolist() == [4.0, 5.0]
    with pytest.raises(ValueError, match="must be >= 1"):
        trailing_mean([1.0], 0)


def _tick_texts(fig: Figure, axis: str) -> list[str]:
    """The tick label texts of the figure's first axes along `axis` ("x" or "y")."""
    ticks = getattr(fig.axes[0], f"get_{axis}ticklabels")()
    return [t.get_text() for t in ticks]


def _labels_clear(fig: Figure, axis: str) -> bool:
    """Whether the drawn tick labels along `axis` keep clear of each other: unrotated boxes do
    not intersect; labels rotated by a, `pitch * sin(a)` apart across their baselines, are at
    least one line of text apart."""
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    labels = [t for t in getattr(ax, f"get_{axis}ticklabels")() if t.get_text()]
    angle = np.radians(labels[0].get_rotation())
    if angle == 0:
        boxes = [t.get_window_extent(renderer) for t in labels]
        return not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    ticks = getattr(ax, f"get_{axis}ticks")()
    pitch = np.diff(ax.transData.transform(np.stack([ticks, ticks], axis=1))[:, 0]).min()
    return pitch * np.sin(angle) > renderer.points_to_pixels(labels[0].get_fontsize())


def test_confusion_leaves_out_absent_classes() -> None:
    names = [*NAMES, "extra_maneuver"]
    true = [0, 0, 1, 1, 1, 3]
    pred = [0, 1, 1, 1, 2, 3]  # lane_change_right is predicted once, never true: kept
    confusion = classification_metrics(true, pred, names)["confusion"]
    fig = confusion_figure(confusion, names, "t")
    assert _tick_texts(fig, "x") == ["keep_lane", "lane_change_left", "lane_change_right", "brake"]
    assert _tick_texts(fig, "y")[2] == "lane_change_right (0)"
    assert fig.axes[0].images[0].get_array().shape == (4, 4)
    with pytest.raises(ValueError, match="no samples"):
        confusion_figure(np.zeros((2, 2)), ["a", "b"], "t")


def test_tick_labels_do_not_overlap() -> None:
    long = ["keep_lane", "lane_change_left", "lane_change_right", "brake", "turn_left_at_exit"]
    confusion = np.arange(25).reshape(5, 5)
    fig = confusion_figure(confusion, long, "t")
    assert _labels_clear(fig, "x") and _labels_clear(fig, "y")
    title = "EVENTUALLY: linear probe on the outcome embedding (out-of-fold)"
    small = confusion_figure(np.eye(2, dtype=int), long[:2], title)  # the title fits the figure
    FigureCanvasAgg(small).draw()
    assert small.bbox.contains(*small.axes[0].title.get_window_extent().corners()[0])
    assert small.bbox.contains(*small.axes[0].title.get_window_extent().corners()[3])
    groups = {
        name: {"linear": 0.4, "knn": 0.3}
        for name in (
            "outcome embedding",
            "mean NOW features",
            "random-init outcome embedding",
            "random-init mean NOW features",
        )
    }
    assert _labels_clear(bars_figure(groups, "t", "balanced accuracy", 0.25), "x")


def test_chance_line_drawn_when_given() -> None:
    groups = {"outcome": {"linear": 0.8, "knn": 0.7}, "random_init": {"linear": 0.3}}
    lines = bars_figure(groups, "probes (chance 0.25)", "accuracy", chance=0.25).axes[0].lines
    chance = [line for line in lines if line.get_label().startswith("chance")]
    assert len(chance) == 1 and list(chance[0].get_ydata()) == [0.25, 0.25]
    assert chance[0].get_label() in _legend_texts(bars_figure(groups, "t", "a", chance=0.25))
    assert len(bars_figure(groups, "probes", "accuracy").axes[0].lines) == 0


def _legend_texts(fig: Figure) -> list[str]:
    """The legend entries of the figure's first axes."""
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_projection_draws_small_classes_last_and_larger() -> None:
    x, _ = planted(n=103, d=8)
    y = np.array([0] * 90 + [2] * 10 + [1] * 3)
    fig = projection_figure(x, y, NAMES, "t")
    drawn = fig.axes[0].collections
    assert [c.get_label() for c in drawn] == [
        "keep_lane (90)", "lane_change_right (10)", "lane_change_left (3)",
    ]  # fmt: skip
    sizes = [float(c.get_sizes()[0]) for c in drawn]
    assert sizes[0] < sizes[1] < sizes[2]
    assert _legend_texts(fig) == [
        "keep_lane (90)", "lane_change_left (3)", "lane_change_right (10)",
    ]  # fmt: skip


@pytest.mark.parametrize("num_classes", [2, 3])
def test_fitted_probe_matches_sklearn_and_round_trips(tmp_path, num_classes: int) -> None:
    x, y = planted(n=120, d=8)
    keep = y < num_classes
    x, y = x[keep], y[keep]
    probe = fit_linear_probe(x, y, NAMES, seed=0, fingerprint="0123456789abcdef")
    assert probe.label_names == NAMES[:num_classes] and probe.embed_dim == 8
    reference = _logistic(0).fit(x, y).predict_proba(x)
    probs = probe(torch.from_numpy(x)).softmax(dim=-1).numpy()
    np.testing.assert_allclose(probs, reference, atol=1e-5)
    probe.save(tmp_path)
    for path in (tmp_path, tmp_path / PROBE_WEIGHTS, tmp_path / PROBE_CONFIG):
        loaded = LinearProbe.load(path)
        assert loaded.label_names == probe.label_names and loaded.fitted_on == len(y)
        assert loaded.fingerprint == "0123456789abcdef"
        torch.testing.assert_close(loaded(torch.from_numpy(x)), probe(torch.from_numpy(x)))


def test_probe_files_missing_or_damaged(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no EVENTUALLY probe in .*tritemporal eval"):
        LinearProbe.load(tmp_path / "nowhere")
    x, y = planted(n=40, d=4)
    fit_linear_probe(x, y, NAMES).save(tmp_path)
    (tmp_path / PROBE_WEIGHTS).write_bytes((tmp_path / PROBE_WEIGHTS).read_bytes()[:50])
    with pytest.raises(ValueError, match="damaged"):
        LinearProbe.load(tmp_path)
    (tmp_path / PROBE_CONFIG).unlink()
    with pytest.raises(FileNotFoundError, match=PROBE_CONFIG):
        LinearProbe.load(tmp_path)
    with pytest.raises(ValueError, match="2 classes"):
        fit_linear_probe(x, np.zeros(40, dtype=int), NAMES)
