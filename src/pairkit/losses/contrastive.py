"""Contrastive and metric-learning losses (torch).

Two calling conventions, so that a user can switch losses by name:

* **labelled batches** — ``f(embeddings [N, D], labels [N], ...)`` as in pytorch-metric-learning (pml): rows
  with equal labels are positives of each other (a row is never its own positive), rows with different labels
  are negatives. ``ntxent``, ``supcon``, ``triplet_margin``, ``contrastive``, ``multi_similarity``, ``circle``,
  ``tcm``; aliases are pml's class names in snake case. A SimCLR batch of two views is
  ``embeddings = cat([view1, view2])``, ``labels = arange(n).repeat(2)``.
* **paired views** — ``f(query [N, D], keys [N, D], ...)``: row ``i`` of ``query`` and of ``keys`` form the
  positive pair, every other key is a negative (``infonce``, ``clip``, ``siglip``, ``cwcl``, ``isogclr``,
  ``alignment``).

Similarities are cosine similarities (``normalize=True``, the default, which also makes the losses invariant to
the scale of the embeddings); distances are Euclidean distances of the normalised embeddings, as pml's defaults.
``weights`` are per row (anchor / query) weights. What ``reduction="mean"`` averages over is stated per loss; it
follows pml's unit (positive pairs for NT-Xent, anchors for SupCon, triplets for the triplet loss), with pml's
"average over non-zero terms" reducers replaced by plain means (pass ``reducer=MeanReducer()`` to pml to compare).

InfoNCE / NT-Xent, CLIP and SupCon are computed exactly in row chunks for large batches (``chunk_size``; see
:mod:`pairkit.losses._chunked`), so memory grows as O(chunk x N) instead of O(N^2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from pairkit._spec import Input, Interval, Option
from pairkit.errors import InputError
from pairkit.losses._chunked import DENSE_ELEMENTS, row_logsumexp
from pairkit.losses._core import (
    AT_LEAST_ONE,
    CHUNK_SIZE,
    LABELLED_EMBEDDINGS,
    NON_NEGATIVE,
    NORMALIZE,
    POSITIVE,
    QUERY_KEYS,
    REAL,
    Reduction,
    keyword,
    reduce_loss,
    register,
    weight_option,
)
from pairkit.losses._embeddings import (
    LEARNABLE_TEMPERATURE,
    check_matrix,
    check_query_keys,
    check_triplets,
    check_weights,
    clip_rows,
    infonce_rows,
    inverse_temperature,
    labelled_rows,
    masked_logsumexp,
    maybe_normalize,
    normalize_rows,
    ntxent_pairs,
    pair_distances,
    reduce_pairs,
    supcon_rows,
)

_COSINE = Interval(-1, 1)
_UNMASKED = ("weights", "reduction")  # a batch of embeddings is sliced, not masked

__all__ = [
    "ISogCLRTemperatures",
    "alignment",
    "circle",
    "clip",
    "contrastive",
    "cwcl",
    "decoupled_softmax",
    "dexml_topk",
    "infonce",
    "isogclr",
    "multi_similarity",
    "ntxent",
    "siglip",
    "supcon",
    "threshold_consistent_margin",
    "triplet_margin",
    "uniformity",
]

_FAMILY = "contrastive"


# ------------------------------------------------------------------------------------------------ helpers


# queries, keys (e.g. label embeddings) and each query's multi-hot positive keys
_MULTI_POSITIVE = (
    Input("query", "embeddings", "[n, dim]"),
    Input("keys", "embeddings", "[m, dim]"),
    Input("targets", "binary", "[n, m]"),
)


def _check_targets(targets, n: int, m: int, device) -> torch.Tensor:
    """Multi-hot positives [N, M] (bool or 0/1) as a bool tensor."""
    targets = torch.as_tensor(targets, device=device)
    if targets.shape != (n, m):
        raise InputError(f"targets must have shape [N, M] = [{n}, {m}], got {list(targets.shape)}")
    if targets.dtype != torch.bool:
        if bool(((targets != 0) & (targets != 1)).any()):
            raise InputError("targets must be boolean or 0/1 (multi-hot positives)")
        targets = targets != 0
    return targets


def _pair_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive, negative) boolean [N, N] masks; the diagonal is neither."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def _safe_distances(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distance matrix whose gradient is 0 (not NaN) where two rows coincide."""
    sq = (x * x).sum(-1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)).clamp_min(0.0)
    pos = d2 > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, d2, torch.ones_like(d2))), torch.zeros_like(d2))


def _row_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of ``values`` over ``mask`` in each row (0 for empty rows)."""
    return torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device)).sum(1)


def _reduce_rows_over_mask(values, mask, weights, reduction):
    """Reduce an [N, N] matrix of pair terms over ``mask``: 'mean' averages over the pairs, 'sum' adds them and
    'none' gives each row's sum (so the values add up to 'sum')."""
    if reduction == "none":
        return reduce_loss(_row_sum(values, mask), "none", weights=weights)
    w = None if weights is None else torch.as_tensor(weights, dtype=values.dtype, device=values.device)[:, None]
    return reduce_loss(values, reduction, mask=mask, weights=w)


def _checkpointed_rows(fn, chunk_size, m: int, *rows: torch.Tensor) -> torch.Tensor:
    """``fn(*rows)`` ([N] per-row values) in row chunks recomputed in the backward pass: memory O(chunk x m).

    ``chunk_size=None`` calls ``fn`` once when ``N x m`` is at most :data:`DENSE_ELEMENTS` and uses chunks of about
    that many elements otherwise.
    """
    n = rows[0].shape[0]
    if chunk_size is None:
        if n * m <= DENSE_ELEMENTS:
            return fn(*rows)
        chunk_size = max(1, DENSE_ELEMENTS // max(m, 1))
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    parts = []
    for start in range(0, n, chunk_size):
        chunk = tuple(r[start : start + chunk_size] for r in rows)
        parts.append(checkpoint(fn, *chunk, use_reentrant=False) if torch.is_grad_enabled() else fn(*chunk))
    return torch.cat(parts) if parts else fn(*rows)


def _chunked_row_sums(q, k, fn, chunk_size):
    """``fn(q @ k.T).sum(1)`` over row chunks recomputed in the backward pass (memory O(chunk x M), not O(N M))."""
    return _checkpointed_rows(lambda qc: fn(qc @ k.T).sum(1), chunk_size, k.shape[0], q)


# ------------------------------------------------------------------- cores shared with the distributed module


# ------------------------------------------------------------------------------------ paired-view losses


@register(
    "infonce",
    keywords=_UNMASKED,
    inputs=QUERY_KEYS,
    batch_coupled=True,
    family=_FAMILY,
    aliases=("info_nce", "info_nce_loss"),
    options=(
        LEARNABLE_TEMPERATURE,
        NORMALIZE,
        CHUNK_SIZE,
    ),
)
def infonce(
    query: torch.Tensor,
    keys: torch.Tensor,
    *,
    temperature: float | torch.Tensor = 0.07,
    normalize: bool = True,
    chunk_size: int | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """InfoNCE: cross-entropy of picking each query's own key among all keys.

    .. math::

        \\ell_i = -\\log \\frac{\\exp(s(q_i, k_i)/\\tau)}{\\sum_{j=1}^{M} \\exp(s(q_i, k_j)/\\tau)}

    with :math:`s` the cosine similarity. Keys beyond row N (``M > N``) act as extra negatives (e.g. a MoCo
    queue). Computed exactly in row chunks for large ``N x M`` (``chunk_size``: rows per chunk; ``None`` picks
    dense or chunked automatically).

    van den Oord, Li & Vinyals (2018), "Representation Learning with Contrastive Predictive Coding".

    Args: ``query`` [N, D], ``keys`` [M, D] with M >= N, ``temperature`` scalar (float or tensor, may be
    learnable), ``weights`` [N]. Returns a scalar, or [N] for ``reduction="none"``; "mean" is over queries.
    """
    check_query_keys(query, keys, same_rows=False)
    if keys.shape[0] < query.shape[0]:
        raise InputError(f"keys needs at least as many rows as query ({query.shape[0]}), got {keys.shape[0]}")
    check_weights(weights, query.shape[0])
    q, k = maybe_normalize(normalize, query, keys)
    values = infonce_rows(q, k, inverse_temperature(temperature, q), 0, chunk_size)
    return reduce_loss(values, reduction, weights=weights)


@register(
    "clip",
    keywords=_UNMASKED,
    inputs=QUERY_KEYS,
    batch_coupled=True,
    family=_FAMILY,
    aliases=("clip_loss",),
    options=(
        LEARNABLE_TEMPERATURE,
        NORMALIZE,
        CHUNK_SIZE,
    ),
)
def clip(
    query: torch.Tensor,
    keys: torch.Tensor,
    *,
    temperature: float | torch.Tensor = 0.07,
    normalize: bool = True,
    chunk_size: int | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """CLIP's symmetric contrastive loss: the mean of the query-to-key and key-to-query cross-entropies.

    .. math::

        \\ell_i = \\tfrac12\\Big[-\\log \\operatorname{softmax}_j(z_{ij})_i - \\log \\operatorname{softmax}_j
        (z_{ji})_i\\Big], \\qquad z_{ij} = s(q_i, k_j)/\\tau

    For a learnable CLIP ``logit_scale`` pass ``temperature=1 / logit_scale.exp()``. Exact row-chunked
    computation for large N (``chunk_size``).

    Radford et al. (2021), "Learning Transferable Visual Models From Natural Language Supervision".

    Args: ``query`` [N, D] (e.g. images), ``keys`` [N, D] (e.g. texts), ``weights`` [N]. Returns a scalar or [N].
    """
    check_query_keys(query, keys)
    check_weights(weights, query.shape[0])
    q, k = maybe_normalize(normalize, query, keys)
    values = clip_rows(q, k, q, k, inverse_temperature(temperature, q), 0, chunk_size)
    return reduce_loss(values, reduction, weights=weights)


@register(
    "siglip",
    keywords=_UNMASKED,
    inputs=QUERY_KEYS,
    batch_coupled=True,
    family=_FAMILY,
    aliases=("sigmoid_loss", "siglip_loss"),
    options=(
        Option(
            "logit_scale", (float, torch.Tensor), POSITIVE, doc="scale t of the similarities (a tensor to learn it)"
        ),
        Option("logit_bias", (float, torch.Tensor), REAL, doc="bias b (a tensor to learn it)"),
        NORMALIZE,
        CHUNK_SIZE,
    ),
)
def siglip(
    query: torch.Tensor,
    keys: torch.Tensor,
    *,
    logit_scale: float | torch.Tensor = 10.0,
    logit_bias: float | torch.Tensor = -10.0,
    normalize: bool = True,
    chunk_size: int | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """SigLIP's pairwise sigmoid loss: every (query, key) pair is an independent binary classification.

    .. math::

        \\ell_i = \\sum_{j=1}^{N} \\log\\big(1 + \\exp(-y_{ij}(t\\, s(q_i, k_j) + b))\\big), \\qquad
        y_{ij} = 1 \\text{ if } i = j \\text{ else } -1

    so that the mean over ``i`` is the paper's :math:`-\\frac{1}{|B|}\\sum_i\\sum_j \\log\\sigma(\\cdot)`.
    Large batches run in row chunks recomputed in the backward pass (``chunk_size`` rows; ``None`` picks dense up
    to :data:`~pairkit.losses._chunked.DENSE_ELEMENTS` logits), so memory is O(chunk x N), with the same values.
    ``logit_scale`` is :math:`t` itself (the paper learns :math:`t'` with :math:`t = \\exp(t')`, initialised at
    :math:`t = 10`) and ``logit_bias`` is :math:`b` (initialised at -10); pass tensors to learn them.

    Zhai, Mustafa, Kolesnikov & Beyer (2023), "Sigmoid Loss for Language Image Pre-Training".

    Args: ``query`` [N, D], ``keys`` [N, D], ``weights`` [N]. Returns a scalar or [N].
    """
    check_query_keys(query, keys)
    check_weights(weights, query.shape[0])
    q, k = maybe_normalize(normalize, query, keys)
    t = torch.as_tensor(logit_scale, dtype=q.dtype, device=q.device)
    b = torch.as_tensor(logit_bias, dtype=q.dtype, device=q.device)
    # sum_j softplus(-y_ij z_ij) = sum_j softplus(z_ij) - z_ii, since softplus(-z) - softplus(z) = -z
    values = _chunked_row_sums(q, k, lambda sims: F.softplus(t * sims + b), chunk_size) - (t * (q * k).sum(1) + b)
    return reduce_loss(values, reduction, weights=weights)


@register(
    "cwcl",
    keywords=_UNMASKED,
    inputs=(*QUERY_KEYS, keyword("similarity", "similarity", "[n, n]")),
    batch_coupled=True,
    family=_FAMILY,
    aliases=("continuously_weighted_contrastive", "cwcl_loss"),
    options=(
        LEARNABLE_TEMPERATURE,
        NORMALIZE,
        CHUNK_SIZE,
    ),
)
def cwcl(
    query: torch.Tensor,
    keys: torch.Tensor,
    *,
    temperature: float | torch.Tensor = 0.07,
    similarity: torch.Tensor | None = None,
    normalize: bool = True,
    chunk_size: int | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Continuously weighted contrastive loss: cross-entropy against soft targets from intra-modal similarity.

    .. math::

        \\ell_i = -\\frac{1}{\\sum_j w_{ij}} \\sum_{j=1}^{N} w_{ij}
        \\log \\frac{\\exp(s(q_i, k_j)/\\tau)}{\\sum_{l}\\exp(s(q_i, k_l)/\\tau)},
        \\qquad w_{ij} = \\tfrac12\\big(1 + s(k_i, k_j)\\big)

    by default, with :math:`k` the embeddings of the frozen, pre-trained modality (the weights are detached).
    Pass ``similarity`` [N, N] (non-negative) to supply other weights; ``w = I`` gives InfoNCE. This is the
    query-to-key direction; for both directions add ``cwcl(keys, query, similarity=...)`` with the other
    modality's weights. With the default weights large batches run exactly in O(N D + D^2) memory besides a row
    chunk (every term but the row log-sum-exp is linear in the logits; ``chunk_size`` as :func:`infonce`).

    Srinivasa et al. (2023), "CWCL: Cross-Modal Transfer with Continuously Weighted Contrastive Loss".

    Args: ``query`` [N, D] (the modality being trained), ``keys`` [N, D], ``weights`` [N]. Returns scalar or [N].
    """
    check_query_keys(query, keys)
    n = query.shape[0]
    check_weights(weights, n)
    q, k = maybe_normalize(normalize, query, keys)
    scale = inverse_temperature(temperature, q)
    if similarity is None and (chunk_size is not None or n * n > DENSE_ELEMENTS):
        # With the default weights every term is linear in the logits except the row log-sum-exp:
        # sum_j w_ij z_ij = (s/2) q_i . (sum_j k_j + (sum_j k_j kn_j^T) kn_i), sum_j w_ij = (N + kn_i . sum_j kn_j) / 2
        kn = normalize_rows(keys.detach())
        weighted = 0.5 * scale * (q * (k.sum(0) + kn @ (kn.T @ k))).sum(1)
        total = 0.5 * (n + kn @ kn.sum(0))
        values = row_logsumexp(q, k, scale, chunk_size=chunk_size) - weighted / total
        return reduce_loss(values, reduction, weights=weights)
    if similarity is None:
        kn = normalize_rows(keys.detach())
        w = 0.5 * (1.0 + kn @ kn.T)
    else:
        w = torch.as_tensor(similarity, dtype=q.dtype, device=q.device)
        if w.shape != (n, n):
            raise InputError(f"similarity must have shape [N, N] = [{n}, {n}], got {list(w.shape)}")
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
            raise InputError("similarity must be finite and non-negative (e.g. (1 + cosine) / 2)")
    row_total = w.sum(1)
    if n and bool((row_total <= 0).any()):
        row = int(torch.nonzero(row_total <= 0)[0])
        raise InputError(f"similarity row {row} sums to 0; every query needs some positive weight")
    log_probs = torch.log_softmax((q @ k.T) * scale, dim=1)
    values = -(w * log_probs).sum(1) / row_total.clamp_min(torch.finfo(q.dtype).tiny)
    return reduce_loss(values, reduction, weights=weights)


@register(
    "isogclr",
    keywords=_UNMASKED,
    inputs=QUERY_KEYS,
    batch_coupled=True,
    family=_FAMILY,
    aliases=("individualized_temperature", "isogclr_loss"),
    options=(
        Option(
            "temperature", (float, torch.Tensor), POSITIVE, doc="per-query temperatures τ_i (a scalar or an [N] tensor)"
        ),
        Option("rho", float, NON_NEGATIVE, doc="KL-ball radius ρ"),
        NORMALIZE,
        Option("log_u", torch.Tensor, none=True, doc="moving-average buffer of log u per training example"),
        Option("indices", torch.Tensor, none=True, doc="the batch's rows in log_u"),
        Option("gamma", float, Interval(0, 1, closed="right"), doc="moving-average rate γ (with log_u)"),
    ),
)
def isogclr(
    query: torch.Tensor,
    keys: torch.Tensor,
    *,
    temperature: float | torch.Tensor,
    rho: float,
    normalize: bool = True,
    log_u: torch.Tensor | None = None,
    indices: torch.Tensor | None = None,
    gamma: float = 0.9,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """iSogCLR's objective with individualised temperatures (the DRO-derived per-sample contrastive loss).

    .. math::

        \\ell_i = \\tau_i \\log\\Big(\\frac{1}{N-1}\\sum_{j \\ne i}
        \\exp\\Big(\\frac{s(q_i, k_j) - s(q_i, k_i)}{\\tau_i}\\Big)\\Big) + \\tau_i\\,\\rho

    ``temperature`` holds the per-query :math:`\\tau_i` [N] (or one scalar); pass a tensor that requires grad to
    learn them by minimising this objective, as the paper does. ``rho`` is the KL-ball radius (a tuned
    hyper-parameter). For image-text data add the key-to-query direction with the keys' own temperatures.

    **Moving-average estimator** (the paper's algorithm, from SogCLR): pass ``log_u`` [dataset size], a buffer
    holding :math:`\\log u` per training example (initialise it with ``-inf``), and the batch's dataset
    ``indices`` [N]. With :math:`g_i` the mini-batch inner mean above, the buffer is updated in place,

    .. math::

        u_i \\leftarrow (1 - \\gamma)\\, u_i + \\gamma\\, g_i

    (in log space; ``gamma`` γ in (0, 1], γ = 1 is the plain mini-batch estimate; an example seen for the first
    time, still ``-inf``, starts at :math:`u_i = g_i` as the authors' code), and the returned per-example
    value is the surrogate :math:`\\tau_i g_i / u_i + \\tau_i\\,\\mathrm{sg}[\\log u_i + \\rho - g_i / u_i]`
    (:math:`\\mathrm{sg}` = no gradient): its value is :math:`\\tau_i(\\log u_i + \\rho)` and its gradients are the
    paper's, :math:`\\tau_i \\nabla g_i / u_i` for the encoders and
    :math:`\\log u_i + \\rho + \\tau_i \\partial_{\\tau_i} g_i / u_i` for the temperatures.

    The per-example temperatures with the paper's projected momentum update live in
    :class:`ISogCLRTemperatures`, which holds the buffers and calls this function.

    Qiu, Hu, Yuan, Zhou, Wang & Yang (2023), "Not All Semantics are Created Equal: Contrastive Self-supervised
    Learning with Automatic Temperature Individualization".

    Args: ``query`` [N, D], ``keys`` [N, D], ``temperature`` scalar or [N] (positive), ``weights`` [N]; with the
    estimator ``log_u`` [dataset size] (float, updated in place) and ``indices`` [N] (distinct, long).
    """
    check_query_keys(query, keys)
    n = query.shape[0]
    check_weights(weights, n)
    if (log_u is None) != (indices is None):
        raise InputError("give both log_u (the moving-average buffer) and indices (the batch's rows in it), or neither")
    if log_u is not None:
        indices = _check_ma_buffer(log_u, indices, n, gamma)
    q, k = maybe_normalize(normalize, query, keys)
    tau = torch.as_tensor(temperature, dtype=q.dtype, device=q.device)
    if tau.ndim > 1 or (tau.ndim == 1 and tau.shape[0] != n):
        raise InputError(f"temperature must be a scalar or have shape [N] = [{n}], got {list(tau.shape)}")
    if not bool(torch.isfinite(tau).all()) or not bool((tau > 0).all()):
        raise InputError("temperature must be positive and finite")
    tau = tau.expand(n)
    if n < 2:
        return reduce_loss((q * k).sum(1) * 0 * tau, reduction, weights=weights)
    sims = q @ k.T
    h = (sims - sims.diagonal()[:, None]) / tau[:, None]
    off = ~torch.eye(n, dtype=torch.bool, device=q.device)
    log_mean = masked_logsumexp(h, off) - torch.log(torch.tensor(n - 1.0, dtype=q.dtype))
    if log_u is None:
        return reduce_loss(tau * (log_mean + rho), reduction, weights=weights)
    with torch.no_grad():
        old = log_u[indices].to(q.dtype)
        new = torch.logaddexp(old + math.log1p(-gamma), log_mean + math.log(gamma)) if gamma < 1 else log_mean.detach()
        new = torch.where(torch.isneginf(old), log_mean.detach(), new)  # first visit: u = g (the authors' init)
        log_u[indices] = new.to(log_u.dtype)
    ratio = torch.exp(log_mean - new)  # g_i / u_i with u_i the updated average (no gradient through u)
    values = tau * ratio + tau * (new + rho - ratio).detach()
    return reduce_loss(values, reduction, weights=weights)


class ISogCLRTemperatures(torch.nn.Module):
    """iSogCLR's per-example state: the moving averages u and the learned individual temperatures τ.

    Call it on a batch, ``loss = state(query, keys, indices)``, in place of :func:`isogclr`: it looks up the
    batch's temperatures, returns :func:`isogclr` with the moving-average estimator (``log_u`` updated in place),
    and then updates the temperatures of the batch's examples with the paper's projected momentum step

    .. math::

        \\nabla_i = \\log u_i + \\rho - \\frac{1}{N-1}\\sum_{j \\ne i}
        \\frac{e^{h_{ij}/\\tau_i}}{u_i}\\,\\frac{h_{ij}}{\\tau_i},\\qquad
        m_i \\leftarrow (1-\\beta)\\, m_i + \\beta \\nabla_i,\\qquad
        \\tau_i \\leftarrow \\Pi_{[\\tau_{min}, \\tau_{max}]}(\\tau_i - \\eta\\, m_i)

    (:math:`\\nabla_i` is :math:`\\partial F / \\partial \\tau_i` of the objective with :math:`u_i` the updated
    average, :math:`h_{ij} = s(q_i, k_j) - s(q_i, k_i)`). The encoders are trained by the caller's optimiser
    through the returned loss; the temperatures are not parameters of it (as in the authors' code, they have their
    own step size η). Buffers ``log_u``, ``tau`` and ``grad_tau`` [num_examples] are saved in ``state_dict`` (so
    a checkpoint resumes them) and follow ``.to(device)``.

    Defaults are the authors' for unimodal data (LibAUC ``GCLoss_v1``: τ₀ = 0.1, τ in [0.05, 0.7], ρ = 0.3,
    η = 0.01, β = 0.9, γ = 0.9), whose update this follows (``libauc/losses/contrastive.py``); for image-text data
    use one state per direction. Qiu, Hu, Yuan, Zhou, Wang & Yang (2023), "Not All Semantics are Created Equal:
    Contrastive Self-supervised Learning with Automatic Temperature Individualization" (ICML).

    Args: ``num_examples`` (dataset size); the call takes ``query`` [N, D], ``keys`` [N, D], ``indices`` [N]
    (distinct dataset rows), ``weights`` [N] and ``reduction``.

    >>> import torch
    >>> from pairkit.losses import ISogCLRTemperatures
    >>> state = ISogCLRTemperatures(100)
    >>> q, k = torch.randn(8, 4), torch.randn(8, 4)
    >>> loss = state(q, k, torch.arange(8))
    >>> bool(state.tau[:8].ne(0.1).all()), bool(state.tau[8:].eq(0.1).all())  # only the batch's τ moved
    (True, True)
    """

    def __init__(
        self,
        num_examples: int,
        *,
        tau_init: float = 0.1,
        tau_min: float = 0.05,
        tau_max: float = 0.7,
        rho: float = 0.3,
        gamma: float = 0.9,
        eta: float = 0.01,
        beta: float = 0.9,
        normalize: bool = True,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if isinstance(num_examples, bool) or not isinstance(num_examples, int) or num_examples < 1:
            raise InputError(f"num_examples must be a positive integer (the dataset size), got {num_examples!r}")
        for name, value in (("tau_min", tau_min), ("tau_max", tau_max), ("tau_init", tau_init), ("eta", eta)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise InputError(f"{name} must be a positive number, got {value!r}")
        if not tau_min <= tau_init <= tau_max:
            raise InputError(f"need tau_min <= tau_init <= tau_max, got {tau_min}, {tau_init}, {tau_max}")
        if not (isinstance(rho, (int, float)) and rho >= 0):
            raise InputError(f"rho must be a non-negative number, got {rho!r}")
        if not (isinstance(beta, (int, float)) and 0 < beta <= 1):
            raise InputError(f"beta must be a number in (0, 1], got {beta!r}")
        if not (isinstance(gamma, (int, float)) and 0 < gamma <= 1):
            raise InputError(f"gamma must be a number in (0, 1], got {gamma!r}")
        self.tau_min, self.tau_max, self.rho, self.gamma = float(tau_min), float(tau_max), float(rho), float(gamma)
        self.eta, self.beta, self.normalize = float(eta), float(beta), bool(normalize)
        self.register_buffer("log_u", torch.full((num_examples,), float("-inf"), dtype=dtype))
        self.register_buffer("tau", torch.full((num_examples,), float(tau_init), dtype=dtype))
        self.register_buffer("grad_tau", torch.zeros(num_examples, dtype=dtype))

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        indices: torch.Tensor,
        *,
        weights: torch.Tensor | None = None,
        reduction: Reduction = "mean",
    ) -> torch.Tensor:
        """The batch's :func:`isogclr` loss with its examples' temperatures; then updates their u and τ."""
        check_query_keys(query, keys)
        idx = _check_ma_buffer(self.log_u, indices, query.shape[0], self.gamma)
        tau = self.tau[idx].to(query.dtype)
        loss = isogclr(query, keys, temperature=tau, rho=self.rho, normalize=self.normalize, log_u=self.log_u,
                       indices=idx, gamma=self.gamma, weights=weights, reduction=reduction)  # fmt: skip
        n = query.shape[0]
        if n < 2:
            return loss
        with torch.no_grad():
            q, k = maybe_normalize(self.normalize, query.detach(), keys.detach())
            sims = q @ k.T
            h = (sims - sims.diagonal()[:, None]) / tau[:, None]
            off = ~torch.eye(n, dtype=torch.bool, device=q.device)
            log_u = self.log_u[idx].to(q.dtype)  # the updated averages
            w = torch.where(off, torch.exp(h - log_u[:, None]), torch.zeros_like(h))
            grad = log_u + self.rho - (w * h).sum(1) / (n - 1)
            m = (1.0 - self.beta) * self.grad_tau[idx].to(q.dtype) + self.beta * grad
            self.grad_tau[idx] = m.to(self.grad_tau.dtype)
            self.tau[idx] = (tau - self.eta * m).clamp(self.tau_min, self.tau_max).to(self.tau.dtype)
        return loss


def _check_ma_buffer(log_u, indices, n: int, gamma: float) -> torch.Tensor:
    """Validate iSogCLR's moving-average buffer and the batch's indices into it; return the indices as long."""
    if not isinstance(log_u, torch.Tensor) or log_u.ndim != 1 or not log_u.is_floating_point():
        raise InputError("log_u must be a 1-d floating-point tensor (one log u per training example)")
    if log_u.requires_grad:
        raise InputError("log_u is a buffer updated in place; it must not require grad")
    idx = torch.as_tensor(indices, device=log_u.device)
    if idx.ndim != 1 or idx.shape[0] != n or idx.is_floating_point() or idx.dtype == torch.bool:
        raise InputError(f"indices must be {n} integer dataset indices (one per query row), got {list(idx.shape)}")
    idx = idx.long()
    bad = idx[(idx < 0) | (idx >= log_u.shape[0])]
    if bad.numel():
        raise InputError(f"indices must be in 0..{log_u.shape[0] - 1} (rows of log_u), got {int(bad[0])}")
    if torch.unique(idx).numel() != n:
        raise InputError("indices must be distinct within a batch (each example's average is updated once)")
    if not (isinstance(gamma, (int, float)) and 0 < gamma <= 1):
        raise InputError(f"gamma must be a number in (0, 1], got {gamma!r}")
    return idx


@register(
    "decoupled_softmax",
    keywords=_UNMASKED,
    inputs=_MULTI_POSITIVE,
    batch_coupled=True,
    family=_FAMILY,
    aliases=("dexml", "decoupled_softmax_loss"),
    options=(
        LEARNABLE_TEMPERATURE,
        NORMALIZE,
        CHUNK_SIZE,
    ),
)
def decoupled_softmax(
    query: torch.Tensor,
    keys: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float | torch.Tensor = 0.07,
    normalize: bool = True,
    chunk_size: int | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Decoupled softmax for multi-positive retrieval: each positive competes only against the negatives.

    .. math::

        \\ell_{ip} = -\\log \\frac{\\exp(z_{ip})}{\\exp(z_{ip}) + \\sum_{j \\notin P_i} \\exp(z_{ij})},
        \\qquad z_{ij} = s(q_i, k_j)/\\tau,\\; p \\in P_i

    Unlike a softmax over all keys, the other positives of query :math:`i` are left out of the denominator, so
    several positives do not push each other down. "mean" averages over (query, positive) pairs; "none" gives
    each query's sum over its positives (0 for queries without positives), adding up to "sum". Large N x M runs in
    row chunks recomputed in the backward pass (``chunk_size`` as :func:`infonce`): the positives' logits are
    gathered (O(P D) for P positives) and only the negatives' log-sum-exp touches a chunk of the logit matrix, so
    the float memory is O(chunk x M) besides the boolean ``targets``.

    Gupta, Chaudhari, Bhatia, Cathey & Varma (2024), "Dual-Encoder Models for Extreme Multi-Label
    Classification" (DEXML).

    Args: ``query`` [N, D], ``keys`` [M, D] (e.g. label embeddings), ``targets`` [N, M] bool (positives),
    ``weights`` [N]. Returns a scalar or [N].
    """
    check_query_keys(query, keys, same_rows=False)
    n, m = query.shape[0], keys.shape[0]
    targets = _check_targets(targets, n, m, query.device)
    check_weights(weights, n)
    q, k = maybe_normalize(normalize, query, keys)
    scale = inverse_temperature(temperature, q)
    lse_neg = _checkpointed_rows(lambda qc, tc: masked_logsumexp((qc @ k.T) * scale, ~tc), chunk_size, m, q, targets)
    anchor, cand = torch.nonzero(targets, as_tuple=True)
    pair_loss = F.softplus(lse_neg[anchor] - scale * (q[anchor] * k[cand]).sum(1))
    return reduce_pairs(pair_loss, anchor, n, weights, reduction)


def _soft_topk_log_probs(z: torch.Tensor, k: int, alpha: float, n_iter: int) -> torch.Tensor:
    """log σ(α(z_ij + t_i)) with t_i such that the row's memberships sum to k; gradients by implicit differentiation."""
    with torch.no_grad():
        lo = -z.amax(1, keepdim=True) - 10.0 / alpha
        hi = -z.amin(1, keepdim=True) + 10.0 / alpha
        for _ in range(n_iter):
            mid = (lo + hi) / 2
            below = torch.sigmoid(alpha * (z + mid)).sum(1, keepdim=True) < k
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        t = (lo + hi) / 2
        sig = torch.sigmoid(alpha * (z + t))
        slope = (alpha * sig * (1 - sig)).sum(1, keepdim=True).clamp_min(torch.finfo(z.dtype).tiny)
    # One Newton step written with z: its value is the root t and its derivative dt/dz_j = -v_j / sum(v), the
    # implicit-function derivative of sum_j σ(α(z_j + t)) = k.
    t_z = t - (torch.sigmoid(alpha * (z + t)).sum(1, keepdim=True) - k) / slope
    return F.logsigmoid(alpha * (z + t_z))


@register(
    "dexml_topk",
    keywords=_UNMASKED,
    inputs=_MULTI_POSITIVE,
    batch_coupled=True,
    family=_FAMILY,
    aliases=("soft_topk", "dexml_soft_topk"),
    options=(
        Option("k", int, AT_LEAST_ONE, doc="size k of the soft top-k set (below the number of keys)"),
        Option("alpha", float, POSITIVE, doc="sharpness α of the sigmoid memberships"),
        LEARNABLE_TEMPERATURE,
        Option("n_iter", int, AT_LEAST_ONE, doc="bisection steps for the threshold"),
        NORMALIZE,
        CHUNK_SIZE,
    ),
)
def dexml_topk(
    query: torch.Tensor,
    keys: torch.Tensor,
    targets: torch.Tensor,
    *,
    k: int = 5,
    alpha: float = 1.0,
    temperature: float | torch.Tensor = 0.05,
    n_iter: int = 64,
    normalize: bool = True,
    chunk_size: int | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """DEXML's soft top-k loss: maximise each positive's membership in a smooth top-k set of the query's keys.

    .. math::

        p_{ij} = \\sigma\\big(\\alpha (z_{ij} + t_i)\\big),\\quad \\sum_{j=1}^{M} p_{ij} = k, \\qquad
        \\ell_i = -\\frac{1}{|P_i|} \\sum_{p \\in P_i} \\log p_{ip}, \\qquad z_{ij} = s(q_i, k_j)/\\tau

    The threshold :math:`t_i` is found by bisection (``n_iter`` steps, no gradient) and differentiated implicitly,
    :math:`\\partial t_i / \\partial z_{ij} = -v_{ij} / \\sum_l v_{il}` with :math:`v = \\partial p / \\partial z`,
    as the authors' custom backward. Queries without positives contribute 0; "mean" is over queries (the authors divide
    the sum by the batch size). Defaults k = 5, τ = 0.05 as the authors' LF-AmazonTitles-131K top-k config; α = 1.
    Row-chunked and recomputed in the backward pass for large N x M (``chunk_size``). Requires k < M.

    Gupta, Chaudhari, Bhatia, Cathey & Varma (2024), "Dual-Encoder Models for Extreme Multi-Label
    Classification" (DEXML).

    Args: ``query`` [N, D], ``keys`` [M, D], ``targets`` [N, M] bool (positives), ``weights`` [N]. Returns a scalar,
    or [N] for ``reduction="none"``.
    """
    check_query_keys(query, keys, same_rows=False)
    n, m = query.shape[0], keys.shape[0]
    targets = _check_targets(targets, n, m, query.device)
    check_weights(weights, n)
    if n and k >= m:
        raise InputError(f"k must be below the number of keys M = {m}, got {k}")
    q, kk = maybe_normalize(normalize, query, keys)
    scale = inverse_temperature(temperature, q)

    def rows(qc, tc):
        log_p = _soft_topk_log_probs((qc @ kk.T) * scale, k, alpha, n_iter)
        total = torch.where(tc, log_p, torch.zeros((), dtype=log_p.dtype, device=log_p.device)).sum(1)
        return -total / tc.sum(1).clamp_min(1).to(log_p.dtype)

    return reduce_loss(_checkpointed_rows(rows, chunk_size, m, q, targets), reduction, weights=weights)


@register(
    "alignment",
    keywords=_UNMASKED,
    inputs=QUERY_KEYS,
    family=_FAMILY,
    aliases=("align_loss", "alignment_loss"),
    options=(
        Option("alpha", float, POSITIVE, doc="exponent α of the distance"),
        NORMALIZE,
    ),
)
def alignment(
    query: torch.Tensor,
    keys: torch.Tensor,
    *,
    alpha: float = 2.0,
    normalize: bool = True,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Alignment: expected distance between positive pairs on the unit sphere.

    .. math::

        \\mathcal{L}_{\\text{align}} = \\mathbb{E}_{(x, y)\\,\\text{positive}}\\, \\lVert f(x) - f(y)\\rVert_2^{\\alpha}

    Wang & Isola (2020), "Understanding Contrastive Representation Learning through Alignment and Uniformity
    on the Hypersphere".

    Args: ``query`` [N, D], ``keys`` [N, D] (row i of each a positive pair), ``weights`` [N].
    """
    check_query_keys(query, keys)
    check_weights(weights, query.shape[0])
    q, k = maybe_normalize(normalize, query, keys)
    diff = q - k
    sq = (diff * diff).sum(-1)
    pos = sq > 0
    # (|d|^2)^(alpha/2) with a zero (not NaN) gradient at identical pairs
    values = torch.where(pos, torch.where(pos, sq, torch.ones_like(sq)) ** (alpha / 2), torch.zeros_like(sq))
    return reduce_loss(values, reduction, weights=weights)


@register(
    "uniformity",
    keywords=(),
    inputs=(Input("embeddings", "embeddings", "[n, dim]"),),
    batch_coupled=True,
    family=_FAMILY,
    aliases=("uniform_loss", "uniformity_loss"),
    options=(
        Option("t", float, POSITIVE, doc="scale t of the Gaussian potential"),
        NORMALIZE,
    ),
)
def uniformity(embeddings: torch.Tensor, *, t: float = 2.0, normalize: bool = True) -> torch.Tensor:
    """Uniformity: log of the mean Gaussian potential between all pairs of embeddings (lower = more uniform).

    .. math::

        \\mathcal{L}_{\\text{uniform}} = \\log \\frac{2}{N(N-1)} \\sum_{i<j} \\exp(-t \\lVert f(x_i) -
        f(x_j)\\rVert_2^2)

    A batch-level measure (a log of a mean does not split into per-example terms), so it has no
    ``reduction``; fewer than two rows give 0.

    Wang & Isola (2020), "Understanding Contrastive Representation Learning through Alignment and Uniformity
    on the Hypersphere".

    Args: ``embeddings`` [N, D]. Returns a scalar.
    """
    check_matrix("embeddings", embeddings)
    n = embeddings.shape[0]
    if n < 2:
        return embeddings.sum() * 0
    (x,) = maybe_normalize(normalize, embeddings)
    sq = (x * x).sum(-1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)).clamp_min(0.0)
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=x.device), diagonal=1)
    log_n_pairs = torch.log(torch.tensor(n * (n - 1) / 2.0, dtype=x.dtype))
    return torch.logsumexp(-t * d2[upper], dim=0) - log_n_pairs


# ------------------------------------------------------------------------------------ labelled batches


@register(
    "ntxent",
    keywords=_UNMASKED,
    inputs=LABELLED_EMBEDDINGS,
    batch_coupled=True,
    family=_FAMILY,
    aliases=("ntxent_loss", "nt_xent"),
    options=(
        LEARNABLE_TEMPERATURE,
        NORMALIZE,
        CHUNK_SIZE,
    ),
)
def ntxent(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float | torch.Tensor = 0.07,
    normalize: bool = True,
    chunk_size: int | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """NT-Xent (normalised temperature-scaled cross-entropy, SimCLR) over every positive pair of a batch.

    .. math::

        \\ell_{ap} = -\\log \\frac{\\exp(z_{ap})}{\\exp(z_{ap}) + \\sum_{n:\\,y_n \\ne y_a} \\exp(z_{an})},
        \\qquad z_{ij} = s(x_i, x_j)/\\tau

    for every ordered pair :math:`a \\ne p` with :math:`y_a = y_p`. With two views per label this is SimCLR's
    loss; with more positives per label each positive competes against the negatives only (pml's
    ``NTXentLoss``, same default temperature 0.07). "mean" averages over positive pairs (SimCLR and pml);
    "none" gives each anchor's sum over its positive pairs (adding up to "sum"). Exact row-chunked computation
    for large N (``chunk_size``); the positive term costs O(P D) for P positive pairs (P = N for two views).

    Chen, Kornblith, Norouzi & Hinton (2020), "A Simple Framework for Contrastive Learning of Visual
    Representations".

    Args: ``embeddings`` [N, D], ``labels`` [N], ``weights`` [N] (per anchor). Returns a scalar or [N].

    Example:

        >>> import torch
        >>> from pairkit.losses import ntxent
        >>> z = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1], [0.9, 0.2], [-1.0, 0.1], [-0.9, -0.2]]), dim=1)
        >>> print(round(ntxent(z, torch.tensor([0, 0, 1, 1]), temperature=0.5).item(), 4))
        0.0396
    """
    x, labels = labelled_rows(embeddings, labels, weights, normalize)
    scale = inverse_temperature(temperature, x)
    pair_loss, anchor = ntxent_pairs(x, x, labels, labels, scale, 0, chunk_size)
    return reduce_pairs(pair_loss, anchor, x.shape[0], weights, reduction)


@register(
    "supcon",
    keywords=_UNMASKED,
    inputs=LABELLED_EMBEDDINGS,
    batch_coupled=True,
    family=_FAMILY,
    aliases=("sup_con_loss", "supcon_loss", "supervised_contrastive"),
    options=(
        LEARNABLE_TEMPERATURE,
        NORMALIZE,
        CHUNK_SIZE,
    ),
)
def supcon(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float | torch.Tensor = 0.1,
    normalize: bool = True,
    chunk_size: int | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Supervised contrastive loss (the :math:`\\mathcal{L}^{sup}_{out}` form): mean log-likelihood of the positives.

    .. math::

        \\ell_i = -\\frac{1}{|P(i)|} \\sum_{p \\in P(i)} \\log
        \\frac{\\exp(z_{ip})}{\\sum_{a \\ne i} \\exp(z_{ia})}, \\qquad z_{ij} = s(x_i, x_j)/\\tau

    with :math:`P(i)` the other rows of anchor :math:`i`'s label. Anchors without positives are left out of
    the mean (pml's ``SupConLoss``, default temperature 0.1). Exact row-chunked computation for large N
    (``chunk_size``) in O(N D) memory besides the chunk.

    Khosla et al. (2020), "Supervised Contrastive Learning".

    Args: ``embeddings`` [N, D], ``labels`` [N], ``weights`` [N]. Returns a scalar or [N].
    """
    x, labels = labelled_rows(embeddings, labels, weights, normalize)
    scale = inverse_temperature(temperature, x)
    values, has_pos = supcon_rows(x, x, labels, labels, scale, 0, chunk_size)
    return reduce_loss(values, reduction, mask=has_pos, weights=weights)


@register(
    "triplet_margin",
    keywords=_UNMASKED,
    inputs=LABELLED_EMBEDDINGS,
    batch_coupled=True,
    family=_FAMILY,
    aliases=("triplet_margin_loss", "triplet"),
    options=(
        Option("margin", float, NON_NEGATIVE, doc="margin m"),
        Option("mining", str, choices=("all", "batch_hard"), doc="which triplets"),
        Option("triplets", tuple, none=True, doc="(anchors, positives, negatives) index tensors, e.g. from a miner"),
        Option("swap", bool, doc="use min(d(a, n), d(p, n))"),
        Option("smooth", bool, doc="softplus instead of the hinge"),
        NORMALIZE,
    ),
)
def triplet_margin(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    margin: float = 0.05,
    mining: str = "all",
    swap: bool = False,
    smooth: bool = False,
    triplets: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    normalize: bool = True,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Triplet margin loss over all triplets, batch-hard triplets or given (mined) triplets.

    .. math::

        \\ell_{apn} = \\big[d(x_a, x_p) - d(x_a, x_n) + m\\big]_+

    over anchors :math:`a`, positives :math:`p \\ne a` (same label) and negatives :math:`n` (other label), with
    :math:`d` the Euclidean distance of normalised embeddings. ``mining="all"`` uses every triplet (in anchor chunks
    recomputed in the backward pass: O(chunk x N^2) memory, about 2^24 elements a chunk; "mean" averages over
    triplets, "none" gives each anchor's sum, adding up to "sum");
    ``mining="batch_hard"`` keeps one triplet per anchor: its farthest positive and nearest negative (Hermans et al.
    2017). ``swap`` uses :math:`\\min(d(a, n), d(p, n))`; ``smooth`` replaces the hinge by softplus.
    ``triplets=(anchors, positives, negatives)`` (index tensors, e.g. from a miner in :mod:`pairkit.losses.miners`) uses
    exactly those triplets, as pml's ``indices_tuple``, in O(T D) memory for T triplets. Defaults follow pml's
    ``TripletMarginLoss`` (margin 0.05); pml averages only the non-zero terms by default.

    Schroff, Kalenichenko & Philbin (2015), "FaceNet: A Unified Embedding for Face Recognition and
    Clustering"; Hermans, Beyer & Leibe (2017), "In Defense of the Triplet Loss for Person Re-Identification".

    Args: ``embeddings`` [N, D], ``labels`` [N], ``weights`` [N] (per anchor). Returns a scalar or [N].
    """
    x, labels = labelled_rows(embeddings, labels, weights, normalize)
    hinge = F.softplus if smooth else F.relu
    if triplets is not None:
        if mining != "all":
            raise InputError(f"give either triplets or mining={mining!r}, not both")
        a, p, n = (i.to(x.device) for i in check_triplets(triplets, x.shape[0]))
        d_an = pair_distances(x[a], x[n])
        if swap:
            d_an = torch.minimum(d_an, pair_distances(x[p], x[n]))
        values = hinge(pair_distances(x[a], x[p]) - d_an + margin)
        return reduce_pairs(values, a, x.shape[0], weights, reduction)
    dist = _safe_distances(x)
    pos, neg = _pair_masks(labels)
    if mining == "batch_hard" and x.shape[0] == 0:
        return reduce_loss(x.sum(1), reduction, weights=weights)
    if mining == "batch_hard":
        valid = pos.any(1) & neg.any(1)
        hard_p = dist.masked_fill(~pos, float("-inf")).argmax(1)
        hard_n = dist.masked_fill(~neg, float("inf")).argmin(1)
        rows = torch.arange(x.shape[0], device=x.device)
        d_an = dist[rows, hard_n]
        if swap:
            d_an = torch.minimum(d_an, dist[hard_p, hard_n])
        values = hinge(dist[rows, hard_p] - d_an + margin)
        return reduce_loss(values, reduction, mask=valid, weights=weights)

    def anchor_sums(d_rows, pos_rows, neg_rows):  # [c, N] rows of anchors -> each anchor's sum over its triplets
        d_an = d_rows[:, None, :]
        if swap:
            d_an = torch.minimum(d_an, dist[None, :, :])
        values = hinge(d_rows[:, :, None] - d_an + margin)
        valid = pos_rows[:, :, None] & neg_rows[:, None, :]
        return torch.where(valid, values, torch.zeros((), dtype=values.dtype, device=values.device)).sum((1, 2))

    # anchor chunks recomputed in backward: O(chunk x N^2) memory, not O(N^3)
    per_anchor = _checkpointed_rows(anchor_sums, None, x.shape[0] ** 2, dist, pos, neg)
    if reduction != "mean":  # "none" (each anchor's sum) and "sum"; reduce_loss names a bad reduction
        return reduce_loss(per_anchor, reduction, weights=weights)
    counts = (pos.sum(1) * neg.sum(1)).to(x.dtype)  # triplets per anchor: the mean is over triplets
    if weights is not None:
        w = torch.as_tensor(weights, dtype=x.dtype, device=x.device)
        per_anchor, counts = per_anchor * w, counts * w
    total, denom = per_anchor.sum(), counts.sum()
    safe = torch.where(denom > 0, denom, torch.ones_like(denom))
    return torch.where(denom > 0, total / safe, torch.zeros_like(total))


@register(
    "contrastive",
    keywords=_UNMASKED,
    inputs=LABELLED_EMBEDDINGS,
    batch_coupled=True,
    family=_FAMILY,
    aliases=("contrastive_loss", "pair_margin"),
    options=(
        Option("pos_margin", float, NON_NEGATIVE, doc="distance within which positives are not penalised"),
        Option("neg_margin", float, NON_NEGATIVE, doc="distance beyond which negatives are not penalised"),
        NORMALIZE,
    ),
)
def contrastive(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    pos_margin: float = 0.0,
    neg_margin: float = 1.0,
    normalize: bool = True,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Contrastive (pair margin) loss: pull positive pairs within ``pos_margin``, push negatives past ``neg_margin``.

    .. math::

        \\mathcal{L} = \\operatorname{mean}_{(i,j)\\,\\text{pos}} [d_{ij} - m_+]_+ +
        \\operatorname{mean}_{(i,j)\\,\\text{neg}} [m_- - d_{ij}]_+

    with :math:`d` the Euclidean distance of normalised embeddings, as pml's ``ContrastiveLoss`` (margins 0
    and 1; pml averages only non-zero terms by default). "sum" adds both sums; "none" gives per anchor the sum
    over its positive pairs plus the sum over its negative pairs (so it adds up to "sum").

    Hadsell, Chopra & LeCun (2006), "Dimensionality Reduction by Learning an Invariant Mapping".

    Args: ``embeddings`` [N, D], ``labels`` [N], ``weights`` [N] (per anchor). Returns a scalar or [N].
    """
    x, labels = labelled_rows(embeddings, labels, weights, normalize)
    dist = _safe_distances(x)
    pos, neg = _pair_masks(labels)
    pos_term = _reduce_rows_over_mask(F.relu(dist - pos_margin), pos, weights, reduction)
    neg_term = _reduce_rows_over_mask(F.relu(neg_margin - dist), neg, weights, reduction)
    return pos_term + neg_term


@register(
    "multi_similarity",
    keywords=_UNMASKED,
    inputs=LABELLED_EMBEDDINGS,
    batch_coupled=True,
    family=_FAMILY,
    aliases=("multi_similarity_loss", "ms_loss"),
    options=(
        Option("alpha", float, POSITIVE, doc="scale α of the positive term"),
        Option("beta", float, POSITIVE, doc="scale β of the negative term"),
        Option("base", float, REAL, doc="similarity offset λ"),
        NORMALIZE,
    ),
)
def multi_similarity(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    alpha: float = 2.0,
    beta: float = 50.0,
    base: float = 0.5,
    normalize: bool = True,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Multi-similarity loss: soft weighting of all positive and negative pairs of each anchor.

    .. math::

        \\ell_i = \\frac{1}{\\alpha}\\log\\Big(1 + \\sum_{p \\in P_i} e^{-\\alpha (S_{ip} - \\lambda)}\\Big) +
        \\frac{1}{\\beta}\\log\\Big(1 + \\sum_{n \\in N_i} e^{\\beta (S_{in} - \\lambda)}\\Big)

    with cosine similarities :math:`S` and :math:`\\lambda` = ``base`` (pml's ``MultiSimilarityLoss`` defaults;
    no pair mining — combine with a miner's pairs via ``weights`` if wanted). "mean" is over all anchors.

    Wang, Han, Huang, Dong & Scott (2019), "Multi-Similarity Loss with General Pair Weighting for Deep Metric
    Learning".

    Args: ``embeddings`` [N, D], ``labels`` [N], ``weights`` [N]. Returns a scalar or [N].
    """
    x, labels = labelled_rows(embeddings, labels, weights, normalize)
    sims = x @ x.T
    pos, neg = _pair_masks(labels)
    pos_term = F.softplus(masked_logsumexp(-alpha * (sims - base), pos)) / alpha
    neg_term = F.softplus(masked_logsumexp(beta * (sims - base), neg)) / beta
    return reduce_loss(pos_term + neg_term, reduction, weights=weights)


@register(
    "circle",
    keywords=_UNMASKED,
    inputs=LABELLED_EMBEDDINGS,
    batch_coupled=True,
    family=_FAMILY,
    aliases=("circle_loss",),
    options=(
        Option("m", float, NON_NEGATIVE, doc="relaxation margin m"),
        Option("gamma", float, POSITIVE, doc="scale γ"),
        NORMALIZE,
    ),
)
def circle(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    m: float = 0.4,
    gamma: float = 80.0,
    normalize: bool = True,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Circle loss (pair-label form): self-paced weighting of each similarity by its distance from its optimum.

    .. math::

        \\ell_i = \\log\\Big[1 + \\sum_{n} e^{\\gamma \\alpha_n (s_n - \\Delta_n)} \\sum_{p}
        e^{-\\gamma \\alpha_p (s_p - \\Delta_p)}\\Big],\\quad \\alpha_p = [1 + m - s_p]_+,\\;
        \\alpha_n = [s_n + m]_+,\\; \\Delta_p = 1 - m,\\; \\Delta_n = m

    with cosine similarities and :math:`\\alpha` treated as constants (no gradient), as in the paper. Anchors
    lacking a positive or a negative are left out of the mean. Defaults follow pml's ``CircleLoss``.

    Sun et al. (2020), "Circle Loss: A Unified Perspective of Pair Similarity Optimization".

    Args: ``embeddings`` [N, D], ``labels`` [N], ``weights`` [N]. Returns a scalar or [N].
    """
    x, labels = labelled_rows(embeddings, labels, weights, normalize)
    sims = x @ x.T
    pos, neg = _pair_masks(labels)
    alpha_p = F.relu(1.0 + m - sims.detach())
    alpha_n = F.relu(sims.detach() + m)
    lse_p = masked_logsumexp(-gamma * alpha_p * (sims - (1.0 - m)), pos)
    lse_n = masked_logsumexp(gamma * alpha_n * (sims - m), neg)
    valid = pos.any(1) & neg.any(1)
    total = torch.where(valid, lse_p + lse_n, torch.zeros_like(lse_p))
    return reduce_loss(F.softplus(total), reduction, mask=valid, weights=weights)


@register(
    "tcm",
    keywords=_UNMASKED,
    inputs=LABELLED_EMBEDDINGS,
    batch_coupled=True,
    family=_FAMILY,
    aliases=("threshold_consistent_margin_loss", "threshold_consistent_margin"),
    options=(
        weight_option("lambda_plus", "weight λ+ of the positive term"),
        weight_option("lambda_minus", "weight λ- of the negative term"),
        Option("margin_plus", float, _COSINE, doc="cosine threshold m+ of the positives"),
        Option("margin_minus", float, _COSINE, doc="cosine threshold m- of the negatives"),
        NORMALIZE,
    ),
)
def threshold_consistent_margin(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    lambda_plus: float = 1.0,
    lambda_minus: float = 1.0,
    margin_plus: float = 0.9,
    margin_minus: float = 0.5,
    normalize: bool = True,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Threshold-consistent margin (TCM) regulariser: penalise only pairs on the wrong side of a margin.

    .. math::

        \\mathcal{L} = \\lambda_+ \\frac{\\sum_{S^+ \\le m^+} (m^+ - S^+)}{|\\{S^+ \\le m^+\\}|} +
        \\lambda_- \\frac{\\sum_{S^- \\ge m^-} (S^- - m^-)}{|\\{S^- \\ge m^-\\}|}

    over the cosine similarities :math:`S^+` of positive and :math:`S^-` of negative pairs (an empty set
    contributes 0). Meant to be added to a base metric-learning loss. Defaults follow pml's
    ``ThresholdConsistentMarginLoss``. "none" gives per anchor the two sums over its own pairs (adding up to "sum").

    Zhang et al. (2023), "Threshold-Consistent Margin Loss for Open-World Deep Metric Learning".

    Args: ``embeddings`` [N, D], ``labels`` [N], ``weights`` [N] (per anchor). Returns a scalar or [N].
    """
    x, labels = labelled_rows(embeddings, labels, weights, normalize)
    sims = x @ x.T
    pos, neg = _pair_masks(labels)
    pos_viol = pos & (sims <= margin_plus)
    neg_viol = neg & (sims >= margin_minus)
    pos_term = _reduce_rows_over_mask(margin_plus - sims, pos_viol, weights, reduction)
    neg_term = _reduce_rows_over_mask(sims - margin_minus, neg_viol, weights, reduction)
    return lambda_plus * pos_term + lambda_minus * neg_term
