"""Consistency regularisers for semi-supervised learning: agree with yourself across views.

Inputs are two views' logits ``[batch, classes]`` of the same unlabelled examples: a weakly augmented view
whose (confident) prediction becomes the target, and a strongly augmented view that is trained towards it. The
target side is a constant (stop-gradient), as in the papers.
"""

from __future__ import annotations

import torch

from pairkit._spec import Input, Interval, Option
from pairkit.losses._core import Reduction, reduce_loss, register
from pairkit.losses.classification import _label_logp
from pairkit.losses.divergence import _check_pair

__all__ = ["fixmatch_loss"]

_FAMILY = "consistency"

WEAK_STRONG = (
    Input("weak_logits", "logits", "[batch, classes]"),
    Input("strong_logits", "logits", "[batch, classes]"),
)


@register(
    "fixmatch_loss",
    inputs=WEAK_STRONG,
    family=_FAMILY,
    aliases=("fixmatch", "confidence_thresholded_consistency"),
    options=(
        Option("threshold", float, Interval(0, 1), doc="confidence τ a pseudo-label needs to count"),
        Option("temperature", float, Interval(0, None, closed="neither"), doc="temperature of the weak view"),
    ),
)
def fixmatch_loss(
    weak_logits: torch.Tensor,
    strong_logits: torch.Tensor,
    *,
    threshold: float = 0.95,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""FixMatch: cross-entropy of the strong view to the weak view's confident hard pseudo-label.

    .. math::
        q = \operatorname{softmax}\big(\operatorname{sg}(z^{w})/T\big), \qquad
        \ell = \mathbb 1\big[\max_k q_k \ge \tau\big]\; \mathrm{CE}\big(z^{s}, \arg\max_k q_k\big).

    Examples below the threshold contribute 0 but still count in the ``"mean"`` — the paper's
    :math:`\frac{1}{\mu B}\sum` over all unlabelled examples (not over the confident ones only).

    Sohn, Berthelot, Li, Zhang, Carlini, Cubuk, Kurakin, Zhang & Raffel (2020), "FixMatch: Simplifying
    Semi-Supervised Learning with Consistency and Confidence" (NeurIPS), eq. (4); ``τ = 0.95`` as in the paper.

    Args:
        weak_logits, strong_logits: ``[..., K]`` logits of the two views (the weak side is detached).
    Returns one value per leading position with ``reduction="none"``, else a scalar.
    """
    _check_pair(("weak_logits", "strong_logits"), weak_logits, strong_logits, mask, weights)
    with torch.no_grad():
        q = torch.softmax(weak_logits.detach().float() / temperature, dim=-1)
        confidence, pseudo = q.max(dim=-1)
        confident = confidence >= threshold
    ce = -_label_logp(torch.log_softmax(strong_logits, dim=-1), pseudo)
    values = torch.where(confident, ce, torch.zeros_like(ce))
    return reduce_loss(values, reduction, mask=mask, weights=weights)
