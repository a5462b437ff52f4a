"""Independent references for rating tests: generic optimisers on the plain likelihoods."""

import numpy as np
from scipy import optimize, special


def bt_mle_scipy(c, prior=0.0, ties="half", home=False):
    """Maximise the Bradley–Terry (or Davidson) log-likelihood over raw rows with L-BFGS (no pair counts)."""
    n = c.n_items
    y, w = c.outcome, c.weight
    tie = (y > 0) & (y < 1)
    extra = (1 if ties == "davidson" else 0) + (1 if home else 0)

    sign = np.where(c.a_first, 1.0, -1.0) if home else None

    def nll(x):
        th = x[:n]
        d = th[c.a] - th[c.b]
        if home:
            d = d + x[n + extra - 1] * sign
        grad = np.zeros_like(x)
        if ties == "half":
            val = np.sum(w * (y * special.log_expit(d) + (1 - y) * special.log_expit(-d)))
            g_d = w * (y - special.expit(d))
        else:
            lam = x[n]
            log_den = np.logaddexp(np.logaddexp(d / 2, -d / 2), lam)
            val = np.sum(w * np.where(tie, lam - log_den, np.where(y == 1, d / 2 - log_den, -d / 2 - log_den)))
            dlog_dd = (np.exp(d / 2 - log_den) - np.exp(-d / 2 - log_den)) / 2
            g_d = w * (np.where(tie, 0.0, np.where(y == 1, 0.5, -0.5)) - dlog_dd)
            grad[n] = np.sum(w * (tie - np.exp(lam - log_den)))
        grad[:n] = np.bincount(c.a, g_d, n) - np.bincount(c.b, g_d, n)
        if home:
            grad[n + extra - 1] = np.sum(g_d * sign)
        val += prior * np.sum(special.log_expit(th) + special.log_expit(-th))
        grad[:n] += prior * (1 - 2 * special.expit(th))
        return -val, -grad

    method = "BFGS" if n < 100 else "L-BFGS-B"  # BFGS's dense n×n update is slow for hundreds of items
    options = {"gtol": 1e-11, "maxiter": 50000}
    if method == "L-BFGS-B":
        options.update(ftol=0.0, maxcor=50, maxfun=100000)
    res = optimize.minimize(nll, np.zeros(n + extra), jac=True, method=method, options=options)
    x = res.x
    th = x[:n] - (x[:n].mean())
    return th, x[n:], -res.fun
