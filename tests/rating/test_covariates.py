"""Style-controlled Bradley–Terry against scikit-learn's logistic regression and a penalised scipy objective."""

import numpy as np
import pytest
from scipy import special

from pairkit import read_comparisons
from pairkit.data import Comparisons
from pairkit.errors import InputError
from pairkit.rating.covariates import fit_covariate_bt, style_features
from tests.rating._reference import logistic_reference, maximise
from tests.shared_data import shared_path


def arena_hard_with_style(seed=0):
    """Arena-Hard battles with synthetic style counts (length, headers, lists) for each answer."""
    c = read_comparisons(shared_path("llm_judgments", "arena_hard_battles.jsonl"))
    rng = np.random.default_rng(seed)
    fa = rng.poisson([500, 3, 5], size=(len(c), 3)).astype(float)
    fb = rng.poisson([500, 3, 5], size=(len(c), 3)).astype(float)
    return c, style_features(fa, fb)


def test_style_features_normalisation():
    z = style_features(np.array([10.0, 0.0, 30.0]), np.array([30.0, 0.0, 10.0]), standardize=False)
    np.testing.assert_allclose(z[:, 0], [-0.5, 0.0, 0.5])
    zs = style_features(np.array([10.0, 0.0, 30.0]), np.array([30.0, 0.0, 10.0]))
    assert abs(zs.mean()) < 1e-12 and zs.std() == pytest.approx(1.0)
    with pytest.raises(InputError, match="row 1"):
        style_features(np.array([1.0, -1.0]), np.array([1.0, 1.0]))


def test_unpenalised_matches_sklearn():
    c, Z = arena_hard_with_style()
    lb = fit_covariate_bt(c, Z, names=["length", "headers", "lists"])
    theta, coef = logistic_reference(c, Z)
    np.testing.assert_allclose(lb.log_strength, theta, atol=1e-5)
    np.testing.assert_allclose([lb.params[f"coef_{k}"] for k in ("length", "headers", "lists")], coef, atol=1e-5)
    assert set(lb.param_intervals) == {"coef_length", "coef_headers", "coef_lists"}


def test_ridge_matches_sklearn_with_unpenalised_items():
    # scikit-learn penalises every coefficient; item columns scaled by 1e3 make their penalty negligible (1e-6)
    c, Z = arena_hard_with_style(1)
    ridge = 50.0
    lb = fit_covariate_bt(c, Z, ridge=ridge)
    n, m = c.n_items, len(c)
    from sklearn.linear_model import LogisticRegression

    X = np.zeros((m, n))
    X[np.arange(m), c.a] = 1.0
    X[np.arange(m), c.b] -= 1.0
    big = 1e3
    X = np.hstack([X * big, Z])
    X2, y2 = np.vstack([X, X]), np.r_[np.ones(m), np.zeros(m)]
    w2 = np.r_[c.outcome, 1 - c.outcome]
    keep = w2 > 0
    model = LogisticRegression(C=1.0 / ridge, fit_intercept=False, tol=1e-12, max_iter=100_000)
    model.fit(X2[keep], y2[keep], sample_weight=w2[keep])
    coef = model.coef_.ravel()
    theta = coef[:n] * big
    np.testing.assert_allclose(lb.log_strength, theta - theta.mean(), atol=1e-5)
    np.testing.assert_allclose(lb.info["beta"], coef[n:], atol=1e-5)


def test_ridge_matches_penalised_scipy_objective_with_ties():
    c, Z = arena_hard_with_style(2)
    ridge = 10.0
    lb = fit_covariate_bt(c, Z, ridge=ridge)
    n = c.n_items
    y, w = c.outcome, c.weight

    def neg(p):
        d = p[:n][c.a] - p[:n][c.b] + Z @ p[n:]
        ll = np.sum(w * (y * special.log_expit(d) + (1 - y) * special.log_expit(-d)))
        return -(ll - ridge / 2 * p[n:] @ p[n:])

    p = maximise(neg, np.zeros(n + 3))
    np.testing.assert_allclose(lb.log_strength, p[:n] - p[:n].mean(), atol=1e-5)
    np.testing.assert_allclose(lb.info["beta"], p[n:], atol=1e-5)


def test_recovers_planted_length_bias():
    rng = np.random.default_rng(7)
    n, m = 8, 6000
    truth = np.linspace(-1, 1, n)
    a = rng.integers(0, n, m)
    b = (a + rng.integers(1, n, m)) % n
    verbose = np.where(np.arange(n) % 2 == 0, 900.0, 300.0)  # even items write long answers
    la, lb_ = rng.lognormal(np.log(verbose[a]), 0.6), rng.lognormal(np.log(verbose[b]), 0.6)
    z = style_features(la, lb_)
    p = special.expit(truth[a] - truth[b] + 0.8 * z[:, 0])
    c = Comparisons.from_arrays(a, b, (rng.random(m) < p).astype(float))
    controlled = fit_covariate_bt(c, z, names=["length"])
    lo, hi = controlled.param_intervals["coef_length"]
    assert lo < 0.8 < hi and hi - lo < 0.3
    err_controlled = np.abs(controlled.log_strength - (truth - truth.mean())).max()
    from pairkit.rating import fit_bradley_terry

    err_plain = np.abs(fit_bradley_terry(c).log_strength - (truth - truth.mean())).max()
    assert err_controlled < 0.2 < err_plain


def test_bad_covariate_shape():
    c = Comparisons.from_arrays([0, 1, 2], [1, 2, 0], [1, 1, 1])
    with pytest.raises(InputError, match="covariates"):
        fit_covariate_bt(c, np.zeros((2, 1)), prior=1.0)
