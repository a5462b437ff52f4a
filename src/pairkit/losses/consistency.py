"""Consistency regularisers for semi-supervised learning: agree with yourself across views.

Inputs are two views' logits ``[batch, classes]`` of the same unlabelled examples: a weakly augmented view
whose (confident) prediction becomes the target, and a strongly augmented view that is trained towards it. The
target side is a constant (stop-gradient), as in the papers.
"""

from __future__ import annotations

import torch

from pairkit._spec import Input, Interval, Option
from pairkit.errors import InputError
from pairkit.losses._checks import check_distributions
from pairkit.losses._core import NORMALIZE, TEMPERATURE, Reduction, label_logp, reduce_loss, register

__all__ = [
    "fixmatch_loss",
    "relation_consistency_loss",
    "shrinkmatch_loss",
    "simmatchv2_edge_edge_loss",
    "simmatchv2_node_edge_loss",
    "simmatchv2_node_node_loss",
    "simmatchv2_pseudo_labels",
]

_FAMILY = "consistency"

WEAK_STRONG = (
    Input("weak_logits", "logits", "[batch, classes]"),
    Input("strong_logits", "logits", "[batch, classes]"),
)


@register(
    "fixmatch_loss",
    inputs=WEAK_STRONG,
    family=_FAMILY,
    aliases=("fixmatch", "confidence_thresholded_consistency"),
    options=(
        Option("threshold", float, Interval(0, 1), doc="confidence τ a pseudo-label needs to count"),
        Option("temperature", float, Interval(0, None, closed="neither"), doc="temperature of the weak view"),
    ),
)
def fixmatch_loss(
    weak_logits: torch.Tensor,
    strong_logits: torch.Tensor,
    *,
    threshold: float = 0.95,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""FixMatch: cross-entropy of the strong view to the weak view's confident hard pseudo-label.

    .. math::
        q = \operatorname{softmax}\big(\operatorname{sg}(z^{w})/T\big), \qquad
        \ell = \mathbb 1\big[\max_k q_k \ge \tau\big]\; \mathrm{CE}\big(z^{s}, \arg\max_k q_k\big).

    Examples below the threshold contribute 0 but still count in the ``"mean"`` — the paper's
    :math:`\frac{1}{\mu B}\sum` over all unlabelled examples (not over the confident ones only).

    Sohn, Berthelot, Li, Zhang, Carlini, Cubuk, Kurakin, Zhang & Raffel (2020), "FixMatch: Simplifying
    Semi-Supervised Learning with Consistency and Confidence" (NeurIPS), eq. (4); ``τ = 0.95`` as in the paper.

    Args:
        weak_logits, strong_logits: ``[..., K]`` logits of the two views (the weak side is detached).
    Returns one value per leading position with ``reduction="none"``, else a scalar.
    """
    check_distributions(("weak_logits", "strong_logits"), weak_logits, strong_logits, mask, weights)
    with torch.no_grad():
        q = torch.softmax(weak_logits.detach().float() / temperature, dim=-1)
        confidence, pseudo = q.max(dim=-1)
        confident = confidence >= threshold
    ce = -label_logp(torch.log_softmax(strong_logits, dim=-1), pseudo)
    values = torch.where(confident, ce, torch.zeros_like(ce))
    return reduce_loss(values, reduction, mask=mask, weights=weights)


# ------------------------------------------------------------------------------------------- ShrinkMatch


@register(
    "shrinkmatch_loss",
    inputs=(
        Input("weak_logits", "logits", "[batch, classes]"),
        Input("aux_strong_logits", "logits", "[batch, classes]"),
    ),
    family=_FAMILY,
    aliases=("shrinkmatch", "shrunk_class_space_consistency"),
    options=(
        Option("threshold", float, Interval(0, 1), doc="confidence τ the shrunk space must reach"),
        Option("certain_ratio", float, Interval(0, 1),
               doc="weight r of the term (reweighting principle 2): the running fraction of certain examples"),
    ),
)
def shrinkmatch_loss(
    weak_logits: torch.Tensor,
    aux_strong_logits: torch.Tensor,
    *,
    threshold: float = 0.95,
    certain_ratio: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""ShrinkMatch: consistency for *uncertain* examples in a shrunk class space where the top-1 class is certain.

    For an example whose weak-view confidence :math:`q_{(1)} = \max_k \operatorname{softmax}(z^w)_k` is below τ,
    sort the classes by weak logit, :math:`z^w_{(1)} \ge z^w_{(2)} \ge \dots`, and remove the most confusing
    ones — ranks ``2 … c−1`` — for the smallest ``c ≥ 2`` (at most ``K − 1``) whose shrunk space
    :math:`S_c = \{(1)\} \cup \{(c), \dots, (K)\}` makes the top-1 class confident:
    :math:`\operatorname{softmax}_{S_c}(z^w)_{(1)} \ge \tau`. The strong view's logits from the **auxiliary head**
    :math:`h` (not the classifier) are trained towards the top-1 class inside that space, weighted by the original
    confidence (reweighting principle 1) and by the running fraction :math:`r` of certain examples (principle 2):

    .. math::
        \ell = r\;\mathbb 1[q_{(1)} < \tau]\;\mathbb 1\big[\operatorname{softmax}_{S_c}(z^w)_{(1)} \ge \tau\big]\;
               q_{(1)}\; \mathrm{CE}\big(h^s_{S_c}, (1)\big), \qquad
        r_t = 0.999\, r_{t-1} + 0.001\, \tfrac1{\mu B}\textstyle\sum_i \mathbb 1[q_{(1),i} \ge \tau].

    ``certain_ratio`` is :math:`r`, a running statistic of the training: :func:`~pairkit.train.train_semi_supervised`
    keeps it (starting from the first batch's fraction, as the authors) and passes it unless ``loss_options`` fix
    it; called on its own the loss uses the given value (default 1, the term unweighted by :math:`r`). Confident
    examples give 0 here (FixMatch's term, :func:`fixmatch_loss` on the classifier, covers them); the ``"mean"`` is
    over all examples, as the authors divide the sum by the batch size.

    Yang, Zhao, Qi, Qiao, Shi & Zhao (2023), "Shrinking Class Space for Enhanced Certainty in Semi-Supervised
    Learning" (ICCV), §3.2–3.3; read against the authors' code (LiheYoung/ShrinkMatch: ``shrink_loss`` /
    ``consistency_loss_with_shrink`` and their training loops), without distribution alignment (apply it to
    ``weak_logits`` beforehand). Readings taken where their scripts differ: the shrunk confidence is computed from
    the logits (their STL-10 code; the CIFAR code's probabilities give the same value), and :math:`r` runs over the
    whole training (their ImageNet and STL-10 loops, which checkpoint it; the CIFAR loop restarts it each epoch).
    Vectorised: the shrunk confidences of all ``c`` come from one reverse cumulative log-sum-exp.

    Args:
        weak_logits: ``[..., K]`` classifier logits of the weak view (detached);
        aux_strong_logits: ``[..., K]`` auxiliary-head logits of the strong view.
    Returns one value per leading position with ``reduction="none"``, else a scalar.
    """
    check_distributions(("weak_logits", "aux_strong_logits"), weak_logits, aux_strong_logits, mask, weights)
    k = weak_logits.shape[-1]
    zero = aux_strong_logits.sum(-1) * 0.0
    if k < 3:  # nothing can be removed between the top-1 class and the rest
        return reduce_loss(zero, reduction, mask=mask, weights=weights)
    with torch.no_grad():
        w = weak_logits.detach().float() if weak_logits.dtype != torch.float64 else weak_logits.detach()
        confidence = torch.softmax(w, dim=-1).max(-1).values
        certain = confidence >= threshold
        sorted_w, order = torch.sort(w, dim=-1, descending=True, stable=True)
        # tail[..., c] = logsumexp of the sorted logits c..K-1
        tail = torch.logcumsumexp(sorted_w.flip(-1), dim=-1).flip(-1)
        shrunk = torch.sigmoid(sorted_w[..., :1] - tail[..., 2:])  # c = 2 .. K-1
        ok = shrunk >= threshold
        ok[..., -1] = True  # stop at the last class at the latest
        first = ok.float().argmax(-1)  # index into c = 2 ..
        c = first + 2
        reached = torch.gather(shrunk, -1, first.unsqueeze(-1)).squeeze(-1) >= threshold
        weight = torch.where(~certain & reached, confidence * certain_ratio, torch.zeros_like(confidence))
        keep = torch.arange(k, device=w.device) >= c.unsqueeze(-1)
        keep[..., 0] = True
    sorted_s = torch.gather(aux_strong_logits, -1, order)
    lowest = torch.finfo(sorted_s.dtype).min
    log_norm = torch.logsumexp(sorted_s.masked_fill(~keep, lowest), dim=-1)
    ce = log_norm - sorted_s[..., 0]
    values = torch.where(weight > 0, weight.to(ce.dtype) * ce, zero)
    return reduce_loss(values, reduction, mask=mask, weights=weights)


# ------------------------------------------------------------------------------------------- SimMatchV2


def _relation(embeddings: torch.Tensor, bank: torch.Tensor, temperature: float) -> torch.Tensor:
    """Log-softmax over the bank of the similarities ``⟨e_i, b_j⟩ / t`` (the edges of a node)."""
    return torch.log_softmax(embeddings @ bank.T / temperature, dim=-1)


def _check_bank(embeddings: torch.Tensor, bank: torch.Tensor, name: str = "bank_embeddings") -> None:
    if not (isinstance(bank, torch.Tensor) and bank.is_floating_point()) or bank.dim() != 2:
        raise InputError(f"{name} must be a floating-point [m, dim] tensor")
    if bank.shape[1] != embeddings.shape[-1]:
        raise InputError(f"{name} must have width {embeddings.shape[-1]}, got {list(bank.shape)}")


SIMMATCH_TEMPERATURE = Option("temperature", float, Interval(0, None, closed="neither"), doc="similarity temperature t")
EMBEDDINGS_BANK = (
    Input("strong_embeddings", "embeddings", "[batch, dim]"),
    Input("weak_embeddings", "embeddings", "[batch, dim]"),
    Input("bank_embeddings", "embeddings", "[m, dim]"),
)


@register(
    "simmatchv2_edge_edge_loss",
    inputs=EMBEDDINGS_BANK,
    family=_FAMILY,
    aliases=("simmatchv2_ee", "edge_edge_consistency"),
    options=(SIMMATCH_TEMPERATURE,),
)
def simmatchv2_edge_edge_loss(
    strong_embeddings: torch.Tensor,
    weak_embeddings: torch.Tensor,
    bank_embeddings: torch.Tensor,
    *,
    temperature: float = 0.1,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""SimMatchV2 edge–edge consistency: the strong view's edges to a memory bank match the weak view's.

    With ℓ2-normalised embeddings and the unlabelled memory bank :math:`B` (``[m, dim]``):

    .. math::
        r^{w} = \operatorname{softmax}\big(\operatorname{sg}(e^{w}) B^\top / t\big), \quad
        r^{s} = \operatorname{softmax}\big(e^{s} B^\top / t\big), \qquad
        \ell = -\sum_j r^{w}_j \log r^{s}_j .

    Zheng, You, Huang, Luo, Wang, Qian & Xu (2023), "SimMatchV2: Semi-Supervised Learning with Graph
    Consistency" (ICCV); the authors' ``loss_ee`` (mingkai-zheng/SimMatchV2), ``t = 0.1``. The embeddings are
    used as given (normalise them as the authors' projection head does); the bank is a constant.

    Args:
        strong_embeddings, weak_embeddings: ``[batch, dim]``; bank_embeddings: ``[m, dim]``.
    Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    check_distributions(("strong_embeddings", "weak_embeddings"), strong_embeddings, weak_embeddings, mask, weights)
    _check_bank(strong_embeddings, bank_embeddings)
    bank = bank_embeddings.detach()
    target = _relation(weak_embeddings.detach(), bank, temperature).exp()
    values = -(target * _relation(strong_embeddings, bank, temperature)).sum(-1)
    return reduce_loss(values, reduction, mask=mask, weights=weights)


@register(
    "simmatchv2_node_edge_loss",
    inputs=(
        Input("strong_embeddings", "embeddings", "[batch, dim]"),
        Input("weak_probs", "probs", "[batch, classes]"),
        Input("bank_embeddings", "embeddings", "[m, dim]"),
        Input("bank_probs", "probs", "[m, classes]"),
    ),
    family=_FAMILY,
    aliases=("simmatchv2_ne", "node_edge_consistency"),
    options=(SIMMATCH_TEMPERATURE,),
)
def simmatchv2_node_edge_loss(
    strong_embeddings: torch.Tensor,
    weak_probs: torch.Tensor,
    bank_embeddings: torch.Tensor,
    bank_probs: torch.Tensor,
    *,
    temperature: float = 0.1,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""SimMatchV2 node–edge consistency: class scores aggregated along the strong view's edges match the weak node.

    The strong view's edges to the bank, :math:`r^{s} = \operatorname{softmax}(e^{s}B^\top/t)`, carry the bank's
    stored predictions :math:`Q` (``[m, classes]``) to the node; that message is trained towards the weak view's
    class distribution :math:`p^{w}` (a constant):

    .. math::
        \ell = -\sum_c p^{w}_c \log \big(r^{s} Q\big)_c .

    Zheng et al. (2023), "SimMatchV2: Semi-Supervised Learning with Graph Consistency" (ICCV); the authors'
    ``loss_ne``. A message with zero mass on a class the weak view supports would give ``inf``: the aggregated
    scores are floored at the smallest positive normal number (the authors skip a non-finite batch instead).

    Args:
        strong_embeddings: ``[batch, dim]``; weak_probs: ``[batch, K]``; bank_embeddings: ``[m, dim]``;
        bank_probs: ``[m, K]``.
    Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    check_distributions(
        ("strong_embeddings", "weak_probs"), strong_embeddings[..., :1], weak_probs[..., :1], mask, weights
    )
    _check_bank(strong_embeddings, bank_embeddings)
    if bank_probs.dim() != 2 or bank_probs.shape != (bank_embeddings.shape[0], weak_probs.shape[-1]):
        raise InputError(
            f"bank_probs must be [{bank_embeddings.shape[0]}, {weak_probs.shape[-1]}] (one distribution per bank "
            f"entry), got {list(bank_probs.shape)}"
        )
    relation = _relation(strong_embeddings, bank_embeddings.detach(), temperature).exp()
    message = relation @ bank_probs.detach().to(relation.dtype)
    tiny = torch.finfo(message.dtype).tiny
    values = -(weak_probs.detach().to(message.dtype) * torch.log(message.clamp(min=tiny))).sum(-1)
    return reduce_loss(values, reduction, mask=mask, weights=weights)


@register(
    "simmatchv2_node_node_loss",
    inputs=(
        Input("strong_logits", "logits", "[batch, classes]"),
        Input("pseudo_labels", "probs", "[batch, classes]"),
        Input("weak_probs", "probs", "[batch, classes]"),
    ),
    family=_FAMILY,
    aliases=("simmatchv2_nn", "node_node_consistency"),
    options=(Option("threshold", float, Interval(0, 1), doc="confidence of the weak view a target needs"),),
)
def simmatchv2_node_node_loss(
    strong_logits: torch.Tensor,
    pseudo_labels: torch.Tensor,
    weak_probs: torch.Tensor,
    *,
    threshold: float = 0.7,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""SimMatchV2 node–node consistency: soft cross-entropy of the strong node to the propagated pseudo-label.

    .. math::
        \ell = \mathbb 1\big[\max_c p^{w}_c \ge \tau\big]\;
               \Big(-\sum_c \hat y_c \log\operatorname{softmax}(z^{s})_c\Big),

    with :math:`\hat y` the edge–node pseudo-label (:func:`simmatchv2_pseudo_labels`) and :math:`p^w` the weak
    view's prediction (both constants). Below-threshold examples count as 0 in the ``"mean"``, as the authors'
    ``loss_nn``; ``τ = 0.7`` is their default.

    Zheng et al. (2023), "SimMatchV2: Semi-Supervised Learning with Graph Consistency" (ICCV).

    Args:
        strong_logits, pseudo_labels, weak_probs: ``[batch, K]``.
    Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    check_distributions(("strong_logits", "pseudo_labels"), strong_logits, pseudo_labels, mask, weights)
    check_distributions(("strong_logits", "weak_probs"), strong_logits, weak_probs, mask, weights)
    confident = weak_probs.detach().max(-1).values >= threshold
    ce = -(pseudo_labels.detach().to(strong_logits.dtype) * torch.log_softmax(strong_logits, dim=-1)).sum(-1)
    values = torch.where(confident, ce, torch.zeros_like(ce))
    return reduce_loss(values, reduction, mask=mask, weights=weights)


def simmatchv2_pseudo_labels(
    weak_embeddings: torch.Tensor,
    weak_probs: torch.Tensor,
    labelled_embeddings: torch.Tensor,
    labelled_targets: torch.Tensor,
    *,
    top_n: int = 128,
    temperature: float = 0.1,
    alpha: float = 0.1,
) -> torch.Tensor:
    r"""SimMatchV2's edge–node message passing: pseudo-labels propagated from the nearest labelled nodes.

    For each unlabelled node (weak embedding :math:`e`, prediction :math:`p`) take its ``top_n`` most similar
    labelled bank entries, form the graph of those ``n + 1`` nodes with row-softmax affinities
    :math:`W = \operatorname{softmax}(E E^\top / t)` (no self-loops) and labels :math:`Y = [p; y_1; \dots; y_n]`,
    and read the node's row of the closed-form label propagation:

    .. math::
        \hat y = \Big[(1-\alpha)\,(I - \alpha W)^{-1} Y\Big]_{0} .

    Solved with one batched linear solve per node (not an inverse). Returns ``[batch, K]`` (no gradient).

    Zheng et al. (2023), "SimMatchV2: Semi-Supervised Learning with Graph Consistency" (ICCV); Zhou et al. (2004),
    "Learning with Local and Global Consistency" for the closed form. Defaults (``top_n = 128``, ``t = 0.1``,
    ``α = 0.1``) from the authors' code.

    Args:
        weak_embeddings: ``[batch, dim]``; weak_probs: ``[batch, K]``; labelled_embeddings: ``[L, dim]``;
        labelled_targets: ``[L, K]`` (one-hot or soft).
    """
    if not (isinstance(top_n, int) and top_n >= 1):
        raise InputError(f"top_n must be an integer >= 1, got {top_n!r}")
    for name, value in (("temperature", temperature), ("alpha", alpha)):
        if not (isinstance(value, (int, float)) and value > 0 and value == value):
            raise InputError(f"{name} must be a positive number, got {value!r}")
    if alpha >= 1:
        raise InputError(f"alpha must be in (0, 1), got {alpha!r}")
    _check_bank(weak_embeddings, labelled_embeddings, "labelled_embeddings")
    if labelled_targets.shape != (labelled_embeddings.shape[0], weak_probs.shape[-1]):
        raise InputError(
            f"labelled_targets must be [{labelled_embeddings.shape[0]}, {weak_probs.shape[-1]}], "
            f"got {list(labelled_targets.shape)}"
        )
    if weak_probs.shape[:-1] != weak_embeddings.shape[:-1]:
        raise InputError("weak_probs and weak_embeddings must have one row per example")
    with torch.no_grad():
        e = weak_embeddings.detach()
        k = min(top_n, labelled_embeddings.shape[0])
        idx = torch.topk(e @ labelled_embeddings.T, k=k, dim=-1).indices  # [b, k]
        nodes = torch.cat([e.unsqueeze(1), labelled_embeddings[idx]], dim=1)  # [b, k+1, d]
        labels = torch.cat([weak_probs.unsqueeze(1), labelled_targets[idx].to(weak_probs.dtype)], dim=1)
        eye = torch.eye(k + 1, dtype=nodes.dtype, device=nodes.device)
        affinity = (nodes @ nodes.transpose(-2, -1) / temperature).masked_fill(eye.bool(), float("-inf"))
        w = torch.softmax(affinity, dim=-1)
        # row 0 of (I - αW)^{-1} Y: solve (I - αW)^T x = e_0, then x^T Y
        rhs = eye[:, :1].expand(nodes.shape[0], -1, -1)
        x = torch.linalg.solve((eye - alpha * w).transpose(-2, -1), rhs)  # [b, k+1, 1]
        return (1.0 - alpha) * (x.transpose(-2, -1) @ labels).squeeze(-2)


# ------------------------------------------------------------------------------------ relation consistency


RELATION_OPTIONS = (
    TEMPERATURE,
    NORMALIZE,
    Option("include_diagonal", bool, doc="keep each row's similarity to itself in its softmax (as the paper)"),
)


@register(
    "relation_consistency_loss",
    inputs=(
        Input("embeddings", "embeddings", "[n, dim]"),
        Input("reference_embeddings", "embeddings", "[n, teacher_dim]"),
    ),
    family=_FAMILY,
    aliases=("relation_consistency", "cross_domain_correspondence"),
    options=RELATION_OPTIONS,
    batch_coupled=True,
)
def relation_consistency_loss(
    embeddings: torch.Tensor,
    reference_embeddings: torch.Tensor,
    *,
    temperature: float = 1.0,
    normalize: bool = False,
    include_diagonal: bool = True,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Relation consistency: keep each example's similarity distribution over the batch.

    With the reference (source model or view) features :math:`R` ``[n, d_ref]`` and the adapted model's
    :math:`E` ``[n, dim]`` of the same ``n`` inputs, the inter-sample relation matrices are the raw dot products
    :math:`M^{src} = RR^\top`, :math:`M^{trg} = EE^\top` (``[n, n]``, diagonal included), and for each row ``i``

    .. math::
        p_i = \operatorname{softmax}_j\big(M^{src}_{ij}/\tau\big), \qquad
        q_i = \operatorname{softmax}_j\big(M^{trg}_{ij}/\tau\big), \qquad
        \ell_i = \mathrm{KL}(p_i \,\|\, q_i) = \sum_j p_{ij} \log\frac{p_{ij}}{q_{ij}},

    with :math:`\tau = 1` by default; ``"mean"`` averages :math:`\ell_i` over the rows. The pairwise similarity
    *structure* of the batch is preserved while each point may move (the two inputs may have different widths). The
    reference side is used as given (detach it for a frozen source).

    Jeon, Liu, Lee, Hong, Fu & Byun (2023), "Improving Diversity in Zero-Shot GAN Adaptation with Semantic
    Variations" (ICCV), eq. (5): :math:`\mathcal L_{rel} = \mathrm{KL}(\operatorname{Softmax}(M_{src}),
    \operatorname{Softmax}(M_{trg}))` with dot-product similarities of the CLIP image features of the source and
    adapted generators' samples, a row-wise softmax and no temperature (their §4.1 uses it with weight
    :math:`\lambda_{rel} = 10^2` and batches of ``N = 4``). Readings taken where the paper is not explicit: the KL
    is in its mathematical argument order, :math:`\mathrm{KL}(p\|q)` with the source relation as the target
    distribution (not ``torch.nn.functional.kl_div``'s reversed order), summed over each row and averaged over
    rows (``kl_div``'s ``"batchmean"``); the paper names no reduction. Options beyond the paper, off by default:
    ``normalize=True`` uses cosine similarities, ``include_diagonal=False`` drops each row's self-similarity from
    its softmax, and ``temperature`` divides the similarities — all three together give the cross-domain
    correspondence loss of Ojha et al. (2021), "Few-shot Image Generation via Cross-domain Correspondence" (CVPR)
    (pairkit's default before this fix). Their directional moment loss is
    :func:`~pairkit.losses.directional_moment_loss`.

    Args:
        embeddings: ``[n, dim]`` adapted model; reference_embeddings: ``[n, d_ref]`` source model.
    Returns ``[n]`` with ``reduction="none"``, else a scalar.
    """
    from pairkit.losses._embeddings import check_features, feature_rows, scatter_rows, unit_rows

    n = check_features(("embeddings", "reference_embeddings"), embeddings, reference_embeddings, mask=mask,
                        weights=weights)  # fmt: skip
    e, r = feature_rows(mask, embeddings, reference_embeddings)
    dtype = torch.float32 if e.dtype in (torch.float16, torch.bfloat16) else e.dtype
    m = e.shape[0]
    off = None if include_diagonal else torch.eye(m, dtype=torch.bool, device=e.device)

    def log_relation(x: torch.Tensor) -> torch.Tensor:
        x = x.to(dtype)
        x = unit_rows(x) if normalize else x
        sims = x @ x.T / temperature
        if off is None:
            return torch.log_softmax(sims, dim=-1)
        return torch.log_softmax(sims.masked_fill(off, float("-inf")), dim=-1).masked_fill(off, 0.0)

    log_p, log_q = log_relation(r), log_relation(e)
    p = log_p.exp() if off is None else log_p.exp().masked_fill(off, 0.0)
    values = (p * (log_p - log_q)).sum(-1)
    if off is not None and m < 2:  # no other row to relate to
        values = values * 0.0
    return reduce_loss(scatter_rows(values.to(e.dtype), mask, n), reduction, mask=mask, weights=weights)
