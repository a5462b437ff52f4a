"""Online Elo ratings, as LMArena/FastChat's ``compute_elo``.

Elo, A. E. (1978). The Rating of Chessplayers, Past and Present. Arco.
"""

from __future__ import annotations

import math

import numpy as np

from pairkit._spec import Interval, Option, declare_options, unchecked
from pairkit.data.comparisons import Comparisons
from pairkit.rating._checks import check_comparisons
from pairkit.rating._stats import win_rate
from pairkit.rating.leaderboard import Leaderboard

__all__ = ["elo_ratings", "fit_elo"]


ELO_OPTIONS = (
    Option("k", float, Interval(0, None), doc="K-factor: points moved per unit of surprise"),
    Option("base", float, Interval(1, None, closed="neither"), doc="odds base of the logistic curve"),
    Option("scale", float, Interval(0, None, closed="neither"), doc="points per factor `base` of odds"),
    Option("initial", float, doc="starting rating"),
)


@declare_options(*ELO_OPTIONS)
def elo_ratings(
    comparisons: Comparisons,
    *,
    k: float = 4.0,
    base: float = 10.0,
    scale: float = 400.0,
    initial: float = 1000.0,
) -> np.ndarray:
    """Sequential Elo ratings after processing the comparisons in order.

    .. math::

        E_a = \\frac{1}{1 + b^{(R_b - R_a)/s}},\\qquad R_a \\mathrel{+}= K w (S_a - E_a),\\qquad
        R_b \\mathrel{-}= K w (S_a - E_a)

    with ``S_a`` the outcome for ``a`` (1, 0 or ½) and ``w`` the comparison's weight. With the defaults this is
    exactly LMArena/FastChat's ``compute_elo`` (K = 4, base 10, scale 400, start 1000).

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"])
    >>> from pairkit.rating import elo_ratings
    >>> print(elo_ratings(comps, k=32).round(1))
    [1030.  1000.7  969.4]
    """
    ratings = [float(initial)] * comparisons.n_items
    step = math.log(base) / scale
    # Each update depends on the previous one, so the recursion is inherently sequential; a loop over
    # Python floats (about a million comparisons per second) beats any numpy formulation of it.
    a, b = comparisons.a.tolist(), comparisons.b.tolist()
    y, w = comparisons.outcome.tolist(), comparisons.weight.tolist()
    exp = math.exp
    for ia, ib, ya, wa in zip(a, b, y, w):
        ra, rb = ratings[ia], ratings[ib]
        expected = 1.0 / (1.0 + exp((rb - ra) * step))
        delta = k * wa * (ya - expected)
        ratings[ia] = ra + delta
        ratings[ib] = rb - delta
    return np.asarray(ratings)


@declare_options(*ELO_OPTIONS)
def fit_elo(
    comparisons: Comparisons,
    *,
    k: float = 4.0,
    base: float = 10.0,
    scale: float = 400.0,
    initial: float = 1000.0,
) -> Leaderboard:
    """Online Elo (see :func:`elo_ratings`) as a Leaderboard on the Elo scale.

    Elo has no likelihood-based uncertainty; use :func:`pairkit.rating.bootstrap` for intervals (FastChat
    bootstraps by reshuffling the battles).

    Example:

        >>> from pairkit import Comparisons
        >>> from pairkit.rating import fit_elo
        >>> comps = Comparisons.from_arrays(['a', 'b', 'a'], ['b', 'c', 'c'])
        >>> board = fit_elo(comps, k=32)
        >>> print(dict(zip(board.items, board.ratings.round(1).tolist())))
        {'a': 1030.5, 'b': 1000.7, 'c': 968.8}
    """
    check_comparisons(comparisons, "elo")
    ratings = unchecked(elo_ratings)(comparisons, k=k, base=base, scale=scale, initial=initial)  # checked above
    factor = scale / math.log(base)
    n = comparisons.pair_counts().games_per_item()
    return Leaderboard(
        items=comparisons.items,
        scores=(ratings - initial) / factor,
        model="elo",
        n=n,
        win_rate=win_rate(comparisons),
        n_comparisons=len(comparisons),
        params={"k": k, "base": base, "scale": scale, "initial": initial},
        scale_name="elo",
        scale_factor=factor,
        offset=initial,
    )
