"""Regularisers over the losses, relations or moments of a batch.

Auxiliary terms added to a main objective (or, for CCS, a whole unsupervised probe objective). LoL orders the
losses of several versions of one query by how much evidence each version used; class-relation distillation keeps
a discovery model's class relations (its predicted distribution over the known classes) close to those of a model
trained on the known classes; the directional moment loss matches the mean and covariance of image-edit directions
to those of text directions; AFT's constraint alignment ranks correct chains of thought above wrong ones
while keeping the wrong ones' scores in range; CCS asks a probe to map a statement and its negation to
opposite, confident poles.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pairkit._spec import Input, Interval, Option
from pairkit.errors import InputError
from pairkit.losses._core import (
    NON_NEGATIVE,
    Reduction,
    check_broadcastable,
    check_float_tensors,
    keyword,
    reduce_loss,
    register,
)
from pairkit.losses.ranking import pairwise_ranking_loss

__all__ = ["aft_loss", "ccs_loss", "class_relation_kd_loss", "directional_moment_loss", "lol_loss"]


@register(
    "lol",
    inputs=(
        Input("losses", "scores", "[batch, list]", doc="the loss of each version of a query (column 0 first)"),
        keyword("evidence", "grades", "[batch, list]", doc="how much evidence (e.g. feedback documents) each used"),
    ),
    family="regularizer",
    aliases=("loss_over_loss", "comparative_regularization", "lol_loss"),
    options=(Option("margin", float, NON_NEGATIVE, doc="margin m required between ordered losses"),),
)
def lol_loss(
    losses: torch.Tensor,
    *,
    evidence: torch.Tensor | None = None,
    margin: float = 0.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""LoL: a version of a query that used more evidence must not have a larger loss than one that used less.

    For the ``K`` versions of one query (e.g. reformulations from ``K`` nested sets of pseudo-relevance feedback
    documents) with losses :math:`L_k` and evidence amounts :math:`n_k`:

    .. math::
        \ell = \frac{1}{|P|}\sum_{(i, j) \in P} \max\big(0,\ m + L_i - L_j\big),
        \qquad P = \{(i, j) : n_i > n_j\}

    the pairwise hinge on the "effects" :math:`-L` ordered by evidence; the losses are not detached, so every
    version is pushed. ``evidence`` defaults to ``K-1, …, 0`` (column 0 used the most). Versions with equal
    evidence form no pair; a query without a pair gives 0.

    Zhu, Pang, Lan, Shen & Cheng (2022), "LoL: A Comparative Regularization Loss over Query Reformulation Losses
    for Pseudo-Relevance Feedback" (SIGIR), as the authors' release (``zycdev/LoL``: ``pairwise_hinge`` of the
    negated per-version ranking losses with labels ``K, …, 1`` and margin 0, mean over the pairs; here the mean
    is per query, which is the same when every query has ``K`` versions). Add it to the main loss with a weight.

    Args:
        losses: ``[batch, K]`` per-version losses (the main loss with ``reduction="none"``); evidence, mask:
            ``[batch, K]``; weights: ``[batch]``.
    Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    if not (isinstance(losses, torch.Tensor) and losses.is_floating_point()) or losses.dim() != 2:
        raise InputError("losses must be a floating-point [batch, K] tensor of per-version losses")
    if evidence is None:
        k = losses.shape[-1]
        evidence = torch.arange(k - 1, -1, -1, device=losses.device).expand_as(losses)
    evidence = torch.as_tensor(evidence, device=losses.device)
    if tuple(evidence.shape) != tuple(losses.shape):
        raise InputError(f"evidence must have the shape {list(losses.shape)} of losses, got {list(evidence.shape)}")
    return pairwise_ranking_loss(
        -losses, evidence.to(losses.dtype), pair_loss=lambda d: F.relu(margin - d), mask=mask, weights=weights,
        reduction=reduction,
    )  # fmt: skip


@register(
    "class_relation_kd_loss",
    inputs=(
        Input("student_logits", "logits", "[batch, classes]", doc="the discovery model's known-class logits"),
        Input("teacher_logits", "logits", "[batch, classes]", doc="the known-class model's logits (frozen)"),
        Input("novel_logits", "logits", "[batch, novel]", doc="the discovery model's novel-class logits"),
    ),
    family="distill",
    aliases=("crkd", "rkd_ncd", "class_relation_kd"),
    options=(Option("temperature", float, Interval(0, None, closed="neither"), doc="softmax temperature T"),),
    batch_coupled=True,
)
def class_relation_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    novel_logits: torch.Tensor,
    *,
    temperature: float = 0.15,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Class-relation KD with learned weights: keep a novel-class sample's relation to the known classes.

    For a sample of the unlabelled (novel-class) data, the class relation is its predicted distribution over the
    ``C`` known classes. The teacher (trained on the known classes, frozen) gives
    :math:`p = \operatorname{softmax}(t/T)`; the discovery model's known-class head gives
    :math:`q = \operatorname{softmax}(s/T)`. Each sample's term is weighted by how much the discovery model
    itself places it among the known classes — the learned weight

    .. math::
        \eta_i = \sum_{c \le C}\operatorname{softmax}\big([s_i, u_i]/T\big)_c,\qquad
        w_i = \frac{\eta_i}{\frac1n\sum_j \eta_j},\qquad
        \ell_i = -T^2\,w_i \sum_{c \le C} p_{ic}\log q_{ic}

    with :math:`u` the novel-class logits. :math:`w` is normalised over the batch (so the loss is batch-coupled)
    and is *not* detached: the gradient also moves how known-like each sample looks.

    Gu, Zhang, Xu & He (2023), "Class-relation Knowledge Distillation for Novel Class Discovery" (ICCV), the
    ``Norm(η)`` weight function, as the authors' release (``kleinzcy/Cr-KD-NCD``, ``KD`` in
    ``model/losses.py``: cross-entropy to the teacher's relation (not KL, which differs by the teacher's entropy
    times :math:`w`), :math:`T^2` scaling, T = 0.15). Logits are taken as given: their code first divides by the
    cosine classifier's own temperature, which belongs to the caller's model. Multiple heads and views are
    averaged by the caller.

    Args:
        student_logits, teacher_logits: ``[batch, C]`` (the teacher's without gradient, as from a frozen model);
        novel_logits: ``[batch, N]``; mask, weights: ``[batch]``.
    Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    for name, x in (("student_logits", student_logits), ("teacher_logits", teacher_logits),
                    ("novel_logits", novel_logits)):  # fmt: skip
        if not (isinstance(x, torch.Tensor) and x.is_floating_point()) or x.dim() != 2:
            raise InputError(f"{name} must be a floating-point [batch, classes] tensor")
    if teacher_logits.shape != student_logits.shape:
        raise InputError(
            f"shapes must match: student_logits {list(student_logits.shape)}, teacher_logits "
            f"{list(teacher_logits.shape)}"
        )
    if novel_logits.shape[0] != student_logits.shape[0]:
        raise InputError(
            f"novel_logits must have one row per sample ({student_logits.shape[0]}), got {list(novel_logits.shape)}"
        )
    check_broadcastable("mask", mask, student_logits.shape[:1])
    check_broadcastable("weights", weights, student_logits.shape[:1])
    dtype = torch.float32 if student_logits.dtype in (torch.float16, torch.bfloat16) else student_logits.dtype
    s, u = student_logits.to(dtype) / temperature, novel_logits.to(dtype) / temperature
    p = torch.softmax(teacher_logits.to(dtype) / temperature, dim=-1)
    cross = -(p * torch.log_softmax(s, dim=-1)).sum(-1)
    both = torch.cat([s, u], dim=-1)
    eta = torch.exp(torch.logsumexp(s, dim=-1) - torch.logsumexp(both, dim=-1))  # known-class mass
    valid = torch.ones_like(eta, dtype=torch.bool) if mask is None else torch.as_tensor(mask, dtype=torch.bool,
                                                                                        device=eta.device)
    valid = valid.expand_as(eta)
    count = valid.sum()
    mean_eta = torch.where(valid, eta, torch.zeros_like(eta)).sum() / count.clamp(min=1).to(dtype)
    safe_mean = torch.where(count > 0, mean_eta, torch.ones_like(mean_eta))
    values = temperature**2 * (eta / safe_mean) * cross
    return reduce_loss(values.to(student_logits.dtype), reduction, mask=mask, weights=weights)


@register(
    "directional_moment_loss",
    inputs=(
        Input("adapted_embeddings", "embeddings", "[n, dim]", doc="image embeddings of the adapted generator"),
        Input("source_embeddings", "embeddings", "[n, dim]", doc="image embeddings of the source generator"),
        keyword("text_directions", "embeddings", "[prototypes, dim]", required=True,
                doc="text directions: the target's and its K semantic variations' (each minus the source text)"),
    ),
    keywords=("mask",),
    family="regularizer",
    aliases=("directional_moment", "moment_matching_directions"),
    options=(
        Option("normalize", bool, doc="unit-normalise every direction first (as CLIP directional losses)"),
        Option("cov_weight", float, NON_NEGATIVE, doc="λ_cov: weight of the second-moment distance"),
    ),
    batch_coupled=True,
)
def directional_moment_loss(
    adapted_embeddings: torch.Tensor,
    source_embeddings: torch.Tensor,
    *,
    text_directions: torch.Tensor,
    normalize: bool = True,
    cov_weight: float = 1000.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Directional moment loss: match the first and second moments of image and text direction distributions.

    With the image directions :math:`\Delta I_n = E_I(G_t(w_n)) - E_I(G_s(w_n))` of ``n`` latents (adapted minus
    source generator's image, in a joint image-text embedding space such as CLIP's) stacked as the rows of
    :math:`X` ``[n, dim]``, and the text directions :math:`\Delta T, \Delta T^1, \dots, \Delta T^K` (the target text
    and its ``K`` semantic variations, each minus the source text) as the rows of :math:`Y` ``[K+1, dim]``:

    .. math::
        \ell = \Big(1 - \frac{\mu_I \cdot \mu_T}{\lVert\mu_I\rVert\,\lVert\mu_T\rVert}\Big)
              + \lambda_{cov}\,\lVert \Sigma_I - \Sigma_T \rVert_F,\qquad
        \mu_I = \tfrac1n \textstyle\sum_n X_n,\; \Sigma_I = \tfrac1n X^\top X,\quad
        \mu_T = \tfrac1{K+1} \textstyle\sum_i Y_i,\; \Sigma_T = \tfrac1{K+1} Y^\top Y

    (the cosine distance of the means plus the Euclidean distance of the second moments), so the adapted
    generator's edits follow the *spread* of the text variations, not only their mean direction (a single target
    direction collapses the samples onto one mode). With :math:`k` text rows the Frobenius distance is
    :math:`\big(\lVert XX^\top\rVert_F^2/n^2 - 2\lVert XY^\top\rVert_F^2/(nk)
    + \lVert YY^\top\rVert_F^2/k^2\big)^{1/2}`, so no ``[dim, dim]`` matrix is built; its gradient at 0 is taken
    as 0.

    Jeon, Liu, Lee, Hong, Fu & Byun (2023), "Improving Diversity in Zero-Shot GAN Adaptation with Semantic
    Variations" (ICCV), eq. (3) (:math:`d_1` the cosine distance, :math:`d_2` the Euclidean distance,
    :math:`\lambda_{cov} = 10^3` as in its §4.1), checked against the paper's text (CVF open-access version), with
    :func:`~pairkit.losses.relation_consistency_loss` its content-preserving partner. Readings taken where the
    paper is not explicit: the paper writes :math:`\Sigma = X^\top X` and calls it the covariance; here it is the
    uncentred second moment divided by the set's size (the abstract's "second moments"; without the division sets of
    ``n`` and ``K+1`` rows could not match), and :math:`d_2` is the unsquared Frobenius norm. Unit-normalising the
    directions (``normalize``, as StyleGAN-NADA's directional loss that the paper's baseline follows) is this
    library's default; the paper does not say. ``text_directions`` should include the target text's own direction
    :math:`\Delta T` beside the variations'. A batch-level objective: no ``reduction``; ``mask`` leaves image rows
    out; no unmasked row gives 0.

    Args:
        adapted_embeddings, source_embeddings: ``[n, dim]`` (the same latents through both generators);
        text_directions: ``[K+1, dim]``; mask: ``[n]`` bool.
    Returns a scalar.
    """
    from pairkit.losses._embeddings import check_features, feature_rows, unit_rows

    check_features(("adapted_embeddings", "source_embeddings"), adapted_embeddings, source_embeddings, mask=mask,
                   same_dim=True)  # fmt: skip
    if not (isinstance(text_directions, torch.Tensor) and text_directions.is_floating_point()) or (
        text_directions.dim() != 2 or text_directions.shape[1] != adapted_embeddings.shape[1]
    ):
        raise InputError(
            f"text_directions must be a floating-point [K, {adapted_embeddings.shape[1]}] tensor (the image dim), "
            f"got {getattr(text_directions, 'shape', text_directions)}"
        )
    image_directions = adapted_embeddings - source_embeddings
    if text_directions.shape[0] == 0:
        raise InputError("text_directions must hold at least one direction")
    dtype = torch.float32 if image_directions.dtype in (torch.float16, torch.bfloat16) else image_directions.dtype
    (x,) = feature_rows(mask, image_directions.to(dtype))
    y = text_directions.to(dtype)
    if x.shape[0] == 0:
        return (adapted_embeddings.sum() + source_embeddings.sum()) * 0
    if normalize:
        x, y = unit_rows(x), unit_rows(y)
    n, k = x.shape[0], y.shape[0]
    mean_term = 1 - F.cosine_similarity(x.mean(0), y.mean(0), dim=0, eps=1e-12)
    squared = (x @ x.T).pow(2).sum() / n**2 - 2 * (x @ y.T).pow(2).sum() / (n * k) + (y @ y.T).pow(2).sum() / k**2
    positive = squared > 0
    distance = torch.where(positive, torch.where(positive, squared, torch.ones_like(squared)).sqrt(),
                           torch.zeros_like(squared))  # fmt: skip
    value = mean_term + cov_weight * distance
    return value.to(adapted_embeddings.dtype)


@register(
    "ccs",
    inputs=(
        Input("positive_logits", "scores", doc="the probe's logit on each statement x+"),
        Input("negative_logits", "scores", doc="the probe's logit on its negation (or reversed comparison) x-"),
    ),
    family="regularizer",
    aliases=("contrast_consistent_search", "ccr_pairwise", "pairwise_ccr"),
)
def ccs_loss(
    positive_logits: torch.Tensor,
    negative_logits: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""CCS: an unsupervised probe maps a statement and its negation to consistent, confident, opposite poles.

    With the probe's probabilities :math:`p^+ = \sigma(z^+)` on a statement and :math:`p^- = \sigma(z^-)` on its
    negation:

    .. math::
        \ell = \big(p^+ - (1 - p^-)\big)^2 + \min(p^+, p^-)^2

    (consistency plus confidence; the trivial probe :math:`p^\pm = \tfrac12` scores 1/4).

    Burns, Ye, Klein & Steinhardt (2023), "Discovering Latent Knowledge in Language Models Without Supervision"
    (ICLR). Pairwise contrast-consistent ranking (CCR) applies it to comparison statements — "Is A more … than
    B?" and its reversal — whose probe probabilities then give every ordered pair's preference: Stoehr, Cheng,
    Wang, Preoţiuc-Pietro & Bhowmik (2024), "Unsupervised Contrast-Consistent Ranking with Language Models"
    (EACL). Their pointwise and listwise probes (MarginCCR, TripletCCR, OrdRegCCR) are not included.

    Args: ``positive_logits``, ``negative_logits``, mask, weights ``[batch]``. Returns ``[batch]`` or a scalar.
    """
    check_float_tensors(mask, weights, positive_logits=positive_logits, negative_logits=negative_logits)
    p_pos, p_neg = torch.sigmoid(positive_logits), torch.sigmoid(negative_logits)
    values = (p_pos - (1 - p_neg)).pow(2) + torch.minimum(p_pos, p_neg).pow(2)
    return reduce_loss(values, reduction, mask=mask, weights=weights)


def _masked_lse(x: torch.Tensor, keep: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``log Σ exp(x)`` over ``keep`` along the last axis; 0 (zero gradient) for rows not in ``rows``."""
    filled = torch.where(keep, x, torch.full_like(x, float("-inf")))
    filled = torch.where(rows.unsqueeze(-1), filled, torch.zeros_like(x))
    return torch.where(rows, torch.logsumexp(filled, dim=-1), torch.zeros_like(x[..., 0]))


@register(
    "aft",
    inputs=(
        Input("policy_logps", "logps", "[batch, list]", doc="log-likelihood of each sampled chain of thought"),
        Input("labels", "binary", "[batch, list]", doc="whether each response reached the correct answer (> 0)"),
        keyword("lengths", "lengths", "[batch, list]", doc="tokens per response: the scores are length-normalised"),
    ),
    family="preference",
    aliases=("constraint_alignment", "aft_constraint_alignment", "alignment_fine_tuning"),
    options=(
        Option("constraint", str, choices=("boundary", "detach", "none"), doc="how negative scores are kept up"),
        Option("gamma", float, NON_NEGATIVE, doc="γ: the boundary sits γ below the lowest positive score"),
    ),
)
def aft_loss(
    policy_logps: torch.Tensor,
    labels: torch.Tensor,
    *,
    lengths: torch.Tensor | None = None,
    constraint: str = "boundary",
    gamma: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""AFT's constraint alignment loss: positive responses above negative ones, negatives kept in a range.

    For the ``K`` chains of thought sampled for one question, with scores
    :math:`s_k = \frac{1}{|c_k|}\log p_\theta(c_k \mid q)` (the length-normalised log-likelihood:
    ``policy_logps / lengths``, or ``policy_logps`` as given without ``lengths``), split into positives :math:`P`
    (``labels`` > 0: the correct answer) and negatives :math:`N`:

    .. math::
        \mathcal L_A = \log\Big(1 + \sum_{p \in P}\sum_{n \in N} e^{\,s_n - s_p}\Big),\qquad
        \mathcal L_{BC} = \mathcal L_A + \log\Big(1 + \sum_{n \in N} e^{\,B - s_n}\Big),\qquad
        B = \min_{p \in P} \operatorname{sg}(s_p) - \gamma

    ``constraint="boundary"`` (the default) is :math:`\mathcal L_{BC}`: alignment puts every positive above every
    negative, and the boundary term stops the negatives' scores from being pushed far below the positives (a
    plain ranking loss lowers them without limit and degrades the model). ``"detach"`` is the detaching
    constraint :math:`\mathcal L_{DC}`: :math:`\mathcal L_A` with :math:`\operatorname{sg}(s_n)` (negatives get no
    gradient); ``"none"`` is :math:`\mathcal L_A` alone. A question without a positive or without a negative
    gives 0. The paper adds this to the vanilla fine-tuning (NLL) loss; that is the caller's.

    Trainable with :func:`~pairkit.train.train_listwise` on rows ``{"prompt", "responses": [K chains of thought],
    "scores": [1 if correct else 0, …]}``: the trainer passes each response's summed log-probability, its length
    and the scores as ``labels``.

    Wang, Li, Chen, Song, Lin, Cao, Liu & Sui (2023), "Making Large Language Models Better Reasoners with
    Alignment" (AFT), the constraint alignment loss for binary feedback. Reading taken (the paper's equations
    were not available to check): the boundary term in the same log-sum-exp form as :math:`\mathcal L_A`, with
    :math:`B` from the lowest positive score without gradient; the ranking-feedback extension is not included.

    Args:
        policy_logps: ``[batch, K]`` per-response log-likelihoods; labels: ``[batch, K]`` (bool or > 0 for correct);
        lengths: ``[batch, K]`` positive; mask: ``[batch, K]`` (responses left out); weights: ``[batch]``.
    Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    from pairkit.losses._checks import check_list_inputs

    scores = policy_logps
    labels, valid = check_list_inputs(scores, labels, mask, weights, names=("policy_logps", "labels"))
    dtype = torch.float32 if scores.dtype in (torch.float16, torch.bfloat16) else scores.dtype
    s = scores.to(dtype)
    if lengths is not None:
        n = torch.as_tensor(lengths, device=s.device)
        if tuple(n.shape) != tuple(s.shape):
            raise InputError(f"lengths must have the shape {list(s.shape)} of policy_logps, got {list(n.shape)}")
        n = n.to(dtype)
        bad = valid & ~(n > 0)
        if bool(bad.any()):
            raise InputError(f"lengths must be positive for every response scored, got {float(n[bad][0])}")
        s = s / torch.where(valid, n, torch.ones_like(n))
    pos, neg = valid & (labels > 0), valid & ~(labels > 0)
    rows = pos.any(-1) & neg.any(-1)
    s_neg = s.detach() if constraint == "detach" else s
    values = F.softplus(_masked_lse(s_neg, neg, rows) + _masked_lse(-s, pos, rows))
    if constraint == "boundary":
        lowest = torch.where(pos, s.detach(), torch.full_like(s, float("inf"))).amin(-1)
        boundary = torch.where(rows, lowest, torch.zeros_like(lowest)) - gamma
        values = values + F.softplus(_masked_lse(boundary.unsqueeze(-1) - s, neg, rows))
    values = torch.where(rows, values, torch.zeros_like(values))
    return reduce_loss(values.to(scores.dtype), reduction, mask=rows, weights=weights)
