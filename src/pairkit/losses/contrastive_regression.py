"""Contrastive regularisers for regression with continuous targets: ConR (imbalanced regression).

``f(embeddings [N, D], targets [N], predictions [N], ...)``: positives and negatives come from closeness in the
target space (and, for ConR, confusion in the prediction space). Memory O(N^2).
"""

from __future__ import annotations

import torch

from pairkit._spec import Input, Option
from pairkit.errors import InputError
from pairkit.losses._core import (
    NON_NEGATIVE,
    NORMALIZE,
    POSITIVE,
    REDUCTIONS,
    Reduction,
    keyword,
    reduce_loss,
    register,
)
from pairkit.losses._embeddings import check_matrix, check_weights, masked_logsumexp, maybe_normalize

__all__ = ["conr"]

_FAMILY = "contrastive"


def _check_vector(name: str, v, n: int, like: torch.Tensor) -> torch.Tensor:
    v = torch.as_tensor(v, device=like.device)
    if v.ndim != 1 or v.shape[0] != n or not v.is_floating_point():
        raise InputError(f"{name} must be a float tensor of shape [N] = [{n}], got {v.dtype} {list(v.shape)}")
    if not bool(torch.isfinite(v).all()):
        row = int(torch.nonzero(~torch.isfinite(v))[0])
        raise InputError(f"{name} contains a non-finite value at row {row}")
    return v.to(like.dtype)


@register(
    "conr",
    keywords=("weights", "reduction"),
    inputs=(
        Input("embeddings", "embeddings", "[n, dim]"),
        Input("targets", "regression_targets", "[n]"),
        Input("predictions", "regression_targets", "[n]", doc="the model's current predictions (no gradient)"),
        keyword("pushing_weights", "stds", "[n]", doc="η of each anchor (e.g. inverse label density); default 1"),
    ),
    batch_coupled=True,
    family=_FAMILY,
    aliases=("conr_loss", "contrastive_regularizer"),
    options=(
        Option("threshold", float, NON_NEGATIVE, doc="ω: targets (predictions) within ω are similar"),
        Option("temperature", float, POSITIVE, doc="softmax temperature τ"),
        Option("push_scale", float, NON_NEGATIVE, doc="ε: scale of the pushing weight of a negative"),
        NORMALIZE,
    ),
)
def conr(
    embeddings: torch.Tensor,
    targets: torch.Tensor,
    predictions: torch.Tensor,
    *,
    pushing_weights: torch.Tensor | None = None,
    threshold: float = 0.2,
    temperature: float = 0.07,
    push_scale: float = 0.2,
    normalize: bool = True,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """ConR: contrastive regulariser for deep imbalanced regression — push apart the confused negatives.

    Positives of anchor :math:`j` are the samples with a similar target, :math:`K^+_j = \\{i \\ne j: |y_i - y_j| \\le
    \\omega\\}`; its negatives are the samples with a dissimilar target but a similar prediction,
    :math:`K^-_j = \\{q: |y_q - y_j| > \\omega,\\ |\\hat y_q - \\hat y_j| \\le \\omega\\}` (the confusions). Only
    anchors with at least one negative (and one positive) contribute:

    .. math::

        \\ell_j = -\\frac{1}{|K^+_j|} \\sum_{i \\in K^+_j} \\log
        \\frac{e^{z_j \\cdot z_i / \\tau}}{\\sum_{p \\in K^+_j} e^{z_j \\cdot z_p / \\tau} + \\sum_{q \\in K^-_j}
        S_{jq}\\, e^{z_j \\cdot z_q / \\tau}},\\qquad S_{jq} = \\varepsilon\\, \\eta_j\\, |y_j - y_q|

    with :math:`z` the L2-normalised embeddings, :math:`\\eta_j` the anchor's pushing weight (``pushing_weights``;
    the paper uses an inverse label-density weight so that minority samples push harder; 1 by default) and
    :math:`\\varepsilon` = ``push_scale``. "mean" averages over all N rows (zeros for non-anchors), as the paper's
    :math:`\\frac{1}{2N}\\sum_j` over both augmented views (pass both views as rows). Defaults ω = 0.2, τ = 0.07,
    ε = 0.2 follow the authors' code. Readings taken where the code differs from the equation: the denominator holds
    only the positives and the weighted negatives (the code's masked exponentials add 1 for every other entry), and
    :math:`|K^+_j|` excludes the anchor itself. ``predictions`` only select the negatives (no gradient).

    Keramati, Meng & Evans (2024), "ConR: Contrastive Regularizer for Deep Imbalanced Regression" (ICLR).

    Args: ``embeddings`` [N, D], ``targets`` [N], ``predictions`` [N], ``pushing_weights`` [N] >= 0, ``weights``
    [N]. Returns a scalar, or [N] for ``reduction="none"``.
    """
    if reduction not in REDUCTIONS:
        raise InputError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    check_matrix("embeddings", embeddings)
    n = embeddings.shape[0]
    y = _check_vector("targets", targets, n, embeddings)
    y_hat = _check_vector("predictions", predictions, n, embeddings).detach()
    eta = torch.ones_like(y) if pushing_weights is None else _check_vector("pushing_weights", pushing_weights, n, y)
    if bool((eta < 0).any()):
        raise InputError("pushing_weights must be non-negative")
    check_weights(weights, n)
    (z,) = maybe_normalize(normalize, embeddings)
    logits = (z @ z.T) / temperature
    label_gap = (y[:, None] - y[None, :]).abs()
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    pos = (label_gap <= threshold) & ~eye
    push = push_scale * eta[:, None] * label_gap
    neg = (label_gap > threshold) & ((y_hat[:, None] - y_hat[None, :]).abs() <= threshold) & (push > 0)
    anchor = pos.any(1) & neg.any(1)
    shifted = torch.where(neg, logits + torch.log(torch.where(neg, push, torch.ones_like(push))), logits)
    keep = pos | neg
    lse = masked_logsumexp(shifted, keep)
    n_pos = pos.sum(1).clamp_min(1).to(z.dtype)
    mean_pos = torch.where(pos, logits, torch.zeros_like(logits)).sum(1) / n_pos
    values = torch.where(anchor, torch.where(anchor, lse, torch.zeros_like(lse)) - mean_pos, torch.zeros_like(lse))
    return reduce_loss(values, reduction, weights=weights)
