"""Contrastive losses for regression with continuous targets: ConR (imbalanced regression) and SupReMix.

``f(embeddings [N, D], targets [N], predictions [N], ...)``: positives and negatives come from closeness in the
target space (and, for ConR, confusion in the prediction space). Memory O(N^2).
"""

from __future__ import annotations

import torch

from pairkit._spec import Input, Interval, Option
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

__all__ = ["conr", "supremix"]

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


def _mixture_cosine(alpha, c_a_u, c_a_v, c_u_v):
    """Cosine of unit vector a with norm(α u + (1 - α) v) for unit u, v, from the three cosines; and whether the
    mixture is non-zero."""
    norm2 = alpha * alpha + (1 - alpha) * (1 - alpha) + 2 * alpha * (1 - alpha) * c_u_v
    ok = norm2 > torch.finfo(c_a_u.dtype).eps
    norm = torch.sqrt(torch.where(ok, norm2, torch.ones_like(norm2)))
    return torch.where(ok, (alpha * c_a_u + (1 - alpha) * c_a_v) / norm, torch.zeros_like(norm)), ok


@register(
    "supremix",
    keywords=("weights", "reduction"),
    inputs=(Input("embeddings", "embeddings", "[n, dim]"), Input("targets", "regression_targets", "[n]")),
    batch_coupled=True,
    family=_FAMILY,
    aliases=("supremix_loss", "mixup_your_own_pairs"),
    options=(
        Option("temperature", float, POSITIVE, doc="softmax temperature τ"),
        Option("neg_alpha", float, Interval(0, 1, closed="neither"), doc="anchor weight α in negative mixes"),
        Option("window", float, POSITIVE, none=True, doc="largest target gap of a positive mixture's parts"),
        Option("tolerance", float, NON_NEGATIVE, doc="targets within this gap count as equal (batch positives)"),
    ),
)
def supremix(
    embeddings: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float = 0.3,
    neg_alpha: float = 0.2,
    window: float | None = None,
    tolerance: float = 0.0,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """SupReMix: supervised contrastive learning for regression with mixed hard negatives and hard positives.

    Each anchor :math:`i` (L2-normalised :math:`z_i`, target :math:`y_i`) contrasts the other rows plus two kinds of
    mixtures (each re-normalised):

    * anchor-inclusive negatives :math:`z_i \\oplus_\\alpha z_k = \\operatorname{norm}(\\alpha z_i + (1-\\alpha) z_k)`
      for every :math:`k` with another target — near the anchor, but with the target
      :math:`\\alpha y_i + (1-\\alpha) y_k \\ne y_i`;
    * an anchor-exclusive positive :math:`\\operatorname{norm}(\\beta z_j + (1-\\beta) z_k)` of the nearest targets
      below and above the anchor's, :math:`y_j < y_i < y_k`, with :math:`\\beta = (y_k - y_i)/(y_k - y_j)` so that its
      target is exactly :math:`y_i`.

    .. math::

        \\ell_i = -\\frac{1}{|P_i|} \\sum_{p \\in P_i}
        \\log \\frac{e^{s_{ip}/\\tau}}{\\sum_{a \\in A_i} e^{s_{ia}/\\tau}}

    with :math:`A_i` the other rows and all of the anchor's mixtures, :math:`P_i` the rows with the anchor's target
    (within ``tolerance``) and its positive mixture; anchors without a positive are left out. Every similarity to a
    mixture follows from the Gram matrix (:math:`\\cos(z_i, \\operatorname{norm}(\\alpha u + (1-\\alpha)v))` needs only
    :math:`z_i^\\top u, z_i^\\top v, u^\\top v`), so memory is O(N^2) — the authors' code materialises an
    N x N x N x D tensor of mixtures. Readings taken: one positive mixture per anchor (the nearest bracketing
    targets, within ``window`` of the anchor's if given; the code mixes every bracketing pair in the window); the
    negative mixing weight is the fixed ``neg_alpha`` (the code draws it from a Beta distribution, mean 0.2 for
    Beta(2, 8) — pass a drawn value per step); no extra weighting of the negatives by target distance. Pass both
    augmented views as rows (equal targets make them positives).

    Wu, Chen, Dong, Zhou et al. (2023), "Mixup Your Own Pairs" (SupReMix).

    Args: ``embeddings`` [N, D], ``targets`` [N], ``weights`` [N]. Returns a scalar, or [N] for
    ``reduction="none"``.
    """
    if reduction not in REDUCTIONS:
        raise InputError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    check_matrix("embeddings", embeddings)
    n = embeddings.shape[0]
    y = _check_vector("targets", targets, n, embeddings)
    check_weights(weights, n)
    (z,) = maybe_normalize(True, embeddings)
    c = z @ z.T
    gap = y[None, :] - y[:, None]  # y_j - y_i
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    same = (gap.abs() <= tolerance) & ~eye
    other = gap.abs() > tolerance
    # anchor-inclusive negative mixtures: cos(z_i, norm(α z_i + (1 - α) z_k)) with c_ii = 1
    s_neg, ok_neg = _mixture_cosine(neg_alpha, torch.ones_like(c), c, c)
    ok_neg = ok_neg & other
    # anchor-exclusive positive mixture of the nearest targets below and above
    near = torch.ones_like(gap, dtype=torch.bool) if window is None else gap.abs() <= window
    below, above = (gap < -tolerance) & near, (gap > tolerance) & near
    j = torch.where(below, gap, torch.full_like(gap, -float("inf"))).argmax(1) if n else eye.sum(1)
    k = torch.where(above, gap, torch.full_like(gap, float("inf"))).argmin(1) if n else eye.sum(1)
    rows = torch.arange(n, device=z.device)
    has_mix = below.any(1) & above.any(1)
    y_j, y_k = y[j], y[k]
    beta = torch.where(has_mix, (y_k - y) / torch.where(has_mix, y_k - y_j, torch.ones_like(y)), torch.zeros_like(y))
    s_pos, ok_pos = _mixture_cosine(beta, c[rows, j], c[rows, k], c[j, k])
    has_mix = has_mix & ok_pos
    logits = torch.cat([c, s_neg, s_pos[:, None]], 1) / temperature
    keep = torch.cat([~eye, ok_neg, has_mix[:, None]], 1)
    lse = masked_logsumexp(logits, keep)
    n_pos = same.sum(1) + has_mix.long()
    pos_sum = torch.where(same, c, torch.zeros_like(c)).sum(1) + torch.where(has_mix, s_pos, torch.zeros_like(s_pos))
    has = n_pos > 0
    mean_pos = pos_sum / (temperature * n_pos.clamp_min(1).to(z.dtype))
    values = torch.where(has, torch.where(has, lse, torch.zeros_like(lse)) - mean_pos, torch.zeros_like(lse))
    return reduce_loss(values, reduction, mask=has, weights=weights)
