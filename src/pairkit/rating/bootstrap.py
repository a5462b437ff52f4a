"""Bootstrap intervals for ratings: resampling comparisons (rows) or clusters.

:func:`bootstrap_bradley_terry` is the fast path for Bradley–Terry (ties as half wins): replicates are drawn
as counts over distinct (pair, outcome) cells of ``m`` rows drawn with replacement — or, by cluster, as cluster
multiplicities applied through a sparse cells×clusters matrix — and each replicate is solved by chord-Newton steps
that reuse one Cholesky factor of the full-data information (rescaled to the replicate's curvature), warm-started
at the full-data MLE and batched across replicates.
Replicates where the MLE does not exist (an item unbeaten in the resample) are kept: they are refitted with a
tiny prior (:data:`REPLICATE_PRIOR`), the items whose strength diverged there are recorded, and an item whose
strength diverged in more than α/2 of the replicates gets an infinite bound on that side (excluding those
replicates, as was done before, made exactly the least certain items' intervals too narrow).
:func:`bootstrap` works for any fit function that honours comparison weights.

Efron, B. (1979). Bootstrap methods: another look at the jackknife. Annals of Statistics 7(1).
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Literal

import numpy as np
import scipy.sparse as sp
from scipy import special

from pairkit._spec import declare_options, unchecked
from pairkit.data.comparisons import Comparisons
from pairkit.errors import EstimationError, InputError, IntervalWarning, NoMLEError, PairkitWarning
from pairkit.rating._checks import BY, LEVEL, MAX_ITER, N_BOOT, PRIOR, TOL
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

__all__ = ["REPLICATE_PRIOR", "BootstrapWarning", "bootstrap", "bootstrap_bradley_terry", "bootstrap_from_weights",
           "divergent_items"]

Resample = Literal["row", "cluster"]


class BootstrapWarning(PairkitWarning):
    """Some bootstrap replicates had no finite estimate (refitted with a tiny prior, or excluded).

    >>> from pairkit.errors import PairkitWarning
    >>> from pairkit.rating import BootstrapWarning
    >>> issubclass(BootstrapWarning, PairkitWarning)
    True
    """


REPLICATE_PRIOR = 0.01
"""Newman's virtual games given to a bootstrap replicate whose MLE does not exist (prior = 0 only). It keeps the
replicate, with the diverging items' strengths very large (or small) rather than infinite: the percentile bounds
of the other items and the diverging items' ranks come out right; a diverging item's bound on that side is set to
±∞ when it diverged in more than α/2 of the replicates (:func:`divergent_items`)."""


def divergent_items(counts, n_items: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Items whose Bradley–Terry strength has no finite MLE, and which way it goes: ``(up, down)`` masks.

    Ford's (1957) condition item by item. Strengths are measured against the largest strongly connected group of
    the beat-or-tied graph (the anchor, whose ratings stay finite): an item that beat the anchor, directly or
    through others, but that the anchor never beat back goes to +∞ (``up``); one the anchor reaches but which never
    reaches it goes to −∞ (``down``); an item with no path either way, never compared, or outside the anchor's
    connected part is unbounded both ways. Both masks are all False when the MLE exists.

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 0, 1, 1, 1], items=["a", "b", "c"])
    >>> from pairkit.rating import divergent_items
    >>> up, down = divergent_items(comps.pair_counts(ties='half'))
    >>> print(up, down)
    [ True  True False] [False False False]
    """
    n = counts.n_items if n_items is None else n_items
    up = np.zeros(n, dtype=bool)
    down = np.zeros(n, dtype=bool)
    from scipy.sparse import csgraph  # here, not at import: `pairkit rank` loads this module with the model

    wins = counts.wins_matrix()  # edge x → y: x beat (or tied) y
    strong_n, strong = csgraph.connected_components(wins, directed=True, connection="strong")
    if strong_n == 1:
        return up, down
    played = counts.games_per_item() > 0
    sizes = np.bincount(strong[played], minlength=strong_n)
    anchor = int(np.flatnonzero(strong == int(np.argmax(sizes)))[0])
    below = np.zeros(n, dtype=bool)
    below[csgraph.breadth_first_order(wins, anchor, directed=True, return_predecessors=False)] = True
    above = np.zeros(n, dtype=bool)
    above[csgraph.breadth_first_order(wins.T.tocsr(), anchor, directed=True, return_predecessors=False)] = True
    core = below & above  # the anchor's own group
    up = above & ~core
    down = below & ~core
    loose = ~(above | below)  # no path to or from the anchor: not determined either way
    return up | loose, down | loose


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _with_samples(board: Leaderboard, samples: np.ndarray, level: float, failed: int,
                  comparisons: Comparisons | None = None, by: str = "row", *, diverged: np.ndarray | None = None,
                  up_count: np.ndarray | None = None, down_count: np.ndarray | None = None,
                  n_boot: int | None = None) -> Leaderboard:
    """The full-data board with bootstrap intervals; under ``by="cluster"`` items seen in fewer than two
    clusters keep at least the full-data fit's interval (resampling one cluster cannot show their spread).

    ``diverged`` (replicates × items, aligned with ``samples``) marks strengths that had no finite MLE in a kept
    replicate (refitted with :data:`REPLICATE_PRIOR`): each replicate is placed on the full fit's scale by the
    items that did not diverge in it (their mean equals their full-data mean; without divergence this is plain
    centring). ``up_count``/``down_count`` count, over all ``n_boot`` replicates (kept or not), how often each item
    diverged upwards/downwards: above α/2 of them its bound on that side is infinite — the data do not bound it.
    """
    alpha = (1 - level) / 2
    samples = np.array(samples, dtype=float)
    n_boot = len(samples) if n_boot is None else n_boot
    if diverged is None or not diverged.any():
        samples = samples - samples.mean(axis=1, keepdims=True)
    else:
        keep = ~diverged
        keep[~keep.any(axis=1)] = True  # nothing finite to anchor on: centre that replicate
        w = keep.astype(float)
        shift = (w @ board.scores - (w * samples).sum(axis=1)) / w.sum(axis=1)
        samples = samples + shift[:, None]
    lo, hi = np.quantile(samples, [alpha, 1 - alpha], axis=0)
    se = samples.std(axis=0, ddof=1)
    # the full-data fit's rule (Fisher, sandwich, "no intervals requested") does not describe these intervals
    rule = (f"bootstrap: {level:.0%} percentile intervals of {n_boot} replicates resampled by {by}"
            + (f" ({failed} refitted or dropped)" if failed else ""))
    info = dict(board.info, bootstrap_replicates=n_boot, bootstrap_failed=failed, interval_rule=rule,
                se_method="standard deviation of the bootstrap replicates")
    columns = dict(board.columns)
    if up_count is not None and (up_count.any() or down_count.any()):
        lo = np.where(down_count > alpha * n_boot, -np.inf, lo)
        hi = np.where(up_count > alpha * n_boot, np.inf, hi)
        columns["no_mle_share"] = np.maximum(up_count, down_count) / n_boot
        unbounded = np.isinf(lo) | np.isinf(hi)
        if unbounded.any():
            names = listed_names(np.asarray(board.items, dtype=object)[unbounded])
            note = (f"{int(unbounded.sum())} item(s) ({names}) had no finite strength in more than {alpha:.1%} of the "
                    "bootstrap replicates (unbeaten or winless in the resample): their interval is unbounded on that "
                    "side (null in the JSON)")
            info["interval_notes"] = [*info.get("interval_notes", []), note]  # the JSON's interval.notes
            warnings.warn(note, BootstrapWarning, stacklevel=3)
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


@declare_options(N_BOOT, BY, LEVEL)
def bootstrap(
    comparisons: Comparisons,
    fit: Callable[[Comparisons], Leaderboard] = fit_bradley_terry,
    *,
    n_boot: int = 1000,
    by: Resample = "row",
    level: float = 0.95,
    seed: int | np.random.Generator | None = 0,
    fallback: Callable[[Comparisons], Leaderboard] | None = None,
) -> Leaderboard:
    """Percentile bootstrap for any rating function that honours ``Comparisons.weight``.

    Each replicate refits ``fit`` on the comparisons reweighted by multinomial resampling multiplicities of
    rows (``by="row"``) or of clusters (``by="cluster"``), drawn as in :func:`bootstrap_bradley_terry` (a stream per
    :data:`CHUNK` replicates, spawned from ``seed``). Returns the full-data fit with bootstrap
    standard errors, percentile intervals and the replicate samples (for rank intervals).

    A replicate that ``fit`` cannot estimate (:class:`~pairkit.errors.EstimationError`, e.g. an item unbeaten in
    the resample) is refitted by ``fallback`` when given (the same model with :data:`REPLICATE_PRIOR`; what
    :func:`~pairkit.rating.registry.fit_model` passes), else excluded; either way it is counted and warned about,
    and the items whose strength diverged there (:func:`divergent_items`) get an infinite bound on that side when
    that happened in more than α/2 of the replicates.

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1] * 5, [1, 2, 0, 1, 2, 2] * 5
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1] * 5, items=["a", "b", "c"])
    >>> from pairkit.rating import bootstrap, fit_bradley_terry
    >>> board = bootstrap(comps, lambda c: fit_bradley_terry(c, prior=1.0), n_boot=20, seed=0)
    >>> board.interval_method, board.samples.shape
    ('bootstrap', (20, 3))
    """
    _check_args(comparisons, n_boot, by)
    rng = _rng(seed)
    m = len(comparisons)
    streams = _replicate_streams(rng, n_boot)

    rows = _RowResampler(m, _row_layout(comparisons))

    def weights(r: int) -> np.ndarray:
        stream = streams[r // CHUNK]  # the fast path's streams: the same seed draws the same replicates
        mult = (_multiplicities(comparisons, by, stream, 1)[:, 0] if by == "cluster"
                else rows.multiplicities(stream))
        return comparisons.weight * mult

    return _refit_replicates(comparisons, fit, weights, n_boot, level, by, fallback)


def bootstrap_from_weights(
    comparisons: Comparisons,
    fit: Callable[[Comparisons], Leaderboard],
    weights: np.ndarray,
    *,
    level: float = 0.95,
    fallback: Callable[[Comparisons], Leaderboard] | None = None,
    method: str = "poisson bootstrap",
) -> Leaderboard:
    r"""Percentile bootstrap from given replicate weights: replicate ``r`` refits ``fit`` on ``comparisons`` with
    weights ``weights[:, r]`` (rows × replicates, replacing ``comparisons.weight``).

    The weights of ``pairkit count --bootstrap`` are the Poisson bootstrap's (Hanley & MacGibbon 2006; Chamandy,
    Muralidharan, Najmi & Naik 2012, "Estimating uncertainty for massive data streams"): each original row's
    multiplicity :math:`W \sim \mathrm{Poisson}(1)` independently, which for many rows approximates the
    multinomial resampling of :func:`bootstrap` (:math:`\mathrm{Mult}(m, 1/m)` multiplicities). Intervals are
    percentile intervals of the centred replicate strengths, as there; ``interval_method`` is ``method``.
    Failed replicates are refitted by ``fallback`` (or excluded) as in :func:`bootstrap`.

    >>> from pairkit import Comparisons
    >>> from pairkit.rating import bootstrap_from_weights, fit_bradley_terry
    >>> comps = Comparisons.from_arrays([0, 1, 2] * 4, [1, 2, 0] * 4, [1, 1, 0] * 4, items=["a", "b", "c"])
    >>> w = np.random.default_rng(0).poisson(1.0, size=(len(comps), 30)).astype(float)
    >>> board = bootstrap_from_weights(comps, lambda c: fit_bradley_terry(c, prior=1.0), w)
    >>> board.interval_method, board.samples.shape
    ('poisson bootstrap', (30, 3))
    """
    weights = np.asarray(weights, dtype=float)
    if weights.ndim != 2 or weights.shape[0] != len(comparisons) or weights.shape[1] < 2:
        raise InputError(f"replicate weights must be (comparisons={len(comparisons)}) × (replicates ≥ 2); got "
                         f"shape {weights.shape}")
    if not (np.isfinite(weights).all() and (weights >= 0).all()):
        raise InputError("replicate weights must be finite and non-negative")
    LEVEL.check(level)
    board = _refit_replicates(comparisons, fit, lambda r: weights[:, r], weights.shape[1], level, "row", fallback)
    rule = board.info["interval_rule"].replace("bootstrap:", f"{method}:", 1).replace(" resampled by row", "", 1)
    return replace(board, interval_method=method, info={**board.info, "interval_rule": rule})


def _refit_replicates(comparisons: Comparisons, fit, weights: Callable[[int], np.ndarray], n_boot: int,
                      level: float, by: str, fallback) -> Leaderboard:
    """The generic bootstrap loop: refit every replicate's weights (one refit per replicate is the unit of work)."""
    board = fit(comparisons)
    n = comparisons.n_items
    samples, diverged, failed = [], [], 0
    up_count, down_count = np.zeros(n, dtype=int), np.zeros(n, dtype=int)
    for r in range(n_boot):
        resampled = comparisons.with_weights(weights(r))
        up = down = np.zeros(n, dtype=bool)
        with warnings.catch_warnings():  # a replicate's own interval notes are not the bootstrap's
            warnings.simplefilter("ignore", IntervalWarning)
            try:
                rep = fit(resampled)
            except EstimationError:
                failed += 1
                up, down = divergent_items(resampled.pair_counts(ties="half"))
                up_count += up
                down_count += down
                if fallback is None:
                    continue
                try:
                    rep = fallback(resampled)
                except EstimationError:
                    continue
        samples.append(rep.scores)
        diverged.append(up | down)
    _warn_failed(failed, n_boot, refitted=fallback is not None)
    if not samples:
        raise EstimationError("no bootstrap replicate could be fitted; use prior > 0")
    return _with_samples(board, np.asarray(samples), level, failed, comparisons, by, diverged=np.asarray(diverged),
                         up_count=up_count, down_count=down_count, n_boot=n_boot)


@declare_options(N_BOOT, BY, PRIOR, LEVEL, TOL, MAX_ITER)
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
    n_jobs: int | None = None,
) -> Leaderboard:
    """Fast percentile bootstrap of Bradley–Terry strengths (ties counted as half wins).

    Equivalent to refitting :func:`fit_bradley_terry` on each resample (tested against that), but replicates
    are solved together: ``θ ← θ + P_b⁻¹ g_b(θ)`` with the full-data information ``I₀`` factorised once and
    rescaled to each replicate's curvature (:class:`_ChordSteps`), every replicate warm-started at the full-data
    MLE. ``tol`` bounds the error left in log-strength units (the last step, or twice the geometric tail the last
    two steps imply); the default 1e-5 is far below the Monte-Carlo error of any percentile.

    A row replicate is a draw of ``m`` rows with replacement: ``m`` rows drawn block by block
    (:class:`_RowResampler`, exactly Efron's resample) and counted per (pair, outcome, weight) cell, or, when there
    are few distinct cells, a multinomial draw of the cells' counts — the same distribution, since rows in one
    cell are exchangeable. On a dense comparison
    graph (up to 3,000 items) the gradient is evaluated in the Zermelo form ``g_i = W_i − π_i Σ_j N_ij/(π_i+π_j)``,
    ``π = e^θ``, over the replicate's count matrix ``N`` (single precision when ``tol ≥ 1e-6``). Replicates are
    drawn in chunks of :data:`CHUNK` from streams spawned from ``seed`` (``Generator.spawn``), so the result does not
    depend on ``n_jobs``: the number of processes (forked) sharing the chunks; ``None`` uses every CPU for large
    problems and one process otherwise.

    Example:

        >>> import numpy as np
        >>> from pairkit import Comparisons
        >>> from pairkit.rating import bootstrap_bradley_terry
        >>> rng = np.random.default_rng(0)
        >>> a, b = rng.integers(0, 4, (2, 400))
        >>> keep = a != b
        >>> y = (rng.random(keep.sum()) < 1 / (1 + np.exp(b[keep] - a[keep]))).astype(float)
        >>> comps = Comparisons.from_arrays(a[keep], b[keep], y, items=['w', 'x', 'y', 'z'])
        >>> board = bootstrap_bradley_terry(comps, n_boot=200, seed=0)
        >>> print(board.to_pandas()[['rank', 'item', 'rank_low', 'rank_high']].to_string(index=False))
         rank item  rank_low  rank_high
            1    z         1          1
            2    y         2          2
            3    x         3          3
            4    w         4          4
    """
    _check_args(comparisons, n_boot, by)
    if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1):
        raise InputError(f"n_jobs must be a positive integer or None, got {n_jobs!r}")
    rng = _rng(seed)
    fit = unchecked(fit_bradley_terry)  # prior and level were checked by this function's declared options
    # the bootstrap replaces the full fit's intervals; the cluster bootstrap floors sparse items at Fisher's
    board = fit(comparisons, prior=prior, intervals="fisher" if by == "cluster" else "none", level=level)
    n = comparisons.n_items
    pairs = comparisons.pair_counts(ties="half")
    if n > 3000:  # the dense factorisation below is the fast path for up to a few thousand items
        return unchecked(bootstrap)(comparisons, lambda c: fit(c, prior=prior, intervals="none"),
                                    n_boot=n_boot, by=by, level=level, seed=rng,
                                    fallback=lambda c: fit(c, prior=prior or REPLICATE_PRIOR, intervals="none"))
    draw = _pair_draws(comparisons, pairs, by)
    k = len(pairs.i)
    dense = k >= n * n / 8  # most pairs compared: an n × n count matrix per replicate beats gathers over pairs
    solve = (dense_replicate_solver if dense else replicate_solver)(
        pairs, board.scores, prior=prior, items=comparisons.items, tol=tol, max_iter=max_iter)
    batch = max(1, min(CHUNK, int(4e6 // max(k, 1))))
    work = _ChunkWork(draw, solve, pairs, prior, batch)
    streams = _replicate_streams(rng, n_boot)
    sizes = [min(CHUNK, n_boot - start) for start in range(0, n_boot, CHUNK)]
    jobs = n_jobs if n_jobs is not None else (_cpus() if n_boot * k >= 5e7 else 1)
    results = _map_chunks(work, list(zip(streams, sizes, strict=True)), min(jobs, len(sizes)))
    samples = np.concatenate([r[0] for r in results])
    ok = np.concatenate([r[1] for r in results])
    diverged = np.concatenate([r[2] for r in results])
    up_count = np.sum([r[3] for r in results], axis=0)
    down_count = np.sum([r[4] for r in results], axis=0)
    failed = int((diverged.any(axis=1) | ~ok).sum())
    _warn_failed(failed, n_boot, refitted=True)
    if not ok.any():
        raise EstimationError("no bootstrap replicate could be fitted; use prior > 0")
    return _with_samples(board, samples[ok], level, failed, comparisons, by, diverged=diverged[ok],
                         up_count=up_count, down_count=down_count, n_boot=n_boot)


CHUNK = 32
"""Replicates drawn from one spawned random stream (the unit of work of a process)."""


def _replicate_streams(rng: np.random.Generator, n_boot: int) -> list[np.random.Generator]:
    """One independent stream per chunk of :data:`CHUNK` replicates (``Generator.spawn``): replicate ``r`` is the
    ``r % CHUNK``-th draw of stream ``r // CHUNK``, whatever the number of processes."""
    return rng.spawn(-(-n_boot // CHUNK))


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _pair_draws(comparisons: Comparisons, pairs, by: str) -> Callable[[np.random.Generator, int], tuple]:
    """``draw(stream, b)`` → ``(wins_lo, wins_hi)``, pairs × b, of ``b`` resamples (rows or clusters)."""
    n = comparisons.n_items
    order, key = _row_layout(comparisons, keys=True)
    # each row's pair: a search per distinct pair (the rows in ``order`` come in runs of one pair)
    runs = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, dtype=np.intp)
    found = np.searchsorted(pairs.i * np.int64(n) + pairs.j, key[runs])
    pair_of = np.repeat(found, np.diff(np.r_[runs, len(key)]))  # in ``order``, non-decreasing
    lo_share = np.where(comparisons.a < comparisons.b, comparisons.outcome, 1 - comparisons.outcome)
    w = comparisons.weight
    k = len(pairs.i)
    if by == "cluster":
        pair_index = np.empty_like(pair_of)
        pair_index[order] = pair_of
        g = int(comparisons.cluster.max()) + 1
        win_lo = sp.csr_matrix((w * lo_share, (pair_index, comparisons.cluster)), shape=(k, g))
        win_hi = sp.csr_matrix((w * (1 - lo_share), (pair_index, comparisons.cluster)), shape=(k, g))

        def draw_clusters(stream: np.random.Generator, b: int) -> tuple:
            mult = stream.multinomial(g, np.full(g, 1.0 / g), size=b).T.astype(float)
            return np.asarray(win_lo @ mult), np.asarray(win_hi @ mult)

        return draw_clusters
    # Rows are laid out by pair (:func:`_row_layout`) and drawn by :class:`_RowResampler`; each drawn row adds its
    # weight, split as its outcome says, to its pair's two win counts.
    m = len(comparisons)
    rows = _RowResampler(m, order)
    share_code, shares = _factorize(lo_share[order])
    weight_code, weights = _factorize(w[order])
    codes = len(shares) * len(weights)
    if codes > MAX_CODES:  # many distinct weights: each drawn row's own values, summed per pair
        lo_of, hi_of = w[order] * lo_share[order], w[order] * (1 - lo_share[order])

        def one(stream: np.random.Generator, wl: np.ndarray, wh: np.ndarray) -> None:
            pos = rows.positions(stream)
            at = pair_of[pos]
            wl[:] = np.bincount(at, lo_of[pos], minlength=k)
            wh[:] = np.bincount(at, hi_of[pos], minlength=k)
    else:
        # cells pair × (outcome share, weight), pair-major: rows in one cell are exchangeable, so the replicate's
        # counts per cell are all it needs; each code's share of the cell's rows for the lower and higher item
        code = share_code * len(weights) + weight_code
        coef = np.stack([(weights[None, :] * shares[:, None]).ravel(),
                         (weights[None, :] * (1 - shares[:, None])).ravel()], axis=1)  # codes × 2
        cell_of = pair_of * codes + code
        size = np.bincount(cell_of, minlength=codes * k)
        cells = np.flatnonzero(size)
        size = size[cells]
        few = len(cells) * 4 < m  # few distinct cells: a multinomial over cells, O(cells) per replicate
        counter = None if few else _CellCounter(rows, pair_of, cell_of, codes, coef)

        def one(stream: np.random.Generator, wl: np.ndarray, wh: np.ndarray) -> None:
            if counter is not None:
                counter(stream, wl, wh)
                return
            c = np.zeros(codes * k)
            c[cells] = stream.multinomial(m, size / m)
            both = c.reshape(k, codes) @ coef
            wl[:], wh[:] = both[:, 0], both[:, 1]

    def draw_rows(stream: np.random.Generator, b: int) -> tuple:
        wl, wh = np.zeros((k, b), order="F"), np.zeros((k, b), order="F")  # a replicate's column is contiguous
        for col in range(b):
            one(stream, wl[:, col], wh[:, col])
        return wl, wh

    return draw_rows


def _factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, uniques)`` with ``uniques[codes] == values`` (``uniques`` sorted); a search among the values of
    the first rows first (outcome shares and weights usually take a few values), a full sort only if that misses."""
    if not len(values):
        return np.zeros(0, dtype=np.intp), values[:0]
    guess = np.unique(values[:1024])
    at = np.minimum(np.searchsorted(guess, values), len(guess) - 1)
    if np.array_equal(guess[at], values):
        return at, guess
    uniques, at = np.unique(values, return_inverse=True)
    return at.reshape(-1), uniques


MAX_CODES = 8
"""Up to this many distinct (outcome share, weight) values, a replicate is counted per (value, pair) cell."""

BLOCK_BITS = 8
"""Rows are drawn in blocks of ``2**BLOCK_BITS`` consecutive rows (see :class:`_RowResampler`)."""


def _row_layout(comparisons: Comparisons, *, keys: bool = False):
    """The order in which :class:`_RowResampler` lays out the rows: by pair (stable), so that the rows drawn from one
    block fall in a few cache lines of the per-pair tables; with ``keys``, also the rows' pair keys in that order."""
    a, b = comparisons.a, comparisons.b
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    if comparisons.n_items <= 1 << 16:  # the same stable order by (lo, hi) from two 16-bit radix sorts: 2× faster
        order = np.argsort(hi.astype(np.uint16), kind="stable")
        order = order[np.argsort(lo.astype(np.uint16)[order], kind="stable")]
    else:
        order = np.argsort(lo.astype(np.int64) * comparisons.n_items + hi, kind="stable")
    if not keys:
        return order
    return order, lo[order].astype(np.int64) * comparisons.n_items + hi[order]


class _RowResampler:
    r"""Draws of ``m`` rows with replacement (multiplicities :math:`\mathrm{Mult}(m, 1/m)`), in two stages.

    The rows, in the layout ``order``, are cut into blocks of :math:`L = 2^{8}` (:data:`BLOCK_BITS`; the last
    block may be shorter). A replicate first draws how many of its ``m`` rows fall in each block,
    :math:`(n_1, …, n_B) \sim \mathrm{Mult}(m, (L_1/m, …, L_B/m))`, then ``n_b`` rows uniformly within block
    ``b``: one random byte per row (exactly uniform on a full block), bounded integers on the last. Conditioning
    a multinomial on its block totals leaves independent uniform draws within blocks, so the rows drawn are exactly
    ``m`` independent uniform draws (Efron's resample); they come out grouped by block, so counting them per
    cell reads the tables in order instead of at random (~4× faster than ``m`` uniform indices at 10⁶ rows).

    >>> import numpy as np
    >>> from pairkit.rating.bootstrap import _RowResampler
    >>> rows = _RowResampler(1000)
    >>> mult = rows.multiplicities(np.random.default_rng(0))
    >>> int(mult.sum()), mult.shape
    (1000, (1000,))
    """

    def __init__(self, m: int, order: np.ndarray | None = None):
        self.m, self.order = m, order
        size = 1 << BLOCK_BITS
        self.full, self.rest = divmod(m, size)  # full blocks, rows of the short last one
        sizes = np.r_[np.full(self.full, size), [self.rest] if self.rest else []]
        self.share = sizes / m
        self.start = np.arange(len(sizes), dtype=np.intp) * size

    def draws(self, stream: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One replicate's rows per block and, block after block, each drawn row's place in its block (uint8)."""
        per_block = stream.multinomial(self.m, self.share)
        in_full = int(per_block[: self.full].sum())
        within = np.empty(self.m, dtype=np.uint8)
        within[:in_full] = stream.bit_generator.random_raw(-(-in_full // 8)).view(np.uint8)[:in_full]
        if in_full < self.m:
            within[in_full:] = stream.integers(0, self.rest, self.m - in_full)
        return per_block, within

    def positions(self, stream: np.random.Generator) -> np.ndarray:
        """One replicate's ``m`` drawn rows, as positions in the layout ``order``."""
        per_block, within = self.draws(stream)
        pos = np.repeat(self.start, per_block)
        pos += within
        return pos

    def multiplicities(self, stream: np.random.Generator) -> np.ndarray:
        """One replicate's multiplicity of every row (original order)."""
        counts = np.bincount(self.positions(stream), minlength=self.m)
        if self.order is None:
            return counts
        out = np.empty_like(counts)
        out[self.order] = counts
        return out


COUNT_BLOCKS = 64
"""Blocks of rows counted together by :class:`_CellCounter` (16,384 rows: its temporaries stay in cache)."""


class _CellCounter:
    """One replicate's drawn rows (:meth:`_RowResampler.draws`) counted per cell and added up as its pairs' two win
    columns, ``COUNT_BLOCKS`` blocks at a time.

    ``cell_of`` (in the layout) is ``pair × codes + code`` with the pairs non-decreasing, so the rows of a run of
    blocks fall in one range of pairs: each run is counted by a ``bincount`` of the drawn rows' cells numbered
    within the run code-major (``code × pairs in the run + pair − the run's first pair``), and each code's counts
    (a contiguous row) are added to the pairs' win columns with that code's shares ``coef`` (codes × 2: the lower
    and the higher item's). The rows counted are exactly :meth:`_RowResampler.positions`' (the same draws from the
    stream), without a replicate-sized array of positions or cells.
    """

    def __init__(self, rows: _RowResampler, pair_of: np.ndarray, cell_of: np.ndarray, codes: int, coef: np.ndarray):
        size = 1 << BLOCK_BITS
        blocks = len(rows.share)
        self.rows, self.codes, self.coef = rows, codes, coef
        self.first = np.arange(0, blocks, COUNT_BLOCKS) * size  # the first row of each run
        last = np.minimum(self.first + COUNT_BLOCKS * size, rows.m) - 1
        self.pair0 = pair_of[self.first]
        self.width = pair_of[last] - self.pair0 + 1  # pairs a run's rows can fall in
        run_of = np.repeat(np.arange(len(self.first)), np.diff(np.r_[self.first, rows.m]))
        code = cell_of - pair_of * codes
        self.rel = (code * self.width[run_of] + pair_of - self.pair0[run_of]).astype(np.intp)
        self.offset = (np.arange(blocks) % COUNT_BLOCKS).astype(np.intp) * size  # each block's start in its run
        # per code: (share of the lower item, of the higher item), codes with no share skipped
        self.terms = [(c, float(coef[c, 0]), float(coef[c, 1])) for c in range(codes) if coef[c].any()]

    def __call__(self, stream: np.random.Generator, wl: np.ndarray, wh: np.ndarray) -> None:
        """Add one replicate's win counts of the lower and the higher item to ``wl`` and ``wh`` (pairs, zeroed)."""
        per_block, within = self.rows.draws(stream)
        ends = np.r_[0, np.cumsum(per_block)]
        blocks, codes = len(per_block), self.codes
        span = COUNT_BLOCKS * (1 << BLOCK_BITS)
        scaled = np.empty(int(self.width.max()) if len(self.width) else 0)
        for run, b0 in enumerate(range(0, blocks, COUNT_BLOCKS)):
            b1 = min(blocks, b0 + COUNT_BLOCKS)
            s0, s1 = int(ends[b0]), int(ends[b1])
            if s0 == s1:
                continue
            pos = np.repeat(self.offset[b0:b1], per_block[b0:b1])
            pos += within[s0:s1]
            r0, p0, w = int(self.first[run]), int(self.pair0[run]), int(self.width[run])
            counts = np.bincount(self.rel[r0:r0 + span][pos], minlength=codes * w).reshape(codes, w)
            lo, hi = wl[p0:p0 + w], wh[p0:p0 + w]
            for code, to_lo, to_hi in self.terms:
                row = counts[code]
                if to_lo == to_hi:  # a tie's halves: scaled once
                    if to_lo != 1:
                        row = np.multiply(row, to_lo, out=scaled[:w])
                    lo += row
                    hi += row
                    continue
                for out, share in ((lo, to_lo), (hi, to_hi)):
                    if share == 1:
                        out += row
                    elif share:
                        out += np.multiply(row, share, out=scaled[:w])


class _ChunkWork:
    """Draw and solve one chunk of replicates; ``(samples, ok, diverged, up_count, down_count)``."""

    def __init__(self, draw, solve, pairs, prior: float, batch: int):
        self.draw, self.solve, self.pairs, self.prior, self.batch = draw, solve, pairs, prior, batch

    def __call__(self, task: tuple[np.random.Generator, int]) -> tuple:
        stream, size = task
        n = self.pairs.n_items
        samples = np.empty((size, n))
        ok = np.ones(size, dtype=bool)
        diverged = np.zeros((size, n), dtype=bool)
        up_count, down_count = np.zeros(n, dtype=int), np.zeros(n, dtype=int)
        for start in range(0, size, self.batch):
            wl, wh = self.draw(stream, min(self.batch, size - start))
            played = np.empty((n, wl.shape[1]))
            with blas_threads_for(n):
                theta, bad = self.solve(wl, wh, played)
            # Without a prior, an item absent from a replicate keeps its warm start in the chord solve: no estimate.
            absent = (played <= 0).T if self.prior == 0 else np.zeros((theta.shape[1], n), dtype=bool)
            stop = start + theta.shape[1]
            diverged[start:stop] = absent
            up_count += absent.sum(axis=0)
            down_count += absent.sum(axis=0)
            for col in np.flatnonzero(bad):  # no finite MLE: which items diverged, which way (rare; per replicate)
                up, down = divergent_items(replace(self.pairs, wins_i=wl[:, col], wins_j=wh[:, col],
                                                   ties=np.zeros(len(self.pairs.i))))
                diverged[start + col] |= up | down
                up_count += up & ~absent[col]  # absent items are counted above
                down_count += down & ~absent[col]
            samples[start:stop] = theta.T
            ok[start:stop] = np.all(np.isfinite(theta), axis=0)
        return samples, ok, diverged, up_count, down_count


_FORKED_WORK: _ChunkWork | None = None


def _run_forked(task):
    return _FORKED_WORK(task)  # type: ignore[misc]


def _map_chunks(work: _ChunkWork, tasks: list, jobs: int) -> list:
    """The chunks in order; in ``jobs`` forked processes (sharing ``work`` copy-on-write) when ``jobs > 1``."""
    global _FORKED_WORK
    if jobs <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [work(task) for task in tasks]
    from concurrent.futures import ProcessPoolExecutor

    _FORKED_WORK = work
    try:
        with _one_blas_thread(), ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(_run_forked, tasks))
    finally:
        _FORKED_WORK = None


def _one_blas_thread():
    """BLAS limited to one thread while several processes share the CPUs (inherited by the forked workers)."""
    import contextlib

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn/scipy stacks
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def replicate_solver(pairs, theta_hat: np.ndarray, *, prior: float, items, tol: float = 1e-5,
                     max_iter: int = 200):
    """A function ``(wins_lo, wins_hi, played=None) -> (theta, bad)`` solving many reweighted BT problems at once.

    ``wins_lo``/``wins_hi`` are ``pairs × b`` win counts of each pair's lower/higher-indexed item; ``played``
    (items × b), when given, receives each item's games in each replicate. Chord
    iterations ``θ ← θ + P_b⁻¹ g(θ)`` reuse one factorisation of the information ``I₀`` at ``theta_hat``, rescaled
    to each replicate's curvature (:class:`_ChordSteps`).
    Columns that do not converge are refitted by the safeguarded solver; a column whose MLE does not exist
    (``prior == 0``) is flagged ``bad`` and refitted with :data:`REPLICATE_PRIOR` virtual games (NaN when even
    that fails).
    """
    n = len(theta_hat)
    k = len(pairs.i)
    steps = _ChordSteps(pairs, theta_hat, prior)
    incidence = sp.csc_matrix(  # incidence @ r adds r to item i and subtracts it from item j
        (np.concatenate([np.ones(k), -np.ones(k)]), (np.concatenate([pairs.i, pairs.j]), np.tile(np.arange(k), 2))),
        shape=(n, k),
    )
    differences = incidence.T.tocsr()  # differences @ θ = θ_i − θ_j for every pair and replicate at once
    refit = _safeguarded_refits(pairs, theta_hat, prior, items)

    def solve(wl: np.ndarray, wh: np.ndarray, played: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        b = wl.shape[1]
        theta = np.repeat(theta_hat[:, None], b, axis=1)
        done, last = np.zeros(b, dtype=bool), np.full(b, np.inf)
        games = wl + wh
        if played is not None:
            for c in range(b):
                played[:, c] = steps.item_sum(games[:, c], games[:, c])
        curvature = steps.curvature(games)
        for _ in range(max_iter):
            # r = wl − (wl + wh) σ(θ_i − θ_j), in place on one pairs × b array (a sparse product, no gathers)
            r = special.expit(differences @ theta)
            r *= games
            np.subtract(wl, r, out=r)
            grad = np.asarray(incidence @ r)
            if steps.step(theta, grad, done, tol, curvature, last):
                break
        return refit(theta, done, wl, wh)

    return solve


def dense_replicate_solver(pairs, theta_hat: np.ndarray, *, prior: float, items, tol: float = 1e-5,
                           max_iter: int = 200):
    """:func:`replicate_solver` for a dense comparison graph: the same chord iterations and fallbacks, the gradient
    in Zermelo's form over each replicate's ``n × n`` count matrix (upper triangle), in row blocks:

    .. math::

        g_i(θ) = W_i − π_i \\sum_{j \\ne i} \\frac{N_{ij}}{π_i + π_j} − \\text{prior}\\,(2σ(θ_i) − 1),
        \\qquad π = e^{θ},

    with ``W_i`` the replicate's wins of ``i`` (ties as halves) and ``N_ij`` its games between ``i`` and ``j``.
    Broadcast sums and divisions replace gathers and ``expit`` over pairs; single precision (the gradients and the
    chord steps' products and triangular solves) when ``tol ≥ 1e-6``, double otherwise: on 1,000 items and 10⁶
    comparisons the replicates differ from double-precision solves to 1e-12 by at most 8.2e-6 at the default
    ``tol = 1e-5`` and 1.1e-6 at ``tol = 1e-6`` (as with double-precision steps: the stopping rule, not the
    rounding, sets it; the Monte-Carlo error of a percentile of 1,000 replicates is ~1e-2). At the warm start θ̂
    one pass over ``N`` gives the first gradient, the curvature
    :math:`\\sum_j N_{ij}\\,\\hat p_{ij}(1 − \\hat p_{ij})` and each item's games together
    (:math:`1/(\\hat π_i + \\hat π_j)` and :math:`\\hat p_{ij}(1 − \\hat p_{ij})` are kept per row block); the count
    matrices are kept between calls (only the observed pairs' cells are ever written).
    """
    n = len(theta_hat)
    dtype = np.float32 if tol >= 1e-6 else np.float64
    steps = _ChordSteps(pairs, theta_hat, prior, dtype)
    refit = _safeguarded_refits(pairs, theta_hat, prior, items)
    flat = pairs.i.astype(np.int64) * n + pairs.j
    block = max(1, min(n, 2**17 // max(n, 1)))  # rows per block: ~0.5 MB of temporaries (stays in cache)
    bounds = [(s, min(n, s + block)) for s in range(0, n, block)]
    scratch = np.empty((block, n), dtype)
    pi_hat = np.exp(theta_hat).astype(dtype)
    at_hat = []  # per row block: 1/(π̂_i + π̂_j) and p̂(1 − p̂) over its columns s…n
    for s, e in bounds:
        p = special.expit(theta_hat[s:e, None] - theta_hat[None, s:])
        at_hat.append(((1 / (np.exp(theta_hat[s:e, None]) + np.exp(theta_hat[None, s:]))).astype(dtype),
                       (p * (1 - p)).astype(dtype)))
    kept: list[np.ndarray] = []  # the replicates' count matrices, allocated once (zero outside the pairs' cells)

    def count_matrices(b: int) -> np.ndarray:
        if not kept or kept[0].shape[0] < b:
            kept[:] = [np.zeros((b, n, n), dtype)]
        return kept[0]

    def zermelo(pi: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """π_i Σ_j N_ij / (π_i + π_j), over the upper triangle of ``counts``."""
        total = np.zeros(n, dtype)
        for s, e in bounds:
            t = scratch[: e - s, : n - s]
            np.add(pi[s:e, None], pi[None, s:], out=t)
            np.divide(counts[s:e, s:], t, out=t)
            total[s:e] += t.sum(axis=1)
            total[s:] += t.sum(axis=0)
        return total * pi

    def first_pass(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """At θ̂: expected wins (Zermelo's sum), curvature and games of every item, in one pass over ``counts``."""
        expected, curvature, games = np.zeros(n, dtype), np.zeros(n, dtype), np.zeros(n, dtype)
        for (s, e), (q, h) in zip(bounds, at_hat, strict=True):
            c = counts[s:e, s:]
            t = scratch[: e - s, : n - s]
            for out, by in ((expected, q), (curvature, h)):
                np.multiply(c, by, out=t)
                out[s:e] += t.sum(axis=1)
                out[s:] += t.sum(axis=0)
            games[s:e] += c.sum(axis=1)
            games[s:] += c.sum(axis=0)
        return expected * pi_hat, curvature, games

    def solve(wl: np.ndarray, wh: np.ndarray, played: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        b = wl.shape[1]
        counts = count_matrices(b)
        wins, grad, curvature = np.empty((n, b)), np.empty((n, b)), np.empty((n, b))
        games = np.empty(len(flat), dtype)
        for c in range(b):  # a replicate at a time: its count matrix stays in cache
            counts[c].ravel()[flat] = np.add(wl[:, c], wh[:, c], out=games)
            wins[:, c] = steps.item_sum(wl[:, c], wh[:, c])  # ties as halves
            expected, curvature[:, c], per_item = first_pass(counts[c])
            grad[:, c] = wins[:, c] - expected
            if played is not None:
                played[:, c] = per_item
        theta = np.repeat(theta_hat[:, None], b, axis=1)
        done, last = np.zeros(b, dtype=bool), np.full(b, np.inf)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a diverging replicate: refitted
            for _ in range(max_iter):
                if steps.step(theta, grad, done, tol, curvature, last):
                    break
                grad = np.zeros((n, b))
                for c in np.flatnonzero(~done):
                    grad[:, c] = wins[:, c] - zermelo(np.exp(theta[:, c]).astype(dtype), counts[c])
        return refit(theta, done, wl, wh)

    return solve


class _ItemSums:
    """``item_sum(lo, hi)[x] = Σ lo[p]`` over the pairs ``p`` whose lower item is ``x`` plus ``Σ hi[p]`` over those
    whose higher item is ``x`` (pairs → items, one replicate): segment sums over the pairs' runs of lower items (a
    ``bincount`` over sorted bins is ~10× slower), a sparse product for the higher ones."""

    def __init__(self, pairs, n: int):
        k = len(pairs.i)
        self.n, self.i = n, pairs.i
        self.to_hi = sp.csc_matrix((np.ones(k), (pairs.j, np.arange(k))), shape=(n, k))  # read in pair order
        sorted_lo = k == 0 or bool(np.all(pairs.i[1:] >= pairs.i[:-1]))  # pair_counts sorts pairs by (i, j)
        self.lo_runs = np.flatnonzero(np.r_[True, pairs.i[1:] != pairs.i[:-1]]) if sorted_lo and k else (
            np.zeros(0, dtype=np.intp) if sorted_lo else None)
        self.lo_items = pairs.i[self.lo_runs] if self.lo_runs is not None else None

    def __call__(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        if self.lo_runs is None:
            out = np.bincount(self.i, lo, self.n)
        else:
            out = np.zeros(self.n)
            if len(self.lo_runs):
                out[self.lo_items] = np.add.reduceat(lo, self.lo_runs)
        out += self.to_hi @ hi
        return out


class _ChordSteps:
    r"""Preconditioned fixed-point steps ``θ ← θ + P_b(θ)⁻¹ g_b(θ)`` for many replicates ``b`` at once.

    ``P_b`` is the full-data information :math:`I_0` at :math:`\hat θ` (factorised once) rescaled to each
    replicate's current curvature on the diagonal: with :math:`d_0 = \operatorname{diag} I_0` and :math:`d_b(θ)`
    the replicate's information diagonal,

    .. math::

        P_b = S (I_0 + c\,\mathbf{1}\mathbf{1}^\top) S, \qquad S = \operatorname{diag}\sqrt{d_b(θ)/d_0},

    (``c = mean(d₀)/n`` fixes the free level when ``prior == 0``; the step is then centred), so a step costs two
    triangular solves with all replicates as right-hand sides. :math:`d_b` is exact at :math:`\hat θ` (linear in
    the replicate's counts) and moved to θ to first order with the full data's third derivatives,

    .. math::

        d_{b,i}(θ) ≈ d_{b,i}(\hat θ) + \sum_j A_{ij} (δ_i − δ_j), \qquad
        A_{ij} = N_{ij}\, h'(\hat θ_i − \hat θ_j),\quad h = σ(1 − σ),\quad δ = θ − \hat θ,

    a dense matrix product. Any such ``P_b`` leaves the fixed point ``g_b(θ) = 0`` unchanged (the exact gradient
    is evaluated every step, and the stopping rule is on the step); the rescaling only makes the iterations
    contract faster (error ×~0.04 per step instead of ×~0.1 at 1,000 items / 10⁶ comparisons: three gradient
    evaluations instead of five to ``tol = 1e-5``), by following the curvature that moves with θ. Ratios
    ``d_b/d₀`` are clipped to [¼, 4] (an item barely played in a replicate).
    """

    def __init__(self, pairs, theta_hat: np.ndarray, prior: float, dtype=np.float64):
        n = len(theta_hat)
        self.n, self.pairs, self.theta_hat, self.prior, self.dtype = n, pairs, theta_hat, prior, dtype
        info = _information(theta_hat, pairs, prior)
        self.d0 = np.diag(info).copy()
        p = special.expit(theta_hat[pairs.i] - theta_hat[pairs.j])
        self.h = p * (1 - p)
        third = (pairs.wins_i + pairs.wins_j) * self.h * (1 - 2 * p)
        self.a = np.zeros((n, n))
        self.a[pairs.i, pairs.j] = third
        self.a[pairs.j, pairs.i] = -third
        self.a_rows = self.a.sum(axis=1)
        self.item_sum = _ItemSums(pairs, n)
        self.gauge = prior == 0
        if self.gauge:
            info += self.d0.mean() / n
        import scipy.linalg as la  # not at import: `pairkit rank` loads this module with the model

        self.factor = la.cho_factor(info, overwrite_a=True, check_finite=False)
        if dtype != np.float64:  # products and solves in single precision (the gradients are, too)
            self.a = self.a.astype(dtype)
            self.factor = (self.factor[0].astype(dtype), self.factor[1])

    def curvature(self, games: np.ndarray) -> np.ndarray:
        """Each replicate's information diagonal at θ̂ (items × replicates; the prior's part excluded)."""
        out = np.empty((self.n, games.shape[1]))
        for c in range(games.shape[1]):
            weighted = games[:, c] * self.h
            out[:, c] = self.item_sum(weighted, weighted)
        return out

    def step(self, theta: np.ndarray, grad: np.ndarray, done: np.ndarray, tol: float, curvature: np.ndarray,
             last: np.ndarray) -> bool:
        """One step on the columns not ``done``; returns True when every column is done.

        ``theta``, ``done`` and ``last`` (each column's previous step size, ``inf`` at first) are updated in place.
        A column is done when the error left after this step is below ``tol`` — estimated, as for any linearly
        converging iteration, from this step's size ``s`` and the observed rate ``ρ = s / s_prev`` as
        ``2 ρ s / (1 − ρ)`` (twice the geometric tail, ρ < ½) — or when the step itself is below ``tol``, or not
        finite (overflowed: refitted by the caller)."""
        active = np.flatnonzero(~done)
        g = grad[:, active]
        delta = theta[:, active] - self.theta_hat[:, None]
        d = curvature[:, active] + self.a_rows[:, None] * delta - self.a @ delta.astype(self.dtype, copy=False)
        if self.prior:
            q = special.expit(theta[:, active])
            g += self.prior * (1 - 2 * q)
            d += 2 * self.prior * q * (1 - q)
        ratio = np.divide(d, self.d0[:, None], out=np.ones_like(d), where=self.d0[:, None] > 0)
        s = np.sqrt(np.clip(np.nan_to_num(ratio, nan=1.0), 0.25, 4.0))
        import scipy.linalg as la  # not at import: `pairkit rank` loads this module with the model

        step = la.cho_solve(self.factor, (g / s).astype(self.dtype, copy=False), check_finite=False) / s
        if self.gauge:
            step -= step.mean(axis=0)
        theta[:, active] += step
        size = np.max(np.abs(step), axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(np.isfinite(last[active]), size / last[active], np.inf)  # none at the first step
            left = np.where(rate < 0.5, 2 * rate * size / (1 - rate), np.inf)
        done[active] = ~(size >= tol) | (left < tol)  # converged, or NaN (overflowed: refitted below)
        last[active] = size
        return bool(done.all())


def _safeguarded_refits(pairs, theta_hat: np.ndarray, prior: float, items):
    """``refit(theta, done, wl, wh) -> (theta, bad)``: columns that did not converge (or overflowed) are refitted
    by the safeguarded solver; a column whose MLE does not exist (``prior == 0``) is flagged ``bad`` and refitted
    with :data:`REPLICATE_PRIOR` virtual games (NaN when even that fails)."""
    n = len(theta_hat)
    design = PairwiseDesign(n, pairs.i, pairs.j, {"wins_i": pairs.wins_i, "wins_j": pairs.wins_j})

    def refit(theta: np.ndarray, done: np.ndarray, wl: np.ndarray, wh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bad = ~done | ~np.all(np.isfinite(theta), axis=0)
        for col in np.flatnonzero(bad):  # rare: refit with the safeguarded solver (a tiny prior if no MLE)
            stats = {"wins_i": wl[:, col], "wins_j": wh[:, col]}
            exists = bool(prior) or _mle_exists(pairs, stats, items)
            try:
                fit = fit_pairwise(replace(design, stats=stats), bradley_terry_rows,
                                   prior=prior if exists else REPLICATE_PRIOR, theta0=theta_hat,
                                   keep_information=False)
                theta[:, col] = fit.theta
            except EstimationError:
                theta[:, col] = np.nan
            bad[col] = not exists
        return theta, bad

    return refit


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


def _check_args(comparisons: Comparisons, n_boot: int, by: str) -> None:
    """What the data allow the resampling to be (``n_boot``, ``by`` and ``level`` are declared options, checked
    once by the public functions' wrappers or by their caller)."""
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


def _warn_failed(failed: int, n_boot: int, *, refitted: bool) -> None:
    if not failed:
        return
    what = (f"were kept, refitted with a prior of {REPLICATE_PRIOR:g} virtual games (the diverging items' strengths "
            "very large or small there, never dropped)" if refitted else
            f"were excluded (this fit function has no prior to refit them with); intervals use the remaining "
            f"{n_boot - failed}, and items that diverged in more than α/2 of all replicates are unbounded")
    warnings.warn(
        f"{failed} of {n_boot} bootstrap replicates had no finite maximum-likelihood estimate (an item unbeaten or "
        f"winless in the resample) and {what}. The column no_mle_share says how often each item diverged; use "
        "prior > 0 for a finite estimate in every replicate.",
        BootstrapWarning,
        stacklevel=3,
    )
