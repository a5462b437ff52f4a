"""Token-level preference losses and the masked NLL (SFT) term.

Inputs are per-token log-probabilities of the realised tokens, ``[batch, time]``, with bool token masks of the
same shape (``True`` = a completion token; padding and prompt are ``False``). Paired losses take one token mask
per side (``chosen_mask``, ``rejected_mask``) and an optional example mask ``mask`` ``[batch]``. Per-token KL
terms come from :func:`token_kl` (full next-token distributions of policy and reference).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pairkit._spec import Input, Option
from pairkit.errors import InputError
from pairkit.losses._checks import check_token_mask, check_tokens
from pairkit.losses._core import (
    TOKEN_MASKS,
    TOKEN_PAIR_REF,
    Reduction,
    check_broadcastable,
    check_same_shape,
    keyword,
    reduce_loss,
    register,
    weight_option,
)
from pairkit.losses._pairs import BETA

__all__ = [
    "sparse_po_loss",
    "tdpo1_loss",
    "tdpo2_loss",
    "token_kl",
    "token_nll_loss",
]

_FAMILY = "preference"


def _masked_sum(values: torch.Tensor | None, mask: torch.Tensor, token_weights=None) -> torch.Tensor | float:
    """Sum over time of the valid tokens; masked positions contribute exactly 0 (also to gradients)."""
    if values is None:
        return 0.0
    if token_weights is not None:
        values = values * token_weights
    return torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device)).sum(-1)


def token_kl(ref_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per-position KL divergence of the policy's next-token distribution from the reference's.

    .. math::

        D_t = \\mathrm{KL}\\big(\\pi_{ref}(\\cdot\\mid x, y_{<t}) \\,\\|\\, \\pi(\\cdot\\mid x, y_{<t})\\big)
            = \\sum_v \\pi_{ref}(v)\\,(\\log\\pi_{ref}(v) - \\log\\pi(v))

    The sequential KL of Zeng et al. (2024), "Token-level Direct Preference Optimization", summed over the
    completion by :func:`tdpo1_loss` / :func:`tdpo2_loss`.

    Args: ``ref_logits``, ``logits`` ``[batch, time, vocab]``. Returns ``[batch, time]``.
    """
    check_same_shape(ref_logits=ref_logits, logits=logits)
    ref_logp = F.log_softmax(ref_logits, dim=-1)
    return (ref_logp.exp() * (ref_logp - F.log_softmax(logits, dim=-1))).sum(-1)


def _tdpo_parts(pc, pr, rc, rr, ckl, rkl, chosen_mask, rejected_mask, mask, weights):
    first = check_tokens(
        {
            "policy_chosen_logps": pc,
            "policy_rejected_logps": pr,
            "ref_chosen_logps": rc,
            "ref_rejected_logps": rr,
            "chosen_kl": ckl,
            "rejected_kl": rkl,
        }
    )
    cm = check_token_mask("chosen_mask", chosen_mask, first)
    rm = check_token_mask("rejected_mask", rejected_mask, first)
    check_broadcastable("mask", mask, first.shape[:1])
    check_broadcastable("weights", weights, first.shape[:1])
    margin = _masked_sum(pc - rc, cm) - _masked_sum(pr - rr, rm)
    return margin, _masked_sum(ckl, cm), _masked_sum(rkl, rm)


@register("tdpo1", inputs=TOKEN_PAIR_REF, family=_FAMILY, options=(BETA,))
def tdpo1_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    chosen_kl: torch.Tensor,
    rejected_kl: torch.Tensor,
    *,
    beta: float = 0.1,
    chosen_mask: torch.Tensor | None = None,
    rejected_mask: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """TDPO1: DPO's margin corrected by the difference of sequential token-level KL divergences.

    .. math::

        \\ell = -\\log\\sigma\\Big(\\beta\\Big[\\sum_t \\rho_{c,t} - \\sum_t \\rho_{r,t}
                 - \\big(D_{SeqKL}(y_r) - D_{SeqKL}(y_c)\\big)\\Big]\\Big),
        \\qquad D_{SeqKL}(y) = \\sum_t \\mathrm{KL}(\\pi_{ref}\\|\\pi)_t

    Zeng et al. (2024), "Token-level Direct Preference Optimization". :math:`\\rho_{\\cdot,t}` are per-token
    log ratios; the KL terms come from :func:`token_kl`.

    Args: six ``[batch, time]`` tensors; ``chosen_mask``/``rejected_mask`` ``[batch, time]`` bool; ``mask``,
    ``weights`` ``[batch]``. Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    margin, ckl, rkl = _tdpo_parts(
        policy_chosen_logps,
        policy_rejected_logps,
        ref_chosen_logps,
        ref_rejected_logps,
        chosen_kl,
        rejected_kl,
        chosen_mask,
        rejected_mask,
        mask,
        weights,
    )
    return reduce_loss(-F.logsigmoid(beta * (margin - (rkl - ckl))), reduction, mask=mask, weights=weights)


@register(
    "tdpo2",
    inputs=TOKEN_PAIR_REF,
    family=_FAMILY,
    aliases=("tdpo",),
    options=(
        BETA,
        weight_option("alpha", "weight α of the sequential KL term"),
    ),
)
def tdpo2_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    chosen_kl: torch.Tensor,
    rejected_kl: torch.Tensor,
    *,
    beta: float = 0.1,
    alpha: float = 0.5,
    chosen_mask: torch.Tensor | None = None,
    rejected_mask: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """TDPO2: TDPO1 with the KL difference scaled by α and the chosen KL's gradient stopped.

    .. math::

        \\ell = -\\log\\sigma\\Big(\\beta\\Big[\\sum_t \\rho_{c,t} - \\sum_t \\rho_{r,t}
                 - \\alpha\\big(D_{SeqKL}(y_r) - \\operatorname{sg}[D_{SeqKL}(y_c)]\\big)\\Big]\\Big)

    Zeng et al. (2024), "Token-level Direct Preference Optimization" (the variant the paper recommends).

    Args: as :func:`tdpo1_loss`. Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    margin, ckl, rkl = _tdpo_parts(
        policy_chosen_logps,
        policy_rejected_logps,
        ref_chosen_logps,
        ref_rejected_logps,
        chosen_kl,
        rejected_kl,
        chosen_mask,
        rejected_mask,
        mask,
        weights,
    )
    logits = margin - alpha * (rkl - ckl.detach())
    return reduce_loss(-F.logsigmoid(beta * logits), reduction, mask=mask, weights=weights)


@register(
    "sparse_po",
    inputs=(
        *TOKEN_PAIR_REF[:4],
        keyword("chosen_token_weights", "token_weights", "[batch, T]", required=True),
        keyword("rejected_token_weights", "token_weights", "[batch, T]", required=True),
        keyword("chosen_kl", "token_kl", "[batch, T]"),
        keyword("rejected_kl", "token_kl", "[batch, T]"),
        *TOKEN_MASKS,
    ),
    family=_FAMILY,
    aliases=("sparsepo",),
    options=(BETA,),
)
def sparse_po_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    chosen_token_weights: torch.Tensor,
    rejected_token_weights: torch.Tensor,
    chosen_kl: torch.Tensor | None = None,
    rejected_kl: torch.Tensor | None = None,
    beta: float = 0.1,
    chosen_mask: torch.Tensor | None = None,
    rejected_mask: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """SparsePO: token-level rewards (and optional token KL terms) weighted by soft token masks.

    .. math::

        \\ell = -\\log\\sigma\\Big(\\beta\\Big[\\sum_t m_{c,t}\\rho_{c,t} - \\sum_t m_{r,t}\\rho_{r,t}
                 - \\Big(\\sum_t m_{r,t} D_{r,t} - \\sum_t m_{c,t} D_{c,t}\\Big)\\Big]\\Big)

    Christopoulou et al. (2024), "SparsePO: Controlling Preference Alignment of LLMs via Sparse Token Masks".
    The token masks :math:`m \\in [0, 1]` are the caller's: a learned mask head (``torch.sigmoid(head(h))``,
    trained through this loss) or fixed weights from model activations. :math:`D` are the per-token KL terms of
    :func:`token_kl`; without them the KL part is dropped. With all :math:`m = 1` this is TDPO1 (with KL) or
    DPO (without).

    Args: four ``[batch, time]`` log-probability tensors, token weights and KL terms ``[batch, time]``;
    ``chosen_mask``/``rejected_mask`` ``[batch, time]`` bool; ``mask``, ``weights`` ``[batch]``.
    """
    if (chosen_kl is None) != (rejected_kl is None):
        raise InputError("give both chosen_kl and rejected_kl, or neither")
    first = check_tokens(
        {
            "policy_chosen_logps": policy_chosen_logps,
            "policy_rejected_logps": policy_rejected_logps,
            "ref_chosen_logps": ref_chosen_logps,
            "ref_rejected_logps": ref_rejected_logps,
            "chosen_token_weights": chosen_token_weights,
            "rejected_token_weights": rejected_token_weights,
            "chosen_kl": chosen_kl,
            "rejected_kl": rejected_kl,
        }
    )
    cm = check_token_mask("chosen_mask", chosen_mask, first)
    rm = check_token_mask("rejected_mask", rejected_mask, first)
    check_broadcastable("mask", mask, first.shape[:1])
    check_broadcastable("weights", weights, first.shape[:1])
    reward = _masked_sum(policy_chosen_logps - ref_chosen_logps, cm, chosen_token_weights) - _masked_sum(
        policy_rejected_logps - ref_rejected_logps, rm, rejected_token_weights
    )
    kl = _masked_sum(rejected_kl, rm, rejected_token_weights) - _masked_sum(chosen_kl, cm, chosen_token_weights)
    return reduce_loss(-F.logsigmoid(beta * (reward - kl)), reduction, mask=mask, weights=weights)


@register(
    "token_nll",
    inputs=(Input("logps", "token_logps", "[batch, T]"), keyword("mask", "token_mask", "[batch, T]")),
    family=_FAMILY,
    aliases=("masked_nll",),
    options=(Option("length_normalize", bool, doc="divide each NLL by its number of tokens"),),
)
def token_nll_loss(
    logps: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    length_normalize: bool = True,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Negative log-likelihood (SFT term) of each sequence over its valid tokens.

    .. math::

        \\ell_i = -\\frac{1}{|\\{t: m_{it}\\}|}\\sum_{t: m_{it}} \\log\\pi(y_{it}\\mid x_i, y_{i,<t})

    (without the division when ``length_normalize=False``). Maximum likelihood / supervised fine-tuning, the
    auxiliary term of e.g. RPO (Pang et al. 2024, "Iterative Reasoning Preference Optimization"). Sequences with no
    valid token give 0 and are left out of the ``"mean"``.

    Args: ``logps`` ``[batch, time]``; ``mask`` ``[batch, time]`` bool; ``weights`` ``[batch]``.
    Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    first = check_tokens({"logps": logps})
    token_mask = check_token_mask("mask", mask, first)
    check_broadcastable("weights", weights, first.shape[:1])
    values = -_masked_sum(logps, token_mask)
    if length_normalize:
        values = values / token_mask.sum(-1).clamp(min=1).to(values.dtype)
    return reduce_loss(values, reduction, mask=token_mask.any(-1), weights=weights)
