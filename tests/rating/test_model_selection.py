"""Cross-validated model comparison: metrics against scikit-learn, grouped folds, unseen items, model choice."""

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, log_loss

from pairkit import read_comparisons
from pairkit.data import Comparisons
from pairkit.errors import InputError
from pairkit.rating import registry
from pairkit.rating.model_selection import _compact, _expected_scores, _fold_ids, compare_models, prediction_scores
from tests.rating.test_intransitive import rock_paper_scissors
from tests.shared_data import shared_path


def test_scores_match_sklearn_and_a_slow_ece():
    rng = np.random.default_rng(0)
    p = rng.random(500)
    y = rng.choice([0.0, 0.5, 1.0], 500)
    w = rng.integers(1, 4, 500).astype(float)
    s = prediction_scores(p, y, w)
    # a tie is half a win and half a loss
    yy = np.r_[np.ones(500), np.zeros(500)]
    ww = np.r_[w * y, w * (1 - y)]
    pp = np.r_[p, p]
    assert s["log_loss"] == pytest.approx(log_loss(yy, pp, sample_weight=ww), rel=1e-10)
    assert s["brier"] == pytest.approx(np.sum(w * (p - y) ** 2) / w.sum())
    dec = y != 0.5
    assert prediction_scores(p[dec], y[dec], w[dec])["brier"] == pytest.approx(
        brier_score_loss(y[dec], p[dec], sample_weight=w[dec])
    )
    assert s["accuracy"] == pytest.approx(np.sum(w[dec] * ((p[dec] > 0.5) == (y[dec] == 1))) / w[dec].sum())
    ece = 0.0
    for b in range(10):
        sel = (p >= b / 10) & ((p < (b + 1) / 10) if b < 9 else (p <= 1))
        if sel.any():
            ece += w[sel].sum() / w.sum() * abs(np.average(y[sel], weights=w[sel]) - np.average(p[sel], weights=w[sel]))
    assert s["ece"] == pytest.approx(ece, abs=1e-12)


def test_folds_keep_clusters_together():
    c = Comparisons.from_arrays(np.arange(60) % 5, (np.arange(60) + 1) % 5, np.ones(60), cluster=np.arange(60) // 4)
    ids = _fold_ids(c, 5, np.random.default_rng(0))
    for g in np.unique(c.cluster):
        assert len(np.unique(ids[c.cluster == g])) == 1
    assert len(np.unique(ids)) == 5


def test_unseen_items_get_the_average_strength():
    train = Comparisons.from_arrays([0, 1, 0], [1, 0, 1], [1, 0, 1], items=["a", "b", "c"])
    compact, index = _compact(train)
    assert compact.items == ("a", "b") and index.tolist() == [0, 1, -1]
    board = registry.MODELS["bt"](compact, prior=1.0)
    test = Comparisons.from_arrays([2, 0], [1, 2], [1, 1], items=["a", "b", "c"])
    expected = _expected_scores(board, index, test)
    theta = board.log_strength
    np.testing.assert_allclose(expected, [1 / (1 + np.exp(theta[1])), 1 / (1 + np.exp(-theta[0]))])


def test_model_choice_prefers_the_true_structure():
    rps = rock_paper_scissors(3, m=2000, extra_items=2)
    frame = compare_models(rps, ["bt", "blade_chest"], folds=4)
    assert frame.model.iloc[0] == "blade_chest"
    assert set(frame.columns) >= {"log_loss", "accuracy", "brier", "ece", "log_loss_sd"}
    chess = read_comparisons(shared_path("sports", "computer_chess_8k.json"))
    frame = compare_models(chess, ["bt", "order", "elo"], folds=3)
    by = frame.set_index("model")
    assert by.loc["order", "log_loss"] < by.loc["bt", "log_loss"] < by.loc["elo", "log_loss"]


def test_registry_and_errors():
    assert {"bt", "elo", "davidson", "rao_kupper", "order", "bayeselo", "robust", "blade_chest"} <= set(
        registry.model_names()
    )
    with pytest.raises(InputError, match="available"):
        registry.get_model("nope")
    c = Comparisons.from_arrays([0, 1], [1, 0], [1, 0])
    with pytest.raises(InputError, match="folds"):
        compare_models(c, ["bt"], folds=1)


def test_register_model():
    def fit_constant(comparisons):
        from pairkit.rating import fit_bradley_terry

        return fit_bradley_terry(comparisons, prior=1.0)

    registry.register_model("constant_test", fit_constant)
    try:
        with pytest.raises(InputError, match="already registered"):
            registry.register_model("constant_test", fit_constant)
        assert registry.get_model("constant_test") is fit_constant
    finally:
        registry.MODELS.pop("constant_test")


def test_models_without_win_probabilities_are_skipped_with_a_note():
    """Counting models order items but forecast nothing: compare_models skips them and says why (it used to raise)."""
    from pairkit import Comparisons
    from pairkit.rating import compare_models

    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 6, 300), rng.integers(0, 6, 300)
    keep = a != b
    comps = Comparisons.from_arrays(a[keep], b[keep], rng.integers(0, 2, keep.sum()).astype(float),
                                    items=[f"i{k}" for k in range(6)])
    table = compare_models(comps, ["bt", "borda", "win_rate"], folds=3).table.set_index("model")
    assert np.isfinite(table.loc["bt", "log_loss"])
    for name in ("borda", "win_rate"):
        assert "does not define win probabilities" in table.loc[name, "note"]
        assert np.isnan(table.loc[name, "log_loss"])
