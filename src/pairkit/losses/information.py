"""Information-theoretic training objectives estimated with kernels (Parzen windows) over a batch.

The Cauchy–Schwarz (CS) divergence and quadratic mutual information have closed-form Parzen estimators — sums of
Gaussian Gram matrices, no density model and no variational bound — so they can be optimised directly. Every
estimate here is a log of such sums, computed with log-sum-exp over the log-Gram matrices, so it stays finite
however far apart the points are. Each objective is one number per batch (its value depends on all rows), so the
functions take no ``mask``/``weights``/``reduction``.
"""

from __future__ import annotations

import math

import torch

from pairkit._spec import Input, Interval, Option
from pairkit.errors import InputError
from pairkit.losses._core import register

__all__ = ["cs_conditional_divergence", "cs_ib_loss", "cs_quadratic_mutual_information"]

_POSITIVE = Interval(0, None, closed="neither")


def _rows(name: str, x: torch.Tensor) -> torch.Tensor:
    if not (isinstance(x, torch.Tensor) and x.is_floating_point()):
        raise InputError(f"{name} must be a floating-point torch tensor")
    if x.dim() == 1:
        x = x.unsqueeze(-1)
    if x.dim() != 2:
        raise InputError(f"{name} must be [n] or [n, d], got {list(x.shape)}")
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _log_gram(a: torch.Tensor, b: torch.Tensor, sigma: float) -> torch.Tensor:
    """``log exp(-‖a_i − b_j‖² / (2σ²))`` for all pairs (the Gaussian constant cancels in every CS ratio)."""
    diff = a.unsqueeze(1) - b.unsqueeze(0)
    return -(diff * diff).sum(-1) / (2.0 * sigma**2)


def cs_quadratic_mutual_information(x: torch.Tensor, t: torch.Tensor, *, sigma_x: float, sigma_t: float):
    r"""Cauchy–Schwarz quadratic mutual information :math:`I_{CS}(X; T) = D_{CS}(p(x, t) \,\|\, p(x)p(t))`.

    With Gaussian Gram matrices :math:`K` (on ``x``) and :math:`L` (on ``t``) over the ``n`` rows:

    .. math::
        I_{CS} = \log\frac{1}{n^2}\sum_{ij}K_{ij}L_{ij} + \log\frac{1}{n^4}\sum_{ij}K_{ij}\sum_{ij}L_{ij}
                 - 2\log\frac{1}{n^3}\sum_{j}\Big(\sum_i K_{ji}\Big)\Big(\sum_k L_{jk}\Big).

    Principe (2010), "Information Theoretic Learning"; as ``CS_QMI`` of Yu et al. (2024) (natural log — their code
    uses ``log2``). Returns a scalar (0 for fewer than one row).
    """
    x, t = _rows("x", x), _rows("t", t)
    if x.shape[0] != t.shape[0]:
        raise InputError(f"x and t must have one row per example, got {x.shape[0]} and {t.shape[0]}")
    n = x.shape[0]
    if n == 0:
        return x.sum() * 0.0
    lk, ll = _log_gram(x, x, sigma_x), _log_gram(t, t, sigma_t)
    log_n = math.log(n)
    joint = torch.logsumexp((lk + ll).flatten(), 0) - 2 * log_n
    marginals = torch.logsumexp(lk.flatten(), 0) + torch.logsumexp(ll.flatten(), 0) - 4 * log_n
    cross = torch.logsumexp(torch.logsumexp(lk, 1) + torch.logsumexp(ll, 1), 0) - 3 * log_n
    return joint + marginals - 2 * cross


def cs_conditional_divergence(
    x: torch.Tensor, y: torch.Tensor, y_hat: torch.Tensor, *, sigma_x: float, sigma_y: float
) -> torch.Tensor:
    r"""Conditional Cauchy–Schwarz divergence :math:`D_{CS}(p(y\mid x) \,\|\, q(\hat y\mid x))` from paired samples.

    With Gaussian Gram matrices :math:`K` on ``x``, :math:`L^{1}` on ``y``, :math:`L^{2}` on ``ŷ`` and the cross
    Gram :math:`L^{21}_{ji} = \kappa(\hat y_j, y_i)`:

    .. math::
        D = \log\sum_j\frac{\sum_i K_{ji}L^{1}_{ji}}{\sum_i K_{ji}^2}
            + \log\sum_j\frac{\sum_i K_{ji}L^{2}_{ji}}{\sum_i K_{ji}^2}
            - 2\log\sum_j\frac{\sum_i K_{ji}L^{21}_{ji}}{\sum_i K_{ji}^2}.

    Yu, Li, Løkse, Jenssen & Príncipe (2023), "The Conditional Cauchy-Schwarz Divergence with Applications to
    Time-Series Data and Sequential Decision Making" (their eq. 18, the estimator ``CS_Div`` of the CS-IB code;
    natural log here, ``log2`` there). Returns a scalar.
    """
    x, y, y_hat = _rows("x", x), _rows("y", y), _rows("y_hat", y_hat)
    if not x.shape[0] == y.shape[0] == y_hat.shape[0] or y.shape != y_hat.shape:
        raise InputError(
            f"x, y and y_hat must have one row per example and y, y_hat one shape, got {list(x.shape)}, "
            f"{list(y.shape)}, {list(y_hat.shape)}"
        )
    if x.shape[0] == 0:
        return x.sum() * 0.0 + y_hat.sum() * 0.0
    lk = _log_gram(x, x, sigma_x)
    norm = torch.logsumexp(2 * lk, 1)

    def term(log_l):
        return torch.logsumexp(torch.logsumexp(lk + log_l, 1) - norm, 0)

    return (
        term(_log_gram(y, y, sigma_y)) + term(_log_gram(y_hat, y_hat, sigma_y)) - 2 * term(_log_gram(y_hat, y, sigma_y))
    )


@register(
    "cs_ib_loss",
    inputs=(
        Input("inputs", "embeddings", "[n, dim]"),
        Input("latents", "embeddings", "[n, latent]"),
        Input("targets", "embeddings", "[n, target]"),
        Input("predictions", "embeddings", "[n, target]"),
    ),
    family="regression",
    aliases=("cs_ib", "cauchy_schwarz_information_bottleneck"),
    options=(
        Option("beta", float, Interval(0, None), doc="weight β of the compression term I(X; T)"),
        Option("sigma_x", float, _POSITIVE, doc="Gaussian kernel width on the inputs"),
        Option("sigma_t", float, _POSITIVE, doc="Gaussian kernel width on the latent representation"),
        Option("sigma_y", float, _POSITIVE, doc="Gaussian kernel width on targets and predictions"),
    ),
    batch_coupled=True,
    keywords=(),
)
def cs_ib_loss(
    inputs: torch.Tensor,
    latents: torch.Tensor,
    targets: torch.Tensor,
    predictions: torch.Tensor,
    *,
    beta: float = 0.01,
    sigma_x: float = 1.0,
    sigma_t: float = 1.0,
    sigma_y: float = 1.0,
) -> torch.Tensor:
    r"""Cauchy–Schwarz information bottleneck for regression: predict well, keep little of the input in the code.

    .. math::
        \mathcal L = D_{CS}\big(p(y\mid x) \,\big\|\, q_\theta(\hat y\mid x)\big) + \beta\, I_{CS}(X; T),

    the first term (:func:`cs_conditional_divergence`) replacing the usual MSE/Gaussian likelihood for
    :math:`I(Y; T)`, the second (:func:`cs_quadratic_mutual_information`) the compression of the latent ``T``;
    both are Parzen estimates over the batch, without variational bounds.

    Yu, Yu, Løkse, Jenssen & Príncipe (2024), "Cauchy-Schwarz Divergence Information Bottleneck for Regression"
    (ICLR). Kernel widths are options (their code also offers a median heuristic); natural logs (their code uses
    ``log2``, i.e. this divided by ``ln 2``).

    Args:
        inputs: ``[n, d_x]``; latents: ``[n, d_t]``; targets, predictions: ``[n, d_y]``.
    Returns a scalar.
    """
    if beta < 0:
        raise InputError(f"beta must be >= 0, got {beta!r}")
    fit = cs_conditional_divergence(inputs, targets, predictions, sigma_x=sigma_x, sigma_y=sigma_y)
    if beta == 0:
        return fit
    return fit + beta * cs_quadratic_mutual_information(inputs, latents, sigma_x=sigma_x, sigma_t=sigma_t)
