"""Regularisers over the losses or relations of a batch: comparative loss-over-loss (LoL) and class-relation KD.

Both are auxiliary terms added to a main objective. LoL orders the losses of several versions of one query by how
much evidence each version used; class-relation distillation keeps a discovery model's class relations (its
predicted distribution over the known classes) close to those of a model trained on the known classes, weighted by
how much each sample resembles the known classes.
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
    keyword,
    reduce_loss,
    register,
)
from pairkit.losses.ranking import pairwise_ranking_loss

__all__ = ["class_relation_kd_loss", "lol_loss"]


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
