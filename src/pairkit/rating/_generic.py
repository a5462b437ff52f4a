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
from pairkit.errors import InputError
from pairkit.rating._pairwise import (
    ModelFunction,
    PairwiseDesign,
    PairwiseFit,
    covariance,
    fit_pairwise,
    sandwich_covariance,
)
from pairkit.rating.bradley_terry import _win_rate as win_rate  # one definition of the win-rate column
from pairkit.rating.leaderboard import Leaderboard, Predictor, bradley_terry_predictor

INTERVALS = ("auto", "fisher", "sandwich", "none")


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
) -> tuple[Leaderboard, PairwiseFit]:
    """Fit a row model with the shared solver and build its :class:`Leaderboard` (ratings + named params)."""
    if intervals not in INTERVALS:
        raise InputError(f"intervals must be one of {INTERVALS}, got {intervals!r}")
    if not np.isfinite(prior) or prior < 0:
        raise InputError(f"prior must be a finite non-negative number of virtual games, got {prior!r}")
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), got {level!r}")
    n = comparisons.n_items
    if aggregate:
        ai, aj, aX, astats = aggregate_rows(n, i, j, X, stats)
    else:
        ai, aj, aX, astats = i, j, X, stats
    design = PairwiseDesign(n_items=n, i=ai, j=aj, stats=astats, X=aX)
    fit = fit_pairwise(
        design, model, n_eta=n_eta, prior=prior, ridge=ridge, eta0=eta0, tol=tol, max_iter=max_iter, theta0=theta0
    )
    q = design.n_covariates
    method = (
        None
        if intervals == "none"
        else (
            "sandwich"
            if intervals == "sandwich" or (intervals == "auto" and comparisons.cluster is not None)
            else "fisher"
        )
    )
    cov = None
    if method is not None:
        cov = covariance(fit.information, n, gauge=prior == 0)
        if method == "sandwich":
            row_design = PairwiseDesign(n_items=n, i=i, j=j, stats=stats, X=X)
            d = fit.theta[i] - fit.theta[j] + (X @ fit.beta if q else 0.0)
            rows = model(d, fit.eta, stats)
            clusters = comparisons.cluster if comparisons.cluster is not None else np.arange(len(i))
            cov = sandwich_covariance(cov, rows, row_design, clusters, n_eta)
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
    lb = Leaderboard(
        items=comparisons.items,
        log_strength=fit.theta - fit.theta.mean(),
        model=model_name,
        se=se_theta,
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
            "beta": fit.beta.copy(),
            "eta": fit.eta.copy(),
            "param_se": {p.name: float(np.sqrt(max(cov[n + p.index, n + p.index], 0.0))) for p in extra}
            if cov is not None
            else {},
        },
    )
    return lb, fit


def check_inputs(comparisons: Comparisons, ties: str, allowed: Sequence[str]) -> None:
    if not isinstance(comparisons, Comparisons):
        raise InputError(f"expected Comparisons, got {type(comparisons).__name__}")
    if len(comparisons) == 0:
        raise InputError("no comparisons to fit")
    if ties not in allowed:
        raise InputError(f"ties must be one of {tuple(allowed)}, got {ties!r}")
    if ties != "half" and not comparisons.has_ties:
        raise InputError(f"ties={ties!r} needs at least one tie in the data; use ties='half'")


def start_tie_parameter(comparisons: Comparisons, ties: str) -> np.ndarray:
    """A start value for the tie parameter from the overall tie share."""
    y, w = comparisons.outcome, comparisons.weight
    share = float(np.sum(w * ((y > 0) & (y < 1))) / max(np.sum(w), 1e-300))
    share = min(max(share, 1e-6), 1 - 1e-6)
    if ties == "davidson":  # at equal strengths P(tie) = ν/(2 + ν)
        return np.array([np.log(2 * share / (1 - share))])
    # Rao–Kupper at equal strengths: P(tie) = 1 − 2σ(−α) ⇒ α = logit((1 + s)/2)
    return np.array([special.logit((1 + share) / 2)])
