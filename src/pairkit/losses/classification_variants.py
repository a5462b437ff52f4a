"""Classification variants beyond fixed surrogate losses: stochastic calibrated loss ensembles (EnsLoss)."""

from __future__ import annotations

import torch

from pairkit._spec import Input, Interval, Option
from pairkit.errors import InputError
from pairkit.losses._core import Reduction, check_broadcastable, reduce_loss, register

__all__ = ["ensloss", "ensloss_derivatives"]


def ensloss_derivatives(margins: torch.Tensor, *, seed: int = 0, box_cox_lambda: float = 0.0) -> torch.Tensor:
    r"""A random convex, calibrated loss-derivative evaluated at each margin of a batch (EnsLoss's sampler).

    ``n`` values :math:`g = -\max\big(\mathrm{BC}^{-1}_\lambda(z), \ldots\big)` are drawn with
    :math:`z \sim \mathcal N(0, 1)` and the inverse Box–Cox transform :math:`\mathrm{BC}^{-1}_\lambda(z) =
    (1 + \lambda z)_+^{1/\lambda}` (:math:`e^z` at λ = 0), clipped to :math:`[-1, 0)`, sorted and assigned so that
    smaller margins get more negative derivatives — a non-decreasing derivative, i.e. a convex loss, negative
    everywhere so it is calibrated (Bartlett et al. 2006). Above margin 1 it is divided by the margin (the
    authors' superlinear tail). Deterministic given ``seed`` (``torch.Generator().manual_seed(seed)``): pass a new
    seed each step to draw a new loss. Returns ``[n]`` (no gradient).

    Dai (2024), "EnsLoss: Stochastic Calibrated Loss Ensembles for Preventing Overfitting in Classification";
    as the authors' ``ensLoss.forward`` (statmlben/ensLoss).
    """
    with torch.no_grad():
        s = margins.detach().reshape(-1)
        n = s.numel()
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        z = torch.randn(n, generator=gen, dtype=torch.float64)
        if box_cox_lambda == 0.0:
            draws = torch.exp(z)
        else:
            draws = (1.0 + box_cox_lambda * z).clamp(min=0.0) ** (1.0 / box_cox_lambda)
        g_sorted = torch.sort(-draws).values.clamp(min=-1.0).to(device=s.device, dtype=s.dtype)
        order = torch.argsort(s, stable=True)
        g = torch.empty_like(s).index_copy_(0, order, g_sorted) if n else torch.empty_like(s)
        tail = s > 1.0
        g = torch.where(tail, g / torch.where(tail, s, torch.ones_like(s)), g)
        return (g - 1e-6).reshape(margins.shape)


@register(
    "ensloss",
    inputs=(Input("scores", "scores"), Input("labels", "binary")),
    family="classification",
    aliases=("ens_loss", "stochastic_calibrated_loss_ensemble"),
    options=(
        Option("seed", int, Interval(0, None), doc="seed of this step's random loss (change it every step)"),
        Option("box_cox_lambda", float, Interval(0, None), doc="λ of the inverse Box-Cox transform (0: lognormal)"),
    ),
    batch_coupled=True,
)
def ensloss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    seed: int = 0,
    box_cox_lambda: float = 0.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""EnsLoss: binary classification with a fresh random convex calibrated surrogate loss at every step.

    SGD only sees a loss through its derivative at the margins :math:`s_i = y_i f(x_i)` (:math:`y \in \{\pm1\}`),
    so EnsLoss samples the derivative values directly (:func:`ensloss_derivatives`, doubly stochastic gradients:
    random batch, random loss) and returns the surrogate

    .. math::
        \ell_i = \operatorname{sg}(g_i)\, s_i, \qquad \frac{\partial \ell_i}{\partial f(x_i)} = g_i\, y_i,

    whose gradient is that of the sampled loss; its *value* is not a loss to monitor (log a fixed loss such as
    the logistic loss for that). Ensembling over steps regularises like an ensemble of calibrated losses.

    Dai (2024), "EnsLoss: Stochastic Calibrated Loss Ensembles for Preventing Overfitting in Classification"; equal
    to the authors' ``ensLoss`` for the same normal draws (they draw from the global RNG; here ``seed`` makes a
    step reproducible). ``mask`` removes rows before the ranks are taken.

    Args:
        scores: ``[batch]`` real-valued outputs :math:`f(x)`; labels: ``[batch]`` bool or 0/1.
    Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    if not (isinstance(scores, torch.Tensor) and scores.is_floating_point()) or scores.dim() != 1:
        raise InputError("scores must be a floating-point [batch] tensor")
    labels = torch.as_tensor(labels, device=scores.device)
    if tuple(labels.shape) != tuple(scores.shape):
        raise InputError(f"labels must have the shape {list(scores.shape)} of scores, got {list(labels.shape)}")
    if labels.is_floating_point() and not bool(((labels == 0) | (labels == 1)).all()):
        raise InputError("labels must be binary (bool or 0/1)")
    check_broadcastable("weights", weights, scores.shape)
    if mask is not None:
        mask = torch.as_tensor(mask, device=scores.device)
        if mask.dtype != torch.bool or tuple(mask.shape) != tuple(scores.shape):
            raise InputError(f"mask must be a bool tensor of shape {list(scores.shape)}")
    sign = labels.to(scores.dtype) * 2.0 - 1.0
    margins = sign * scores
    keep = mask if mask is not None else torch.ones_like(margins, dtype=torch.bool)
    g = torch.zeros_like(margins)
    g[keep] = ensloss_derivatives(margins[keep], seed=seed, box_cox_lambda=box_cox_lambda)
    values = torch.where(keep, g * margins, torch.zeros_like(margins))
    return reduce_loss(values, reduction, mask=mask, weights=weights)
