"""Pairwise preference losses with an extra signal beside the pair: absolute likelihoods (ASFT), a self-supervised
preference-degree classifier (SPO) and a rationale's likelihood (rationale-augmented DPO).

Inputs are sequence log-probabilities ``[batch]`` of the chosen and rejected responses (summed, with lengths where
the loss length-normalises; or already averaged per token).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pairkit.errors import InputError
from pairkit.losses._core import (
    CHOSEN_LENGTHS,
    CHOSEN_NLL,
    PAIR,
    PAIR_REF,
    REJECTED_LENGTHS,
    Reduction,
    check_broadcastable,
    keyword,
    register,
    weight_option,
)
from pairkit.losses._pairs import BETA, FAMILY, both_lengths, check, named, nll, reduce, reduce_plus
from pairkit.losses.scores import length_normalized

__all__ = ["asft_loss", "rationale_dpo_loss", "spo_loss"]


def _dpo_logits(pc, pr, rc, rr) -> torch.Tensor:
    return (pc - rc) - (pr - rr)


@register(
    "asft",
    inputs=(*PAIR, CHOSEN_LENGTHS, REJECTED_LENGTHS, CHOSEN_NLL),
    family=FAMILY,
    aliases=("aligned_sft",),
    options=(BETA,),
)
def asft_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    *,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
    chosen_nll: torch.Tensor | None = None,
    beta: float = 0.1,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """ASFT: SFT plus a logistic loss on each response's *absolute* log-odds, without a reference model.

    .. math::

        \\ell = \\mathrm{NLL}(y_c) - \\lambda\\Big[\\log\\sigma\\big(\\log O(y_c)\\big)
                + \\log\\sigma\\big(-\\log O(y_r)\\big)\\Big]
              = \\mathrm{NLL}(y_c) - \\lambda\\big[\\log P(y_c) + \\log(1 - P(y_r))\\big],
        \\qquad O(y) = \\frac{P(y)}{1 - P(y)},\\; \\log P(y) = \\tfrac{1}{|y|}\\log\\pi_\\theta(y\\mid x)

    Wang et al. (2024), "ASFT: Aligned Supervised Fine-Tuning through Absolute Likelihood". Unlike ORPO's (and
    DPO's) Bradley–Terry term on the *difference* of the two responses, each response is pushed on its own: the
    chosen one's likelihood up, the rejected one's down. λ = ``beta`` (as ORPO's, TRL's naming). Reading taken:
    :math:`P` is the length-normalised likelihood as in ORPO (with lengths; without them the inputs are taken as
    averaged log-probabilities); ``chosen_nll`` defaults to :math:`-\\log P(y_c)`.

    Args: ``[batch]`` chosen/rejected log-probabilities (summed with lengths, or averaged); ``chosen_nll``
    ``[batch]`` or 0-d. Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    check(mask, weights, policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps)
    both_lengths(chosen_lengths, rejected_lengths)
    lc = length_normalized(policy_chosen_logps, chosen_lengths, name="chosen_lengths")
    lr = length_normalized(policy_rejected_logps, rejected_lengths, name="rejected_lengths")
    wide = lc.dtype if lc.dtype in (torch.float32, torch.float64) else torch.float32
    lr = lr.to(wide).clamp(max=-torch.finfo(wide).tiny)  # log(1 − P) is finite for P < 1
    align = -(lc.to(wide) + torch.log(-torch.expm1(lr)))  # −log σ(log O_c) − log σ(−log O_r)
    values = (beta * align).to(lc.dtype)
    return reduce_plus(values, nll(lc, chosen_nll, None), reduction, mask, weights)


@register(
    "spo",
    inputs=(
        *PAIR_REF,
        keyword("degree_logits", "logits", "[batch, classes]", doc="preference-degree classifier logits"),
        keyword("degree_labels", "classes", "[batch]", doc="how much key content was removed (class index)"),
    ),
    family=FAMILY,
    aliases=("self_supervised_po",),
    options=(BETA, weight_option("ssl_weight", "weight λ of the self-supervised preference-degree term")),
)
def spo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    degree_logits: torch.Tensor | None = None,
    degree_labels: torch.Tensor | None = None,
    beta: float = 0.1,
    ssl_weight: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """SPO: DPO plus a self-supervised preference-degree classification loss.

    .. math::

        \\ell = -\\log\\sigma\\Big(\\beta\\Big[\\log\\tfrac{\\pi_\\theta(y_c)}{\\pi_{ref}(y_c)}
                 - \\log\\tfrac{\\pi_\\theta(y_r)}{\\pi_{ref}(y_r)}\\Big]\\Big)
                 - \\lambda \\log \\operatorname{softmax}(z)_{k}

    Li et al. (2024), "Self-supervised Preference Optimization: Enhance Your Language Model with Preference Degree
    Awareness" (EMNLP Findings). Key content is removed from a response to several degrees; a classifier head
    on the model's representation of the degraded response (logits :math:`z`, ``degree_logits``) must recognise
    how much was removed (class :math:`k`, ``degree_labels``; chosen- and rejected-derived samples as separate
    classes). Reading taken: one self-supervised sample per pair, aligned with the pairs' rows, and DPO as the
    alignment loss. Without the degree inputs this is DPO (the trainers train the alignment part; the
    classifier head and the degraded responses are the caller's, as SparsePO's mask head).

    Args: four ``[batch]`` log-probabilities; ``degree_logits`` ``[batch, classes]``; ``degree_labels``
    ``[batch]`` int. Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    check(mask, weights, **named(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps))
    values = -F.logsigmoid(
        beta * _dpo_logits(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    )
    if (degree_logits is None) != (degree_labels is None):
        raise InputError("give both degree_logits and degree_labels, or neither")
    if degree_logits is not None:
        n = policy_chosen_logps.shape[0]
        if not (isinstance(degree_logits, torch.Tensor) and degree_logits.is_floating_point()):
            raise InputError("degree_logits must be a floating-point torch tensor [batch, classes]")
        if degree_logits.dim() != 2 or degree_logits.shape[0] != n:
            raise InputError(f"degree_logits must be [batch={n}, classes], got {list(degree_logits.shape)}")
        labels = torch.as_tensor(degree_labels, device=degree_logits.device)
        if labels.shape != (n,) or labels.is_floating_point() or labels.dtype == torch.bool:
            raise InputError(f"degree_labels must be integer class indices [batch={n}], got {labels.dtype} "
                             f"{list(labels.shape)}")  # fmt: skip
        if n and (int(labels.min()) < 0 or int(labels.max()) >= degree_logits.shape[1]):
            raise InputError(f"degree_labels must lie in [0, {degree_logits.shape[1] - 1}]")
        ce = F.cross_entropy(degree_logits, labels.long(), reduction="none")
        values = values + ssl_weight * ce.to(values.dtype)
    return reduce(values, reduction, mask, weights)


@register(
    "rationale_dpo",
    inputs=(
        *PAIR_REF,
        keyword("rationale_logps", "logps", required=True, doc="log π(rationale | prompt, chosen, rejected)"),
        keyword("rationale_lengths", "lengths"),
    ),
    family=FAMILY,
    aliases=("rdpo", "dpo_rationale"),
    options=(BETA, weight_option("gamma", "weight γ of the rationale's log-likelihood")),
)
def rationale_dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    rationale_logps: torch.Tensor,
    rationale_lengths: torch.Tensor | None = None,
    beta: float = 0.1,
    gamma: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Rationale-augmented DPO: DPO plus the likelihood of a rationale explaining the preference.

    .. math::

        \\ell = -\\log\\sigma\\Big(\\beta\\log\\tfrac{\\pi_\\theta(y_w\\mid x)}{\\pi_{ref}(y_w\\mid x)}
                 - \\beta\\log\\tfrac{\\pi_\\theta(y_l\\mid x)}{\\pi_{ref}(y_l\\mid x)}\\Big)
                 - \\gamma\\log\\pi_\\theta(r\\mid x, y_w \\succ y_l)

    Just et al. (2025), "Data-Centric Human Preference with Rationales for Direct Preference Alignment" (RDPO):
    the preference likelihood factorises as :math:`p(y_w\\succ y_l, r\\mid x) = p(y_w\\succ y_l\\mid x)\\,
    p(r\\mid x, y_w\\succ y_l)`. ``rationale_logps`` is the policy's log-likelihood of the rationale given a
    prompt showing both responses and which won (the preference trainer builds it from a ``rationale`` column);
    with ``rationale_lengths`` it is length-normalised (the paper does not).

    Args: five ``[batch]`` log-probabilities (``rationale_logps`` by keyword), optional ``rationale_lengths``.
    Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    check(mask, weights, **named(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps))
    if not (isinstance(rationale_logps, torch.Tensor) and rationale_logps.is_floating_point()):
        raise InputError("rationale_logps must be a floating-point torch tensor [batch]")
    check_broadcastable("rationale_logps", rationale_logps, policy_chosen_logps.shape)
    if rationale_logps.shape != policy_chosen_logps.shape:
        raise InputError(f"shapes must match: rationale_logps {list(rationale_logps.shape)}, "
                         f"policy_chosen_logps {list(policy_chosen_logps.shape)}")  # fmt: skip
    values = -F.logsigmoid(
        beta * _dpo_logits(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    )
    rationale = length_normalized(rationale_logps, rationale_lengths, name="rationale_lengths")
    return reduce(values - gamma * rationale, reduction, mask, weights)
