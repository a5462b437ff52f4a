"""Reward-model losses: scalar rewards trained from pairwise or K-wise comparisons, and the General Preference
Model's skew-symmetric preference embeddings.

Pairwise inputs are the reward model's scalar outputs ``chosen_rewards`` and ``rejected_rewards`` of shape
``[batch]``; K-wise inputs are ``[batch, list]`` with labels and a validity mask (as in
:mod:`pairkit.losses.preference_listwise`); GPM inputs are ``[batch, 2k]`` preference embeddings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pairkit._spec import Input, Option
from pairkit.errors import InputError
from pairkit.losses._core import (
    NON_NEGATIVE,
    POSITIVE,
    REWARD_PAIR,
    Reduction,
    check_broadcastable,
    keyword,
    reduce_loss,
    register,
    weight_option,
)
from pairkit.losses._core import check_float_tensors as _check_rows
from pairkit.losses.ranking import listmle_loss
from pairkit.losses.scores import logistic_loss, sigmoid_binary_cross_entropy

__all__ = [
    "bradley_terry_reward_loss",
    "gpm_loss",
    "gpm_preference_logits",
    "gpm_preference_probs",
    "plackett_luce_reward_loss",
    "regression_bradley_terry_loss",
    "reward_centering_loss",
    "soft_bradley_terry_reward_loss",
]

_FAMILY = "reward"


def _margin(margin, like: torch.Tensor) -> torch.Tensor | float:
    if margin is None:
        return 0.0
    margin = torch.as_tensor(margin, dtype=like.dtype, device=like.device)
    check_broadcastable("margin", margin, like.shape)
    return margin


@register(
    "reward_bradley_terry",
    inputs=(*REWARD_PAIR, keyword("margin", "margins")),
    family=_FAMILY,
    aliases=("reward_bt", "reward_trainer"),
    options=(
        Option(
            "center_rewards_coefficient", float, NON_NEGATIVE, none=True, doc="weight η of the reward-centring penalty"
        ),
    ),
)
def bradley_terry_reward_loss(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    *,
    margin: torch.Tensor | float | None = None,
    center_rewards_coefficient: float | None = None,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Bradley–Terry reward-model loss, with an optional required margin and reward-centring penalty.

    .. math::

        \\ell = -\\log\\sigma(r_c - r_r - m) + \\eta\\,(r_c + r_r)^2

    Bradley & Terry (1952), "Rank Analysis of Incomplete Block Designs"; as used for RLHF reward models by
    Ouyang et al. (2022), "Training language models to follow instructions with human feedback". The margin
    :math:`m` is Llama 2's (Touvron et al. 2023); :math:`\\eta` = ``center_rewards_coefficient`` is the centring
    term of Eisenstein et al. (2023), "Helping or Herding? Reward Model Ensembles Mitigate but do not Eliminate
    Reward Hacking". The ``"mean"`` equals TRL's ``RewardTrainer.compute_loss``.

    Args: ``chosen_rewards``, ``rejected_rewards``, ``margin`` ``[batch]``. Returns ``[batch]`` or a scalar.
    """
    _check_rows(mask, weights, chosen_rewards=chosen_rewards, rejected_rewards=rejected_rewards)
    values = logistic_loss(chosen_rewards - rejected_rewards - _margin(margin, chosen_rewards))
    if center_rewards_coefficient is not None:
        values = values + center_rewards_coefficient * (chosen_rewards + rejected_rewards).square()
    return reduce_loss(values, reduction, mask=mask, weights=weights)


@register("reward_centering", inputs=REWARD_PAIR, family=_FAMILY, aliases=("center_rewards",))
def reward_centering_loss(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Reward-centring penalty: keeps the reward of each pair near zero mean (BT is shift-invariant).

    .. math::

        \\ell = (r_c + r_r)^2

    Eisenstein et al. (2023), "Helping or Herding? Reward Model Ensembles Mitigate but do not Eliminate Reward
    Hacking". Add it to a Bradley–Terry loss with a small coefficient (TRL: ``center_rewards_coefficient``).

    Args: ``chosen_rewards``, ``rejected_rewards`` ``[batch]``. Returns ``[batch]`` or a scalar.
    """
    _check_rows(mask, weights, chosen_rewards=chosen_rewards, rejected_rewards=rejected_rewards)
    return reduce_loss((chosen_rewards + rejected_rewards).square(), reduction, mask=mask, weights=weights)


@register(
    "soft_bradley_terry",
    inputs=(*REWARD_PAIR, keyword("target_probs", "probs", required=True), keyword("margin", "margins")),
    family=_FAMILY,
    aliases=("soft_label_bt",),
)
def soft_bradley_terry_reward_loss(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    *,
    target_probs: torch.Tensor,
    margin: torch.Tensor | float | None = None,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Bradley–Terry with soft labels: cross-entropy to a target probability that the first response wins.

    .. math::

        \\ell = -p\\log\\sigma(d) - (1 - p)\\log\\sigma(-d), \\qquad d = r_c - r_r - m

    The Bradley–Terry likelihood (Bradley & Terry 1952, "Rank Analysis of Incomplete Block Designs") with a
    probabilistic target :math:`p`, e.g. the fraction of annotators or a judge's probability preferring the first
    response; :math:`p = 1` gives :func:`bradley_terry_reward_loss`.

    Args: ``chosen_rewards``, ``rejected_rewards``, ``target_probs`` (in [0, 1]), ``margin`` ``[batch]``.
    """
    _check_rows(
        mask, weights, chosen_rewards=chosen_rewards, rejected_rewards=rejected_rewards, target_probs=target_probs
    )
    if bool(((target_probs < 0) | (target_probs > 1) | torch.isnan(target_probs)).any()):
        raise InputError("target_probs must lie in [0, 1] (probability that the chosen response is preferred)")
    d = chosen_rewards - rejected_rewards - _margin(margin, chosen_rewards)
    values = sigmoid_binary_cross_entropy(d, target_probs)
    return reduce_loss(values, reduction, mask=mask, weights=weights)


@register(
    "regression_bradley_terry",
    inputs=(
        *REWARD_PAIR,
        keyword("chosen_targets", "rewards", required=True),
        keyword("rejected_targets", "rewards", required=True),
        keyword("strength", "margins"),
        keyword("margin", "margins"),
    ),
    family=_FAMILY,
    aliases=("helpsteer2_preference",),
    options=(weight_option("regression_weight", "weight of the regression term"),),
)
def regression_bradley_terry_loss(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    *,
    chosen_targets: torch.Tensor,
    rejected_targets: torch.Tensor,
    strength: torch.Tensor | None = None,
    margin: torch.Tensor | float | None = None,
    regression_weight: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Bradley–Terry on the pair plus regression of each reward on its absolute rating.

    .. math::

        \\ell = -|s|\\,\\log\\sigma(r_c - r_r - m)
                + \\frac{\\lambda}{2}\\big[(r_c - t_c)^2 + (r_r - t_r)^2\\big]

    Wang et al. (2024), "HelpSteer2-Preference: Complementing Ratings with Preferences": :math:`|s|` =
    ``strength`` is the annotated preference strength ("Scaled BT"; 1 when omitted), :math:`m` the margin
    ("Margin BT"), and the regression term on the Likert ratings :math:`t` (SteerLM-style regression) combines
    both kinds of data; ``regression_weight=0`` leaves pure (scaled/margin) BT.

    Args: rewards, targets, ``strength``, ``margin`` ``[batch]``. Returns ``[batch]`` or a scalar.
    """
    _check_rows(
        mask,
        weights,
        chosen_rewards=chosen_rewards,
        rejected_rewards=rejected_rewards,
        chosen_targets=chosen_targets,
        rejected_targets=rejected_targets,
        strength=strength,
    )
    bt = -F.logsigmoid(chosen_rewards - rejected_rewards - _margin(margin, chosen_rewards))
    if strength is not None:
        bt = bt * strength.abs()
    reg = 0.5 * ((chosen_rewards - chosen_targets).square() + (rejected_rewards - rejected_targets).square())
    return reduce_loss(bt + regression_weight * reg, reduction, mask=mask, weights=weights)


@register(
    "reward_plackett_luce",
    inputs=(Input("rewards", "rewards", "[batch, list]"), Input("labels", "grades", "[batch, list]")),
    family=_FAMILY,
    aliases=("kwise_reward",),
)
def plackett_luce_reward_loss(
    rewards: torch.Tensor,
    labels: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """K-wise reward-model loss: Plackett–Luce likelihood of each ranked list of K responses.

    .. math::

        \\ell = -\\sum_{k=1}^{K}\\log\\frac{\\exp(r_{\\tau(k)})}{\\sum_{j\\ge k}\\exp(r_{\\tau(j)})}

    Zhu, Jordan & Jiao (2023), "Principled Reinforcement Learning with Human Feedback from Pairwise or K-wise
    Comparisons". :math:`\\tau` sorts by decreasing ``labels``; with K = 2 this is the Bradley–Terry loss.

    Args: ``rewards``, ``labels``, ``mask`` ``[batch, list]``; ``weights`` ``[batch]``.
    """
    return listmle_loss(rewards, labels, mask=mask, weights=weights, reduction=reduction)


def gpm_preference_logits(
    first_embeddings: torch.Tensor, second_embeddings: torch.Tensor, *, eigenvalues: torch.Tensor | None = None
) -> torch.Tensor:
    """General Preference Model score :math:`\\langle R^{\\succ} v_1, v_2\\rangle` with a skew-symmetric operator.

    .. math::

        s(y_1 \\succ y_2) = \\sum_{l=1}^{k} \\lambda_l\\,\\big(v_{1,2l-1} v_{2,2l} - v_{1,2l} v_{2,2l-1}\\big),
        \\qquad R^{\\succ} = \\operatorname{diag}_l\\Big(\\lambda_l \\begin{bmatrix}0 & -1\\\\ 1 & 0\\end{bmatrix}\\Big)

    Zhang et al. (2024), "Beyond Bradley-Terry Models: A General Preference Model for Language Model Alignment".
    Skew symmetry gives :math:`s(y_1\\succ y_2) = -s(y_2\\succ y_1)` and :math:`s(y\\succ y) = 0`, and unlike a
    scalar reward the score can express intransitive (cyclic) preferences. ``eigenvalues`` :math:`\\lambda \\ge 0`
    (``[k]`` or prompt-dependent ``[batch, k]``) default to 1.

    Args: embeddings ``[batch, 2k]``. Returns ``[batch]``.
    """
    _check_rows(None, None, first_embeddings=first_embeddings, second_embeddings=second_embeddings)
    dim = first_embeddings.shape[-1]
    if first_embeddings.dim() < 1 or dim % 2:
        raise InputError(f"GPM embeddings need an even last dimension 2k, got shape {list(first_embeddings.shape)}")
    a = first_embeddings.unflatten(-1, (dim // 2, 2))
    b = second_embeddings.unflatten(-1, (dim // 2, 2))
    per_block = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
    if eigenvalues is not None:
        eigenvalues = torch.as_tensor(eigenvalues, dtype=per_block.dtype, device=per_block.device)
        try:
            per_block = per_block * eigenvalues
        except RuntimeError:
            raise InputError(
                f"eigenvalues of shape {list(eigenvalues.shape)} do not broadcast to the {dim // 2} blocks "
                f"{list(per_block.shape)}"
            ) from None
    return per_block.sum(-1)


def gpm_preference_probs(
    first_embeddings: torch.Tensor,
    second_embeddings: torch.Tensor,
    *,
    beta: float = 1.0,
    eigenvalues: torch.Tensor | None = None,
) -> torch.Tensor:
    """Probability that the first response is preferred under the General Preference Model.

    .. math::

        P(y_1 \\succ y_2) = \\sigma\\big(\\langle R^{\\succ} v_1, v_2\\rangle / \\beta\\big)

    Zhang et al. (2024), "Beyond Bradley-Terry Models: A General Preference Model for Language Model Alignment".
    :math:`P(y_1\\succ y_2) + P(y_2\\succ y_1) = 1` for any embeddings. See :func:`gpm_preference_logits`.

    Args: embeddings ``[batch, 2k]``. Returns ``[batch]``.
    """
    return torch.sigmoid(gpm_preference_logits(first_embeddings, second_embeddings, eigenvalues=eigenvalues) / beta)


@register(
    "gpm",
    inputs=(
        Input("chosen_embeddings", "embeddings", "[batch, 2k]"),
        Input("rejected_embeddings", "embeddings", "[batch, 2k]"),
    ),
    family=_FAMILY,
    aliases=("general_preference_model",),
    options=(
        Option("beta", float, POSITIVE, doc="temperature β dividing the preference score"),
        Option("eigenvalues", torch.Tensor, none=True, doc="the k eigenvalues of R (default: all 1)"),
    ),
    extra={"pair_logits": lambda chosen, rejected: gpm_preference_logits(chosen, rejected)},
)
def gpm_loss(
    chosen_embeddings: torch.Tensor,
    rejected_embeddings: torch.Tensor,
    *,
    beta: float = 1.0,
    eigenvalues: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """General Preference Model loss: negative log-likelihood of the observed preferences.

    .. math::

        \\ell = -\\log\\sigma\\big(\\langle R^{\\succ} v_c, v_r\\rangle / \\beta\\big)

    Zhang et al. (2024), "Beyond Bradley-Terry Models: A General Preference Model for Language Model Alignment".
    The paper L2-normalises the embeddings in the model head; this loss takes them as given.

    Args: ``chosen_embeddings``, ``rejected_embeddings`` ``[batch, 2k]``; ``mask``, ``weights`` ``[batch]``.
    """
    score = gpm_preference_logits(chosen_embeddings, rejected_embeddings, eigenvalues=eigenvalues)
    _check_rows(mask, weights, score=score)
    return reduce_loss(-F.logsigmoid(score / beta), reduction, mask=mask, weights=weights)
