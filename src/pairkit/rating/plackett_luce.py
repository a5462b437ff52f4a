"""Plackett–Luce maximum likelihood for full, partial and top-k rankings (with tied groups).

A ranking is a sequence of choices: at each stage the next item is chosen from those not yet ranked with
probability proportional to its strength. Tied groups use Breslow's (1974) approximation: each member of the
group is a choice from the same remaining set. Fitting uses Hunter's (2004) MM iteration (vectorised over all
stages) followed by Newton steps with the exact Hessian and a line search, and a final check that the gradient
vanishes, so the result is the MLE rather than a point where MM slowed down.

References:
    Plackett, R. L. (1975). The analysis of permutations. JRSS C 24(2).
    Luce, R. D. (1959). Individual Choice Behavior. Wiley.
    Hunter, D. R. (2004). MM algorithms for generalized Bradley–Terry models. Annals of Statistics 32(1).
    Breslow, N. (1974). Covariance analysis of censored survival data. Biometrics 30(1).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp
from scipy.sparse import csgraph

from pairkit._spec import declare_options
from pairkit.data.rankings import Rankings
from pairkit.errors import ConvergenceError, InputError, NoMLEError
from pairkit.rating._checks import LEVEL, MAX_ITER, PRIOR, TOL, intervals_option, item_names, renamed_options
from pairkit.rating._pairwise import log_prior
from pairkit.rating.leaderboard import Leaderboard

__all__ = ["check_pl_mle_exists", "fit_plackett_luce", "plackett_luce_loglik"]

DENSE_NEWTON_LIMIT = 2000
"""Up to this many items the Newton polish uses the dense Hessian; above it only MM is run."""

NEWTON_STEPS = 50
"""Newton steps after the MM sweeps (from MM's point a handful reach ``tol``)."""


class _Stages:
    """The choice stages of a set of rankings, padded to a (rankings × longest) grid for exact row sums."""

    def __init__(self, rankings: Rankings):
        self.n = rankings.n_items
        lengths = rankings.lengths
        self.L = int(lengths.max(initial=0))
        cols = np.arange(self.L)
        self.valid = cols[None, :] < lengths[:, None]
        pos = np.minimum(rankings.offsets[:-1, None] + cols[None, :], max(len(rankings.flat) - 1, 0))
        self.item = np.where(self.valid, rankings.flat[pos], 0)
        level = np.where(self.valid, rankings.level[pos], np.iinfo(np.int64).max)
        # first and last column of each entry's tie group: groups are contiguous runs of equal level
        starts = np.ones_like(self.valid)
        starts[:, 1:] = level[:, 1:] != level[:, :-1]
        self.group_start = np.maximum.accumulate(np.where(starts, cols[None, :], 0), axis=1)
        ends = np.ones_like(self.valid)
        ends[:, :-1] = level[:, 1:] != level[:, :-1]
        rev = np.where(ends, cols[None, :], self.L)[:, ::-1]
        self.group_end = np.minimum.accumulate(rev, axis=1)[:, ::-1]
        self.group_end = np.minimum(self.group_end, (lengths - 1)[:, None].clip(min=0))
        self.top_k = rankings.top_k.copy()
        # an entry alone in the last group of a ranking without unlisted rivals chooses from {itself}: no data
        last = cols[None, :] == (lengths - 1)[:, None]
        trivial = last & (self.group_start == cols[None, :]) & ~self.top_k[:, None]
        self.event = self.valid & ~trivial
        self.weight = rankings.weight
        self.w_event = np.where(self.event, self.weight[:, None], 0.0)
        self.wins = np.bincount(self.item[self.event], self.w_event[self.event], self.n)
        self.listed = np.bincount(
            self.item[self.valid], np.broadcast_to(self.weight[:, None], self.valid.shape)[self.valid], self.n
        )
        if self.top_k.any():
            tk = np.flatnonzero(self.top_k)
            self.tk_rows = tk
            member = np.zeros((len(tk), self.n), dtype=bool)
            rr = np.repeat(np.arange(len(tk)), self.valid[tk].sum(axis=1))
            member[rr, self.item[tk][self.valid[tk]]] = True
            self.tk_member = member
        else:
            self.tk_rows = np.zeros(0, dtype=np.int64)

    def stage_sums(self, x: np.ndarray) -> np.ndarray:
        """Σ of ``x`` over each entry's choice set (its group and everything after it, plus unlisted items)."""
        xs = np.where(self.valid, x[self.item], 0.0)
        suffix = np.cumsum(xs[:, ::-1], axis=1)[:, ::-1]
        out = np.take_along_axis(suffix, self.group_start, axis=1)
        if len(self.tk_rows):
            rest = float(x.sum()) - suffix[self.tk_rows, 0]
            out[self.tk_rows] += rest[:, None]
        return out

    def accumulate(self, a: np.ndarray) -> np.ndarray:
        """For every item, Σ of the per-entry values ``a`` over the stages whose choice set holds the item."""
        a = np.where(self.event, a, 0.0)
        cum = np.cumsum(a, axis=1)
        per_entry = np.take_along_axis(cum, self.group_end, axis=1)
        out = np.bincount(self.item[self.valid], per_entry[self.valid], self.n)
        if len(self.tk_rows):
            total = cum[self.tk_rows, -1]
            out += total.sum() - total @ self.tk_member
        return out

    def loglik(self, theta: np.ndarray) -> float:
        pi = np.exp(theta - theta.max())
        s = self.stage_sums(pi)
        with np.errstate(divide="ignore"):
            terms = np.log(pi[self.item]) - np.log(np.where(self.event, s, 1.0))
        return float(np.sum(self.w_event * np.where(self.event, terms, 0.0)))

    def gradient_parts(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(π scaled to max 1, stage sums S, per-item Σ w/S over choice sets containing the item)."""
        pi = np.exp(theta - theta.max())
        s = self.stage_sums(pi)
        inv = np.where(self.event, self.w_event / np.where(self.event, s, 1.0), 0.0)
        return pi, s, self.accumulate(inv)

    def hessian(self, theta: np.ndarray) -> np.ndarray:
        """Dense negative Hessian of the log-likelihood (observed information).

        ``Σ_e w_e (diag(p_e) − p_e p_eᵀ)`` with ``p_e = π/S_e`` on choice set ``R_e``; two entries of one ranking
        share the stages up to the earlier one's group, so the outer-product part of the pair is
        ``π_a π_b B[min(end_a, end_b)]`` with ``B`` the running sum of ``w/S²``.
        """
        pi, s, denom = self.gradient_parts(theta)
        n = self.n
        ss = np.where(self.event, s, 1.0)
        cum = np.cumsum(np.where(self.event, self.w_event / ss**2, 0.0), axis=1)
        b_entry = np.take_along_axis(cum, self.group_end, axis=1)  # B at each entry's group end
        ge = self.group_end
        first = np.minimum(ge[:, :, None], ge[:, None, :])
        shared = np.take_along_axis(np.broadcast_to(cum[:, None, :], first.shape), first, axis=2)
        both = self.valid[:, :, None] & self.valid[:, None, :]
        pa = np.where(self.valid, pi[self.item], 0.0)
        vals = (pa[:, :, None] * pa[:, None, :] * shared)[both]
        keys = (self.item[:, :, None] * n + self.item[:, None, :])[both]
        outer = np.bincount(keys, vals, n * n).reshape(n, n)
        if len(self.tk_rows):
            unl = np.where(self.tk_member, 0.0, pi[None, :])  # unlisted items' strengths per top-k ranking
            total = cum[self.tk_rows, -1]
            outer += unl.T @ (total[:, None] * unl)
            listed = np.zeros((len(self.tk_rows), n))
            v = self.valid[self.tk_rows]
            rr = np.repeat(np.arange(len(self.tk_rows)), v.sum(axis=1))
            np.add.at(listed, (rr, self.item[self.tk_rows][v]), (pa[self.tk_rows] * b_entry[self.tk_rows])[v])
            cross = listed.T @ unl
            outer += cross + cross.T
        info = np.diag(pi * denom) - outer
        return (info + info.T) / 2


def plackett_luce_loglik(rankings: Rankings, log_strength: np.ndarray) -> float:
    """Plackett–Luce log-likelihood of ``rankings`` at natural log-strengths (ties by Breslow's rule).

    .. math::

        \\ell(\\theta) = \\sum_r w_r \\sum_{s} \\Big(\\theta_{c_{rs}} - \\log \\sum_{j \\in R_{rs}} e^{\\theta_j}\\Big)

    where stage ``s`` of ranking ``r`` chooses ``c_rs`` from the remaining set ``R_rs``.

    >>> import numpy as np
    >>> from pairkit.data import Rankings
    >>> from pairkit.rating import plackett_luce_loglik
    >>> rankings = Rankings.from_lists([['a', 'b', 'c'], ['b', 'a', 'c']])
    >>> round(plackett_luce_loglik(rankings, np.zeros(3)), 4)
    -3.5835
    """
    theta = np.asarray(log_strength, dtype=np.float64)
    if theta.shape != (rankings.n_items,):
        raise InputError(f"log_strength has shape {theta.shape}, expected ({rankings.n_items},)")
    return _Stages(rankings).loglik(theta)


def check_pl_mle_exists(rankings: Rankings) -> None:
    """Raise :class:`NoMLEError` naming items when the Plackett–Luce MLE does not exist.

    Hunter (2004, Assumption 1): in every partition of the items into two groups, some item of each group is
    ranked above some item of the other; i.e. the "ranked above" digraph is strongly connected. Tied members of
    a group count as ranked above each other; listed items of a top-k list are ranked above the unlisted.

    >>> from pairkit.data import Rankings
    >>> from pairkit.errors import NoMLEError
    >>> from pairkit.rating import check_pl_mle_exists
    >>> try:
    ...     check_pl_mle_exists(Rankings.from_lists([['a', 'b'], ['a', 'b']]))
    ... except NoMLEError as e:
    ...     print(type(e).__name__)
    NoMLEError
    """
    st = _Stages(rankings)
    n, items = st.n, rankings.items
    seen = st.listed > 0
    if len(st.tk_rows):
        seen |= True
    if not np.all(seen):
        raise NoMLEError(
            f"no maximum-likelihood estimate: {int((~seen).sum())} item(s) never ranked: "
            f"{item_names(items, np.flatnonzero(~seen))}. Remove them or use prior > 0."
        )
    R, L = st.valid.shape
    group_node = n + np.arange(R)[:, None] * L + st.group_start  # one node per (ranking, tie group)
    hub = n + R * L + np.arange(R)
    rows, cols = [], []
    v = st.valid
    rows.append(st.item[st.event])
    cols.append(group_node[st.event])  # a winner beats its stage's node …
    rows.append(group_node[v])
    cols.append(st.item[v])  # … which reaches its own group's members …
    nxt = v.copy()
    nxt[:, -1] = False
    nxt[:, :-1] &= v[:, 1:]
    nxt &= st.group_end == np.arange(L)[None, :]
    if L > 1:
        rows.append(group_node[:, :-1][nxt[:, :-1]])
        cols.append(group_node[:, 1:][nxt[:, :-1]])  # … and the next group's node
    if len(st.tk_rows):
        last = (np.asarray(rankings.lengths)[st.tk_rows] - 1).clip(min=0)
        rows.append(group_node[st.tk_rows, last])
        cols.append(hub[st.tk_rows])
        r_idx, i_idx = np.nonzero(~st.tk_member)
        rows.append(hub[st.tk_rows][r_idx])
        cols.append(i_idx)
    size = n + R * L + R
    graph = sp.csr_matrix(
        (np.ones(sum(len(r) for r in rows)), (np.concatenate(rows), np.concatenate(cols))), shape=(size, size)
    )
    _, labels = csgraph.connected_components(graph, directed=True, connection="strong")
    real = labels[:n]
    groups = np.unique(real)
    if len(groups) == 1:
        return
    sizes = np.array([np.sum(real == g) for g in groups])
    small = groups[np.argsort(sizes)[: min(3, len(groups) - 1)]]
    never_won = np.flatnonzero(st.wins == 0)
    hint = f" Items never chosen at any stage: {item_names(items, never_won)}." if len(never_won) else ""
    raise NoMLEError(
        "no maximum-likelihood estimate (the strengths would diverge): the items split into "
        f"{len(groups)} groups where one group is always ranked above another; smallest: "
        + "; ".join(item_names(items, np.flatnonzero(real == g)) for g in small)
        + f".{hint} Use prior > 0 (virtual wins and losses against an average item) to get finite ratings."
    )


@renamed_options(max_mm="max_iter")
@declare_options(PRIOR, intervals_option("auto", "fisher", "none"), LEVEL, TOL, MAX_ITER)
def fit_plackett_luce(
    rankings: Rankings,
    *,
    prior: float = 0.0,
    intervals: str = "auto",
    level: float = 0.95,
    tol: float = 1e-10,
    max_iter: int = 10_000,
) -> Leaderboard:
    """Fit Plackett–Luce strengths by maximum likelihood (MAP with ``prior``).

    .. math::

        P(\\text{ranking}) = \\prod_{s} \\frac{\\pi_{c_s}}{\\sum_{j \\in R_s} \\pi_j},\\qquad \\theta = \\log \\pi

    Hunter's (2004) MM update is :math:`\\pi_i \\leftarrow W_i / \\sum_s w_s [i \\in R_s] / \\sum_{j\\in R_s}\\pi_j`
    (``W_i`` the weighted number of stages ``i`` won); Newton steps on θ then converge to ``tol``.

    Args:
        rankings: the data (:class:`pairkit.data.Rankings`, ``flat``/``offsets`` of N entries in R rankings).
        prior: ``prior`` virtual wins and losses of each item against a unit-strength pseudo-item (as in
            :func:`pairkit.rating.fit_bradley_terry`); ``0`` is the MLE, which raises :class:`NoMLEError` naming
            the items when it does not exist.
        intervals: ``"fisher"`` (inverse observed information; also ``"auto"``) or ``"none"``. Above
            :data:`DENSE_NEWTON_LIMIT` items the fit is MM only (to ``tol``) and no intervals are computed.
        level: coverage of the intervals.
        tol, max_iter: convergence tolerance, and the most MM sweeps (then up to :data:`NEWTON_STEPS` Newton
            steps).

    Returns:
        A :class:`Leaderboard` of centred log-strengths (pairwise win probabilities follow Bradley–Terry).

    >>> from pairkit.data import Rankings
    >>> from pairkit.rating import fit_plackett_luce
    >>> rankings = Rankings.from_lists([['a', 'b', 'c'], ['b', 'a', 'c'], ['a', 'c', 'b']])
    >>> board = fit_plackett_luce(rankings, prior=1.0)
    >>> [(item, round(float(s), 3)) for item, s in zip(board.items, board.scores)]
    [('a', 0.777), ('b', -0.095), ('c', -0.682)]
    """
    if not isinstance(rankings, Rankings):
        raise InputError(f"plackett_luce: expected Rankings, got {type(rankings).__name__}")
    if len(rankings) == 0:
        raise InputError("plackett_luce: no rankings to fit (the data are empty)")
    if prior == 0:
        check_pl_mle_exists(rankings)
    st = _Stages(rankings)
    n = st.n
    gauge = prior == 0

    def objective(theta):
        return st.loglik(theta) + log_prior(theta, prior)[0]

    theta = np.zeros(n)
    mm_steps = 0
    for mm_steps in range(1, max_iter + 1):  # noqa: B007  (reported)
        pi, _, denom = st.gradient_parts(theta)
        num = st.wins.copy()
        if prior:
            # the scale matters with a prior: π must be on the pseudo-item's scale, not max-normalised
            pi_abs = np.exp(theta)
            num = num + prior
            denom = denom * pi / pi_abs + 2 * prior / (pi_abs + 1)
            new = np.log(num) - np.log(denom)
        else:
            new = np.log(num) - np.log(denom) + theta - np.log(pi)  # π relative to θ's scale
            new -= new.mean()
        change = float(np.max(np.abs(new - theta)))
        theta = new
        if change < (1e-6 if n <= DENSE_NEWTON_LIMIT else tol):
            break
    obj = objective(theta)
    steps = 0
    info = None
    if n <= DENSE_NEWTON_LIMIT:
        for steps in range(1, NEWTON_STEPS + 1):  # noqa: B007
            grad, info = _grad_info(st, theta, prior)
            system = info + (1.0 / n if gauge else 0.0)
            try:
                delta = la.cho_solve(la.cho_factor(system, check_finite=False), grad, check_finite=False)
            except la.LinAlgError:
                delta = la.lstsq(system, grad)[0]
            t = 1.0
            slope = float(grad @ delta)
            while t > 1e-10:
                trial = theta + t * delta
                trial_obj = objective(trial)
                if trial_obj >= obj + 1e-4 * t * slope or abs(trial_obj - obj) <= 1e-13 * max(1.0, abs(obj)):
                    break
                t /= 2
            theta, obj = trial, trial_obj
            if gauge:
                theta = theta - theta.mean()
            if float(np.max(np.abs(t * delta))) < tol:
                break
    grad, info = _grad_info(st, theta, prior)
    diag = info if info.ndim == 1 else np.diag(info)
    scaled = float(np.max(np.abs(grad) / np.sqrt(np.abs(diag) + 1e-300)))
    if not np.isfinite(scaled) or scaled > 1e-6:
        raise ConvergenceError(
            f"Plackett–Luce fit stopped without reaching the maximum (scaled gradient "
            f"{scaled:.2e} after {mm_steps} MM and {steps} Newton steps); try prior > 0"
        )
    if gauge:
        theta = theta - theta.mean()
    cov = se = None
    if intervals != "none" and info.ndim == 2:
        system = info + (1.0 / n if gauge else 0.0)
        try:
            cov = la.cho_solve(la.cho_factor(system), np.eye(n))
        except la.LinAlgError:
            cov = la.pinvh(system)
        if gauge:
            cov -= 1.0 / n
            centre = np.eye(n) - 1.0 / n
            cov = centre @ cov @ centre
        else:
            # report centred ratings: the covariance of θ − mean(θ)
            centre = np.eye(n) - 1.0 / n
            cov = centre @ cov @ centre
        se = np.sqrt(np.clip(np.diag(cov), 0, None))
    first = np.bincount(st.item[:, 0][st.valid[:, 0]], st.weight[st.valid[:, 0]], n)
    return Leaderboard(
        items=rankings.items,
        scores=theta - theta.mean(),
        model="plackett_luce",
        se=se,
        covariance=cov,
        n=st.listed,
        log_likelihood=st.loglik(theta),
        n_comparisons=len(rankings),
        columns={"first_places": first, "stage_wins": st.wins},
        interval_method=None if cov is None else "fisher",
        level=level,
        info={"mm_steps": mm_steps, "newton_steps": steps, "scaled_gradient": scaled, "prior": prior},
    )


def _grad_info(st: _Stages, theta: np.ndarray, prior: float) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and observed information; above :data:`DENSE_NEWTON_LIMIT` items only the information's diagonal
    (as a 1-D array), which is enough for the scaled-gradient convergence check."""
    pi, s, denom = st.gradient_parts(theta)
    grad = st.wins - pi * denom
    _, g_prior, h_prior = log_prior(theta, prior)
    grad = grad + g_prior
    if st.n <= DENSE_NEWTON_LIMIT:
        return grad, st.hessian(theta) - np.diag(h_prior)
    # diag Σ_e w_e (p_e − p_e²): the p² part is π_i² Σ_{e ∋ i} w_e/S_e², accumulated like the gradient
    ss = np.where(st.event, s, 1.0)
    sq = st.accumulate(np.where(st.event, st.w_event / ss**2, 0.0))
    return grad, pi * denom - pi**2 * sq - h_prior
