"""Listwise preference losses over K responses per prompt, on DPO's implicit rewards.

Inputs are ``[batch, list]``: the policy's and the reference's sequence log-probabilities of each of the K
responses, graded ``labels`` (higher = better; ties allowed) and an optional bool validity ``mask`` of the same
shape for ragged lists. A list's score for response :math:`i` is the implicit reward
:math:`s_i = \\beta(\\log\\pi(y_i) - \\log\\pi_{ref}(y_i))`. Every loss returns one value per list; lists with no
valid response give 0 and are left out of the ``"mean"``. With K = 2 the pair-logistic LiPO and the
Plackett–Luce loss both equal DPO.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pairkit.errors import InputError
from pairkit.losses._core import LIST_REF, Reduction, check_broadcastable, check_same_shape, reduce_loss, register

__all__ = [
    "dpo_plackett_luce_loss",
    "lipo_lambda_weights",
    "lipo_loss",
    "lipo_softmax_loss",
    "plackett_luce_nll",
]

_FAMILY = "preference"
# 2**label - 1 gains overflow (and lose all resolution) far below this; graded labels are small numbers.
_MAX_GAIN_LABEL = 60.0


def _list_inputs(
    scores: torch.Tensor, labels, mask, weights, *, names=("scores", "labels")
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a ``[batch, list]`` score tensor with its labels and mask; return (labels, valid mask)."""
    if not (isinstance(scores, torch.Tensor) and scores.is_floating_point()):
        raise InputError(f"{names[0]} must be a floating-point torch tensor")
    if scores.dim() != 2:
        raise InputError(f"{names[0]} must be [batch, list], got shape {list(scores.shape)}")
    labels = torch.as_tensor(labels, device=scores.device)
    if tuple(labels.shape) != tuple(scores.shape):
        raise InputError(f"{names[1]} must have the shape {list(scores.shape)} of {names[0]}, got {list(labels.shape)}")
    labels = labels.to(scores.dtype)
    if mask is None:
        valid = torch.ones(scores.shape, dtype=torch.bool, device=scores.device)
    else:
        valid = torch.as_tensor(mask, device=scores.device)
        if tuple(valid.shape) != tuple(scores.shape) or valid.dtype != torch.bool:
            raise InputError(
                f"mask must be a bool tensor of shape {list(scores.shape)}, got {valid.dtype} {list(valid.shape)}"
            )
    if bool(torch.isnan(labels[valid]).any()):
        raise InputError(f"{names[1]} contain NaN at valid positions; mask those responses out instead")
    check_broadcastable("weights", weights, scores.shape[:1])
    return labels, valid


def _implicit_rewards(policy_logps, ref_logps, beta: float) -> torch.Tensor:
    check_same_shape(policy_logps=policy_logps, ref_logps=ref_logps)
    return beta * (policy_logps - ref_logps)


def plackett_luce_nll(scores: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of the ranking given by ``labels`` under a Plackett–Luce model with ``scores``.

    .. math::

        -\\log P(\\tau\\mid s) = -\\sum_{k=1}^{K} \\Big(s_{\\tau(k)} - \\log\\sum_{j\\ge k} e^{s_{\\tau(j)}}\\Big)

    where :math:`\\tau` orders the valid items by decreasing label (ties keep their input order). Plackett (1975),
    "The Analysis of Permutations"; Luce (1959), "Individual Choice Behavior".

    Args: ``scores``, ``labels`` ``[batch, list]``; ``valid`` bool ``[batch, list]``. Returns ``[batch]``.
    """
    low = torch.finfo(scores.dtype).min
    key = torch.where(valid, labels, torch.full_like(labels, float("-inf")))
    order = torch.sort(key, dim=-1, descending=True, stable=True).indices
    s = scores.gather(-1, order)
    ok = valid.gather(-1, order)
    # A finite floor (not -inf) keeps logcumsumexp's backward free of inf - inf at invalid positions.
    s_safe = torch.where(ok, s, torch.full_like(s, low))
    tail = torch.logcumsumexp(s_safe.flip(-1), dim=-1).flip(-1)
    terms = torch.where(ok, s_safe - tail, torch.zeros_like(s))
    return -terms.sum(-1)


@register("dpo_plackett_luce", inputs=LIST_REF, family=_FAMILY, aliases=("dpo_pl", "lipo_list_mle"))
def dpo_plackett_luce_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    labels: torch.Tensor,
    *,
    beta: float = 0.1,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """DPO for rankings: Plackett–Luce likelihood of the ranking on the implicit rewards.

    .. math::

        \\ell = -\\sum_{k=1}^{K} \\log\\frac{\\exp(s_{\\tau(k)})}{\\sum_{j\\ge k}\\exp(s_{\\tau(j)})},
        \\qquad s_i = \\beta\\log\\frac{\\pi(y_i)}{\\pi_{ref}(y_i)}

    Rafailov et al. (2023), "Direct Preference Optimization: Your Language Model is Secretly a Reward Model"
    (Plackett–Luce extension, their appendix A.3); the "list MLE" objective of Liu et al. (2024), "LiPO: Listwise
    Preference Optimization through Learning-to-Rank". :math:`\\tau` sorts by decreasing ``labels``.

    Args: ``policy_logps``, ``ref_logps``, ``labels``, ``mask`` ``[batch, list]``. Returns ``[batch]`` or a scalar.
    """
    s = _implicit_rewards(policy_logps, ref_logps, beta)
    labels, valid = _list_inputs(s, labels, mask, weights, names=("policy_logps", "labels"))
    return reduce_loss(plackett_luce_nll(s, labels, valid), reduction, mask=valid.any(-1), weights=weights)


def lipo_lambda_weights(scores: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """LambdaRank pair weights of LiPO-λ (constants: no gradient flows through them).

    .. math::

        \\Delta_{ij} = |G_i - G_j|\\,\\Big|\\frac{1}{D(\\tau_i)} - \\frac{1}{D(\\tau_j)}\\Big|,
        \\qquad G_i = 2^{\\psi_i} - 1, \\quad D(\\tau) = \\log_2(1 + \\tau)

    with :math:`\\tau_i` the 1-based rank of response :math:`i` by the current scores (ties by position).
    Liu et al. (2024), "LiPO: Listwise Preference Optimization through Learning-to-Rank"; Burges (2010),
    "From RankNet to LambdaRank to LambdaMART: An Overview".

    Args: ``scores``, ``labels`` ``[batch, list]``; ``valid`` bool. Returns ``[batch, list, list]``.
    """
    with torch.no_grad():
        top = labels[valid].abs().max() if bool(valid.any()) else labels.new_zeros(())
        if float(top) > _MAX_GAIN_LABEL:
            raise InputError(
                f"labels reach {float(top):g}; LiPO-λ gains are 2**label - 1, so labels must be graded relevance "
                f"levels (|label| <= {_MAX_GAIN_LABEL:g}); rescale them or use lambda_weights=False"
            )
        s = scores.detach().float()
        k = s.shape[-1]
        idx = torch.arange(k, device=s.device)
        # rank_i = 1 + #{valid j ahead of i}; "ahead" = higher score, or equal score at an earlier position.
        ahead = (s[..., None, :] > s[..., :, None]) | (
            (s[..., None, :] == s[..., :, None]) & (idx[None, :] < idx[:, None])
        )
        ahead = ahead & valid[..., None, :]
        rank = 1 + ahead.sum(-1).float()
        inv_discount = 1.0 / torch.log2(1.0 + rank)
        gain = torch.exp2(labels.float()) - 1.0
        w = (gain[..., :, None] - gain[..., None, :]).abs() * (
            inv_discount[..., :, None] - inv_discount[..., None, :]
        ).abs()
    return w.to(scores.dtype)


@register("lipo", inputs=LIST_REF, family=_FAMILY, aliases=("lipo_lambda",))
def lipo_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    labels: torch.Tensor,
    *,
    beta: float = 0.1,
    lambda_weights: bool = True,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """LiPO-λ: lambda-weighted pairwise logistic loss over all ordered pairs of a list, on implicit rewards.

    .. math::

        \\ell = -\\sum_{i, j:\\ \\psi_i > \\psi_j} \\Delta_{ij}\\,\\log\\sigma(s_i - s_j),
        \\qquad s_i = \\beta\\log\\frac{\\pi(y_i)}{\\pi_{ref}(y_i)}

    Liu et al. (2024), "LiPO: Listwise Preference Optimization through Learning-to-Rank". :math:`\\Delta_{ij}` are
    :func:`lipo_lambda_weights`; ``lambda_weights=False`` sets them to 1 (the paper's "pair-logistic" objective,
    equal to DPO when K = 2). Pairs with equal labels and invalid responses contribute nothing.

    Args: ``policy_logps``, ``ref_logps``, ``labels``, ``mask`` ``[batch, list]``; ``weights`` ``[batch]``.
    """
    s = _implicit_rewards(policy_logps, ref_logps, beta)
    labels, valid = _list_inputs(s, labels, mask, weights, names=("policy_logps", "labels"))
    pair_ok = (labels[..., :, None] > labels[..., None, :]) & valid[..., :, None] & valid[..., None, :]
    pair_loss = -F.logsigmoid(s[..., :, None] - s[..., None, :])
    if lambda_weights:
        pair_loss = pair_loss * lipo_lambda_weights(s, labels, valid)
    values = torch.where(pair_ok, pair_loss, torch.zeros_like(pair_loss)).sum((-2, -1))
    return reduce_loss(values, reduction, mask=valid.any(-1), weights=weights)


@register("lipo_softmax", inputs=LIST_REF, family=_FAMILY, aliases=("listnet_dpo",))
def lipo_softmax_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    labels: torch.Tensor,
    *,
    beta: float = 0.1,
    label_temperature: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """ListNet / softmax cross-entropy between the label distribution and the implicit-reward softmax of a list.

    .. math::

        \\ell = -\\sum_i \\operatorname{softmax}(\\psi/T)_i \\,\\log\\operatorname{softmax}(s)_i,
        \\qquad s_i = \\beta\\log\\frac{\\pi(y_i)}{\\pi_{ref}(y_i)}

    Cao et al. (2007), "Learning to Rank: From Pairwise Approach to Listwise Approach" (ListNet top-1), applied to
    implicit rewards as in Liu et al. (2024), "LiPO: Listwise Preference Optimization through Learning-to-Rank".
    Both softmaxes run over the valid responses only.

    Args: ``policy_logps``, ``ref_logps``, ``labels``, ``mask`` ``[batch, list]``; ``weights`` ``[batch]``.
    """
    if label_temperature <= 0:
        raise InputError(f"label_temperature must be > 0, got {label_temperature!r}")
    s = _implicit_rewards(policy_logps, ref_logps, beta)
    labels, valid = _list_inputs(s, labels, mask, weights, names=("policy_logps", "labels"))
    low = torch.finfo(s.dtype).min
    target = torch.softmax(torch.where(valid, labels / label_temperature, torch.full_like(labels, low)), dim=-1)
    logq = torch.log_softmax(torch.where(valid, s, torch.full_like(s, low)), dim=-1)
    values = -torch.where(valid, target * logq, torch.zeros_like(s)).sum(-1)
    return reduce_loss(values, reduction, mask=valid.any(-1), weights=weights)
