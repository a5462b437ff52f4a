"""Triplet losses beyond the margin hinge, computed over all triplets without an N x N x N tensor.

Over all triplets of a batch the work is O(N^3), but the memory need not be: ``all_triplet_terms`` runs over
anchor chunks and recomputes each chunk in the backward pass (activation checkpointing), so peak memory is
O(chunk x N^2) in both passes while values and gradients equal the dense computation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.checkpoint import checkpoint

from pairkit._spec import Option
from pairkit.errors import InputError
from pairkit.losses._core import LABELLED_EMBEDDINGS, NORMALIZE, REDUCTIONS, Reduction, reduce_loss, register
from pairkit.losses._embeddings import check_triplets, labelled_rows, pair_distances, reduce_pairs, safe_sqrt

__all__ = ["softmax_ratio_triplet"]

_FAMILY = "contrastive"

# elements of one chunk's [anchors, positives, negatives] tensor
CHUNK_ELEMENTS = 1 << 22


def _chunk_sums(xa, x, labels_a, labels, rows, term):
    """Per-anchor sum and count of ``term(d_ap, d_an)`` over the anchors' valid triplets (positive pairs only)."""
    sq_a, sq = (xa * xa).sum(1), (x * x).sum(1)
    d = safe_sqrt(sq_a[:, None] + sq[None, :] - 2.0 * (xa @ x.T))
    same = labels_a[:, None] == labels[None, :]
    pos = same & (rows[:, None] != torch.arange(x.shape[0], device=x.device)[None, :])
    a, p = torch.nonzero(pos, as_tuple=True)  # [P] positive pairs of the chunk's anchors
    neg = ~same[a]  # [P, N]
    values = term(d[a, p][:, None], d[a])
    values = torch.where(neg, values, torch.zeros((), dtype=values.dtype, device=values.device))
    sums = values.new_zeros(xa.shape[0]).index_add(0, a, values.sum(1))
    counts = values.new_zeros(xa.shape[0]).index_add(0, a, neg.sum(1).to(values.dtype))
    return sums, counts


def all_triplet_terms(
    x: torch.Tensor, labels: torch.Tensor, term: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-anchor sum and count of ``term(d(a, p), d(a, n))`` over all triplets, in checkpointed anchor chunks.

    ``x`` [N, D] (already normalised or not), ``labels`` [N]; ``term`` maps broadcastable distance tensors to
    per-triplet values. Returns two [N] tensors. Only the positive pairs' rows are evaluated; memory
    O(chunk x N^2) at most.
    """
    n = x.shape[0]
    step = max(1, CHUNK_ELEMENTS // max(n * n, 1))
    sums, counts = [], []
    for start in range(0, n, step):
        stop = min(start + step, n)
        rows = torch.arange(start, stop, device=x.device)
        args = (x[start:stop], x, labels[start:stop], labels, rows, term)
        if torch.is_grad_enabled() and x.requires_grad and n > step:
            s, c = checkpoint(_chunk_sums, *args, use_reentrant=False)
        else:
            s, c = _chunk_sums(*args)
        sums.append(s)
        counts.append(c)
    if not sums:
        return x.sum(1), x.sum(1).detach()
    return torch.cat(sums), torch.cat(counts)


def _softmax_ratio_term(d_ap, d_an):
    # d+ = e^{d_ap} / (e^{d_ap} + e^{d_an}) = sigmoid(d_ap - d_an); ||(d+, d- - 1)||^2 = 2 (d+)^2
    return 2.0 * torch.sigmoid(d_ap - d_an) ** 2


@register(
    "softmax_ratio_triplet",
    keywords=("weights", "reduction"),
    inputs=LABELLED_EMBEDDINGS,
    batch_coupled=True,
    family=_FAMILY,
    aliases=("triplet_network", "hoffer_ailon_triplet", "softmax_ratio"),
    options=(
        Option("triplets", tuple, none=True, doc="(anchors, positives, negatives) index tensors, e.g. from a miner"),
        NORMALIZE,
    ),
)
def softmax_ratio_triplet(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    triplets: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    normalize: bool = False,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """The Triplet network's softmax-ratio loss: the softmax of the two distances should put all mass on the negative.

    .. math::

        d_+ = \\frac{e^{\\lVert x_a - x_p \\rVert}}{e^{\\lVert x_a - x_p \\rVert} + e^{\\lVert x_a - x_n \\rVert}},
        \\quad d_- = 1 - d_+, \\qquad
        \\ell_{apn} = \\big\\lVert (d_+,\\; d_- - 1) \\big\\rVert_2^2 = 2\\, d_+^2

    over all triplets (anchor :math:`a`, positive :math:`p \\ne a` with the anchor's label, negative :math:`n`
    with another label), or over the given ``triplets=(anchors, positives, negatives)`` (e.g. from a miner). The
    paper uses the raw embeddings' Euclidean distances, hence ``normalize=False`` by default. "mean" averages
    over triplets, "none" gives each anchor's sum over its triplets (0 for anchors without one; the values add up
    to "sum"), as
    :func:`~pairkit.losses.triplet_margin`. All-triplet mode runs in checkpointed anchor chunks: memory
    O(chunk x N^2), never N^3.

    Hoffer & Ailon (2015), "Deep Metric Learning Using Triplet Network".

    Args: ``embeddings`` [N, D], ``labels`` [N], ``weights`` [N] (per anchor). Returns a scalar or [N].
    """
    if reduction not in REDUCTIONS:
        raise InputError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    x, labels = labelled_rows(embeddings, labels, weights, normalize)
    if triplets is not None:
        a, p, n = (i.to(x.device) for i in check_triplets(triplets, x.shape[0]))
        values = _softmax_ratio_term(pair_distances(x[a], x[p]), pair_distances(x[a], x[n]))
        return reduce_pairs(values, a, x.shape[0], weights, reduction)
    sums, counts = all_triplet_terms(x, labels, _softmax_ratio_term)
    if reduction == "none":
        return reduce_loss(sums, "none", weights=weights)
    w = None if weights is None else torch.as_tensor(weights, dtype=x.dtype, device=x.device).expand(x.shape[0])
    total = sums.sum() if w is None else (w * sums).sum()
    if reduction == "sum":
        return total
    denom = counts.sum() if w is None else (w * counts).sum()
    return torch.where(denom > 0, total / denom.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(total))
