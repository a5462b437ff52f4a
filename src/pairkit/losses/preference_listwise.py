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

from pairkit._spec import Interval, Option
from pairkit.errors import InputError
from pairkit.losses._checks import check_list_inputs
from pairkit.losses._core import LIST_REF, Reduction, reduce_loss, register
from pairkit.losses._pairs import BETA
from pairkit.losses.ranking import listmle_loss, listnet_loss
from pairkit.losses.scores import implicit_rewards

__all__ = [
    "dpo_plackett_luce_loss",
    "nca_loss",
    "lipo_lambda_weights",
    "lipo_loss",
    "lipo_softmax_loss",
]

_FAMILY = "preference"
# 2**label - 1 gains overflow (and lose all resolution) far below this; graded labels are small numbers.
_MAX_GAIN_LABEL = 60.0


def _scores(policy_logps, ref_logps, labels, mask, weights, beta):
    """The implicit rewards of a ``[batch, list]`` of responses, with checked labels and validity mask."""
    s = implicit_rewards(policy_logps, ref_logps, beta=beta)
    labels, valid = check_list_inputs(s, labels, mask, weights, names=("policy_logps", "labels"))
    return s, labels, valid


@register("dpo_plackett_luce", inputs=LIST_REF, family=_FAMILY, aliases=("dpo_pl", "lipo_list_mle"), options=(BETA,))
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
    s, labels, valid = _scores(policy_logps, ref_logps, labels, mask, weights, beta)
    return listmle_loss(s, labels, mask=valid, weights=weights, reduction=reduction)


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


@register(
    "lipo",
    inputs=LIST_REF,
    family=_FAMILY,
    aliases=("lipo_lambda",),
    options=(BETA, Option("lambda_weights", bool, doc="LambdaRank pair weights (False: pair-logistic)")),
)
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
    s, labels, valid = _scores(policy_logps, ref_logps, labels, mask, weights, beta)
    return lambda_pair_logistic(s, labels, valid, lambda_weights, weights, reduction)


def lambda_pair_logistic(s, labels, valid, lambda_weights: bool, weights, reduction: Reduction) -> torch.Tensor:
    """The (lambda-weighted) logistic loss summed over the ordered pairs of each list with ``labels`` i > j.

    Shared by LiPO-λ and RankDPO; ``s``, ``labels``, ``valid`` ``[batch, list]``. Returns one value per list.
    """
    pair_ok = (labels[..., :, None] > labels[..., None, :]) & valid[..., :, None] & valid[..., None, :]
    pair_loss = -F.logsigmoid(s[..., :, None] - s[..., None, :])
    if lambda_weights:
        pair_loss = pair_loss * lipo_lambda_weights(s, labels, valid)
    values = torch.where(pair_ok, pair_loss, torch.zeros_like(pair_loss)).sum((-2, -1))
    return reduce_loss(values, reduction, mask=valid.any(-1), weights=weights)


@register(
    "lipo_softmax",
    inputs=LIST_REF,
    family=_FAMILY,
    aliases=("listnet_dpo", "infonca", "info_nca"),
    options=(BETA, Option("label_temperature", float, Interval(0, None, closed="neither"), doc="label softmax T")),
)
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

    With explicit rewards as ``labels`` and ``label_temperature`` = α this is InfoNCA for K responses
    (Chen, Guo, Su & Zhu (2024), "Noise Contrastive Alignment of Language Models with Explicit Rewards", eq. (7):
    the reward softmax :math:`e^{r_i/\\alpha}/\\sum_j e^{r_j/\\alpha}` as target of the implicit-reward softmax);
    hence the aliases ``infonca``/``info_nca``. Its K-response NCA sibling is :func:`nca_loss`.

    Args: ``policy_logps``, ``ref_logps``, ``labels``, ``mask`` ``[batch, list]``; ``weights`` ``[batch]``.
    """
    s, labels, valid = _scores(policy_logps, ref_logps, labels, mask, weights, beta)
    return listnet_loss(s, labels / label_temperature, mask=valid, weights=weights, reduction=reduction)


@register(
    "nca",
    inputs=LIST_REF,
    family=_FAMILY,
    aliases=("nca_k", "nca_listwise"),
    options=(BETA, Option("label_temperature", float, Interval(0, None, closed="neither"), doc="reward softmax α")),
)
def nca_loss(
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
    r"""NCA for K responses: each response's own implicit reward is pushed up by its reward weight, down by 1/K.

    .. math::

        \ell = -\sum_{i=1}^{K}\Big[\frac{e^{r_i/\alpha}}{\sum_j e^{r_j/\alpha}}\log\sigma(s_i)
                + \frac1K\log\sigma(-s_i)\Big],
        \qquad s_i = \beta\log\frac{\pi(y_i)}{\pi_{ref}(y_i)}

    with the explicit rewards :math:`r` given as ``labels`` and α = ``label_temperature``; K counts the valid
    responses of each list. Unlike InfoNCA (:func:`lipo_softmax_loss`) it scores each response on its own
    (absolute likelihood), so the chosen responses' likelihood does not fall. With K = 2 and a hard preference
    (α → 0) it is :func:`~pairkit.losses.nca_pair_loss` (TRL ``loss_type="nca_pair"``).

    Chen, Guo, Su & Zhu (2024), "Noise Contrastive Alignment of Language Models with Explicit Rewards", eq. (8).

    Args: ``policy_logps``, ``ref_logps``, ``labels`` (rewards), ``mask`` ``[batch, list]``; ``weights``
    ``[batch]``. Returns ``[batch]`` or a scalar.
    """
    s, labels, valid = _scores(policy_logps, ref_logps, labels, mask, weights, beta)
    lowest = torch.finfo(labels.dtype).min
    target = torch.softmax((labels / label_temperature).masked_fill(~valid, lowest), dim=-1)
    target = torch.where(valid, target, torch.zeros_like(target))
    k = valid.sum(-1, keepdim=True).clamp(min=1).to(s.dtype)
    per_item = target * F.logsigmoid(s) + F.logsigmoid(-s) / k
    values = -torch.where(valid, per_item, torch.zeros_like(per_item)).sum(-1)
    return reduce_loss(values, reduction, mask=valid.any(-1), weights=weights)
