"""Miners: functions that pick informative pairs or triplets of a labelled batch, returned as index tuples.

A miner takes ``embeddings [N, D]`` and ``labels [N]`` and returns index tensors (``torch.long``, no gradient):

* triplets ``(anchors, positives, negatives)`` — :func:`batch_hard_miner`, :func:`triplet_margin_miner`
  (:func:`semihard_miner`), :func:`distance_weighted_miner`;
* pairs ``(anchors_p, positives, anchors_n, negatives)`` — :func:`multi_similarity_miner`.

These are pytorch-metric-learning's (pml) index-tuple conventions, so the tuples can be passed to pml losses too,
and :func:`pairkit.losses.triplet_margin` takes the triplets as ``triplets=``. Distances are Euclidean distances of
the L2-normalised embeddings and similarities cosines (pml's defaults; ``normalize=False`` uses the raw vectors).
Rows are processed in chunks, so extra memory is O(chunk x N) — never an N x N x N tensor — besides the output
itself (which for the all-triplet miners can hold O(N^3) triplets by definition).
"""

from __future__ import annotations

import torch

from pairkit._spec import Interval, Option, declare_options
from pairkit.losses._embeddings import check_labels, check_matrix, normalize_rows

__all__ = [
    "batch_hard_miner",
    "distance_weighted_miner",
    "multi_similarity_miner",
    "semihard_miner",
    "triplet_margin_miner",
]

# elements of one chunk's work tensor ([rows, N] for pair miners, [rows, N, N] for the triplet-margin miner)
CHUNK_ELEMENTS = 1 << 22

Triplets = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
Pairs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def prepare_lists(embeddings, labels, normalize):
    check_matrix("embeddings", embeddings)
    labels = check_labels(labels, embeddings.shape[0]).to(embeddings.device)
    x = embeddings.detach()
    return (normalize_rows(x) if normalize else x), labels


def _chunks(n: int, per_row: int):
    step = max(1, CHUNK_ELEMENTS // max(per_row, 1))
    for start in range(0, n, step):
        yield start, min(start + step, n)


def _distances(q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Euclidean distances [len(q), len(x)]."""
    d2 = (q * q).sum(1)[:, None] + (x * x).sum(1)[None, :] - 2.0 * (q @ x.T)
    return d2.clamp_min(0.0).sqrt()


def _masks(labels, start, stop):
    """(positive, negative) masks of rows start:stop against all rows; a row is not its own positive."""
    same = labels[start:stop, None] == labels[None, :]
    rows = torch.arange(start, stop, device=labels.device)
    self_ = rows[:, None] == torch.arange(labels.shape[0], device=labels.device)[None, :]
    return same & ~self_, ~same


def _empty(device, k: int):
    return tuple(torch.zeros(0, dtype=torch.long, device=device) for _ in range(k))


def _cat(parts, device, k):
    if not parts:
        return _empty(device, k)
    return tuple(torch.cat([p[i] for p in parts]) for i in range(k))


@declare_options()
def batch_hard_miner(embeddings: torch.Tensor, labels: torch.Tensor, *, normalize: bool = True) -> Triplets:
    """Batch-hard triplets: for each anchor its farthest positive and its nearest negative.

    .. math::

        p(a) = \\arg\\max_{p:\\, y_p = y_a,\\, p \\ne a} d(x_a, x_p), \\qquad
        n(a) = \\arg\\min_{n:\\, y_n \\ne y_a} d(x_a, x_n)

    Anchors without a positive or a negative are left out. Equals pml's ``BatchHardMiner`` (ties go to the
    lowest index).

    Hermans, Beyer & Leibe (2017), "In Defense of the Triplet Loss for Person Re-Identification".

    Args: ``embeddings`` [N, D], ``labels`` [N]. Returns ``(anchors, positives, negatives)``, each [A] long.
    """
    x, labels = prepare_lists(embeddings, labels, normalize)
    parts = []
    for start, stop in _chunks(x.shape[0], x.shape[0]):
        d = _distances(x[start:stop], x)
        pos, neg = _masks(labels, start, stop)
        keep = pos.any(1) & neg.any(1)
        hard_p = d.masked_fill(~pos, float("-inf")).argmax(1)
        hard_n = d.masked_fill(~neg, float("inf")).argmin(1)
        rows = torch.arange(start, stop, device=x.device)
        parts.append((rows[keep], hard_p[keep], hard_n[keep]))
    return _cat(parts, x.device, 3)


_TRIPLET_TYPES = ("all", "hard", "semihard", "easy")


@declare_options(
    Option("margin", float, doc="margin m of the triplet condition"),
    Option("type_of_triplets", str, choices=_TRIPLET_TYPES, doc="which triplets to return"),
)
def triplet_margin_miner(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    margin: float = 0.2,
    type_of_triplets: str = "all",
    normalize: bool = True,
) -> Triplets:
    """Triplets selected by their margin :math:`\\mu_{apn} = d(x_a, x_n) - d(x_a, x_p)`.

    .. math::

        \\text{all: } \\mu \\le m, \\quad \\text{hard: } \\mu \\le 0, \\quad
        \\text{semihard: } 0 < \\mu \\le m, \\quad \\text{easy: } \\mu > m

    over anchors :math:`a`, positives :math:`p \\ne a` and negatives :math:`n`. "all" (the default, as pml) keeps
    every triplet that violates the margin; "semihard" is FaceNet's semi-hard condition (negatives farther than
    the positive but inside the margin). Equals pml's ``TripletMarginMiner`` with the same triplets in the same
    (lexicographic) order. Computed over anchor chunks and only on positive pairs: memory O(chunk x N^2) at most
    for the condition, never O(N^3).

    Schroff, Kalenichenko & Philbin (2015), "FaceNet: A Unified Embedding for Face Recognition and Clustering".

    Args: ``embeddings`` [N, D], ``labels`` [N]. Returns ``(anchors, positives, negatives)``, each [T] long.
    """
    x, labels = prepare_lists(embeddings, labels, normalize)
    n = x.shape[0]
    parts = []
    for start, stop in _chunks(n, n * n):
        d = _distances(x[start:stop], x)
        pos, neg = _masks(labels, start, stop)
        a, p = torch.nonzero(pos, as_tuple=True)  # the chunk's positive pairs, in (anchor, positive) order
        mu = d[a] - d[a, p][:, None]  # [pairs, n]: d(a, n) - d(a, p)
        if type_of_triplets == "easy":
            cond = mu > margin
        else:
            cond = mu <= margin
            if type_of_triplets == "hard":
                cond &= mu <= 0
            elif type_of_triplets == "semihard":
                cond &= mu > 0
        pair, q = torch.nonzero(cond & neg[a], as_tuple=True)
        a, p = a[pair], p[pair]
        parts.append((a + start, p, q))
    return _cat(parts, x.device, 3)


def semihard_miner(
    embeddings: torch.Tensor, labels: torch.Tensor, *, margin: float = 0.2, normalize: bool = True
) -> Triplets:
    """Semi-hard triplets: :func:`triplet_margin_miner` with ``type_of_triplets="semihard"``.

    .. math::

        0 < d(x_a, x_n) - d(x_a, x_p) \\le m

    Schroff, Kalenichenko & Philbin (2015), "FaceNet: A Unified Embedding for Face Recognition and Clustering".

    Args: ``embeddings`` [N, D], ``labels`` [N]. Returns ``(anchors, positives, negatives)``, each [T] long.
    """
    return triplet_margin_miner(embeddings, labels, margin=margin, type_of_triplets="semihard", normalize=normalize)


@declare_options(Option("epsilon", float, Interval(0, None), doc="slack ε of the pair conditions"))
def multi_similarity_miner(
    embeddings: torch.Tensor, labels: torch.Tensor, *, epsilon: float = 0.1, normalize: bool = True
) -> Pairs:
    """Multi-similarity pair mining: keep the pairs that are hard relative to the anchor's hardest opposite pair.

    .. math::

        S_{an} > \\min_{p} S_{ap} - \\epsilon, \\qquad S_{ap} < \\max_{n} S_{an} + \\epsilon

    over cosine similarities :math:`S` (negatives :math:`n`, positives :math:`p \\ne a` of anchor :math:`a`). An
    anchor without negatives keeps no positive pair and one without positives keeps no negative pair. Equals
    pml's ``MultiSimilarityMiner`` as sets of pairs (pml orders each anchor's pairs by similarity; here they are
    in index order).

    Wang, Han, Huang, Dong & Scott (2019), "Multi-Similarity Loss with General Pair Weighting for Deep Metric
    Learning".

    Args: ``embeddings`` [N, D], ``labels`` [N]. Returns ``(anchors_p, positives, anchors_n, negatives)``, long.
    """
    x, labels = prepare_lists(embeddings, labels, normalize)
    parts = []
    for start, stop in _chunks(x.shape[0], x.shape[0]):
        s = x[start:stop] @ x.T
        pos, neg = _masks(labels, start, stop)
        min_pos = s.masked_fill(~pos, float("inf")).amin(1, keepdim=True) if s.shape[1] else s[:, :1]
        max_neg = s.masked_fill(~neg, float("-inf")).amax(1, keepdim=True) if s.shape[1] else s[:, :1]
        a1, p = torch.nonzero(pos & (s - epsilon < max_neg), as_tuple=True)
        a2, q = torch.nonzero(neg & (s + epsilon > min_pos), as_tuple=True)
        parts.append((a1 + start, p, a2 + start, q))
    return _cat(parts, x.device, 4)


def _distance_weighted_log_weights(d: torch.Tensor, dim: int, cutoff: float, nonzero_loss_cutoff: float):
    """log q(d)^{-1} of the paper (up to a constant), -inf where a negative may not be sampled."""
    d = d.clamp_min(cutoff)
    inner = (1.0 - 0.25 * d * d).clamp_min(0.0)
    log_w = (2.0 - dim) * torch.log(d) - ((dim - 3) / 2.0) * torch.log(inner)
    ok = torch.isfinite(log_w) & (d < nonzero_loss_cutoff)
    return log_w.masked_fill(~ok, float("-inf"))


@declare_options(
    Option("cutoff", float, Interval(0, 2), doc="distances are clipped below at this value"),
    Option("nonzero_loss_cutoff", float, Interval(0, None, closed="neither"), doc="negatives beyond are not sampled"),
)
def distance_weighted_miner(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    cutoff: float = 0.5,
    nonzero_loss_cutoff: float = 1.4,
    generator: torch.Generator | None = None,
) -> Triplets:
    """Distance-weighted sampling: one negative per positive pair, drawn with probability ∝ 1 / q(d).

    .. math::

        \\Pr(n \\mid a) \\propto \\min\\Big(\\lambda,\\; q\\big(d_{an}\\big)^{-1}\\Big), \\qquad
        q(d) \\propto d^{\\,D-2} \\big(1 - \\tfrac14 d^2\\big)^{\\frac{D-3}{2}}

    :math:`q` is the density of pairwise distances of points uniform on the unit sphere in :math:`D` dimensions,
    so negatives are drawn as if uniformly spread in distance. As in the authors' code (and pml's
    ``DistanceWeightedMiner``) distances are clipped below at ``cutoff`` (which plays the role of the cap
    :math:`\\lambda`) and negatives at distance ``nonzero_loss_cutoff`` or more are never drawn; embeddings are always
    L2-normalised. Reading taken: every (anchor, positive) pair gets one sampled negative (the paper's "for each
    positive pair"); pml instead draws random positives per anchor, so only the sampling probabilities — not the
    random indices — are comparable (they are equal). Anchors with no admissible negative are left out.

    Wu, Manmatha, Smola & Krähenbühl (2017), "Sampling Matters in Deep Embedding Learning".

    Args: ``embeddings`` [N, D], ``labels`` [N], ``generator`` a ``torch.Generator`` for reproducible draws.
    Returns ``(anchors, positives, negatives)``, each [P] long (P = the number of admissible positive pairs).
    """
    x, labels = prepare_lists(embeddings, labels, True)
    parts = []
    dim = x.shape[1]
    for start, stop in _chunks(x.shape[0], x.shape[0]):
        pos, neg = _masks(labels, start, stop)
        log_w = _distance_weighted_log_weights(_distances(x[start:stop], x), dim, cutoff, nonzero_loss_cutoff)
        log_w = log_w.masked_fill(~neg, float("-inf"))
        ok = torch.isfinite(log_w).any(1)
        counts = pos.sum(1) * ok
        if not bool((counts > 0).any()):
            continue
        probs = torch.softmax(log_w[ok], dim=1)
        draws = torch.multinomial(probs, int(counts.max()), replacement=True, generator=generator)
        a_local, p = torch.nonzero(pos & ok[:, None], as_tuple=True)
        # the k-th positive of an anchor takes that anchor's k-th draw
        rank = torch.cumsum(pos & ok[:, None], 1)[a_local, p] - 1
        slot = torch.cumsum(ok.long(), 0)[a_local] - 1
        parts.append((a_local + start, p, draws[slot, rank]))
    return _cat(parts, x.device, 3)
