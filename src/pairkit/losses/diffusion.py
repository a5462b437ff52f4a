"""Preference losses for diffusion and flow models, over per-sample denoising errors.

A diffusion model has no tractable sequence log-probability; its ELBO stands in for it. The inputs here are
per-sample denoising errors :math:`e = \\lVert\\epsilon - \\epsilon_\\theta(x_t, t)\\rVert^2` (mean over the
latent's elements; for rectified-flow models the velocity error :math:`\\lVert v - v_\\theta(x_t, t)\\rVert^2`),
computed at the same noise and timestep for the trained model (:math:`e`) and the frozen reference
(:math:`e^{ref}`). A lower error than the reference's is a higher implicit reward:

.. math::

    r(x) = -(e(x) - e^{ref}(x))

(:func:`denoising_rewards`), and each loss here is that score adapter followed by an existing core: Diffusion-DPO
and Flow-DPO by the logistic loss of DPO, Diffusion-KTO by :func:`~pairkit.losses.kto_loss`, RankDPO by the
lambda-weighted pair-logistic loss of LiPO-λ (:func:`~pairkit.losses.lipo_lambda_weights`). MaPO is reference-free.
The timestep weighting :math:`T\\omega(\\lambda_t)` of the papers is folded into β, as in the public
implementations (β of the order of thousands for Stable Diffusion).
"""

from __future__ import annotations

import math

import torch

from pairkit._spec import Input, Interval, Option
from pairkit.errors import InputError
from pairkit.losses._checks import check_list_inputs
from pairkit.losses._core import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    POSITIVE,
    Reduction,
    check_float_tensors,
    keyword,
    register,
    weight_option,
)
from pairkit.losses._pairs import per_pair, reduce
from pairkit.losses.preference_listwise import lambda_pair_logistic
from pairkit.losses.preference_unpaired import kto_kl_estimate, kto_loss
from pairkit.losses.scores import logistic_loss

__all__ = [
    "denoising_rewards",
    "diffusion_dpo_loss",
    "diffusion_kto_loss",
    "diffusion_pso_loss",
    "diffusion_spo_loss",
    "flow_dpo_loss",
    "mapo_loss",
    "rankdpo_loss",
]

FAMILY = "diffusion"

ERRORS_PAIR = (Input("policy_chosen_errors", "denoising_errors"), Input("policy_rejected_errors", "denoising_errors"))
ERRORS_PAIR_REF = (
    *ERRORS_PAIR,
    Input("ref_chosen_errors", "denoising_errors"),
    Input("ref_rejected_errors", "denoising_errors"),
)
ERRORS_UNPAIRED = (
    Input("policy_errors", "denoising_errors"),
    Input("ref_errors", "denoising_errors"),
    Input("desirable", "binary"),
)
ERRORS_LIST_REF = (
    Input("policy_errors", "denoising_errors", "[batch, list]"),
    Input("ref_errors", "denoising_errors", "[batch, list]"),
    Input("labels", "grades", "[batch, list]"),
)
DIFFUSION_BETA = Option("beta", float, POSITIVE, doc="inverse temperature β (timestep weighting T·ω(λ_t) folded in)")
TIME_SCALE = keyword(
    "time_scale", "stds", doc="per-pair factor β_t/β multiplying β inside the sigmoid (a timestep-dependent β_t)"
)


def _check_errors(mask, weights, **tensors) -> torch.Tensor:
    return check_float_tensors(mask, weights, what=" of denoising errors", **tensors)


def denoising_rewards(policy_errors: torch.Tensor, ref_errors: torch.Tensor) -> torch.Tensor:
    """The implicit reward of a sample from denoising errors, :math:`r = -(e - e^{ref})` (score adapter).

    Wallace et al. (2023), "Diffusion Model Alignment Using Direct Preference Optimization", eq. (14): the ELBO
    difference of model and reference, up to the timestep weighting (folded into β by the losses).

    Args: ``policy_errors``, ``ref_errors`` of one shape. Returns that shape.
    """
    return ref_errors - policy_errors


def _dpo_on_errors(pc, pr, rc, rr, beta, time_scale, mask, weights, reduction) -> torch.Tensor:
    like = _check_errors(
        mask, weights, policy_chosen_errors=pc, policy_rejected_errors=pr, ref_chosen_errors=rc, ref_rejected_errors=rr
    )
    margin = denoising_rewards(pc, rc) - denoising_rewards(pr, rr)
    scale = 0.5 * beta
    if time_scale is not None:
        scale = scale * per_pair("time_scale", time_scale, like)
    return reduce(logistic_loss(scale * margin), reduction, mask, weights)


@register("diffusion_dpo", inputs=(*ERRORS_PAIR_REF, TIME_SCALE), family=FAMILY, options=(DIFFUSION_BETA,))
def diffusion_dpo_loss(
    policy_chosen_errors: torch.Tensor,
    policy_rejected_errors: torch.Tensor,
    ref_chosen_errors: torch.Tensor,
    ref_rejected_errors: torch.Tensor,
    *,
    time_scale: torch.Tensor | None = None,
    beta: float = 5000.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Diffusion-DPO: DPO's logistic loss on the denoising-error implicit rewards of winner and loser.

    .. math::

        \\ell = -\\log\\sigma\\Big(-\\frac{\\beta}{2}\\big[(e_w - e_w^{ref}) - (e_l - e_l^{ref})\\big]\\Big),
        \\qquad e = \\lVert\\epsilon - \\epsilon_\\theta(x_t, t)\\rVert^2

    Wallace et al. (2023), "Diffusion Model Alignment Using Direct Preference Optimization", eq. (14), in the
    form of diffusers' ``examples/research_projects/diffusion_dpo/train_diffusion_dpo.py`` (``beta_dpo``; the
    paper's :math:`T\\omega(\\lambda_t)` folded into β, hence the paper's β = 5000 as default). Winner and loser
    are noised with the same ε and t. ``time_scale`` (``[batch]``, optional) multiplies β per pair.

    Args: four ``[batch]`` per-sample errors (mean over latent elements; ref ones without gradient).
    Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    return _dpo_on_errors(
        policy_chosen_errors, policy_rejected_errors, ref_chosen_errors, ref_rejected_errors, beta, time_scale,
        mask, weights, reduction,
    )  # fmt: skip


@register(
    "diffusion_pso",
    inputs=(*ERRORS_PAIR_REF, TIME_SCALE),
    family=FAMILY,
    aliases=("pso", "pairwise_sample_optimization"),
    options=(
        Option("beta", float, POSITIVE, doc="inverse temperature β (the authors' beta_pso; no factor 1/2)"),
        Option("rejected_weight", float, NON_NEGATIVE, doc="d: weight of the reference image's error terms"),
        weight_option("prior_weight", "weight of the reference image's own error e_ref (keeps it fitted)"),
    ),
)
def diffusion_pso_loss(
    policy_chosen_errors: torch.Tensor,
    policy_rejected_errors: torch.Tensor,
    ref_chosen_errors: torch.Tensor,
    ref_rejected_errors: torch.Tensor,
    *,
    time_scale: torch.Tensor | None = None,
    beta: float = 2500.0,
    rejected_weight: float = 1.0,
    prior_weight: float = 0.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """PSO: tune a timestep-distilled diffusion model by widening the likelihood margin of training over sampled images.

    Each training (target) image :math:`x^{tgt}` is paired with a reference image :math:`x^{ref}` sampled from the
    timestep-distilled model itself for the same prompt; both are noised to one of the model's distilled
    timesteps with the same noise, and with the per-sample errors :math:`e` of the model being tuned and
    :math:`e^{0}` of the frozen distilled model (the implicit log-likelihood ratio is :math:`-(e - e^{0})`):

    .. math::

        \\ell = -\\log\\sigma\\Big(\\beta\\big[(e^{0}_{tgt} - e_{tgt}) - d\\,(e^{0}_{ref} - e_{ref})\\big]\\Big)
            + \\lambda_{prior}\\, e_{ref}

    Raising the target images' likelihood only *relative* to the model's own samples keeps the few-step
    generator's output distribution (plain diffusion fine-tuning of a distilled model blurs it). With
    :math:`d = 1`, :math:`\\lambda_{prior} = 0` and β twice as large this is :func:`diffusion_dpo_loss` (whose
    β/2 follows diffusers' Diffusion-DPO example); with offline preference pairs (winner, loser) in place of
    (target, reference) it is Diffusion-DPO itself.

    Miao, Yang, Lin, Wang, Liu, Wang & Qiu (2025), "Tuning Timestep-Distilled Diffusion Model Using Pairwise
    Sample Optimization" (ICLR). The paper's equations could not be reached; checked instead against the authors'
    code (their README: "the official Pytorch implementation"; read in the public fork
    ``yaramohamadi/Pairwise_Sample_Optimization``, ``personalization/train_pso_sdxl_turbo_dreambooth.py``): the
    ``pso`` loss there is :math:`-\\log\\sigma(\\beta_{pso}\\,(\\text{ref\\_diff} - \\text{model\\_diff}))` with
    :math:`\\text{diff} = e_{tgt} - d\\, e_{ref}` (``neg_defactor`` = ``rejected_weight``, 1 by default there),
    per-sample errors the σ⁻²-weighted mean squared x₀ errors at one of the distilled timesteps, target and
    reference noised with the same noise and timestep, plus ``prior_loss_weight`` times the model's mean error on
    the reference images (``prior_weight``; 0.5 in their customisation scripts). β here is theirs, without the
    factor 1/2; the default 2500 makes the default loss equal :func:`diffusion_dpo_loss` at its β = 5000 (tune it
    per model). Not included: their reference-free hinge variant ``pso_db``
    (:math:`\\max(0, 1 + \\beta\\,\\text{model\\_diff})`) and the online variant, which scores whole sampled
    trajectories by clipped per-step transition log-ratios in the way of D3PO (the caller's sampler; see
    :func:`diffusion_spo_loss` for a clipped step-ratio core).

    Args: four ``[batch]`` per-sample errors (mean over latent elements; the frozen model's without gradient), the
    target image's as ``chosen`` and the sampled reference image's as ``rejected``;
    ``time_scale``: optional ``[batch]`` factor on β. Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    like = _check_errors(
        mask, weights, policy_chosen_errors=policy_chosen_errors, policy_rejected_errors=policy_rejected_errors,
        ref_chosen_errors=ref_chosen_errors, ref_rejected_errors=ref_rejected_errors,
    )  # fmt: skip
    margin = denoising_rewards(policy_chosen_errors, ref_chosen_errors) - rejected_weight * denoising_rewards(
        policy_rejected_errors, ref_rejected_errors
    )
    scale = beta if time_scale is None else beta * per_pair("time_scale", time_scale, like)
    values = logistic_loss(scale * margin)
    if prior_weight:
        values = values + prior_weight * policy_rejected_errors
    return reduce(values, reduction, mask, weights)


@register("flow_dpo", inputs=(*ERRORS_PAIR_REF, TIME_SCALE), family=FAMILY, options=(DIFFUSION_BETA,))
def flow_dpo_loss(
    policy_chosen_errors: torch.Tensor,
    policy_rejected_errors: torch.Tensor,
    ref_chosen_errors: torch.Tensor,
    ref_rejected_errors: torch.Tensor,
    *,
    time_scale: torch.Tensor | None = None,
    beta: float = 5000.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Flow-DPO: the Diffusion-DPO objective on velocity-prediction errors of a rectified-flow model.

    .. math::

        \\ell = -\\log\\sigma\\Big(-\\frac{\\beta_t}{2}\\big[(e_w - e_w^{ref}) - (e_l - e_l^{ref})\\big]\\Big),
        \\qquad e = \\lVert v - v_\\theta(x_t, t)\\rVert^2,\\quad v = \\epsilon - x_0,\\quad
        x_t = (1 - t)\\,x_0 + t\\,\\epsilon

    Liu et al. (2025), "Improving Video Generation with Human Feedback" (Flow-DPO), derived from Diffusion-DPO
    with the noise-prediction errors replaced by velocity errors. Reading taken: β is one constant, as in
    Diffusion-DPO; where a timestep-dependent :math:`\beta_t` is wanted, ``time_scale`` (``[batch]``) gives
    :math:`\beta_t/\beta` per pair. Numerically this is :func:`diffusion_dpo_loss` on velocity errors.

    Args: four ``[batch]`` per-sample velocity errors. Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    return _dpo_on_errors(
        policy_chosen_errors, policy_rejected_errors, ref_chosen_errors, ref_rejected_errors, beta, time_scale,
        mask, weights, reduction,
    )  # fmt: skip


@register(
    "diffusion_kto",
    inputs=ERRORS_UNPAIRED,
    family=FAMILY,
    batch_coupled=True,
    options=(
        Option("kl", float, NON_NEGATIVE, none=True, doc="fixed reference point Q_ref (None: batch estimate)"),
        DIFFUSION_BETA,
        weight_option("desirable_weight", "weight λ_D of desirable samples"),
        weight_option("undesirable_weight", "weight λ_U of undesirable samples"),
    ),
)
def diffusion_kto_loss(
    policy_errors: torch.Tensor,
    ref_errors: torch.Tensor,
    desirable: torch.Tensor,
    *,
    kl: float | None = None,
    beta: float = 5000.0,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Diffusion-KTO: the Kahneman–Tversky utility of each sample's implicit reward against a reference point.

    .. math::

        \\ell = \\lambda_y\\big(1 - \\sigma(\\pm\\beta\\,(r - Q_{ref}))\\big),\\qquad r = -(e - e^{ref}),\\qquad
        Q_{ref} = \\max\\Big(0, \\operatorname{sg}\\Big[\\frac1m\\sum_i r_i\\Big]\\Big)

    with + for desirable and − for undesirable samples. Li et al. (2024), "Aligning Diffusion Models by Optimizing
    Human Utility", eq. (8), with the sigmoid utility (their default). Reading taken, from the authors' release
    (``jacklishufan/diffusion-kto``): the reference point is the clamped, gradient-stopped batch mean of the
    implicit rewards of the same (not mismatched) samples, β without the 1/2 of Diffusion-DPO, and the
    ``"mean"`` divides by the number of samples. ``kl`` fixes :math:`Q_{ref}` instead. Built on
    :func:`~pairkit.losses.kto_loss`; ``mask`` leaves samples out of the reference point too.

    Args: ``policy_errors``, ``ref_errors``, ``desirable`` (bool) ``[batch]``. Returns ``[batch]`` or a scalar.
    """
    _check_errors(mask, weights, policy_errors=policy_errors, ref_errors=ref_errors)
    policy, ref = -policy_errors, -ref_errors
    if kl is None:
        kl = kto_kl_estimate(policy, ref, mask=mask)
    return kto_loss(
        policy, ref, desirable, kl=kl, beta=beta, desirable_weight=desirable_weight,
        undesirable_weight=undesirable_weight, mask=mask, weights=weights, reduction=reduction,
    )  # fmt: skip


def _odds_estimate(x: torch.Tensor) -> torch.Tensor:
    """:math:`x / (e^x - 1)` (1 at 0), finite with finite gradients for any finite ``x``."""
    small = x.abs() < 1e-3
    pos = x.clamp(min=1e-3)
    neg = x.clamp(max=-1e-3)
    big = torch.where(x > 0, pos * torch.exp(-pos) / -torch.expm1(-pos), neg / torch.expm1(neg))
    return torch.where(small, 1.0 - x / 2.0 + x * x / 12.0, big)


@register(
    "mapo",
    inputs=ERRORS_PAIR,
    family=FAMILY,
    options=(
        Option("beta", float, POSITIVE, doc="weight β of the margin (odds-ratio) term"),
        Option("snr", float, POSITIVE, doc="the constant γ scaling the errors in the log-odds estimate"),
        Option("num_timesteps", int, AT_LEAST_ONE, doc="T, the number of training timesteps of the scheduler"),
    ),
)
def mapo_loss(
    policy_chosen_errors: torch.Tensor,
    policy_rejected_errors: torch.Tensor,
    *,
    beta: float = 0.1,
    snr: float = 1.0,
    num_timesteps: int = 1000,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """MaPO: reference-free — the winner's denoising loss plus a log-odds margin between winner and loser.

    .. math::

        \\ell = e_w - \\beta\\log\\sigma\\big(T\\,[\\phi(\\gamma e_w) - \\phi(\\gamma e_l)]\\big),
        \\qquad \\phi(x) = \\frac{x}{e^{x} - 1}

    Hong et al. (2024), "Margin-aware Preference Optimization for Aligning Diffusion Models without Reference".
    :math:`\\phi` is their estimate of the log-odds of a sample from its denoising error; T
    (``num_timesteps``) spreads the margin over the denoising process. Reading taken, from the authors'
    release: γ (``snr``) is a constant rather than the per-timestep SNR, the SFT term is the winner's error only,
    and the margin term reuses the logistic core (:math:`-\\log\\sigma`). :math:`\\phi` is evaluated stably (its
    series near 0, :math:`x e^{-x}/(1 - e^{-x})` for large x).

    Args: ``policy_chosen_errors``, ``policy_rejected_errors`` ``[batch]``. Returns ``[batch]`` or a scalar.
    """
    _check_errors(
        mask, weights, policy_chosen_errors=policy_chosen_errors, policy_rejected_errors=policy_rejected_errors
    )
    margin = _odds_estimate(snr * policy_chosen_errors) - _odds_estimate(snr * policy_rejected_errors)
    values = policy_chosen_errors + beta * logistic_loss(num_timesteps * margin)
    return reduce(values, reduction, mask, weights)


@register(
    "rankdpo",
    inputs=ERRORS_LIST_REF,
    family=FAMILY,
    aliases=("rank_dpo",),
    options=(DIFFUSION_BETA, Option("lambda_weights", bool, doc="DCG (LambdaRank) pair weights (False: all 1)")),
)
def rankdpo_loss(
    policy_errors: torch.Tensor,
    ref_errors: torch.Tensor,
    labels: torch.Tensor,
    *,
    beta: float = 5000.0,
    lambda_weights: bool = True,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """RankDPO: DCG-weighted Diffusion-DPO over every ordered pair of K ranked samples of one prompt.

    .. math::

        \\ell = -\\sum_{i, j:\\ \\psi_i > \\psi_j} \\Delta_{ij}\\,\\log\\sigma(s_i - s_j),
        \\qquad s_i = -\\frac{\\beta}{2}(e_i - e_i^{ref}),\\qquad
        \\Delta_{ij} = |G_i - G_j|\\,\\Big|\\frac{1}{D(\\tau_i)} - \\frac{1}{D(\\tau_j)}\\Big|

    with gains :math:`G = 2^{\\psi} - 1` of the grades ``labels`` and :math:`D(\\tau) = \\log_2(1 + \\tau)`.
    Karthik et al. (2024), "Scalable Ranked Preference Optimization for Text-to-Image Generation". Reading taken:
    :math:`\\tau_i` is the rank by the current implicit rewards (LambdaRank, as LiPO-λ:
    :func:`~pairkit.losses.lipo_lambda_weights`, no gradient through Δ), and the scores carry Diffusion-DPO's
    β/2, so with K = 2 and ``lambda_weights=False`` this is :func:`diffusion_dpo_loss`. Equal grades and masked
    samples contribute nothing.

    Args: ``policy_errors``, ``ref_errors``, ``labels``, ``mask`` ``[batch, list]``; ``weights`` ``[batch]``.
    Returns ``[batch]`` or a scalar.
    """
    _check_errors(None, None, policy_errors=policy_errors, ref_errors=ref_errors)
    s = 0.5 * beta * denoising_rewards(policy_errors, ref_errors)
    labels, valid = check_list_inputs(s, labels, mask, weights, names=("policy_errors", "labels"))
    return lambda_pair_logistic(s, labels, valid, lambda_weights, weights, reduction)


STEP_VARIANCE = keyword(
    "step_variance",
    "stds",
    required=True,
    doc="per-pair variance σ_t² of the sampler's Gaussian step p(x_{t-1} | x_t) (DDIM with η > 0 / DDPM)",
)


@register(
    "diffusion_spo",
    inputs=(*ERRORS_PAIR_REF, STEP_VARIANCE),
    family=FAMILY,
    aliases=("spo_diffusion", "step_aware_preference_optimization"),
    options=(
        Option("beta", float, POSITIVE, doc="inverse temperature β of the step log-ratios"),
        Option("clip", float, Interval(0, 1, closed="neither"), doc="ε: the step ratio is clipped to [1-ε, 1+ε]"),
    ),
)
def diffusion_spo_loss(
    policy_chosen_errors: torch.Tensor,
    policy_rejected_errors: torch.Tensor,
    ref_chosen_errors: torch.Tensor,
    ref_rejected_errors: torch.Tensor,
    *,
    step_variance: torch.Tensor,
    beta: float = 10.0,
    clip: float = 0.1,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """SPO: step-aware preference optimisation — DPO on one denoising step, with clipped step probability ratios.

    At a step ``t`` two candidates :math:`x_{t-1}^w, x_{t-1}^l` are drawn from the *same* :math:`x_t` and ranked by
    a step-aware preference model. With Gaussian steps :math:`p_\\theta(x_{t-1}\\mid x_t) =
    \\mathcal N(\\mu_\\theta(x_t, t), \\sigma_t^2 I)`, the per-element mean log-ratio of model and reference is
    :math:`\\log r = -(e - e^{ref}) / (2\\sigma_t^2)` with the step errors
    :math:`e = \\operatorname{mean}\\lVert x_{t-1} - \\mu_\\theta(x_t, t)\\rVert^2`, and

    .. math::

        \\ell = -\\log\\sigma\\Big(\\beta\\,\\big[\\operatorname{clip}(\\log r_w)
            - \\operatorname{clip}(\\log r_l)\\big]\\Big),\\qquad
        \\operatorname{clip}(u) = \\min\\big(\\max(u, \\log(1-\\varepsilon)), \\log(1+\\varepsilon)\\big)

    Liang et al. (2024), "Step-aware Preference Optimization: Aligning Preference with Denoising Performance at
    Each Step" (SPO), as the authors' release (``RockeyCoss/SPO``: the DDIM step log-probability averaged over the
    latent's elements, the ratio clamped to :math:`[1-\\varepsilon, 1+\\varepsilon]` before the log — so a ratio
    outside the band gets no gradient — β = 10, ε = 0.1). The step-aware preference model and the step-wise
    resampler are the caller's (the trainer takes their output: :math:`x_t`, the two :math:`x_{t-1}`, ``t``).

    Args: four ``[batch]`` step errors (mean over latent elements; reference ones without gradient);
    ``step_variance``: ``[batch]`` σ_t² > 0. Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    like = _check_errors(
        mask, weights, policy_chosen_errors=policy_chosen_errors, policy_rejected_errors=policy_rejected_errors,
        ref_chosen_errors=ref_chosen_errors, ref_rejected_errors=ref_rejected_errors,
    )  # fmt: skip
    variance = per_pair("step_variance", step_variance, like)
    if bool((~(variance > 0)).any()):
        raise InputError("step_variance must be > 0 (the variance σ_t² of a stochastic sampler step; η > 0)")
    low, high = math.log1p(-clip), math.log1p(clip)
    scale = 0.5 / variance
    log_w = (-(policy_chosen_errors - ref_chosen_errors) * scale).clamp(low, high)
    log_l = (-(policy_rejected_errors - ref_rejected_errors) * scale).clamp(low, high)
    return reduce(logistic_loss(beta * (log_w - log_l)), reduction, mask, weights)
