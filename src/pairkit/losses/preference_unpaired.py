"""Unpaired (point-wise) preference losses: each example is one completion with its own label or reward.

Inputs are per-sequence log-probabilities of shape ``[batch]`` (summed over completion tokens) from the policy
and the frozen reference model, with :math:`\\rho = \\log\\pi(y) - \\log\\pi_{ref}(y)` the log ratio.
Binary-feedback losses take a bool ``desirable`` label per example (TRL's ``label``); DRO takes a scalar reward;
NPO (unlearning) takes only the examples to forget. ``mask`` (``[batch]`` bool) drops examples exactly as
slicing them away would (the KTO batch KL estimate uses only the kept examples too).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pairkit._spec import Input, Option
from pairkit.errors import InputError
from pairkit.losses._core import (
    NON_NEGATIVE,
    POSITIVE,
    REAL,
    UNPAIRED,
    Reduction,
    keyword,
    reduce_loss,
    register,
    weight_option,
)
from pairkit.losses._core import check_float_tensors as _check_rows
from pairkit.losses._pairs import BETA
from pairkit.losses.scores import sigmoid_binary_cross_entropy

__all__ = [
    "apo_zero_unpaired_loss",
    "bco_loss",
    "dro_loss",
    "kto_kl_estimate",
    "kto_loss",
    "npo_loss",
    "pointwise_dpo_loss",
    "ulma_loss",
]

_FAMILY = "preference"


def _as_labels(desirable, like: torch.Tensor) -> torch.Tensor:
    """The bool ``desirable`` label, shaped like ``like``; 0/1 numbers are accepted, anything else is an error."""
    labels = torch.as_tensor(desirable, device=like.device)
    if tuple(labels.shape) != tuple(like.shape):
        raise InputError(
            f"desirable must have the shape of the log-probabilities {list(like.shape)}, got {list(labels.shape)}"
        )
    if labels.dtype != torch.bool:
        bad = (labels != 0) & (labels != 1)
        if bool(bad.any()):
            value = labels[bad].flatten()[0].item()
            raise InputError(f"desirable must be bool (or 0/1), got the value {value!r}; pass a bool tensor")
        labels = labels.bool()
    return labels


def _by_label(desirable: torch.Tensor, if_desirable: torch.Tensor, if_undesirable: torch.Tensor) -> torch.Tensor:
    return torch.where(desirable, if_desirable, if_undesirable)


def _label_weights(desirable: torch.Tensor, desirable_weight: float, undesirable_weight: float, like: torch.Tensor):
    d = torch.as_tensor(desirable_weight, dtype=like.dtype, device=like.device)
    u = torch.as_tensor(undesirable_weight, dtype=like.dtype, device=like.device)
    return torch.where(desirable, d, u)


def kto_kl_estimate(
    policy_kl_logps: torch.Tensor, ref_kl_logps: torch.Tensor, *, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """KTO's batch estimate of the reference point :math:`z_0` from mismatched (prompt, completion) pairs.

    .. math::

        \\hat z_0 = \\max\\Big(0, \\operatorname{sg}\\Big[\\frac1m \\sum_{i}
            \\log\\pi(y'_i\\mid x_i) - \\log\\pi_{ref}(y'_i\\mid x_i)\\Big]\\Big)

    where :math:`y'_i` is another example's completion paired with prompt :math:`x_i` (TRL shifts the completions
    by one within the batch). Ethayarajh et al. (2024), "KTO: Model Alignment as Prospect Theoretic Optimization".
    Gradients are stopped, as in the paper and TRL. Empty / fully masked input gives 0.

    Args: ``policy_kl_logps``, ``ref_kl_logps`` ``[batch]``; ``mask`` ``[batch]`` bool. Returns a scalar.
    """
    _check_rows(mask, None, policy_kl_logps=policy_kl_logps, ref_kl_logps=ref_kl_logps)
    with torch.no_grad():
        kl = reduce_loss(policy_kl_logps - ref_kl_logps, "mean", mask=mask)
    return kl.clamp(min=0)


@register(
    "kto",
    inputs=(*UNPAIRED, keyword("policy_kl_logps", "logps"), keyword("ref_kl_logps", "logps")),
    batch_coupled=True,
    family=_FAMILY,
    options=(
        Option(
            "kl", (float, torch.Tensor), NON_NEGATIVE, none=True, doc="fixed KL reference point z0 (None: estimated)"
        ),
        BETA,
        weight_option("desirable_weight", "weight of desirable examples"),
        weight_option("undesirable_weight", "weight of undesirable examples"),
    ),
)
def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    desirable: torch.Tensor,
    *,
    policy_kl_logps: torch.Tensor | None = None,
    ref_kl_logps: torch.Tensor | None = None,
    kl: torch.Tensor | float | None = None,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Kahneman–Tversky Optimization: a prospect-theoretic value of each completion against a KL reference point.

    .. math::

        \\ell = \\begin{cases}
            \\lambda_D\\,(1 - \\sigma(\\beta(\\rho - z_0))) & y \\text{ desirable} \\\\
            \\lambda_U\\,(1 - \\sigma(\\beta(z_0 - \\rho))) & y \\text{ undesirable}
        \\end{cases}

    Ethayarajh et al. (2024), "KTO: Model Alignment as Prospect Theoretic Optimization". :math:`z_0` is
    ``kl`` if given, else :func:`kto_kl_estimate` of the mismatched pairs (``policy_kl_logps``, ``ref_kl_logps``).
    Matches TRL's ``KTOTrainer`` (``loss_type="kto"``): the ``"mean"`` divides the weighted losses by the number
    of examples, not by the sum of :math:`\\lambda`.

    Args: ``policy_logps``, ``ref_logps``, ``desirable`` (bool), ``policy_kl_logps``, ``ref_kl_logps`` all
    ``[batch]``. Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    first = _check_rows(
        mask,
        weights,
        policy_logps=policy_logps,
        ref_logps=ref_logps,
        policy_kl_logps=policy_kl_logps,
        ref_kl_logps=ref_kl_logps,
    )
    labels = _as_labels(desirable, first)
    if kl is None:
        if policy_kl_logps is None or ref_kl_logps is None:
            raise InputError(
                "kto_loss needs the KL reference point: pass policy_kl_logps and ref_kl_logps (log-probs of "
                "mismatched prompt/completion pairs), or kl=<value> (kl=0.0 disables it)"
            )
        z0 = kto_kl_estimate(policy_kl_logps, ref_kl_logps, mask=mask)
    else:
        z0 = torch.as_tensor(kl, dtype=first.dtype, device=first.device).detach()
    rho = policy_logps - ref_logps
    values = 1 - torch.sigmoid(beta * _by_label(labels, rho - z0, z0 - rho))
    values = values * _label_weights(labels, desirable_weight, undesirable_weight, values)
    return reduce_loss(values, reduction, mask=mask, weights=weights)


@register(
    "apo_zero_unpaired",
    inputs=UNPAIRED,
    family=_FAMILY,
    options=(
        BETA,
        weight_option("desirable_weight", "weight of desirable examples"),
        weight_option("undesirable_weight", "weight of undesirable examples"),
    ),
)
def apo_zero_unpaired_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    desirable: torch.Tensor,
    *,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Unpaired APO-zero: push desirable completions' likelihood up and undesirable ones' down, anchored at 0.

    .. math::

        \\ell = \\begin{cases} \\lambda_D\\,(1 - \\sigma(\\beta\\rho)) & y \\text{ desirable} \\\\
                               \\lambda_U\\,\\sigma(\\beta\\rho) & y \\text{ undesirable} \\end{cases}

    D'Oosterlinck et al. (2024), "Anchored Preference Optimization and Contrastive Revisions: Addressing
    Underspecification in Alignment" (unpaired variant of APO-zero, as TRL's ``KTOTrainer``
    ``loss_type="apo_zero_unpaired"``).

    Args: ``policy_logps``, ``ref_logps``, ``desirable`` (bool) ``[batch]``. Returns ``[batch]`` or a scalar.
    """
    first = _check_rows(mask, weights, policy_logps=policy_logps, ref_logps=ref_logps)
    labels = _as_labels(desirable, first)
    p = torch.sigmoid(beta * (policy_logps - ref_logps))
    values = _by_label(labels, 1 - p, p) * _label_weights(labels, desirable_weight, undesirable_weight, p)
    return reduce_loss(values, reduction, mask=mask, weights=weights)


@register(
    "bco",
    inputs=UNPAIRED,
    family=_FAMILY,
    options=(
        BETA,
        Option("delta", (float, torch.Tensor), REAL, doc="reward shift δ (see bco_reward_shift)"),
    ),
)
def bco_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    desirable: torch.Tensor,
    *,
    beta: float = 0.1,
    delta: torch.Tensor | float = 0.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Binary Classifier Optimization: logistic regression of the label on the implicit reward minus a baseline.

    .. math::

        \\ell = \\begin{cases} -\\log\\sigma(\\beta\\rho - \\delta) & y \\text{ desirable} \\\\
                               -\\log\\sigma(-(\\beta\\rho - \\delta)) & y \\text{ undesirable} \\end{cases}

    Jung et al. (2024), "Binary Classifier Optimization for Large Language Model Alignment". ``delta`` is the
    reward shift :math:`\\delta`; TRL's ``BCOTrainer`` uses the running mean of all implicit rewards
    :math:`\\beta\\rho` seen so far (including the current batch), which the caller keeps and passes here.
    Underlying-distribution-matching density ratios for undesirable examples go in ``weights``.

    Args: ``policy_logps``, ``ref_logps``, ``desirable`` (bool) ``[batch]``; ``delta`` scalar (no gradient).
    Returns ``[batch]`` or a scalar.
    """
    first = _check_rows(mask, weights, policy_logps=policy_logps, ref_logps=ref_logps)
    labels = _as_labels(desirable, first)
    shift = torch.as_tensor(delta, dtype=first.dtype, device=first.device).detach()
    z = beta * (policy_logps - ref_logps) - shift
    values = -F.logsigmoid(_by_label(labels, z, -z))
    return reduce_loss(values, reduction, mask=mask, weights=weights)


def _pointwise_targets(labels, like: torch.Tensor) -> torch.Tensor:
    target = torch.as_tensor(labels, device=like.device)
    if tuple(target.shape) != tuple(like.shape):
        raise InputError(f"labels must have the shape {list(like.shape)}, got {list(target.shape)}")
    target = target.to(like.dtype)
    if bool(((target < 0) | (target > 1) | torch.isnan(target)).any()):
        raise InputError("labels must lie in [0, 1] (1 = desirable, fractions = soft labels)")
    return target


@register(
    "pointwise_dpo",
    inputs=(Input("policy_logps", "logps"), Input("ref_logps", "logps"), Input("labels", "probs")),
    family=_FAMILY,
    aliases=("ulma_pointwise_dpo",),
    options=(BETA,),
)
def pointwise_dpo_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    labels: torch.Tensor,
    *,
    beta: float = 0.1,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Point-wise DPO: binary cross-entropy of a (soft) quality label on the implicit reward.

    .. math::

        \\ell = -z\\log\\sigma(\\beta\\rho) - (1 - z)\\log(1 - \\sigma(\\beta\\rho)), \\qquad z \\in [0, 1]

    Cai et al. (2023), "ULMA: Unified Language Model Alignment with Human Demonstration and Point-wise
    Preference" (point-wise DPO, with the partition term dropped as in the paper).

    Args: ``policy_logps``, ``ref_logps``, ``labels`` (bool or float in [0, 1]) ``[batch]``.
    """
    first = _check_rows(mask, weights, policy_logps=policy_logps, ref_logps=ref_logps)
    z = _pointwise_targets(labels, first)
    u = beta * (policy_logps - ref_logps)
    values = sigmoid_binary_cross_entropy(u, z)
    return reduce_loss(values, reduction, mask=mask, weights=weights)


@register("ulma", inputs=UNPAIRED, family=_FAMILY, options=(BETA,))
def ulma_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    desirable: torch.Tensor,
    *,
    beta: float = 0.1,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """ULMA: supervised fine-tuning on desirable demonstrations, point-wise DPO on undesirable ones.

    .. math::

        \\ell = \\begin{cases} -\\log\\pi(y\\mid x) & y \\text{ desirable} \\\\
                               -\\log(1 - \\sigma(\\beta\\rho)) & y \\text{ undesirable} \\end{cases}

    Cai et al. (2023), "ULMA: Unified Language Model Alignment with Human Demonstration and Point-wise
    Preference" (the unified loss: the KL regulariser is kept only where the sample is negative).

    Args: ``policy_logps``, ``ref_logps``, ``desirable`` (bool) ``[batch]``. Returns ``[batch]`` or a scalar.
    """
    first = _check_rows(mask, weights, policy_logps=policy_logps, ref_logps=ref_logps)
    labels = _as_labels(desirable, first)
    values = _by_label(labels, -policy_logps, -F.logsigmoid(-beta * (policy_logps - ref_logps)))
    return reduce_loss(values, reduction, mask=mask, weights=weights)


@register(
    "dro",
    inputs=(
        Input("policy_logps", "logps"),
        Input("ref_logps", "logps"),
        Input("rewards", "rewards"),
        keyword("values", "rewards"),
    ),
    family=_FAMILY,
    aliases=("direct_reward_optimisation", "direct_reward_optimization"),
    options=(Option("beta", float, POSITIVE, doc="KL regularisation strength β"),),
)
def dro_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    rewards: torch.Tensor,
    *,
    values: torch.Tensor | None = None,
    beta: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Direct Reward Optimisation: regress the scalar reward on value plus scaled log ratio (single trajectory).

    .. math::

        \\ell = \\tfrac12\\big(r(x, y) - V(x) - \\beta\\log\\frac{\\pi(y\\mid x)}{\\pi_{ref}(y\\mid x)}\\big)^2

    Richemond et al. (2024), "Offline Regularised Reinforcement Learning for Large Language Models Alignment"
    (DRO-V: ``values`` is the learned value head :math:`V(x)` and is trained by the same loss; ``beta`` is the
    paper's :math:`\\tau`). Without ``values`` :math:`V = 0`.

    Args: ``policy_logps``, ``ref_logps``, ``rewards``, ``values`` ``[batch]``. Returns ``[batch]`` or a scalar.
    """
    _check_rows(mask, weights, policy_logps=policy_logps, ref_logps=ref_logps, rewards=rewards, values=values)
    residual = rewards - beta * (policy_logps - ref_logps)
    if values is not None:
        residual = residual - values
    return reduce_loss(0.5 * residual.square(), reduction, mask=mask, weights=weights)


@register(
    "npo",
    inputs=(Input("policy_logps", "logps"), Input("ref_logps", "logps")),
    family=_FAMILY,
    aliases=("negative_preference_optimization",),
    options=(BETA,),
)
def npo_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Negative Preference Optimization for unlearning: DPO with only a rejected response (the forget set).

    .. math::

        \\ell = \\frac{2}{\\beta}\\log\\Big(1 + \\Big(\\frac{\\pi(y\\mid x)}{\\pi_{ref}(y\\mid x)}\\Big)^{\\beta}\\Big)
              = -\\frac{2}{\\beta}\\log\\sigma(-\\beta\\rho)

    Zhang et al. (2024), "Negative Preference Optimization: From Catastrophic Collapse to Effective Unlearning".
    As :math:`\\beta\\to0` the gradient tends to that of gradient ascent on the forget set,
    :math:`\\nabla\\ell\\to\\nabla\\log\\pi(y\\mid x)`.

    Args: ``policy_logps``, ``ref_logps`` ``[batch]`` (forget-set completions). Returns ``[batch]`` or a scalar.
    """
    _check_rows(mask, weights, policy_logps=policy_logps, ref_logps=ref_logps)
    values = -(2.0 / beta) * F.logsigmoid(-beta * (policy_logps - ref_logps))
    return reduce_loss(values, reduction, mask=mask, weights=weights)
