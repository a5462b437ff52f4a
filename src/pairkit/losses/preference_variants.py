"""Preference-data variants beyond the DPO family: unlearning with only forget data (FLAT).

Token-level inputs follow :mod:`pairkit.losses.preference_token`: per-token log-probabilities ``[batch, T]`` of the
realised tokens with bool token masks; the pair trainer provides them for (chosen, rejected) pairs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pairkit._spec import Input, Option
from pairkit.losses._core import TOKEN_MASKS, Reduction, check_broadcastable, reduce_loss, register
from pairkit.losses.preference_token import _check_tokens, _token_mask

__all__ = ["FLAT_DIVERGENCES", "flat_loss"]

_FAMILY = "preference"


def _kl_pair(x):
    return x, torch.exp(x - 1.0)


def _reverse_kl_pair(x):
    return -torch.exp(-x), x - 1.0


def _jeffrey_pair(x):
    return x, x + x * x / 4.0 + x * x * x / 16.0


def _squared_hellinger_pair(x):
    return -torch.expm1(-x), torch.expm1(x)


def _pearson_pair(x):
    return x, x * x / 4.0 + x


def _neyman_pair(x):
    return -torch.expm1(-x), 2.0 - 2.0 * torch.exp(-x / 2.0)


def _jensen_shannon_pair(x):
    return -F.softplus(-x) + math.log(2.0), x + F.softplus(-x) - math.log(2.0)


def _total_variation_pair(x):
    return torch.tanh(x) / 2.0, torch.tanh(x) / 2.0


# name -> x ↦ (g(x), f*(g(x))): the output activation and the conjugate of f-GAN's table (Nowozin et al. 2016)
FLAT_DIVERGENCES = {
    "kl": _kl_pair,
    "reverse_kl": _reverse_kl_pair,
    "jeffrey": _jeffrey_pair,
    "squared_hellinger": _squared_hellinger_pair,
    "pearson": _pearson_pair,
    "neyman": _neyman_pair,
    "jensen_shannon": _jensen_shannon_pair,
    "total_variation": _total_variation_pair,
}


@register(
    "flat",
    inputs=(
        Input("policy_chosen_logps", "token_logps", "[batch, T]"),
        Input("policy_rejected_logps", "token_logps", "[batch, T]"),
        *TOKEN_MASKS,
    ),
    family=_FAMILY,
    aliases=("flat_unlearning", "forget_loss_adjustment"),
    options=(Option("divergence", str, choices=tuple(FLAT_DIVERGENCES), doc="the f-divergence maximised"),),
)
def flat_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    *,
    chosen_mask: torch.Tensor | None = None,
    rejected_mask: torch.Tensor | None = None,
    divergence: str = "total_variation",
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""FLAT: unlearn with only forget data by maximising an f-divergence between template and forget answers.

    Each pair is a forget prompt with a *template* answer (chosen, e.g. a refusal — learned) and the answer to
    forget (rejected). With :math:`\bar P_e`, :math:`\bar P_f` their mean per-token probabilities
    :math:`\frac{1}{|y|}\sum_t \pi(y_t\mid x, y_{<t})` and :math:`(g, f^*)` the variational function and
    conjugate of the chosen f-divergence:

    .. math::
        \ell = -\,g(\bar P_e) + f^*\big(g(\bar P_f)\big),

    the negative of the variational lower bound :math:`\mathbb E_e[g] - \mathbb E_f[f^*(g)]` of
    :math:`D_f`, so minimising it learns the template and forgets the answer with importance weights set by the
    divergence (no retain data, no reference model). The pairs :math:`(g, f^*\!\circ g)` are f-GAN's output
    activations and conjugates (Nowozin, Cseke & Tomioka 2016, table 2), e.g. KL: :math:`g(x) = x`,
    :math:`f^*(g(x)) = e^{x-1}`; total variation (the authors' default): both :math:`\tfrac12\tanh x`;
    reverse KL: :math:`-e^{-x}` and :math:`x - 1`. For KL, Pearson, Jensen–Shannon, total variation and Jeffrey
    (whose conjugate the authors replace by the cubic :math:`t + t^2/4 + t^3/16`, kept here) this equals the
    authors' ``get_contrastive_loss``; for reverse KL, squared Hellinger and Neyman χ² their code drops the minus
    sign in :math:`e^{-x}` (and for Neyman applies :math:`f^*` to ``x`` rather than :math:`g(x)`), which makes
    the template's probability *fall* — this follows the f-GAN table instead.

    Wang, Wei, Liu, Pang, Liu, Shah, Bao, Liu & Wei (2025), "LLM Unlearning via Loss Adjustment with Only Forget
    Data" (ICLR). Reading taken: the bound is applied per example and averaged (the authors' code averages the
    token probabilities over the whole batch, padding positions included, before applying :math:`g`); the mean
    token probability runs over each answer's valid tokens.

    Args:
        policy_chosen_logps (template answer), policy_rejected_logps (forget answer): ``[batch, T]`` token
        log-probabilities; chosen_mask, rejected_mask: ``[batch, T]`` bool; mask, weights: ``[batch]``.
    Returns ``[batch]`` with ``reduction="none"``, else a scalar. Pairs with an empty answer give 0.
    """
    first = _check_tokens({"policy_chosen_logps": policy_chosen_logps, "policy_rejected_logps": policy_rejected_logps})
    cm = _token_mask("chosen_mask", chosen_mask, first)
    rm = _token_mask("rejected_mask", rejected_mask, first)
    check_broadcastable("mask", mask, first.shape[:1])
    check_broadcastable("weights", weights, first.shape[:1])

    def mean_prob(logps, m):
        probs = torch.where(m, torch.exp(torch.where(m, logps, torch.zeros_like(logps))), torch.zeros_like(logps))
        return probs.sum(-1) / m.sum(-1).clamp(min=1).to(logps.dtype)

    pair = FLAT_DIVERGENCES[divergence]
    g_template, _ = pair(mean_prob(policy_chosen_logps, cm))
    _, conj_forget = pair(mean_prob(policy_rejected_logps, rm))
    values = -g_template + conj_forget
    valid = cm.any(-1) & rm.any(-1)
    if mask is not None:
        valid = valid & torch.as_tensor(mask, dtype=torch.bool, device=valid.device)
    return reduce_loss(torch.where(valid, values, torch.zeros_like(values)), reduction, mask=valid, weights=weights)
