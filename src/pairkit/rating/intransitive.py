"""Intransitive preferences: the blade-chest model and diagnostics that find cycles in pair win rates.

Bradley–Terry puts items on a line, so it can never predict rock–paper–scissors. The blade-chest-inner model of
Chen & Joachims (2016) gives each item a "blade" and a "chest" vector; how well ``a``'s blade hits ``b``'s chest
minus the reverse is a skew-symmetric matchup term that can be cyclic, added here to Bradley–Terry strengths:

.. math::

    P(a \\succ b) = \\sigma(\\gamma_a - \\gamma_b + u_a^\\top v_b - u_b^\\top v_a)

Fitted by L-BFGS on the L2-penalised log-likelihood (the objective is not convex: random start by ``seed``).

References:
    Chen, S. & Joachims, T. (2016). Modeling intransitivity in matchup and comparison data. WSDM 2016.
    Seidman, S. B. (1983). Network structure and minimum degree. Social Networks 5(3) (the 2-core used by
    :func:`check_blade_chest_identified`).
    Kendall, M. G. & Babington Smith, B. (1940). On the method of paired comparisons. Biometrika 31.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import special

from pairkit._spec import Interval, Option, declare_options
from pairkit.data.comparisons import Comparisons
from pairkit.errors import ConvergenceError, NoMLEError, NotIdentifiedError, PairkitWarning
from pairkit.rating._checks import MAX_ITER, check_comparisons, item_names
from pairkit.rating._stats import win_rate
from pairkit.rating.leaderboard import Leaderboard

__all__ = [
    "UnidentifiedMatchupWarning",
    "blade_chest_objective",
    "check_blade_chest_identified",
    "count_intransitive_triads",
    "fit_blade_chest",
    "intransitive_triads",
]

RIDGE_STRENGTH = 1e-3
"""``l2_strength`` from which the strengths are a ridge estimate, finite whatever the data; below it they are
(essentially) maximum likelihood and must exist (:func:`check_blade_chest_identified`)."""


class UnidentifiedMatchupWarning(PairkitWarning):
    """Some items' blade and chest vectors are set by the penalty alone (they lie on no cycle of comparisons).

    >>> from pairkit.errors import PairkitWarning
    >>> from pairkit.rating import UnidentifiedMatchupWarning
    >>> issubclass(UnidentifiedMatchupWarning, PairkitWarning)
    True
    """


def _two_core(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Items in the 2-core of the comparison graph (what remains after peeling items with one neighbour, again
    and again): exactly the items with a cycle of distinct compared pairs through them or between two cycles."""
    alive = np.ones(n, dtype=bool)
    edge = np.ones(len(i), dtype=bool)
    while True:  # one vectorised peel per level of the hanging trees (a handful on real designs)
        degree = np.bincount(i[edge], minlength=n) + np.bincount(j[edge], minlength=n)
        leaves = alive & (degree <= 1)
        if not leaves.any():
            return alive
        alive &= ~leaves
        edge &= alive[i] & alive[j]


def check_blade_chest_identified(comparisons: Comparisons, *, l2_strength: float = 1e-6) -> np.ndarray:
    """Refuse data that cannot determine the blade-chest model; return the items whose matchup vectors can't be.

    Three checks, each a property of the comparison graph (pairs compared, ties counted half):

    - **Strengths**: the matchup term is bounded by its L2 penalty, so the strengths γ diverge exactly when
      Bradley–Terry's do (Ford 1957: an unbeaten or winless group, a never-compared item, a disconnected graph).
      Below :data:`RIDGE_STRENGTH` the tiny ``l2_strength`` would stop them at arbitrary values of order
      ``log(1/l2_strength)``: :class:`~pairkit.errors.NoMLEError` naming the items.
    - **Any matchup term**: with logits ``d_ij = γ_i − γ_j + u_i·v_j − u_j·v_i``, the strengths alone reproduce
      any logits on the compared pairs when those pairs form no cycle (a tree or star design: n − 1 pairs, one
      path between any two items), so every blade and chest vector is unidentified:
      :class:`~pairkit.errors.NotIdentifiedError`.
    - **Some items' matchups**: an item outside the graph's 2-core (on a branch hanging off the cycles, e.g.
      compared with one opponent only) has its own γ free to absorb its blade and chest, which only the penalty
      then sets. Returned as a boolean mask (the caller warns).

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"])
    >>> from pairkit.rating import check_blade_chest_identified
    >>> check_blade_chest_identified(comps).shape
    (3,)
    """
    from pairkit.rating.bradley_terry import check_mle_exists

    counts = comparisons.pair_counts(ties="half")
    n = counts.n_items
    if l2_strength < RIDGE_STRENGTH:
        try:
            check_mle_exists(counts, comparisons.items)
        except NoMLEError as err:
            raise NoMLEError(
                f"blade_chest: {err} (blade_chest has no prior: give l2_strength >= {RIDGE_STRENGTH:g} for a ridge "
                f"estimate instead; with l2_strength={l2_strength:g} the strengths would stop at arbitrary values of "
                "order log(1/l2_strength))"
            ) from None
    live = counts.total > 0
    i, j = counts.i[live], counts.j[live]
    core = _two_core(n, i, j)
    if not core.any():
        raise NotIdentifiedError(
            f"not identified: the {len(i)} compared pairs of the {n} items form no cycle (each pair of items is "
            "linked by a single path of comparisons, as in a star or a chain design), so strengths alone fit these "
            "data exactly as well as any blade-chest term: the blade and chest vectors, and every prediction for a "
            "pair never compared, would come from the penalty alone. Compare items in cycles (a with b, b with c, c "
            "with a) or fit without a matchup term (--model bt)."
        )
    return ~core


def _pair_design(comparisons: Comparisons):
    counts = comparisons.pair_counts(ties="half")
    n, k = counts.n_items, len(counts.i)
    rows = np.arange(k)
    s_i = sp.csr_matrix((np.ones(k), (rows, counts.i)), shape=(k, n))
    s_j = sp.csr_matrix((np.ones(k), (rows, counts.j)), shape=(k, n))
    return counts, s_i, s_j


def blade_chest_objective(
    params: np.ndarray, counts, s_i: sp.csr_matrix, s_j: sp.csr_matrix, dim: int, l2: float, l2_strength: float
) -> tuple[float, np.ndarray]:
    """Negative penalised log-likelihood of blade-chest-inner and its gradient (vectorised over pairs).

    ``params`` packs γ (n), blades U (n·dim) and chests V (n·dim).

    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> from pairkit import Comparisons
    >>> from pairkit.rating import blade_chest_objective
    >>> comps = Comparisons.from_arrays([0, 1, 2], [1, 2, 0], [1, 1, 1], items=["a", "b", "c"])
    >>> counts = comps.pair_counts(ties="half")
    >>> k, n = len(counts.i), counts.n_items
    >>> s_i = sp.csr_matrix((np.ones(k), (np.arange(k), counts.i)), shape=(k, n))
    >>> s_j = sp.csr_matrix((np.ones(k), (np.arange(k), counts.j)), shape=(k, n))
    >>> value, grad = blade_chest_objective(np.zeros(n * 3), counts, s_i, s_j, 1, 0.01, 1e-6)
    >>> round(float(value), 4), grad.shape  # at zero every game is a coin flip: 3 log 2
    (2.0794, (9,))
    """
    n = counts.n_items
    gamma = params[:n]
    U = params[n : n + n * dim].reshape(n, dim)
    V = params[n + n * dim :].reshape(n, dim)
    i, j = counts.i, counts.j
    m = gamma[i] - gamma[j] + np.einsum("kd,kd->k", U[i], V[j]) - np.einsum("kd,kd->k", U[j], V[i])
    wi, wj = counts.wins_i + counts.ties / 2, counts.wins_j + counts.ties / 2
    loglik = np.sum(wi * special.log_expit(m) + wj * special.log_expit(-m))
    r = wi - (wi + wj) * special.expit(m)  # ∂ℓ/∂m
    g_gamma = s_i.T @ r - s_j.T @ r
    g_u = s_i.T @ (r[:, None] * V[j]) - s_j.T @ (r[:, None] * V[i])
    g_v = s_j.T @ (r[:, None] * U[i]) - s_i.T @ (r[:, None] * U[j])
    penalty = 0.5 * l2 * (np.sum(U**2) + np.sum(V**2)) + 0.5 * l2_strength * np.sum(gamma**2)
    grad = np.concatenate([g_gamma - l2_strength * gamma, (g_u - l2 * U).ravel(), (g_v - l2 * V).ravel()])
    return -(loglik - penalty), -grad


@declare_options(
    Option("dim", int, Interval(1, None), doc="blade/chest dimension"),
    Option("l2", float, Interval(0, None), doc="L2 penalty on the blade and chest vectors"),
    Option("l2_strength", float, Interval(0, None), doc="L2 penalty fixing the strengths' scale"),
    Option("seed", (int, np.random.Generator), doc="random start"),
    Option("init_scale", float, Interval(0, None), doc="spread of the random start"),
    MAX_ITER,
)
def fit_blade_chest(
    comparisons: Comparisons,
    *,
    dim: int = 2,
    l2: float = 1e-2,
    l2_strength: float = 1e-6,
    seed: int | np.random.Generator = 0,
    init_scale: float = 0.1,
    max_iter: int = 5000,
) -> Leaderboard:
    """Fit Chen & Joachims's (2016) blade-chest-inner model plus Bradley–Terry strengths.

    .. math::

        \\max_{\\gamma, U, V}\\ \\sum_k w_k \\log \\sigma(\\pm m_k) - \\tfrac{\\lambda}{2}(\\lVert U\\rVert^2 +
        \\lVert V\\rVert^2),\\qquad m_k = \\gamma_a - \\gamma_b + u_a^\\top v_b - u_b^\\top v_a

    Args:
        comparisons: (M,) comparisons (ties count half).
        dim: blade/chest dimension d.
        l2: L2 penalty λ on the blade and chest vectors; ``l2_strength`` a tiny one fixing the strengths' scale.
        seed: random start (the objective is non-convex).

    Identification is checked first (:func:`check_blade_chest_identified`): an item never compared, an unbeaten
    or winless group (with ``l2_strength`` below :data:`RIDGE_STRENGTH`) raises :class:`~pairkit.errors.NoMLEError`;
    compared pairs that form no cycle raise :class:`~pairkit.errors.NotIdentifiedError`; items on no cycle get an
    :class:`UnidentifiedMatchupWarning` and are listed in ``info["matchup_unidentified"]``.

    Returns:
        A :class:`Leaderboard` whose ``scores`` are the transitive part γ; ``predict`` (through
        ``pair_predictor``) includes the cyclic term; ``info["blades"]``/``["chests"]`` are (n, d).

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"])
    >>> from pairkit.rating import fit_blade_chest
    >>> board = fit_blade_chest(comps, dim=1, seed=0)
    >>> board.model, len(board.items)
    ('blade_chest', 3)
    """
    check_comparisons(comparisons, "blade_chest")
    loose = check_blade_chest_identified(comparisons, l2_strength=l2_strength)
    if loose.any():
        names = item_names(comparisons.items, np.flatnonzero(loose))
        warnings.warn(
            f"{int(loose.sum())} item(s) lie on no cycle of compared pairs ({names}): "
            "their strengths are fitted, but their blade and chest vectors (and predictions against items they never "
            "met) are set by the penalty alone, not by data",
            UnidentifiedMatchupWarning,
            stacklevel=2,
        )
    counts, s_i, s_j = _pair_design(comparisons)
    n = counts.n_items
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    x0 = np.concatenate([np.zeros(n), init_scale * rng.standard_normal(2 * n * dim)])
    from scipy import optimize  # imported here: other models and commands never need it (~0.2 s)

    with _single_blas_thread(x0.size):
        res = optimize.minimize(
            blade_chest_objective,
            x0,
            args=(counts, s_i, s_j, dim, l2, l2_strength),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": max_iter, "ftol": 1e-10, "gtol": 1e-7},
        )
    grad_norm = float(np.max(np.abs(res.jac)))
    if not np.isfinite(res.fun) or grad_norm > 1e-3 * max(1.0, float(np.sum(counts.total))) ** 0.5:
        raise ConvergenceError(f"blade-chest fit did not converge ({res.message}; gradient {grad_norm:.2e})")
    gamma = res.x[:n]
    U = res.x[n : n + n * dim].reshape(n, dim)
    V = res.x[n + n * dim :].reshape(n, dim)
    offset = gamma.mean()

    def pair_predictor(ia, ib, a_first=None):
        m = gamma[ia] - gamma[ib] + np.einsum("kd,kd->k", U[ia], V[ib]) - np.einsum("kd,kd->k", U[ib], V[ia])
        p = special.expit(m)
        return p, np.zeros_like(p)

    games = counts.games_per_item()
    return Leaderboard(
        items=comparisons.items,
        scores=gamma - offset,
        model="blade_chest",
        n=games,
        win_rate=win_rate(comparisons),
        log_likelihood=-float(res.fun) - _penalty(res.x, n, dim, l2, l2_strength),
        n_comparisons=len(comparisons),
        params={"dim": float(dim), "l2": float(l2)},
        columns={"blade_norm": np.linalg.norm(U, axis=1), "chest_norm": np.linalg.norm(V, axis=1)},
        predictor=None,
        pair_predictor=pair_predictor,
        info={
            "matchup_unidentified": [comparisons.items[k] for k in np.flatnonzero(loose)],
            "blades": U,
            "chests": V,
            "iterations": int(res.nit),
            "gradient": grad_norm,
        },
    )


def _single_blas_thread(size: int):
    """L-BFGS-B's many tiny BLAS calls run far slower with a BLAS thread pool on a busy machine (measured 30×
    on 2 shared cores); limit BLAS to one thread for small problems when threadpoolctl is installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return contextlib.nullcontext()
    return threadpool_limits(1) if size < 20_000 else contextlib.nullcontext()


def _penalty(x, n, dim, l2, l2_strength):
    gamma, rest = x[:n], x[n:]
    return 0.5 * l2 * float(rest @ rest) + 0.5 * l2_strength * float(gamma @ gamma)


def _beats(comparisons: Comparisons, min_games: float) -> tuple[np.ndarray, np.ndarray]:
    """Dense (n, n) "i beats j on the pair's record" matrix and the matching win-rate matrix."""
    counts = comparisons.pair_counts(ties="half")
    n = counts.n_items
    total = counts.total
    keep = total >= min_games
    rate = np.full((n, n), np.nan)
    r = counts.wins_i[keep] / total[keep]
    rate[counts.i[keep], counts.j[keep]] = r
    rate[counts.j[keep], counts.i[keep]] = 1 - r
    with np.errstate(invalid="ignore"):
        beats = rate > 0.5
    return beats, rate


def count_intransitive_triads(comparisons: Comparisons, *, min_games: float = 1.0) -> int:
    """Number of cyclic triads ``a ≻ b ≻ c ≻ a`` among pair win rates (pairs with ≥ ``min_games``; ties ½).

    .. math::

        \\#\\text{cycles} = \\operatorname{tr}(A^3)/3,\\qquad A_{ij} = [\\hat p_{ij} > 1/2]

    >>> from pairkit import Comparisons
    >>> comps = Comparisons.from_arrays([0, 1, 2], [1, 2, 0], [1, 1, 1], items=['a', 'b', 'c'])
    >>> from pairkit.rating import count_intransitive_triads
    >>> count_intransitive_triads(comps)
    1
    """
    beats, _ = _beats(comparisons, min_games)
    a = beats.astype(np.float64)
    return int(round(np.trace(a @ a @ a) / 3))


def intransitive_triads(comparisons: Comparisons, *, min_games: float = 1.0, limit: int = 1000) -> pd.DataFrame:
    """List cyclic triads ``a ≻ b ≻ c ≻ a`` of pair win rates, weakest cycles last.

    Each cycle appears once (rotated to start at its lowest item index). Columns: ``a``, ``b``, ``c`` (names),
    ``p_ab``, ``p_bc``, ``p_ca`` (win rates along the cycle) and ``margin`` (the smallest of them minus ½).
    Vectorised over blocks of items; at most ``limit`` rows (the strongest cycles) are returned.

    >>> from pairkit import Comparisons
    >>> comps = Comparisons.from_arrays([0, 1, 2], [1, 2, 0], [1, 1, 1], items=['a', 'b', 'c'])
    >>> from pairkit.rating import intransitive_triads
    >>> print(intransitive_triads(comps).to_string(index=False))
    a b c  p_ab  p_bc  p_ca  margin
    a b c   1.0   1.0   1.0     0.5
    """
    beats, rate = _beats(comparisons, min_games)
    n = beats.shape[0]
    found = []
    block = max(1, int(2e7 // max(n * n, 1)))
    upper = np.arange(n)
    for lo in range(0, n, block):  # blocks of items, not rows of data
        idx = np.arange(lo, min(n, lo + block))
        cyc = beats[idx][:, :, None] & beats[:, :][None, :, :] & beats[:, idx].T[:, None, :]
        cyc &= (upper[None, :, None] > idx[:, None, None]) & (upper[None, None, :] > idx[:, None, None])
        t, j, k = np.nonzero(cyc)
        found.append(np.stack([idx[t], j, k], axis=1))
    trip = np.concatenate(found) if found else np.zeros((0, 3), dtype=np.int64)
    names = np.asarray(comparisons.items, dtype=object)
    p_ab = rate[trip[:, 0], trip[:, 1]]
    p_bc = rate[trip[:, 1], trip[:, 2]]
    p_ca = rate[trip[:, 2], trip[:, 0]]
    frame = pd.DataFrame(
        {
            "a": names[trip[:, 0]],
            "b": names[trip[:, 1]],
            "c": names[trip[:, 2]],
            "p_ab": p_ab,
            "p_bc": p_bc,
            "p_ca": p_ca,
            "margin": np.minimum(np.minimum(p_ab, p_bc), p_ca) - 0.5,
        }
    )
    return frame.sort_values("margin", ascending=False, kind="stable").head(limit).reset_index(drop=True)
