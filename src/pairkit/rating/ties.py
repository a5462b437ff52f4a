"""Rao–Kupper's tie model (next to Davidson's in :mod:`pairkit.rating.bradley_terry`).

Rao & Kupper (1967) widen Bradley–Terry by a threshold: a comparison is decided only when the difference in
log-strength exceeds ``α = log θ`` (θ ≥ 1), else it is a tie. In logistic form

.. math::

    P(i \\succ j) = \\sigma(d - \\alpha),\\quad P(j \\succ i) = \\sigma(-d - \\alpha),\\quad
    P(\\text{tie}) = \\sigma(d + \\alpha) - \\sigma(d - \\alpha),\\qquad d = \\theta_i - \\theta_j.

The log-likelihood is jointly concave in (θ, α) (it is a cumulative-logit model), so the shared Newton solver
fits α directly; the tie probability vanishes at α = 0, which keeps α positive whenever a tie was observed.
The same likelihood with a first-mover advantage is Coulom's bayeselo model (:mod:`pairkit.rating.bayeselo`).

References:
    Rao, P. V. & Kupper, L. L. (1967). Ties in paired-comparison experiments: a generalization of the
    Bradley–Terry model. JASA 62(317).
"""

from __future__ import annotations

import numpy as np
from scipy import special

from pairkit._spec import declare_options
from pairkit.data.comparisons import Comparisons
from pairkit.rating._checks import LEVEL, MAX_ITER, PRIOR, TOL
from pairkit.rating._generic import ExtraParam, check_inputs, fit_rows_model, row_stats, start_tie_parameter
from pairkit.rating._pairwise import RowDerivatives
from pairkit.rating.bradley_terry import PAIRWISE_INTERVALS, check_mle_exists
from pairkit.rating.leaderboard import Leaderboard

__all__ = ["fit_rao_kupper", "rao_kupper_predictor", "rao_kupper_rows"]


def rao_kupper_rows(d: np.ndarray, eta: np.ndarray, stats: dict, *, alpha: float | None = None) -> RowDerivatives:
    """Rao–Kupper rows with ``η = [α]`` (``α = log θ``): log-likelihood and derivatives in d and α.

    .. math::

        \\ell = w_i \\log\\sigma(d-\\alpha) + w_j \\log\\sigma(-d-\\alpha)
              + t\\,[\\log\\sigma(d+\\alpha) + \\log\\sigma(\\alpha-d) + \\log(1-e^{-2\\alpha})]

    ``stats``: ``wins_i``, ``wins_j``, ``ties`` (K,). With ``alpha`` given (``functools.partial``), α is held
    fixed and no η derivatives are returned (``eta`` is then empty).

    >>> import numpy as np
    >>> from pairkit.rating import rao_kupper_rows
    >>> stats = {"wins_i": np.array([2.0]), "wins_j": np.array([1.0]), "ties": np.array([1.0])}
    >>> rows = rao_kupper_rows(np.array([0.5]), np.array([0.5]), stats)
    >>> round(float(rows.loglik[0]), 4), round(float(rows.l_d[0]), 4)
    (-4.1646, 0.0379)
    """
    fixed = alpha is not None
    alpha = alpha if fixed else eta[0]
    wi, wj, t = stats["wins_i"], stats["wins_j"], stats["ties"]
    s1 = special.expit(d - alpha)  # P(i wins)
    s2 = special.expit(-d - alpha)  # P(j wins)
    g1, g2 = s1 * (1 - s1), s2 * (1 - s2)
    with np.errstate(divide="ignore"):
        log_gap = np.log(-np.expm1(-2 * alpha))
    tie_term = special.log_expit(d + alpha) + special.log_expit(alpha - d) + log_gap
    loglik = wi * special.log_expit(d - alpha) + wj * special.log_expit(-d - alpha)
    loglik = loglik + np.where(t > 0, t * tie_term, 0.0)
    wt, lt = wi + t, wj + t
    l_d = wi * (1 - s1) - wj * (1 - s2) + t * (s2 - s1)
    l_dd = -wt * g1 - lt * g2
    if fixed:
        return RowDerivatives(loglik, l_d, l_dd)
    c1 = 2.0 / np.expm1(2 * alpha)
    c2 = -4.0 * np.exp(2 * alpha) / np.expm1(2 * alpha) ** 2
    l_a = -wi * (1 - s1) - wj * (1 - s2) + t * (s1 + s2 + c1)
    l_da = wt * g1 - lt * g2
    l_aa = -wt * g1 - lt * g2 + t * c2
    return RowDerivatives(loglik, l_d, l_dd, l_a[:, None], l_da[:, None], l_aa[:, None, None])


def rao_kupper_predictor(alpha: float, advantage: float = 0.0):
    """Win and tie probabilities under Rao–Kupper with threshold ``alpha`` (natural units).

    ``advantage`` (natural units) is added to the first-shown side when ``a_first`` is given.

    >>> import numpy as np
    >>> from pairkit.rating import rao_kupper_predictor
    >>> win, tie = rao_kupper_predictor(0.5)(np.array([0.0]), np.array([0.0]), None)
    >>> print(np.round(win, 4), np.round(tie, 4))
    [0.3775] [0.2449]
    """

    def predict(theta_a, theta_b, a_first):
        d = theta_a - theta_b
        if a_first is not None:
            d = d + advantage * np.where(np.asarray(a_first, bool), 1.0, -1.0)
        win = special.expit(d - alpha)
        return win, special.expit(d + alpha) - win

    return predict


@declare_options(PRIOR, PAIRWISE_INTERVALS, LEVEL, TOL, MAX_ITER)
def fit_rao_kupper(
    comparisons: Comparisons,
    *,
    prior: float = 0.0,
    intervals: str = "auto",
    level: float = 0.95,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> Leaderboard:
    """Fit Rao–Kupper strengths and the tie threshold by maximum likelihood.

    .. math::

        P(i \\succ j) = \\frac{\\pi_i}{\\pi_i + \\theta\\pi_j},\\qquad
        P(\\text{tie}) = \\frac{(\\theta^2 - 1)\\pi_i\\pi_j}{(\\pi_i + \\theta\\pi_j)(\\theta\\pi_i + \\pi_j)}

    Args:
        comparisons: (M,) comparisons with at least one tie (outcome strictly between 0 and 1).
        prior: Newman's virtual games against a unit-strength item (0 = MLE; raises :class:`NoMLEError`
            naming the items when it does not exist).
        intervals: ``"fisher"``, ``"sandwich"`` (by ``comparisons.cluster``), ``"auto"`` or ``"none"``.
        level, tol, max_iter: as in :func:`pairkit.rating.fit_bradley_terry`.

    Returns:
        A :class:`Leaderboard` with ``params["tie_theta"]`` (θ ≥ 1) and ``params["tie_alpha"]`` (= log θ), each
        with its interval in ``param_intervals``.

    >>> from pairkit import Comparisons
    >>> comps = Comparisons.from_arrays([0, 1, 2, 0, 0, 1, 2], [1, 2, 0, 1, 2, 2, 1], [1, 1, 1, 0.5, 1, 0.5, 0],
    ...                                 items=["a", "b", "c"])
    >>> from pairkit.rating import fit_rao_kupper
    >>> board = fit_rao_kupper(comps, prior=1.0)
    >>> [(item, round(float(s), 3)) for item, s in zip(board.items, board.scores)]
    [('a', 0.349), ('b', 0.191), ('c', -0.54)]
    """
    check_inputs(comparisons, "rao_kupper", "rao_kupper")
    counts = comparisons.pair_counts(ties="separate")
    if prior == 0:
        check_mle_exists(counts, comparisons.items)
    lb, fit = fit_rows_model(
        comparisons,
        i=comparisons.a,
        j=comparisons.b,
        X=None,
        stats=row_stats(comparisons, "separate"),
        model=rao_kupper_rows,
        model_name="rao_kupper",
        n_eta=1,
        eta0=start_tie_parameter(comparisons, "rao_kupper"),
        prior=prior,
        intervals=intervals,
        level=level,
        extra=[ExtraParam("tie_theta", 0, np.exp), ExtraParam("tie_alpha", 0)],
        predictor=lambda f: rao_kupper_predictor(float(f.eta[0])),
        tol=tol,
        max_iter=max_iter,
    )
    return lb
