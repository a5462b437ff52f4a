"""The objectives of the online methods that are not a pairwise loss on (chosen, rejected): group-relative policy
gradients (RLOO, GRPO), pairwise policy gradient (P3O), soft SPPO, SuperHF's filtered fine-tuning, HyPO's KL on
online samples, and the consistency rate of CREAM.

Shapes: ``k`` samples per prompt; token tensors ``[batch, T]`` with a boolean ``mask`` of scored completion
tokens; per-sample values ``[batch]``; rewards per prompt group ``[n_prompts, k]``. Every function is pure torch
(numpy for the rank statistics) so it can be checked against the peers' code on the same tensors.
"""

from __future__ import annotations

import numpy as np
import torch

from pairkit.errors import InputError

__all__ = [
    "cream_consistency",
    "grpo_loss",
    "group_advantages",
    "p3o_loss",
    "rloo_loss",
    "score_function_kl",
    "sppo_loss",
    "superhf_loss",
    "win_rates",
]


def _masked_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum(-1)


def group_advantages(
    rewards: torch.Tensor, *, baseline: str = "mean", scale: str = "group", eps: float = 1e-4
) -> torch.Tensor:
    """Advantages of ``k`` samples per prompt relative to their own group, ``[n_prompts, k]`` → same shape.

    .. math::

        \\text{GRPO: } A_{ij} = \\frac{r_{ij} - \\bar r_i}{\\operatorname{std}(r_{i\\cdot}) + \\epsilon},\\qquad
        \\text{RLOO: } A_{ij} = r_{ij} - \\frac{1}{k-1}\\sum_{l\\ne j} r_{il}

    GRPO: Shao et al. (2024), "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language
    Models" (``baseline="mean"``; ``scale`` ``"group"`` divides by the group's unbiased standard deviation,
    ``"batch"`` by the whole batch's, ``"none"`` not at all, as in Liu et al. (2025), "Understanding R1-Zero-Like
    Training: A Critical Perspective"). RLOO: Ahmadian et al. (2024), "Back to Basics: Revisiting REINFORCE
    Style Optimization for Learning from Human Feedback in LLMs" (``baseline="leave_one_out"``; ``scale="batch"``
    then standardises the advantages over the batch, TRL's ``normalize_advantages``). TRL's ``GRPOTrainer`` and
    ``RLOOTrainer`` use the same ε = 1e-4.
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise InputError(f"rewards must be [n_prompts, k] with k >= 2, got {list(rewards.shape)}")
    if not torch.isfinite(rewards).all():
        raise InputError("rewards must be finite")
    k = rewards.shape[1]
    if baseline == "mean":
        adv = rewards - rewards.mean(1, keepdim=True)
        if scale == "group":
            adv = adv / (rewards.std(1, keepdim=True) + eps)
        elif scale == "batch":
            adv = adv / (rewards.std() + eps)
        elif scale != "none":
            raise InputError(f"scale must be 'group', 'batch' or 'none', got {scale!r}")
        return adv
    if baseline == "leave_one_out":
        adv = rewards - (rewards.sum(1, keepdim=True) - rewards) / (k - 1)
        if scale == "batch":
            adv = (adv - adv.mean()) / (adv.std() + eps)
        elif scale not in ("none", "group"):
            raise InputError(f"scale must be 'batch' or 'none' for RLOO, got {scale!r}")
        return adv
    raise InputError(f"baseline must be 'mean' (GRPO) or 'leave_one_out' (RLOO), got {baseline!r}")


def grpo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    ref_logps: torch.Tensor | None = None,
    beta: float = 0.0,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    aggregation: str = "sequence",
    max_length: int | None = None,
) -> torch.Tensor:
    """GRPO's clipped surrogate with a per-token KL penalty; per-sequence values ``[batch]``.

    .. math::

        \\ell_{b,t} = -\\min\\big(\\rho_{b,t} A_b,\\ \\operatorname{clip}(\\rho_{b,t}, 1-\\epsilon_l, 1+\\epsilon_h)
        A_b\\big)
        + \\beta\\Big(\\tfrac{\\pi_{ref}}{\\pi_\\theta} - \\log\\tfrac{\\pi_{ref}}{\\pi_\\theta} - 1\\Big)_{b,t},
        \\qquad \\rho_{b,t} = \\frac{\\pi_\\theta(y_{b,t}\\mid\\cdot)}{\\pi_{old}(y_{b,t}\\mid\\cdot)}

    Shao et al. (2024), "DeepSeekMath" (the KL term is Schulman's (2020) k3 estimator, "Approximating KL
    Divergence"). ``aggregation``: ``"sequence"`` — each sequence's token mean (GRPO; TRL ``loss_type="grpo"``),
    ``"token"`` — the batch's token mean (TRL ``"bnpo"``), ``"constant"`` — token sum over ``batch · max_length``
    (Dr. GRPO, Liu et al. 2025; TRL ``"dr_grpo"``). The values returned average to the loss of the batch: their
    mean is TRL's loss on the same tensors.

    Shapes: ``logps``, ``old_logps``, ``ref_logps`` ``[batch, T]`` (per-token log-probabilities of the policy,
    the sampling policy and the reference), ``mask`` ``[batch, T]`` bool, ``advantages`` ``[batch]``.
    """
    m = mask.to(logps.dtype)
    coef = torch.exp(logps - old_logps)
    adv = advantages.to(logps.dtype)[:, None]
    per_token = -torch.min(coef * adv, torch.clamp(coef, 1 - epsilon_low, 1 + epsilon_high) * adv)
    if beta:
        if ref_logps is None:
            raise InputError("grpo_loss with beta > 0 needs ref_logps")
        d = ref_logps - logps
        per_token = per_token + beta * (torch.exp(d) - d - 1)
    if aggregation == "sequence":
        return _masked_sum(per_token, m) / m.sum(-1).clamp_min(1.0)
    if aggregation == "token":
        return _masked_sum(per_token, m) * (len(m) / m.sum().clamp_min(1.0))
    if aggregation == "constant":
        if max_length is None:
            raise InputError("grpo_loss(aggregation='constant') needs max_length (the completion budget)")
        return _masked_sum(per_token, m) / max_length
    raise InputError(f"aggregation must be 'sequence', 'token' or 'constant', got {aggregation!r}")


def rloo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
) -> torch.Tensor:
    """RLOO's sequence-level clipped REINFORCE surrogate; per-sequence values ``[batch]``.

    .. math::

        \\ell_b = -\\min\\big(\\rho_b A_b,\\ \\operatorname{clip}(\\rho_b, 1-\\epsilon_l, 1+\\epsilon_h) A_b\\big),
        \\qquad \\rho_b = \\exp\\Big(\\sum_t (\\log\\pi_\\theta - \\log\\pi_{old})_{b,t}\\Big)

    Ahmadian et al. (2024), "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human
    Feedback in LLMs": with one update per batch :math:`\\rho = 1` and the gradient is REINFORCE with the
    leave-one-out baseline (the KL penalty is in the reward, see :func:`group_advantages`). TRL ``RLOOTrainer``.
    """
    m = mask.to(logps.dtype)
    coef = torch.exp(_masked_sum(logps, m) - _masked_sum(old_logps, m))
    adv = advantages.to(logps.dtype)
    return -torch.min(coef * adv, torch.clamp(coef, 1 - epsilon_low, 1 + epsilon_high) * adv)


def p3o_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    rewards: torch.Tensor,
    pairs: torch.Tensor,
    *,
    epsilon: float = 0.2,
    clipping: str = "joint",
) -> torch.Tensor:
    """Pairwise Proximal Policy Optimization on pairs of samples of the same prompt; per-pair values ``[n_pairs]``.

    .. math::

        \\text{joint: } \\ell = -\\min\\Big(\\rho\\,\\tfrac{\\Delta}{2},\\
        \\operatorname{clip}(\\rho, 1\\pm\\epsilon)\\,\\tfrac{\\Delta}{2}\\Big),\\quad
        \\rho = \\frac{\\pi_\\theta(y_1)\\,\\pi_{old}(y_2)}{\\pi_{old}(y_1)\\,\\pi_\\theta(y_2)},\\quad
        \\Delta = r(y_1) - r(y_2)

    and with ``clipping="separate"`` each response's own ratio :math:`\\rho_i = \\pi_\\theta(y_i)/\\pi_{old}(y_i)`
    is clipped: :math:`\\ell = -\\min(\\rho_1\\tfrac{\\Delta}{2}, \\operatorname{clip}(\\rho_1)\\tfrac{\\Delta}{2})
    - \\min(-\\rho_2\\tfrac{\\Delta}{2}, -\\operatorname{clip}(\\rho_2)\\tfrac{\\Delta}{2})`.
    Wu et al. (2023), "Pairwise Proximal Policy Optimization: Harnessing Relative Feedback for LLM Alignment".
    At :math:`\\rho = 1` the gradient is :math:`-\\tfrac{\\Delta}{2}\\nabla(\\log\\pi(y_1) - \\log\\pi(y_2))`, which
    depends on rewards only through their difference (the paper's reward-equivalence).

    Shapes: ``logps`` and ``old_logps`` ``[batch]`` (sequence log-probabilities), ``rewards`` ``[batch]`` (KL
    penalty included), ``pairs`` ``[n_pairs, 2]`` (row indices into the batch).
    """
    i, j = pairs[:, 0], pairs[:, 1]
    half = (rewards[i] - rewards[j]).to(logps.dtype) / 2
    if clipping == "joint":
        rho = torch.exp((logps[i] - old_logps[i]) - (logps[j] - old_logps[j]))
        return -torch.min(rho * half, torch.clamp(rho, 1 - epsilon, 1 + epsilon) * half)
    if clipping == "separate":
        r1, r2 = torch.exp(logps[i] - old_logps[i]), torch.exp(logps[j] - old_logps[j])
        one = torch.min(r1 * half, torch.clamp(r1, 1 - epsilon, 1 + epsilon) * half)
        two = torch.min(-r2 * half, -torch.clamp(r2, 1 - epsilon, 1 + epsilon) * half)
        return -(one + two)
    raise InputError(f"clipping must be 'joint' or 'separate', got {clipping!r}")


def win_rates(decisions, n_prompts: int, k: int) -> np.ndarray:
    """Each sample's estimated win probability against the policy, ``[n_prompts, k]``, from judged pairs.

    .. math::

        \\hat P(y_j \\succ \\pi \\mid x) =
        \\frac{1}{k}\\Big(\\tfrac12 + \\sum_{l \\ne j} P(y_j \\succ y_l \\mid x)\\Big)

    (SPPO's estimate with the sample itself counted as a tie; Wu et al. 2024). With several judgments of a pair
    they are averaged; a pair never judged counts as a tie.
    """
    wins = np.zeros((n_prompts, k, k))
    seen = np.zeros((n_prompts, k, k))
    if decisions:
        c, a, b, s, _ = (np.asarray(x) for x in zip(*decisions))
        c, a, b, s = c.astype(int), a.astype(int), b.astype(int), s.astype(float)
        np.add.at(wins, (c, a, b), s)
        np.add.at(wins, (c, b, a), 1.0 - s)
        np.add.at(seen, (c, a, b), 1.0)
        np.add.at(seen, (c, b, a), 1.0)
    p = np.where(seen > 0, wins / np.maximum(seen, 1), 0.5)
    idx = np.arange(k)
    p[:, idx, idx] = 0.5
    return p.mean(-1)


def sppo_loss(
    policy_logps: torch.Tensor, ref_logps: torch.Tensor, win_rate: torch.Tensor, *, beta: float = 0.1
) -> torch.Tensor:
    """Self-Play Preference Optimization (soft form); per-sample values ``[batch]``.

    .. math::

        \\ell = \\Big(\\log\\frac{\\pi_\\theta(y\\mid x)}{\\pi_t(y\\mid x)}
        - \\frac{1}{\\beta}\\big(\\hat P(y \\succ \\pi_t \\mid x) - \\tfrac12\\big)\\Big)^2

    Wu et al. (2024), "Self-Play Preference Optimization for Language Model Alignment" (η = 1/β; with
    :math:`\\hat P \\in \\{0, 1\\}` this is TRL's ``sppo_hard``). :math:`\\pi_t` is the policy that drew the
    samples (the round's reference); the win rates come from the judge (:func:`win_rates`).
    """
    return (policy_logps - ref_logps - (win_rate.to(policy_logps.dtype) - 0.5) / beta) ** 2


def superhf_loss(
    token_logps: torch.Tensor, token_kl: torch.Tensor, mask: torch.Tensor, *, beta: float = 0.1
) -> torch.Tensor:
    """SuperHF: supervised fine-tuning on the judge's best sample plus a KL prior; per-sample values ``[batch]``.

    .. math::

        \\ell = -\\frac{1}{|y^*|}\\sum_t \\log\\pi_\\theta(y^*_t\\mid x, y^*_{<t})
        + \\beta\\,\\frac{1}{|y^*|}\\sum_t D_t

    Mukobi et al. (2023), "SuperHF: Supervised Iterative Learning from Human Feedback": sample, keep the best
    completion per prompt by the reward model (here the judge's ratings), fine-tune on it with the KL to the
    prior model as a regulariser. ``token_kl`` :math:`D_t` is the full-vocabulary KL of the next-token
    distributions at each scored position; the trainer passes :math:`\\mathrm{KL}(\\pi_{ref}\\,\\|\\,\\pi_\\theta)` (the
    direction of the trainer's token KL, as in TDPO), the paper's prior term up to its direction.
    """
    m = mask.to(token_logps.dtype)
    n = m.sum(-1).clamp_min(1.0)
    return -_masked_sum(token_logps, m) / n + beta * _masked_sum(token_kl, m) / n


def score_function_kl(policy_logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """A surrogate whose gradient is the reverse KL's on samples drawn from the policy; per-sample ``[batch]``.

    .. math::

        s(y) = \\operatorname{sg}\\Big(\\log\\frac{\\pi_\\theta(y)}{\\pi_{ref}(y)}\\Big)\\log\\pi_\\theta(y),\\qquad
        \\mathbb{E}_{y\\sim\\pi_\\theta}[\\nabla s(y)] = \\nabla_\\theta\\,\\mathrm{KL}(\\pi_\\theta\\,\\|\\,\\pi_{ref})

    (the score-function identity, using :math:`\\mathbb{E}_{\\pi}[\\nabla\\log\\pi] = 0`). HyPO adds this term,
    weighted by λ, on online samples to the offline DPO loss: Song et al. (2024), "The Importance of Online Data:
    Understanding Preference Fine-tuning via Coverage".
    """
    return (policy_logps - ref_logps).detach() * policy_logps


def cream_consistency(current: np.ndarray, previous: np.ndarray) -> float:
    """CREAM's consistency rate of two rankings of the same samples, ``[n_prompts, k]`` ratings each.

    .. math::

        C = \\frac{1}{n}\\sum_i \\frac{\\tau_i + 1}{2}, \\qquad
        \\tau_i = \\frac{\\sum_{j<l} \\operatorname{sign}(a_{ij}-a_{il})\\operatorname{sign}(b_{ij}-b_{il})}
        {\\sqrt{n^a_i\\, n^b_i}}

    (Kendall's τ-b: :math:`n^a_i` counts the pairs :math:`j<l` that ``a`` does not tie, so identical rankings
    with ties still give τ = 1; a prompt whose samples one ranking ties completely gives τ = 0; ratings closer
    than 1e-9 tie.)
    Wang et al. (2024), "CREAM: Consistency Regularized Self-Rewarding Language Models": the rankings of the
    round's samples by the current and the previous iteration's model (both as judges). The preference loss is
    then :math:`C\\,\\ell(y^+, y^-) + (1-C)\\,\\ell(y^-, y^+)` — conservative DPO with ε = 1 − C.
    """
    a, b = np.asarray(current, dtype=float), np.asarray(previous, dtype=float)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] < 2:
        raise InputError(f"rankings must be two [n_prompts, k] arrays with k >= 2, got {a.shape} and {b.shape}")
    j, l = np.triu_indices(a.shape[1], 1)
    # fitted ratings of equally judged samples agree to ~1e-12, not exactly: closer than 1e-9 is a tie
    sa, sb = (np.where(np.abs(d) > 1e-9, np.sign(d), 0.0) for d in (a[:, j] - a[:, l], b[:, j] - b[:, l]))
    norm = np.sqrt((sa != 0).sum(1) * (sb != 0).sum(1))
    tau = np.divide((sa * sb).sum(1), norm, out=np.zeros(len(a)), where=norm > 0)
    return float(np.mean((tau + 1) / 2))
