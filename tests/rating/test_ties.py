"""Rao–Kupper (and Davidson) ties on Davidson's (1970) pudding data, against scipy on textbook likelihoods."""

import numpy as np
import pandas as pd
import pytest

from pairkit.data import Comparisons
from pairkit.errors import InputError
from pairkit.rating import fit_bradley_terry
from pairkit.rating.ties import fit_rao_kupper, rao_kupper_rows
from tests.rating._reference import davidson_neg_loglik, maximise, rao_kupper_neg_loglik, split_outcomes
from tests.shared_data import shared_path


def pudding():
    t = pd.read_csv(shared_path("rankings", "pudding_davidson1970.csv"))
    a = np.concatenate([t.i, t.j, t.i]) - 1
    b = np.concatenate([t.j, t.i, t.j]) - 1
    y = np.concatenate([np.ones(len(t)), np.ones(len(t)), np.full(len(t), 0.5)])
    w = np.concatenate([t.w_ij, t.w_ji, t.t_ij]).astype(float)
    return Comparisons.from_arrays(a, b, y, weight=w)


def test_pudding_rao_kupper_vs_scipy():
    c = pudding()
    lb = fit_rao_kupper(c)
    wa, wb, t = split_outcomes(c)
    x = maximise(lambda p: rao_kupper_neg_loglik(p, c.a, c.b, wa, wb, t), np.r_[np.zeros(6), -0.5])
    np.testing.assert_allclose(lb.log_strength, x[:6] - x[:6].mean(), atol=1e-5)
    assert lb.params["tie_theta"] == pytest.approx(1 + np.exp(x[6]), abs=1e-5)
    lo, hi = lb.param_intervals["tie_theta"]
    assert lo < lb.params["tie_theta"] < hi
    assert lb.log_likelihood == pytest.approx(-rao_kupper_neg_loglik(x, c.a, c.b, wa, wb, t), abs=1e-7)


def test_pudding_davidson_vs_scipy():
    c = pudding()
    lb = fit_bradley_terry(c, ties="davidson")
    wa, wb, t = split_outcomes(c)
    x = maximise(lambda p: davidson_neg_loglik(p, c.a, c.b, wa, wb, t), np.r_[np.zeros(6), 0.0])
    np.testing.assert_allclose(lb.log_strength, x[:6] - x[:6].mean(), atol=1e-5)
    assert lb.params["tie_nu"] == pytest.approx(np.exp(x[6]), abs=1e-5)
    # Davidson (1970): the ranking agrees with 2 points per win, 1 per tie in a balanced design
    assert np.argmax(lb.log_strength) == 5 and np.argmin(lb.log_strength) == 0


def test_rao_kupper_row_derivatives_match_finite_differences():
    rng = np.random.default_rng(1)
    d = rng.normal(size=7)
    stats = {
        "wins_i": rng.integers(0, 5, 7) * 1.0,
        "wins_j": rng.integers(0, 5, 7) * 1.0,
        "ties": rng.integers(0, 5, 7) * 1.0,
    }
    alpha = np.array([0.4])
    rows = rao_kupper_rows(d, alpha, stats)
    h = 1e-6

    def ll(dd, aa):
        return rao_kupper_rows(dd, np.array([aa]), stats).loglik

    np.testing.assert_allclose(rows.l_d, (ll(d + h, 0.4) - ll(d - h, 0.4)) / (2 * h), atol=1e-6)
    np.testing.assert_allclose(rows.l_eta[:, 0], (ll(d, 0.4 + h) - ll(d, 0.4 - h)) / (2 * h), atol=1e-6)
    ld = lambda dd, aa: rao_kupper_rows(dd, np.array([aa]), stats)  # noqa: E731
    np.testing.assert_allclose(rows.l_dd, (ld(d + h, 0.4).l_d - ld(d - h, 0.4).l_d) / (2 * h), atol=1e-5)
    np.testing.assert_allclose(rows.l_d_eta[:, 0], (ld(d, 0.4 + h).l_d - ld(d, 0.4 - h).l_d) / (2 * h), atol=1e-5)
    np.testing.assert_allclose(
        rows.l_eta_eta[:, 0, 0], (ld(d, 0.4 + h).l_eta[:, 0] - ld(d, 0.4 - h).l_eta[:, 0]) / (2 * h), atol=1e-5
    )


def test_rao_kupper_needs_ties():
    c = Comparisons.from_arrays([0, 1, 2], [1, 2, 0], [1, 1, 1])
    with pytest.raises(InputError, match="tie"):
        fit_rao_kupper(c)


def test_rao_kupper_predictor_sums_to_one():
    lb = fit_rao_kupper(pudding())
    p, t = lb.predict(["0", "1"], ["5", "2"])
    q, t2 = lb.predict(["5", "2"], ["0", "1"])
    np.testing.assert_allclose(p + t + q, 1.0)
    np.testing.assert_allclose(t, t2)
