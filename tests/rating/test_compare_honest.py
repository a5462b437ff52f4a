"""compare-models at the edges (issue 14): orientation-free calibration, three-outcome scores for tie models,
inapplicable models skipped with a note, forward splits and a separate test set."""

import json

import numpy as np
import pytest
from scipy import special
from sklearn.metrics import log_loss
from typer.testing import CliRunner

from pairkit.cli import app
from pairkit.data import Comparisons
from pairkit.errors import InputError
from pairkit.rating.model_selection import DEFAULT_MODELS, compare_models, prediction_scores, reliability


def bt_games(seed=0, n=8, m=3000, ties=0.0, winner_first=False):
    rng = np.random.default_rng(seed)
    theta = np.linspace(-1.5, 1.5, n)
    a = rng.integers(0, n, m)
    b = (a + rng.integers(1, n, m)) % n
    p = special.expit(theta[a] - theta[b])
    u = rng.random(m)
    y = np.where(u < ties, 0.5, (rng.random(m) < p).astype(float))
    if winner_first:  # winner/loser files: the winner is always the first column
        swap = y == 0
        a, b, y = np.where(swap, b, a), np.where(swap, a, b), np.where(swap, 1.0, y)
    return Comparisons.from_arrays(a, b, y, items=[f"p{k}" for k in range(n)])


def slow_symmetric_ece(p, y, bins=10):
    """Loop reference: both orientations of every comparison, equal-width bins, |mean y − mean p| by weight."""
    pp, yy = np.r_[p, 1 - p], np.r_[y, 1 - y]
    total = 0.0
    for b in range(bins):
        sel = (pp >= b / bins) & ((pp < (b + 1) / bins) if b < bins - 1 else (pp <= 1))
        if sel.any():
            total += sel.sum() / len(pp) * abs(yy[sel].mean() - pp[sel].mean())
    return total


def test_ece_does_not_depend_on_which_column_is_a():
    rng = np.random.default_rng(1)
    truth = rng.random(4000)
    y = (rng.random(4000) < truth).astype(float)
    # Perfect forecasts, written winner-first: the one-sided ECE was ~0.4 here.
    q = np.where(y == 1, truth, 1 - truth)
    s = prediction_scores(q, np.ones_like(q))
    assert s["ece"] == pytest.approx(prediction_scores(truth, y)["ece"], abs=1e-12)
    assert s["ece"] == pytest.approx(slow_symmetric_ece(q, np.ones_like(q)), abs=1e-12)
    assert s["ece"] < 0.03
    centres, pb, yb, wb = reliability(q, np.ones_like(q))
    np.testing.assert_allclose(wb, wb[::-1])  # symmetric about ½


def test_compare_models_ece_same_for_winner_loser_and_random_orientation():
    random_side = compare_models(bt_games(2), ["bt"], folds=3).set_index("model")
    winner_first = compare_models(bt_games(2, winner_first=True), ["bt"], folds=3).set_index("model")
    assert winner_first.loc["bt", "ece"] == pytest.approx(random_side.loc["bt", "ece"], abs=1e-9)
    assert winner_first.loc["bt", "ece"] < 0.05


def test_three_outcome_scores_check_the_tie_probability():
    rng = np.random.default_rng(3)
    m = 2000
    y = rng.choice([0.0, 0.5, 1.0], m, p=[0.4, 0.2, 0.4])
    win, tie = np.full(m, 0.4), np.full(m, 0.2)  # the true distribution
    other_win, other_tie = np.full(m, 0.3), np.full(m, 0.4)  # same expected score 0.5, wrong tie rate
    right = prediction_scores(win + tie / 2, y, tie_probability=tie)
    wrong = prediction_scores(other_win + other_tie / 2, y, tie_probability=other_tie)
    assert right["log_loss"] == pytest.approx(wrong["log_loss"])  # the expected score cannot tell them apart
    assert right["log_loss_3"] < wrong["log_loss_3"]
    labels = np.where(y == 1, 0, np.where(y == 0, 2, 1))
    probs = np.c_[win, tie, 1 - win - tie]
    assert right["log_loss_3"] == pytest.approx(log_loss(labels, probs, labels=[0, 1, 2]), rel=1e-12)
    onehot = np.eye(3)[labels]
    assert right["brier_3"] == pytest.approx(np.mean(np.sum((probs - onehot) ** 2, axis=1)), rel=1e-12)


def test_tie_models_get_three_outcome_scores_others_nan():
    frame = compare_models(bt_games(4, ties=0.25), ["bt", "davidson", "rao_kupper"], folds=3).set_index("model")
    assert np.isnan(frame.loc["bt", "log_loss_3"])
    assert np.isfinite(frame.loc[["davidson", "rao_kupper"], "log_loss_3"]).all()
    assert (frame.loc[["davidson", "rao_kupper"], "log_loss_3"] < np.log(3)).all()


def test_inapplicable_models_are_skipped_with_a_note():
    comps = bt_games(5)  # no ties, no order flag
    frame = compare_models(comps, ["bt", "davidson", "order"], folds=3).set_index("model")
    assert frame.loc["bt", "note"] == "" and np.isfinite(frame.loc["bt", "log_loss"])
    assert "tie" in frame.loc["davidson", "note"] and np.isnan(frame.loc["davidson", "log_loss"])
    assert "a_first" in frame.loc["order", "note"]
    assert list(frame.index)[0] == "bt"  # skipped models last
    with pytest.raises(InputError, match="no model could be fitted"):
        compare_models(comps, ["davidson", "order"], folds=3)


def test_default_models_leave_out_robust():
    assert "robust" not in DEFAULT_MODELS


def test_forward_split_predicts_each_group_from_earlier_ones():
    comps = bt_games(6, m=1200)
    season = np.repeat([2021, 2022, 2023, 2024], 300)
    frame = compare_models(comps, ["bt", "elo"], split_by=season).set_index("model")
    assert (frame.folds == 3).all() and (frame.n_test == 900).all()
    # Reference for bt: fit on the first three seasons by hand and score the last one.
    from pairkit.rating import fit_bradley_terry

    board = fit_bradley_terry(comps.subset(season < 2024), prior=1.0, intervals="none")
    last = comps.subset(season == 2024)
    p = special.expit(board.log_strength[last.a] - board.log_strength[last.b])
    expected = frame.attrs["predictions"]["bt"][0][-300:]
    np.testing.assert_allclose(expected, p, rtol=1e-9)


def test_separate_test_set_matched_by_name_with_unseen_items():
    train = bt_games(7, n=6, m=800)
    test = Comparisons.from_arrays(["p0", "new", "p5"], ["p5", "p1", "p2"], [0.0, 1.0, 1.0])
    frame = compare_models(train, ["bt"], test=test)
    assert frame.n_test.iloc[0] == 3 and frame.folds.iloc[0] == 1
    from pairkit.rating import fit_bradley_terry

    board = fit_bradley_terry(train, prior=1.0, intervals="none")
    th = dict(zip(board.items, board.log_strength, strict=True))
    expected = frame.attrs["predictions"]["bt"][0]
    np.testing.assert_allclose(expected, special.expit(
        [th["p0"] - th["p5"], 0.0 - th["p1"], th["p5"] - th["p2"]]), rtol=1e-9)


def test_cli_split_by_test_plot_and_json(tmp_path):
    comps = bt_games(8, m=900)
    frame = comps.to_pandas()
    frame["season"] = np.repeat(["s1", "s2", "s3"], 300)
    path = tmp_path / "games.csv"
    frame.to_csv(path, index=False)
    runner = CliRunner()
    cols = ["--a", "a", "--b", "b", "--outcome", "outcome"]
    out = tmp_path / "cmp.json"
    plot = tmp_path / "rel.png"
    result = runner.invoke(app, ["compare-models", str(path), *cols, "--split-by", "season", "--models",
                                 "bt,davidson,elo", "--json", str(out), "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert "forward validation" in result.output and "davidson: skipped" in result.output
    data = json.loads(out.read_text())
    by = {r["model"]: r for r in data["models"]}
    assert by["davidson"]["log_loss"] is None and by["bt"]["n_test"] == 600
    assert plot.stat().st_size > 1000
    test_path = tmp_path / "test.csv"
    frame.head(50).to_csv(test_path, index=False)
    result = runner.invoke(app, ["compare-models", str(path), *cols, "--test", str(test_path), "--models", "bt"])
    assert result.exit_code == 0, result.output
    assert "scored on test.csv" in result.output
