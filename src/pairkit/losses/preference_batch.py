"""Batch-coupled pairwise preference losses: one pair's value depends on the other pairs of the batch.

Their specs say ``batch_coupled=True``; the training loop computes them on the whole batch and refuses gradient
accumulation for them (splitting the batch would change the objective). Inputs as in
:mod:`pairkit.losses.preference`.
"""

from __future__ import annotations

import dataclasses

import torch

from pairkit._spec import Option
from pairkit.errors import InputError
from pairkit.losses._core import CHOSEN_LENGTHS, PAIR_REF, Reduction, check_broadcastable, reduce_loss, register
from pairkit.losses._pairs import BETA, FAMILY, POSITIVE, check, named, reduce, smoothing_option
from pairkit.losses.scores import logistic_loss, sigmoid_binary_cross_entropy

__all__ = ["aot_loss", "aot_unpaired_loss", "dr_dpo_loss", "pair_sft_loss"]

_AOT_OPTIONS = (BETA, smoothing_option(1.0, doc="label-flip rate ε"))


def _sorted_valid(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Sort ``x`` ascending with masked entries moved to the end (as zeros, so they stay finite)."""
    if mask is None:
        return torch.sort(x, dim=0).values
    mask = torch.as_tensor(mask, dtype=torch.bool, device=x.device).expand_as(x)
    key = torch.where(mask, x.detach(), torch.full_like(x, float("inf")))
    order = torch.argsort(key, dim=0, stable=True)
    return torch.where(mask, x, torch.zeros_like(x)).gather(0, order)


def _aot(a, b, beta, label_smoothing, mask, weights, reduction):
    if weights is not None:
        raise InputError(
            "weights are not supported by AOT: it sorts the batch, so per-pair weights would not line up "
            "with the sorted quantiles. Pass weights=None."
        )
    if a.dim() != 1:
        raise InputError(f"AOT expects 1-D [batch] inputs, got shape {list(a.shape)}")
    margins = _sorted_valid(a, mask) - _sorted_valid(b, mask)
    values = sigmoid_binary_cross_entropy(beta * margins, 1.0 - label_smoothing)
    if mask is not None:
        # after sorting, the valid entries are the first n_valid positions
        n_valid = torch.as_tensor(mask, dtype=torch.bool, device=a.device).expand_as(a).sum()
        mask = torch.arange(a.shape[0], device=a.device) < n_valid
    return reduce_loss(values, reduction, mask=mask)


@register("aot", inputs=PAIR_REF, batch_coupled=True, family=FAMILY, options=_AOT_OPTIONS)
def aot_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    mask: torch.Tensor | None = None,
    weights: None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """AOT (paired): first-order stochastic dominance of the policy's over the reference's log-odds.

    .. math::

        \\ell_{(i)} = -(1-\\varepsilon)\\log\\sigma(\\beta d_{(i)}) - \\varepsilon\\log\\sigma(-\\beta d_{(i)}),
        \\quad d_{(i)} = \\mathrm{sort}(\\log\\tfrac{\\pi_c}{\\pi_r})_{(i)}
                       - \\mathrm{sort}(\\log\\tfrac{\\pi^{ref}_c}{\\pi^{ref}_r})_{(i)}

    Melnyk et al. (2024), "Distributional Preference Alignment of LLMs via Optimal Transport". The loss
    compares batch quantiles, so the i-th value belongs to the i-th quantile, not the i-th pair, and
    ``weights`` are rejected (as TRL does). TRL: ``loss_type="aot"``.

    Args: four ``[batch]`` sequence log-probabilities. Returns ``[batch]`` (per quantile) or a scalar.
    """
    check(mask, None, **named(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps))
    return _aot(
        policy_chosen_logps - policy_rejected_logps,
        ref_chosen_logps - ref_rejected_logps,
        beta, label_smoothing, mask, weights, reduction,
    )  # fmt: skip


@register("aot_unpaired", inputs=PAIR_REF, batch_coupled=True, family=FAMILY, options=_AOT_OPTIONS)
def aot_unpaired_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    mask: torch.Tensor | None = None,
    weights: None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """AOT (unpaired): the chosen log ratios' distribution should dominate the rejected ones'.

    .. math::

        \\ell_{(i)} = -(1-\\varepsilon)\\log\\sigma(\\beta d_{(i)}) - \\varepsilon\\log\\sigma(-\\beta d_{(i)}),
        \\quad d_{(i)} = \\mathrm{sort}(\\rho_c)_{(i)} - \\mathrm{sort}(\\rho_r)_{(i)}

    Melnyk et al. (2024), "Distributional Preference Alignment of LLMs via Optimal Transport".
    TRL: ``loss_type="aot_unpaired"``. Values are per quantile; ``weights`` are rejected.

    Args: four ``[batch]`` sequence log-probabilities. Returns ``[batch]`` (per quantile) or a scalar.
    """
    check(mask, None, **named(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps))
    return _aot(
        policy_chosen_logps - ref_chosen_logps,
        policy_rejected_logps - ref_rejected_logps,
        beta, label_smoothing, mask, weights, reduction,
    )  # fmt: skip


@register(
    "pair_sft",
    inputs=(
        PAIR_REF[0],
        *(dataclasses.replace(i, required=False) for i in PAIR_REF[1:]),  # accepted so it composes with the others
        dataclasses.replace(CHOSEN_LENGTHS, required=True),
    ),
    batch_coupled=True,
    family=FAMILY,
    aliases=("sft",),
)
def pair_sft_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor | None = None,
    ref_chosen_logps: torch.Tensor | None = None,
    ref_rejected_logps: torch.Tensor | None = None,
    *,
    chosen_lengths: torch.Tensor,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """The SFT term of a preference batch: token-mean NLL of the chosen responses (TRL ``loss_type="sft"``).

    .. math::

        \\mathcal{L} = -\\frac{\\sum_i \\log\\pi(y_{c,i})}{\\sum_i |y_{c,i}|}, \\qquad
        \\ell_i = -\\frac{\\log\\pi(y_{c,i})}{\\overline{|y_c|}}

    The token mean spans the batch, so each pair's value divides by the batch's mean length; their mean is
    the token-mean NLL. Used in the MPO mixture: Wang et al. (2024), "Enhancing the Reasoning Ability of
    Multimodal Large Language Models via Mixed Preference Optimization". The rejected/reference inputs are
    accepted (and ignored) so it combines with the others in :func:`weighted_sum`.

    Args: ``policy_chosen_logps`` and ``chosen_lengths`` ``[batch]``. Returns ``[batch]`` or a scalar.
    """
    check(mask, weights, policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps)
    if chosen_lengths is None:
        raise InputError("chosen_lengths is required by this loss (got None)")
    lengths = torch.as_tensor(chosen_lengths, dtype=policy_chosen_logps.dtype, device=policy_chosen_logps.device)
    check_broadcastable("chosen_lengths", lengths, policy_chosen_logps.shape)
    lengths = lengths.expand_as(policy_chosen_logps)
    if mask is not None:
        lengths = torch.where(torch.as_tensor(mask, dtype=torch.bool).expand_as(lengths), lengths, 0.0)
        count = torch.as_tensor(mask, dtype=torch.bool).expand_as(lengths).sum()
    else:
        count = lengths.numel()
    mean_length = (lengths.sum() / max(int(count), 1)).clamp(min=1.0)
    return reduce(-policy_chosen_logps / mean_length, reduction, mask, weights)


@register(
    "dr_dpo",
    inputs=PAIR_REF,
    batch_coupled=True,
    family=FAMILY,
    aliases=("drdpo",),
    options=(BETA, Option("beta_prime", float, POSITIVE, doc="temperature β' of the soft minimum")),
)
def dr_dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    beta_prime: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Dr. DPO: a soft-minimum (log-mean-exp) aggregation of the DPO losses over the batch.

    .. math::

        \\mathcal{L} = -\\beta' \\log \\frac{\\sum_i w_i\\, e^{-\\ell^{DPO}_i/\\beta'}}{\\sum_i w_i}

    Wu et al. (2024), "Towards Robust Alignment of Language Models: Distributionally Robustifying Direct
    Preference Optimization". β' → ∞ recovers the (weighted) mean DPO loss; small β' down-weights pairs with
    large loss (likely label noise). The objective does not split into per-pair terms: ``"mean"`` returns
    :math:`\\mathcal{L}`, ``"sum"`` :math:`\\mathcal{L}\\sum_i w_i` and ``"none"`` each pair's share
    :math:`w_i\\mathcal{L}` (so the three stay consistent).

    Args: four ``[batch]`` sequence log-probabilities. Returns ``[batch]`` or a scalar.
    """
    pc, pr, rc, rr = policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    check(mask, weights, **named(pc, pr, rc, rr))
    c, r = pc - rc, pr - rr  # the implicit rewards (β = 1, reverse KL); shapes checked once, above
    per_pair = logistic_loss(beta * (c - r))
    w = torch.ones_like(per_pair) if weights is None else torch.as_tensor(weights, dtype=c.dtype).expand_as(c)
    if mask is not None:
        w = torch.where(torch.as_tensor(mask, dtype=torch.bool, device=c.device).expand_as(c), w, 0.0)
    total_w = w.sum()
    if per_pair.numel() == 0 or not bool(total_w > 0):
        return reduce(per_pair * 0.0, reduction, mask, weights) * 0.0
    # log-mean-exp over the positive-weight pairs; zero-weight (masked) ones are excluded entirely
    keep = w > 0
    log_w = torch.where(keep, w, 1.0).log()
    scores = torch.where(keep, -per_pair / beta_prime + log_w, float("-inf"))
    objective = -beta_prime * (torch.logsumexp(scores.flatten(), 0) - total_w.log())
    if reduction == "mean":
        return objective
    if reduction == "sum":
        return objective * total_w
    return reduce_loss(w * objective, reduction)
