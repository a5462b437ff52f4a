"""Ranking metrics over batches of scored lists (numpy only).

Every metric takes ``scores`` and ``labels`` of shape ``[..., list]`` (the last axis is one list; leading axes
are batch axes) and an optional boolean ``mask`` of valid entries (padding of ragged lists), and returns one
value per list, shape ``[...]``; average it for the usual mean metric (MAP is the mean of
:func:`average_precision`). Argument order is ``(scores, labels)`` as in pairkit's losses (scikit-learn's is
``(y_true, y_score)``).

Ties in scores are resolved deterministically and never by list order:

* gain-based metrics (:func:`dcg`, :func:`ndcg`, :func:`precision_at_k`, :func:`recall_at_k`) take the
  expectation over a uniformly random order of tied items (McSherry & Najork, 2008, "Computing information
  retrieval performance measures efficiently in the presence of tied scores"), as scikit-learn's
  ``ndcg_score``/``dcg_score`` with ``ignore_ties=False``;
* rank-based metrics (:func:`reciprocal_rank`, :func:`average_precision`) give every item of a block of tied
  scores the block's last (worst) rank, so a constant scorer earns nothing; for average precision this is
  scikit-learn's ``average_precision_score``;
* pair metrics count a tied score pair as not concordant (:func:`ordered_pair_accuracy`) or as a tie
  (:func:`kendall_tau`, tau-b), and :func:`spearman_rho` uses average ranks, as scipy.

Where a metric is undefined for a list (no relevant item, no valid pair, a constant ranking) it returns the
keyword ``undefined`` (default 0.0; pass ``numpy.nan`` to see them).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from pairkit.errors import InputError

__all__ = [
    "average_precision",
    "dcg",
    "ideal_dcg",
    "kendall_tau",
    "ndcg",
    "ordered_pair_accuracy",
    "precision_at_k",
    "recall_at_k",
    "reciprocal_rank",
    "spearman_rho",
]

Gain = Literal["exp2", "linear"]


# ------------------------------------------------------------------------------------------- helpers


def _as_float(x, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be numeric array-like of shape [..., list]") from None
    if arr.ndim == 0:
        raise InputError(f"{name} must have a list axis (shape [..., list]); got a scalar")
    return arr


def _prepare(scores, labels, mask):
    s = _as_float(scores, "scores")
    y = _as_float(labels, "labels")
    if s.shape != y.shape:
        raise InputError(f"scores and labels must have the same shape; got {list(s.shape)} and {list(y.shape)}")
    if mask is None:
        m = np.ones(s.shape, dtype=bool)
    else:
        m = np.asarray(mask)
        if m.dtype != bool:
            raise InputError(f"mask must be boolean (True = valid list entry); got dtype {m.dtype}")
        try:
            m = np.broadcast_to(m, s.shape)
        except ValueError:
            raise InputError(f"mask of shape {list(m.shape)} does not broadcast to {list(s.shape)}") from None
    for name, arr in (("scores", s), ("labels", y)):
        bad = m & np.isnan(arr) if name == "scores" else m & ~np.isfinite(arr)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise InputError(
                f"{name} must be {'non-NaN' if name == 'scores' else 'finite'} at valid entries; "
                f"{name}{list(idx)} = {arr[idx]}. Mark padding with mask=False."
            )
    return np.where(m, s, 0.0), np.where(m, y, 0.0), m


def _check_k(k) -> None:
    if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
        raise InputError(f"k must be a positive integer or None (the whole list); got {k!r}")


def _gains(labels: np.ndarray, mask: np.ndarray, gain: Gain) -> np.ndarray:
    if gain == "exp2":
        g = np.exp2(labels) - 1.0
    elif gain == "linear":
        g = labels
    else:
        raise InputError(f"gain must be 'exp2' or 'linear'; got {gain!r}")
    return np.where(mask, g, 0.0)


def _ratio(num: np.ndarray, den: np.ndarray, ok: np.ndarray, undefined: float) -> np.ndarray:
    out = np.full(np.shape(num), float(undefined))
    np.divide(num, den, out=out, where=ok)
    return out


def _sorted_blocks(scores: np.ndarray, mask: np.ndarray):
    """Sort each list by descending score (valid items first) and label blocks of tied scores.

    Returns the sort order ``[B, n]``, the block id of each sorted position (unique over the flattened batch)
    and the 1-based position of the last member of each position's block.
    """
    b, n = scores.shape
    order = np.lexsort((-scores, ~mask), axis=-1)
    s = np.take_along_axis(scores, order, -1)
    m = np.take_along_axis(mask, order, -1)
    new_block = np.ones((b, n), dtype=bool)
    new_block[:, 1:] = (s[:, 1:] != s[:, :-1]) | (m[:, 1:] != m[:, :-1])
    block = np.cumsum(new_block, axis=-1) - 1 + (np.arange(b) * n)[:, None]
    is_last = np.ones((b, n), dtype=bool)
    is_last[:, :-1] = new_block[:, 1:]
    pos = np.where(is_last, np.arange(1, n + 1), n + 1)
    block_end = np.minimum.accumulate(pos[:, ::-1], axis=-1)[:, ::-1]
    return order, block, block_end


def _tie_averaged(scores, values, mask, position_weights) -> np.ndarray:
    """Expected ``sum_r w_r * value(item at rank r)`` under a uniformly random order of tied scores.

    The expectation of a tied block is its mean value times the sum of its positions' weights.
    """
    b, n = scores.shape
    order, block, _ = _sorted_blocks(scores, mask)
    v = np.take_along_axis(values, order, -1)
    flat = block.ravel()
    sums = np.bincount(flat, weights=v.ravel(), minlength=b * n)
    counts = np.bincount(flat, minlength=b * n)
    mean_v = (sums[flat] / counts[flat]).reshape(b, n)
    return (mean_v * position_weights).sum(-1)


def _flat(*arrays):
    shape = arrays[0].shape
    return shape[:-1], [a.reshape(-1, shape[-1]) for a in arrays]


def _top_k_weights(n: int, k: int | None, n_valid: np.ndarray) -> np.ndarray:
    r = np.arange(n)
    cut = n_valid[:, None] if k is None else np.minimum(k, n_valid)[:, None]
    return (r[None, :] < cut).astype(float)


# ----------------------------------------------------------------------------------------------- DCG


def dcg(scores, labels, *, k: int | None = None, gain: Gain = "exp2", mask=None) -> np.ndarray:
    r"""Discounted cumulative gain at ``k`` of each list (tied scores: expected value over their orders).

    .. math::
        \mathrm{DCG@k} = \sum_{r=1}^{k} \frac{g(y_{\pi(r)})}{\log_2(r + 1)},\qquad
        g(y) = 2^y - 1\ (\texttt{"exp2"})\ \text{or}\ y\ (\texttt{"linear"})

    Järvelin & Kekäläinen (2002), "Cumulated gain-based evaluation of IR techniques"; exponential gain
    after Burges et al. (2005). ``scores``, ``labels``: ``[..., list]``; returns ``[...]``.

    >>> from pairkit.metrics import dcg
    >>> print(dcg([[0.9, 0.2, 0.5]], [[2, 0, 1]]).round(4))
    [3.6309]
    >>> print(dcg([[0.9, 0.2, 0.5]], [[2, 0, 1]], gain="linear", k=2).round(4))
    [2.6309]
    """
    _check_k(k)
    s, y, m = _prepare(scores, labels, mask)
    batch, (s, y, m) = _flat(s, y, m)
    n = s.shape[-1]
    disc = 1.0 / np.log2(np.arange(n) + 2.0)
    if k is not None:
        disc = np.where(np.arange(n) < k, disc, 0.0)
    return _tie_averaged(s, _gains(y, m, gain), m, disc[None, :]).reshape(batch)


def ideal_dcg(labels, *, k: int | None = None, gain: Gain = "exp2", mask=None) -> np.ndarray:
    r"""The largest DCG@k any ordering of each list can reach (labels sorted in descending order).

    .. math::
        \mathrm{IDCG@k} = \sum_{r=1}^{k} \frac{g(y_{(r)})}{\log_2(r + 1)},\quad y_{(1)} \ge y_{(2)} \ge \dots

    Järvelin & Kekäläinen (2002). ``labels``: ``[..., list]``; returns ``[...]``.

    >>> from pairkit.metrics import ideal_dcg
    >>> print(ideal_dcg([[0, 2, 1]]).round(4))
    [3.6309]
    """
    y = _as_float(labels, "labels")
    return dcg(y, y, k=k, gain=gain, mask=mask)


def ndcg(scores, labels, *, k: int | None = None, gain: Gain = "exp2", mask=None, undefined: float = 0.0) -> np.ndarray:
    r"""Normalised DCG at ``k``: DCG@k divided by the ideal DCG@k of the list.

    .. math::
        \mathrm{NDCG@k} = \mathrm{DCG@k} / \mathrm{IDCG@k}

    Järvelin & Kekäläinen (2002), "Cumulated gain-based evaluation of IR techniques". Lists without a
    positive gain give ``undefined`` (0.0 as scikit-learn's ``ndcg_score``). Labels should be non-negative.
    ``scores``, ``labels``: ``[..., list]``; returns ``[...]``.

    Example:

        >>> from pairkit.metrics import ndcg
        >>> print(ndcg([[0.9, 0.2, 0.5], [0.1, 0.8, 0.3]], [[2, 0, 1], [2, 0, 1]]).round(4))
        [1.     0.5869]
        >>> print(ndcg([[0.9, 0.2, 0.5]], [[2, 0, 1]], k=1))
        [1.]
    """
    num = dcg(scores, labels, k=k, gain=gain, mask=mask)
    den = ideal_dcg(labels, k=k, gain=gain, mask=mask)
    return _ratio(num, den, den > 0, undefined)


# ------------------------------------------------------------------------------------ binary relevance


def precision_at_k(
    scores, labels, *, k: int | None = None, relevance_threshold: float = 0.0, mask=None, undefined: float = 0.0
) -> np.ndarray:
    r"""Fraction of relevant items (label > threshold) among the top ``k`` (tied scores: expected value).

    .. math::
        \mathrm{P@k} = \frac{1}{\min(k, n)} \sum_{r=1}^{\min(k, n)} 1[y_{\pi(r)} > \theta]

    Manning et al. (2008), "Introduction to Information Retrieval", ch. 8. ``n`` is the number of valid
    entries, so short lists are not penalised. ``[..., list]`` in, ``[...]`` out.

    >>> from pairkit.metrics import precision_at_k
    >>> print(precision_at_k([[0.9, 0.8, 0.1, 0.4]], [[1, 0, 1, 0]], k=2))
    [0.5]
    """
    _check_k(k)
    s, y, m = _prepare(scores, labels, mask)
    batch, (s, y, m) = _flat(s, y, m)
    n_valid = m.sum(-1)
    w = _top_k_weights(s.shape[-1], k, n_valid)
    hits = _tie_averaged(s, (m & (y > relevance_threshold)).astype(float), m, w)
    return _ratio(hits, w.sum(-1), n_valid > 0, undefined).reshape(batch)


def recall_at_k(
    scores, labels, *, k: int | None = None, relevance_threshold: float = 0.0, mask=None, undefined: float = 0.0
) -> np.ndarray:
    r"""Fraction of the relevant items (label > threshold) found in the top ``k`` (tied: expected value).

    .. math::
        \mathrm{R@k} = \frac{\sum_{r=1}^{k} 1[y_{\pi(r)} > \theta]}{\sum_i 1[y_i > \theta]}

    Manning et al. (2008), "Introduction to Information Retrieval", ch. 8. Lists without a relevant item
    give ``undefined``. ``[..., list]`` in, ``[...]`` out.

    >>> from pairkit.metrics import recall_at_k
    >>> print(recall_at_k([[0.9, 0.8, 0.1, 0.4]], [[1, 0, 1, 0]], k=2))
    [0.5]
    """
    _check_k(k)
    s, y, m = _prepare(scores, labels, mask)
    batch, (s, y, m) = _flat(s, y, m)
    rel = m & (y > relevance_threshold)
    w = _top_k_weights(s.shape[-1], k, m.sum(-1))
    hits = _tie_averaged(s, rel.astype(float), m, w)
    n_rel = rel.sum(-1)
    return _ratio(hits, n_rel, n_rel > 0, undefined).reshape(batch)


def _pessimistic_ranks(s, y, m, relevance_threshold):
    """Sorted relevance flags and the tied-block (worst) rank of each sorted position."""
    order, _, block_end = _sorted_blocks(s, m)
    rel = np.take_along_axis(m & (y > relevance_threshold), order, -1)
    return rel, block_end


def reciprocal_rank(
    scores, labels, *, k: int | None = None, relevance_threshold: float = 0.0, mask=None, undefined: float = 0.0
) -> np.ndarray:
    r"""Reciprocal rank of the first relevant item (0 beyond rank ``k``); MRR is its mean over lists.

    .. math::
        \mathrm{RR} = 1 / \min\{r : y_{\pi(r)} > \theta\}

    Voorhees (1999), "The TREC-8 Question Answering Track Report". A relevant item tied with others takes the
    last rank of its tied block. Lists without a relevant item give ``undefined``. ``[..., list]`` in.

    Example:

        >>> from pairkit.metrics import reciprocal_rank
        >>> print(reciprocal_rank([[0.9, 0.8, 0.1]], [[0, 1, 0]]))
        [0.5]
    """
    _check_k(k)
    s, y, m = _prepare(scores, labels, mask)
    batch, (s, y, m) = _flat(s, y, m)
    rel, rank = _pessimistic_ranks(s, y, m, relevance_threshold)
    big = s.shape[-1] + 1
    first = np.where(rel, rank, big).min(-1)
    has_rel = rel.any(-1)
    rr = np.where(has_rel, 1.0 / np.where(has_rel, first, 1), float(undefined))
    if k is not None:
        rr = np.where(has_rel & (first > k), 0.0, rr)
    return rr.reshape(batch)


def average_precision(
    scores, labels, *, relevance_threshold: float = 0.0, mask=None, undefined: float = 0.0
) -> np.ndarray:
    r"""Average precision of each list; MAP is its mean over lists.

    .. math::
        \mathrm{AP} = \frac{1}{|R|} \sum_{i \in R} \mathrm{P@}r_i,\qquad R = \{i : y_i > \theta\}

    Manning et al. (2008), "Introduction to Information Retrieval", ch. 8. Within a block of tied scores
    every item takes the block's last rank, which equals scikit-learn's ``average_precision_score``.
    Lists without a relevant item give ``undefined``. ``[..., list]`` in, ``[...]`` out.

    >>> from pairkit.metrics import average_precision
    >>> print(average_precision([[0.9, 0.8, 0.1]], [[1, 0, 1]]).round(4))
    [0.8333]
    """
    s, y, m = _prepare(scores, labels, mask)
    batch, (s, y, m) = _flat(s, y, m)
    rel, rank = _pessimistic_ranks(s, y, m, relevance_threshold)
    cum_rel = np.cumsum(rel, axis=-1)
    # relevant items up to the end of each position's tied block
    rel_at_end = np.take_along_axis(cum_rel, rank - 1, -1)
    prec = rel_at_end / rank
    n_rel = rel.sum(-1)
    return _ratio(np.where(rel, prec, 0.0).sum(-1), n_rel, n_rel > 0, undefined).reshape(batch)


# -------------------------------------------------------------------------------------- pair metrics


def _pair_signs(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``sign(x_i - x_j)`` over valid unordered pairs ``i < j``, 0 elsewhere: ``[B, n, n]``."""
    n = x.shape[-1]
    upper = np.triu(np.ones((n, n), dtype=bool), 1)
    valid = m[:, :, None] & m[:, None, :] & upper
    return np.where(valid, np.sign(x[:, :, None] - x[:, None, :]), 0.0)


def ordered_pair_accuracy(scores, labels, *, mask=None, undefined: float = 0.0) -> np.ndarray:
    r"""Ordered pair accuracy: the fraction of pairs with different labels that the scores order correctly.

    .. math::
        \mathrm{OPA} = \frac{\sum_{y_i > y_j} 1[s_i > s_j]}{\sum_{y_i > y_j} 1}

    Joachims (2002), "Optimizing search engines using clickthrough data" (one minus the fraction of
    discordant pairs; Rax ``opa_metric``). Tied scores count as not ordered. ``[..., list]`` in.

    Example:

        >>> from pairkit.metrics import ordered_pair_accuracy
        >>> print(ordered_pair_accuracy([0.3, 0.2, 0.1], [2, 0, 1]).round(4))
        0.6667
    """
    s, y, m = _prepare(scores, labels, mask)
    batch, (s, y, m) = _flat(s, y, m)
    ys = _pair_signs(y, m)
    ss = _pair_signs(s, m)
    n_pairs = (ys != 0).sum((-2, -1))
    correct = ((ys * ss) > 0).sum((-2, -1))
    return _ratio(correct, n_pairs, n_pairs > 0, undefined).reshape(batch)


def kendall_tau(scores, labels, *, mask=None, undefined: float = 0.0) -> np.ndarray:
    r"""Kendall's tau-b rank correlation between scores and labels of each list (ties corrected).

    .. math::
        \tau_b = \frac{\sum_{i<j} \operatorname{sgn}(s_i - s_j)\operatorname{sgn}(y_i - y_j)}
        {\sqrt{(n_0 - n_s)(n_0 - n_y)}}

    with :math:`n_0` the number of pairs and :math:`n_s, n_y` the pairs tied in scores, labels. Kendall
    (1945), "The treatment of ties in ranking problems". Equals ``scipy.stats.kendalltau`` (variant "b");
    a constant list gives ``undefined``. Costs O(list²) memory per list. ``[..., list]`` in.

    Example:

        >>> from pairkit.metrics import kendall_tau
        >>> print(kendall_tau([1.0, 2.0, 3.0, 4.0], [1, 2, 4, 3]).round(4))
        0.6667
    """
    s, y, m = _prepare(scores, labels, mask)
    batch, (s, y, m) = _flat(s, y, m)
    ss = _pair_signs(s, m)
    ys = _pair_signs(y, m)
    num = (ss * ys).sum((-2, -1))
    den = np.sqrt((ss != 0).sum((-2, -1)).astype(float) * (ys != 0).sum((-2, -1)))
    return np.clip(_ratio(num, den, den > 0, undefined), -1.0, 1.0).reshape(batch)


def _average_ranks(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """1-based ranks among the valid entries of each row, ties given their average rank (as scipy)."""
    valid = m[:, None, :]
    below = ((x[:, None, :] < x[:, :, None]) & valid).sum(-1)
    equal = ((x[:, None, :] == x[:, :, None]) & valid).sum(-1)
    return below + (equal + 1) / 2.0


def spearman_rho(scores, labels, *, mask=None, undefined: float = 0.0) -> np.ndarray:
    r"""Spearman's rank correlation: Pearson correlation of the (average) ranks of scores and labels.

    .. math::
        \rho = \frac{\operatorname{cov}(R(s), R(y))}{\sigma_{R(s)}\,\sigma_{R(y)}}

    Spearman (1904), "The proof and measurement of association between two things". Equals
    ``scipy.stats.spearmanr``; a constant list gives ``undefined``. ``[..., list]`` in.

    Example:

        >>> from pairkit.metrics import spearman_rho
        >>> print(spearman_rho([0.1, 0.4, 0.35, 0.8], [1, 2, 3, 4]))
        0.8
    """
    s, y, m = _prepare(scores, labels, mask)
    batch, (s, y, m) = _flat(s, y, m)
    n = m.sum(-1, keepdims=True)
    rs = _average_ranks(s, m)
    ry = _average_ranks(y, m)
    centre = (n + 1) / 2.0
    ds = np.where(m, rs - centre, 0.0)
    dy = np.where(m, ry - centre, 0.0)
    num = (ds * dy).sum(-1)
    den = np.sqrt((ds**2).sum(-1) * (dy**2).sum(-1))
    return np.clip(_ratio(num, den, den > 0, undefined), -1.0, 1.0).reshape(batch)
