"""Skew GP (exact posterior of the probit preference GP) against closed forms and brute-force importance sampling."""

import math

import numpy as np
import pytest
from scipy import special

from pairkit.curate import PairwiseGP, SkewGP, eubo, get, hallucination_believer, orthant_ess, rbf_kernel
from pairkit.errors import InputError


def test_one_comparison_matches_the_skew_normal_closed_form():
    """v = f_a - f_b + ε ~ N(0, s²) truncated to v > 0: E[v] = s√(2/π), Var[v] = s²(1 - 2/π); f_a is linear in v."""
    x = np.array([[0.0], [1.0]])
    gp = SkewGP(lengthscale=0.5, outputscale=1.5, noise=0.7, samples=40000, seed=1).fit(x, np.array([[0, 1]]))
    k = rbf_kernel(x, x, lengthscale=0.5, outputscale=1.5)
    c = k[0, 0] - k[0, 1]  # Cov(f_a, v)
    s2 = k[0, 0] + k[1, 1] - 2 * k[0, 1] + 2 * 0.7**2
    mean, var = gp.predict(x)
    np.testing.assert_allclose(mean, [c * math.sqrt(2 / math.pi / s2), -c * math.sqrt(2 / math.pi / s2)], atol=0.015)
    np.testing.assert_allclose(var, k[0, 0] - (2 / math.pi) * c**2 / s2, atol=0.01)


def test_posterior_matches_importance_sampling_from_the_prior():
    """Self-normalised importance sampling: prior draws weighted by the probit likelihood (an independent path)."""
    rng = np.random.default_rng(0)
    x = rng.random((4, 2))
    xs = np.vstack([x, [[0.5, 0.5]]])  # the 4 compared points and a new one
    comp = np.array([[0, 1], [1, 2], [0, 2], [3, 0], [2, 3]])
    gp = SkewGP(lengthscale=0.4, outputscale=2.0, samples=30000, seed=2).fit(x, comp)
    k = rbf_kernel(xs, xs, lengthscale=0.4, outputscale=2.0) + 1e-6 * np.eye(5)
    f = rng.multivariate_normal(np.zeros(5), k, size=400_000)
    logw = special.log_ndtr((f[:, comp[:, 0]] - f[:, comp[:, 1]]) / math.sqrt(2)).sum(1)
    w = np.exp(logw - logw.max())
    w /= w.sum()
    ref_mean = w @ f
    ref_cov = (f - ref_mean).T @ ((f - ref_mean) * w[:, None])
    mean, cov = gp.predict(xs, full_cov=True)
    np.testing.assert_allclose(mean, ref_mean, atol=0.04)
    np.testing.assert_allclose(cov, ref_cov, atol=0.05)
    _, var = gp.predict(xs)
    np.testing.assert_allclose(var, np.diag(cov), atol=1e-10)
    # choice probability of a new pair: E_f[Φ((f_a - f_b)/√2)] under the same weights
    ref_p = w @ special.ndtr((f[:, 4] - f[:, 1]) / math.sqrt(2))
    assert gp.prob_prefer(xs[4:5], xs[1:2])[0] == pytest.approx(ref_p, abs=0.015)
    ref_best = w @ np.maximum(f[:, 4], f[:, 1])
    assert eubo(gp, xs[4:5], xs[1:2])[0] == pytest.approx(ref_best, abs=0.04)


def test_close_to_the_laplace_gp_that_matches_botorch():
    """Where the Laplace approximation is good (many comparisons), the exact posterior agrees with it closely."""
    rng = np.random.default_rng(3)
    x = rng.random((10, 2))
    u = -8 * ((x - 0.6) ** 2).sum(1)
    pairs = np.array([(i, j) for i in range(10) for j in range(i + 1, 10)])
    won = rng.random(len(pairs)) < special.ndtr((u[pairs[:, 0]] - u[pairs[:, 1]]) / math.sqrt(2))
    comp = np.where(won[:, None], pairs, pairs[:, ::-1])
    skew = SkewGP(lengthscale=0.3, outputscale=2.0, samples=4000, seed=0).fit(x, comp)
    laplace = PairwiseGP(lengthscale=0.3, outputscale=2.0).fit(x, comp)
    ms, _ = skew.predict(x)
    ml, _ = laplace.predict(x)
    # Laplace shrinks the mean of a probit posterior towards 0; the orders agree and the gap is small in range
    assert np.corrcoef(ms, ml)[0, 1] > 0.99 and np.abs(ms - ml).max() < 0.2 * np.ptp(ml)
    assert int(np.argmax(ms)) == int(np.argmax(ml))


def test_sampler_and_acquisition():
    chol = np.linalg.cholesky(np.array([[1.0, 0.8], [0.8, 1.0]]))
    v = orthant_ess(chol, 500, seed=0)
    assert v.shape == (500, 2) and (v >= 0).all()
    np.testing.assert_array_equal(v, orthant_ess(chol, 500, seed=0))  # seeded
    x = np.linspace(0, 1, 9)[:, None]
    gp = SkewGP(lengthscale=0.3, samples=300).fit(x, np.array([[6, 1], [6, 3], [5, 2]]))
    i, j = hallucination_believer(gp, x, seed=1)
    assert i == int(np.argmax(gp.predict(x)[0])) and j != i
    assert get("hb_ucb") is hallucination_believer
    with pytest.raises(InputError, match="beta"):
        hallucination_believer(gp, x, beta=-1.0)
    with pytest.raises(InputError, match="a point compared with itself"):
        SkewGP().fit(x, np.array([[1, 1]]))
    with pytest.raises(InputError, match="samples must be an integer"):
        SkewGP(samples=0)
