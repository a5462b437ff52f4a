"""Standard errors without a dense covariance: the estimate against the exact inverse, and the fit above the
size limit."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import special

import pairkit.rating._pairwise as pairwise
from pairkit.data import Comparisons
from pairkit.errors import InputError, IntervalWarning
from pairkit.rating import fit_bradley_terry
from pairkit.rating._sparse import estimate_inverse_diagonal


def _comparisons(n, m, seed=0, heavy=False):
    rng = np.random.default_rng(seed)
    theta = rng.normal(0, 1, n)
    if heavy:  # heavy-tailed degrees: hubs and items seen once or twice
        p = 1 / np.arange(1, n + 1) ** 1.1
        a, b = rng.choice(n, m, p=p / p.sum()), rng.choice(n, m, p=p / p.sum())
        a, b = a[a != b], b[a != b]
    else:
        a = rng.integers(0, n, m)
        b = (a + rng.integers(1, n, m)) % n
    won = rng.random(len(a)) < special.expit(theta[a] - theta[b])
    return Comparisons.from_arrays(np.where(won, a, b), np.where(won, b, a), items=[f"i{k}" for k in range(n)])


@pytest.mark.parametrize(("n", "m", "prior", "heavy"), [(400, 20_000, 0.0, False), (400, 6_000, 1.0, True)])
def test_estimate_matches_the_exact_inverse_within_its_stated_error(n, m, prior, heavy):
    comps = _comparisons(n, m, heavy=heavy)
    exact = fit_bradley_terry(comps, prior=prior, intervals="fisher")
    counts = comps.pair_counts()
    design = pairwise.PairwiseDesign(n_items=n, i=counts.i, j=counts.j,
                                     stats={"wins_i": counts.wins_i, "wins_j": counts.wins_j})
    fit = pairwise.fit_pairwise(design, pairwise.bradley_terry_rows, prior=prior)
    est = estimate_inverse_diagonal(sp.csr_matrix(fit.information), gauge=prior == 0, n_probes=128)
    rel = est.se / exact.se - 1
    # unbiased with a stated standard error: nearly all items within 4 stated SEs, none far out
    z = np.abs(rel) / np.maximum(est.relative_error, 1e-12)
    assert np.mean(z < 4) > 0.99 and z.max() < 8
    assert np.median(np.abs(rel)) < 0.005 and np.abs(rel).max() < 0.05
    # and better than the Jacobi approximation it corrects
    jacobi = np.sqrt(1 / fit.information.diagonal()) if prior else None
    if jacobi is not None:
        assert np.abs(rel).max() < np.abs(jacobi / exact.se - 1).max()


def test_the_fit_above_the_limit_estimates_and_says_so(monkeypatch):
    comps = _comparisons(300, 15_000, seed=1)
    exact = fit_bradley_terry(comps, prior=1.0)
    monkeypatch.setattr(pairwise, "SPARSE_SE_LIMIT", 100)
    with pytest.warns(IntervalWarning, match="standard errors estimated"):
        board = fit_bradley_terry(comps, prior=1.0)
    np.testing.assert_allclose(board.log_strength, exact.log_strength, atol=1e-10)
    assert board.covariance is None and board.rank_method == "interval overlap"
    np.testing.assert_allclose(board.se, exact.se, rtol=0.03)
    data = board.to_dict()
    assert data["interval"]["se_method"].startswith("standard errors estimated")
    stated = data["interval_method"]
    assert stated["standard_errors"] == "estimated" and "5,000 items" in stated["measured"]
    assert 0 < stated["stated_relative_error"]["median"] <= stated["stated_relative_error"]["max"] < 0.02
    assert exact.to_dict()["interval_method"]["standard_errors"] == "exact"
    assert "tier" not in data["items"][0]
    with pytest.raises(InputError, match="sandwich.*available up to 100 items"):
        fit_bradley_terry(comps, prior=1.0, intervals="sandwich")


def test_dense_models_refuse_sizes_they_cannot_solve(monkeypatch):
    comps = _comparisons(60, 2_000, seed=2)
    design = pairwise.PairwiseDesign(n_items=60, i=comps.a, j=comps.b,
                                     stats={"wins_i": comps.outcome, "wins_j": 1 - comps.outcome})
    monkeypatch.setattr(pairwise, "MAX_DENSE_SIZE", 50)
    with pytest.raises(InputError, match="supports up to 50 items"):
        pairwise.fit_pairwise(design, pairwise.bradley_terry_rows, n_eta=1)  # a tie parameter: dense system


def _information(comps, prior):
    counts = comps.pair_counts()
    design = pairwise.PairwiseDesign(n_items=comps.n_items, i=counts.i, j=counts.j,
                                     stats={"wins_i": counts.wins_i, "wins_j": counts.wins_j})
    return sp.csr_matrix(pairwise.fit_pairwise(design, pairwise.bradley_terry_rows, prior=prior).information)


@pytest.mark.parametrize("prior", [0.0, 1.0])
def test_neumann_probes_alone_meet_their_stated_error_on_a_random_graph(prior):
    # 800 items with ~60 comparisons each: the second-order expansion plus 8 probes suffices (no pair draws)
    n = 800
    comps = _comparisons(n, 24_000, seed=3)
    info = _information(comps, prior)
    exact = np.sqrt(np.diag(pairwise.covariance(info, n, gauge=prior == 0)))
    est = estimate_inverse_diagonal(info, gauge=prior == 0)
    assert est.method.startswith("second-order Neumann") and "pair-space" not in est.method
    rel = est.se / exact - 1
    z = np.abs(rel) / est.relative_error
    assert np.mean(z < 3) > 0.99 and z.max() < 6  # the stated error is honest
    assert np.median(np.abs(rel)) < 0.005 and np.abs(rel).max() < 0.02  # and within the targets
    jacobi = np.sqrt(1 / info.diagonal()) / exact - 1
    assert np.abs(rel).max() < np.abs(jacobi).max() / 2


def test_heavy_tails_fall_back_to_pair_draws_and_stay_within_the_stated_error():
    n = 800
    comps = _comparisons(n, 16_000, seed=4, heavy=True)
    info = _information(comps, 1.0)
    exact = np.sqrt(np.diag(pairwise.covariance(info, n, gauge=False)))
    est = estimate_inverse_diagonal(info, gauge=False)
    assert "pair-space" in est.method  # hubs next to many sparse items: the expansion alone is not enough
    rel = est.se / exact - 1
    z = np.abs(rel) / est.relative_error
    assert np.mean(z < 3) > 0.99 and z.max() < 6
    assert np.median(np.abs(rel)) < 0.005 and np.abs(rel).max() < 0.05
    jacobi = np.sqrt(1 / info.diagonal()) / exact - 1
    assert np.abs(rel).max() < np.abs(jacobi).max() / 2


def test_the_sparse_information_layout_equals_the_assembled_matrix():
    rng = np.random.default_rng(5)
    n = 40
    a, b = rng.integers(0, n, 300), rng.integers(0, n, 300)
    keep = a != b
    key = np.unique(np.minimum(a, b)[keep] * n + np.maximum(a, b)[keep])
    i, j = key // n, key % n
    w, d = rng.random(len(i)), rng.random(n) + 3
    lap = sp.coo_matrix((-w, (i, j)), shape=(n, n))
    expected = ((lap + lap.T).tocsr() + sp.diags(d)).toarray()
    design = pairwise.PairwiseDesign(n_items=n, i=i, j=j, stats={})
    asm = pairwise._Assembler(design, pairwise.bradley_terry_rows, 0, 0.0, 0.0)
    info = asm.sparse_information(w, d)
    np.testing.assert_array_equal(info.toarray(), expected)
    v, block = rng.normal(size=n), rng.normal(size=(n, 3))
    np.testing.assert_allclose(info @ v, expected @ v, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(info @ block, expected @ block, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(info.astype(np.float32) @ block, expected @ block, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(pairwise.SymmetricInformation.from_matrix(expected).toarray(), expected)
    assert pairwise._upper_layout(j, i, n) is None  # not i < j: assembled from coordinates instead
    assert pairwise._upper_layout(i[::-1], j[::-1], n) is None  # not in increasing order
    # rows in any order, repeated pairs, i > j: assembled from coordinates with duplicates summed
    order = rng.permutation(len(i))
    ii, jj = np.r_[j[order], i[:5]], np.r_[i[order], j[:5]]
    ww = np.r_[w[order], np.ones(5)]
    rows = pairwise._Assembler(pairwise.PairwiseDesign(n_items=n, i=ii, j=jj, stats={}),
                               pairwise.bradley_terry_rows, 0, 0.0, 0.0)
    summed = expected.copy()
    summed[i[:5], j[:5]] -= 1
    summed[j[:5], i[:5]] -= 1
    np.testing.assert_array_equal(rows.sparse_information(ww, d).toarray(), summed)


def test_bradley_terry_rows_match_the_textbook_formulas():
    # the stable blocked evaluation against scipy's log_expit/expit, over a range where the naive one overflows
    rng = np.random.default_rng(8)
    d = np.r_[rng.normal(0, 3, 40_000), [-800.0, -40.0, 0.0, 40.0, 800.0]]
    wi, wj = rng.random(len(d)) * 3, rng.random(len(d))
    rows = pairwise.bradley_terry_rows(d, None, {"wins_i": wi, "wins_j": wj})
    p = special.expit(d)
    np.testing.assert_allclose(rows.loglik, wi * special.log_expit(d) + wj * special.log_expit(-d), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(rows.l_d, wi - (wi + wj) * p, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rows.l_dd, -(wi + wj) * p * special.expit(-d), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize(("prior", "heavy"), [(1.0, False), (1.0, True), (0.0, False)])
def test_the_sparse_newton_fit_matches_scipy_lbfgs(monkeypatch, prior, heavy):
    # the sparse path (CG Newton steps from Newman sweeps) against an independent L-BFGS MAP fit on pair counts
    from scipy import optimize

    monkeypatch.setattr(pairwise, "DENSE_LIMIT", 50)
    n = 300
    comps = _comparisons(n, 6_000, seed=9, heavy=heavy)
    if not heavy:
        comps = Comparisons.from_arrays(comps.a, comps.b, np.where(np.arange(len(comps)) % 7 == 0, 0.5, 1.0),
                                        items=comps.items)
    board = fit_bradley_terry(comps, prior=prior, intervals="none")
    c = comps.pair_counts()

    def objective(t):
        d = t[c.i] - t[c.j]
        value = -(c.wins_i @ special.log_expit(d) + c.wins_j @ special.log_expit(-d))
        g = c.wins_i * special.expit(-d) - c.wins_j * special.expit(d)
        grad = -(np.bincount(c.i, g, n) - np.bincount(c.j, g, n))
        value -= prior * np.sum(special.log_expit(t) + special.log_expit(-t))
        grad -= prior * (1 - 2 * special.expit(t))
        if not prior:  # the MLE's gauge: fix the mean at 0
            value += 0.5 * t.sum() ** 2
            grad += t.sum()
        return value, grad

    res = optimize.minimize(objective, np.zeros(n), jac=True, method="L-BFGS-B",
                            options={"maxiter": 20_000, "gtol": 1e-11, "ftol": 1e-16})
    theta = res.x - res.x.mean()
    assert board.info["newton_steps"] <= 6
    np.testing.assert_allclose(board.log_strength - board.log_strength.mean(), theta, atol=1e-6)


@pytest.mark.parametrize(("model", "options"), [("davidson", {}), ("rao_kupper", {}), ("order", {}),
                                                ("robust", {}), ("bt", {"ties": "davidson"})])
def test_models_with_dense_systems_name_their_size_limit_and_the_alternative(monkeypatch, model, options):
    from pairkit.rating import fit_model

    rng = np.random.default_rng(6)
    n, m = 60, 3_000
    a = rng.integers(0, n, m)
    b = (a + rng.integers(1, n, m)) % n
    outcome = rng.choice([0.0, 0.5, 1.0], m)
    comps = Comparisons.from_arrays(a, b, outcome, items=[f"i{k}" for k in range(n)], a_first=rng.random(m) < 0.5)
    monkeypatch.setattr(pairwise, "MAX_DENSE_SIZE", 50)
    with pytest.raises(InputError, match=r"supports up to 50 items.*model 'bt'"):
        fit_model(comps, model, prior=1.0, **options)


def test_sparse_items_keep_their_exact_intervals_without_a_covariance(monkeypatch):
    # heavy-tailed degrees: many items with a few comparisons, some with only wins or only losses
    comps = _comparisons(400, 3_000, seed=7, heavy=True)
    with pytest.warns(IntervalWarning):
        dense = fit_bradley_terry(comps, prior=1.0)
    monkeypatch.setattr(pairwise, "SPARSE_SE_LIMIT", 100)
    with pytest.warns(IntervalWarning, match="standard errors estimated"):
        sparse = fit_bradley_terry(comps, prior=1.0)
    flags = dense.columns["exact_interval"]
    assert flags.sum() > 50
    np.testing.assert_array_equal(sparse.columns["exact_interval"], flags)
    width = dense.ci_high_log - dense.ci_low_log
    # the dense version also rescales covariances with the other items; the variances alone come within a few %
    np.testing.assert_allclose(sparse.ci_high_log - sparse.ci_low_log, width, rtol=0.05)
    np.testing.assert_allclose(sparse.ci_low_log, dense.ci_low_log, atol=0.05 * width.max())
    # never narrower than the normal interval of the estimated standard errors
    monkeypatch.setattr("pairkit.rating._exact.SPARSE_WEIGHT", -1.0)  # nobody sparse: the normal intervals
    with pytest.warns(IntervalWarning):
        normal = fit_bradley_terry(comps, prior=1.0)
    assert np.all(sparse.ci_low_log <= normal.ci_low_log + 1e-12)
    assert np.all(sparse.ci_high_log >= normal.ci_high_log - 1e-12)
    widths = sparse.ci_high_log - sparse.ci_low_log, normal.ci_high_log - normal.ci_low_log
    assert np.any(widths[0][flags] > 1.05 * widths[1][flags])
