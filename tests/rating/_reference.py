"""Independent references shared by the rating-model tests (obvious formulas + scipy / scikit-learn)."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import optimize, special
from sklearn.linear_model import LogisticRegression


def maximise(neg_loglik, x0, *, tol=1e-11):
    """Minimise ``neg_loglik`` with BFGS (numerical gradient replaced by a tight L-BFGS polish)."""
    res = optimize.minimize(neg_loglik, x0, method="BFGS", options={"gtol": 1e-9, "maxiter": 20_000})
    res = optimize.minimize(neg_loglik, res.x, method="L-BFGS-B", options={"ftol": tol, "gtol": 1e-10})
    return res.x


def logistic_reference(comparisons, extra_columns=None, *, C=None):
    """Bradley–Terry (+ covariates) as a scikit-learn logistic regression on item-difference columns.

    Ties become half a win and half a loss through sample weights. Returns (centred θ, coefficients of extra).
    """
    n, m = comparisons.n_items, len(comparisons)
    X = np.zeros((m, n))
    X[np.arange(m), comparisons.a] = 1.0
    X[np.arange(m), comparisons.b] -= 1.0
    if extra_columns is not None:
        X = np.hstack([X, extra_columns])
    X2 = np.vstack([X, X])
    y2 = np.concatenate([np.ones(m), np.zeros(m)])
    w2 = np.concatenate([comparisons.weight * comparisons.outcome, comparisons.weight * (1 - comparisons.outcome)])
    keep = w2 > 0
    model = LogisticRegression(
        penalty=None if C is None else "l2",
        C=1.0 if C is None else C,
        fit_intercept=False,
        tol=1e-12,
        max_iter=100_000,
    )
    with warnings.catch_warnings():  # scikit-learn 1.8–1.9 warn about their own penalty default with C = inf
        warnings.simplefilter("ignore", FutureWarning)
        model.fit(X2[keep], y2[keep], sample_weight=w2[keep])
    coef = model.coef_.ravel()
    theta = coef[:n] - coef[:n].mean()
    return theta, coef[n:]


def davidson_neg_loglik(params, a, b, wins_a, wins_b, ties, x=None):
    n = max(a.max(), b.max()) + 1
    theta = params[:n]
    log_nu = params[n]
    adv = params[n + 1] if x is not None else 0.0
    d = theta[a] - theta[b] + (adv * x if x is not None else 0.0)
    pa, pb = np.exp(d / 2), np.exp(-d / 2)
    nu = np.exp(log_nu)
    den = pa + pb + nu
    return -np.sum(wins_a * np.log(pa / den) + wins_b * np.log(pb / den) + ties * np.log(nu / den))


def rao_kupper_neg_loglik(params, a, b, wins_a, wins_b, ties, x=None):
    """Rao & Kupper (1967) in the product form π_i/(π_i + θπ_j), θ = 1 + exp(params[n]) > 1."""
    n = max(a.max(), b.max()) + 1
    pi = np.exp(params[:n])
    th = 1.0 + np.exp(params[n])
    adv = np.exp(params[n + 1]) if x is not None else 1.0
    pa = pi[a] * (adv**x if x is not None else 1.0)
    pb = pi[b]
    p_win = pa / (pa + th * pb)
    p_loss = pb / (pb + th * pa)
    p_tie = (th**2 - 1) * pa * pb / ((pa + th * pb) * (th * pa + pb))
    return -np.sum(wins_a * np.log(p_win) + wins_b * np.log(p_loss) + ties * np.log(p_tie))


def split_outcomes(comparisons):
    y, w = comparisons.outcome, comparisons.weight
    tie = (y > 0) & (y < 1)
    return w * np.where(tie, 0, y), w * np.where(tie, 0, 1 - y), w * tie


def expit(x):
    return special.expit(x)
