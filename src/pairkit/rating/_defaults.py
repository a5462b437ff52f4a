"""Registered wrappers with other defaults (private; public as :func:`pairkit.rating.registry.fit_davidson` and
:func:`~pairkit.rating.registry.fit_bayeselo_defaults`, imported when first used)."""

from __future__ import annotations

from pairkit._spec import declare_options, unchecked
from pairkit.data.comparisons import Comparisons
from pairkit.rating._checks import LEVEL, MAX_ITER, PRIOR, TOL
from pairkit.rating.bayeselo import fit_bayeselo
from pairkit.rating.bradley_terry import PAIRWISE_INTERVALS, fit_bradley_terry
from pairkit.rating.leaderboard import Leaderboard

__all__ = ["fit_bayeselo_defaults", "fit_davidson"]


@declare_options(PRIOR, PAIRWISE_INTERVALS, LEVEL, TOL, MAX_ITER)
def fit_davidson(
    comparisons: Comparisons,
    *,
    prior: float = 0.0,
    intervals: str = "auto",
    level: float = 0.95,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> Leaderboard:
    """Bradley–Terry with Davidson's (1970) tie parameter (``fit_bradley_terry(ties="davidson")``).

    >>> from pairkit import Comparisons
    >>> comps = Comparisons.from_arrays([0, 1, 2, 0, 0, 1, 2], [1, 2, 0, 1, 2, 2, 1], [1, 1, 1, 0.5, 1, 0.5, 0],
    ...                                 items=["a", "b", "c"])
    >>> from pairkit.rating import fit_davidson
    >>> board = fit_davidson(comps, prior=1.0)
    >>> [(item, round(float(s), 3)) for item, s in zip(board.items, board.scores)]
    [('a', 0.332), ('b', 0.24), ('c', -0.572)]
    """
    return unchecked(fit_bradley_terry)(comparisons, ties="davidson", prior=prior, intervals=intervals, level=level,
                                        tol=tol, max_iter=max_iter)  # the options: checked by this fit's wrapper


@declare_options(PAIRWISE_INTERVALS, LEVEL, TOL, MAX_ITER)
def fit_bayeselo_defaults(
    comparisons: Comparisons, *, intervals: str = "auto", level: float = 0.95, tol: float = 1e-10, max_iter: int = 100
) -> Leaderboard:
    """bayeselo with its defaults (advantage 32.8, drawelo 97.3, prior 2 virtual draws, ``mm`` with fixed
    constants); ratings on bayeselo's printed scale.

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"],
    ...                                 a_first=[1, 1, 1, 1, 1, 1])
    >>> from pairkit.rating import fit_bayeselo_defaults
    >>> board = fit_bayeselo_defaults(comps)
    >>> [(item, round(float(s), 1)) for item, s in zip(board.items, board.ratings)]
    [('a', 69.4), ('b', 0.0), ('c', -69.4)]
    """
    return unchecked(fit_bayeselo)(comparisons, intervals=intervals, level=level, tol=tol, max_iter=max_iter)
