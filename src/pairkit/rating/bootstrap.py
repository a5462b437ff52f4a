"""Bootstrap intervals for ratings: resampling comparisons (rows) or clusters.

:func:`bootstrap_bradley_terry` is the fast path for Bradley–Terry (ties as half wins): replicates are drawn
as multinomial counts over distinct (pair, outcome) cells — or, by cluster, as cluster multiplicities applied
through a sparse cells×clusters matrix — and each replicate is solved by chord-Newton steps that reuse one
Cholesky factor of the full-data information, warm-started at the full-data MLE and batched across replicates.
Replicates where the MLE does not exist (an item unbeaten in the resample) are excluded and counted.
:func:`bootstrap` works for any fit function that honours comparison weights.

Efron, B. (1979). Bootstrap methods: another look at the jackknife. Annals of Statistics 7(1).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Literal

import numpy as np
import pandas as pd
import scipy.linalg as la
import scipy.sparse as sp
from scipy import special

from pairkit.data.comparisons import Comparisons
from pairkit.errors import EstimationError, InputError, IntervalWarning, NoMLEError, PairkitWarning
from pairkit.rating._pairwise import (
    MIN_CLUSTERS,
    PairwiseDesign,
    blas_threads_for,
    bradley_terry_rows,
    clusters_per_item,
    fit_pairwise,
    listed_names,
)
from pairkit.rating.bradley_terry import check_mle_exists, fit_bradley_terry
from pairkit.rating.leaderboard import Leaderboard

__all__ = ["BootstrapWarning", "bootstrap", "bootstrap_bradley_terry"]

Resample = Literal["row", "cluster"]


class BootstrapWarning(PairkitWarning):
    """Some bootstrap replicates could not be fitted and were excluded."""


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _with_samples(board: Leaderboard, samples: np.ndarray, level: float, failed: int,
                  comparisons: Comparisons | None = None, by: str = "row") -> Leaderboard:
    """The full-data board with bootstrap intervals; under ``by="cluster"`` items seen in fewer than two
    clusters keep at least the full-data fit's interval (resampling one cluster cannot show their spread)."""
    alpha = (1 - level) / 2
    samples = samples - samples.mean(axis=1, keepdims=True)
    lo, hi = np.quantile(samples, [alpha, 1 - alpha], axis=0)
    se = samples.std(axis=0, ddof=1)
    info = dict(board.info, bootstrap_replicates=len(samples), bootstrap_failed=failed)
    columns = dict(board.columns)
    if by == "cluster" and comparisons is not None:
        design = PairwiseDesign(n_items=comparisons.n_items, i=comparisons.a, j=comparisons.b, stats={})
        sparse = clusters_per_item(design, comparisons.cluster, comparisons.weight) < 2
        if sparse.any():
            names = listed_names(np.asarray(board.items, dtype=object)[sparse])
            floored = board.ci_low_log is not None and board.se is not None
            if floored:
                lo = np.where(sparse, np.minimum(lo, board.ci_low_log), lo)
                hi = np.where(sparse, np.maximum(hi, board.ci_high_log), hi)
                se = np.where(sparse, np.maximum(se, board.se), se)
                columns["fisher_floor"] = sparse
            warnings.warn(
                f"{int(sparse.sum())} item(s) appear in fewer than 2 clusters ({names}); the cluster bootstrap "
                "cannot show their spread, so their intervals "
                + (f"are at least the full-data fit's ({board.interval_method})" if floored else "are too narrow"),
                IntervalWarning, stacklevel=3,
            )
    return replace(
        board, se=se, ci_low_log=lo, ci_high_log=hi, samples=samples, columns=columns,
        covariance=None, interval_method="bootstrap", level=level, info=info,
    )


def bootstrap(
    comparisons: Comparisons,
    fit: Callable[[Comparisons], Leaderboard] = fit_bradley_terry,
    *,
    n_boot: int = 1000,
    by: Resample = "row",
    level: float = 0.95,
    seed: int | np.random.Generator | None = 0,
) -> Leaderboard:
    """Percentile bootstrap for any rating function that honours ``Comparisons.weight``.

    Each replicate refits ``fit`` on the comparisons reweighted by multinomial resampling multiplicities of
    rows (``by="row"``) or of clusters (``by="cluster"``). Returns the full-data fit with bootstrap
    standard errors, percentile intervals and the replicate samples (for rank intervals).
    """
    _check_args(comparisons, n_boot, by, level)
    rng = _rng(seed)
    board = fit(comparisons)
    m = len(comparisons)
    samples, failed = [], 0
    for _ in range(n_boot):  # generic path: one refit per replicate is the unit of work
        mult = _multiplicities(comparisons, by, rng, 1)[:, 0] if by == "cluster" else np.bincount(
            rng.integers(0, m, m), minlength=m)
        try:
            rep = fit(comparisons.with_weights(comparisons.weight * mult))
        except EstimationError:
            failed += 1
            continue
        samples.append(rep.scores)
    _warn_failed(failed, n_boot)
    if not samples:
        raise EstimationError("no bootstrap replicate could be fitted; use prior > 0")
    return _with_samples(board, np.asarray(samples), level, failed, comparisons, by)


def bootstrap_bradley_terry(
    comparisons: Comparisons,
    *,
    n_boot: int = 1000,
    by: Resample = "row",
    prior: float = 0.0,
    level: float = 0.95,
    seed: int | np.random.Generator | None = 0,
    tol: float = 1e-5,
    max_iter: int = 200,
) -> Leaderboard:
    """Fast percentile bootstrap of Bradley–Terry strengths (ties counted as half wins).

    Equivalent to refitting :func:`fit_bradley_terry` on each resample (tested against that), but replicates
    are solved together: ``θ ← θ + I₀⁻¹ g_b(θ)`` with the full-data information ``I₀`` factorised once.
    ``tol`` bounds the last step in log-strength units; the default 1e-5 is far below the Monte-Carlo error of
    any percentile (standard errors agree to 8 digits with ``tol=1e-7`` at 1.6× the cost).
    """
    _check_args(comparisons, n_boot, by, level)
    rng = _rng(seed)
    board = fit_bradley_terry(comparisons, prior=prior, intervals="fisher", level=level)
    n = comparisons.n_items
    pairs = comparisons.pair_counts(ties="half")
    if n > 3000:  # the dense factorisation below is the fast path for up to a few thousand items
        return bootstrap(comparisons, lambda c: fit_bradley_terry(c, prior=prior, intervals="none"),
                         n_boot=n_boot, by=by, level=level, seed=rng)

    # Each row → its pair and its share of wins for the pair's lower-indexed item.
    key = np.minimum(comparisons.a, comparisons.b) * np.int64(n) + np.maximum(comparisons.a, comparisons.b)
    pair_index = np.searchsorted(pairs.i * np.int64(n) + pairs.j, key)
    lo_share = np.where(comparisons.a < comparisons.b, comparisons.outcome, 1 - comparisons.outcome)
    w = comparisons.weight
    n_pairs = len(pairs.i)
    if by == "row":
        # Distinct cells (pair, outcome, weight): rows in one cell are exchangeable, so a multinomial draw
        # over cells is exactly a multinomial draw over rows.
        share_code, shares = pd.factorize(lo_share)
        weight_code, weights = pd.factorize(w)
        key = (pair_index * len(shares) + share_code) * len(weights) + weight_code
        cell_keys, first_row, cell_of_row = np.unique(key, return_index=True, return_inverse=True)
        cell_count = np.bincount(cell_of_row, minlength=len(cell_keys)).astype(float)
        cell_pair = pair_index[first_row]
        cell_value = w[first_row]
        cell_share = lo_share[first_row]
        to_pairs = sp.csr_matrix(
            (np.ones(len(cell_keys)), (cell_pair, np.arange(len(cell_keys)))), shape=(n_pairs, len(cell_keys)))
        win_lo = to_pairs @ sp.diags(cell_share * cell_value)
        win_hi = to_pairs @ sp.diags((1 - cell_share) * cell_value)
        probs = cell_count / cell_count.sum()
        m = len(comparisons)
        n_cells = len(cell_keys)

        def draw(b: int) -> np.ndarray:  # cells × b multinomial counts
            if n_cells * 4 < m:  # few distinct cells: draw over cells, O(cells) per replicate
                return rng.multinomial(m, probs, size=b).T.astype(float)
            # mostly distinct rows: resample row indices, O(m) per replicate and cheaper than O(cells) binomials
            rows = rng.integers(0, m, size=(b, m))
            flat = cell_of_row[rows] + n_cells * np.arange(b)[:, None]
            return np.bincount(flat.ravel(), minlength=n_cells * b).reshape(b, n_cells).T.astype(float)
    else:
        if comparisons.cluster is None:
            raise InputError("by='cluster' needs comparisons with a cluster column")
        g = int(comparisons.cluster.max()) + 1
        win_lo = sp.csr_matrix((w * lo_share, (pair_index, comparisons.cluster)), shape=(n_pairs, g))
        win_hi = sp.csr_matrix((w * (1 - lo_share), (pair_index, comparisons.cluster)), shape=(n_pairs, g))

        def draw(b: int) -> np.ndarray:
            return rng.multinomial(g, np.full(g, 1.0 / g), size=b).T.astype(float)

    solve = replicate_solver(pairs, board.scores, prior=prior, items=comparisons.items, tol=tol,
                             max_iter=max_iter)
    batch = max(1, min(n_boot, int(4e6 // max(len(pairs.i), 1))))
    samples = np.empty((n_boot, n))
    ok = np.ones(n_boot, dtype=bool)
    for start in range(0, n_boot, batch):
        mult = draw(min(batch, n_boot - start))
        with blas_threads_for(n):
            theta, bad = solve(np.asarray(win_lo @ mult), np.asarray(win_hi @ mult))
        samples[start : start + theta.shape[1]] = theta.T
        ok[start : start + theta.shape[1]] = ~bad
    failed = int((~ok).sum())
    _warn_failed(failed, n_boot)
    if failed == n_boot:
        raise EstimationError("no bootstrap replicate had a finite MLE; use prior > 0")
    return _with_samples(board, samples[ok], level, failed, comparisons, by)


def replicate_solver(pairs, theta_hat: np.ndarray, *, prior: float, items, tol: float = 1e-5,
                     max_iter: int = 200):
    """A function ``(wins_lo, wins_hi) -> (theta, bad)`` solving many reweighted BT problems at once.

    ``wins_lo``/``wins_hi`` are ``pairs × b`` win counts of each pair's lower/higher-indexed item. Chord
    iterations ``θ ← θ + I₀⁻¹ g(θ)`` reuse one factorisation of the information ``I₀`` at ``theta_hat``.
    Columns that do not converge are refitted by the safeguarded solver, or flagged ``bad`` when their
    MLE does not exist.
    """
    n = len(theta_hat)
    k = len(pairs.i)
    gauge = prior == 0
    factor = la.cho_factor(_information(theta_hat, pairs, prior) + (1.0 / n if gauge else 0.0), check_finite=False)
    incidence = sp.csr_matrix(  # incidence @ r adds r to item i and subtracts it from item j
        (np.concatenate([np.ones(k), -np.ones(k)]), (np.concatenate([pairs.i, pairs.j]), np.tile(np.arange(k), 2))),
        shape=(n, k),
    )
    design = PairwiseDesign(n, pairs.i, pairs.j, {"wins_i": pairs.wins_i, "wins_j": pairs.wins_j})

    def solve(wl: np.ndarray, wh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b = wl.shape[1]
        theta = np.repeat(theta_hat[:, None], b, axis=1)
        converged = np.zeros(b, dtype=bool)
        for _ in range(max_iter):
            r = wl - (wl + wh) * special.expit(theta[pairs.i] - theta[pairs.j])
            grad = np.asarray(incidence @ r)
            if prior:
                grad += prior * (1 - 2 * special.expit(theta))
            step = la.cho_solve(factor, grad, check_finite=False)
            step[:, converged] = 0
            theta += step
            converged |= np.max(np.abs(step), axis=0) < tol
            if converged.all():
                break
        bad = ~converged | ~np.all(np.isfinite(theta), axis=0)
        for col in np.flatnonzero(bad):  # rare: refit with the safeguarded solver, or exclude
            stats = {"wins_i": wl[:, col], "wins_j": wh[:, col]}
            if not prior and not _mle_exists(pairs, stats, items):
                continue
            try:
                fit = fit_pairwise(replace(design, stats=stats), bradley_terry_rows, prior=prior,
                                   theta0=theta_hat, keep_information=False)
            except EstimationError:
                continue
            theta[:, col] = fit.theta
            bad[col] = False
        return theta, bad

    return solve


def _mle_exists(pairs, stats, items) -> bool:
    counts = replace(pairs, wins_i=stats["wins_i"], wins_j=stats["wins_j"], ties=np.zeros_like(stats["wins_i"]))
    try:
        check_mle_exists(counts, items)
    except NoMLEError:
        return False
    return True


def _information(theta: np.ndarray, pairs, prior: float) -> np.ndarray:
    n = len(theta)
    p = special.expit(theta[pairs.i] - theta[pairs.j])
    h = (pairs.wins_i + pairs.wins_j) * p * (1 - p)
    info = np.zeros((n, n))
    np.add.at(info, (pairs.i, pairs.j), -h)
    info += info.T
    info[np.diag_indices(n)] = np.bincount(pairs.i, h, n) + np.bincount(pairs.j, h, n)
    if prior:
        q = special.expit(theta)
        info[np.diag_indices(n)] += 2 * prior * q * (1 - q)
    return info


def _multiplicities(comparisons: Comparisons, by: Resample, rng, b: int) -> np.ndarray:
    if comparisons.cluster is None:
        raise InputError("by='cluster' needs comparisons with a cluster column")
    g = int(comparisons.cluster.max()) + 1
    per_cluster = rng.multinomial(g, np.full(g, 1.0 / g), size=b).T
    return per_cluster[comparisons.cluster]


def _check_args(comparisons: Comparisons, n_boot: int, by: str, level: float) -> None:
    if n_boot < 2:
        raise InputError(f"n_boot must be at least 2, got {n_boot}")
    if by not in ("row", "cluster"):
        raise InputError(f"by must be 'row' or 'cluster', got {by!r}")
    if by == "cluster" and comparisons.cluster is None:
        raise InputError("by='cluster' needs comparisons with a cluster column (read with cluster=...)")
    if by == "cluster":
        g = len(np.unique(comparisons.cluster))
        if g < 2:
            raise InputError(
                "by='cluster' with a single cluster: every replicate repeats the data, so the intervals would "
                "have zero width; resample rows (by='row') or give the real clusters"
            )
        if g < MIN_CLUSTERS:
            warnings.warn(
                f"a cluster bootstrap over only {g} clusters undercovers (Cameron & Miller 2015): its intervals "
                "are likely too narrow", IntervalWarning, stacklevel=3,
            )
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), got {level!r}")


def _warn_failed(failed: int, n_boot: int) -> None:
    if failed:
        warnings.warn(
            f"{failed} of {n_boot} bootstrap replicates had no finite maximum-likelihood estimate (an item "
            "unbeaten or winless in the resample) and were excluded; intervals use the remaining "
            f"{n_boot - failed}. Use prior > 0 to keep every replicate.",
            BootstrapWarning,
            stacklevel=3,
        )
