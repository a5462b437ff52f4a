"""Order effects: home advantage, the first move in chess, the position bias of an LLM judge.

The side shown or played first (``Comparisons.a_first``) gets an extra log-odds ``β``, estimated jointly with the
strengths as a ±1 covariate in the shared Newton solver (0 for rows marked ``neutral``); ties can be split
(``"half"``) or modelled by Davidson's or Rao–Kupper's parameter at the same time.

.. math::

    P(i \\succ j \\mid i \\text{ first}) = \\sigma(\\theta_i - \\theta_j + \\beta)

References:
    Agresti, A. (2002). Categorical Data Analysis, 2nd ed., §10.6 (Bradley–Terry with home advantage). Wiley.
    Davidson, R. R. & Beaver, R. J. (1977). On extending the Bradley–Terry model to incorporate within-pair
    order effects. Biometrics 33(4).
"""

from __future__ import annotations

import numpy as np
from scipy import special

from pairkit._spec import Option, declare_options
from pairkit.data.comparisons import Comparisons
from pairkit.rating._checks import LEVEL, MAX_ITER, PRIOR, TOL
from pairkit.rating._generic import (
    ExtraParam,
    check_inputs,
    fit_rows_model,
    flip,
    order_rows,
    row_stats,
    start_tie_parameter,
)
from pairkit.rating._pairwise import bradley_terry_rows
from pairkit.rating.bradley_terry import PAIRWISE_INTERVALS, check_mle_exists, davidson_rows
from pairkit.rating.leaderboard import ELO_FACTOR, Leaderboard
from pairkit.rating.ties import rao_kupper_predictor, rao_kupper_rows

__all__ = ["fit_order_advantage", "order_predictor"]

TIE_MODELS = ("half", "davidson", "rao_kupper")


def order_predictor(advantage: float, ties: str = "half", tie_param: float = 0.0):
    """Win/tie probabilities with an order advantage (natural units) for the first-shown side.

    ``ties``: ``"half"`` (no tie probability), ``"davidson"`` (``tie_param`` = log ν) or ``"rao_kupper"``
    (``tie_param`` = α). Without ``a_first`` the advantage is not applied (a neutral comparison).

    >>> import numpy as np
    >>> from pairkit.rating import order_predictor
    >>> win, tie = order_predictor(0.5)(np.array([0.0]), np.array([0.0]), np.array([True]))
    >>> print(np.round(win, 4), tie)
    [0.6225] [0.]
    """
    if ties == "rao_kupper":
        return rao_kupper_predictor(tie_param, advantage)

    def predict(theta_a, theta_b, a_first):
        d = theta_a - theta_b
        if a_first is not None:
            d = d + advantage * np.where(np.asarray(a_first, bool), 1.0, -1.0)
        if ties == "half":
            p = special.expit(d)
            return p, np.zeros_like(p)
        half = d / 2
        log_den = np.logaddexp(np.logaddexp(half, -half), tie_param)
        return np.exp(half - log_den), np.exp(tie_param - log_den)

    return predict


@declare_options(
    Option("ties", str, choices=TIE_MODELS, doc="ties as half wins, Davidson's or Rao–Kupper's tie parameter"),
    PRIOR, PAIRWISE_INTERVALS, LEVEL, TOL, MAX_ITER,
)
def fit_order_advantage(
    comparisons: Comparisons,
    *,
    ties: str = "half",
    neutral: np.ndarray | None = None,
    prior: float = 0.0,
    intervals: str = "auto",
    level: float = 0.95,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> Leaderboard:
    """Fit strengths and a first-mover / home / position advantage jointly by maximum likelihood.

    .. math::

        d_k = \\theta_{\\text{first}_k} - \\theta_{\\text{second}_k} + \\beta\\,x_k,\\qquad x_k \\in \\{1, 0\\}

    Args:
        comparisons: (M,) comparisons with ``a_first`` (True: ``a`` was first; False: ``b`` was first).
        ties: ``"half"``, ``"davidson"`` (ν) or ``"rao_kupper"`` (θ = e^α) for the ties.
        neutral: optional (M,) bool, comparisons with no first side (neutral venue): ``x = 0``.
        prior: Newman's virtual games (0 = MLE; :class:`NoMLEError` names items when it does not exist).
        intervals: ``"fisher"``, ``"sandwich"`` (by ``comparisons.cluster``), ``"auto"`` or ``"none"``.
        level, tol, max_iter: as in :func:`pairkit.rating.fit_bradley_terry`.

    Returns:
        A :class:`Leaderboard`; ``params["order_advantage"]`` is β (log-odds), ``"order_advantage_elo"`` the same
        in Elo points, plus ``"tie_nu"`` or ``"tie_theta"``; all with intervals. ``predict(a, b, a_first=…)``
        applies the advantage.

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"],
    ...                                 a_first=[1, 0, 1, 0, 1, 0])
    >>> from pairkit.rating import fit_order_advantage
    >>> board = fit_order_advantage(comps, prior=1.0)
    >>> [(item, round(float(s), 3)) for item, s in zip(board.items, board.scores)]
    [('a', 0.537), ('b', 0.059), ('c', -0.595)]
    >>> round(board.params['order_advantage'], 3)
    0.242
    """
    check_inputs(comparisons, ties, "order_advantage")
    separate = ties != "half"
    i, j, x, swapped = order_rows(comparisons, neutral)
    if prior == 0:
        check_mle_exists(comparisons.pair_counts(ties="separate" if separate else "half"), comparisons.items)
    stats = flip(row_stats(comparisons, "separate" if separate else "half"), swapped)
    model = {"half": bradley_terry_rows, "davidson": davidson_rows, "rao_kupper": rao_kupper_rows}[ties]
    extra = [ExtraParam("order_advantage", 0), ExtraParam("order_advantage_elo", 0, lambda v: ELO_FACTOR * v)]
    if ties == "davidson":
        extra.append(ExtraParam("tie_nu", 1, np.exp))
    elif ties == "rao_kupper":
        extra += [ExtraParam("tie_theta", 1, np.exp), ExtraParam("tie_alpha", 1)]
    lb, _ = fit_rows_model(
        comparisons,
        i=i,
        j=j,
        X=x[:, None],
        stats=stats,
        model=model,
        model_name="order_advantage" + ("" if ties == "half" else f"_{ties}"),
        n_eta=1 if separate else 0,
        eta0=start_tie_parameter(comparisons, ties) if separate else None,
        prior=prior,
        intervals=intervals,
        level=level,
        extra=extra,
        predictor=lambda f: order_predictor(float(f.beta[0]), ties, float(f.eta[0]) if separate else 0.0),
        identification_hint=(
            "The order advantage is separated from the strengths only when the same items are seen both first "
            "and second; here the display order is confounded with the items (e.g. every comparison is against "
            "one reference shown in the same position). Give the true order per comparison (a_first), mark "
            "comparisons without an order as neutral, or fit without an order effect (fit_bradley_terry, "
            "--model bt)."
        ),
        separation_hint=(
            "Typical cause: the side shown first (or second) won every comparison, or an item won every game it "
            "played from one side. Use ties to soften it, more data, or fit without an order effect."
        ),
        tol=tol,
        max_iter=max_iter,
    )
    return lb
