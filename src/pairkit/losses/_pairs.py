"""Private helpers shared by the pairwise preference losses: input checks, options, SFT terms and reductions."""

from __future__ import annotations

import torch

from pairkit._spec import Interval, Option
from pairkit.errors import InputError
from pairkit.losses._checks import check_lengths
from pairkit.losses._core import POSITIVE, REAL, Reduction, check_broadcastable, check_float_tensors, reduce_loss
from pairkit.losses.scores import F_DIVERGENCE_SCORES

FAMILY = "preference"

BETA = Option("beta", float, POSITIVE, doc="inverse temperature β of the implicit reward")
F_DIVERGENCE = Option(
    "f_divergence", (str, callable), choices=tuple(F_DIVERGENCE_SCORES), doc="f-divergence score (TRL name)"
)
F_ALPHA = Option("f_alpha", float, REAL, doc="α of the alpha-divergence")
F_OPTIONS = (F_DIVERGENCE, F_ALPHA)


def smoothing_option(high: float, *, low: float = 0.0, closed: str = "left", doc: str = "label-flip rate") -> Option:
    return Option("label_smoothing", float, Interval(low, high, closed=closed), doc=doc)


def check(mask: torch.Tensor | None = None, weights: torch.Tensor | None = None, **tensors) -> torch.Tensor:
    """Validate the per-pair inputs (same shape, floating point) and return the first one."""
    return check_float_tensors(mask, weights, what=" of log-probabilities", **tensors)


def named(pc, pr, rc=None, rr=None) -> dict[str, torch.Tensor | None]:
    return {
        "policy_chosen_logps": pc,
        "policy_rejected_logps": pr,
        "ref_chosen_logps": rc,
        "ref_rejected_logps": rr,
    }


def both_lengths(chosen_lengths, rejected_lengths) -> None:
    if (chosen_lengths is None) != (rejected_lengths is None):
        raise InputError("give both chosen_lengths and rejected_lengths, or neither")


def nll(policy_chosen_logps: torch.Tensor, chosen_nll, chosen_lengths) -> torch.Tensor:
    """The SFT term: ``chosen_nll`` when given, else the (length-normalised) NLL of the chosen response."""
    if isinstance(chosen_nll, torch.Tensor) and chosen_nll.dim() == 0:
        return chosen_nll.to(policy_chosen_logps.dtype)  # a batch-level term (e.g. TRL's token-mean NLL)
    if chosen_nll is not None:
        value = torch.as_tensor(chosen_nll, dtype=policy_chosen_logps.dtype, device=policy_chosen_logps.device)
        check_broadcastable("chosen_nll", value, policy_chosen_logps.shape)
        return value
    if chosen_lengths is not None:
        return -policy_chosen_logps / check_lengths("chosen_lengths", chosen_lengths, policy_chosen_logps)
    return -policy_chosen_logps


def per_pair(name: str, value, like: torch.Tensor) -> torch.Tensor:
    """A required per-pair target (not differentiated), broadcastable to ``like``."""
    if value is None:
        raise InputError(f"{name} is required by this loss (got None)")
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device).detach()
    check_broadcastable(name, value, like.shape)
    return value


def reduce(values: torch.Tensor, reduction: Reduction, mask=None, weights=None) -> torch.Tensor:
    """:func:`reduce_loss`, with the common unmasked, unweighted mean done in one kernel."""
    if reduction == "mean" and mask is None and weights is None and values.numel() > 0:
        return values.mean()
    return reduce_loss(values, reduction, mask=mask, weights=weights)


def reduce_plus(values, extra, reduction: Reduction, mask=None, weights=None) -> torch.Tensor:
    """Reduce ``values + extra``; a 0-d ``extra`` (a batch-level term) is added after an unweighted mean."""
    if extra.dim() == 0 and reduction == "mean" and mask is None and weights is None and values.numel() > 0:
        return values.mean() + extra
    return reduce(values + extra, reduction, mask, weights)
