"""Shared plumbing of the likelihood models built on :mod:`pairkit.rating._pairwise`.

Each model describes its rows (item ``i`` against item ``j``, covariates ``X``, per-row statistics) and a row
function; this module aggregates identical rows, runs the safeguarded Newton solver, computes Fisher or
cluster-sandwich covariances and packs everything into a :class:`Leaderboard` with named extra parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from pairkit.data.comparisons import Comparisons
from pairkit.errors import ConvergenceError, InputError, NoMLEError, NotIdentifiedError
from pairkit.rating._checks import check_comparisons
from pairkit.rating._exact import exact_note, exact_sparse_intervals, rows_conditional
from pairkit.rating._pairwise import (
    ModelFunction,
    PairwiseDesign,
    PairwiseFit,
    check_dense_size,
    covariance,
    data_information,
    fit_covariance,
    fit_pairwise,
    flat_directions,
    interval_bounds,
    separating_direction,
    sparse_item_report,
)
from pairkit.rating._stats import win_rate
from pairkit.rating.bradley_terry import check_decisive
from pairkit.rating.leaderboard import Leaderboard, Predictor, bradley_terry_predictor


def row_stats(comparisons: Comparisons, ties: str) -> dict[str, np.ndarray]:
    """Per-comparison statistics: ``"half"`` splits ties into half wins; ``"separate"`` counts them apart."""
    y, w = comparisons.outcome, comparisons.weight
    if ties == "half":
        return {"wins_i": w * y, "wins_j": w * (1 - y)}
    tie = (y > 0) & (y < 1)
    return {"wins_i": w * np.where(tie, 0, y), "wins_j": w * np.where(tie, 0, 1 - y), "ties": w * tie}


def aggregate_rows(
    n_items: int, i: np.ndarray, j: np.ndarray, X: np.ndarray | None, stats: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict[str, np.ndarray]]:
    """Sum the statistics of rows with the same ordered pair and the same covariate row (hashing, no sort)."""
    if X is None or not X.shape[1]:
        xcode = np.zeros(len(i), dtype=np.int64)
    elif X.shape[1] == 1:
        xcode = pd.factorize(X[:, 0])[0].astype(np.int64)
    else:
        xcode = np.unique(X, axis=0, return_inverse=True)[1].ravel()
    key = (i * np.int64(n_items) + j) * np.int64(xcode.max(initial=0) + 1) + xcode
    inverse, uniq = pd.factorize(key)
    first = np.empty(len(uniq), dtype=np.int64)
    first[inverse[::-1]] = np.arange(len(key) - 1, -1, -1)  # the first row of each group
    out = {k: np.bincount(inverse, v, len(uniq)) for k, v in stats.items()}
    return i[first], j[first], None if X is None else X[first], out


def order_rows(comparisons: Comparisons, neutral: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Rows written from the first-shown side: ``i`` moved/was shown first, covariate +1 (0 when neutral).

    Returns ``(i, j, x, swapped)``: ``swapped`` marks rows whose a/b were exchanged (outcome must be flipped).
    """
    if comparisons.a_first is None:
        raise InputError(
            "the comparisons have no order flag (a_first); read them with a_first=COLUMN or a_first=True "
            "(when a is always first: white in chess, the home side)"
        )
    a_first = comparisons.a_first.astype(bool)
    swapped = ~a_first
    x = np.ones(len(comparisons))
    if neutral is not None:
        neutral = np.asarray(neutral, dtype=bool)
        if neutral.shape != (len(comparisons),):
            raise InputError(f"neutral must have one flag per comparison ({len(comparisons)}), got {neutral.shape}")
        x[neutral] = 0.0
        swapped = swapped & ~neutral
    i = np.where(swapped, comparisons.b, comparisons.a)
    j = np.where(swapped, comparisons.a, comparisons.b)
    return i, j, x, swapped


def flip(stats: dict[str, np.ndarray], swapped: np.ndarray) -> dict[str, np.ndarray]:
    """Exchange the two sides' wins on the rows that were written from the other side."""
    out = dict(stats)
    out["wins_i"] = np.where(swapped, stats["wins_j"], stats["wins_i"])
    out["wins_j"] = np.where(swapped, stats["wins_i"], stats["wins_j"])
    return out


@dataclass(frozen=True)
class ExtraParam:
    """A reported extra parameter: its position in (β, η), a name and the map from the fitted scale."""

    name: str
    index: int  # into the concatenation (β, η)
    transform: Callable[[float], float] = float


def fit_rows_model(
    comparisons: Comparisons,
    *,
    i: np.ndarray,
    j: np.ndarray,
    X: np.ndarray | None,
    stats: dict[str, np.ndarray],
    model: ModelFunction,
    model_name: str,
    n_eta: int = 0,
    eta0: np.ndarray | None = None,
    prior: float = 0.0,
    ridge: float = 0.0,
    intervals: str = "auto",
    level: float = 0.95,
    extra: Sequence[ExtraParam] = (),
    predictor: Callable[[PairwiseFit], Predictor | None] | None = None,
    aggregate: bool = True,
    tol: float = 1e-10,
    max_iter: int = 100,
    theta0: np.ndarray | None = None,
    identification_hint: str = "",
    separation_hint: str = "",
) -> tuple[Leaderboard, PairwiseFit]:
    """Fit a row model with the shared solver and build its :class:`Leaderboard` (ratings + named params).

    Before fitting, the design is checked for flat directions (:func:`check_identified`); after, intervals follow
    :func:`pairkit.rating._pairwise.interval_method` and items with little data are flagged
    (:func:`sparse_item_report`). ``identification_hint`` is appended to a :class:`NotIdentifiedError`. The options
    were checked by the calling fit (its declared options), so they are not checked again here.
    """
    n = comparisons.n_items
    check_dense_size(n + (0 if X is None else X.shape[1]) + n_eta, f"model {model_name!r}")
    if aggregate:
        ai, aj, aX, astats = aggregate_rows(n, i, j, X, stats)
    else:
        ai, aj, aX, astats = i, j, X, stats
    design = PairwiseDesign(n_items=n, i=ai, j=aj, stats=astats, X=aX)
    check_identified(design, model, n_eta=n_eta, ridge=ridge, theta0=theta0, eta0=eta0, items=comparisons.items,
                     extra=extra, prior=prior, hint=identification_hint, separation_hint=separation_hint)
    late_check = design.n_covariates > 0 and len(design.i) > SEPARATION_LP_ROWS

    def separation():
        check_separation(design, prior=prior, ridge=ridge, items=comparisons.items, extra=extra,
                         hint=separation_hint)

    try:
        fit = fit_pairwise(
            design, model, n_eta=n_eta, prior=prior, ridge=ridge, eta0=eta0, tol=tol, max_iter=max_iter,
            theta0=theta0,
        )
    except ConvergenceError:
        if late_check:
            separation()
        raise
    if late_check and max(np.abs(fit.theta).max(initial=0.0), np.abs(fit.beta).max(initial=0.0)) > DIVERGENT:
        separation()
    chosen = fit_covariance(
        fit, PairwiseDesign(n_items=n, i=i, j=j, stats=stats, X=X), model, intervals=intervals, prior=prior,
        n_eta=n_eta, clusters=comparisons.cluster, weight=comparisons.weight,
    )
    cov, method = chosen.cov, chosen.method
    z = special.ndtri(0.5 + level / 2)
    extra_values = np.concatenate([fit.beta, fit.eta])
    params: dict[str, float] = {}
    param_intervals: dict[str, tuple[float, float]] = {}
    for p in extra:
        value = float(extra_values[p.index])
        params[p.name] = float(p.transform(value))
        if cov is not None:
            se = float(np.sqrt(max(cov[n + p.index, n + p.index], 0.0)))
            lo, hi = sorted((float(p.transform(value - z * se)), float(p.transform(value + z * se))))
            param_intervals[p.name] = (lo, hi)
    se_theta = None if cov is None else np.sqrt(np.clip(np.diag(cov)[:n], 0, None))
    games = np.bincount(i, sum(stats.values()), n) + np.bincount(j, sum(stats.values()), n)
    columns, notes = sparse_item_report(chosen, comparisons.items, prior)
    centred = fit.theta - fit.theta.mean()
    lo, hi = interval_bounds(centred, se_theta, chosen.prior_only, prior, level)
    if intervals == "auto" and cov is not None and fit.information is not None:
        # Items with few comparisons: exact conditional intervals, their variance carried into the centre.
        cov, lo, hi, exact = exact_sparse_intervals(
            fit.theta, None, np.asarray(fit.information.diagonal())[:n], cov, prior=prior, level=level,
            centred_estimate=centred, games=games,
            conditional=rows_conditional(fit.theta, fit.beta, fit.eta, design, model, prior=prior, level=level),
            floor=(lambda: covariance(fit.information, n, gauge=prior == 0)) if method == "sandwich" else None)
        se_theta = np.sqrt(np.clip(np.diag(cov)[:n], 0, None))
        if exact.any():
            columns["exact_interval"] = exact
            notes.append(exact_note(int(exact.sum())))
    lb = Leaderboard(
        items=comparisons.items,
        scores=centred,
        columns=columns,
        model=model_name,
        se=se_theta,
        ci_low_log=lo,
        ci_high_log=hi,
        covariance=None if cov is None else cov[:n, :n],
        n=games,
        win_rate=win_rate(comparisons),
        log_likelihood=fit.loglik,
        n_comparisons=len(comparisons),
        params=params,
        param_intervals=param_intervals,
        interval_method=method,
        level=level,
        predictor=predictor(fit) if predictor is not None else bradley_terry_predictor,
        info={
            "newton_steps": fit.n_iter,
            "scaled_gradient": fit.gradient_norm,
            "prior": prior,
            "ridge": ridge,
            "interval_rule": chosen.rule,
            "interval_notes": notes,
            "beta": fit.beta.copy(),
            "eta": fit.eta.copy(),
            "param_se": {p.name: float(np.sqrt(max(cov[n + p.index, n + p.index], 0.0))) for p in extra}
            if cov is not None
            else {},
        },
    )
    return lb, fit


SEPARATION_LP_ROWS = 5000
"""Designs with covariates up to this many (aggregated) rows are checked for separation by linear programming
before fitting (~0.3 s at the limit); larger ones only when the fit looks divergent (HiGHS took 8 s on 50,000
rows and 60 s on 300,000)."""

DIVERGENT = 15.0
"""A fitted |parameter| above this (odds of e^15 ≈ 3·10^6) triggers the separation check after the fit."""


def check_separation(
    design: PairwiseDesign, *, prior: float, ridge: float, items: Sequence[str], extra: Sequence[ExtraParam],
    hint: str = "",
) -> None:
    """Raise :class:`NoMLEError` naming the divergent parameters when the outcomes are separated."""
    n = design.n_items
    v = separating_direction(design, free_theta=prior == 0, free_beta=ridge == 0)
    if v is None:
        return
    moved = np.flatnonzero(np.abs(v) >= 1e-6)
    who = [_label(k, n, items, extra) + (" ↑" if v[k] > 0 else " ↓") for k in moved[:8]]
    raise NoMLEError(
        "no maximum-likelihood estimate: the outcomes are perfectly separated — moving "
        f"{', '.join(who)}{' …' if len(moved) > 8 else ''} without bound only raises the likelihood, so "
        "the estimate would be infinite (and its interval zero-width)." + (f" {hint}" if hint else "")
    )


def _label(k: int, n: int, items: Sequence[str], extra: Sequence[ExtraParam]) -> str:
    """A parameter's name for messages: an item's rating, or the first name of an extra parameter."""
    if k < n:
        return f"rating of {items[k]!r}"
    return next((p.name for p in extra if p.index == k - n), f"parameter {k - n}")


def check_identified(
    design: PairwiseDesign,
    model: ModelFunction,
    *,
    n_eta: int,
    ridge: float,
    items: Sequence[str],
    extra: Sequence[ExtraParam],
    theta0: np.ndarray | None = None,
    eta0: np.ndarray | None = None,
    prior: float = 0.0,
    hint: str = "",
    separation_hint: str = "",
) -> None:
    """Raise :class:`NoMLEError` when the outcomes are separated (an infinite estimate), and
    :class:`NotIdentifiedError` when the likelihood is flat along a direction beyond the ratings' shift.

    Existence with covariates (an order flag, style features) is decided by linear programming
    (:func:`pairkit.rating._pairwise.separating_direction`): "the first-shown side won every comparison" sends the
    order advantage to infinity even with a prior on the strengths.

    Existence (every item both won and lost) is not enough once extra parameters are fitted: with every comparison
    against one reference item, shown in the same order, ``β + c`` and ``θ_ref + c`` give the same likelihood
    for every c. The data information is checked for such directions (:func:`flat_directions`); the
    parameters that move along one are named. Only models with extra parameters are checked (for plain
    strengths the comparison graph decides, see :func:`pairkit.rating.bradley_terry.check_mle_exists`).
    """
    n = design.n_items
    if not design.n_covariates and not n_eta:
        return
    if design.n_covariates and len(design.i) <= SEPARATION_LP_ROWS:
        check_separation(design, prior=prior, ridge=ridge, items=items, extra=extra, hint=separation_hint)
    info = data_information(design, model, n_eta=n_eta, ridge=ridge, theta=theta0, eta=eta0)
    null = flat_directions(info, n)
    if not null.shape[1]:
        return
    parts = []
    for v in null.T[:3]:
        moved = np.flatnonzero(np.abs(v) >= 0.1)
        who = [_label(k, n, items, extra) for k in moved]
        parts.append(" + ".join(who[:6]) + (f" (and {len(who) - 6} more)" if len(who) > 6 else ""))
    raise NotIdentifiedError(
        f"not identified: the likelihood is flat along {null.shape[1]} direction(s) — {'; '.join(parts)} can move "
        "together without changing any prediction, so the data cannot determine them (an estimate would be "
        "arbitrary and its interval meaningless)." + (f" {hint}" if hint else "")
    )


def check_inputs(comparisons: Comparisons, ties: str, model: str) -> None:
    """Non-empty comparisons, with ties in the data when a tie model is asked for."""
    check_comparisons(comparisons, model)
    if ties != "half" and not comparisons.has_ties:
        raise InputError(f"ties={ties!r} needs at least one tie in the data; use ties='half'")
    if ties != "half":
        check_decisive(comparisons)


def start_tie_parameter(comparisons: Comparisons, ties: str) -> np.ndarray:
    """A start value for the tie parameter from the overall tie share."""
    y, w = comparisons.outcome, comparisons.weight
    share = float(np.sum(w * ((y > 0) & (y < 1))) / max(np.sum(w), 1e-300))
    share = min(max(share, 1e-6), 1 - 1e-6)
    if ties == "davidson":  # at equal strengths P(tie) = ν/(2 + ν)
        return np.array([np.log(2 * share / (1 - share))])
    # Rao–Kupper at equal strengths: P(tie) = 1 − 2σ(−α) ⇒ α = logit((1 + s)/2)
    return np.array([special.logit((1 + share) / 2)])
