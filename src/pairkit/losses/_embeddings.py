"""Shared helpers of the losses on embeddings (contrastive, proxy, triplet, multi-view, distributed): input
checks, normalisation, masked reductions and the row cores the single-process and distributed losses share.

Public within the package (imported by its modules), not part of the package's ``__all__``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pairkit._spec import Option
from pairkit.errors import InputError
from pairkit.losses._chunked import row_logsumexp
from pairkit.losses._core import POSITIVE, check_broadcastable, reduce_loss

LEARNABLE_TEMPERATURE = Option(
    "temperature", (float, torch.Tensor), POSITIVE, doc="softmax temperature τ (a tensor to learn it)"
)


def check_matrix(name: str, x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor of shape [N, D], got {type(x).__name__}")
    if x.ndim != 2:
        raise InputError(f"{name} must have shape [N, D], got shape {list(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"{name} must be a floating-point tensor, got dtype {x.dtype}; convert with .float()")
    if dim is not None and x.shape[1] != dim:
        raise InputError(f"{name} has embedding dimension {x.shape[1]} but the other input has {dim}")
    if not bool(torch.isfinite(x).all()):
        bad = torch.nonzero(~torch.isfinite(x))[0].tolist()
        raise InputError(
            f"{name} contains a non-finite value {x[bad[0], bad[1]].item()} at row {bad[0]}, column {bad[1]}; "
            "remove or repair that row"
        )
    return x


def check_labels(labels: torch.Tensor, n: int) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise InputError(f"labels must have shape [N] = [{n}] (one per embedding row), got {list(labels.shape)}")
    if labels.is_floating_point() and not bool(torch.isfinite(labels).all()):
        raise InputError("labels contain NaN or inf; use integer class labels")
    return labels.long() if labels.dtype == torch.bool else labels


def check_query_keys(query: torch.Tensor, keys: torch.Tensor, *, same_rows: bool = True) -> None:
    check_matrix("query", query)
    check_matrix("keys", keys, query.shape[1])
    if same_rows and keys.shape[0] != query.shape[0]:
        raise InputError(
            f"query and keys must have the same number of rows (row i of each is a positive pair), "
            f"got {query.shape[0]} and {keys.shape[0]}"
        )


def normalize_rows(x: torch.Tensor) -> torch.Tensor:
    # Dividing by the largest |entry| first keeps the norm from overflowing for huge inputs.
    peak = x.detach().abs().amax(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    x = x / peak
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).eps)


def maybe_normalize(normalize: bool, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(normalize_rows(x) for x in xs) if normalize else xs


def inverse_temperature(temperature, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(temperature, dtype=like.dtype, device=like.device)
    if t.ndim != 0:
        raise InputError(f"temperature must be a scalar, got shape {list(t.shape)}")
    if not bool(t > 0) or not bool(torch.isfinite(t)):
        raise InputError(f"temperature must be positive and finite, got {t.item()}")
    return 1.0 / t


def check_weights(weights, n: int) -> None:
    check_broadcastable("weights", None if weights is None else torch.as_tensor(weights), (n,))


def masked_logsumexp(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Row log-sum-exp over ``mask``; ``-inf`` (with zero gradient) for rows where the mask is empty."""
    has_any = mask.any(dim=1)
    filled = x.masked_fill(~mask, float("-inf"))
    if bool(has_any.all()):
        return torch.logsumexp(filled, dim=1)
    filled = torch.where(has_any[:, None], filled, torch.zeros((), dtype=x.dtype, device=x.device))
    lse = torch.logsumexp(filled, dim=1)
    return torch.where(has_any, lse, torch.full_like(lse, float("-inf")))


def safe_sqrt(x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """sqrt of ``x`` where ``keep`` (default ``x > 0``), else 0 — with a zero, not infinite, gradient there."""
    keep = x > 0 if keep is None else keep & (x > 0)
    return torch.where(keep, torch.sqrt(torch.where(keep, x, torch.ones_like(x))), torch.zeros_like(x))


def pair_distances(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Row-wise Euclidean distances ``|u_i - v_i|`` with a zero (not NaN) gradient where two rows coincide."""
    return safe_sqrt(((u - v) ** 2).sum(-1))


def check_triplets(triplets, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate ``(anchors, positives, negatives)`` index tensors of equal length with entries in [0, n)."""
    if not isinstance(triplets, (tuple, list)) or len(triplets) != 3:
        raise InputError("triplets must be a tuple (anchors, positives, negatives) of index tensors")
    out = []
    for name, idx in zip(("anchors", "positives", "negatives"), triplets):
        idx = torch.as_tensor(idx)
        if idx.ndim != 1 or idx.is_floating_point() or idx.dtype == torch.bool:
            raise InputError(f"triplets: {name} must be a 1-d integer tensor, got {idx.dtype} {list(idx.shape)}")
        bad = idx[(idx < 0) | (idx >= n)]
        if bad.numel():
            raise InputError(f"triplets: {name} must index embedding rows 0..{n - 1}, got {int(bad[0])}")
        out.append(idx.long())
    if len({i.shape[0] for i in out}) != 1:
        raise InputError(f"triplets: anchors, positives and negatives differ in length {[i.shape[0] for i in out]}")
    return tuple(out)


def reduce_pairs(pair_loss, anchor, n, weights, reduction):
    """Reduce per-pair losses: 'mean'/'sum' over pairs, 'none' gives each anchor's sum over its pairs (so the
    values add up to 'sum'; 'mean' divides that by the number of pairs, not of anchors)."""
    if reduction == "none":
        return reduce_loss(pair_loss.new_zeros(n).index_add(0, anchor, pair_loss), "none", weights=weights)
    w = None
    if weights is not None:
        w = torch.as_tensor(weights, dtype=pair_loss.dtype, device=pair_loss.device).expand(n)[anchor]
    return reduce_loss(pair_loss, reduction, weights=w)


def positive_pairs(anchor_labels, cand_labels, self_offset):
    """All (anchor, candidate) index pairs with equal labels, except anchor i with candidate i + self_offset.

    Vectorised through a sort of the candidate labels: O((N + P) log N) time and O(N + P) memory for P pairs.
    """
    order = torch.argsort(cand_labels, stable=True)
    ordered = cand_labels[order]
    lo = torch.searchsorted(ordered, anchor_labels, right=False)
    hi = torch.searchsorted(ordered, anchor_labels, right=True)
    count = hi - lo
    anchor = torch.repeat_interleave(torch.arange(anchor_labels.shape[0], device=cand_labels.device), count)
    start = torch.cumsum(count, 0) - count
    within = torch.arange(anchor.shape[0], device=cand_labels.device) - start[anchor]
    cand = order[lo[anchor] + within]
    if self_offset is not None:
        keep = cand != anchor + self_offset
        anchor, cand = anchor[keep], cand[keep]
    return anchor, cand


def infonce_rows(q, k, scale, offset, chunk_size):
    """Row losses ``lse_i - z_{i, i+offset}`` of queries ``q`` against keys ``k`` (already normalised)."""
    n = q.shape[0]
    pos = scale * (q * k[offset : offset + n]).sum(-1)
    return row_logsumexp(q, k, scale, chunk_size=chunk_size) - pos


def clip_rows(q_local, k_local, q_all, k_all, scale, offset, chunk_size):
    """Symmetric CLIP row losses for the local rows (global index ``offset + i``) against all rows."""
    pos = scale * (q_local * k_local).sum(-1)
    lse_q = row_logsumexp(q_local, k_all, scale, chunk_size=chunk_size)
    lse_k = row_logsumexp(k_local, q_all, scale, chunk_size=chunk_size)
    return 0.5 * (lse_q + lse_k) - pos


def ntxent_pairs(q, k, q_labels, k_labels, scale, self_offset, chunk_size):
    """pml-style NT-Xent loss of every positive pair: softplus(lse over negatives - positive logit)."""
    lse_neg = row_logsumexp(q, k, scale, row_labels=q_labels, col_labels=k_labels, chunk_size=chunk_size)
    anchor, cand = positive_pairs(q_labels, k_labels, self_offset)
    pos = scale * (q[anchor] * k[cand]).sum(-1)
    return F.softplus(lse_neg[anchor] - pos), anchor


def supcon_rows(q, k, q_labels, k_labels, scale, self_offset, chunk_size):
    """SupCon anchor losses and a mask of anchors that have positives.

    The positive term is linear in the logits, so it is taken through per-class sums of the keys (O(N D)).
    """
    uniq, inverse = torch.unique(k_labels, return_inverse=True)
    class_sum = k.new_zeros(uniq.shape[0], k.shape[1]).index_add(0, inverse, k)
    class_count = torch.bincount(inverse, minlength=uniq.shape[0])
    slot = torch.searchsorted(uniq, q_labels).clamp_max(max(uniq.shape[0] - 1, 0))
    present = (uniq[slot] == q_labels) if uniq.shape[0] else torch.zeros_like(q_labels, dtype=torch.bool)
    pos_sum = torch.where(present[:, None], class_sum[slot], torch.zeros_like(q))
    n_pos = torch.where(present, class_count[slot], torch.zeros_like(class_count[slot]))
    idx = torch.arange(q.shape[0], device=q.device) + self_offset
    pos_sum = pos_sum - k[idx]  # the anchor itself is in its own class sum
    n_pos = n_pos - 1
    has_pos = n_pos > 0
    lse = row_logsumexp(q, k, scale, self_offset=self_offset, chunk_size=chunk_size)
    mean_pos = scale * (q * pos_sum).sum(-1) / n_pos.clamp_min(1).to(q.dtype)
    loss = torch.where(has_pos, lse - mean_pos, torch.zeros_like(mean_pos))
    return loss, has_pos


def labelled_rows(embeddings, labels, weights, normalize):
    check_matrix("embeddings", embeddings)
    labels = check_labels(labels, embeddings.shape[0]).to(embeddings.device)
    check_weights(weights, embeddings.shape[0])
    (x,) = maybe_normalize(normalize, embeddings)
    return x, labels


def check_features(names: tuple[str, ...], *tensors: torch.Tensor, mask=None, weights=None, same_dim=False) -> int:
    """``[n, d]`` floating tensors with one ``n`` (and one ``d`` when ``same_dim``); returns ``n``."""
    for name, x in zip(names, tensors):
        if not (isinstance(x, torch.Tensor) and x.is_floating_point()):
            kind = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(f"{name} must be a floating-point torch tensor, got {kind}")
        if x.dim() != 2 or x.shape[1] == 0:
            raise InputError(f"{name} must have shape [n, dim] with dim >= 1, got {list(x.shape)}")
    rows = {name: x.shape[0] for name, x in zip(names, tensors)}
    if len(set(rows.values())) > 1:
        raise InputError("the inputs must have one row per example: " + ", ".join(f"{k} {v}" for k, v in rows.items()))
    if same_dim and len({x.shape[1] for x in tensors}) > 1:
        raise InputError(
            "the inputs must have the same width: " + ", ".join(f"{k} {list(x.shape)}" for k, x in zip(names, tensors))
        )
    n = tensors[0].shape[0]
    check_broadcastable("weights", weights, (n,))
    if mask is not None:
        mask = torch.as_tensor(mask)
        if mask.dtype != torch.bool or tuple(mask.shape) != (n,):
            raise InputError(f"mask must be a bool tensor of shape [{n}], got {mask.dtype} {list(mask.shape)}")
    return n


def feature_rows(mask: torch.Tensor | None, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The unmasked rows of each tensor (all of them without a mask)."""
    if mask is None:
        return tensors
    keep = torch.as_tensor(mask, device=tensors[0].device)
    return tuple(t[keep] for t in tensors)


def scatter_rows(values: torch.Tensor, mask: torch.Tensor | None, n: int) -> torch.Tensor:
    """Per-kept-row ``values`` back at their rows of an ``[n]`` vector (0 at masked rows)."""
    if mask is None:
        return values
    keep = torch.as_tensor(mask, device=values.device)
    return torch.zeros(n, dtype=values.dtype, device=values.device).masked_scatter(keep, values)


def safe_norm(x: torch.Tensor) -> torch.Tensor:
    sq = (x * x).sum(-1)
    positive = sq > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, sq, torch.ones_like(sq))), torch.zeros_like(sq))


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    norm = safe_norm(x)
    return x / torch.where(norm > 0, norm, torch.ones_like(norm)).unsqueeze(-1)
