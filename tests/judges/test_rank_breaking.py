"""Pairs broken from one listwise/setwise answer carry the weight of the answer's information, so the Bradley–Terry
intervals cover: a Plackett–Luce simulation, coverage of the 95% Fisher intervals within 0.03 of nominal."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from pairkit.data import Comparisons
from pairkit.errors import InputError
from pairkit.judges import break_ranking
from pairkit.rating import fit_bradley_terry


def plackett_luce_orders(rng, theta, lists: int, k: int) -> np.ndarray:
    """(lists, k) orders, best first, of random k-subsets under Plackett–Luce (Gumbel-max: sort θ + Gumbel)."""
    subsets = np.argsort(rng.random((lists, len(theta))), axis=1)[:, :k]
    noisy = theta[subsets] + rng.gumbel(size=subsets.shape)
    return np.take_along_axis(subsets, np.argsort(-noisy, axis=1), axis=1)


def coverage(mode: str, *, weighted: bool, lists: int, reps: int = 60, k: int = 4, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    theta = np.linspace(-1, 1, 5)  # centred, as the fit's scores are
    items = [f"i{j}" for j in range(len(theta))]
    hits = []
    for _ in range(reps):
        broken = [break_ranking(o, mode=mode) for o in plackett_luce_orders(rng, theta, lists, k)]
        pairs = np.concatenate([p for p, _ in broken])
        weight = np.full(len(pairs), broken[0][1] if weighted else 1.0)
        data = Comparisons.from_arrays(pairs[:, 0], pairs[:, 1], np.ones(len(pairs)), items=items, weight=weight)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            board = fit_bradley_terry(data, intervals="fisher", level=0.95)
        at = [board.items.index(name) for name in items]
        low, high = np.asarray(board.ci_low_log)[at], np.asarray(board.ci_high_log)[at]
        hits.append((low <= theta) & (theta <= high))
    return float(np.mean(hits))


@pytest.mark.parametrize(("mode", "lists"), [("rank", 40), ("best", 120)])
def test_weighted_pairs_cover_and_unweighted_pairs_do_not(mode, lists):
    assert abs(coverage(mode, weighted=True, lists=lists) - 0.95) <= 0.03
    assert coverage(mode, weighted=False, lists=lists) < 0.92  # counted as independent: too narrow


def test_weights_match_the_closed_form_sandwich_at_equal_strengths():
    """w = h / j, with H = hP the expected Hessian and J = jP the score covariance, by enumerating all K! orders."""
    import itertools
    import math

    for k in (2, 3, 4, 5):
        for mode in ("rank", "best"):
            scores, hessian = [], np.zeros((k, k))
            for perm in itertools.permutations(range(k)):
                pairs, w = break_ranking(perm, mode=mode)
                s = np.zeros(k)
                np.add.at(s, pairs[:, 0], 0.5)
                np.add.at(s, pairs[:, 1], -0.5)
                scores.append(s)
                d = np.zeros((len(pairs), k))
                d[np.arange(len(pairs)), pairs[:, 0]], d[np.arange(len(pairs)), pairs[:, 1]] = 1, -1
                hessian += 0.25 * d.T @ d
            hessian /= math.factorial(k)
            j = np.cov(np.array(scores).T, bias=True)
            assert w == pytest.approx(hessian[0, 0] / j[0, 0], rel=1e-12)
            assert np.allclose(hessian * j[0, 0], j * hessian[0, 0])  # both proportional to the same P


def test_bad_rankings_are_refused():
    with pytest.raises(InputError, match="at least 2"):
        break_ranking([3])
    with pytest.raises(InputError, match="mode"):
        break_ranking([1, 2], mode="worst")
