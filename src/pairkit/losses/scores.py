"""Score adapters and the pairwise cores the preference and reward losses are built from (the Rax pattern).

An adapter turns model outputs into scores — :func:`implicit_rewards` (DPO's
:math:`\\beta f'(\\pi/\\pi_{ref})`, optionally per token via ``lengths``), :func:`ld_dpo_logps`, :func:`wpo_weights`
— and a core turns a score margin into a loss: :func:`logistic_loss` (Bradley–Terry), :func:`hinge_loss`,
:func:`squared_loss`, and :func:`sigmoid_binary_cross_entropy` for soft labels. ``dpo_loss`` is
``logistic_loss`` of the implicit-reward margin, which is also ``reward_bradley_terry`` on implicit rewards and
``pairwise_logistic_loss`` on two-item lists.

f-divergence scores (Wang et al. 2023, "Beyond Reverse KL: Generalizing Direct Preference Optimization with
Diverse Divergence Constraints") are plain callables of the log ratio :math:`u = \\log(\\pi/\\pi_{ref})`:
:func:`reverse_kl_score` (DPO), :func:`forward_kl_score`, :func:`js_divergence_score`,
:func:`alpha_divergence_score`. TRL's names for them are resolved once, by :func:`f_divergence_score`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from pairkit.errors import InputError
from pairkit.losses._checks import check_lengths
from pairkit.losses._core import check_same_shape

__all__ = [
    "F_DIVERGENCE_SCORES",
    "alpha_divergence_score",
    "bco_reward_shift",
    "f_divergence_score",
    "forward_kl_score",
    "hinge_loss",
    "implicit_rewards",
    "js_divergence_score",
    "ld_dpo_logps",
    "length_normalized",
    "logistic_loss",
    "reverse_kl_score",
    "sigmoid_binary_cross_entropy",
    "squared_loss",
    "token_log_sum_sq_probs",
    "wpo_weights",
]

# exp() of anything above this stays finite in the dtype (TRL uses the same bounds for the alpha-divergence)
_EXP_CLAMP = {torch.float16: 11.0, torch.bfloat16: 80.0, torch.float32: 80.0, torch.float64: 700.0}

Score = Callable[[torch.Tensor], torch.Tensor]


# ------------------------------------------------------------------------------------------- f-divergences


def reverse_kl_score(logratios: torch.Tensor) -> torch.Tensor:
    """The reverse-KL score :math:`f'(e^u) = u` — the log ratio itself, as in DPO."""
    return logratios


def forward_kl_score(logratios: torch.Tensor) -> torch.Tensor:
    """The forward-KL score :math:`f'(e^u) = 1 - e^{-u}` (exponent clamped to stay finite in the dtype)."""
    limit = _EXP_CLAMP.get(logratios.dtype, 80.0)
    return 1.0 - torch.exp((-logratios).clamp(max=limit))


def js_divergence_score(logratios: torch.Tensor) -> torch.Tensor:
    """The Jensen–Shannon score :math:`f'(e^u) = \\log 2 + \\log\\sigma(u)`."""
    return math.log(2.0) + F.logsigmoid(logratios)


def alpha_divergence_score(logratios: torch.Tensor, *, alpha: float = 0.5) -> torch.Tensor:
    """The α-divergence score :math:`f'(e^u) = (e^{(\\alpha-1)u} - 1)/(\\alpha - 1)`; α → 1 is reverse KL.

    The exponent is clamped so the score stays finite in the input dtype, as TRL's ``f_alpha_divergence_coef``.
    """
    if abs(alpha - 1.0) < 1e-6:
        return logratios
    limit = _EXP_CLAMP.get(logratios.dtype, 80.0)
    t = ((alpha - 1.0) * logratios).float().clamp(max=limit)
    return torch.expm1(t).to(logratios.dtype) / (alpha - 1.0)


# TRL's ``f_divergence_type`` names
F_DIVERGENCE_SCORES: dict[str, Callable[..., torch.Tensor]] = {
    "reverse_kl": reverse_kl_score,
    "forward_kl": forward_kl_score,
    "js_divergence": js_divergence_score,
    "alpha_divergence": alpha_divergence_score,
}


def f_divergence_score(f_divergence: str | Score, alpha: float = 0.5) -> Score:
    """The score callable for a TRL ``f_divergence_type`` name (with its α), or ``f_divergence`` if callable."""
    if callable(f_divergence):
        return f_divergence
    if f_divergence not in F_DIVERGENCE_SCORES:
        raise InputError(
            f"f_divergence must be one of {tuple(F_DIVERGENCE_SCORES)} or a callable, got {f_divergence!r}"
        )
    score = F_DIVERGENCE_SCORES[f_divergence]
    return functools.partial(score, alpha=alpha) if score is alpha_divergence_score else score


# ------------------------------------------------------------------------------------------------ adapters


def length_normalized(scores: torch.Tensor, lengths, *, name: str = "lengths") -> torch.Tensor:
    """Per-token scores :math:`s / |y|` (lengths clamped at 1); ``lengths=None`` returns ``scores``."""
    return scores if lengths is None else scores / check_lengths(name, lengths, scores)


def implicit_rewards(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    *,
    beta: float = 1.0,
    f: Score = reverse_kl_score,
    lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """DPO's implicit reward of each response: the scaled f-divergence score of its density ratio.

    .. math::

        r(y) = \\beta\\,\\frac{f'\\big(\\pi(y)/\\pi_{ref}(y)\\big)}{|y|}

    Rafailov et al. (2023), "Direct Preference Optimization: Your Language Model is Secretly a Reward Model";
    ``f`` from Wang et al. (2023), "Beyond Reverse KL" (default: the log ratio); the division by ``lengths``
    only when given (token-averaged reward).

    Args: ``policy_logps``, ``ref_logps`` any same shape; ``lengths`` broadcastable. Returns that shape.
    """
    check_same_shape(policy_logps=policy_logps, ref_logps=ref_logps)
    return beta * length_normalized(f(policy_logps - ref_logps), lengths)


def token_log_sum_sq_probs(logits: torch.Tensor) -> torch.Tensor:
    """Per-position :math:`\\log\\sum_v \\pi(v)^2` from next-token logits (WPO's alignment term).

    .. math::

        \\log\\sum_v \\pi(v)^2 = \\mathrm{logsumexp}(2 z) - 2\\,\\mathrm{logsumexp}(z)

    Zhou et al. (2024), "WPO: Enhancing RLHF with Weighted Preference Optimization".

    Args: ``logits`` ``[..., vocab]``. Returns ``[...]``.
    """
    return torch.logsumexp(2.0 * logits, dim=-1) - 2.0 * torch.logsumexp(logits, dim=-1)


def _token_args(**tensors: torch.Tensor) -> None:
    check_same_shape(**tensors)
    for name, t in tensors.items():
        if t.dim() != 2:
            raise InputError(f"{name} must be [batch, T] per-token values, got shape {list(t.shape)}")


def wpo_weights(
    chosen_token_logps: torch.Tensor,
    rejected_token_logps: torch.Tensor,
    chosen_mask: torch.Tensor,
    rejected_mask: torch.Tensor,
    *,
    chosen_log_sum_sq_probs: torch.Tensor | None = None,
    rejected_log_sum_sq_probs: torch.Tensor | None = None,
) -> torch.Tensor:
    """WPO pair weights: the product of each response's length-normalised (aligned) probability.

    .. math::

        w = \\exp\\Big(\\frac{1}{|y_c|}\\sum_t \\log\\frac{\\pi(y_{c,t})}{\\sum_v \\pi(v)^2}\\Big)
            \\exp\\Big(\\frac{1}{|y_r|}\\sum_t \\log\\frac{\\pi(y_{r,t})}{\\sum_v \\pi(v)^2}\\Big)

    Zhou et al. (2024), "WPO: Enhancing RLHF with Weighted Preference Optimization" (Eq. 2). Without
    the ``*_log_sum_sq_probs`` terms (:func:`token_log_sum_sq_probs`) the plain mean log-probability is used.
    The weights carry no gradient. TRL's ``use_weighting=True`` equals
    ``loss_fn(..., weights=w, reduction="none").mean()`` (TRL divides by the batch size, not by Σw as
    ``reduction="mean"`` does).

    Args: per-token log-probs and 0/1 masks ``[batch, T]``. Returns ``[batch]``.
    """
    _token_args(
        chosen_token_logps=chosen_token_logps, rejected_token_logps=rejected_token_logps,
        chosen_mask=chosen_mask, rejected_mask=rejected_mask,
    )  # fmt: skip

    def mean_aligned(logps, mask, lssp):
        with torch.no_grad():
            if lssp is not None:
                check_same_shape(token_logps=logps, log_sum_sq_probs=lssp)
                logps = logps - lssp
            mask = mask.to(logps.dtype)
            return (logps * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)

    return torch.exp(
        mean_aligned(chosen_token_logps, chosen_mask, chosen_log_sum_sq_probs)
        + mean_aligned(rejected_token_logps, rejected_mask, rejected_log_sum_sq_probs)
    )


def ld_dpo_logps(
    chosen_token_logps: torch.Tensor,
    rejected_token_logps: torch.Tensor,
    chosen_mask: torch.Tensor,
    rejected_mask: torch.Tensor,
    *,
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """LD-DPO sequence log-probs: full weight on the shared-length prefix, ``alpha`` on the longer tail.

    .. math::

        \\log\\hat\\pi(y) = \\sum_{t \\le \\min(|y_c|,|y_r|)} \\log\\pi(y_t)
                          + \\alpha \\sum_{t > \\min(|y_c|,|y_r|)} \\log\\pi(y_t)

    Liu et al. (2024), "Length Desensitization in Direct Preference Optimization". Positions count
    completion tokens only (``*_mask``), as TRL's ``ld_alpha`` does; apply it to the policy's and the
    reference's per-token log-probs alike, then feed any loss here. α = 1 gives the plain sums.

    Args: per-token log-probs and 0/1 masks ``[batch, T]``. Returns (chosen, rejected), each ``[batch]``.
    """
    _token_args(
        chosen_token_logps=chosen_token_logps, rejected_token_logps=rejected_token_logps,
        chosen_mask=chosen_mask, rejected_mask=rejected_mask,
    )  # fmt: skip
    cm, rm = chosen_mask.bool(), rejected_mask.bool()
    shared = torch.minimum(cm.sum(-1), rm.sum(-1)).unsqueeze(-1)

    def weighted(logps, m):
        # weight 1 on the first `shared` completion tokens, alpha after them, 0 off the completion
        in_head = m.long().cumsum(-1) <= shared
        weight = torch.where(in_head, 1.0, alpha).to(logps.dtype) * m.to(logps.dtype)
        return (logps * weight).sum(-1)

    return weighted(chosen_token_logps, cm), weighted(rejected_token_logps, rm)


def bco_reward_shift(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    *,
    mean: float | torch.Tensor = 0.0,
    count: int = 0,
) -> tuple[torch.Tensor, int]:
    """Update BCO's running reward shift δ (the mean of every implicit reward seen so far).

    .. math::

        \\delta' = \\frac{n\\,\\delta + \\sum_i (r_{c,i} + r_{r,i})}{n + 2B}

    Jung et al. (2024), "Binary Classifier Optimization for Large Language Model Alignment".
    Pass ``mean``/``count`` returned by the previous call (start with 0, 0); rewards are :math:`\\beta\\rho`.

    Args: ``chosen_rewards``, ``rejected_rewards`` ``[batch]``. Returns (new δ as a 0-d tensor, new count).
    """
    check_same_shape(chosen_rewards=chosen_rewards, rejected_rewards=rejected_rewards)
    with torch.no_grad():
        total = chosen_rewards.sum() + rejected_rewards.sum()
        new_count = count + 2 * chosen_rewards.numel()
        if new_count == 0:
            return torch.as_tensor(mean, dtype=chosen_rewards.dtype), 0
        new_mean = (torch.as_tensor(mean, dtype=total.dtype) * count + total) / new_count
    return new_mean, new_count


# ------------------------------------------------------------------------------------------ pairwise cores


def sigmoid_binary_cross_entropy(logits: torch.Tensor, labels: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Binary cross-entropy of ``logits`` against (soft) ``labels`` in [0, 1], elementwise.

    .. math::

        \\ell = -p\\log\\sigma(z) - (1 - p)\\log\\sigma(-z)

    With ``labels = 1`` this is the Bradley–Terry / logistic loss :math:`-\\log\\sigma(z)` (Bradley & Terry
    1952, "Rank Analysis of Incomplete Block Designs"); soft labels give label smoothing (cDPO), annotator
    fractions (soft Bradley–Terry) or margin-matching targets (MMPO). Same as optax's
    ``sigmoid_binary_cross_entropy``.

    Args: ``logits`` any shape; ``labels`` a number or broadcastable tensor. Returns the shape of ``logits``.
    """
    if isinstance(labels, (int, float)) and labels == 1.0:
        return -F.logsigmoid(logits)
    return -labels * F.logsigmoid(logits) - (1.0 - labels) * F.logsigmoid(-logits)


def logistic_loss(margins: torch.Tensor) -> torch.Tensor:
    """The logistic (Bradley–Terry) loss of a score margin, :math:`-\\log\\sigma(m)`."""
    return -F.logsigmoid(margins)


def hinge_loss(margins: torch.Tensor) -> torch.Tensor:
    """The hinge loss of a score margin, :math:`\\max(0, 1 - m)` (SLiC; Zhao et al. 2023, "SLiC-HF")."""
    return torch.relu(1.0 - margins)


def squared_loss(margins: torch.Tensor, target: float | torch.Tensor) -> torch.Tensor:
    """The squared loss of a margin against a target, :math:`(m - t)^2` (IPO regresses onto :math:`1/(2\\beta)`)."""
    return (margins - target) ** 2
