"""Contrastive objectives that weight their pairs: per-negative weights (MEOW), contrastive attraction and repulsion
(CACR), dynamic bad-positive mining (DBPM) and group-ordering constraints through a relaxed sort (GroCo).

Same calling conventions as :mod:`pairkit.losses.contrastive` (paired views ``query``/``keys`` or a labelled batch
``embeddings``/``labels``); cosine similarities of L2-normalised embeddings unless stated. Memory is bounded by one
similarity row chunk (O(chunk x N)) for MEOW and DBPM, O(N^2) for CACR and O(N L^2) for GroCo's groups of L
candidates; nothing is N x N x N.
"""

from __future__ import annotations

import math

import torch
from torch.utils.checkpoint import checkpoint

from pairkit._spec import Option
from pairkit.errors import InputError
from pairkit.losses._chunked import row_logsumexp
from pairkit.losses._core import (
    AT_LEAST_ONE,
    CHUNK_SIZE,
    LABELLED_EMBEDDINGS,
    NON_NEGATIVE,
    NORMALIZE,
    POSITIVE,
    QUERY_KEYS,
    REAL,
    REDUCTIONS,
    Reduction,
    keyword,
    reduce_loss,
    register,
)
from pairkit.losses._embeddings import (
    LEARNABLE_TEMPERATURE,
    check_query_keys,
    check_weights,
    inverse_temperature,
    labelled_rows,
    masked_logsumexp,
    maybe_normalize,
    positive_pairs,
)
from pairkit.losses.ranking import neural_sort

__all__ = ["cacr", "dbpm", "dbpm_statistics", "groco", "meow"]

_FAMILY = "contrastive"
_UNMASKED = ("weights", "reduction")


def _check_reduction(reduction) -> None:
    if reduction not in REDUCTIONS:
        raise InputError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


# -------------------------------------------------------------------------------------------------------- MEOW


def _check_clusters(clusters, n: int, device) -> torch.Tensor:
    c = torch.as_tensor(clusters, device=device)
    if c.ndim == 1:
        c = c[:, None]
    if c.ndim != 2 or c.shape[0] != n or c.shape[1] < 1:
        raise InputError(f"clusters must have shape [N] or [N, runs] with N = {n}, got {list(c.shape)}")
    if c.is_floating_point() or c.dtype == torch.bool or c.is_complex():
        raise InputError(f"clusters must hold integer cluster ids, got dtype {c.dtype}")
    return c


@register(
    "meow",
    keywords=_UNMASKED,
    inputs=(
        *QUERY_KEYS,
        keyword("clusters", "cluster_ids", "[n, runs]", doc="cluster id of each node in each of R clusterings"),
        keyword("negative_weights", "similarity", "[n, n]", doc="explicit weight of key j as a negative of query i"),
        keyword("prototypes", "embeddings", "[clusters, dim]",
                doc="centroids of each clustering (a tensor, or a list with one per clustering); needs clusters"),
        keyword("concentrations", "stds", "[clusters]", doc="φ of each prototype (same layout); default τ"),
    ),
    batch_coupled=True,
    family=_FAMILY,
    aliases=("meow_loss", "weighted_negatives_contrastive"),
    options=(
        LEARNABLE_TEMPERATURE,
        NORMALIZE,
        CHUNK_SIZE,
        Option("proto_weight", float, NON_NEGATIVE, doc="λ: weight of the prototypical (ProtoNCE) term"),
    ),
)
def meow(
    query: torch.Tensor,
    keys: torch.Tensor,
    *,
    clusters: torch.Tensor | None = None,
    negative_weights: torch.Tensor | None = None,
    prototypes: torch.Tensor | list[torch.Tensor] | None = None,
    concentrations: torch.Tensor | list[torch.Tensor] | None = None,
    temperature: float | torch.Tensor = 0.5,
    normalize: bool = True,
    chunk_size: int | None = None,
    proto_weight: float = 1.0,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """MEOW: a contrastive loss with a weight on every negative, from node clusterings (or given).

    .. math::

        \\ell_i = -\\log \\frac{e^{s_{ii}/\\tau}}{\\sum_{j \\ne i} w_{ij}\\, e^{s_{ij}/\\tau}},
        \\qquad w_{ij} = \\sum_{r=1}^{R} [c_r(i) \\ne c_r(j)]

    with :math:`s_{ij}` the cosine similarity of query (coarse-view anchor) :math:`i` and key (fine-grained view)
    :math:`j`, and :math:`c_r` the cluster assignments of R clusterings (``clusters`` [N, R], e.g. K-means with
    several K on the current embeddings): a negative in the anchor's cluster in every clustering is a likely false
    negative and gets weight 0, one separated by every clustering weight R. This follows the authors' code: the
    weights count the separating clusterings, and the denominator holds the weighted negatives only (the positive's
    weight is 0), so the loss can be negative. ``negative_weights`` [N, N] gives the weights directly instead (e.g.
    AdaMEOW's learned soft weights); neither gives :math:`w_{ij} = 1` (the decoupled contrastive loss). A row whose
    negatives all have weight 0 gives 0.

    **Prototypical term.** With the clusterings' centroids ``prototypes`` (:math:`c^r_k`, one [K_r, D] tensor per
    column of ``clusters``; normalised with ``normalize``) and their concentrations ``concentrations``
    (:math:`\\phi^r_k`, default τ), MEOW adds λ (``proto_weight``) times ProtoNCE on the query:

    .. math::

        \\ell^{proto}_i = -\\frac1R \\sum_{r=1}^{R} \\log \\frac{e^{q_i^\\top c^r_{c_r(i)} / \\phi^r_{c_r(i)}}}
        {\\sum_{k=1}^{K_r} e^{q_i^\\top c^r_k / \\phi^r_k}}

    as the authors' code (``jianxiangyu/MEOW``: ``code_meow/module/meow.py`` returns ``loss_info + lam_proto *
    loss_proto``; ``code/module/contrast.py`` ``ProtoNCE`` on the coarse-view anchors, with the centroids and
    concentrations of ``run_kmeans`` in ``code_meow/module/cluster.py``, k-means on the fine view, normalised
    centroids, PCL's concentrations scaled to mean τ). Their denominator is the mean over the K_r prototypes times
    N, which adds the constant :math:`\\log(N / K_r)` to each clustering's term; it is left out here (no effect on
    the gradients). The clustering itself (k-means on the keys each epoch) is the caller's.

    With ``clusters`` each clustering is one chunked log-sum-exp over the other clusters' keys, so memory stays
    O(chunk x N).

    Yu, Ge, Li & Zhou (2023), "Heterogeneous Graph Contrastive Learning with Meta-path Contexts and Weighted Negative
    Samples" (SDM; AdaMEOW: "… and Adaptively Weighted Negative Samples", TKDE 2024).

    Args: ``query`` [N, D], ``keys`` [N, D], ``clusters`` [N] or [N, R] int, ``negative_weights`` [N, N] >= 0,
    ``prototypes`` [K, D] or R tensors [K_r, D] (``clusters[:, r]`` indexes the r-th), ``concentrations`` [K] or
    R tensors [K_r] (positive), ``weights`` [N]. Returns a scalar, or [N] for ``reduction="none"``.
    """
    _check_reduction(reduction)
    check_query_keys(query, keys)
    n = query.shape[0]
    check_weights(weights, n)
    if clusters is not None and negative_weights is not None:
        raise InputError("give clusters or negative_weights, not both")
    if prototypes is None and concentrations is not None:
        raise InputError("concentrations belong to prototypes: give prototypes too")
    if prototypes is not None and clusters is None:
        raise InputError("prototypes need clusters (which prototype each node is assigned to)")
    q, k = maybe_normalize(normalize, query, keys)
    scale = inverse_temperature(temperature, q)
    pos = scale * (q * k).sum(-1)
    if clusters is not None:
        c = _check_clusters(clusters, n, q.device)
        runs = torch.stack([row_logsumexp(q, k, scale, row_labels=c[:, r], col_labels=c[:, r], chunk_size=chunk_size)
                            for r in range(c.shape[1])])  # fmt: skip
        some = torch.isfinite(runs).any(0)
        neg = torch.logsumexp(torch.where(some, runs, torch.zeros_like(runs)), dim=0) if n else pos
        neg = torch.where(some, neg, torch.full_like(neg, float("-inf")))
    elif negative_weights is not None:
        w = torch.as_tensor(negative_weights, dtype=q.dtype, device=q.device)
        if w.shape != (n, n):
            raise InputError(f"negative_weights must have shape [N, N] = [{n}, {n}], got {list(w.shape)}")
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
            raise InputError("negative_weights must be finite and non-negative")
        logits = scale * (q @ k.T)
        keep = (w > 0) & ~torch.eye(n, dtype=torch.bool, device=q.device)
        shifted = logits + torch.log(torch.where(keep, w, torch.ones_like(w)))
        neg = masked_logsumexp(shifted, keep)
    else:
        neg = row_logsumexp(q, k, scale, self_offset=0, chunk_size=chunk_size)
    has = torch.isfinite(neg)
    values = torch.where(has, torch.where(has, neg, torch.zeros_like(neg)) - pos, torch.zeros_like(pos))
    if prototypes is not None and proto_weight > 0:
        values = values + proto_weight * _proto_nce(q, c, prototypes, concentrations, scale, normalize)
    return reduce_loss(values, reduction, weights=weights)


def _per_clustering(name: str, value, runs: int) -> list[torch.Tensor]:
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(items) != runs:
        raise InputError(f"{name}: {len(items)} given for {runs} clusterings (columns of clusters); give one each")
    return items


def _proto_nce(q, c, prototypes, concentrations, scale, normalize: bool) -> torch.Tensor:
    """Per row: the mean over clusterings of -log softmax(q . c_k / phi_k) at the row's own cluster."""
    runs = c.shape[1]
    protos = _per_clustering("prototypes", prototypes, runs)
    phis = _per_clustering("concentrations", concentrations, runs) if concentrations is not None else [None] * runs
    total = q.new_zeros(q.shape[0])
    for r, (proto, phi) in enumerate(zip(protos, phis)):
        if not (isinstance(proto, torch.Tensor) and proto.is_floating_point()) or proto.ndim != 2 or (
            proto.shape[1] != q.shape[1]
        ):
            raise InputError(f"prototypes[{r}] must be a floating-point [K, {q.shape[1]}] tensor, got "
                             f"{getattr(proto, 'shape', type(proto).__name__)}")  # fmt: skip
        k = proto.shape[0]
        if c.shape[0] and (int(c[:, r].min()) < 0 or int(c[:, r].max()) >= k):
            raise InputError(f"clusters[:, {r}] must index the {k} prototypes of clustering {r} (0..{k - 1})")
        centres = proto.to(q.dtype)
        centres = torch.nn.functional.normalize(centres, dim=1) if normalize else centres
        if phi is None:
            inv = scale  # every prototype at the loss's temperature
        else:
            phi = torch.as_tensor(phi, dtype=q.dtype, device=q.device)
            if phi.shape != (k,) or not bool(torch.isfinite(phi).all()) or bool((phi <= 0).any()):
                raise InputError(f"concentrations[{r}] must be {k} positive finite values (one per prototype)")
            inv = 1.0 / phi
        logits = (q @ centres.T) * inv
        total = total + torch.logsumexp(logits, dim=1) - logits.gather(1, c[:, r : r + 1]).squeeze(1)
    return total / runs


# -------------------------------------------------------------------------------------------------------- CACR


def _soft_weighted(cost: torch.Tensor, mask: torch.Tensor, t: float) -> torch.Tensor:
    """Per row: sum over ``mask`` of softmax(t * cost) * cost (0 for empty rows)."""
    logits = (t * cost).masked_fill(~mask, float("-inf"))
    has = mask.any(1, keepdim=True)
    probs = torch.softmax(torch.where(has, logits, torch.zeros_like(logits)), dim=1)
    return torch.where(mask, probs * cost, torch.zeros_like(cost)).sum(1)


@register(
    "cacr",
    keywords=_UNMASKED,
    inputs=LABELLED_EMBEDDINGS,
    batch_coupled=True,
    family=_FAMILY,
    aliases=("cacr_loss", "contrastive_attraction_repulsion"),
    options=(
        Option("t_pos", float, NON_NEGATIVE, doc="attraction temperature t+ (0: uniform over positives)"),
        Option("t_neg", float, NON_NEGATIVE, doc="repulsion temperature t- (0: uniform over negatives)"),
        NORMALIZE,
    ),
)
def cacr(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    t_pos: float = 1.0,
    t_neg: float = 1.0,
    normalize: bool = True,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """CACR: contrastive attraction of the far positives and contrastive repulsion of the near negatives.

    .. math::

        \\ell_i = \\sum_{p \\in P_i} \\pi^+_{ip}\\, c_{ip} - \\sum_{n \\in N_i} \\pi^-_{in}\\, c_{in},\\qquad
        \\pi^+_{ip} = \\frac{e^{t_+ c_{ip}}}{\\sum_{p'} e^{t_+ c_{ip'}}},\\quad
        \\pi^-_{in} = \\frac{e^{-t_- c_{in}}}{\\sum_{n'} e^{-t_- c_{in'}}}

    with :math:`c_{ij} = \\lVert \\hat x_i - \\hat x_j \\rVert^2` the point-to-point cost of normalised embeddings,
    :math:`P_i` the other rows with the anchor's label (its other views) and :math:`N_i` the rows with other
    labels. The conditional distributions put more weight on the positives far from the anchor (attraction) and on
    the negatives near it (repulsion). As the authors' code, the weights are differentiated through (no
    stop-gradient) and t+ = t- = 1 by default; ``t_pos = t_neg = 0`` gives the uniform weights, i.e. mean positive
    minus mean negative cost. Reading taken: their code takes each query's negatives from another view only
    (cross-view pairs, one direction per pair of views); with a labelled batch every row of another label is a
    negative. A row without positives (negatives) has no attraction
    (repulsion) term. "mean" is over rows.

    Zheng, Wang, Zhou, Wang, Chen & Zhou (2023), "Contrastive Attraction and Contrastive Repulsion for
    Representation Learning" (TMLR).

    Args: ``embeddings`` [N, D], ``labels`` [N], ``weights`` [N]. Returns a scalar or [N].
    """
    _check_reduction(reduction)
    x, labels = labelled_rows(embeddings, labels, weights, normalize)
    sq = (x * x).sum(1)
    cost = (sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)).clamp_min(0.0)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    values = _soft_weighted(cost, same & ~eye, t_pos) - _soft_weighted(cost, ~same, -t_neg)
    return reduce_loss(values, reduction, weights=weights)


# -------------------------------------------------------------------------------------------------------- DBPM


def dbpm_statistics(history, *, max_epochs: int) -> tuple[torch.Tensor, float, float]:
    """DBPM's memory-module summary: each pair's epoch-weighted mean training loss and their global mean and std.

    ``history`` [instances, epochs]: the per-pair losses recorded so far (epoch e = 0, 1, … in the columns). Each
    row's summary is :math:`\\frac1E \\sum_{e<E} \\frac{e + 1}{E_{max}} \\ell_e` (later epochs count more, as the
    authors' code), and :math:`\\mu`, :math:`\\sigma` the mean and population standard deviation of the summaries.
    Pass them to :func:`dbpm` as ``pair_history`` (the batch rows'), ``history_mean`` and ``history_std``.
    """
    h = torch.as_tensor(history)
    if h.ndim != 2 or h.shape[1] < 1 or not h.is_floating_point():
        raise InputError(f"history must be a float tensor [instances, epochs >= 1], got {h.dtype} {list(h.shape)}")
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < h.shape[1]:
        raise InputError(f"max_epochs must be an integer >= the recorded epochs ({h.shape[1]}), got {max_epochs!r}")
    if not bool(torch.isfinite(h).all()):
        raise InputError("history contains a non-finite loss")
    epoch_weight = torch.arange(1, h.shape[1] + 1, dtype=h.dtype, device=h.device) / max_epochs
    summary = (h * epoch_weight).mean(1)
    return summary, float(summary.mean()), float(summary.std(unbiased=False))


@register(
    "dbpm",
    keywords=_UNMASKED,
    inputs=(*QUERY_KEYS, keyword("pair_history", "nll", doc="each pair's summary of past losses (dbpm_statistics)")),
    batch_coupled=True,
    family=_FAMILY,
    aliases=("dbpm_loss", "dynamic_bad_pair_mining"),
    options=(
        LEARNABLE_TEMPERATURE,
        Option("history_mean", float, REAL, none=True, doc="global mean μ of the pair summaries"),
        Option("history_std", float, POSITIVE, none=True, doc="global standard deviation σ of the pair summaries"),
        Option("cut_np", float, NON_NEGATIVE, doc="noisy positives: summary <= μ - cut_np σ"),
        Option("cut_fp", float, NON_NEGATIVE, doc="faulty positives: summary >= μ + cut_fp σ"),
        NORMALIZE,
        CHUNK_SIZE,
    ),
)
def dbpm(
    query: torch.Tensor,
    keys: torch.Tensor,
    *,
    pair_history: torch.Tensor | None = None,
    history_mean: float | None = None,
    history_std: float | None = None,
    temperature: float | torch.Tensor = 0.2,
    cut_np: float = 2.0,
    cut_fp: float = 3.0,
    normalize: bool = True,
    chunk_size: int | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """DBPM: NT-Xent whose likely bad positive pairs (by their loss history) are down-weighted.

    Each pair's loss is SimCLR's NT-Xent over the 2N views, averaged over its two directions,

    .. math::

        \\ell_i = \\tfrac12\\big(\\ell(q_i \\to k_i) + \\ell(k_i \\to q_i)\\big),\\qquad
        w_i = \\begin{cases} \\varphi(\\ell_i;\\, \\mu, \\sigma) & h_i \\le \\mu - c_{np}\\sigma \\text{ (noisy)}
        \\text{ or } h_i \\ge \\mu + c_{fp}\\sigma \\text{ (faulty)}\\\\ 1 & \\text{otherwise}\\end{cases}

    and the loss is :math:`w_i \\ell_i`, with :math:`h_i` the pair's summary of its past losses (the memory module,
    :func:`dbpm_statistics`), :math:`\\mu, \\sigma` their global mean and standard deviation and :math:`\\varphi`
    the normal density, evaluated at the current (detached) loss — so pairs whose loss history is far below
    (noisy: only noise is shared) or far above (faulty: the augmentation broke the signal) the rest count less.
    Without ``pair_history`` (the warm-up epochs) it is plain NT-Xent per pair. Defaults follow the authors' code
    (τ = 0.2, cut_np = 2, cut_fp = 3); the weight is a constant (stop-gradient), as there.

    Lan, Yan, Hong & Feng (2024), "Towards Enhancing Time Series Contrastive Learning: A Dynamic Bad Pair Mining
    Approach" (ICLR).

    Args: ``query`` [N, D] and ``keys`` [N, D] (two views per instance), ``pair_history`` [N], ``weights`` [N].
    Returns a scalar, or [N] for ``reduction="none"``.
    """
    _check_reduction(reduction)
    check_query_keys(query, keys)
    n = query.shape[0]
    check_weights(weights, n)
    q, k = maybe_normalize(normalize, query, keys)
    scale = inverse_temperature(temperature, q)
    z = torch.cat([q, k])
    lse = row_logsumexp(z, z, scale, self_offset=0, chunk_size=chunk_size)
    pos = scale * (q * k).sum(-1)
    values = 0.5 * (lse[:n] + lse[n:]) - pos
    if pair_history is not None:
        if history_mean is None or history_std is None:
            raise InputError("pair_history needs history_mean and history_std (see dbpm_statistics)")
        h = torch.as_tensor(pair_history, dtype=values.dtype, device=values.device)
        if h.shape != (n,) or not bool(torch.isfinite(h).all()):
            raise InputError(f"pair_history must be finite with shape [N] = [{n}], got {list(h.shape)}")
        bad = (h <= history_mean - cut_np * history_std) | (h >= history_mean + cut_fp * history_std)
        density = torch.exp(-0.5 * ((values.detach() - history_mean) / history_std) ** 2) / (
            history_std * math.sqrt(2.0 * math.pi)
        )
        values = torch.where(bad, density * values, values)
    return reduce_loss(values, reduction, weights=weights)


# ------------------------------------------------------------------------------------------------------- GroCo


def _groups(x, labels, num_negatives):
    """Each anchor's positives (padded) and its ``num_negatives`` most similar negatives: indices, mask, positive
    flags [N, L] and the number of positives per anchor."""
    n = x.shape[0]
    a, p = positive_pairs(labels, labels, 0)
    counts = torch.bincount(a, minlength=n)
    width = int(counts.max()) if n and a.numel() else 0
    start = torch.cumsum(counts, 0) - counts
    slot = torch.arange(a.numel(), device=x.device) - start[a]
    pos_idx = torch.zeros(n, width, dtype=torch.long, device=x.device)
    pos_ok = torch.zeros(n, width, dtype=torch.bool, device=x.device)
    pos_idx[a, slot] = p
    pos_ok[a, slot] = True
    sims = (x @ x.T).detach()
    other = labels[:, None] != labels[None, :]
    m = min(num_negatives, n)
    top = torch.topk(sims.masked_fill(~other, float("-inf")), m, dim=1) if m else None
    neg_idx = top.indices if m else torch.zeros(n, 0, dtype=torch.long, device=x.device)
    neg_ok = torch.isfinite(top.values) if m else torch.zeros(n, 0, dtype=torch.bool, device=x.device)
    idx = torch.cat([pos_idx, neg_idx], 1)
    ok = torch.cat([pos_ok, neg_ok], 1)
    is_pos = torch.cat([pos_ok, torch.zeros_like(neg_ok)], 1)
    return idx, ok, is_pos, counts


# elements of one chunk's [anchors, rank, item] relaxed permutations
_GROUP_ELEMENTS = 1 << 22


def _group_terms(scores, ok, is_pos, counts, temperature):
    """Per-anchor GroCo terms of a chunk of groups (scores, masks [A, L], positive counts [A])."""
    p_hat = neural_sort(scores, temperature=temperature, mask=ok)  # [A, rank, item]
    ranks = torch.arange(scores.shape[1], device=scores.device)
    top = ranks[None, :] < counts[:, None]  # [A, rank]
    mass_pos = torch.where(is_pos[:, None, :], p_hat, torch.zeros_like(p_hat)).sum(-1)
    mass_neg = torch.where((ok & ~is_pos)[:, None, :], p_hat, torch.zeros_like(p_hat)).sum(-1)
    right = torch.where(top, mass_pos, mass_neg).clamp_min(torch.finfo(scores.dtype).tiny)
    rank_ok = ranks[None, :] < ok.sum(1, keepdim=True)
    per_anchor = -torch.where(rank_ok, torch.log(right), torch.zeros_like(right)).sum(1)
    return per_anchor / ok.sum(1).clamp_min(1).to(scores.dtype)


@register(
    "groco",
    keywords=_UNMASKED,
    inputs=LABELLED_EMBEDDINGS,
    batch_coupled=True,
    family=_FAMILY,
    aliases=("groco_loss", "group_ordering_constraints"),
    options=(
        Option("num_negatives", int, AT_LEAST_ONE, doc="nearest negatives in each anchor's group"),
        Option("temperature", float, POSITIVE, doc="NeuralSort temperature τ on the cosine similarities"),
        Option("stop_grad", bool, doc="gradient through the anchor only, not its positives and negatives"),
        NORMALIZE,
    ),
)
def groco(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_negatives: int = 10,
    temperature: float = 0.1,
    stop_grad: bool = True,
    normalize: bool = True,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """GroCo: group-ordering constraints — the anchor's positives must be sorted above its nearest negatives.

    For anchor :math:`a` with :math:`k_a` positives (other rows with its label) and its ``num_negatives`` most
    similar negatives, sort the group's cosine similarities with :func:`~pairkit.losses.neural_sort` into the
    relaxed permutation matrix :math:`\\hat P` (row :math:`r` = rank, a distribution over the group). The ground
    truth only fixes groups — ranks :math:`1..k_a` hold positives, the rest negatives — so each rank's row is
    scored by the probability it puts on the right group:

    .. math::

        \\ell_a = -\\frac{1}{L_a} \\Big(\\sum_{r \\le k_a} \\log \\sum_{j \\in P_a} \\hat P_{rj} +
        \\sum_{r > k_a} \\log \\sum_{j \\in N_a} \\hat P_{rj}\\Big)

    over the :math:`L_a` members of the group. The loss is 0 exactly when the relaxed sort puts all positives above
    all negatives, whatever their order within each group. As the authors' code: the group holds the anchor's
    ``num_negatives`` most similar negatives (10 there; the selection has no gradient), and with ``stop_grad`` (their
    default) only the anchor's side of each similarity carries a gradient. Reading taken: the paper sorts with a
    differentiable sorting network, whose relaxed permutation is doubly stochastic, and scores each item's mass in
    its group's rank zone with a BCE; NeuralSort (the relaxation used here, as the issue asks) is only
    row-stochastic, so each rank's row is scored instead — the same constraint as a proper cross-entropy, without
    the clipping the item-wise form would need. Anchors without a positive or a negative are left out. The groups
    run in anchor chunks recomputed in the backward pass (memory O(chunk x L²) for groups of L, L <= N, never
    N x N x N), plus one N x N similarity matrix.

    Shvetsova, Petersen, Kukleva, Schiele & Kuehne (2023), "Learning by Sorting: Self-supervised Learning with
    Group Ordering Constraints" (ICCV).

    Args: ``embeddings`` [N, D], ``labels`` [N] (views of one instance share a label), ``weights`` [N]. Returns a
    scalar or [N].
    """
    _check_reduction(reduction)
    x, labels = labelled_rows(embeddings, labels, weights, normalize)
    n = x.shape[0]
    idx, ok, is_pos, counts = _groups(x, labels, num_negatives)
    valid = (counts > 0) & (ok & ~is_pos).any(1)
    if n == 0 or idx.shape[1] == 0:
        return reduce_loss(x.sum(1), reduction, mask=valid, weights=weights)
    scores = torch.gather(x @ (x.detach() if stop_grad else x).T, 1, idx)  # [N, L]
    width = idx.shape[1]
    step = max(1, _GROUP_ELEMENTS // (width * width))
    parts = []
    for start in range(0, n, step):
        rows = (scores[start : start + step], ok[start : start + step], is_pos[start : start + step],
                counts[start : start + step])  # fmt: skip
        if torch.is_grad_enabled() and scores.requires_grad and n > step:
            parts.append(checkpoint(_group_terms, *rows, temperature, use_reentrant=False))
        else:
            parts.append(_group_terms(*rows, temperature))
    per_anchor = torch.cat(parts)
    return reduce_loss(torch.where(valid, per_anchor, torch.zeros_like(per_anchor)), reduction, mask=valid,
                       weights=weights)
