"""Spectral rankings: stationary distributions and principal eigenvectors of comparison graphs.

References:
    Negahban, S., Oh, S. & Shah, D. (2017). Rank centrality: ranking from pairwise comparisons.
    Operations Research 65(1), 266–287.
    Page, L., Brin, S., Motwani, R. & Winograd, T. (1999). The PageRank citation ranking: bringing order to
    the web. Stanford InfoLab technical report.
    Keener, J. P. (1993). The Perron–Frobenius theorem and the ranking of football teams. SIAM Review 35(1).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.sparse import csgraph

from pairkit._spec import Interval, Option, declare_options, unchecked
from pairkit.data.comparisons import Comparisons
from pairkit.errors import ConvergenceError, EstimationError
from pairkit.rating._checks import MAX_ITER, PRIOR, TOL, check_comparisons
from pairkit.rating._stats import games_per_item, score_board
from pairkit.rating.leaderboard import LOG_STRENGTH, Leaderboard, bradley_terry_predictor

__all__ = [
    "fit_eigenvector",
    "fit_pagerank",
    "fit_rank_centrality",
    "pagerank_scores",
    "perron_vector",
    "rank_centrality_scores",
    "stationary_distribution",
]


# ---------------------------------------------------------------------------------------------- linear algebra
def stationary_distribution(rates: sp.spmatrix | np.ndarray, items: tuple[str, ...] | None = None) -> np.ndarray:
    """Stationary distribution π (summing to 1) of the continuous-time Markov chain with off-diagonal ``rates``.

    .. math::

        \\pi^\\top Q = 0,\\quad \\sum_i \\pi_i = 1,\\qquad Q = R - \\operatorname{diag}(R\\mathbf 1)

    Solved directly (sparse LU) after checking that the chain is irreducible; otherwise the distribution is not
    unique (or vanishes on some states) and :class:`EstimationError` names the items involved.

    Args:
        rates: (n, n) non-negative transition rates ``R[i, j]`` from ``i`` to ``j`` (diagonal ignored).

    >>> import numpy as np
    >>> from pairkit.rating import stationary_distribution
    >>> print(stationary_distribution(np.array([[0.0, 1.0], [3.0, 0.0]])).round(4))
    [0.75 0.25]
    """
    rates = sp.csr_matrix(rates, dtype=float)
    rates.setdiag(0.0)
    rates.eliminate_zeros()
    n = rates.shape[0]
    if n == 1:
        return np.ones(1)
    n_comp, labels = csgraph.connected_components(rates, directed=True, connection="strong")
    if n_comp > 1:
        names = items or tuple(str(k) for k in range(n))
        sizes = np.bincount(labels)
        small = np.flatnonzero(labels == np.argmin(sizes))[:8]
        raise EstimationError(
            f"the comparison Markov chain is not irreducible ({n_comp} strongly connected groups, e.g. "
            f"{[names[k] for k in small]}): some items never beat or never lost to the rest, so the stationary "
            "distribution is not unique or is zero there. Use alpha > 0 (virtual comparisons) or fit components "
            "separately."
        )
    generator = (rates - sp.diags(np.asarray(rates.sum(axis=1)).ravel())).T.tolil()
    generator[n - 1, :] = np.ones(n)  # replace one (redundant) balance equation by the normalisation
    rhs = np.zeros(n)
    rhs[-1] = 1.0
    pi = spla.spsolve(generator.tocsc(), rhs)
    if not np.all(np.isfinite(pi)) or np.any(pi <= 0):
        raise EstimationError("stationary distribution: the linear solve failed (numerically singular chain)")
    return pi / pi.sum()


def perron_vector(matrix: sp.spmatrix | np.ndarray, *, tol: float = 1e-13, max_iter: int = 100_000) -> np.ndarray:
    """Principal (Perron) eigenvector of a non-negative irreducible matrix, normalised to sum 1.

    .. math::

        A x = \\lambda_{\\max} x,\\qquad x > 0,\\ \\sum_i x_i = 1

    Power iteration on ``A + I`` (same eigenvector, and aperiodic even when ``A`` is bipartite).

    Args:
        matrix: (n, n) non-negative, irreducible.

    >>> import numpy as np
    >>> from pairkit.rating import perron_vector
    >>> print(perron_vector(np.array([[0.0, 2.0], [1.0, 0.0]])).round(4))
    [0.5858 0.4142]
    """
    a = sp.csr_matrix(matrix, dtype=float)
    n = a.shape[0]
    shifted = a + sp.identity(n, format="csr")
    x = np.full(n, 1.0 / n)
    for _ in range(max_iter):
        y = shifted @ x
        y /= y.sum()
        if np.abs(y - x).sum() < tol:
            return y
        x = y
    raise ConvergenceError(f"power iteration did not converge in {max_iter} iterations (tol {tol})")


# ---------------------------------------------------------------------------------------------- rank centrality
ALPHA = Option("alpha", float, Interval(0, None), doc="virtual comparisons between every pair")
DAMPING = Option("damping", float, Interval(0, 1, closed="left"), doc="probability of following a link")


@declare_options(ALPHA)
def rank_centrality_scores(comparisons: Comparisons, *, alpha: float = 0.0) -> np.ndarray:
    """Rank Centrality: stationary distribution of a walk from ``i`` to ``j`` at the rate ``j`` beat ``i``.

    .. math::

        R_{ij} = \\frac{w_{ji} + \\alpha}{w_{ij} + w_{ji} + 2\\alpha},\\qquad
        \\pi^\\top (R - \\operatorname{diag}(R\\mathbf 1)) = 0

    with ``w_ji`` the (weighted) wins of ``j`` over ``i`` (ties half) and ``α`` virtual comparisons between every
    pair (as ``choix.rank_centrality``'s ``alpha``; with α = 0 only compared pairs have rates). The discrete
    chain of the paper, ``P = R / d_max`` plus self-loops, has the same stationary distribution.

    Paper: Negahban, Oh & Shah (2017), "Rank centrality: ranking from pairwise comparisons".

    Returns:
        (n_items,) stationary probabilities.

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"])
    >>> from pairkit.rating import rank_centrality_scores
    >>> print(rank_centrality_scores(comps).round(3))
    [0.6 0.2 0.2]
    """
    counts = comparisons.pair_counts(ties="half")
    n = comparisons.n_items
    i, j, wi, wj = counts.i, counts.j, counts.wins_i, counts.wins_j
    if alpha > 0:
        wins = np.full((n, n), float(alpha))
        np.add.at(wins, (i, j), wi)
        np.add.at(wins, (j, i), wj)
        rates = wins.T / (wins + wins.T)  # rates[x, y] = wins of y over x / games
        return stationary_distribution(rates, comparisons.items)
    total = wi + wj
    keep = total > 0
    i, j, wi, wj, total = i[keep], j[keep], wi[keep], wj[keep], total[keep]
    rates = sp.csr_matrix(
        (np.concatenate([wj / total, wi / total]), (np.concatenate([i, j]), np.concatenate([j, i]))), shape=(n, n)
    )
    return stationary_distribution(rates, comparisons.items)


@declare_options(ALPHA)
def fit_rank_centrality(comparisons: Comparisons, *, alpha: float = 0.0) -> Leaderboard:
    """Rank Centrality ratings: centred log stationary probabilities (comparable to Bradley–Terry log-strengths).

    .. math::

        \\theta_i = \\log \\pi_i - \\frac1n \\sum_k \\log \\pi_k

    Under Bradley–Terry the stationary distribution is proportional to the strengths, so θ estimates the
    log-strengths. Paper: Negahban, Oh & Shah (2017), "Rank centrality: ranking from pairwise comparisons".

    Args:
        comparisons: n comparisons (ties count half a win each way; weights multiply).

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"])
    >>> from pairkit.rating import fit_rank_centrality
    >>> board = fit_rank_centrality(comps)
    >>> [(item, round(float(s), 3)) for item, s in zip(board.items, board.scores)]
    [('a', 0.732), ('b', -0.366), ('c', -0.366)]
    """
    check_comparisons(comparisons, "rank_centrality")
    pi = unchecked(rank_centrality_scores)(comparisons, alpha=alpha)  # alpha: checked by this fit
    theta = np.log(pi)
    return score_board(comparisons.items, theta - theta.mean(), model="rank_centrality", score_scale=LOG_STRENGTH,
                       scale_name="log", predictor=bradley_terry_predictor, games=games_per_item(comparisons),
                       n_comparisons=len(comparisons), params={"alpha": float(alpha)}, columns={"stationary": pi})


# ---------------------------------------------------------------------------------------------- PageRank
@declare_options(DAMPING, TOL, MAX_ITER)
def pagerank_scores(
    comparisons: Comparisons, *, damping: float = 0.85, tol: float = 1e-12, max_iter: int = 10_000
) -> np.ndarray:
    """PageRank of the win graph: every loss is a link from the loser to the winner, weighted by its count.

    .. math::

        \\pi_i = \\frac{1-d}{n}
        + d\\Big(\\sum_j \\pi_j\\frac{w_{ij}}{\\ell_j} + \\frac1n\\sum_{j:\\,\\ell_j=0}\\pi_j\\Big)

    with ``w_ij`` the wins of ``i`` over ``j`` (ties half each way) and ``ℓ_j = Σ_i w_ij`` the losses of ``j``;
    items that never lost spread their score uniformly (networkx's default for dangling nodes).

    Paper: Page, Brin, Motwani & Winograd (1999), "The PageRank citation ranking: bringing order to the web".

    Returns:
        (n_items,) scores summing to 1.

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"])
    >>> from pairkit.rating import pagerank_scores
    >>> print(pagerank_scores(comps).round(3))
    [0.374 0.258 0.368]
    """
    n = comparisons.n_items
    wins = comparisons.pair_counts(ties="half").wins_matrix()  # W[x, y]: wins of x over y
    losses = np.asarray(wins.sum(axis=0)).ravel()
    dangling = losses == 0
    with np.errstate(divide="ignore"):
        inv_losses = np.where(dangling, 0.0, 1.0 / losses)
    link = wins @ sp.diags(inv_losses)  # column j: where j's losses send its score
    pi = np.full(n, 1.0 / n)
    for _ in range(max_iter):
        new = damping * (link @ pi + pi[dangling].sum() / n) + (1.0 - damping) / n
        if np.abs(new - pi).sum() < tol:
            return new / new.sum()
        pi = new
    raise ConvergenceError(f"PageRank did not converge in {max_iter} iterations (tol {tol})")


@declare_options(DAMPING, TOL, MAX_ITER)
def fit_pagerank(
    comparisons: Comparisons, *, damping: float = 0.85, tol: float = 1e-12, max_iter: int = 10_000
) -> Leaderboard:
    """PageRank ratings of the win graph (scale ``"pagerank"``: scores sum to 1); see :func:`pagerank_scores`.

    .. math::

        \\pi = \\frac{1-d}{n}\\mathbf 1 + d\\,M\\pi

    Paper: Page, Brin, Motwani & Winograd (1999), "The PageRank citation ranking: bringing order to the web".

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"])
    >>> from pairkit.rating import fit_pagerank
    >>> board = fit_pagerank(comps)
    >>> [(item, round(float(s), 3)) for item, s in zip(board.items, board.scores)]
    [('a', 0.374), ('b', 0.258), ('c', 0.368)]
    """
    check_comparisons(comparisons, "pagerank")
    pi = unchecked(pagerank_scores)(comparisons, damping=damping, tol=tol, max_iter=max_iter)  # checked above
    return score_board(comparisons.items, pi, model="pagerank", score_scale="PageRank pi",
                       games=games_per_item(comparisons), n_comparisons=len(comparisons),
                       params={"damping": float(damping)})


# ---------------------------------------------------------------------------------------------- Keener
@declare_options(PRIOR, TOL, MAX_ITER)
def fit_eigenvector(
    comparisons: Comparisons, *, prior: float = 1.0, tol: float = 1e-13, max_iter: int = 100_000
) -> Leaderboard:
    """Keener's eigenvector ranking: the Perron vector of the matrix of (smoothed) pairwise win fractions.

    .. math::

        A_{ij} = \\frac{w_{ij} + p}{w_{ij} + w_{ji} + 2p}\\ \\text{(compared pairs, else 0)},\\qquad
        A r = \\lambda_{\\max} r

    so an item is strong when it beats strong items (``p`` = ``prior`` virtual wins each way, Laplace's rule).
    Scores sum to 1 (scale ``"eigenvector"``). The comparison graph must be connected.

    Paper: Keener (1993), "The Perron–Frobenius theorem and the ranking of football teams".

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"])
    >>> from pairkit.rating import fit_eigenvector
    >>> board = fit_eigenvector(comps)
    >>> [(item, round(float(s), 3)) for item, s in zip(board.items, board.scores)]
    [('a', 0.394), ('b', 0.321), ('c', 0.285)]
    """
    check_comparisons(comparisons, "eigenvector")
    counts = comparisons.pair_counts(ties="half")
    n = comparisons.n_items
    i, j, wi, wj = counts.i, counts.j, counts.wins_i, counts.wins_j
    total = wi + wj + 2 * prior
    keep = total > 0
    i, j, wi, wj, total = i[keep], j[keep], wi[keep], wj[keep], total[keep]
    a = sp.csr_matrix(
        (
            np.concatenate([(wi + prior) / total, (wj + prior) / total]),
            (np.concatenate([i, j]), np.concatenate([j, i])),
        ),
        shape=(n, n),
    )
    n_comp, labels = csgraph.connected_components(a, directed=True, connection="strong")
    if n_comp > 1:
        small = np.flatnonzero(labels == np.argmin(np.bincount(labels)))[:8]
        raise EstimationError(
            f"eigenvector ranking needs a connected comparison graph with positive win fractions; found {n_comp} "
            f"groups, e.g. {[comparisons.items[k] for k in small]}. Use prior > 0 or fit components separately."
        )
    r = perron_vector(a, tol=tol, max_iter=max_iter)
    return score_board(comparisons.items, r, model="eigenvector", score_scale="Perron vector",
                       games=games_per_item(comparisons), n_comparisons=len(comparisons),
                       params={"prior": float(prior)})
