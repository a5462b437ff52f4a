"""Contrastive losses over a batch spread across processes (``torch.distributed``).

Every negative on every rank should count, so embeddings are gathered from all ranks with
:func:`all_gather_with_grad`, whose backward pass **sums** the incoming gradients over ranks and hands each
rank the slice of its own rows. Two modes:

* ``local_loss=True`` (default, cheaper): each rank scores only its own rows against all gathered rows, i.e.
  computes the mean of the per-row losses of its share of the global batch.
* ``local_loss=False``: each rank computes the loss of the whole gathered batch (the same value everywhere).

Loss scaling under data-parallel training. ``DistributedDataParallel`` *averages* parameter gradients over the
W ranks. The gradient of the global mean loss :math:`L = \\frac1W \\sum_r L_r` (equal local batch sizes) with
respect to rank r's rows has contributions from the losses on every rank, which is why the gather's backward
sums over ranks: it makes rank r's gradient :math:`W\\,\\partial L/\\partial x_r` in both modes, and DDP's
division by W then yields exactly :math:`\\partial L/\\partial \\theta`. So with these functions and DDP (or any
gradient *averaging*) use the returned loss as is. If you instead *sum* gradients across ranks yourself, divide
the loss by the world size. With a gather whose backward returns only the local slice (no sum), the full-loss
mode gives rank r only :math:`\\partial L/\\partial x_r`, so DDP's average is 1/W of the true gradient — the
source of the usual advice to multiply each rank's loss by the world size (or use the sum) — and the local-loss
mode loses the cross-rank terms altogether. Unequal local batch sizes are supported by the gather; the DDP
average then weights ranks equally rather than rows, so keep local batches equal for the exact global mean.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from pairkit.errors import InputError
from pairkit.losses._core import Reduction, reduce_loss
from pairkit.losses._embeddings import (
    check_labels,
    check_matrix,
    check_query_keys,
    clip_rows,
    infonce_rows,
    inverse_temperature,
    maybe_normalize,
    ntxent_pairs,
    reduce_pairs,
    supcon_rows,
)

__all__ = [
    "all_gather_with_grad",
    "distributed_clip",
    "distributed_infonce",
    "distributed_ntxent",
    "distributed_supcon",
    "gather_no_grad",
]


def _require_dist(group) -> tuple[int, int]:
    if not (dist.is_available() and dist.is_initialized()):
        raise InputError("torch.distributed is not initialised; call torch.distributed.init_process_group first")
    return dist.get_rank(group), dist.get_world_size(group)


def _local_sizes(n: int, device, group) -> list[int]:
    _, world = _require_dist(group)
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([n], dtype=torch.long, device=device), group=group)
    return [int(s) for s in sizes]


def _gather_padded(x: torch.Tensor, sizes: list[int], group) -> torch.Tensor:
    # all_gather needs equal shapes: pad every rank to the largest local size, then drop the padding.
    longest = max(sizes)
    padded = x.new_zeros((longest, *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous(), group=group)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)])


class _AllGatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group, sizes):
        rank, _ = _require_dist(group)
        ctx.group, ctx.rank, ctx.sizes = group, rank, sizes
        return _gather_padded(x, sizes, group)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        # Every rank's loss may depend on this rank's rows: sum their gradients before taking our slice.
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


def all_gather_with_grad(x: torch.Tensor, *, group=None) -> torch.Tensor:
    """Concatenate ``x`` [n_r, ...] from all ranks (rank order) into [sum n_r, ...], differentiably.

    .. math::

        \\frac{\\partial \\mathcal{L}}{\\partial x_r} = \\sum_{r'} \\Big[\\frac{\\partial
        \\mathcal{L}_{r'}}{\\partial X}\\Big]_{\\text{rows of } r}

    The backward pass all-reduces (sums) the gradient of the gathered tensor and returns this rank's rows, so
    that gradients from the losses computed on other ranks reach this rank's inputs. Local sizes may differ.
    """
    sizes = _local_sizes(x.shape[0], x.device, group)
    return _AllGatherWithGrad.apply(x, group, sizes)


def gather_no_grad(x: torch.Tensor, *, group=None) -> torch.Tensor:
    """Concatenate ``x`` from all ranks in rank order without gradient (for labels and other metadata)."""
    sizes = _local_sizes(x.shape[0], x.device, group)
    return _gather_padded(x.detach(), sizes, group)


def _rank_offset(n_local: int, device, group) -> int:
    """Global index of this rank's first row."""
    rank, _ = _require_dist(group)
    return sum(_local_sizes(n_local, device, group)[:rank])


def distributed_infonce(
    query: torch.Tensor,
    keys: torch.Tensor,
    *,
    temperature: float | torch.Tensor = 0.07,
    normalize: bool = True,
    local_loss: bool = True,
    chunk_size: int | None = None,
    group=None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """:func:`pairkit.losses.infonce` over the batch gathered from all ranks (see the module note on scaling).

    .. math::

        \\ell_i = -\\log \\frac{\\exp(s(q_i, k_i)/\\tau)}{\\sum_{j \\in \\text{all ranks}} \\exp(s(q_i, k_j)/\\tau)}

    van den Oord, Li & Vinyals (2018), "Representation Learning with Contrastive Predictive Coding".

    Args: local ``query`` [n, D] and ``keys`` [n, D]; ``weights`` [n] (local rows, or the global rows when
    ``local_loss=False``). Returns the mean over this rank's rows (or all rows when ``local_loss=False``).
    """
    check_query_keys(query, keys)
    q, k = maybe_normalize(normalize, query, keys)
    k_all = all_gather_with_grad(k, group=group)
    if local_loss:
        rows, offset = q, _rank_offset(q.shape[0], q.device, group)
    else:
        rows, offset = all_gather_with_grad(q, group=group), 0
    values = infonce_rows(rows, k_all, inverse_temperature(temperature, q), offset, chunk_size)
    return reduce_loss(values, reduction, weights=weights)


def distributed_clip(
    query: torch.Tensor,
    keys: torch.Tensor,
    *,
    temperature: float | torch.Tensor = 0.07,
    normalize: bool = True,
    local_loss: bool = True,
    chunk_size: int | None = None,
    group=None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """:func:`pairkit.losses.clip` over the batch gathered from all ranks (see the module note on scaling).

    .. math::

        \\ell_i = \\tfrac12\\Big[-\\log \\operatorname{softmax}_j(z_{ij})_i - \\log \\operatorname{softmax}_j
        (z_{ji})_i\\Big], \\quad j \\text{ over all ranks}

    Radford et al. (2021), "Learning Transferable Visual Models From Natural Language Supervision".

    Args: local ``query`` [n, D], ``keys`` [n, D]; ``weights`` as in :func:`distributed_infonce`.
    """
    check_query_keys(query, keys)
    q, k = maybe_normalize(normalize, query, keys)
    q_all, k_all = all_gather_with_grad(q, group=group), all_gather_with_grad(k, group=group)
    scale = inverse_temperature(temperature, q)
    if local_loss:
        offset = _rank_offset(q.shape[0], q.device, group)
        values = clip_rows(q, k, q_all, k_all, scale, offset, chunk_size)
    else:
        values = clip_rows(q_all, k_all, q_all, k_all, scale, 0, chunk_size)
    return reduce_loss(values, reduction, weights=weights)


def _labelled_gather(embeddings, labels, normalize, local_loss, group):
    check_matrix("embeddings", embeddings)
    labels = check_labels(labels, embeddings.shape[0]).to(embeddings.device)
    (x,) = maybe_normalize(normalize, embeddings)
    x_all = all_gather_with_grad(x, group=group)
    labels_all = gather_no_grad(labels, group=group)
    if local_loss:
        return x, labels, x_all, labels_all, _rank_offset(x.shape[0], x.device, group)
    return x_all, labels_all, x_all, labels_all, 0


def distributed_ntxent(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float | torch.Tensor = 0.07,
    normalize: bool = True,
    local_loss: bool = True,
    chunk_size: int | None = None,
    group=None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """:func:`pairkit.losses.ntxent` with positives and negatives from all ranks (labels are global ids).

    .. math::

        \\ell_{ap} = -\\log \\frac{\\exp(z_{ap})}{\\exp(z_{ap}) + \\sum_{n:\\,y_n \\ne y_a} \\exp(z_{an})}

    Chen, Kornblith, Norouzi & Hinton (2020), "A Simple Framework for Contrastive Learning of Visual
    Representations".

    Args: local ``embeddings`` [n, D], ``labels`` [n] (equal labels across ranks are positives), ``weights``.
    "mean" is over this rank's positive pairs (all pairs when ``local_loss=False``).
    """
    rows, row_labels, x_all, labels_all, offset = _labelled_gather(embeddings, labels, normalize, local_loss, group)
    scale = inverse_temperature(temperature, rows)
    pair_loss, anchor = ntxent_pairs(rows, x_all, row_labels, labels_all, scale, offset, chunk_size)
    return reduce_pairs(pair_loss, anchor, rows.shape[0], weights, reduction)


def distributed_supcon(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float | torch.Tensor = 0.1,
    normalize: bool = True,
    local_loss: bool = True,
    chunk_size: int | None = None,
    group=None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """:func:`pairkit.losses.supcon` with positives and negatives from all ranks (labels are global ids).

    .. math::

        \\ell_i = -\\frac{1}{|P(i)|} \\sum_{p \\in P(i)} \\log \\frac{\\exp(z_{ip})}{\\sum_{a \\ne i} \\exp(z_{ia})}

    Khosla et al. (2020), "Supervised Contrastive Learning".

    Args: local ``embeddings`` [n, D], ``labels`` [n], ``weights``. "mean" is over anchors with positives.
    """
    rows, row_labels, x_all, labels_all, offset = _labelled_gather(embeddings, labels, normalize, local_loss, group)
    scale = inverse_temperature(temperature, rows)
    values, has_pos = supcon_rows(rows, x_all, row_labels, labels_all, scale, offset, chunk_size)
    return reduce_loss(values, reduction, mask=has_pos, weights=weights)
