"""Reference-free pairwise preference losses (SimPO, CPO, ORPO) and the pairwise Cringe loss.

Inputs are the policy's sequence log-probabilities ``[batch]`` of the chosen and the rejected response (summed,
with lengths; or already averaged per token, as TRL's CPO/ORPO trainers compute them).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from pairkit._spec import Interval, Option
from pairkit.errors import InputError
from pairkit.losses._core import (
    CHOSEN_LENGTHS,
    CHOSEN_NLL,
    PAIR,
    PAIR_REF,
    REAL,
    REJECTED_LENGTHS,
    Reduction,
    check_same_shape,
    keyword,
    register,
)
from pairkit.losses._pairs import BETA, FAMILY, POSITIVE, check, nll, reduce, reduce_plus, smoothing_option
from pairkit.losses.scores import hinge_loss, length_normalized, sigmoid_binary_cross_entropy, squared_loss

__all__ = [
    "CPO_LOSSES",
    "cpo_hinge",
    "cpo_ipo",
    "cpo_loss",
    "cpo_sigmoid",
    "cpo_simpo",
    "cpo_simpo_loss",
    "cringe_positive_logits",
    "orpo_loss",
    "pairwise_cringe_loss",
    "simpo_loss",
]

_LABEL_SMOOTHING = smoothing_option(1.0, doc="label-flip rate ε")
_NLL_WEIGHT = Option("cpo_alpha", float, Interval(0, None), doc="weight λ of the NLL term")


@register(
    "simpo",
    inputs=(*PAIR, CHOSEN_LENGTHS, REJECTED_LENGTHS),
    family=FAMILY,
    options=(BETA, Option("gamma", float, REAL, doc="target reward margin γ"), _LABEL_SMOOTHING),
)
def simpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    *,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
    beta: float = 2.0,
    gamma: float = 1.0,
    label_smoothing: float = 0.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """SimPO: reference-free logistic loss on length-normalised log-likelihoods with a target margin γ.

    .. math::

        \\ell = -\\log\\sigma\\Big(\\frac{\\beta}{|y_c|}\\log\\pi(y_c) - \\frac{\\beta}{|y_r|}\\log\\pi(y_r)
                - \\gamma\\Big)

    Meng, Xia & Chen (2024), "SimPO: Simple Preference Optimization with a Reference-Free Reward".
    Without lengths the inputs are taken as already-averaged log-probabilities (as TRL's CPOTrainer with
    ``loss_type="simpo"`` computes them). Defaults β = 2, γ = 1 (γ/β = 0.5) follow the paper's setups;
    ``label_smoothing`` gives the conservative variant.

    Args: ``[batch]`` chosen/rejected log-probabilities (summed, with lengths; or averaged).
    Returns ``[batch]`` or a scalar.
    """
    check(mask, weights, policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps)
    delta = length_normalized(policy_chosen_logps, chosen_lengths, name="chosen_lengths") - length_normalized(
        policy_rejected_logps, rejected_lengths, name="rejected_lengths"
    )
    return reduce(sigmoid_binary_cross_entropy(beta * delta - gamma, 1.0 - label_smoothing), reduction, mask, weights)


def _alphapo_reward(logps: torch.Tensor, alpha: float) -> torch.Tensor:
    # (1 - p^-α)/α written with expm1 so small α stays accurate
    return -torch.expm1(-alpha * logps) / alpha if alpha != 0.0 else logps


def cpo_sigmoid(margins: torch.Tensor, *, beta: float, label_smoothing: float, simpo_gamma: float) -> torch.Tensor:
    """CPO's logistic term :math:`-(1-\\varepsilon)\\log\\sigma(\\beta d) - \\varepsilon\\log\\sigma(-\\beta d)`."""
    return sigmoid_binary_cross_entropy(beta * margins, 1.0 - label_smoothing)


def cpo_hinge(margins: torch.Tensor, *, beta: float, label_smoothing: float, simpo_gamma: float) -> torch.Tensor:
    """CPO's hinge term :math:`\\max(0, 1 - \\beta d)` (no label smoothing)."""
    return hinge_loss(beta * margins)


def cpo_ipo(margins: torch.Tensor, *, beta: float, label_smoothing: float, simpo_gamma: float) -> torch.Tensor:
    """CPO's IPO term :math:`(d - 1/(2\\beta))^2` (no label smoothing)."""
    return squared_loss(margins, 1.0 / (2.0 * beta))


def cpo_simpo(margins: torch.Tensor, *, beta: float, label_smoothing: float, simpo_gamma: float) -> torch.Tensor:
    """CPO's SimPO term: the logistic term on the margin :math:`d - \\gamma/\\beta`."""
    return cpo_sigmoid(margins - simpo_gamma / beta, beta=beta, label_smoothing=label_smoothing, simpo_gamma=0.0)


# TRL CPOTrainer ``loss_type`` names
CPO_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "sigmoid": cpo_sigmoid,
    "hinge": cpo_hinge,
    "ipo": cpo_ipo,
    "simpo": cpo_simpo,
}


@register(
    "cpo",
    inputs=(*PAIR, CHOSEN_NLL),
    family=FAMILY,
    options=(
        BETA,
        _LABEL_SMOOTHING,
        _NLL_WEIGHT,
        Option("loss_type", (str, callable), choices=tuple(CPO_LOSSES), doc="preference term (TRL name)"),
        Option("simpo_gamma", float, REAL, doc="SimPO target margin γ"),
        Option("alpha", float, REAL, doc="AlphaPO reward shape α (0 = log-probabilities)"),
    ),
)
def cpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    *,
    chosen_nll: torch.Tensor | None = None,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    cpo_alpha: float = 1.0,
    loss_type: str | Callable[..., torch.Tensor] = "sigmoid",
    simpo_gamma: float = 0.5,
    alpha: float = 0.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """CPO: a reference-free preference term plus a behaviour-cloning NLL on the chosen response.

    .. math::

        \\ell = -(1-\\varepsilon)\\log\\sigma(\\beta d) - \\varepsilon\\log\\sigma(-\\beta d)
                + \\lambda\\,\\mathrm{NLL}(y_c), \\qquad d = r(y_c) - r(y_r)

    with :math:`r = \\log\\pi` (or AlphaPO's :math:`r = (1 - \\pi^{-\\alpha})/\\alpha` when ``alpha`` ≠ 0),
    λ = ``cpo_alpha``. ``loss_type`` ``"hinge"`` uses :math:`\\max(0, 1-\\beta d)`, ``"ipo"``
    :math:`(d - 1/(2\\beta))^2` and ``"simpo"`` the margin :math:`d - \\gamma/\\beta` (see
    :func:`cpo_simpo_loss`). Xu et al. (2024), "Contrastive Preference Optimization: Pushing the Boundaries
    of LLM Performance in Machine Translation"; Gupta et al. (2025), "AlphaPO: Reward Shape Matters for LLM
    Alignment". Matches TRL's CPOTrainer: give summed log-probs for sigmoid/hinge and averaged ones for
    ipo/simpo, as it does. ``chosen_nll`` defaults to :math:`-\\log\\pi(y_c)` of the given inputs; TRL's is a
    batch token-mean cross-entropy, which can be passed as a 0-d tensor.

    Args: ``[batch]`` chosen/rejected log-probabilities; ``chosen_nll`` ``[batch]`` or 0-d.
    Returns ``[batch]`` or a scalar.
    """
    check(mask, weights, policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps)
    term = CPO_LOSSES[loss_type] if isinstance(loss_type, str) else loss_type
    d = _alphapo_reward(policy_chosen_logps, alpha) - _alphapo_reward(policy_rejected_logps, alpha)
    values = term(d, beta=beta, label_smoothing=label_smoothing, simpo_gamma=simpo_gamma)
    if cpo_alpha == 0.0:
        return reduce(values, reduction, mask, weights)
    return reduce_plus(values, cpo_alpha * nll(policy_chosen_logps, chosen_nll, None), reduction, mask, weights)


@register(
    "cpo_simpo",
    inputs=(*PAIR, CHOSEN_LENGTHS, REJECTED_LENGTHS, CHOSEN_NLL),
    family=FAMILY,
    options=(BETA, Option("gamma", float, REAL, doc="target reward margin γ"), _LABEL_SMOOTHING, _NLL_WEIGHT),
)
def cpo_simpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    *,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
    chosen_nll: torch.Tensor | None = None,
    beta: float = 2.0,
    gamma: float = 1.0,
    label_smoothing: float = 0.0,
    cpo_alpha: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """CPO-SimPO: SimPO's length-normalised margin loss plus CPO's NLL on the chosen response.

    .. math::

        \\ell = -\\log\\sigma(\\beta(\\bar r_c - \\bar r_r) - \\gamma) + \\lambda\\,\\mathrm{NLL}(y_c),
        \\qquad \\bar r = \\log\\pi(y)/|y|

    Meng, Xia & Chen (2024), "SimPO"; Xu et al. (2024), "Contrastive Preference Optimization". TRL:
    CPOTrainer with ``loss_type="simpo"`` and ``cpo_alpha`` > 0 (its ``simpo_gamma`` is γ here).
    ``chosen_nll`` defaults to :math:`-\\bar r_c`.

    Args: ``[batch]`` chosen/rejected log-probabilities (summed with lengths, or averaged).
    Returns ``[batch]`` or a scalar.
    """
    check(mask, weights, policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps)
    values = simpo_loss(
        policy_chosen_logps, policy_rejected_logps,
        chosen_lengths=chosen_lengths, rejected_lengths=rejected_lengths,
        beta=beta, gamma=gamma, label_smoothing=label_smoothing, mask=mask, reduction="none",
    )  # fmt: skip
    if cpo_alpha == 0.0:
        return reduce(values, reduction, mask, weights)
    return reduce_plus(
        values, cpo_alpha * nll(policy_chosen_logps, chosen_nll, chosen_lengths), reduction, mask, weights
    )


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - e^x) for x < 0, switching form at -log 2 to avoid cancellation (Mächler 2012)."""
    x = x.clamp(max=-torch.finfo(x.dtype).tiny)
    return torch.where(x < -math.log(2.0), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


@register("orpo", inputs=(*PAIR, CHOSEN_NLL), family=FAMILY, options=(BETA,))
def orpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    *,
    chosen_nll: torch.Tensor | None = None,
    beta: float = 0.1,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """ORPO: SFT loss plus a log-odds-ratio penalty, without a reference model.

    .. math::

        \\ell = \\mathrm{NLL}(y_c) - \\lambda \\log\\sigma\\big(\\log O(y_c) - \\log O(y_r)\\big),
        \\qquad O(y) = \\frac{P(y)}{1 - P(y)},\\; \\log P(y) = \\tfrac{1}{|y|}\\log\\pi(y)

    Hong, Lee & Thorne (2024), "ORPO: Monolithic Preference Optimization without Reference Model"
    (Eqs. 4-7); λ = ``beta`` as in TRL's ORPOTrainer. Inputs are per-token averaged log-probabilities
    (< 0). ``chosen_nll`` defaults to :math:`-\\log P(y_c)`; TRL's is the token-mean cross-entropy over the
    batch, which can be passed as a 0-d tensor. Computed in float32 or wider.

    Args: ``[batch]`` averaged chosen/rejected log-probabilities; ``chosen_nll`` ``[batch]`` or 0-d.
    Returns ``[batch]`` or a scalar.
    """
    check(mask, weights, policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps)
    both = torch.stack([policy_chosen_logps, policy_rejected_logps])
    if both.dtype not in (torch.float32, torch.float64):
        both = both.float()
    log_odds = both - _log1mexp(both)  # one pass over chosen and rejected together
    values = (-beta * F.logsigmoid(log_odds[0] - log_odds[1])).to(policy_chosen_logps.dtype)
    return reduce_plus(values, nll(policy_chosen_logps, chosen_nll, None), reduction, mask, weights)


# ------------------------------------------------------------------------------------- pairwise Cringe


def cringe_positive_logits(
    logits: torch.Tensor,
    negative_tokens: torch.Tensor,
    *,
    k: int = 5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample, for every negative token, a positive alternative from the model's top-k and return its logit.

    .. math::

        s^{+}_t = z_t[v], \\quad v \\sim \\mathrm{softmax}(\\mathrm{top}_k(z_t \\setminus \\{y_t\\}))

    Adolphs et al. (2022), "The CRINGE Loss: Learning what language not to model". The negative token
    itself is excluded from the candidates. Sampling is not differentiated; the returned logits are.

    Args: ``logits`` ``[batch, T, vocab]``; ``negative_tokens`` ``[batch, T]`` (int). Returns ``[batch, T]``.
    """
    if logits.dim() != 3 or negative_tokens.shape != logits.shape[:2]:
        raise InputError(
            f"logits must be [batch, T, vocab] and negative_tokens [batch, T]; got {list(logits.shape)} and "
            f"{list(negative_tokens.shape)}"
        )
    if not 1 <= k < logits.shape[-1]:
        raise InputError(f"k must be in [1, vocab size - 1] = [1, {logits.shape[-1] - 1}], got {k}")
    neg = negative_tokens.long().clamp(min=0).unsqueeze(-1)
    candidates = logits.detach().scatter(-1, neg, float("-inf"))
    top_vals, top_idx = candidates.topk(k, dim=-1)
    probs = torch.softmax(top_vals.float(), dim=-1).reshape(-1, k)
    pick = torch.multinomial(probs, 1, generator=generator).reshape(*logits.shape[:2], 1)
    return logits.gather(-1, top_idx.gather(-1, pick)).squeeze(-1)


@register(
    "pairwise_cringe",
    inputs=(
        *PAIR,
        *(dataclasses.replace(i, required=False) for i in PAIR_REF[2:]),  # accepted so it composes with the others
        keyword("rejected_token_logits", "token_logits", "[batch, T]", required=True),
        keyword("positive_token_logits", "token_logits", "[batch, T]", required=True),
        keyword("rejected_mask", "token_mask", "[batch, T]", required=True),
        CHOSEN_NLL,
    ),
    family=FAMILY,
    aliases=("cringe_pair",),
    options=(
        Option("alpha", float, Interval(0, None), doc="weight of the Cringe term"),
        Option("margin", float, REAL, doc="margin b of the gate"),
        Option("temperature", float, POSITIVE, doc="temperature τ of the gate"),
    ),
)
def pairwise_cringe_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None = None,
    ref_rejected_logps: torch.Tensor | None = None,
    *,
    rejected_token_logits: torch.Tensor,
    positive_token_logits: torch.Tensor,
    rejected_mask: torch.Tensor,
    chosen_nll: torch.Tensor | None = None,
    alpha: float = 1.0,
    margin: float = 0.0,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Pairwise Cringe: NLL on the chosen response plus a margin-gated token-level Cringe loss on the rejected.

    .. math::

        \\ell = \\mathrm{NLL}(y_c) + \\alpha\\, g\\, \\frac{1}{|y_r|}\\sum_t
                \\log\\big(1 + e^{s^-_t - s^+_t}\\big), \\qquad
        g = \\sigma\\Big(\\frac{b - M}{\\tau}\\Big),\\; M = \\log\\pi(y_c) - \\log\\pi(y_r)

    Xu et al. (2023), "Some things are more CRINGE than others: Iterative Preference Optimization with the
    Pairwise Cringe Loss". :math:`s^-_t` is the logit of the rejected token at step t, :math:`s^+_t` that of
    a positive sampled from the top-k (:func:`cringe_positive_logits`). The gate g switches the Cringe term
    off once the chosen response already beats the rejected by more than the margin b; it is not
    differentiated (it only selects pairs). ``chosen_nll`` defaults to :math:`-\\log\\pi(y_c)`; the
    reference inputs are accepted and ignored so the loss composes in :func:`weighted_sum`.

    Args: ``[batch]`` sequence log-probabilities; token tensors ``[batch, T]`` with ``rejected_mask``
    (bool/0-1) marking the rejected completion tokens. Returns ``[batch]`` or a scalar.
    """
    check(mask, weights, policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps)
    for name, t in (
        ("rejected_token_logits", rejected_token_logits),
        ("positive_token_logits", positive_token_logits),
        ("rejected_mask", rejected_mask),
    ):
        if t is None or t.dim() != 2 or t.shape[0] != policy_chosen_logps.shape[0]:
            got = None if t is None else list(t.shape)
            raise InputError(f"{name} must be [batch, T] with batch {policy_chosen_logps.shape[0]}, got {got}")
    check_same_shape(
        rejected_token_logits=rejected_token_logits,
        positive_token_logits=positive_token_logits,
        rejected_mask=rejected_mask,
    )
    tok_mask = rejected_mask.bool()
    token_loss = torch.where(tok_mask, F.softplus(rejected_token_logits - positive_token_logits), 0.0)
    cringe = token_loss.sum(-1) / tok_mask.sum(-1).clamp(min=1).to(token_loss.dtype)
    gate = torch.sigmoid((margin - (policy_chosen_logps - policy_rejected_logps).detach()) / temperature)
    values = nll(policy_chosen_logps, chosen_nll, None) + alpha * gate * cringe.to(policy_chosen_logps.dtype)
    return reduce(values, reduction, mask, weights)
