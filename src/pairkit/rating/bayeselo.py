"""Coulom's bayeselo: Rao–Kupper draws, a first-move advantage and a prior of virtual draws, on Elo's scale.

bayeselo (Coulom 2005–2010) computes maximum-a-posteriori ratings under

.. math::

    P(\\text{white wins}) = f(\\Delta + a - \\delta),\\quad P(\\text{black wins}) = f(-\\Delta - a - \\delta),\\quad
    P(\\text{draw}) = 1 - P(\\text{white wins}) - P(\\text{black wins}),\\quad f(x) = \\frac{1}{1 + 10^{-x/400}}

with Δ the Elo difference white − black, ``a`` the advantage of playing first (``advantage``, 32.8 by default)
and δ the draw Elo (``drawelo``, 97.3 by default): Rao & Kupper's (1967) tie model with a home advantage. Both
constants are held fixed unless asked to be estimated (bayeselo's ``mm 1 1``). The prior is ``prior`` (default
2) virtual draws per player, spread over its opponents in proportion to the games played with each: for every
player ``i`` with ``n_i`` games and ``n_ij`` games against ``j``, ``prior · n_ij / (4 n_i)`` virtual draws are
added with ``i`` as white and as many with ``j`` as white. Ratings are centred to mean 0 and printed as
``round(scale · elo + offset)`` where ``scale = 4x/(1+x)²``, ``x = 10^(−δ/400)`` (bayeselo's ``EloScale`` after
``mm``) and ``offset`` is 0 unless set. This module reproduces those printed ratings: it maximises the same
posterior with the shared Newton solver (:mod:`pairkit.rating._pairwise`) instead of bayeselo's MM loop.

References:
    Coulom, R. (2005–2010). Bayesian Elo Rating (bayeselo), program and documentation.
    Hunter, D. R. (2004). MM algorithms for generalized Bradley–Terry models. Annals of Statistics 32(1).
    Rao, P. V. & Kupper, L. L. (1967). Ties in paired-comparison experiments. JASA 62(317).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

from pairkit._spec import Interval, Option, declare_options
from pairkit.data.comparisons import Comparisons
from pairkit.errors import InputError, NoMLEError
from pairkit.rating._checks import LEVEL, MAX_ITER, PRIOR, TOL, check_comparisons
from pairkit.rating._generic import ExtraParam, fit_rows_model, flip, order_rows, row_stats
from pairkit.rating._stats import games_per_item
from pairkit.rating.bradley_terry import PAIRWISE_INTERVALS
from pairkit.rating.leaderboard import ELO_FACTOR, Leaderboard
from pairkit.rating.ties import rao_kupper_predictor, rao_kupper_rows

__all__ = ["bayeselo_elo_scale", "bayeselo_virtual_draws", "fit_bayeselo"]

NAT = math.log(10.0) / 400.0
"""Natural log-odds per Elo point."""


def bayeselo_elo_scale(drawelo: float) -> float:
    """bayeselo's display scale after ``mm``: ``4x/(1+x)²`` with ``x = 10^(−drawelo/400)``.

    It is the slope at Δ = 0 of the expected score under the draw model relative to Elo's logistic curve.

    >>> from pairkit.rating import bayeselo_elo_scale
    >>> round(bayeselo_elo_scale(97.3), 4)
    0.9255
    """
    x = 10.0 ** (-drawelo / 400.0)
    return 4.0 * x / (1.0 + x) ** 2


def bayeselo_virtual_draws(
    white: np.ndarray, black: np.ndarray, games: np.ndarray, n_items: int, prior: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """bayeselo's prior as virtual draws on each pair that met.

    Returns ``(i, j, draws)`` rows (``i`` white) with ``prior · n_ij · (1/(4n_i) + 1/(4n_j))`` draws for each
    colour assignment of every pair ``{i, j}`` that played ``n_ij`` (weighted) games.

    >>> import numpy as np
    >>> from pairkit.rating import bayeselo_virtual_draws
    >>> white, black, draws = bayeselo_virtual_draws(np.array([0]), np.array([1]), np.array([2.0]), 2, prior=2.0)
    >>> print(white, black, draws)
    [0 1] [1 0] [1. 1.]
    """
    lo, hi = np.minimum(white, black), np.maximum(white, black)
    key = lo * np.int64(n_items) + hi
    uniq, inverse = np.unique(key, return_inverse=True)
    n_pair = np.bincount(inverse, games, len(uniq))
    pi_, pj_ = uniq // n_items, uniq % n_items
    n_player = np.bincount(pi_, n_pair, n_items) + np.bincount(pj_, n_pair, n_items)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_game = np.where(n_player > 0, prior * 0.25 / np.where(n_player > 0, n_player, 1), 0.0)
    draws = n_pair * (per_game[pi_] + per_game[pj_])
    return np.concatenate([pi_, pj_]), np.concatenate([pj_, pi_]), np.concatenate([draws, draws])


@declare_options(
    Option("advantage", float, doc="white's advantage in Elo points (a start value when estimated)"),
    Option("drawelo", float, Interval(0, None, closed="neither"), doc="bayeselo's draw constant in Elo points"),
    PRIOR,
    Option("estimate_advantage", bool, doc="estimate the advantage (bayeselo mm 1 x)"),
    Option("estimate_drawelo", bool, doc="estimate the draw constant (bayeselo mm x 1)"),
    Option("offset", float, doc="Elo added to the printed ratings"),
    Option("elo_scale", float, Interval(0, None, closed="neither"), none=True, doc="multiplier of the ratings"),
    PAIRWISE_INTERVALS, LEVEL, TOL, MAX_ITER,
)
def fit_bayeselo(
    comparisons: Comparisons,
    *,
    advantage: float = 32.8,
    drawelo: float = 97.3,
    prior: float = 2.0,
    estimate_advantage: bool = False,
    estimate_drawelo: bool = False,
    offset: float = 0.0,
    elo_scale: float | None = None,
    intervals: str = "auto",
    level: float = 0.95,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> Leaderboard:
    """Fit bayeselo ratings (its ``mm [a] [d]`` followed by ``ratings``).

    .. math::

        P(\\text{white wins}) = \\sigma\\big(\\kappa(\\Delta + a - \\delta)\\big),\\quad
        \\kappa = \\ln 10 / 400

    Args:
        comparisons: (M,) games; ``a_first`` must say who had white (``a_first=True`` when ``a`` always did,
            as in ``[white, black, result]`` rows). Draws are outcomes strictly between 0 and 1.
        advantage, drawelo: bayeselo's constants in Elo points (start values when estimated).
        prior: virtual draws per player (bayeselo's ``prior``, default 2; 0 gives the plain MLE).
        estimate_advantage, estimate_drawelo: estimate the constants (bayeselo ``mm 1 1``) instead of fixing them.
        offset: Elo added to the printed ratings (bayeselo's ``offset``).
        elo_scale: multiplier of the printed ratings; ``None`` uses bayeselo's ``4x/(1+x)²`` from the draw Elo.
        intervals: ``"auto"`` (= ``"fisher"``, as bayeselo), ``"sandwich"`` or ``"none"``.
        level, tol, max_iter: as in :func:`pairkit.rating.fit_bradley_terry`.

    Returns:
        A :class:`Leaderboard` whose :attr:`~Leaderboard.ratings` are bayeselo's printed ratings (unrounded);
        ``scores`` stay natural log-strengths. ``params``: ``advantage``, ``drawelo`` (Elo) and ``elo_scale``.

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"],
    ...                                 a_first=[1, 1, 1, 1, 1, 1])
    >>> from pairkit.rating import fit_bayeselo
    >>> board = fit_bayeselo(comps)
    >>> [(item, round(float(s), 1)) for item, s in zip(board.items, board.ratings)]
    [('a', 69.4), ('b', 0.0), ('c', -69.4)]
    """
    check_comparisons(comparisons, "bayeselo")
    if comparisons.a_first is None:
        raise InputError(
            "bayeselo needs to know who played white: read the games with a_first=True (a is white) or a_first=COLUMN"
        )
    n = comparisons.n_items
    white, black, _, swapped = order_rows(comparisons, None)
    stats = flip(row_stats(comparisons, "separate"), swapped)
    if estimate_drawelo and not comparisons.has_ties and prior == 0:
        raise InputError("estimate_drawelo=True needs draws in the data (or prior > 0)")
    _check_connected(comparisons)
    if prior > 0:
        vi, vj, vd = bayeselo_virtual_draws(white, black, comparisons.weight, n, prior)
        white = np.concatenate([white, vi])
        black = np.concatenate([black, vj])
        zeros = np.zeros(len(vi))
        stats = {
            "wins_i": np.concatenate([stats["wins_i"], zeros]),
            "wins_j": np.concatenate([stats["wins_j"], zeros]),
            "ties": np.concatenate([stats["ties"], vd]),
        }
    else:
        from pairkit.rating.bradley_terry import check_mle_exists

        check_mle_exists(comparisons.pair_counts(ties="separate"), comparisons.items)
    adv_nat, draw_nat = advantage * NAT, drawelo * NAT
    X = np.ones((len(white), 1)) if estimate_advantage else None
    fixed_alpha = None if estimate_drawelo else draw_nat

    def model(d, eta, st):
        shift = 0.0 if estimate_advantage else adv_nat
        return rao_kupper_rows(d + shift, eta, st, alpha=fixed_alpha)

    extra = []
    if estimate_advantage:
        extra.append(ExtraParam("advantage", 0, lambda v: v / NAT))
    if estimate_drawelo:
        extra.append(ExtraParam("drawelo", 1 if estimate_advantage else 0, lambda v: v / NAT))

    def predictor(fit):
        adv = float(fit.beta[0]) if estimate_advantage else adv_nat
        alpha = float(fit.eta[0]) if estimate_drawelo else draw_nat
        return rao_kupper_predictor(alpha, adv)

    # bayeselo's games are one per row; the virtual draws are rows too, so clusters do not apply here.
    plain = replace(comparisons, cluster=None) if comparisons.cluster is not None else comparisons
    lb, _ = fit_rows_model(
        plain,
        i=white,
        j=black,
        X=X,
        stats=stats,
        model=model,
        model_name="bayeselo",
        n_eta=1 if estimate_drawelo else 0,
        eta0=np.array([draw_nat]) if estimate_drawelo else None,
        prior=0.0,
        intervals="fisher" if intervals == "auto" else intervals,
        level=level,
        extra=extra,
        predictor=predictor,
        tol=tol,
        max_iter=max_iter,
    )
    fitted_adv = lb.params.get("advantage", advantage)
    fitted_draw = lb.params.get("drawelo", drawelo)
    scale = bayeselo_elo_scale(fitted_draw) if elo_scale is None else float(elo_scale)
    params = {"advantage": float(fitted_adv), "drawelo": float(fitted_draw), "elo_scale": scale, "prior": float(prior)}
    return replace(
        lb,
        params=params,
        n=games_per_item(comparisons),
        scale_name="elo",
        scale_factor=ELO_FACTOR * scale,
        offset=float(offset),
        info={**lb.info, "prior_virtual_draws": float(prior)},
    )


def _check_connected(comparisons: Comparisons) -> None:
    n = comparisons.n_items
    graph = sp.csr_matrix((np.ones(len(comparisons)), (comparisons.a, comparisons.b)), shape=(n, n))
    k, labels = csgraph.connected_components(graph, directed=False)
    if k > 1:
        sizes = np.bincount(labels)
        small = np.flatnonzero(labels == np.argmin(sizes))[:8]
        raise NoMLEError(
            f"the games form {k} disconnected groups of players, whose ratings are not comparable; smallest: "
            f"{[comparisons.items[s] for s in small]}. Rate each group separately (Comparisons.components())."
        )
