"""Exact one-dimensional intervals for sparse Bradley–Terry items (issue 14: honest intervals for sparse items).

The normal approximation undercovered items with 1–3 comparisons and, through the common centre of the ratings,
every other item. Checked here: the grid density against scipy quadrature and closed forms, and coverage on a
seeded simulation with a stated bound."""

import warnings

import numpy as np
import pytest
from scipy import integrate, special

from pairkit.data import Comparisons
from pairkit.errors import IntervalWarning
from pairkit.rating import fit_bradley_terry
from pairkit.rating._exact import SPARSE_WEIGHT, _conditional


def sparse_design(seed, theta, m=240):
    """Items 0–3 play each other ``m`` times; items 4, 5, 6 play 1, 2, 3 games against them; item 7 never plays."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 4, m)
    b = (a + rng.integers(1, 4, m)) % 4
    parts = [(a, b)] + [(np.full(k, item), rng.integers(0, 4, k)) for item, k in ((4, 1), (5, 2), (6, 3))]
    a, b = (np.concatenate(x) for x in zip(*parts, strict=True))
    y = (rng.random(len(a)) < special.expit(theta[a] - theta[b])).astype(float)
    return Comparisons.from_arrays(a, b, y, items=[f"i{k}" for k in range(8)])


@pytest.mark.parametrize("prior", [1.0, 2.5])
def test_conditional_density_matches_quadrature(prior):
    """Variance and quantiles of one item's conditional density, against scipy.integrate.quad on the formula."""
    c = Comparisons.from_arrays([0, 0, 1, 2, 3, 3], [1, 2, 2, 0, 0, 1], [1, 0, 1, 1, 0.5, 1])
    counts = c.pair_counts(ties="half")
    theta = np.array([0.3, -0.2, 0.1, 0.7])
    var, lo, hi = _conditional(theta, counts, np.array([0, 3]), prior, 0.9)
    for slot, k in enumerate((0, 3)):

        def logp(t, k=k):
            out = prior * (special.log_expit(t) + special.log_expit(-t))
            for i, j, wi, wj in zip(counts.i, counts.j, counts.wins_i, counts.wins_j, strict=True):
                if i == k:
                    out += wi * special.log_expit(t - theta[j]) + wj * special.log_expit(theta[j] - t)
                elif j == k:
                    out += wj * special.log_expit(t - theta[i]) + wi * special.log_expit(theta[i] - t)
            return out

        def moment(p, k=k):
            return integrate.quad(lambda t: t**p * np.exp(logp(t)), -40, 40, limit=200)[0]

        z = moment(0)
        mean = moment(1) / z
        assert var[slot] == pytest.approx(moment(2) / z - mean**2, rel=1e-3)
        cdf_lo = integrate.quad(lambda t: np.exp(logp(t)), -40, lo[slot])[0] / z
        cdf_hi = integrate.quad(lambda t: np.exp(logp(t)), -40, hi[slot])[0] / z
        assert cdf_lo == pytest.approx(0.05, abs=2e-3) and cdf_hi == pytest.approx(0.95, abs=2e-3)


@pytest.mark.parametrize("prior", [0.5, 1.0, 3.0])
def test_prior_only_item_has_the_logit_beta_closed_form(prior):
    """No data: σ(θ) ~ Beta(a, a), so Var θ = 2ψ'(a) and the quantiles are logit of Beta quantiles."""
    c = Comparisons.from_arrays([0, 1], [1, 0], [1.0, 1.0], items=["x", "y", "idle"])
    var, lo, hi = _conditional(np.zeros(3), c.pair_counts(ties="half"), np.array([2]), prior, 0.95)
    assert var[0] == pytest.approx(2 * special.polygamma(1, prior), rel=2e-3)
    assert hi[0] == pytest.approx(special.logit(special.betaincinv(prior, prior, 0.975)), abs=5e-3)
    assert lo[0] == pytest.approx(-hi[0], abs=5e-3)


def _coverage(reps, **kwargs):
    rng = np.random.default_rng(20)
    hits = []
    for r in range(reps):
        theta = rng.logistic(size=8)  # Newman's prior with one virtual win and loss is the logistic density
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IntervalWarning)
            board = fit_bradley_terry(sparse_design(1000 + r, theta), prior=1.0, **kwargs)
        truth = theta - theta.mean()
        hits.append((board.ci_low_log <= truth) & (truth <= board.ci_high_log))
    return np.mean(hits, axis=0)


def test_sparse_item_coverage_is_nominal():
    """150 seeded replications, nominal 95% (binomial sd ≈ 0.018). Bound: each sparse item (1, 2, 3 comparisons,
    none) ≥ 0.93, every item ≥ 0.90 (measured at 200: sparse 0.945–0.97, the others 0.915–0.94). The normal
    approximation (``intervals="fisher"``) covered the sparse items 0.87–0.92 on this design."""
    exact = _coverage(150)
    assert np.all(exact[4:] >= 0.93), exact
    assert np.all(exact >= 0.90), exact
    assert np.all(exact <= 0.995), exact  # not simply infinite


def test_fisher_and_sandwich_stay_as_asked():
    """Only intervals="auto" changes: an explicit "fisher" is the inverse information (centred)."""
    from pairkit.rating._pairwise import covariance

    c = sparse_design(3, np.zeros(8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntervalWarning)
        fisher = fit_bradley_terry(c, prior=1.0, intervals="fisher")
        auto = fit_bradley_terry(c, prior=1.0)
    counts = c.pair_counts(ties="half")
    assert np.all(counts.games_per_item()[4:] <= SPARSE_WEIGHT)
    from pairkit.rating._pairwise import PairwiseDesign, bradley_terry_rows, fit_pairwise

    design = PairwiseDesign(8, counts.i, counts.j, {"wins_i": counts.wins_i, "wins_j": counts.wins_j})
    info = fit_pairwise(design, bradley_terry_rows, prior=1.0).information
    np.testing.assert_allclose(fisher.covariance, covariance(info, 8, gauge=False), atol=1e-10)
    assert "exact_interval" not in fisher.columns
    assert auto.columns["exact_interval"].tolist() == [False] * 4 + [True] * 4
    assert np.all(auto.se >= fisher.se * (1 - 1e-9))  # never narrower
    # Items with data: never narrower. The never-compared item's interval now allows for its own share (1 − 1/n)
    # of the centre (it was the uncentred prior quantile).
    assert np.all(auto.ci_low_log[:7] <= fisher.ci_low_log[:7] + 1e-9)
    assert np.all(auto.ci_high_log[:7] >= fisher.ci_high_log[:7] - 1e-9)


def test_row_models_conditional_matches_quadrature():
    """Davidson's tie model with an order advantage (the generic row path): one item's conditional density,
    others, β and ν at fixed values, against scipy quadrature on the model's probabilities written out."""
    from pairkit.rating._exact import rows_conditional
    from pairkit.rating._pairwise import PairwiseDesign
    from pairkit.rating.bradley_terry import davidson_rows

    i, j = np.array([0, 0, 1, 2, 3, 3]), np.array([1, 2, 2, 0, 0, 1])
    x = np.array([[1.0], [0.0], [1.0], [1.0], [0.0], [1.0]])
    stats = {
        "wins_i": np.array([1.0, 0, 2, 1, 0, 1]),
        "wins_j": np.array([0.0, 1, 0, 0, 1, 0]),
        "ties": np.array([1.0, 0, 0, 1, 1, 0]),
    }
    design = PairwiseDesign(4, i, j, stats, X=x)
    theta, beta, eta = np.array([0.3, -0.2, 0.1, 0.7]), np.array([0.4]), np.array([np.log(0.8)])
    prior = 1.0
    var, lo, hi = rows_conditional(theta, beta, eta, design, davidson_rows, prior=prior, level=0.9)(
        np.array([0, 3]), np.array([1.0, 1.0])
    )
    nu = 0.8
    for slot, k in enumerate((0, 3)):

        def logp(t, k=k):
            th = theta.copy()
            th[k] = t
            out = prior * (special.log_expit(t) + special.log_expit(-t))
            for r in range(len(i)):
                if k not in (i[r], j[r]):
                    continue
                d = th[i[r]] - th[j[r]] + beta[0] * x[r, 0]
                den = np.exp(d / 2) + np.exp(-d / 2) + nu
                out += (
                    stats["wins_i"][r] * np.log(np.exp(d / 2) / den)
                    + stats["wins_j"][r] * np.log(np.exp(-d / 2) / den)
                    + stats["ties"][r] * np.log(nu / den)
                )
            return out

        z = integrate.quad(lambda t: np.exp(logp(t)), -40, 40, limit=200)[0]
        mean = integrate.quad(lambda t: t * np.exp(logp(t)), -40, 40, limit=200)[0] / z
        second = integrate.quad(lambda t: t * t * np.exp(logp(t)), -40, 40, limit=200)[0] / z
        assert var[slot] == pytest.approx(second - mean**2, rel=2e-3)
        assert integrate.quad(lambda t: np.exp(logp(t)), -40, lo[slot])[0] / z == pytest.approx(0.05, abs=2e-3)
        assert integrate.quad(lambda t: np.exp(logp(t)), -40, hi[slot])[0] / z == pytest.approx(0.95, abs=2e-3)


def test_order_model_sparse_items_get_exact_intervals():
    from pairkit.rating import fit_order_advantage

    c = sparse_design(5, np.zeros(8))
    c = Comparisons.from_arrays(c.a, c.b, c.outcome, items=c.items, a_first=np.arange(len(c)) % 2 == 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntervalWarning)
        auto = fit_order_advantage(c, prior=1.0)
        fisher = fit_order_advantage(c, prior=1.0, intervals="fisher")
    assert auto.columns["exact_interval"].tolist() == [False] * 4 + [True] * 4
    assert np.all(auto.se >= fisher.se * (1 - 1e-9))
    assert auto.param_intervals["order_advantage"] == pytest.approx(fisher.param_intervals["order_advantage"])


def test_davidson_sparse_items_get_exact_intervals():
    """fit_bradley_terry(ties="davidson") goes through the row path (its density is checked against quadrature
    above): sparse items flagged, never narrower than Fisher, the tie parameter's interval unchanged."""
    c = sparse_design(8, np.zeros(8))
    y = c.outcome.copy()
    y[::7] = 0.5  # some ties
    c = Comparisons.from_arrays(c.a, c.b, y, items=c.items)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntervalWarning)
        auto = fit_bradley_terry(c, ties="davidson", prior=1.0)
        fisher = fit_bradley_terry(c, ties="davidson", prior=1.0, intervals="fisher")
    assert auto.columns["exact_interval"].tolist() == [False] * 4 + [True] * 4
    assert np.all(auto.se >= fisher.se * (1 - 1e-9))
    assert np.all(auto.ci_high_log[:7] - auto.ci_low_log[:7] >= fisher.ci_high_log[:7] - fisher.ci_low_log[:7] - 1e-9)
    assert auto.param_intervals["tie_nu"] == pytest.approx(fisher.param_intervals["tie_nu"])
