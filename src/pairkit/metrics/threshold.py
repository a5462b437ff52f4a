"""Threshold consistency of an embedding model across classes (numpy).

:func:`opis` measures how much the per-class operating characteristics of "match if cosine similarity >= t" vary
around the overall one over a calibration range of thresholds — the evaluation companion of the TCM regulariser
(:func:`pairkit.losses.threshold_consistent_margin`).
"""

from __future__ import annotations

import numpy as np

from pairkit.errors import InputError

__all__ = ["opis"]


def _pair_counts(x: np.ndarray, codes: np.ndarray, edges: np.ndarray, n_classes: int, chunk_size: int):
    """Per anchor class, how many positive / negative ordered pairs fall in each threshold bucket.

    Bucket ``b`` holds the pairs with exactly ``b`` thresholds at or below their similarity, so the pairs accepted
    at threshold ``k`` are those in buckets ``> k``. Memory O(chunk x N)."""
    n, buckets = x.shape[0], edges.shape[0] + 1
    pos = np.zeros(n_classes * buckets, dtype=np.int64)
    neg = np.zeros(n_classes * buckets, dtype=np.int64)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        sims = x[start:stop] @ x.T
        bucket = np.searchsorted(edges, sims, side="right")
        rows = np.arange(start, stop)
        same = codes[start:stop, None] == codes[None, :]
        not_self = rows[:, None] != np.arange(n)[None, :]
        key = codes[start:stop, None] * buckets + bucket
        pos += np.bincount(key[same & not_self], minlength=n_classes * buckets)
        neg += np.bincount(key[~same], minlength=n_classes * buckets)
    return pos.reshape(n_classes, buckets), neg.reshape(n_classes, buckets)


def _accepted(counts: np.ndarray) -> np.ndarray:
    """Pairs accepted at each threshold k (buckets > k): [..., K]."""
    tail = np.cumsum(counts[..., ::-1], axis=-1)[..., ::-1]
    return tail[..., 1:]


def _f1(tp: np.ndarray, fp: np.ndarray, n_pos: np.ndarray) -> np.ndarray:
    denom = tp + fp + n_pos  # 2 TP + FP + FN with FN = P - TP
    return np.where(denom > 0, 2.0 * tp / np.where(denom > 0, denom, 1), 0.0)


def opis(
    embeddings,
    labels,
    *,
    thresholds=None,
    far_range: tuple[float, float] = (1e-3, 1e-1),
    num_thresholds: int = 1000,
    normalize: bool = True,
    chunk_size: int = 1024,
    epsilon: float | None = None,
) -> float:
    """Operating-Point-Inconsistency Score: the spread of per-class utilities around the overall one, over thresholds.

    .. math::

        \\mathrm{OPIS} = \\frac{1}{T} \\sum_{c=1}^{T} \\frac{\\int_{t_{lo}}^{t_{hi}} \\big(U_c(t) - U(t)\\big)^2\\,
        dt}{\\int_{t_{lo}}^{t_{hi}} dt}

    over the T classes with at least two samples, with "match iff cosine similarity >= t" decided for every ordered
    pair of distinct samples. :math:`U_c(t)` is the utility on the pairs whose anchor is in class :math:`c`,
    :math:`U(t)` on all pairs; the utility is the F1 score of the match decisions, :math:`2TP / (2TP + FP + FN)`.
    The calibration range is the thresholds whose overall false accept rate (accepted negative pairs / negative
    pairs) lies in ``far_range``, on a uniform grid of ``num_thresholds`` + 1 cosine values in [-1, 1]; or exactly
    the given ``thresholds``. The integral is the mean over the grid points in the range (uniform weight). 0 means
    every class has the overall operating characteristic; lower is more consistent.

    With ``epsilon`` = ε in (0, 0.5], the ε-OPIS variant: the gap between the best and the worst ε fraction of the
    classes instead of every class's distance to the overall utility,

    .. math::

        \\varepsilon\\text{-OPIS} = \\frac{\\int_{t_{lo}}^{t_{hi}} \\big(U_{\\varepsilon}^{high}(t) -
        U_{\\varepsilon}^{low}(t)\\big)^2\\, dt}{\\int_{t_{lo}}^{t_{hi}} dt}

    with :math:`U_{\\varepsilon}^{high}(t)` (:math:`U_{\\varepsilon}^{low}(t)`) the mean utility of the
    :math:`\\lceil \\varepsilon T \\rceil` classes with the highest (lowest) utility at threshold :math:`t`. It
    looks at the tails only, so a few classes far from the rest show even among many well-behaved ones.

    Readings taken (the paper leaves the choice open): F1 as the utility, uniform weight over the threshold axis,
    ordered pairs (each pair counted from both anchors); for ε-OPIS, the classes are ranked afresh at every
    threshold and the tails hold :math:`\\lceil \\varepsilon T \\rceil` classes (at least one). The definitions
    were taken from the paper's description as the issue records it; its equations were not available to check.
    Memory O(chunk x N) plus O(T x grid).

    Zhang, Xu, Tang, Fang, Wu, Tighe & Xing (2024), "Threshold-Consistent Margin Loss for Open-World Deep Metric
    Learning" (ICLR).

    Args: ``embeddings`` [N, D], ``labels`` [N]. Returns a float.

    >>> import numpy as np
    >>> from pairkit.metrics import opis
    >>> x = np.array([[1.0, 0.1], [1.0, -0.1], [-1.0, 0.1], [-1.0, -0.1]])
    >>> round(opis(x, [0, 0, 1, 1], thresholds=[0.0, 0.5]), 12)  # two mirror-image classes
    0.0
    >>> x[3] = [-1.0, -3.0]  # class 1 spreads out: its F1 at t = 0.5 falls below the overall one
    >>> round(opis(x, [0, 0, 1, 1], thresholds=[0.5]), 4)
    0.2778
    >>> round(opis(x, [0, 0, 1, 1], thresholds=[0.5], epsilon=0.5), 4)  # (1 - 0)^2: the best class vs the worst
    1.0
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] == 0:
        raise InputError(f"embeddings must have shape [N, D], got {list(x.shape)}")
    if not np.isfinite(x).all():
        row = int(np.argwhere(~np.isfinite(x))[0, 0])
        raise InputError(f"embeddings contain a non-finite value at row {row}")
    y = np.asarray(labels)
    if y.shape != (x.shape[0],):
        raise InputError(f"labels must have shape [N] = [{x.shape[0]}], got {list(y.shape)}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if epsilon is not None and (
        isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not 0 < epsilon <= 0.5
    ):
        raise InputError(f"epsilon must be a fraction of the classes in (0, 0.5], got {epsilon!r}")
    if normalize:
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        if (norms == 0).any():
            raise InputError(f"embeddings row {int(np.argwhere(norms[:, 0] == 0)[0, 0])} is zero; it has no direction")
        x = x / norms
    if thresholds is None:
        if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, int) or num_thresholds < 1:
            raise InputError(f"num_thresholds must be a positive integer, got {num_thresholds!r}")
        lo, hi = far_range
        if not (0 <= lo <= hi <= 1):
            raise InputError(f"far_range must be (low, high) with 0 <= low <= high <= 1, got {far_range!r}")
        edges = np.linspace(-1.0, 1.0, num_thresholds + 1)
    else:
        edges = np.sort(np.asarray(thresholds, dtype=np.float64).ravel())
        if edges.size == 0 or not np.isfinite(edges).all():
            raise InputError("thresholds must be a non-empty list of finite numbers")
    classes, codes = np.unique(y, return_inverse=True)
    pos, neg = _pair_counts(x, codes, edges, classes.size, chunk_size)
    n_pos, n_neg = pos.sum(1), neg.sum(1)
    tp, fp = _accepted(pos), _accepted(neg)  # [T, K]
    if thresholds is None:
        far = fp.sum(0) / max(int(n_neg.sum()), 1)
        keep = (far >= lo) & (far <= hi)
        if not keep.any():
            raise InputError(
                f"no threshold of the grid has an overall false accept rate within far_range={far_range!r} "
                f"({int(n_neg.sum())} negative pairs); widen the range, refine the grid or pass thresholds"
            )
        tp, fp = tp[:, keep], fp[:, keep]
    scored = n_pos > 0
    if not scored.any():
        raise InputError("no class has two samples: OPIS needs positive pairs")
    per_class = _f1(tp[scored], fp[scored], n_pos[scored, None])  # [T, K]
    if epsilon is not None:
        tail = max(1, int(np.ceil(epsilon * per_class.shape[0] - 1e-12)))
        ranked = np.sort(per_class, axis=0)
        return float(((ranked[-tail:].mean(0) - ranked[:tail].mean(0)) ** 2).mean())
    overall = _f1(tp.sum(0), fp.sum(0), n_pos.sum())
    return float(((per_class - overall[None, :]) ** 2).mean())
