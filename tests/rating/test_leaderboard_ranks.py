"""Rank intervals: normal draws from a Cholesky factor, the overlap rule by sorting, computed once per board."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from pairkit.data import Comparisons
from pairkit.rating import fit_bradley_terry
from pairkit.rating.leaderboard import RANK_DRAWS_LIMIT, Leaderboard, normal_draws, overlap_rank_interval


def _board(n_items=30, m=3000, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    theta = np.linspace(-1.5, 1.5, n_items)
    a = rng.integers(0, n_items, m)
    b = (a + rng.integers(1, n_items, m)) % n_items
    won = rng.random(m) < special.expit(theta[a] - theta[b])
    return fit_bradley_terry(Comparisons.from_arrays(np.where(won, a, b), np.where(won, b, a)), **kwargs)


def _eigh_rank_interval(board, n_draws, seed):
    """The former implementation: a symmetric square root from an eigendecomposition."""
    rng = np.random.default_rng(seed)
    vals, vecs = np.linalg.eigh((board.covariance + board.covariance.T) / 2)
    draws = board.log_strength + rng.standard_normal((n_draws, len(board.items))) @ (vecs * np.sqrt(
        np.clip(vals, 0, None))).T
    ranks = 1 + np.argsort(np.argsort(-draws, axis=1, kind="stable"), axis=1, kind="stable")
    alpha = (1 - board.level) / 2
    return (np.floor(np.quantile(ranks, alpha, axis=0)).astype(int),
            np.ceil(np.quantile(ranks, 1 - alpha, axis=0)).astype(int))


def test_draws_have_the_covariance_up_to_a_common_shift():
    board = _board()
    draws = normal_draws(board.log_strength, board.covariance, 40_000, np.random.default_rng(1))
    centred = draws - draws.mean(axis=1, keepdims=True)  # the shift c·1 added for definiteness drops out
    sample = np.cov(centred, rowvar=False)
    scale = np.sqrt(np.outer(np.diag(board.covariance), np.diag(board.covariance)))
    # Monte Carlo error of a covariance from 40k draws: ~ sqrt(2/40k) ≈ 0.007 of the scale
    assert np.max(np.abs(sample - board.covariance) / scale) < 0.05
    np.testing.assert_allclose(centred.mean(axis=0), board.log_strength, atol=0.01)


def test_rank_intervals_agree_with_the_eigendecomposition_version():
    board = _board(seed=2)
    lo, hi = board.rank_interval(n_draws=20_000)
    ref_lo, ref_hi = _eigh_rank_interval(board, 20_000, seed=5)
    assert np.max(np.abs(lo - ref_lo)) <= 1 and np.max(np.abs(hi - ref_hi)) <= 1
    assert board.rank_method == "normal draws"
    assert (lo <= board.rank).all() and (board.rank <= hi).all()


def test_overlap_rule_by_sorting_equals_pairwise_comparison():
    rng = np.random.default_rng(3)
    lo = np.round(rng.normal(size=200), 1)  # ties between bounds on purpose
    hi = lo + np.round(rng.random(200), 1)
    lo[5], hi[7] = np.nan, np.nan
    better = (lo[None, :] > hi[:, None]).sum(axis=1)
    not_worse = (hi[None, :] >= lo[:, None]).sum(axis=1)
    got_lo, got_hi = overlap_rank_interval(lo, hi)
    np.testing.assert_array_equal(got_lo, 1 + better)
    np.testing.assert_array_equal(got_hi, not_worse)


def test_rank_intervals_are_computed_once_per_board(monkeypatch):
    board = _board(n_items=10, m=500)
    calls = []
    original = Leaderboard._rank_interval
    monkeypatch.setattr(Leaderboard, "_rank_interval", lambda self, *a: calls.append(1) or original(self, *a))
    board.to_pandas()
    board.to_json()
    board.to_dict()
    assert len(calls) == 1
    scaled = board.scale("elo")  # a new board (its own cache), the same ranks
    np.testing.assert_array_equal(scaled.rank_interval()[0], board.rank_interval()[0])
    assert len(calls) == 2


def test_large_boards_use_the_overlap_rule():
    n = RANK_DRAWS_LIMIT + 1
    theta = np.linspace(0, 1, n)
    board = Leaderboard(items=tuple(map(str, range(n))), log_strength=theta, model="x", se=np.full(n, 0.01),
                        covariance=np.eye(n) * 1e-4)
    assert board.rank_method == "interval overlap"
    lo, hi = board.rank_interval()
    assert (lo <= board.rank).all() and (board.rank <= hi).all()
    assert board.to_dict()["interval"]["rank_method"] == "interval overlap"


@pytest.mark.parametrize("prior", [0.0, 1.0])
def test_rank_intervals_with_and_without_the_gauge(prior):
    board = _board(n_items=8, m=400, seed=4, prior=prior)
    lo, hi = board.rank_interval()
    assert (lo >= 1).all() and (hi <= 8).all() and (lo <= hi).all()


def test_json_is_the_dict_with_one_item_per_line():
    """The columnar JSON writer gives what a cell-by-cell conversion of the table gives (NaN → null)."""
    import json
    import math

    board = _board(n_items=6, m=400)
    from dataclasses import replace

    board = replace(board, columns={"extra": np.array([1.5, np.nan, np.inf, 2, 3, 4])})
    frame = board.to_pandas()
    by_cell = []
    for row in frame.to_dict(orient="records"):
        entry = {"name": row.pop("item"), "rating": row.pop("rating"), "ci_low": row.pop("ci_low"),
                 "ci_high": row.pop("ci_high"), "rank": int(row.pop("rank")), "n": row.pop("n")}
        entry.update(row)
        by_cell.append({k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in entry.items()})
    assert board.to_dict()["items"] == by_cell
    assert [list(item) for item in board.to_dict()["items"]] == [list(item) for item in by_cell]  # key order
    text = board.to_json()
    assert json.loads(text) == json.loads(json.dumps(board.to_dict())) == json.loads(board.to_json(indent=None))
    lines = text.splitlines()
    assert sum(line.startswith('    {"name": ') for line in lines) == 6 and '"extra": null' in text


def test_rank_draws_follow_each_items_interval():
    """Sparse items' intervals are skewed (exact_interval): the draws' marginal quantiles at the board's level
    are exactly each item's interval (checked on the draws), the correlations are those of the covariance, and
    an item whose interval is symmetric keeps plain normal draws."""
    from pairkit.rating.leaderboard import MATCHED_DRAWS, split_normal

    rng = np.random.default_rng(4)
    a = np.r_[rng.integers(0, 5, 400), [5, 5, 5, 6]]
    b = np.r_[(a[:400] + rng.integers(1, 5, 400)) % 5, [0, 1, 2, 3]]
    y = np.r_[(rng.random(400) < 0.5).astype(float), [1, 1, 1, 0]]  # item 5 won its three games
    board = fit_bradley_terry(Comparisons.from_arrays(a, b, y), prior=1.0)
    assert board.columns["exact_interval"][5:].all()
    assert board.rank_method == MATCHED_DRAWS and board.to_dict()["interval"]["rank_method"] == MATCHED_DRAWS
    sd, lower, upper = board._interval_scales()
    assert upper[5] > 1.05 * lower[5]  # skewed upwards by its wins
    draws = split_normal(normal_draws(board.scores, board.covariance, 200_000, np.random.default_rng(0)),
                         board.scores, sd, lower, upper)
    lo, hi = np.quantile(draws, [0.025, 0.975], axis=0)
    np.testing.assert_allclose(lo, board.ci_low_log, atol=0.03)
    np.testing.assert_allclose(hi, board.ci_high_log, atol=0.03)
    plain = normal_draws(board.scores, board.covariance, 200_000, np.random.default_rng(0))
    plain -= plain.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(draws[:, :5], plain[:, :5], atol=1e-9)  # symmetric items: unchanged draws
    # the skewed item reaches rank 1 more often than a symmetric normal with its standard error would let it
    top_matched = np.mean(np.argmax(draws, axis=1) == 5)
    top_plain = np.mean(np.argmax(plain, axis=1) == 5)
    assert top_matched > top_plain


def test_symmetric_boards_keep_plain_normal_draws():
    board = _board(seed=6, intervals="fisher")
    assert board._interval_scales() is None and board.rank_method == "normal draws"
