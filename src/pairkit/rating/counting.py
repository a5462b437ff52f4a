"""Counting rankings: win rate, Borda, Copeland, duoT5's symmetric sum, LLaMA-Berry's Enhanced Borda Count, PRD's
Peer Rank.

Throughout, ``w_ij`` is the (weighted) number of wins of ``i`` over ``j`` with ties counted half, ``n_ij`` the
number of their comparisons and ``p̂_ij = w_ij / n_ij`` the empirical pairwise win fraction (compared pairs only).

References:
    Wilson, E. B. (1927). Probable inference, the law of succession, and statistical inference. JASA 22(158).
    de Borda, J.-C. (1781). Mémoire sur les élections au scrutin.
    Copeland, A. H. (1951). A reasonable social welfare function. Seminar on applications of mathematics to
    social sciences, University of Michigan.
    Pradeep, R., Nogueira, R. & Lin, J. (2021). The Expando-Mono-Duo design pattern for text ranking with
    pretrained sequence-to-sequence models. arXiv:2101.05667.
    Zhang, D. et al. (2024). LLaMA-Berry: Pairwise optimization for O1-like Olympiad-level mathematical
    reasoning. arXiv:2410.02884.
    Li, R., Patel, T. & Du, X. (2023). PRD: Peer Rank and Discussion improve large language model based
    evaluations. arXiv:2307.02762.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import special
from scipy.sparse import csgraph

from pairkit._spec import Option, declare_options
from pairkit.data.comparisons import Comparisons
from pairkit.errors import ConvergenceError, InputError
from pairkit.rating._checks import LEVEL, MAX_ITER, TOL, check_comparisons, intervals_option
from pairkit.rating._stats import games_per_item, score_board
from pairkit.rating.leaderboard import Leaderboard

__all__ = [
    "borda_scores",
    "copeland_scores",
    "duot5_scores",
    "enhanced_borda_scores",
    "fit_borda",
    "fit_copeland",
    "fit_duot5",
    "fit_enhanced_borda",
    "fit_peer_rank",
    "fit_win_rate",
    "peer_rank",
    "transitive_closure",
    "wilson_interval",
]


# ---------------------------------------------------------------------------------------------- helpers
def _pair_fractions(comparisons: Comparisons) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compared pairs ``(i, j)`` (i < j) and ``p̂_ij``, ties counting half."""
    counts = comparisons.pair_counts(ties="half")
    total = counts.wins_i + counts.wins_j
    keep = total > 0
    return counts.i[keep], counts.j[keep], counts.wins_i[keep] / total[keep]


def _board(comparisons: Comparisons, scores: np.ndarray, model: str, score_scale: str, **extra) -> Leaderboard:
    return score_board(comparisons.items, scores, model=model, score_scale=score_scale,
                       games=games_per_item(comparisons), n_comparisons=len(comparisons), **extra)


# ---------------------------------------------------------------------------------------------- win rate
@declare_options(LEVEL)
def wilson_interval(successes: np.ndarray, trials: np.ndarray, *, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial proportion (fractional counts allowed).

    .. math::

        \\frac{\\hat p + \\frac{z^2}{2n}}{1 + \\frac{z^2}{n}} \\pm \\frac{z}{1 + \\frac{z^2}{n}}
        \\sqrt{\\frac{\\hat p(1-\\hat p)}{n} + \\frac{z^2}{4n^2}}

    Paper: Wilson (1927), "Probable inference, the law of succession, and statistical inference".

    Args:
        successes, trials: (n,) arrays with ``0 ≤ successes ≤ trials`` and ``trials > 0``.

    >>> from pairkit.rating import wilson_interval
    >>> low, high = wilson_interval([8], [10])
    >>> round(float(low[0]), 3), round(float(high[0]), 3)
    (0.49, 0.943)
    """
    s, n = np.asarray(successes, dtype=float), np.asarray(trials, dtype=float)
    if np.any(n <= 0):
        raise InputError("wilson_interval: every proportion needs trials > 0")
    return _wilson(s, n, level)


def _wilson(s: np.ndarray, n: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    z = special.ndtri(0.5 + level / 2)
    p = s / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


@declare_options(intervals_option("auto", "wilson", "none"), LEVEL)
def fit_win_rate(comparisons: Comparisons, *, intervals: str = "auto", level: float = 0.95) -> Leaderboard:
    """Win rate of each item (ties half, weights multiply) with Wilson score intervals.

    .. math::

        \\hat r_i = \\frac{\\sum_j w_{ij}}{\\sum_j n_{ij}}

    Paper (interval): Wilson (1927), "Probable inference, the law of succession, and statistical inference".
    Every item must have been compared at least once. ``intervals``: ``"auto"`` (= ``"wilson"``) or ``"none"``.

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"])
    >>> from pairkit.rating import fit_win_rate
    >>> board = fit_win_rate(comps)
    >>> [(item, round(float(s), 3)) for item, s in zip(board.items, board.scores)]
    [('a', 0.75), ('b', 0.5), ('c', 0.25)]
    """
    check_comparisons(comparisons, "win_rate")
    games = games_per_item(comparisons)
    never = np.flatnonzero(games <= 0)
    if len(never):
        raise InputError(
            f"win rate: {len(never)} item(s) were never compared (e.g. {[comparisons.items[k] for k in never[:5]]}); "
            "drop them from the items or add comparisons"
        )
    n = comparisons.n_items
    w, o = comparisons.weight, comparisons.outcome
    wins = np.bincount(comparisons.a, w * o, n) + np.bincount(comparisons.b, w * (1 - o), n)
    rate = wins / games
    if intervals == "none":
        return _board(comparisons, rate, "win_rate", "win rate", win_rate=rate, level=level)
    low, high = _wilson(wins, games, level)
    return _board(
        comparisons,
        rate,
        "win_rate",
        "win rate",
        ci_low_log=low,
        ci_high_log=high,
        win_rate=rate,
        interval_method="wilson",
        level=level,
    )


# ---------------------------------------------------------------------------------------------- Borda, Copeland
def borda_scores(comparisons: Comparisons, *, average: bool = False) -> np.ndarray:
    """Borda count from pairwise comparisons: the sum over opponents of the empirical win fraction.

    .. math::

        b_i = \\sum_{j:\\,n_{ij}>0} \\hat p_{ij}\\qquad(\\text{divided by the number of opponents if average})

    With one comparison per pair of a complete design this is the classic Borda count (the number of
    items ranked below ``i``). Paper: de Borda (1781), "Mémoire sur les élections au scrutin".

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"])
    >>> from pairkit.rating import borda_scores
    >>> print(borda_scores(comps))
    [1.5 1.  0.5]
    """
    i, j, p = _pair_fractions(comparisons)
    n = comparisons.n_items
    score = np.bincount(i, p, n) + np.bincount(j, 1 - p, n)
    if average:
        opponents = np.bincount(i, minlength=n) + np.bincount(j, minlength=n)
        if np.any(opponents == 0):
            k = int(np.flatnonzero(opponents == 0)[0])
            raise InputError(f"average Borda: item {comparisons.items[k]!r} was never compared")
        score = score / opponents
    return score


@declare_options(Option("average", bool, doc="divide by the number of opponents"))
def fit_borda(comparisons: Comparisons, *, average: bool = False) -> Leaderboard:
    """Borda-count ratings; see :func:`borda_scores`.

    .. math::

        b_i = \\sum_{j} \\hat p_{ij}

    Paper: de Borda (1781), "Mémoire sur les élections au scrutin".

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"])
    >>> from pairkit.rating import fit_borda
    >>> board = fit_borda(comps)
    >>> [(item, round(float(s), 3)) for item, s in zip(board.items, board.scores)]
    [('a', 1.5), ('b', 1.0), ('c', 0.5)]
    """
    check_comparisons(comparisons, "borda")
    scale = "average Borda count" if average else "Borda count"
    return _board(comparisons, borda_scores(comparisons, average=average), "borda", scale)


def copeland_scores(comparisons: Comparisons) -> np.ndarray:
    """Copeland score: pairwise-majority victories minus defeats.

    .. math::

        c_i = \\sum_{j:\\,n_{ij}>0} \\operatorname{sign}\\big(\\hat p_{ij} - \\tfrac12\\big)

    Paper: Copeland (1951), "A reasonable social welfare function".

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"])
    >>> from pairkit.rating import copeland_scores
    >>> print(copeland_scores(comps))
    [ 1.  0. -1.]
    """
    i, j, p = _pair_fractions(comparisons)
    n = comparisons.n_items
    s = np.sign(p - 0.5)
    return np.bincount(i, s, n) - np.bincount(j, s, n)


def fit_copeland(comparisons: Comparisons) -> Leaderboard:
    """Copeland ratings; see :func:`copeland_scores`.

    .. math::

        c_i = \\#\\{j: \\hat p_{ij} > \\tfrac12\\} - \\#\\{j: \\hat p_{ij} < \\tfrac12\\}

    Paper: Copeland (1951), "A reasonable social welfare function".

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"])
    >>> from pairkit.rating import fit_copeland
    >>> board = fit_copeland(comps)
    >>> [(item, round(float(s), 3)) for item, s in zip(board.items, board.scores)]
    [('a', 1.0), ('b', 0.0), ('c', -1.0)]
    """
    check_comparisons(comparisons, "copeland")
    return _board(comparisons, copeland_scores(comparisons), "copeland", "Copeland score")


# ---------------------------------------------------------------------------------------------- duoT5
def duot5_scores(probs: np.ndarray) -> np.ndarray:
    """duoT5's symmetric-sum aggregation of order-dependent pairwise probabilities.

    .. math::

        s_i = \\sum_{j \\ne i} \\big(p_{i,j} + (1 - p_{j,i})\\big)

    where ``p_{i,j}`` is the model's probability that ``i`` is better when ``i`` is shown first. Missing
    ordered pairs are NaN and skipped (each term is added only when present); the diagonal is ignored.

    Paper: Pradeep, Nogueira & Lin (2021), "The Expando-Mono-Duo design pattern for text ranking with
    pretrained sequence-to-sequence models".

    Args:
        probs: (n, n) probabilities in [0, 1] or NaN.

    >>> import numpy as np
    >>> from pairkit.rating import duot5_scores
    >>> probs = np.array([[np.nan, 0.9, 0.8], [0.2, np.nan, 0.6], [0.3, 0.5, np.nan]])
    >>> print(duot5_scores(probs).round(3))
    [3.2 1.4 1.4]
    """
    p = np.array(probs, dtype=float)
    if p.ndim != 2 or p.shape[0] != p.shape[1]:
        raise InputError(f"probs must be a square (n, n) matrix, got shape {p.shape}")
    np.fill_diagonal(p, np.nan)
    present = ~np.isnan(p)
    if np.any(present & ((p < 0) | (p > 1))):
        raise InputError("probs must lie in [0, 1] (NaN marks a missing pair)")
    forward = np.where(present, p, 0.0).sum(axis=1)
    backward = np.where(present, 1.0 - p, 0.0).sum(axis=0)
    return forward + backward


def fit_duot5(comparisons: Comparisons) -> Leaderboard:
    """duoT5 symmetric-sum ratings from comparisons whose outcome is a judge's probability for the first-shown item.

    .. math::

        p_{i,j} = \\operatorname{mean}\\{\\text{outcome}: i \\text{ shown first against } j\\},\\qquad
        s_i = \\sum_{j \\ne i} \\big(p_{i,j} + (1 - p_{j,i})\\big)

    Row ``k`` shows ``a[k]`` first unless ``a_first[k]`` is False (then ``b[k]`` was first). Weighted means.
    Paper: Pradeep, Nogueira & Lin (2021), "The Expando-Mono-Duo design pattern for text ranking with
    pretrained sequence-to-sequence models".

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"])
    >>> from pairkit.rating import fit_duot5
    >>> board = fit_duot5(comps)
    >>> [(item, round(float(s), 3)) for item, s in zip(board.items, board.scores)]
    [('a', 2.0), ('b', 1.0), ('c', 1.0)]
    """
    check_comparisons(comparisons, "duot5")
    n = comparisons.n_items
    first, second, p = comparisons.a, comparisons.b, comparisons.outcome
    if comparisons.a_first is not None:
        swap = ~comparisons.a_first
        first, second = np.where(swap, second, first), np.where(swap, first, second)
        p = np.where(swap, 1.0 - p, p)
    key = first.astype(np.int64) * n + second
    w = comparisons.weight
    total = np.bincount(key, w, n * n)
    summed = np.bincount(key, w * p, n * n)
    with np.errstate(invalid="ignore", divide="ignore"):
        probs = np.where(total > 0, summed / total, np.nan).reshape(n, n)
    return _board(comparisons, duot5_scores(probs), "duot5", "duoT5 symmetric sum")


# ---------------------------------------------------------------------------------------------- LLaMA-Berry EBC
def transitive_closure(adjacency: np.ndarray | sp.spmatrix) -> np.ndarray:
    """Reachability matrix of a directed graph by Floyd–Warshall (``R[i, j]``: a path leads from i to j, i ≠ j).

    .. math::

        R_{ij} \\leftarrow R_{ij} \\lor (R_{ik} \\land R_{kj})\\quad\\text{for } k = 1..n

    >>> import numpy as np
    >>> from pairkit.rating import transitive_closure
    >>> print(transitive_closure(np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])).astype(int))
    [[0 1 1]
     [0 0 1]
     [0 0 0]]
    """
    dist = csgraph.floyd_warshall(sp.csr_matrix(adjacency, dtype=float), directed=True, unweighted=True)
    reach = np.isfinite(dist)
    np.fill_diagonal(reach, False)
    return reach


def enhanced_borda_scores(comparisons: Comparisons) -> np.ndarray:
    """LLaMA-Berry's Enhanced Borda Count: Borda count on the transitive closure of the majority-preference graph.

    .. math::

        E = \\{(i, j): \\hat p_{ij} > \\tfrac12\\},\\qquad
        s_i = \\#\\{j \\ne i: j \\text{ reachable from } i \\text{ in } E\\}

    Transitivity fills in the pairs that were never compared: if ``i ≻ k`` and ``k ≻ j`` then ``i ≻ j``.

    Paper: Zhang et al. (2024), "LLaMA-Berry: Pairwise optimization for O1-like Olympiad-level mathematical
    reasoning" (EBC: Floyd–Warshall closure of the preference matrix, then Borda count).

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"])
    >>> from pairkit.rating import enhanced_borda_scores
    >>> print(enhanced_borda_scores(comps))
    [2. 1. 0.]
    """
    i, j, p = _pair_fractions(comparisons)
    n = comparisons.n_items
    src = np.concatenate([i[p > 0.5], j[p < 0.5]])
    dst = np.concatenate([j[p > 0.5], i[p < 0.5]])
    adjacency = sp.csr_matrix((np.ones(len(src)), (src, dst)), shape=(n, n))
    return transitive_closure(adjacency).sum(axis=1).astype(float)


def fit_enhanced_borda(comparisons: Comparisons) -> Leaderboard:
    """Enhanced Borda Count ratings (LLaMA-Berry); see :func:`enhanced_borda_scores`.

    .. math::

        s_i = \\sum_{j \\ne i} [\\,i \\leadsto j\\,]

    Paper: Zhang et al. (2024), "LLaMA-Berry: Pairwise optimization for O1-like Olympiad-level mathematical
    reasoning".

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"])
    >>> from pairkit.rating import fit_enhanced_borda
    >>> board = fit_enhanced_borda(comps)
    >>> [(item, round(float(s), 3)) for item, s in zip(board.items, board.scores)]
    [('a', 2.0), ('b', 1.0), ('c', 0.0)]
    """
    check_comparisons(comparisons, "enhanced_borda")
    return _board(comparisons, enhanced_borda_scores(comparisons), "enhanced_borda", "enhanced Borda count")


# ---------------------------------------------------------------------------------------------- PRD Peer Rank
def peer_rank(
    comparisons: Comparisons,
    reviewers: Sequence[str] | np.ndarray,
    *,
    exclude_self: bool = False,
    tol: float = 1e-10,
    max_iter: int = 1000,
) -> tuple[np.ndarray, np.ndarray, int]:
    """PRD's Peer Rank: reviewer-weighted win rates, where each reviewer's weight is its own (normalised) score.

    .. math::

        s_i^{(t)} = \\frac{\\sum_{k \\ni i} W^{(t-1)}_{r_k}\\,v_k\\,o_{k,i}}{\\sum_{k \\ni i} W^{(t-1)}_{r_k}\\,v_k},
        \\qquad W^{(t)}_r = \\frac{s^{(t)}_{r}}{\\sum_{r'} s^{(t)}_{r'}}

    over the comparisons ``k`` involving ``i``, judged by reviewer ``r_k`` with weight ``v_k`` and outcome
    ``o_{k,i}`` for ``i`` (1 win, ½ tie, 0 loss); ``W⁽⁰⁾`` is uniform. Reviewers are contestants (a reviewer's
    name must be an item). Iterated to the fixed point (largest score change below ``tol``).
    ``exclude_self=True`` drops the judgments a reviewer made on its own battles (self-enhancement bias).

    Paper: Li, Patel & Du (2023), "PRD: Peer Rank and Discussion improve large language model based
    evaluations" (Section 3.1, Peer Rank).

    Args:
        comparisons: n comparisons.
        reviewers: (n,) name of the reviewer (an item) that judged each comparison.
    Returns:
        ``(scores, reviewer_weights, iterations)``; scores and weights have shape (n_items,) (weight 0 for
        items that never reviewed).

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"])
    >>> from pairkit.rating import peer_rank
    >>> scores, weights, iterations = peer_rank(comps, ['a', 'b', 'c', 'a', 'b', 'c'])
    >>> print(scores.round(3), weights.round(3))
    [0.877 0.222 0.278] [0.637 0.161 0.202]
    """
    rev = np.asarray(reviewers).astype(str)
    if rev.shape != (len(comparisons),):
        raise InputError(f"reviewers must have one entry per comparison ({len(comparisons)}), got shape {rev.shape}")
    lookup = pd.Index(comparisons.items)
    rev_item = lookup.get_indexer(rev)
    if np.any(rev_item < 0):
        k = int(np.flatnonzero(rev_item < 0)[0])
        raise InputError(
            f"reviewers[{k}] = {rev[k]!r} is not one of the items: Peer Rank weighs each reviewer by its own score "
            "as a contestant, so every reviewer must also be compared"
        )
    n = comparisons.n_items
    games = games_per_item(comparisons)
    reviewing = np.unique(rev_item)
    if np.any(games[reviewing] <= 0):
        k = int(reviewing[np.flatnonzero(games[reviewing] <= 0)[0]])
        raise InputError(f"reviewer {comparisons.items[k]!r} was never compared, so it has no score to weigh by")
    a, b, o, v = comparisons.a, comparisons.b, comparisons.outcome, comparisons.weight
    if exclude_self:
        v = np.where((rev_item == a) | (rev_item == b), 0.0, v)
    weight = np.zeros(n)
    weight[reviewing] = 1.0 / len(reviewing)
    scores = np.zeros(n)
    for it in range(1, max_iter + 1):
        row_w = weight[rev_item] * v
        total = np.bincount(a, row_w, n) + np.bincount(b, row_w, n)
        won = np.bincount(a, row_w * o, n) + np.bincount(b, row_w * (1 - o), n)
        with np.errstate(invalid="ignore", divide="ignore"):
            new = np.where(total > 0, won / total, 0.0)
        new_weight = np.zeros(n)
        new_weight[reviewing] = new[reviewing]
        mass = new_weight.sum()
        if mass <= 0:
            raise ConvergenceError("Peer Rank: every reviewer has score 0, so no reviewer weight is left")
        new_weight /= mass
        change = np.abs(new - scores).max()
        scores, weight = new, new_weight
        if change < tol:
            return scores, weight, it
    raise ConvergenceError(f"Peer Rank did not reach a fixed point in {max_iter} iterations (tol {tol})")


@declare_options(Option("exclude_self", bool, doc="drop each reviewer's judgments of itself"), TOL, MAX_ITER)
def fit_peer_rank(
    comparisons: Comparisons,
    *,
    reviewers: Sequence[str] | np.ndarray | None = None,
    exclude_self: bool = False,
    tol: float = 1e-10,
    max_iter: int = 1000,
) -> Leaderboard:
    """PRD Peer Rank ratings (scale ``"peer_rank"``: reviewer-weighted win rates); see :func:`peer_rank`.

    .. math::

        s_i = \\frac{\\sum_k W_{r_k} v_k o_{k,i}}{\\sum_k W_{r_k} v_k},\\qquad W_r \\propto s_r

    Paper: Li, Patel & Du (2023), "PRD: Peer Rank and Discussion improve large language model based evaluations".

    Args:
        reviewers: (n,) reviewer name per comparison (required; each must be an item).

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"])
    >>> from pairkit.rating import fit_peer_rank
    >>> board = fit_peer_rank(comps, reviewers=['a', 'b', 'c', 'a', 'b', 'c'])
    >>> [(item, round(float(s), 3)) for item, s in zip(board.items, board.scores)]
    [('a', 0.877), ('b', 0.222), ('c', 0.278)]
    """
    check_comparisons(comparisons, "peer_rank")
    if reviewers is None:
        raise InputError("peer_rank needs reviewers=: the name of the contestant that judged each comparison")
    scores, weights, iterations = peer_rank(
        comparisons, reviewers, exclude_self=exclude_self, tol=tol, max_iter=max_iter
    )
    never = np.flatnonzero(games_per_item(comparisons) <= 0)
    if len(never):
        raise InputError(f"peer rank: item(s) never compared: {[comparisons.items[k] for k in never[:5]]}; drop them")
    return _board(comparisons, scores, "peer_rank", "reviewer-weighted win rate", columns={"reviewer_weight": weights},
                  params={"iterations": float(iterations)})
