"""Pairwise, sequence-level preference losses with a reference model (DPO and its relatives).

Inputs are per-sequence log-probabilities of shape ``[batch]``: the policy's and the frozen reference
model's for the chosen (preferred) and the rejected response of each pair. Every loss is a score adapter
(:func:`~pairkit.losses.scores.implicit_rewards`) followed by a pairwise core
(:func:`~pairkit.losses.scores.logistic_loss`, ``hinge_loss``, ``squared_loss``,
``sigmoid_binary_cross_entropy``), returns per-pair values with ``reduction="none"`` and is registered under
its name and the TRL ``DPOTrainer.loss_type`` spelling (``pairkit.losses.get("sigmoid")`` is :func:`dpo_loss`).

With :math:`\\rho_c = \\log\\pi(y_c) - \\log\\pi_{ref}(y_c)`, :math:`\\rho_r` likewise and
:math:`\\Delta = \\rho_c - \\rho_r`, most losses here are a function of the logit :math:`\\beta\\Delta`.
Reference-free losses are in :mod:`pairkit.losses.preference_free`, batch-coupled ones in
:mod:`pairkit.losses.preference_batch`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pairkit._spec import Interval, Option
from pairkit.errors import InputError
from pairkit.losses._core import (
    CHOSEN_LENGTHS,
    CHOSEN_NLL,
    PAIR_REF,
    REAL,
    REJECTED_LENGTHS,
    Reduction,
    keyword,
    register,
)
from pairkit.losses._pairs import (
    BETA,
    F_OPTIONS,
    FAMILY,
    POSITIVE,
    both_lengths,
    check,
    named,
    nll,
    per_pair,
    reduce,
    smoothing_option,
)
from pairkit.losses.scores import (
    Score,
    f_divergence_score,
    hinge_loss,
    length_normalized,
    logistic_loss,
    sigmoid_binary_cross_entropy,
    squared_loss,
)

__all__ = [
    "apo_down_loss",
    "apo_zero_loss",
    "bco_pair_loss",
    "conservative_dpo_loss",
    "discopop_loss",
    "dpo_loss",
    "exo_pair_loss",
    "ipo_loss",
    "irepo_loss",
    "mmpo_loss",
    "nca_pair_loss",
    "robust_dpo_loss",
    "rpo_loss",
    "sigmoid_norm_loss",
    "slic_loss",
    "sppo_hard_loss",
]

_LENGTHS = (CHOSEN_LENGTHS, REJECTED_LENGTHS)


def _log_ratios(
    pc: torch.Tensor,
    pr: torch.Tensor,
    rc: torch.Tensor,
    rr: torch.Tensor,
    mask: torch.Tensor | None,
    weights: torch.Tensor | None,
    f_divergence: str | Score = "reverse_kl",
    f_alpha: float = 0.5,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check the four ``[batch]`` inputs; return the chosen and rejected (f-, length-normalised) log-ratio scores."""
    check(mask, weights, **named(pc, pr, rc, rr))  # the shapes, once (implicit_rewards would check them again)
    both_lengths(chosen_lengths, rejected_lengths)
    f = f_divergence_score(f_divergence, f_alpha)
    return (
        length_normalized(f(pc - rc), chosen_lengths, name="chosen_lengths"),
        length_normalized(f(pr - rr), rejected_lengths, name="rejected_lengths"),
    )


@register("dpo", inputs=PAIR_REF, family=FAMILY, aliases=("sigmoid", "f_dpo", "dove"), options=(BETA, *F_OPTIONS))
def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    f_divergence: str | Score = "reverse_kl",
    f_alpha: float = 0.5,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Direct Preference Optimization: logistic loss on the implicit-reward margin.

    .. math::

        \\ell = -\\log\\sigma(\\beta\\Delta), \\qquad
        \\Delta = \\log\\frac{\\pi(y_c)}{\\pi_{ref}(y_c)} - \\log\\frac{\\pi(y_r)}{\\pi_{ref}(y_r)}

    Rafailov et al. (2023), "Direct Preference Optimization: Your Language Model is Secretly a Reward
    Model". With ``f_divergence`` other than ``"reverse_kl"`` the log ratios become :math:`f'` scores
    (f-DPO; Wang et al. 2023, "Beyond Reverse KL"); see
    :func:`~pairkit.losses.scores.f_divergence_score`. TRL: ``loss_type="sigmoid"``
    (``f_divergence`` = TRL's ``f_divergence_type``, ``f_alpha`` = ``f_alpha_divergence_coef``).
    For WPO pass ``weights=wpo_weights(...)``; for LD-DPO build the log-probs with :func:`ld_dpo_logps`.
    With each response under its own prompt (:math:`\\log\\pi(y_c\\mid x_c)`, :math:`\\log\\pi(y_r\\mid x_r)`) this
    is DOVE's joint instruction–response preference loss (Bansal et al. 2024, "Comparing Bad Apples to Good
    Oranges: Aligning Large Language Models via Joint Preference Optimization"): give ``train_preference`` rows
    with ``chosen_prompt``/``rejected_prompt`` (alias ``dove``).

    Args: four ``[batch]`` sequence log-probabilities (summed over completion tokens).
    Returns ``[batch]`` with ``reduction="none"``, else a scalar.

    Example:

        >>> import torch
        >>> from pairkit.losses import dpo_loss
        >>> policy_chosen, policy_rejected = torch.tensor([-12.0, -8.0]), torch.tensor([-14.0, -7.5])
        >>> ref_chosen, ref_rejected = torch.tensor([-13.0, -8.0]), torch.tensor([-13.0, -8.0])
        >>> loss = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0.1)
        >>> print(round(loss.item(), 4))
        0.6583
        >>> per_pair = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, reduction='none')
        >>> print(per_pair.round(decimals=4))
        tensor([0.5981, 0.7185])
    """
    c, r = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, mask, weights,
        f_divergence, f_alpha,
    )  # fmt: skip
    return reduce(logistic_loss(beta * (c - r)), reduction, mask, weights)


@register(
    "conservative_dpo",
    inputs=PAIR_REF,
    family=FAMILY,
    aliases=("cdpo",),
    options=(BETA, smoothing_option(1.0, doc="assumed label-flip rate ε"), *F_OPTIONS),
)
def conservative_dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.1,
    f_divergence: str | Score = "reverse_kl",
    f_alpha: float = 0.5,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Conservative DPO: DPO with labels flipped with probability ε (label smoothing).

    .. math::

        \\ell = -(1-\\varepsilon)\\log\\sigma(\\beta\\Delta) - \\varepsilon\\log\\sigma(-\\beta\\Delta)

    Mitchell (2023), "A note on DPO with noisy preferences & relationship to IPO" (cDPO).
    ``label_smoothing=0`` is :func:`dpo_loss`.

    Args: four ``[batch]`` sequence log-probabilities. Returns ``[batch]`` or a scalar.
    """
    c, r = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, mask, weights,
        f_divergence, f_alpha,
    )  # fmt: skip
    return reduce(sigmoid_binary_cross_entropy(beta * (c - r), 1.0 - label_smoothing), reduction, mask, weights)


@register(
    "robust_dpo",
    inputs=PAIR_REF,
    family=FAMILY,
    aliases=("robust",),
    options=(BETA, smoothing_option(0.5, doc="label-flip rate ε (rDPO needs ε < 1/2)"), *F_OPTIONS),
)
def robust_dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.1,
    f_divergence: str | Score = "reverse_kl",
    f_alpha: float = 0.5,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Robust DPO: the unbiased estimate of the clean DPO loss under label-flip noise of rate ε.

    .. math::

        \\ell = \\frac{-(1-\\varepsilon)\\log\\sigma(\\beta\\Delta) + \\varepsilon\\log\\sigma(-\\beta\\Delta)}
                     {1 - 2\\varepsilon}

    Chowdhury, Kini & Natarajan (2024), "Provably Robust DPO: Aligning Language Models with Noisy
    Feedback". TRL: ``loss_type="robust"``. ``label_smoothing=0`` is :func:`dpo_loss`.

    Args: four ``[batch]`` sequence log-probabilities. Returns ``[batch]`` or a scalar.
    """
    c, r = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, mask, weights,
        f_divergence, f_alpha,
    )  # fmt: skip
    z = beta * (c - r)
    eps = label_smoothing
    return reduce(
        (-(1.0 - eps) * F.logsigmoid(z) + eps * F.logsigmoid(-z)) / (1.0 - 2.0 * eps), reduction, mask, weights
    )


@register("slic", inputs=PAIR_REF, family=FAMILY, aliases=("hinge",), options=(BETA, *F_OPTIONS))
def slic_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    f_divergence: str | Score = "reverse_kl",
    f_alpha: float = 0.5,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Hinge (SLiC) loss on the implicit-reward margin, with margin :math:`1/\\beta`.

    .. math::

        \\ell = \\max(0,\\, 1 - \\beta\\Delta)

    Zhao et al. (2023), "SLiC-HF: Sequence Likelihood Calibration with Human Feedback" (reference-
    normalised as in TRL's ``loss_type="hinge"``).

    Args: four ``[batch]`` sequence log-probabilities. Returns ``[batch]`` or a scalar.
    """
    c, r = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, mask, weights,
        f_divergence, f_alpha,
    )  # fmt: skip
    return reduce(hinge_loss(beta * (c - r)), reduction, mask, weights)


@register("ipo", inputs=(*PAIR_REF, *_LENGTHS), family=FAMILY, options=(BETA, *F_OPTIONS))
def ipo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
    f_divergence: str | Score = "reverse_kl",
    f_alpha: float = 0.5,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Identity Preference Optimisation: regress the margin onto :math:`1/(2\\tau)` (τ = ``beta``).

    .. math::

        \\ell = \\Big(\\Delta - \\frac{1}{2\\beta}\\Big)^2

    Azar et al. (2023), "A General Theoretical Paradigm to Understand Learning from Human Preferences"
    (Eq. 17). With ``chosen_lengths``/``rejected_lengths`` the log ratios are first divided by the completion
    lengths — the token-averaged form TRL's ``loss_type="ipo"`` always uses (and the IPO authors' results).

    Args: four ``[batch]`` sequence log-probabilities; optional ``[batch]`` lengths. Returns ``[batch]`` or a
    scalar.
    """
    c, r = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, mask, weights,
        f_divergence, f_alpha, chosen_lengths, rejected_lengths,
    )  # fmt: skip
    return reduce(squared_loss(c - r, 1.0 / (2.0 * beta)), reduction, mask, weights)


@register(
    "sigmoid_norm",
    inputs=(*PAIR_REF, *(keyword(i.name, i.kind, required=True) for i in _LENGTHS)),
    family=FAMILY,
    aliases=("length_normalized_dpo", "ln_dpo"),
    options=(BETA, *F_OPTIONS),
)
def sigmoid_norm_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    chosen_lengths: torch.Tensor,
    rejected_lengths: torch.Tensor,
    beta: float = 0.1,
    f_divergence: str | Score = "reverse_kl",
    f_alpha: float = 0.5,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Length-normalised DPO: DPO on per-token averaged log ratios.

    .. math::

        \\ell = -\\log\\sigma\\Big(\\beta\\Big(\\frac{\\rho_c}{|y_c|} - \\frac{\\rho_r}{|y_r|}\\Big)\\Big)

    Meng, Xia & Chen (2024), "SimPO: Simple Preference Optimization with a Reference-Free Reward" (the
    length-normalised DPO baseline). TRL: ``loss_type="sigmoid_norm"``.

    Args: four ``[batch]`` sequence log-probabilities and ``[batch]`` completion lengths (token counts).
    Returns ``[batch]`` or a scalar.
    """
    if chosen_lengths is None or rejected_lengths is None:
        raise InputError("sigmoid_norm needs chosen_lengths and rejected_lengths (completion token counts)")
    c, r = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, mask, weights,
        f_divergence, f_alpha, chosen_lengths, rejected_lengths,
    )  # fmt: skip
    return reduce(logistic_loss(beta * (c - r)), reduction, mask, weights)


@register(
    "exo",
    inputs=PAIR_REF,
    family=FAMILY,
    aliases=("exo_pair",),
    options=(
        BETA,
        smoothing_option(1.0, closed="neither", doc="ε of the smoothed labels (the paper uses 1e-3)"),
        *F_OPTIONS,
    ),
)
def exo_pair_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 1e-3,
    f_divergence: str | Score = "reverse_kl",
    f_alpha: float = 0.5,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """EXO (pairwise): reverse KL from the model's pair distribution to the smoothed label distribution.

    .. math::

        \\ell = \\sigma(z)\\big(\\log\\sigma(z) - \\log(1-\\varepsilon)\\big)
              + \\sigma(-z)\\big(\\log\\sigma(-z) - \\log\\varepsilon\\big), \\qquad z = \\beta\\Delta

    Ji et al. (2024), "Towards Efficient Exact Optimization of Language Model Alignment" (Eq. 16, K=2).
    TRL: ``loss_type="exo_pair"`` (ε = ``label_smoothing``, must be > 0; the paper suggests 1e-3).

    Args: four ``[batch]`` sequence log-probabilities. Returns ``[batch]`` or a scalar.
    """
    c, r = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, mask, weights,
        f_divergence, f_alpha,
    )  # fmt: skip
    z = beta * (c - r)
    values = torch.sigmoid(z) * (F.logsigmoid(z) - math.log1p(-label_smoothing)) + torch.sigmoid(-z) * (
        F.logsigmoid(-z) - math.log(label_smoothing)
    )
    return reduce(values, reduction, mask, weights)


@register(
    "discopop",
    inputs=PAIR_REF,
    family=FAMILY,
    options=(BETA, Option("tau", float, POSITIVE, doc="temperature of the gate"), *F_OPTIONS),
)
def discopop_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    tau: float = 0.05,
    f_divergence: str | Score = "reverse_kl",
    f_alpha: float = 0.5,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """DiscoPOP (log-ratio modulated loss): a logistic/exponential blend gated by the margin.

    .. math::

        \\ell = (1 - \\sigma(z/\\tau))\\,(-\\log\\sigma(z)) + \\sigma(z/\\tau)\\,e^{-z}, \\qquad z = \\beta\\Delta

    Lu et al. (2024), "Discovering Preference Optimization Algorithms with and for Large Language Models"
    (Eq. 5). TRL: ``loss_type="discopop"`` (``tau`` = ``discopop_tau``). The exponential part is evaluated
    as :math:`\\exp(\\log\\sigma(z/\\tau) - z)` so that large negative margins do not give ``inf * 0``.

    Args: four ``[batch]`` sequence log-probabilities. Returns ``[batch]`` or a scalar.
    """
    c, r = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, mask, weights,
        f_divergence, f_alpha,
    )  # fmt: skip
    z = beta * (c - r)
    values = torch.sigmoid(-z / tau) * -F.logsigmoid(z) + torch.exp(F.logsigmoid(z / tau) - z)
    return reduce(values, reduction, mask, weights)


@register("nca_pair", inputs=PAIR_REF, family=FAMILY, options=(BETA,))
def nca_pair_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """NCA (pairwise): noise-contrastive alignment on absolute implicit rewards :math:`r = \\beta\\rho`.

    .. math::

        \\ell = -\\log\\sigma(r_c) - \\tfrac12\\log\\sigma(-r_c) - \\tfrac12\\log\\sigma(-r_r)

    Chen et al. (2024), "Noise Contrastive Alignment of Language Models with Explicit Rewards".
    TRL: ``loss_type="nca_pair"``.

    Args: four ``[batch]`` sequence log-probabilities. Returns ``[batch]`` or a scalar.
    """
    c, r = _log_ratios(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, mask, weights)
    rc, rr = beta * c, beta * r
    return reduce(-F.logsigmoid(rc) - 0.5 * F.logsigmoid(-rc) - 0.5 * F.logsigmoid(-rr), reduction, mask, weights)


@register(
    "bco_pair",
    inputs=PAIR_REF,
    family=FAMILY,
    options=(BETA, Option("delta", (float, torch.Tensor), REAL, doc="reward shift δ (see bco_reward_shift)")),
)
def bco_pair_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    delta: float | torch.Tensor = 0.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """BCO (pairwise): binary classification of chosen vs rejected implicit rewards around a shift δ.

    .. math::

        \\ell = -\\log\\sigma(\\beta\\rho_c - \\delta) - \\log\\sigma(-(\\beta\\rho_r - \\delta))

    Jung et al. (2024), "Binary Classifier Optimization for Large Language Model Alignment". δ is the
    running mean of the rewards (keep it with :func:`bco_reward_shift`); TRL 1.16's ``loss_type="bco_pair"``
    uses δ = 0.

    Args: four ``[batch]`` sequence log-probabilities; ``delta`` a float or 0-d tensor (not differentiated).
    Returns ``[batch]`` or a scalar.
    """
    c, r = _log_ratios(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, mask, weights)
    if isinstance(delta, torch.Tensor):
        delta = delta.detach()
    return reduce(logistic_loss(beta * c - delta) + logistic_loss(-(beta * r - delta)), reduction, mask, weights)


@register("sppo_hard", inputs=PAIR_REF, family=FAMILY, options=(BETA,))
def sppo_hard_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """SPPO with hard win probabilities: regress each log ratio onto :math:`\\pm 1/(2\\beta)`.

    .. math::

        \\ell = \\Big(\\rho_c - \\frac{1}{2\\beta}\\Big)^2 + \\Big(\\rho_r + \\frac{1}{2\\beta}\\Big)^2

    Wu et al. (2024), "Self-Play Preference Optimization for Language Model Alignment" (Eq. 4.7 with
    P = 1 for the winner, 0 for the loser). TRL: ``loss_type="sppo_hard"``.

    Args: four ``[batch]`` sequence log-probabilities. Returns ``[batch]`` or a scalar.
    """
    c, r = _log_ratios(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, mask, weights)
    half = 0.5 / beta
    return reduce(squared_loss(c, half) + squared_loss(r, -half), reduction, mask, weights)


@register("apo_zero", inputs=PAIR_REF, family=FAMILY, options=(BETA,))
def apo_zero_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """APO-zero: raise the chosen likelihood and lower the rejected one (chosen better than the model).

    .. math::

        \\ell = 1 - \\sigma(\\beta\\rho_c) + \\sigma(\\beta\\rho_r)

    D'Oosterlinck et al. (2024), "Anchored Preference Optimization and Contrastive Revisions" (Eq. 7).
    TRL: ``loss_type="apo_zero"``.

    Args: four ``[batch]`` sequence log-probabilities. Returns ``[batch]`` or a scalar.
    """
    c, r = _log_ratios(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, mask, weights)
    return reduce(torch.sigmoid(-beta * c) + torch.sigmoid(beta * r), reduction, mask, weights)


@register("apo_down", inputs=PAIR_REF, family=FAMILY, options=(BETA,))
def apo_down_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """APO-down: lower both likelihoods, the rejected one more (chosen worse than the model's outputs).

    .. math::

        \\ell = \\sigma(\\beta\\rho_c) + 1 - \\sigma(\\beta(\\rho_c - \\rho_r))

    D'Oosterlinck et al. (2024), "Anchored Preference Optimization and Contrastive Revisions" (Eq. 8).
    TRL: ``loss_type="apo_down"``.

    Args: four ``[batch]`` sequence log-probabilities. Returns ``[batch]`` or a scalar.
    """
    c, r = _log_ratios(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, mask, weights)
    return reduce(torch.sigmoid(beta * c) + torch.sigmoid(-beta * (c - r)), reduction, mask, weights)


@register(
    "rpo",
    inputs=(*PAIR_REF, CHOSEN_LENGTHS, CHOSEN_NLL),
    family=FAMILY,
    options=(BETA, Option("alpha", float, Interval(0, None), doc="weight of the NLL term")),
)
def rpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    alpha: float = 1.0,
    chosen_lengths: torch.Tensor | None = None,
    chosen_nll: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """RPO: DPO plus a length-normalised negative log-likelihood of the chosen response.

    .. math::

        \\ell = -\\log\\sigma(\\beta\\Delta) - \\alpha\\,\\frac{\\log\\pi(y_c)}{|y_c|}

    Pang et al. (2024), "Iterative Reasoning Preference Optimization". The NLL term is ``chosen_nll`` when
    given (e.g. a token-mean cross-entropy), else :math:`-\\log\\pi(y_c)/|y_c|` (``chosen_lengths``) or
    :math:`-\\log\\pi(y_c)` without lengths. In TRL: ``loss_type=["sigmoid", "sft"]``, weights ``[1, α]``.

    Args: four ``[batch]`` sequence log-probabilities; ``chosen_lengths``/``chosen_nll`` ``[batch]``.
    Returns ``[batch]`` or a scalar.
    """
    c, r = _log_ratios(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, mask, weights)
    values = logistic_loss(beta * (c - r)) + alpha * nll(policy_chosen_logps, chosen_nll, chosen_lengths)
    return reduce(values, reduction, mask, weights)


@register(
    "mmpo",
    inputs=(*PAIR_REF, keyword("quality_margins", "margins", required=True)),
    family=FAMILY,
    aliases=("margin_matching",),
    options=(Option("gamma", float, Interval(0, None), doc="scale of the quality margins"), BETA),
)
def mmpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    quality_margins: torch.Tensor,
    gamma: float = 1.0,
    beta: float = 0.1,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Margin-matching PO: DPO against a soft Bradley–Terry target built from the quality margin.

    .. math::

        p = \\sigma(\\gamma\\,(s_c - s_r)), \\qquad
        \\ell = -p\\log\\sigma(\\beta\\Delta) - (1-p)\\log\\sigma(-\\beta\\Delta)

    Kim et al. (2024), "Margin Matching Preference Optimization: Enhanced Model Alignment with Granular
    Feedback". ``quality_margins`` = :math:`s_c - s_r` (e.g. rating or reward-score differences);
    ``gamma`` scales them to Bradley–Terry logits.

    Args: four ``[batch]`` sequence log-probabilities; ``quality_margins`` ``[batch]``. Returns ``[batch]`` or
    a scalar.
    """
    c, r = _log_ratios(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, mask, weights)
    target = torch.sigmoid(gamma * per_pair("quality_margins", quality_margins, c))
    return reduce(sigmoid_binary_cross_entropy(beta * (c - r), target), reduction, mask, weights)


@register(
    "irepo",
    inputs=(*PAIR_REF, keyword("preference_probs", "probs", required=True)),
    family=FAMILY,
    options=(BETA, Option("eps", float, Interval(0, 0.5, closed="neither"), doc="clip of the preference probs")),
)
def irepo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    preference_probs: torch.Tensor,
    beta: float = 0.1,
    eps: float = 1e-6,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """iREPO: regress the implicit-reward difference onto the logit of the empirical preference.

    .. math::

        \\ell = \\Big(\\beta\\Delta - \\log\\frac{\\hat p}{1-\\hat p}\\Big)^2

    Le et al. (2024), "iREPO: implicit Reward Pairwise Difference based Empirical Preference Optimization".
    ``preference_probs`` :math:`\\hat p` is the fraction of annotators (human or AI) preferring the chosen
    response; it is clipped to ``[eps, 1-eps]`` so unanimous votes give a finite target.

    Args: four ``[batch]`` sequence log-probabilities; ``preference_probs`` ``[batch]`` in [0, 1].
    Returns ``[batch]`` or a scalar.
    """
    c, r = _log_ratios(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, mask, weights)
    p = per_pair("preference_probs", preference_probs, c)
    if p.numel() and bool(((p < 0) | (p > 1) | torch.isnan(p)).any()):
        raise InputError(f"preference_probs must lie in [0, 1]; got values from {p.min().item()} to {p.max().item()}")
    return reduce(squared_loss(beta * (c - r), torch.logit(p, eps=eps)), reduction, mask, weights)
