"""Robust Bradley–Terry: a mixture of Bradley–Terry and uniform noise (mislabelled or random judgments).

With probability ``1 − ε`` a comparison follows Bradley–Terry, with probability ``ε`` its outcome is a coin flip:

.. math::

    P(i \\succ j) = (1 - \\varepsilon)\\,\\sigma(\\theta_i - \\theta_j) + \\varepsilon / 2

A share of flipped or random outcomes pulls plain Bradley–Terry strengths towards each other (the fitted log-odds
are attenuated); the mixture attributes the surprising outcomes to noise instead. ``ε`` is estimated (or held at
a given value) by EM — the E-step gives each outcome's probability of being genuine, the M-step is a weighted
Bradley–Terry fit on the shared Newton solver — and a final Newton pass on the mixture likelihood gives the
observed-information intervals.

References:
    Dempster, A. P., Laird, N. M. & Rubin, D. B. (1977). Maximum likelihood from incomplete data via the EM
    algorithm. JRSS B 39(1).
    Copas, J. B. (1988). Binary regression models for contaminated data. JRSS B 50(2).
"""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np
from scipy import special

from pairkit._spec import Interval, Option, declare_options
from pairkit.data.comparisons import Comparisons
from pairkit.errors import ConvergenceError, NotIdentifiedError
from pairkit.rating._checks import LEVEL, MAX_ITER, PRIOR, TOL, renamed_options
from pairkit.rating._generic import ExtraParam, check_inputs, fit_rows_model, row_stats
from pairkit.rating._pairwise import (
    PairwiseDesign,
    RowDerivatives,
    bradley_terry_rows,
    check_dense_size,
    fit_pairwise,
)
from pairkit.rating.bradley_terry import PAIRWISE_INTERVALS, check_mle_exists
from pairkit.rating.leaderboard import Leaderboard

__all__ = ["fit_robust_bt", "robust_predictor", "robust_rows"]


def robust_rows(d: np.ndarray, eta: np.ndarray, stats: dict, *, epsilon: float | None = None) -> RowDerivatives:
    """Mixture rows with ``η = [logit ε]`` (or ``epsilon`` held fixed): log-likelihood and derivatives.

    .. math::

        \\ell = w_i \\log P + w_j \\log(1 - P),\\qquad P = (1-\\varepsilon)\\sigma(d) + \\varepsilon/2

    >>> import numpy as np
    >>> from pairkit.rating import robust_rows
    >>> stats = {"wins_i": np.array([2.0]), "wins_j": np.array([1.0]), "ties": np.array([1.0])}
    >>> rows = robust_rows(np.array([0.5]), np.array([-2.0]), stats)
    >>> round(float(rows.loglik[0]), 4), round(float(rows.l_d[0]), 4)
    (-1.9318, 0.1532)
    """
    fixed = epsilon is not None
    eps = epsilon if fixed else float(special.expit(eta[0]))
    wi, wj = stats["wins_i"], stats["wins_j"]
    s = special.expit(d)
    g = s * (1 - s)
    p = (1 - eps) * s + eps / 2
    q = (1 - eps) * (1 - s) + eps / 2
    p_d, p_dd = (1 - eps) * g, (1 - eps) * g * (1 - 2 * s)
    loglik = np.where(wi > 0, wi * np.log(p), 0.0) + np.where(wj > 0, wj * np.log(q), 0.0)
    l_d = wi * p_d / p - wj * p_d / q
    l_dd = wi * (p_dd / p - (p_d / p) ** 2) + wj * (-p_dd / q - (p_d / q) ** 2)
    if fixed:
        return RowDerivatives(loglik, l_d, l_dd)
    e1 = eps * (1 - eps)
    p_e = (0.5 - s) * e1  # ∂P/∂η; ∂Q/∂η = −∂P/∂η
    p_de = -g * e1
    p_ee = (0.5 - s) * e1 * (1 - 2 * eps)
    l_e = wi * p_e / p - wj * p_e / q
    l_de = wi * (p_de / p - p_d * p_e / p**2) + wj * (-p_de / q - p_d * p_e / q**2)
    l_ee = wi * (p_ee / p - (p_e / p) ** 2) + wj * (-p_ee / q - (p_e / q) ** 2)
    return RowDerivatives(loglik, l_d, l_dd, l_e[:, None], l_de[:, None], l_ee[:, None, None])


def robust_predictor(epsilon: float):
    """Win probabilities of the mixture: ``(1 − ε)σ(θa − θb) + ε/2`` (ties are not modelled).

    >>> import numpy as np
    >>> from pairkit.rating import robust_predictor
    >>> win, tie = robust_predictor(0.2)(np.array([10.0]), np.array([0.0]), None)
    >>> print(np.round(win, 4), tie)
    [0.9] [0.]
    """

    def predict(theta_a, theta_b, a_first):
        p = (1 - epsilon) * special.expit(theta_a - theta_b) + epsilon / 2
        return p, np.zeros_like(p)

    return predict


@renamed_options(max_em="max_iter")
@declare_options(
    Option("epsilon", float, Interval(0, 1, closed="left"), none=True, doc="noise share (None: estimated)"),
    PRIOR, PAIRWISE_INTERVALS, LEVEL, TOL, MAX_ITER,
)
def fit_robust_bt(
    comparisons: Comparisons,
    *,
    epsilon: float | None = None,
    prior: float = 0.0,
    intervals: str = "auto",
    level: float = 0.95,
    tol: float = 1e-9,
    max_iter: int = 200,
) -> Leaderboard:
    """Fit the Bradley–Terry / uniform-noise mixture by EM, then polish by Newton.

    .. math::

        r_k = \\frac{(1-\\varepsilon)\\sigma(\\pm d_k)}{(1-\\varepsilon)\\sigma(\\pm d_k) + \\varepsilon/2},\\qquad
        \\varepsilon \\leftarrow \\frac{\\sum_k w_k (1 - r_k)}{\\sum_k w_k}

    Args:
        comparisons: (M,) comparisons; ties count as half a win for each side.
        epsilon: the noise share in [0, 1); ``None`` estimates it.
        prior: Newman's virtual games (0 = MLE of the strengths).
        intervals: ``"fisher"``, ``"sandwich"``, ``"auto"`` or ``"none"`` (from the final Newton pass).
        tol: relative change of the log-likelihood that ends the EM sweeps.
        max_iter: EM sweeps before the Newton pass on the mixture likelihood takes over (EM is slow near the
            optimum, Newton fast; EM only has to bring the start into Newton's basin).

    Returns:
        A :class:`Leaderboard` with ``params["epsilon"]`` (and its interval when estimated).

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"])
    >>> from pairkit.rating import fit_robust_bt
    >>> board = fit_robust_bt(comps, epsilon=0.1, prior=1.0)
    >>> [(item, round(float(s), 3) + 0.0) for item, s in zip(board.items, board.scores)]
    [('a', 0.567), ('b', 0.0), ('c', -0.567)]
    """
    check_inputs(comparisons, "half", "robust_bt")
    check_dense_size(comparisons.n_items + int(epsilon is None), "model 'robust_bt'")  # before the EM sweeps
    counts = comparisons.pair_counts(ties="half")
    if prior == 0:
        check_mle_exists(counts, comparisons.items)
    n = counts.n_items
    wi, wj = counts.wins_i, counts.wins_j
    total = float(np.sum(wi + wj))
    design = PairwiseDesign(n_items=n, i=counts.i, j=counts.j, stats={"wins_i": wi, "wins_j": wj})
    theta = fit_pairwise(design, bradley_terry_rows, prior=prior).theta
    eps = 0.1 if epsilon is None else float(epsilon)
    em_steps = 0
    previous = -np.inf
    for em_steps in range(1, max_iter + 1):  # noqa: B007  (reported)
        s = special.expit(theta[counts.i] - theta[counts.j])
        genuine_i = (1 - eps) * s / ((1 - eps) * s + eps / 2)
        genuine_j = (1 - eps) * (1 - s) / ((1 - eps) * (1 - s) + eps / 2)
        weighted = PairwiseDesign(
            n_items=n, i=counts.i, j=counts.j, stats={"wins_i": wi * genuine_i, "wins_j": wj * genuine_j}
        )
        theta = fit_pairwise(weighted, bradley_terry_rows, prior=prior, theta0=theta).theta
        if epsilon is None:
            eps = float(np.sum(wi * (1 - genuine_i) + wj * (1 - genuine_j)) / total)
            eps = min(max(eps, 1e-12), 1 - 1e-9)
        current = float(
            np.sum(robust_rows(theta[counts.i] - theta[counts.j], np.zeros(0), design.stats, epsilon=eps).loglik)
        )
        if current - previous < tol * max(1.0, abs(current)):
            break
        previous = current

    def polish(fixed: float | None):
        """Newton on the mixture likelihood from the EM point (ε estimated unless ``fixed``)."""
        free = fixed is None
        return fit_rows_model(
            comparisons,
            i=comparisons.a,
            j=comparisons.b,
            X=None,
            stats=row_stats(comparisons, "half"),
            model=functools.partial(robust_rows, epsilon=fixed),
            model_name="robust_bt",
            n_eta=int(free),
            eta0=np.array([special.logit(max(eps, 1e-6))]) if free else None,
            prior=prior,
            intervals=intervals,
            level=level,
            extra=[ExtraParam("epsilon", 0, special.expit)] if free else [],
            theta0=theta,
            predictor=lambda f: robust_predictor(float(special.expit(f.eta[0])) if free else fixed),
        )

    try:
        lb, _ = polish(None if epsilon is None else float(epsilon))
    except (ConvergenceError, NotIdentifiedError):
        # ε at the boundary (no noise detected) leaves the mixture flat in ε: report the EM point, ε held there
        lb, _ = polish(eps)
    params = dict(lb.params)
    params.setdefault("epsilon", float(eps))
    return replace(lb, params=params, info={**lb.info, "em_steps": em_steps})
