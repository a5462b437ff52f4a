"""Preference-data variants beyond the DPO family: unlearning with only forget data (FLAT) and preference trees (TPO).

Token-level inputs follow :mod:`pairkit.losses.preference_token`: per-token log-probabilities ``[batch, T]`` of the
realised tokens with bool token masks; the pair trainer provides them for (chosen, rejected) pairs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pairkit._spec import Input, Interval, Option
from pairkit.errors import InputError
from pairkit.losses._checks import check_token_mask, check_tokens
from pairkit.losses._core import TOKEN_MASKS, Reduction, check_broadcastable, reduce_loss, register

__all__ = ["FLAT_DIVERGENCES", "adaptive_step_rewards", "flat_loss", "tpo_loss"]

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
        policy_chosen_logps: ``[batch, T]`` token log-probabilities of the template answers.
        policy_rejected_logps: ``[batch, T]`` token log-probabilities of the answers to forget.
        chosen_mask, rejected_mask: ``[batch, T]`` bool; mask, weights: ``[batch]``.
    Returns ``[batch]`` with ``reduction="none"``, else a scalar. Pairs with an empty answer give 0.
    """
    first = check_tokens({"policy_chosen_logps": policy_chosen_logps, "policy_rejected_logps": policy_rejected_logps})
    cm = check_token_mask("chosen_mask", chosen_mask, first)
    rm = check_token_mask("rejected_mask", rejected_mask, first)
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


# ------------------------------------------------------------------------------------------------ TPO


def adaptive_step_rewards(
    token_logratios: torch.Tensor, step_index: torch.Tensor, hidden_states: torch.Tensor
) -> torch.Tensor:
    r"""TPO's adaptive step reward: each response's reward as a similarity-weighted mean of its step rewards.

    For response ``n`` of a preference tree, step ``s`` (tokens with ``step_index == s``, ``s >= 1``; 0 marks
    tokens outside any step) has the reward :math:`\bar r_{n,s}` = mean token log-ratio
    :math:`\log\pi - \log\pi_{ref}` over its tokens and the weight
    :math:`w_{n,s} = 1 + \cos(\bar h_{n,s}, \bar h_{0,s})`, the similarity of its mean hidden state to the same
    step of response 0 (the tree's reference branch); steps that response 0 lacks get weight 0. Then

    .. math::
        r_n = \frac{\sum_s w_{n,s}\,\bar r_{n,s}}{\sum_s w_{n,s}}

    (0 for a response without weighted steps). Shared steps — the common prefix of tree branches — weigh more,
    diverging ones less. The weights are constants here (the authors' code lets gradients flow through the
    cosines; the paper treats them as reward adjustments).

    Liao, Chu & Wang (2025), "TPO: Aligning Large Language Models with Multi-branch & Multi-step Preference Trees"
    (ICLR); as the authors' ``compute_step_weights``/``compute_weighted_logits`` (MrBlankness/TPO), vectorised.

    Args:
        token_logratios: ``[batch, list, T]``; step_index: ``[batch, list, T]`` integers ``>= 0``;
        hidden_states: ``[batch, list, T, dim]``.
    Returns ``[batch, list]``.
    """
    if step_index.dtype.is_floating_point or step_index.dtype == torch.bool:
        raise InputError(f"step_index must be an integer tensor, got {step_index.dtype}")
    if tuple(step_index.shape) != tuple(token_logratios.shape) or hidden_states.shape[:-1] != token_logratios.shape:
        raise InputError(
            f"token_logratios, step_index [batch, list, T] and hidden_states [batch, list, T, dim] must agree, got "
            f"{list(token_logratios.shape)}, {list(step_index.shape)}, {list(hidden_states.shape)}"
        )
    if bool((step_index < 0).any()):
        raise InputError("step_index must be >= 0 (0 = not part of a step)")
    b, n, _ = token_logratios.shape
    steps = int(step_index.max()) + 1 if step_index.numel() else 1
    one_hot = F.one_hot(step_index.long(), steps).to(token_logratios.dtype)[..., 1:]  # [b, n, T, S]
    counts = one_hot.sum(2)  # [b, n, S]
    present = counts > 0
    denom = counts.clamp(min=1)
    step_reward = torch.einsum("bnts,bnt->bns", one_hot, token_logratios) / denom
    with torch.no_grad():
        h = hidden_states.detach().to(token_logratios.dtype)
        step_hidden = torch.einsum("bnts,bntd->bnsd", one_hot, h) / denom.unsqueeze(-1)
        cos = F.cosine_similarity(step_hidden, step_hidden[:, :1].expand_as(step_hidden), dim=-1, eps=1e-8)
        weight = torch.where(present & present[:, :1], 1.0 + cos, torch.zeros_like(cos))
    total = weight.sum(-1)
    weighted = (weight * step_reward).sum(-1)
    return torch.where(total > 0, weighted / torch.where(total > 0, total, torch.ones_like(total)), 0.0 * weighted)


@register(
    "tpo",
    inputs=(
        Input("policy_logps", "token_logps", "[batch, list, T]"),
        Input("ref_logps", "token_logps", "[batch, list, T]"),
        Input("labels", "grades", "[batch, list]"),
        Input("step_index", "step_index", "[batch, list, T]"),
        Input("hidden_states", "embeddings", "[batch, list, T, dim]"),
    ),
    family="preference_tree",
    aliases=("tree_preference_optimization", "adaptive_step_reward"),
    options=(Option("beta", float, Interval(0, None, closed="neither"), doc="inverse temperature β"),),
)
def tpo_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    labels: torch.Tensor,
    step_index: torch.Tensor,
    hidden_states: torch.Tensor,
    *,
    beta: float = 0.1,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""TPO: rank the responses of a preference tree by their adaptive step rewards.

    With :math:`r_n` the adaptive step rewards (:func:`adaptive_step_rewards`) of the ``K`` responses and
    :math:`y_n` their scores:

    .. math::
        \ell = \frac{1}{|\{(i,j): y_i > y_j\}|}\sum_{y_i > y_j} -\log\sigma\big(\beta\,(r_i - r_j)\big),

    the pairwise logistic ranking loss over all ordered pairs (ties give no pair).

    Liao, Chu & Wang (2025), "TPO: Aligning Large Language Models with Multi-branch & Multi-step Preference Trees"
    (ICLR). Reading taken: the authors' released ``TPOLoss`` wraps their pairwise ranking loss (which also counts
    tied pairs as :math:`\log 2`) in a further :math:`-\log\sigma(\beta\,\cdot)`, which *decreases* as the ranking
    loss grows; this uses the ranking loss itself on the β-scaled rewards, as the paper's preference-list-ranking
    objective. Its inputs (step segmentation and hidden states of every branch) come from tree data, so it is in
    its own family (``preference_tree``); :func:`pairkit.train.train_listwise` trains it on responses given as
    lists of steps.

    Args:
        policy_logps, ref_logps: ``[batch, K, T]`` token log-probabilities (0 outside the steps is fine);
        labels: ``[batch, K]`` scores; step_index: ``[batch, K, T]``; hidden_states: ``[batch, K, T, dim]``;
        mask, weights: ``[batch]``.
    Returns ``[batch]`` with ``reduction="none"``, else a scalar (trees without an ordered pair give 0).
    """
    first = policy_logps
    if not (isinstance(first, torch.Tensor) and first.is_floating_point()) or first.dim() != 3:
        raise InputError("policy_logps must be a floating-point [batch, list, T] tensor")
    if ref_logps.shape != first.shape:
        raise InputError(f"ref_logps must have the shape {list(first.shape)}, got {list(ref_logps.shape)}")
    labels = torch.as_tensor(labels, device=first.device)
    if tuple(labels.shape) != tuple(first.shape[:2]):
        raise InputError(f"labels must be [batch, list] = {list(first.shape[:2])}, got {list(labels.shape)}")
    check_broadcastable("mask", mask, first.shape[:1])
    check_broadcastable("weights", weights, first.shape[:1])
    rewards = beta * adaptive_step_rewards(first - ref_logps, step_index, hidden_states)
    pairs = labels.unsqueeze(-1) > labels.unsqueeze(-2)
    logistic = -F.logsigmoid(rewards.unsqueeze(-1) - rewards.unsqueeze(-2))
    per_pair = torch.where(pairs, logistic, torch.zeros_like(logistic))
    count = pairs.sum((-2, -1))
    values = per_pair.sum((-2, -1)) / count.clamp(min=1).to(per_pair.dtype)
    valid = count > 0
    if mask is not None:
        valid = valid & torch.as_tensor(mask, dtype=torch.bool, device=valid.device)
    return reduce_loss(torch.where(valid, values, torch.zeros_like(values)), reduction, mask=valid, weights=weights)
