"""Robust Bradley–Terry (BT + uniform noise mixture): scipy reference and recovery under flipped outcomes."""

import numpy as np
import pytest
from scipy import special

from pairkit.data import Comparisons
from pairkit.errors import InputError
from pairkit.rating import fit_bradley_terry
from pairkit.rating.robust import fit_robust_bt, robust_rows
from tests.rating._reference import maximise


def simulate(seed, *, n=10, m=8000, flip=0.2, spread=2.0):
    rng = np.random.default_rng(seed)
    truth = np.linspace(-spread, spread, n)
    a = rng.integers(0, n, m)
    b = (a + rng.integers(1, n, m)) % n
    y = (rng.random(m) < special.expit(truth[a] - truth[b])).astype(float)
    flipped = rng.random(m) < flip
    y[flipped] = 1 - y[flipped]
    return Comparisons.from_arrays(a, b, y), truth - truth.mean()


def test_recovers_truth_better_than_plain_bt_under_flips():
    c, truth = simulate(2, flip=0.15)
    robust = fit_robust_bt(c)
    plain = fit_bradley_terry(c)
    err_robust = np.sqrt(np.mean((robust.log_strength - truth) ** 2))
    err_plain = np.sqrt(np.mean((plain.log_strength - truth) ** 2))
    assert err_robust < 0.5 * err_plain
    # flipping 15 % of outcomes is a coin-flip noise share of 2 × 15 %
    lo, hi = robust.param_intervals["epsilon"]
    assert lo < 0.3 < hi


def test_matches_scipy_on_the_mixture_likelihood():
    c, _ = simulate(1, n=6, m=3000, flip=0.1)
    lb = fit_robust_bt(c)
    n = c.n_items
    y = c.outcome

    def neg(p):
        eps = special.expit(p[n])
        prob = (1 - eps) * special.expit(p[:n][c.a] - p[:n][c.b]) + eps / 2
        return -np.sum(y * np.log(prob) + (1 - y) * np.log(1 - prob))

    p = maximise(neg, np.r_[np.zeros(n), -2.0])
    np.testing.assert_allclose(lb.log_strength, p[:n] - p[:n].mean(), atol=1e-5)
    assert lb.params["epsilon"] == pytest.approx(special.expit(p[n]), abs=1e-5)


def test_fixed_epsilon_zero_is_bradley_terry():
    c, _ = simulate(2, n=5, m=1000, flip=0.0)
    np.testing.assert_allclose(fit_robust_bt(c, epsilon=0.0).log_strength, fit_bradley_terry(c).log_strength, atol=1e-8)


def test_row_derivatives_match_finite_differences():
    rng = np.random.default_rng(3)
    d = rng.normal(size=6)
    stats = {"wins_i": rng.integers(0, 4, 6) * 1.0, "wins_j": rng.integers(0, 4, 6) * 1.0}
    eta = np.array([-1.2])
    rows = robust_rows(d, eta, stats)
    h = 1e-6
    f = lambda dd, ee: robust_rows(dd, np.array([ee]), stats)  # noqa: E731
    np.testing.assert_allclose(rows.l_d, (f(d + h, -1.2).loglik - f(d - h, -1.2).loglik) / (2 * h), atol=1e-6)
    np.testing.assert_allclose(rows.l_eta[:, 0], (f(d, -1.2 + h).loglik - f(d, -1.2 - h).loglik) / (2 * h), atol=1e-6)
    np.testing.assert_allclose(rows.l_dd, (f(d + h, -1.2).l_d - f(d - h, -1.2).l_d) / (2 * h), atol=1e-5)
    np.testing.assert_allclose(rows.l_d_eta[:, 0], (f(d, -1.2 + h).l_d - f(d, -1.2 - h).l_d) / (2 * h), atol=1e-5)
    np.testing.assert_allclose(
        rows.l_eta_eta[:, 0, 0], (f(d, -1.2 + h).l_eta[:, 0] - f(d, -1.2 - h).l_eta[:, 0]) / (2 * h), atol=1e-5
    )


def test_bad_epsilon():
    c, _ = simulate(4, n=4, m=200)
    with pytest.raises(InputError, match="epsilon"):
        fit_robust_bt(c, epsilon=1.5)
