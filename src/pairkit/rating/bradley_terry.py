"""Bradley–Terry maximum likelihood (with ties as half wins or Davidson's tie model).

The strengths are fitted from the pair counts: Newman's iteration gives a fast start and a safeguarded Newton
method (:mod:`pairkit.rating._pairwise`) finishes at the maximum, where the gradient is checked to vanish, so the
result is the MLE and not merely a fixed point.

References:
    Bradley, R. A. & Terry, M. E. (1952). Rank analysis of incomplete block designs I. Biometrika 39.
    Newman, M. E. J. (2023). Efficient computation of rankings from pairwise comparisons. JMLR 24(238).
    Davidson, R. R. (1970). On extending the Bradley–Terry model to accommodate ties in paired comparison
    experiments. JASA 65(329).
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
from scipy import special

from pairkit._spec import Option, declare_options
from pairkit.data.comparisons import Comparisons, PairCounts
from pairkit.errors import InputError, IntervalWarning, NoMLEError
from pairkit.rating._checks import LEVEL, MAX_ITER, PRIOR, TOL, check_comparisons, intervals_option, item_names
from pairkit.rating._exact import (
    exact_note,
    exact_sparse_intervals,
    exact_sparse_intervals_from_variances,
    rows_conditional,
)
from pairkit.rating._pairwise import (
    PRIOR_ONLY_SHARE,
    PairwiseDesign,
    RowDerivatives,
    bradley_terry_rows,
    check_dense_size,
    covariance,
    fit_covariance,
    fit_pairwise,
    interval_bounds,
    sparse_item_report,
)
from pairkit.rating._sparse import MEASURED
from pairkit.rating._stats import win_rate
from pairkit.rating.leaderboard import Leaderboard, bradley_terry_predictor

Intervals = Literal["auto", "fisher", "sandwich", "none"]

NEWMAN_SWEEPS, NEWMAN_TOL = 15, 1e-2
"""Newman sweeps before Newton polishes: a sweep costs a fraction of a Newton step, and from within ~1e-2 of
the maximum two or three Newton steps reach machine precision."""

__all__ = [
    "check_decisive",
    "check_mle_exists",
    "davidson_predictor",
    "davidson_rows",
    "fit_bradley_terry",
    "newman_iteration",
]


# ---------------------------------------------------------------------------------------------- existence
def _reaches_everything(wins, rounds: int = 32) -> bool:
    """True when item 0 reaches every item and every item reaches item 0 along edges ``x → y`` with
    ``wins[x, y] > 0`` — the graph is strongly connected — found by at most ``rounds`` breadth-first steps each way
    (sparse products over the stored positive entries). False means "not shown" (a long path, or not strongly
    connected): the caller then asks :mod:`scipy.sparse.csgraph`, whose import this spares on well-connected data."""
    n = wins.shape[0]
    if n == 0:
        return True
    for graph in (wins.T, wins):  # y is reached from x along x → y; x reaches y: the reversed edges
        seen = np.zeros(n, dtype=bool)
        seen[0] = True
        frontier = seen.astype(float)
        for _ in range(rounds):
            new = (graph @ frontier > 0) & ~seen
            if not new.any():
                break
            seen |= new
            frontier = new.astype(float)
        if not seen.all():
            return False
    return True


def check_mle_exists(counts: PairCounts, items: tuple[str, ...]) -> None:
    """Raise :class:`NoMLEError` naming the offending items when the Bradley–Terry MLE does not exist.

    Ford (1957): the MLE exists iff, in every partition of the items into two groups, some item of each group
    beat (or tied) some item of the other — i.e. the directed "beat-or-tied" graph is strongly connected.

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 0, 1, 1, 1], items=["a", "b", "c"])
    >>> from pairkit.errors import NoMLEError
    >>> from pairkit.rating import check_mle_exists
    >>> try:
    ...     check_mle_exists(comps.pair_counts(ties='half'), comps.items)
    ... except NoMLEError as e:
    ...     print(type(e).__name__)
    NoMLEError
    """
    games = counts.games_per_item()
    never = np.flatnonzero(games == 0)
    if len(never):
        raise NoMLEError(
            f"no maximum-likelihood estimate: {len(never)} item(s) were never compared: "
            f"{item_names(items, never)}. Remove them or use prior > 0."
        )
    # Weights so small that, next to the others, they cannot move a rating in double precision: the item is
    # compared in name only, and its MLE would be an artefact of rounding (with a zero or absurd interval).
    faint = np.flatnonzero(games <= PRIOR_ONLY_SHARE * games.max())
    if len(faint):
        raise NoMLEError(
            f"no maximum-likelihood estimate: {len(faint)} item(s) have comparisons of negligible total weight "
            f"(at most {PRIOR_ONLY_SHARE:g} of the largest, e.g. {games[faint[0]]:.3g}): {item_names(items, faint)}. "
            "Their strength is not determined by the data; check the weight column, remove them or use prior > 0."
        )
    wins = counts.wins_matrix()  # W[x, y]: x beat y (ties counted half)
    if _reaches_everything(wins):
        return
    from scipy.sparse import csgraph  # imported when needed: the prior > 0 path and well-connected data never are

    strong_n, strong = csgraph.connected_components(wins, directed=True, connection="strong")
    if strong_n == 1:
        return
    weak_n, weak = csgraph.connected_components(wins, directed=False)
    if weak_n > 1:
        sizes = np.bincount(weak)
        small = np.argsort(sizes)[: min(3, weak_n - 1)]
        groups = "; ".join(item_names(items, np.flatnonzero(weak == c)) for c in small)
        raise NoMLEError(
            f"no maximum-likelihood estimate: the comparison graph has {weak_n} disconnected components "
            f"(sizes {sorted(sizes.tolist(), reverse=True)[:10]}), so ratings across them are not comparable. "
            f"Smallest: {groups}. Fit components separately (Comparisons.components()) or use prior > 0."
        )
    # Condense: a group that never lost to anyone outside it has no finite MLE (its strength → ∞).
    coo = wins.tocoo()
    cross = strong[coo.row] != strong[coo.col]
    beat_outside = np.bincount(strong[coo.row[cross]], minlength=strong_n) > 0
    lost_outside = np.bincount(strong[coo.col[cross]], minlength=strong_n) > 0
    unbeaten = [c for c in range(strong_n) if not lost_outside[c]]
    winless = [c for c in range(strong_n) if not beat_outside[c]]
    parts = []
    if unbeaten:
        parts.append("never lost to the others: " + "; ".join(
            item_names(items, np.flatnonzero(strong == c)) for c in unbeaten[:5]))
    if winless:
        parts.append("never beat the others: " + "; ".join(
            item_names(items, np.flatnonzero(strong == c)) for c in winless[:5]))
    raise NoMLEError(
        "no maximum-likelihood estimate (the strengths would diverge): " + " | ".join(parts)
        + ". Use prior > 0 (e.g. prior=1: one virtual win and loss against an average item) to get finite "
        "ratings."
    )


def check_decisive(comparisons: Comparisons) -> None:
    """A tie model needs a decisive comparison: with ties only, the tie parameter's MLE is infinite.

    >>> from pairkit import Comparisons
    >>> from pairkit.errors import NoMLEError
    >>> from pairkit.rating import check_decisive
    >>> try:
    ...     check_decisive(Comparisons.from_arrays([0], [1], [0.5], items=['a', 'b']))
    ... except NoMLEError as e:
    ...     print(type(e).__name__)
    NoMLEError
    """
    y, w = comparisons.outcome, comparisons.weight
    if not np.any(((y == 0) | (y == 1)) & (w > 0)):
        raise NoMLEError(
            "no maximum-likelihood estimate: every comparison is a tie, so the tie parameter would be infinite "
            "and the strengths undetermined; use ties='half' (a tie as half a win) or add decisive comparisons"
        )


# ---------------------------------------------------------------------------------------------- Newman
def newman_iteration(
    counts: PairCounts,
    *,
    prior: float = 0.0,
    pi0: np.ndarray | None = None,
    max_iter: int = 10_000,
    tol: float = 1e-6,
) -> tuple[np.ndarray, int]:
    """Newman's (2023) iteration for Bradley–Terry strengths π (ties must already be split).

    .. math::

        \\pi_i \\leftarrow \\frac{\\sum_j w_{ij}\\,\\pi_j/(\\pi_i+\\pi_j) + \\alpha/(\\pi_i+1)}
                                  {\\sum_j w_{ji}/(\\pi_i+\\pi_j) + \\alpha/(\\pi_i+1)}

    with ``α = prior`` virtual wins and losses against a unit-strength pseudo-item. All items are updated
    together (vectorised) and renormalised to geometric mean 1 when ``prior == 0``. Returns π and the number
    of sweeps; stops when the largest change of log π is below ``tol``. This is a fast start only: the
    returned point is not guaranteed to be the MLE (see :func:`fit_bradley_terry`).

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"])
    >>> import numpy as np
    >>> from pairkit.rating import newman_iteration
    >>> pi, iterations = newman_iteration(comps.pair_counts(ties='half'), prior=1.0)
    >>> print(pi.round(4))
    [1.6956 1.     0.5898]
    """
    n = counts.n_items
    i, j, wi, wj = counts.i, counts.j, counts.wins_i + counts.ties / 2, counts.wins_j + counts.ties / 2
    pi = np.ones(n) if pi0 is None else np.asarray(pi0, float).copy()
    wi, wj = np.broadcast_arrays(np.asarray(wi, dtype=np.float64), wj)
    m = len(i)
    terms = np.empty((4, m))  # per pair: wins of i and of j weighted for the numerators, then the denominators
    sweep = 0
    for sweep in range(1, max_iter + 1):  # noqa: B007  (returned)
        for start in range(0, m, NEWMAN_BLOCK):  # in cache-sized blocks: 2× faster than whole-array passes
            rows = slice(start, start + NEWMAN_BLOCK)
            p_i, p_j = pi[i[rows]], pi[j[rows]]
            s = p_i + p_j
            np.reciprocal(s, out=s)
            np.multiply(wi[rows], s, out=terms[3, rows])  # den of j: wi/(πi+πj)
            np.multiply(wj[rows], s, out=terms[2, rows])  # den of i: wj/(πi+πj)
            np.multiply(terms[3, rows], p_j, out=terms[0, rows])  # num of i: wi πj/(πi+πj)
            np.multiply(terms[2, rows], p_i, out=terms[1, rows])  # num of j: wj πi/(πi+πj)
        num = np.bincount(i, terms[0], n) + np.bincount(j, terms[1], n)
        den = np.bincount(i, terms[2], n) + np.bincount(j, terms[3], n)
        if prior:
            extra = prior / (pi + 1.0)
            num, den = num + extra, den + extra
        with np.errstate(divide="ignore", invalid="ignore"):
            new = num / den
        if not np.all(np.isfinite(new) & (new > 0)):
            break
        if not prior:
            new /= np.exp(np.mean(np.log(new)))
        change = float(np.max(np.abs(np.log(new) - np.log(pi))))
        pi = new
        if change < tol:
            break
    return pi, sweep


NEWMAN_BLOCK = 1 << 14
"""Pairs per block of a Newman sweep's element-wise work."""


# ---------------------------------------------------------------------------------------------- Davidson
def davidson_rows(d: np.ndarray, eta: np.ndarray, stats: dict) -> RowDerivatives:
    """Davidson (1970) rows with ``η = [log ν]``.

    .. math::

        P(i \\succ j) = \\frac{\\pi_i}{\\pi_i + \\pi_j + \\nu\\sqrt{\\pi_i\\pi_j}},\\quad
        P(\\text{tie}) = \\frac{\\nu\\sqrt{\\pi_i\\pi_j}}{\\pi_i + \\pi_j + \\nu\\sqrt{\\pi_i\\pi_j}}

    >>> import numpy as np
    >>> from pairkit.rating import davidson_rows
    >>> stats = {"wins_i": np.array([2.0]), "wins_j": np.array([1.0]), "ties": np.array([1.0])}
    >>> rows = davidson_rows(np.array([0.5]), np.array([0.0]), stats)
    >>> round(float(rows.loglik[0]), 4), round(float(rows.l_d[0]), 4)
    (-4.2274, 0.1701)
    """
    wi, wj, t = stats["wins_i"], stats["wins_j"], stats["ties"]
    n = wi + wj + t
    lam = eta[0]
    nu = np.exp(lam)
    half = d / 2
    # log D with D = e^{d/2} + e^{-d/2} + ν, computed stably
    log_d = np.logaddexp(np.logaddexp(half, -half), lam)
    e_pos = np.exp(half - log_d)  # e^{d/2}/D
    e_neg = np.exp(-half - log_d)
    r = nu * np.exp(-log_d)  # ν/D
    b = (e_pos - e_neg) / 2  # (∂D/∂d)/D
    a = (e_pos + e_neg) / 4  # (∂²D/∂d²)/D
    loglik = wi * (half - log_d) + wj * (-half - log_d) + t * (lam - log_d)
    l_d = (wi - wj) / 2 - n * b
    l_dd = -n * (a - b * b)
    l_eta = (t - n * r)[:, None]
    l_d_eta = (n * b * r)[:, None]
    l_eta_eta = (-n * (r - r * r))[:, None, None]
    return RowDerivatives(loglik, l_d, l_dd, l_eta, l_d_eta, l_eta_eta)


def davidson_predictor(nu: float):
    """Win and tie probabilities under Davidson's model with tie parameter ``nu``.

    >>> import numpy as np
    >>> from pairkit.rating import davidson_predictor
    >>> win, tie = davidson_predictor(0.5)(np.array([0.0]), np.array([0.0]), None)
    >>> print(np.round(win, 4), np.round(tie, 4))
    [0.4] [0.2]
    """

    def predict(theta_a, theta_b, a_first):
        half = (theta_a - theta_b) / 2
        log_d = np.logaddexp(np.logaddexp(half, -half), np.log(nu))
        return np.exp(half - log_d), np.exp(np.log(nu) - log_d)

    return predict


# ---------------------------------------------------------------------------------------------- fitting
TIES = Option("ties", str, choices=("half", "davidson"), doc="ties as half wins or Davidson's tie parameter")
PAIRWISE_INTERVALS = intervals_option("auto", "fisher", "sandwich", "none")


@declare_options(TIES, PRIOR, PAIRWISE_INTERVALS, LEVEL, TOL, MAX_ITER)
def fit_bradley_terry(
    comparisons: Comparisons,
    *,
    ties: Literal["half", "davidson"] = "half",
    prior: float = 0.0,
    intervals: Intervals = "auto",
    level: float = 0.95,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> Leaderboard:
    """Fit Bradley–Terry strengths by maximum likelihood (or maximum a posteriori with ``prior``).

    .. math::

        P(i \\succ j) = \\frac{\\pi_i}{\\pi_i+\\pi_j} = \\sigma(\\theta_i - \\theta_j),\\qquad
        \\theta = \\log \\pi

    Args:
        comparisons: the data; ``weight`` multiplies each comparison.
        ties: ``"half"`` counts a tie as half a win for each side (LMArena); ``"davidson"`` fits Davidson's
            tie parameter ν jointly (reported in ``params["tie_nu"]`` with its interval).
        prior: Newman's prior — ``prior`` virtual wins and losses of each item against a unit-strength
            pseudo-item. ``0`` is the pure MLE, which raises :class:`NoMLEError` naming the items when it does
            not exist (an unbeaten or winless group, a disconnected graph).
        intervals: ``"fisher"`` (observed information), ``"sandwich"`` (cluster-robust, by
            ``comparisons.cluster`` or per comparison), ``"auto"`` or ``"none"``. ``"auto"`` uses the cluster
            sandwich only with at least 30 clusters (fewer undercover), else Fisher; with a single cluster even
            ``"sandwich"`` falls back to Fisher; with ``"auto"`` no parameter's variance is below Fisher's (the
            Angrist–Pischke rule: the sandwich undercovers for items in few clusters and ignores the shrinkage of
            a prior). Items seen in fewer than two clusters get at least their Fisher
            variance (the sandwich cannot estimate it), items without data get the prior's width, and both are
            flagged (``columns["fisher_floor"]``, ``columns["prior_only"]``) with an :class:`IntervalWarning`;
            the rule applied is in ``info["interval_rule"]``. Under ``"auto"`` items with comparisons of total weight
            at most :data:`~pairkit.rating._exact.SPARSE_WEIGHT` get intervals from their exact conditional
            likelihood (times the prior) and their variance carried into the common centre
            (:mod:`pairkit.rating._exact`; flagged in ``columns["exact_interval"]``): the normal approximation
            undercovered them (87–92% at nominal 95%) and, through the centre, every other item. Above
            :data:`~pairkit.rating._pairwise.SPARSE_SE_LIMIT` items (ties as half wins) no dense covariance is
            formed: Fisher standard errors are estimated from the sparse information
            (:func:`pairkit.rating._sparse.estimate_inverse_diagonal`: the second-order Neumann series as an exact
            control plus random probes; the error against the exact inverse measured on 5,000 items is
            :data:`pairkit.rating._sparse.MEASURED`), their stated error is reported in ``info["se_method"]``,
            ``info["se_relative_error"]``, the JSON's ``interval_method`` and an :class:`IntervalWarning`; sparse
            items keep their exact intervals (from the variances,
            :func:`~pairkit.rating._exact.exact_sparse_intervals_from_variances`), and rank intervals use the
            overlap rule.
        level: coverage of the intervals.
        tol, max_iter: convergence tolerance (scaled gradient) and step limit of the Newton solver.

    Returns:
        A :class:`Leaderboard` of centred log-strengths (use ``.scale("elo")`` for Elo points).

    Example:

        >>> from pairkit import Comparisons
        >>> from pairkit.rating import fit_bradley_terry
        >>> comps = Comparisons.from_arrays(['a', 'a', 'b', 'c', 'a', 'b'], ['b', 'c', 'c', 'a', 'b', 'a'])
        >>> board = fit_bradley_terry(comps, prior=0.0)
        >>> table = board.to_pandas()[['rank', 'item', 'rating', 'ci_low', 'ci_high', 'n']].round(3)
        >>> print(table.to_string(index=False))
         rank item  rating  ci_low  ci_high   n
            1    a   0.314  -1.092    1.858 5.0
            2    b   0.128  -1.509    1.762 4.0
            3    c  -0.442  -2.889    1.493 3.0
        >>> p_win, p_tie = board.predict('a', 'c')
        >>> print(p_win.round(3), p_tie)
        [0.681] [0.]
    """
    check_comparisons(comparisons, "bradley_terry")
    davidson = ties == "davidson"
    if davidson:
        check_dense_size(comparisons.n_items + 1, "Bradley–Terry with ties='davidson'")
    counts = comparisons.pair_counts(ties="separate" if davidson else "half")
    if prior == 0:
        check_mle_exists(counts, comparisons.items)
    if davidson and counts.ties.sum() == 0:
        raise InputError("ties='davidson' needs at least one tie in the data; use ties='half'")
    if davidson:
        check_decisive(comparisons)

    design = PairwiseDesign(
        n_items=counts.n_items, i=counts.i, j=counts.j,
        stats={"wins_i": counts.wins_i, "wins_j": counts.wins_j, "ties": counts.ties},
    )
    # A few vectorised Newman sweeps land close to the maximum; Newton then converges in ~2 steps.
    pi, sweeps = newman_iteration(counts, prior=prior, max_iter=NEWMAN_SWEEPS, tol=NEWMAN_TOL)
    theta0 = np.log(pi)
    if davidson:
        share = counts.ties.sum() / counts.total.sum()
        eta0 = np.array([np.log(max(2 * share / max(1 - share, 1e-9), 1e-6))])
        fit = fit_pairwise(design, davidson_rows, n_eta=1, prior=prior, theta0=theta0, eta0=eta0, tol=tol,
                           max_iter=max_iter)
    else:
        fit = fit_pairwise(design, bradley_terry_rows, prior=prior, theta0=theta0, tol=tol,
                           max_iter=max_iter, keep_information=intervals != "none")

    n = counts.n_items
    theta = fit.theta - fit.theta.mean()
    chosen = _covariance(fit, comparisons, intervals, prior, davidson)
    cov, method = chosen.cov, chosen.method
    params: dict[str, float] = {}
    param_intervals: dict[str, tuple[float, float]] = {}
    z = special.ndtri(0.5 + level / 2)
    if davidson:
        lam = float(fit.eta[0])
        params["tie_nu"] = float(np.exp(lam))
        if cov is not None:
            se_lam = float(np.sqrt(max(cov[n, n], 0.0)))
            param_intervals["tie_nu"] = (float(np.exp(lam - z * se_lam)), float(np.exp(lam + z * se_lam)))
    se = chosen.se if cov is None else np.sqrt(np.clip(np.diag(cov)[:n], 0, None))
    columns, notes = sparse_item_report(chosen, comparisons.items, prior)
    if chosen.se_note:
        notes.append(chosen.se_note)
        warnings.warn(chosen.se_note, IntervalWarning, stacklevel=2)
    lo, hi = interval_bounds(theta, se, chosen.prior_only, prior, level)
    if intervals == "auto" and cov is not None and fit.information is not None:
        tie_conditional = None  # Davidson: the tie model's own rows, ν at its estimate
        if davidson:
            tie_conditional = rows_conditional(fit.theta, fit.beta, fit.eta, design, davidson_rows, prior=prior,
                                               level=level)
        cov, lo, hi, exact = exact_sparse_intervals(
            fit.theta, None if davidson else counts, np.asarray(fit.information.diagonal())[:n], cov, prior=prior,
            level=level, centred_estimate=theta, games=counts.games_per_item(), conditional=tie_conditional,
            floor=(lambda: covariance(fit.information, n, gauge=prior == 0)) if method == "sandwich" else None)
        se = np.sqrt(np.clip(np.diag(cov)[:n], 0, None))
        if exact.any():
            columns["exact_interval"] = exact
            notes.append(exact_note(int(exact.sum())))
    elif intervals == "auto" and cov is None and se is not None and not davidson and fit.information is not None:
        # Many items (standard errors estimated, no covariance): the same exact intervals from the variances.
        variance, lo, hi, exact = exact_sparse_intervals_from_variances(
            fit.theta, counts, np.asarray(fit.information.diagonal())[:n], se**2, prior=prior, level=level,
            centred_estimate=theta)
        se = np.sqrt(np.clip(variance, 0, None))
        if exact.any():
            columns["exact_interval"] = exact
            notes.append(exact_note(int(exact.sum())))
    return Leaderboard(
        items=comparisons.items,
        scores=theta,
        model="bradley_terry" + ("_davidson" if davidson else ""),
        se=se,
        ci_low_log=lo,
        ci_high_log=hi,
        covariance=None if cov is None else cov[:n, :n],
        n=counts.games_per_item(),
        win_rate=win_rate(comparisons),
        log_likelihood=fit.loglik,
        n_comparisons=len(comparisons),
        params=params,
        param_intervals=param_intervals,
        interval_method=method,
        level=level,
        predictor=davidson_predictor(params["tie_nu"]) if davidson else bradley_terry_predictor,
        columns=columns,
        info={"newman_sweeps": sweeps, "newton_steps": fit.n_iter, "scaled_gradient": fit.gradient_norm,
              "se_method": chosen.se_note or "exact",
              **({"se_relative_error": chosen.se_error, "se_measured": MEASURED} if chosen.se_error else {}),
              "prior": prior, "interval_rule": chosen.rule, "interval_notes": notes},
    )


def _covariance(fit, comparisons: Comparisons, intervals: str, prior: float, davidson: bool):
    """Fisher or cluster-robust covariance (per-comparison scores at the fitted parameters)."""
    y, w = comparisons.outcome, comparisons.weight
    if davidson:
        tie = (y > 0) & (y < 1)
        stats = {"wins_i": w * np.where(tie, 0, y), "wins_j": w * np.where(tie, 0, 1 - y),
                 "ties": w * tie}
        model, n_eta = davidson_rows, 1
    else:
        stats = {"wins_i": w * y, "wins_j": w * (1 - y)}
        model, n_eta = bradley_terry_rows, 0
    design = PairwiseDesign(n_items=comparisons.n_items, i=comparisons.a, j=comparisons.b, stats=stats)
    return fit_covariance(fit, design, model, intervals=intervals, prior=prior, n_eta=n_eta,
                          clusters=comparisons.cluster, weight=w, sparse_ok=True)
