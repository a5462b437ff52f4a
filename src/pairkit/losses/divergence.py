"""Divergences between categorical distributions, and their token-level (chunked) forms.

Inputs are named by their space, Optax style: ``log_predictions`` / ``log_targets`` are log-probabilities
over the last axis (``[..., vocab]``), ``targets`` are probabilities, ``*_logits`` are unnormalised scores.
Every divergence returns one value per leading position (``reduction="none"``), reduced with
:func:`pairkit.losses._core.reduce_loss`; ``mask`` and ``weights`` index the leading dimensions
(e.g. ``[batch, time]``).

Direction convention: with ``P`` the predictions (student) and ``T`` the targets (teacher),
:func:`kl_divergence` is the *forward* KL, ``KL(T || P)`` (what ``torch.nn.functional.kl_div`` and
``optax.kl_divergence`` compute), and :func:`reverse_kl_divergence` is ``KL(P || T)``. A Csiszár
f-divergence built by :func:`f_divergence` is ``D_f(T || P) = sum_i p_i f(t_i / p_i)``, so the generator
``f(u) = u log u`` gives the forward KL.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
from torch.autograd.function import once_differentiable

from pairkit._spec import Input, Option, declare_options
from pairkit.errors import InputError
from pairkit.losses._checks import check_distributions
from pairkit.losses._core import (
    AT_LEAST_ONE,
    CHUNK_SIZE,
    DISTRIBUTIONS,
    NON_NEGATIVE,
    POSITIVE,
    REAL,
    TEMPERATURE,
    TOKEN_STUDENT_TEACHER,
    UNIT,
    Reduction,
    check_broadcastable,
    kl_logspace,
    reduce_loss,
    register,
    xlogy_rel,
)

_JSD_BETA = Option("beta", float, UNIT, doc="interpolation weight β of the generalised JSD")
_TOKEN_OPTIONS = (TEMPERATURE, CHUNK_SIZE)

__all__ = [
    "alpha_divergence",
    "cauchy_schwarz_divergence",
    "chi_squared_divergence",
    "f_divergence",
    "generalized_jsd",
    "kl_divergence",
    "kl_divergence_with_log_targets",
    "reverse_kl_divergence",
    "sinkhorn_distance",
    "squared_hellinger_distance",
    "token_divergence",
    "token_generalized_jsd",
    "token_kl_divergence",
    "token_reverse_kl_divergence",
    "top_k_kl_divergence",
    "total_variation_distance",
]


# ------------------------------------------------------------------------------------------------ helpers


def _finish(values, *, mask, weights, reduction):
    return reduce_loss(values, reduction, mask=mask, weights=weights)


# ------------------------------------------------------------------------------------------- divergences


@register(
    "kl_divergence",
    inputs=(Input("log_predictions", "log_probs", "[batch, classes]"), Input("targets", "probs", "[batch, classes]")),
    family="divergence",
    aliases=("forward_kl", "kl_div"),
)
def kl_divergence(
    log_predictions: torch.Tensor,
    targets: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Forward Kullback–Leibler divergence ``KL(targets || predictions)``.

    .. math::
        \mathrm{KL}(T \,\|\, P) = \sum_i t_i (\log t_i - \log p_i), \qquad 0 \log 0 = 0.

    Kullback & Leibler (1951), "On information and sufficiency".

    Args:
        log_predictions: ``[..., vocab]`` log-probabilities of the model (student).
        targets: ``[..., vocab]`` probabilities of the target (teacher); zeros are allowed.
        mask, weights: over the leading dims ``[...]``.
    Returns:
        Per-position values ``[...]`` with ``reduction="none"``, else a scalar.
    """
    check_distributions(("log_predictions", "targets"), log_predictions, targets, mask, weights)
    log_t = torch.log(torch.where(targets > 0, targets, torch.ones_like(targets)))
    values = xlogy_rel(targets, log_t, log_predictions).sum(-1)
    return _finish(values, mask=mask, weights=weights, reduction=reduction)


@register("kl_divergence_with_log_targets", inputs=DISTRIBUTIONS, family="divergence")
def kl_divergence_with_log_targets(
    log_predictions: torch.Tensor,
    log_targets: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Forward KL ``KL(targets || predictions)`` with targets given as log-probabilities.

    .. math::
        \mathrm{KL}(T \,\|\, P) = \sum_i e^{\log t_i} (\log t_i - \log p_i).

    Kullback & Leibler (1951), "On information and sufficiency".

    Args:
        log_predictions, log_targets: ``[..., vocab]`` log-probabilities.
        mask, weights: over the leading dims.
    """
    check_distributions(("log_predictions", "log_targets"), log_predictions, log_targets, mask, weights)
    values = kl_logspace(log_targets, log_predictions)
    return _finish(values, mask=mask, weights=weights, reduction=reduction)


@register("reverse_kl_divergence", inputs=DISTRIBUTIONS, family="divergence", aliases=("reverse_kl",))
def reverse_kl_divergence(
    log_predictions: torch.Tensor,
    log_targets: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Reverse (mode-seeking) KL ``KL(predictions || targets)``.

    .. math::
        \mathrm{KL}(P \,\|\, T) = \sum_i p_i (\log p_i - \log t_i).

    Used for distillation by Gu et al. (2024), "MiniLLM: Knowledge Distillation of Large Language Models".

    Args:
        log_predictions, log_targets: ``[..., vocab]`` log-probabilities.
        mask, weights: over the leading dims.
    """
    check_distributions(("log_predictions", "log_targets"), log_predictions, log_targets, mask, weights)
    values = kl_logspace(log_predictions, log_targets)
    return _finish(values, mask=mask, weights=weights, reduction=reduction)


def _generalized_jsd_values(log_p: torch.Tensor, log_t: torch.Tensor, beta: float) -> torch.Tensor:
    if beta == 0.0:
        return kl_logspace(log_t, log_p)
    if beta == 1.0:
        return kl_logspace(log_p, log_t)
    # log of the mixture M = (1 - beta) P + beta T, computed without leaving log space
    log_m = torch.logaddexp(log_p + math.log1p(-beta), log_t + math.log(beta))
    return beta * kl_logspace(log_t, log_m) + (1.0 - beta) * kl_logspace(log_p, log_m)


@register(
    "generalized_jsd",
    inputs=DISTRIBUTIONS,
    family="divergence",
    aliases=("generalized_jensen_shannon", "gjsd"),
    options=(_JSD_BETA,),
)
def generalized_jsd(
    log_predictions: torch.Tensor,
    log_targets: torch.Tensor,
    *,
    beta: float = 0.5,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Generalised Jensen–Shannon divergence of GKD, with TRL's conventions.

    .. math::
        M = (1-\beta) P + \beta T, \qquad
        \mathrm{JSD}_\beta = \beta\, \mathrm{KL}(T \,\|\, M) + (1-\beta)\, \mathrm{KL}(P \,\|\, M),

    for ``0 < beta < 1``; ``beta = 0`` is the forward KL ``KL(T || P)`` and ``beta = 1`` the reverse KL
    ``KL(P || T)`` (the limits of ``JSD_beta / beta`` and ``JSD_beta / (1 - beta)``), exactly as
    ``trl``'s ``GKDTrainer.generalized_jsd_loss``. ``beta = 0.5`` is the ordinary Jensen–Shannon divergence.

    Agarwal et al. (2024), "On-Policy Distillation of Language Models: Learning from Self-Generated
    Mistakes" (Eq. 1).

    Args:
        log_predictions: ``[..., vocab]`` student log-probabilities ``P``.
        log_targets: ``[..., vocab]`` teacher log-probabilities ``T``.
        beta: interpolation weight in ``[0, 1]``.
    """
    check_distributions(("log_predictions", "log_targets"), log_predictions, log_targets, mask, weights)
    values = _generalized_jsd_values(log_predictions, log_targets, float(beta))
    return _finish(values, mask=mask, weights=weights, reduction=reduction)


@register(
    "total_variation_distance", inputs=DISTRIBUTIONS, family="divergence", aliases=("total_variation", "tv_distance")
)
def total_variation_distance(
    log_predictions: torch.Tensor,
    log_targets: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Total variation distance.

    .. math::
        \mathrm{TV}(P, T) = \tfrac12 \sum_i |p_i - t_i|  \in [0, 1].

    The f-divergence with ``f(u) = |u - 1| / 2`` (Csiszár 1967, "Information-type measures of difference of
    probability distributions and indirect observations").

    Args:
        log_predictions, log_targets: ``[..., vocab]`` log-probabilities.
    """
    check_distributions(("log_predictions", "log_targets"), log_predictions, log_targets, mask, weights)
    values = 0.5 * (torch.exp(log_predictions) - torch.exp(log_targets)).abs().sum(-1)
    return _finish(values, mask=mask, weights=weights, reduction=reduction)


@register(
    "squared_hellinger_distance", inputs=DISTRIBUTIONS, family="divergence", aliases=("hellinger", "squared_hellinger")
)
def squared_hellinger_distance(
    log_predictions: torch.Tensor,
    log_targets: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Squared Hellinger distance (in ``[0, 1]``).

    .. math::
        H^2(P, T) = \tfrac12 \sum_i \left(\sqrt{p_i} - \sqrt{t_i}\right)^2 = 1 - \sum_i \sqrt{p_i t_i}.

    Hellinger (1909), "Neue Begründung der Theorie quadratischer Formen von unendlichvielen
    Veränderlichen". The squared form is returned because it is smooth at ``P = T`` (the distance ``H``
    has an infinite gradient there); it is the f-divergence with ``f(u) = (\sqrt u - 1)^2 / 2``.

    Args:
        log_predictions, log_targets: ``[..., vocab]`` log-probabilities.
    """
    check_distributions(("log_predictions", "log_targets"), log_predictions, log_targets, mask, weights)
    # the sum-of-squares form is exactly 0 at P = T, unlike 1 - sum sqrt(p t), which cancels
    root_diff = torch.exp(0.5 * log_predictions) - torch.exp(0.5 * log_targets)
    values = 0.5 * root_diff.square().sum(-1)
    return _finish(values, mask=mask, weights=weights, reduction=reduction)


@register(
    "alpha_divergence",
    inputs=DISTRIBUTIONS,
    family="divergence",
    aliases=("amari_alpha_divergence",),
    options=(Option("alpha", float, REAL, doc="α of Amari's family (any real; ±1 are the KLs)"),),
)
def alpha_divergence(
    log_predictions: torch.Tensor,
    log_targets: torch.Tensor,
    *,
    alpha: float = 0.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Amari's α-divergence ``D_α(T || P)``.

    .. math::
        D_\alpha(T \,\|\, P) = \frac{4}{1-\alpha^2}\Big(1 - \sum_i t_i^{(1-\alpha)/2}\, p_i^{(1+\alpha)/2}\Big),
        \qquad \alpha \ne \pm 1,

    with the limits ``D_{-1} = KL(T || P)`` (forward) and ``D_{+1} = KL(P || T)`` (reverse);
    ``D_0 = 4 H^2`` is four times the squared Hellinger distance.

    Amari (1985), "Differential-Geometrical Methods in Statistics"; Amari (2009), "α-Divergence Is Unique,
    Belonging to Both f-Divergence and Bregman Divergence Classes".

    Args:
        log_predictions, log_targets: ``[..., vocab]`` log-probabilities.
        alpha: any real number.
    """
    check_distributions(("log_predictions", "log_targets"), log_predictions, log_targets, mask, weights)
    if alpha == -1.0:
        values = kl_logspace(log_targets, log_predictions)
    elif alpha == 1.0:
        values = kl_logspace(log_predictions, log_targets)
    else:
        a, b = (1.0 - alpha) / 2.0, (1.0 + alpha) / 2.0
        # logsumexp keeps the power mean finite for extreme log-probabilities
        log_mass = torch.logsumexp(a * log_targets + b * log_predictions, dim=-1)
        values = -4.0 / (1.0 - alpha**2) * torch.expm1(log_mass)
    return _finish(values, mask=mask, weights=weights, reduction=reduction)


def f_divergence(generator: Callable[[torch.Tensor], torch.Tensor]) -> Callable[..., torch.Tensor]:
    r"""Build the Csiszár f-divergence ``D_f(T || P)`` from its convex generator ``f`` (``f(1) = 0``).

    .. math::
        D_f(T \,\|\, P) = \sum_i p_i\, f\!\left(\frac{t_i}{p_i}\right).

    Csiszár (1967), "Information-type measures of difference of probability distributions and indirect
    observations"; Ali & Silvey (1966). Examples: ``u log u`` gives :func:`kl_divergence`, ``-log u`` the
    reverse KL, ``|u - 1| / 2`` the total variation, ``(sqrt(u) - 1)^2 / 2`` the squared Hellinger
    distance, ``(u - 1)^2`` Pearson's χ².

    The returned function has the signature ``(log_predictions, log_targets, *, mask=None, weights=None,
    reduction="mean")``. The ratio is evaluated as ``exp(log t - log p)`` with ``p`` floored at the
    smallest normal float, so where predictions have (numerically) zero mass and targets do not, an
    unbounded generator (KL, χ²) gives a very large or infinite value rather than NaN.
    """
    if not callable(generator):
        raise InputError(f"generator must be a callable f(u) on tensors, got {generator!r}")

    def divergence(
        log_predictions: torch.Tensor,
        log_targets: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
        reduction: Reduction = "mean",
    ) -> torch.Tensor:
        check_distributions(("log_predictions", "log_targets"), log_predictions, log_targets, mask, weights)
        # predictions that underflow to 0 are floored at the smallest normal number, so the term
        # p f(t / p) tends to its limit (finite for bounded f, huge for KL/chi^2) instead of 0 * inf = NaN
        floor = math.log(torch.finfo(log_predictions.dtype).tiny)
        log_p = log_predictions.clamp_min(floor)
        ratio = torch.exp(log_targets - log_p)
        values = (torch.exp(log_p) * generator(ratio)).sum(-1)
        return _finish(values, mask=mask, weights=weights, reduction=reduction)

    divergence.__doc__ = f"Csiszár f-divergence D_f(T || P) with generator {getattr(generator, '__name__', generator)}."
    return divergence


def _pearson_generator(u: torch.Tensor) -> torch.Tensor:
    return (u - 1.0).square()


_pearson = f_divergence(_pearson_generator)


@register("chi_squared_divergence", inputs=DISTRIBUTIONS, family="divergence", aliases=("pearson_chi2",))
def chi_squared_divergence(
    log_predictions: torch.Tensor,
    log_targets: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Pearson χ² divergence ``χ²(T || P)``, the f-divergence with ``f(u) = (u - 1)^2``.

    .. math::
        \chi^2(T \,\|\, P) = \sum_i \frac{(t_i - p_i)^2}{p_i}.

    Pearson (1900), "On the criterion that a given system of deviations from the probable ... ".

    Args:
        log_predictions, log_targets: ``[..., vocab]`` log-probabilities; predictions need full support.
    """
    return _pearson(log_predictions, log_targets, mask=mask, weights=weights, reduction=reduction)


@register("cauchy_schwarz_divergence", inputs=DISTRIBUTIONS, family="divergence", aliases=("cs_divergence",))
def cauchy_schwarz_divergence(
    log_predictions: torch.Tensor,
    log_targets: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Cauchy–Schwarz divergence between two categorical distributions.

    .. math::
        D_{CS}(P, T) = -\log \frac{\sum_i p_i t_i}{\sqrt{\sum_i p_i^2 \, \sum_i t_i^2}} \ \ge 0,

    zero iff ``P = T`` (Cauchy–Schwarz with equality only for proportional, hence equal, distributions).
    Computed with log-sum-exp so peaked inputs do not underflow.

    Jenssen, Principe, Erdogmus & Eltoft (2006), "The Cauchy–Schwarz divergence and Parzen windowing:
    Connections to graph theory and Mercer kernels".

    Args:
        log_predictions, log_targets: ``[..., vocab]`` log-probabilities.
    """
    check_distributions(("log_predictions", "log_targets"), log_predictions, log_targets, mask, weights)
    cross = torch.logsumexp(log_predictions + log_targets, dim=-1)
    self_p = torch.logsumexp(2.0 * log_predictions, dim=-1)
    self_t = torch.logsumexp(2.0 * log_targets, dim=-1)
    values = 0.5 * (self_p + self_t) - cross
    return _finish(values, mask=mask, weights=weights, reduction=reduction)


@register(
    "top_k_kl_divergence",
    inputs=DISTRIBUTIONS,
    family="divergence",
    aliases=("topk_kl",),
    options=(
        Option("k", int, AT_LEAST_ONE, doc="support size k (at most the vocabulary)"),
        Option("renormalize_predictions", bool, doc="renormalise the predictions over the top k"),
    ),
)
def top_k_kl_divergence(
    log_predictions: torch.Tensor,
    log_targets: torch.Tensor,
    *,
    k: int,
    renormalize_predictions: bool = True,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Forward KL restricted to the teacher's top-k support, both sides renormalised there.

    With ``S`` the ``k`` entries of largest ``t_i`` (ties broken by :func:`torch.topk`),
    ``t̃ = t_S / Σ_S t`` and ``p̃ = p_S / Σ_S p``:

    .. math::
        \mathrm{KL}_k(T \,\|\, P) = \sum_{i \in S} \tilde t_i (\log \tilde t_i - \log \tilde p_i).

    With ``renormalize_predictions=False`` the student keeps its full-vocabulary log-probabilities on
    ``S`` (``Σ_S t̃ (log t̃ − log p)``), which also penalises student mass outside ``S`` and is still ≥ 0.
    ``k = vocab`` recovers :func:`kl_divergence`. This is the sparse-teacher form used when only the
    teacher's top-k log-probabilities are stored, e.g. Raman et al. (2023), "For Distillation, Tokens Are
    Not All You Need"; Hinton et al. (2015) for KD itself.

    Args:
        log_predictions, log_targets: ``[..., vocab]`` log-probabilities.
        k: support size, ``1 <= k <= vocab``.
    """
    check_distributions(("log_predictions", "log_targets"), log_predictions, log_targets, mask, weights)
    vocab = log_targets.shape[-1]
    if k > vocab:
        raise InputError(f"k must be at most the vocabulary size {vocab}, got {k!r}")
    top_t, idx = torch.topk(log_targets, k, dim=-1)
    top_p = torch.gather(log_predictions, -1, idx)
    top_t = torch.log_softmax(top_t, dim=-1)
    if renormalize_predictions:
        top_p = torch.log_softmax(top_p, dim=-1)
    values = kl_logspace(top_t, top_p)
    return _finish(values, mask=mask, weights=weights, reduction=reduction)


# ----------------------------------------------------------------------------------------------- sinkhorn


def _safe_log(x: torch.Tensor) -> torch.Tensor:
    """``log x`` with ``log 0 = -inf`` and no NaN gradient at zero."""
    pos = x > 0
    return torch.where(pos, torch.log(torch.where(pos, x, torch.ones_like(x))), float("-inf"))


@register(
    "sinkhorn_distance",
    inputs=(
        Input("predictions", "probs", "[batch, classes]"),
        Input("targets", "probs", "[batch, classes]"),
        Input("cost", "cost", "[classes, classes]"),
    ),
    family="divergence",
    aliases=("sinkhorn", "entropic_ot"),
    options=(
        Option("epsilon", float, POSITIVE, doc="entropic regularisation ε"),
        Option("num_iters", int, AT_LEAST_ONE, doc="most Sinkhorn iterations"),
        Option("tol", float, NON_NEGATIVE, doc="stop when the marginal error is below tol"),
    ),
)
def sinkhorn_distance(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    cost: torch.Tensor,
    *,
    epsilon: float = 0.1,
    num_iters: int = 200,
    tol: float = 1e-7,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Sinkhorn distance: transport cost of the entropic optimal plan between two histograms.

    .. math::
        \Pi^\star = \arg\min_{\Pi \mathbf 1 = a,\ \Pi^\top \mathbf 1 = b}
            \langle \Pi, C\rangle + \varepsilon \sum_{ij} \Pi_{ij} \log \Pi_{ij}, \qquad
        d_C^\varepsilon(a, b) = \langle \Pi^\star, C \rangle,

    solved with log-domain Sinkhorn iterations on dual potentials ``f, g`` (stable for small
    ``epsilon``): ``f ← ε log a − ε LSE_j((g_j − C_ij)/ε)``, ``g ← ε log b − ε LSE_i((f_i − C_ij)/ε)``,
    ``Π_ij = exp((f_i + g_j − C_ij)/ε)``. The value equals POT's ``ot.sinkhorn2``; gradients flow through
    the unrolled iterations. Iteration stops early once the row-marginal error ``Σ|Π1 − a|`` of every
    histogram is below ``tol``.

    Cuturi (2013), "Sinkhorn Distances: Lightspeed Computation of Optimal Transport"; log-domain form as
    in Peyré & Cuturi (2019), "Computational Optimal Transport", §4.4.

    Args:
        predictions: ``[..., n]`` histogram ``a`` (non-negative, summing to 1).
        targets: ``[..., m]`` histogram ``b``.
        cost: ``[n, m]`` or ``[..., n, m]`` ground cost.
        epsilon: entropic regularisation ``ε > 0`` (POT's ``reg``).
        num_iters: maximum number of Sinkhorn iterations.
        mask, weights: over the leading dims ``[...]``.
    """
    for name, x in (("predictions", predictions), ("targets", targets), ("cost", cost)):
        if not isinstance(x, torch.Tensor):
            raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if predictions.ndim < 1 or targets.ndim < 1 or predictions.shape[:-1] != targets.shape[:-1]:
        raise InputError(
            f"predictions [..., n] and targets [..., m] must share leading dims, got "
            f"{list(predictions.shape)} and {list(targets.shape)}"
        )
    n, m = predictions.shape[-1], targets.shape[-1]
    if cost.ndim < 2 or cost.shape[-2:] != (n, m):
        raise InputError(f"cost must have shape [..., {n}, {m}], got {list(cost.shape)}")
    lead = predictions.shape[:-1]
    check_broadcastable("cost leading dims", cost[..., 0, 0], lead)
    check_broadcastable("mask", mask, lead)
    check_broadcastable("weights", weights, lead)

    log_a = _safe_log(predictions)
    log_b = _safe_log(targets)
    scaled = cost / epsilon
    f = torch.zeros_like(predictions)
    g = torch.zeros_like(targets)
    for it in range(num_iters):
        f = epsilon * (log_a - torch.logsumexp(g.unsqueeze(-2) / epsilon - scaled, dim=-1))
        g = epsilon * (log_b - torch.logsumexp(f.unsqueeze(-1) / epsilon - scaled, dim=-2))
        if (it + 1) % 10 == 0:
            with torch.no_grad():
                rows = torch.exp((f.unsqueeze(-1) + g.unsqueeze(-2)) / epsilon - scaled).sum(-1)
                if predictions.numel() == 0 or (rows - predictions).abs().sum(-1).max() < tol:
                    break
    plan = torch.exp((f.unsqueeze(-1) + g.unsqueeze(-2)) / epsilon - scaled)
    values = (plan * cost).sum((-2, -1))
    return _finish(values, mask=mask, weights=weights, reduction=reduction)


# --------------------------------------------------------------------------------------------- token level


def _log_softmax_scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    # half-precision log-softmax loses the small teacher probabilities that distillation needs
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    return torch.log_softmax(logits, dim=-1)


def _positions(divergence, temperature, options, student: torch.Tensor, teacher: torch.Tensor):
    log_s = _log_softmax_scaled(student, temperature)
    log_t = _log_softmax_scaled(teacher, temperature)
    return divergence(log_s, log_t, reduction="none", **options)


class _ChunkedPositions(torch.autograd.Function):
    """Per-position values computed chunk by chunk, with their gradients taken in the same pass.

    Each value depends on its own row only, so ``d loss / d row_n = grad_out_n * d value_n / d row_n``:
    the forward differentiates ``sum(values)`` chunk by chunk into one preallocated buffer and the
    backward only rescales it. Peak extra memory is that buffer (the size of the gradient anyway) plus
    one chunk's intermediates, with a single forward and backward sweep (no recomputation). Slicing a
    tensor that requires grad instead would make autograd build one full-size gradient per slice.
    """

    @staticmethod
    def forward(ctx, fn, chunk_size, student, teacher):
        need = ctx.needs_input_grad[2:]
        grads = [torch.empty_like(x) if n else None for x, n in zip((student, teacher), need)]
        pieces = []
        for i in range(0, student.shape[0], chunk_size):
            rows = [x[i : i + chunk_size] for x in (student, teacher)]
            if not any(need):
                pieces.append(fn(*rows))
                continue
            with torch.enable_grad():
                rows = [r.detach().requires_grad_(n) for r, n in zip(rows, need)]
                values = fn(*rows)
                got = iter(torch.autograd.grad(values.sum(), [r for r, n in zip(rows, need) if n]))
            for g, n in zip(grads, need):
                if n:
                    g[i : i + chunk_size] = next(got)
            pieces.append(values.detach())
        ctx.save_for_backward(*grads)
        ctx.consumed = False
        return torch.cat(pieces)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_values):
        if ctx.consumed:
            raise RuntimeError("the chunked token-level divergence supports a single backward pass")
        ctx.consumed = True
        scale = grad_values.unsqueeze(-1)
        # in place: the buffers belong to this graph node alone and are used once
        grads = [g.mul_(scale) if g is not None else None for g in ctx.saved_tensors]
        return None, None, *grads


@declare_options(*_TOKEN_OPTIONS)
def token_divergence(
    divergence: Callable[..., torch.Tensor],
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    chunk_size: int | None = None,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
    **options,
) -> torch.Tensor:
    r"""Apply a log-space divergence to temperature-scaled logits, position by position, in chunks.

    .. math::
        \ell_{n} = D\big(\log\mathrm{softmax}(s_n/\tau),\ \log\mathrm{softmax}(t_n/\tau)\big)

    for every leading position ``n`` (e.g. every token of ``[batch, time, vocab]``). With ``chunk_size``
    the positions are processed ``chunk_size`` at a time; when the logits require grad, each chunk's
    gradient is taken right away (a position's value depends on its own row only) into one preallocated
    buffer that the backward pass rescales. Besides the inputs and their gradients only one chunk's
    ``[chunk, vocab]`` intermediates are alive; values and gradients equal the unchunked computation
    (first-order gradients and a single backward pass only on the chunked path).
    Half-precision logits are upcast to float32 chunk by chunk.

    Args:
        divergence: a function ``(log_predictions, log_targets, *, reduction, **options)`` from this module
            (e.g. :func:`generalized_jsd`).
        student_logits, teacher_logits: ``[..., vocab]`` logits.
        temperature: ``τ > 0`` dividing both logits.
        chunk_size: positions per chunk (``None``: all at once).
        mask, weights: over the leading dims (e.g. ``[batch, time]``).
    """
    check_distributions(("student_logits", "teacher_logits"), student_logits, teacher_logits, mask, weights)
    lead = student_logits.shape[:-1]
    vocab = student_logits.shape[-1]
    fn = partial(_positions, divergence, float(temperature), options)
    s_flat = student_logits.reshape(-1, vocab)
    t_flat = teacher_logits.reshape(-1, vocab)
    total = s_flat.shape[0]
    if chunk_size is None or chunk_size >= total:
        values = fn(s_flat, t_flat)
    elif torch.is_grad_enabled() and (s_flat.requires_grad or t_flat.requires_grad):
        values = _ChunkedPositions.apply(fn, chunk_size, s_flat, t_flat)
    else:
        values = torch.cat([fn(s, t) for s, t in zip(s_flat.split(chunk_size), t_flat.split(chunk_size))])
    return reduce_loss(values.reshape(lead), reduction, mask=mask, weights=weights)


@register(
    "token_kl_divergence",
    inputs=TOKEN_STUDENT_TEACHER,
    family="divergence",
    aliases=("token_forward_kl",),
    options=(*_TOKEN_OPTIONS,),
)
def token_kl_divergence(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    chunk_size: int | None = None,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Token-level forward KL ``KL(softmax(t/τ) || softmax(s/τ))`` per position, chunked.

    .. math::
        \ell_n = \mathrm{KL}\big(\mathrm{softmax}(t_n/\tau) \,\|\, \mathrm{softmax}(s_n/\tau)\big)

    Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural Network" (no ``τ²`` factor here;
    see :func:`pairkit.losses.hinton_kd_loss`).

    Args:
        student_logits, teacher_logits: ``[..., vocab]`` (e.g. ``[batch, time, vocab]``).
        chunk_size: positions per chunk, see :func:`token_divergence`.
        mask, weights: over the leading dims (e.g. ``[batch, time]``).
    """
    return token_divergence(
        kl_divergence_with_log_targets,
        student_logits,
        teacher_logits,
        temperature=temperature,
        chunk_size=chunk_size,
        mask=mask,
        weights=weights,
        reduction=reduction,
    )


@register(
    "token_reverse_kl_divergence",
    inputs=TOKEN_STUDENT_TEACHER,
    family="divergence",
    aliases=("token_reverse_kl",),
    options=(*_TOKEN_OPTIONS,),
)
def token_reverse_kl_divergence(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    chunk_size: int | None = None,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Token-level reverse KL ``KL(softmax(s/τ) || softmax(t/τ))`` per position, chunked.

    .. math::
        \ell_n = \mathrm{KL}\big(\mathrm{softmax}(s_n/\tau) \,\|\, \mathrm{softmax}(t_n/\tau)\big)

    Gu et al. (2024), "MiniLLM: Knowledge Distillation of Large Language Models".

    Args:
        student_logits, teacher_logits: ``[..., vocab]``.
        chunk_size: positions per chunk, see :func:`token_divergence`.
        mask, weights: over the leading dims.
    """
    return token_divergence(
        reverse_kl_divergence,
        student_logits,
        teacher_logits,
        temperature=temperature,
        chunk_size=chunk_size,
        mask=mask,
        weights=weights,
        reduction=reduction,
    )


@register(
    "token_generalized_jsd",
    inputs=TOKEN_STUDENT_TEACHER,
    family="divergence",
    aliases=("gkd", "generalized_jsd_loss"),
    options=(
        _JSD_BETA,
        *_TOKEN_OPTIONS,
    ),
)
def token_generalized_jsd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    beta: float = 0.5,
    temperature: float = 1.0,
    chunk_size: int | None = None,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Token-level generalised JSD of GKD (TRL's ``generalized_jsd_loss``), chunked over positions.

    .. math::
        \ell_n = \mathrm{JSD}_\beta\big(\mathrm{softmax}(s_n/\tau),\ \mathrm{softmax}(t_n/\tau)\big)

    (see :func:`generalized_jsd`). With ``mask = labels != -100`` and ``reduction="mean"`` this equals
    ``GKDTrainer.generalized_jsd_loss(s, t, labels, beta=beta, temperature=τ)`` ("batchmean" over the
    unmasked tokens).

    Agarwal et al. (2024), "On-Policy Distillation of Language Models: Learning from Self-Generated
    Mistakes".

    Args:
        student_logits, teacher_logits: ``[..., vocab]``.
        beta: in ``[0, 1]``.
        chunk_size: positions per chunk, see :func:`token_divergence`.
        mask, weights: over the leading dims.
    """
    return token_divergence(
        generalized_jsd,
        student_logits,
        teacher_logits,
        temperature=temperature,
        chunk_size=chunk_size,
        mask=mask,
        weights=weights,
        reduction=reduction,
        beta=beta,
    )
