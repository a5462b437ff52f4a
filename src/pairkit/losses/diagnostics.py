"""Diagnostics for preference optimisation (pure torch functions, not losses).

Implicit-reward margins and accuracy; ranking accuracy, idealised ranking accuracy and the alignment gap (Chen et
al. 2024); the CHES score of likelihood displacement from hidden states (Razin et al. 2024); gradient entanglement
of the chosen and rejected log-likelihoods (Yuan et al. 2024); and over-optimisation indicators from next-token
logits (top-k entropy and top-k probability mass). Accuracies of empty / fully masked input are 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import torch

from pairkit.errors import InputError
from pairkit.losses._core import Reduction, check_broadcastable, reduce_loss
from pairkit.losses._core import check_float_tensors as _check_rows

__all__ = [
    "GradientEntanglement",
    "alignment_gap",
    "ches_score",
    "gradient_entanglement",
    "idealized_ranking_accuracy",
    "implicit_reward_accuracy",
    "implicit_reward_margins",
    "ranking_accuracy",
    "select_high_ches",
    "top_k_entropy",
    "top_k_mass",
]


def _check(mask=None, **tensors) -> torch.Tensor:
    return _check_rows(mask, None, **tensors)


def _fraction(hits: torch.Tensor, mask, like: torch.Tensor) -> torch.Tensor:
    return reduce_loss(hits.to(like.dtype), "mean", mask=mask)


def implicit_reward_margins(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
) -> torch.Tensor:
    """DPO's implicit-reward margin of each pair.

    .. math::

        m = \\beta\\Big(\\log\\frac{\\pi(y_c)}{\\pi_{ref}(y_c)} - \\log\\frac{\\pi(y_r)}{\\pi_{ref}(y_r)}\\Big)

    Rafailov et al. (2023), "Direct Preference Optimization: Your Language Model is Secretly a Reward Model"
    (TRL logs its mean as ``rewards/margins``).

    Args: four ``[batch]`` sequence log-probabilities. Returns ``[batch]``.
    """
    _check(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
    )
    return beta * ((policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps))


def implicit_reward_accuracy(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fraction of pairs whose implicit-reward margin is positive (TRL's ``rewards/accuracies``).

    .. math::

        \\mathrm{acc} = \\frac1n\\sum_i \\mathbb 1[m_i > 0]

    Rafailov et al. (2023), "Direct Preference Optimization"; :math:`m` from :func:`implicit_reward_margins`.

    Args: four ``[batch]`` log-probability tensors, ``mask`` ``[batch]``. Returns a scalar.
    """
    m = implicit_reward_margins(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta=beta
    )
    check_broadcastable("mask", mask, m.shape)
    return _fraction(m > 0, mask, m)


def ranking_accuracy(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Ranking accuracy: how often the model itself assigns the preferred response a higher likelihood.

    .. math::

        \\mathcal R(\\pi) = \\frac1n\\sum_i \\mathbb 1\\big[\\pi(y_{c,i}\\mid x_i) > \\pi(y_{r,i}\\mid x_i)\\big]

    Chen et al. (2024), "Preference Learning Algorithms Do Not Learn Preference Rankings". Unlike
    :func:`implicit_reward_accuracy` this uses the policy's likelihoods alone (pass length-normalised
    log-probabilities for the paper's normalised variant).

    Args: ``policy_chosen_logps``, ``policy_rejected_logps``, ``mask`` ``[batch]``. Returns a scalar.
    """
    first = _check(mask, policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps)
    return _fraction(policy_chosen_logps > policy_rejected_logps, mask, first)


def idealized_ranking_accuracy(
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    preference_probs: torch.Tensor,
    beta: float = 0.1,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Ranking accuracy of the exact optimum of the DPO/RLHF objective, from the reference model and the data.

    .. math::

        \\mathcal R^*(\\pi_{ref}, \\beta) = \\frac1n\\sum_i \\mathbb 1\\Big[
            \\log\\frac{\\pi_{ref}(y_{c,i})}{\\pi_{ref}(y_{r,i})}
            + \\frac1\\beta\\log\\frac{\\alpha_i}{1 - \\alpha_i} > 0
        \\Big]

    Chen et al. (2024), "Preference Learning Algorithms Do Not Learn Preference Rankings" (their Theorem 3.1):
    the optimum :math:`\\pi^* \\propto \\pi_{ref}\\,e^{r^*/\\beta}` with Bradley–Terry rewards, where
    :math:`\\alpha_i` (``preference_probs``) is the true probability that :math:`y_c` is preferred (e.g. the
    fraction of raters who chose it; 1 for unanimous pairs).

    Args: ``ref_chosen_logps``, ``ref_rejected_logps``, ``preference_probs``, ``mask`` ``[batch]``.
    Returns a scalar.
    """
    first = _check(mask, ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    alpha = torch.as_tensor(preference_probs, device=first.device, dtype=torch.float64)
    check_broadcastable("preference_probs", alpha, first.shape)
    if bool(((alpha < 0) | (alpha > 1) | torch.isnan(alpha)).any()):
        raise InputError("preference_probs must lie in [0, 1] (true probability that the chosen response wins)")
    if beta <= 0:
        raise InputError(f"beta must be > 0, got {beta!r}")
    # float64 and an exact logit (inf at alpha = 1) so unanimous pairs are always ranked correctly.
    score = (ref_chosen_logps.double() - ref_rejected_logps.double()) + torch.logit(alpha) / beta
    return _fraction(score > 0, mask, first)


def alignment_gap(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    preference_probs: torch.Tensor,
    beta: float = 0.1,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Alignment gap: idealised minus observed ranking accuracy.

    .. math::

        \\mathrm{gap} = \\mathcal R^*(\\pi_{ref}, \\beta) - \\mathcal R(\\pi)

    Chen et al. (2024), "Preference Learning Algorithms Do Not Learn Preference Rankings". See
    :func:`ranking_accuracy` and :func:`idealized_ranking_accuracy`.

    Args: four ``[batch]`` log-probability tensors, ``preference_probs``, ``mask`` ``[batch]``. Returns a scalar.
    """
    ideal = idealized_ranking_accuracy(
        ref_chosen_logps, ref_rejected_logps, preference_probs=preference_probs, beta=beta, mask=mask
    )
    return ideal - ranking_accuracy(policy_chosen_logps, policy_rejected_logps, mask=mask)


def _pooled_hidden(name: str, hidden: torch.Tensor, mask, normalize: bool) -> torch.Tensor:
    if not (isinstance(hidden, torch.Tensor) and hidden.is_floating_point()) or hidden.dim() != 3:
        raise InputError(f"{name} must be a floating-point [batch, time, dim] tensor")
    if mask is None:
        mask = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
    mask = torch.as_tensor(mask, device=hidden.device)
    if tuple(mask.shape) != tuple(hidden.shape[:2]) or mask.dtype != torch.bool:
        raise InputError(f"the mask of {name} must be bool [batch, time] = {list(hidden.shape[:2])}")
    total = torch.where(mask[..., None], hidden, torch.zeros((), dtype=hidden.dtype, device=hidden.device)).sum(1)
    if normalize:
        total = total / mask.sum(1, keepdim=True).clamp(min=1).to(total.dtype)
    return total


def ches_score(
    chosen_hidden: torch.Tensor,
    rejected_hidden: torch.Tensor,
    *,
    chosen_mask: torch.Tensor | None = None,
    rejected_mask: torch.Tensor | None = None,
    length_normalize: bool = False,
) -> torch.Tensor:
    """Centered Hidden Embedding Similarity: predicts how strongly a pair displaces the chosen likelihood.

    .. math::

        \\mathrm{CHES}(x, y^+, y^-) = \\Big\\langle \\sum_{k} h_{x, y^+_{<k}}, \\sum_{k'} h_{x, y^-_{<k'}} \\Big\\rangle
            - \\Big\\| \\sum_{k} h_{x, y^+_{<k}} \\Big\\|^2

    Razin et al. (2024), "Unintentional Unalignment: Likelihood Displacement in Direct Preference Optimization".
    :math:`h` are the model's last hidden states at the positions that predict each completion token.
    ``length_normalize=True`` averages instead of summing over tokens (the paper's length-normalised CHES).
    Higher scores mean more likelihood displacement; see :func:`select_high_ches`.

    Args: hidden states ``[batch, time, dim]`` (chosen and rejected may differ in ``time``); masks
    ``[batch, time]`` bool. Returns ``[batch]``.
    """
    pos = _pooled_hidden("chosen_hidden", chosen_hidden, chosen_mask, length_normalize)
    neg = _pooled_hidden("rejected_hidden", rejected_hidden, rejected_mask, length_normalize)
    if pos.shape != neg.shape:
        raise InputError(
            f"chosen_hidden and rejected_hidden need the same batch and dim, got {list(chosen_hidden.shape)} "
            f"and {list(rejected_hidden.shape)}"
        )
    return (pos * neg).sum(-1) - pos.square().sum(-1)


def select_high_ches(scores: torch.Tensor, *, fraction: float | None = None, k: int | None = None) -> torch.Tensor:
    """Bool mask of the pairs with the highest CHES scores (the worst for likelihood displacement).

    .. math::

        S = \\operatorname{top\\text{-}k}_i\\ \\mathrm{CHES}_i, \\qquad k = \\lceil \\text{fraction}\\cdot n\\rceil

    Razin et al. (2024), "Unintentional Unalignment: Likelihood Displacement in Direct Preference Optimization"
    filter out such pairs before training: keep ``~select_high_ches(...)``. Ties are broken by position.

    Args: ``scores`` ``[batch]``; exactly one of ``fraction`` (in [0, 1]) or ``k``. Returns ``[batch]`` bool.
    """
    if (fraction is None) == (k is None):
        raise InputError("give exactly one of fraction= or k= to select_high_ches")
    n = scores.shape[0] if scores.dim() else 1
    if fraction is not None:
        if not 0 <= fraction <= 1:
            raise InputError(f"fraction must lie in [0, 1], got {fraction!r}")
        k = int(-(-fraction * n // 1))
    if not 0 <= k <= n:
        raise InputError(f"k must lie in [0, {n}] (the number of pairs), got {k!r}")
    if torch.isnan(scores).any():
        raise InputError("scores contain NaN; compute CHES on finite hidden states")
    chosen = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    order = torch.sort(scores.reshape(-1), descending=True, stable=True).indices[:k]
    return chosen.reshape(-1).index_fill(0, order, True).reshape(scores.shape)


class GradientEntanglement(NamedTuple):
    """Inner products of the gradients of the chosen (c) and rejected (r) log-likelihoods."""

    cosine: torch.Tensor
    inner: torch.Tensor
    chosen_sq_norm: torch.Tensor
    rejected_sq_norm: torch.Tensor


def gradient_entanglement(
    chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, params: Iterable[torch.Tensor]
) -> GradientEntanglement:
    """Gradient entanglement of the chosen and rejected log-likelihoods in parameter space.

    .. math::

        \\cos = \\frac{\\langle\\nabla_\\theta\\log\\pi(y_c), \\nabla_\\theta\\log\\pi(y_r)\\rangle}
                      {\\|\\nabla_\\theta\\log\\pi(y_c)\\|\\,\\|\\nabla_\\theta\\log\\pi(y_r)\\|}

    Yuan et al. (2024), "A Common Pitfall of Margin-based Language Model Alignment: Gradient Entanglement". Under a
    margin loss a gradient step changes :math:`\\log\\pi(y_c)` in proportion to
    :math:`\\|\\nabla_c\\|^2 - \\langle\\nabla_c, \\nabla_r\\rangle`: the chosen likelihood falls when ``inner``
    exceeds ``chosen_sq_norm``, and the rejected one rises when it exceeds ``rejected_sq_norm``. Tensors with more
    than one element are summed first (a batch-level diagnostic). The graph is kept for the caller.

    Args: ``chosen_logps``, ``rejected_logps`` (any shape, attached to ``params``); ``params`` the parameters.
    Returns a :class:`GradientEntanglement` of scalars.
    """
    params = [p for p in params if p.requires_grad]
    if not params:
        raise InputError("params must contain at least one tensor with requires_grad=True")

    def flat_grad(out: torch.Tensor) -> torch.Tensor:
        grads = torch.autograd.grad(out.sum(), params, retain_graph=True, allow_unused=True)
        return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)])

    gc, gr = flat_grad(chosen_logps), flat_grad(rejected_logps)
    inner, cc, rr = gc @ gr, gc @ gc, gr @ gr
    denom = (cc * rr).sqrt()
    cosine = torch.where(
        denom > 0, inner / torch.where(denom > 0, denom, torch.ones_like(denom)), torch.zeros_like(inner)
    )
    return GradientEntanglement(cosine, inner, cc, rr)


def _top_k_log_probs(logits: torch.Tensor, k: int, mask) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(logits, torch.Tensor) and logits.is_floating_point()) or logits.dim() < 1:
        raise InputError("logits must be a floating-point tensor [..., vocab]")
    if not 1 <= k <= logits.shape[-1]:
        raise InputError(f"k must lie in [1, {logits.shape[-1]}] (the vocabulary size), got {k!r}")
    check_broadcastable("mask", mask, logits.shape[:-1])
    logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    return logp.topk(k, dim=-1).values, logp


def top_k_entropy(
    logits: torch.Tensor, *, k: int = 10, mask: torch.Tensor | None = None, reduction: Reduction = "mean"
) -> torch.Tensor:
    """Entropy of the renormalised top-k next-token distribution (collapse towards 0 signals over-optimisation).

    .. math::

        H_k = -\\sum_{v\\in\\text{top-}k} q_v\\log q_v, \\qquad q_v = \\frac{p_v}{\\sum_{u\\in\\text{top-}k} p_u}

    An over-optimisation indicator in the spirit of Rafailov et al. (2024), "Scaling Laws for Reward Model
    Overoptimization in Direct Alignment Algorithms" (entropy and mass concentration of the policy). Computed in
    at least float32 from log-softmax, so finite for any finite logits.

    Args: ``logits`` ``[..., vocab]``; ``mask`` ``[...]`` bool. Returns ``[...]`` (``"none"``) or the masked mean.
    """
    top, _ = _top_k_log_probs(logits, k, mask)
    logq = top - torch.logsumexp(top, dim=-1, keepdim=True)
    values = -(logq.exp() * logq).sum(-1)
    return reduce_loss(values.to(logits.dtype), reduction, mask=mask)


def top_k_mass(
    logits: torch.Tensor, *, k: int = 10, mask: torch.Tensor | None = None, reduction: Reduction = "mean"
) -> torch.Tensor:
    """Probability mass of the k most likely next tokens (near 1 = a collapsed, over-optimised distribution).

    .. math::

        M_k = \\sum_{v\\in\\text{top-}k} p_v

    Same indicator family as :func:`top_k_entropy` (Rafailov et al. 2024, "Scaling Laws for Reward Model
    Overoptimization in Direct Alignment Algorithms").

    Args: ``logits`` ``[..., vocab]``; ``mask`` ``[...]`` bool. Returns ``[...]`` (``"none"``) or the masked mean.
    """
    top, _ = _top_k_log_probs(logits, k, mask)
    return reduce_loss(torch.logsumexp(top, dim=-1).exp().to(logits.dtype), reduction, mask=mask)
