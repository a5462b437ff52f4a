import warnings

import numpy as np
import pytest
from scipy import special

from pairkit.data import Comparisons, read_comparisons
from pairkit.errors import InputError
from pairkit.rating import bootstrap, bootstrap_bradley_terry, fit_bradley_terry
from pairkit.rating.bootstrap import BootstrapWarning, replicate_solver
from tests.shared_data import shared_path


def simulate(rng, n=6, m=800, clusters=None):
    theta = np.linspace(-1, 1, n)
    a = rng.integers(0, n, m)
    b = (a + rng.integers(1, n, m)) % n
    y = (rng.random(m) < special.expit(theta[a] - theta[b])).astype(float)
    y[rng.random(m) < 0.1] = 0.5
    cl = None if clusters is None else rng.integers(0, clusters, m)
    return Comparisons.from_arrays(a, b, y, cluster=cl)


@pytest.mark.parametrize("prior", [0.0, 1.5])
def test_replicate_solver_equals_refit_on_reweighted_data(rng, prior):
    c = simulate(rng)
    n = c.n_items
    board = fit_bradley_terry(c, prior=prior)
    pairs = c.pair_counts()
    solve = replicate_solver(pairs, board.log_strength, prior=prior, items=c.items, tol=1e-12)
    mults = rng.poisson(1.0, size=(len(c), 4)).astype(float)
    wl, wh = np.zeros((len(pairs.i), 4)), np.zeros((len(pairs.i), 4))
    for col in range(4):
        p = c.with_weights(c.weight * mults[:, col]).pair_counts()
        pos = np.searchsorted(pairs.i * n + pairs.j, p.i * n + p.j)
        wl[pos, col], wh[pos, col] = p.wins_i, p.wins_j
    theta, bad = solve(wl, wh)
    assert not bad.any()
    for col in range(4):
        ref = fit_bradley_terry(c.with_weights(c.weight * mults[:, col]), prior=prior).log_strength
        np.testing.assert_allclose(theta[:, col] - theta[:, col].mean(), ref, atol=1e-8)


def test_fast_bootstrap_agrees_with_generic_refits():
    c = read_comparisons(shared_path("sports", "computer_chess_8k.json"))
    fast = bootstrap_bradley_terry(c, n_boot=400, seed=1)
    slow = bootstrap(c, lambda x: fit_bradley_terry(x, intervals="none"), n_boot=400, seed=2)
    # two independent 400-replicate estimates of the same standard errors agree to Monte-Carlo error
    np.testing.assert_allclose(fast.se, slow.se, rtol=0.2)
    assert fast.interval_method == "bootstrap" and fast.samples.shape == (400, c.n_items)
    # ties count as half a win: the bootstrap (like the sandwich) sees less variance than the Fisher bound
    sandwich = fit_bradley_terry(c, intervals="sandwich")
    np.testing.assert_allclose(fast.se, sandwich.se, rtol=0.15)


def test_cluster_bootstrap_widens_for_duplicated_clusters(rng):
    c = simulate(rng, m=600)
    idx = np.repeat(np.arange(len(c)), 4)
    dup = Comparisons.from_arrays(c.a[idx], c.b[idx], c.outcome[idx], cluster=idx)
    by_row = bootstrap_bradley_terry(dup, n_boot=300, seed=0)
    by_cluster = bootstrap_bradley_terry(dup, n_boot=300, by="cluster", seed=0)
    ratio = np.median(by_cluster.se / by_row.se)
    assert 1.6 < ratio < 2.4  # √4 = 2


def test_bootstrap_reports_replicates_without_mle(rng):
    # a sparse design where resamples often leave an item unbeaten
    c = Comparisons.from_arrays([0, 1, 2, 0, 1, 2, 1], [1, 2, 0, 2, 0, 1, 0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        board = bootstrap_bradley_terry(c, n_boot=200, seed=0)
    assert any(issubclass(w.category, BootstrapWarning) for w in caught)
    assert 0 < board.info["bootstrap_failed"] < 200
    assert board.samples.shape[0] == 200 - board.info["bootstrap_failed"]


def test_bootstrap_argument_errors(rng):
    c = simulate(rng)
    with pytest.raises(InputError, match="cluster"):
        bootstrap_bradley_terry(c, by="cluster")
    with pytest.raises(InputError, match="n_boot"):
        bootstrap_bradley_terry(c, n_boot=1)


def test_bootstrap_rank_intervals(rng):
    board = bootstrap_bradley_terry(simulate(rng, m=3000), n_boot=200, seed=0)
    lo, hi = board.rank_interval()
    assert (lo <= board.rank).all() and (board.rank <= hi).all()


def test_row_resampling_path_for_distinct_rows_agrees_with_generic(rng):
    c = simulate(rng, n=5, m=400)
    c = c.with_weights(rng.uniform(0.5, 1.5, len(c)))  # every row its own cell: the index-resampling path
    fast = bootstrap_bradley_terry(c, n_boot=400, seed=3)
    slow = bootstrap(c, lambda x: fit_bradley_terry(x, intervals="none"), n_boot=400, seed=4)
    np.testing.assert_allclose(fast.se, slow.se, rtol=0.2)
