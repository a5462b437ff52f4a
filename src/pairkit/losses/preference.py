"""Pairwise, sequence-level preference-optimisation losses (DPO and its relatives).

Inputs are per-sequence log-probabilities of shape ``[batch]``: the policy's and the frozen reference
model's for the chosen (preferred) and the rejected response of each pair. Reference-free losses (SimPO,
CPO, ORPO) take only the policy's. Every loss returns per-pair values with ``reduction="none"`` and is
registered under its name and the TRL ``DPOTrainer.loss_type`` spelling (``pairkit.losses.get("sigmoid")``
is :func:`dpo_loss`).

With :math:`\\rho_c = \\log\\pi(y_c) - \\log\\pi_{ref}(y_c)`, :math:`\\rho_r` likewise and
:math:`\\Delta = \\rho_c - \\rho_r`, most losses here are a function of the logit :math:`\\beta\\Delta`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pairkit.errors import InputError
from pairkit.losses._core import Reduction, check_broadcastable, check_same_shape, reduce_loss, register

__all__ = [
    "dpo_loss",
    "logratio_scores",
    "preference_logits",
]

_FAMILY = "preference"
_F_DIVERGENCES = ("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence")
# exp() of anything above this stays finite in the dtype (TRL uses the same bounds for the alpha-divergence)
_EXP_CLAMP = {torch.float16: 11.0, torch.bfloat16: 80.0, torch.float32: 80.0, torch.float64: 700.0}


# ------------------------------------------------------------------------------------------- shared cores


def _check(mask: torch.Tensor | None = None, weights: torch.Tensor | None = None, **tensors) -> torch.Tensor:
    """Validate the per-pair inputs (same shape, floating point) and return the first one."""
    check_same_shape(**tensors)
    first_name, first = next(iter(tensors.items()))
    for name, t in tensors.items():
        if t is not None and not (isinstance(t, torch.Tensor) and t.is_floating_point()):
            kind = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
            raise InputError(f"{name} must be a floating-point torch tensor of log-probabilities, got {kind}")
    check_broadcastable("mask", mask, first.shape)
    check_broadcastable("weights", weights, first.shape)
    return first


def _lengths(name: str, lengths, like: torch.Tensor) -> torch.Tensor:
    """Completion lengths as a float tensor like ``like``, clamped at 1 (as TRL does) so empty ones stay finite."""
    lengths = torch.as_tensor(lengths, dtype=like.dtype, device=like.device)
    check_broadcastable(name, lengths, like.shape)
    return lengths.clamp(min=1.0)


def logratio_scores(logratios: torch.Tensor, *, f_divergence: str = "reverse_kl", f_alpha: float = 0.5) -> torch.Tensor:
    """Map log density ratios :math:`u = \\log(\\pi/\\pi_{ref})` to :math:`f'(e^u)` for f-DPO.

    .. math::

        \\text{reverse\\_kl}: u \\qquad \\text{forward\\_kl}: 1 - e^{-u} \\qquad
        \\text{js\\_divergence}: \\log 2 + \\log\\sigma(u) \\qquad
        \\text{alpha\\_divergence}: \\frac{e^{(\\alpha-1)u} - 1}{\\alpha - 1}

    Wang et al. (2023), "Beyond Reverse KL: Generalizing Direct Preference Optimization with Diverse
    Divergence Constraints". Same convention as TRL's ``f_divergence_type`` / ``f_alpha_divergence_coef``
    (the exponent is clamped so the score stays finite in the input dtype; α → 1 falls back to reverse KL).

    Args: ``logratios`` any shape. Returns the same shape.
    """
    if f_divergence == "reverse_kl":
        return logratios
    limit = _EXP_CLAMP.get(logratios.dtype, 80.0)
    if f_divergence == "forward_kl":
        return 1.0 - torch.exp((-logratios).clamp(max=limit))
    if f_divergence == "js_divergence":
        return math.log(2.0) + F.logsigmoid(logratios)
    if f_divergence == "alpha_divergence":
        if abs(f_alpha - 1.0) < 1e-6:
            return logratios
        t = ((f_alpha - 1.0) * logratios).float().clamp(max=limit)
        return torch.expm1(t).to(logratios.dtype) / (f_alpha - 1.0)
    raise InputError(f"f_divergence must be one of {_F_DIVERGENCES}, got {f_divergence!r}")


def preference_logits(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    f_divergence: str = "reverse_kl",
    f_alpha: float = 0.5,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """The implicit-reward margin :math:`\\Delta` (before the β scale) shared by the DPO family.

    .. math::

        \\Delta = \\frac{f'(\\pi_c/\\pi^{ref}_c)}{|y_c|} - \\frac{f'(\\pi_r/\\pi^{ref}_r)}{|y_r|}

    with :math:`f'` from :func:`logratio_scores` (the log ratio itself for reverse KL, i.e. DPO) and the
    length division only when ``chosen_lengths``/``rejected_lengths`` are given (token-averaged margin).
    Rafailov et al. (2023), "Direct Preference Optimization: Your Language Model is Secretly a Reward Model".

    Args: four ``[batch]`` log-probability tensors; lengths ``[batch]`` (token counts). Returns ``[batch]``.
    """
    chosen = logratio_scores(policy_chosen_logps - ref_chosen_logps, f_divergence=f_divergence, f_alpha=f_alpha)
    rejected = logratio_scores(policy_rejected_logps - ref_rejected_logps, f_divergence=f_divergence, f_alpha=f_alpha)
    if (chosen_lengths is None) != (rejected_lengths is None):
        raise InputError("give both chosen_lengths and rejected_lengths, or neither")
    if chosen_lengths is not None:
        chosen = chosen / _lengths("chosen_lengths", chosen_lengths, chosen)
        rejected = rejected / _lengths("rejected_lengths", rejected_lengths, rejected)
    return chosen - rejected


# --------------------------------------------------------------------------------------------- DPO family


@register("dpo", family=_FAMILY, aliases=("sigmoid", "f_dpo"))
def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    f_divergence: str = "reverse_kl",
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
    (f-DPO; Wang et al. 2023, "Beyond Reverse KL"); see :func:`logratio_scores`. TRL: ``loss_type="sigmoid"``.

    Args: four ``[batch]`` sequence log-probabilities (summed over completion tokens).
    Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    _check(mask, weights, **_named(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps))
    delta = preference_logits(
        policy_chosen_logps,
        policy_rejected_logps,
        ref_chosen_logps,
        ref_rejected_logps,
        f_divergence=f_divergence,
        f_alpha=f_alpha,
    )
    return reduce_loss(-F.logsigmoid(beta * delta), reduction, mask=mask, weights=weights)


def _named(pc, pr, rc=None, rr=None) -> dict[str, torch.Tensor | None]:
    return {
        "policy_chosen_logps": pc,
        "policy_rejected_logps": pr,
        "ref_chosen_logps": rc,
        "ref_rejected_logps": rr,
    }
