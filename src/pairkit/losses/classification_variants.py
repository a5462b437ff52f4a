"""Classification variants beyond fixed surrogate losses: stochastic calibrated loss ensembles (EnsLoss), a
confidence-limiting loss aligned to pass@N, correctness-aware calibration, and the adversarial (ρ-margin and
smooth) comp-sum losses."""

from __future__ import annotations

import torch

from pairkit._spec import Input, Interval, Option
from pairkit.errors import InputError
from pairkit.losses._core import Reduction, check_broadcastable, keyword, reduce_loss, register

__all__ = [
    "adversarial_comp_sum_loss",
    "correctness_aware_loss",
    "ensloss",
    "ensloss_derivatives",
    "pass_at_n_loss",
    "smooth_adversarial_comp_sum_loss",
]


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


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 − e^x)`` for ``x <= 0``, accurate at both ends (Mächler 2012)."""
    x = x.clamp(max=0.0)
    near = x > -0.6931471805599453
    safe_near = torch.where(near, x, torch.full_like(x, -1.0))
    safe_far = torch.where(near, torch.full_like(x, -1.0), x)
    return torch.where(near, torch.log(-torch.expm1(safe_near)), torch.log1p(-torch.exp(safe_far)))


@register(
    "pass_at_n_loss",
    inputs=(Input("logps", "logps"),),
    family="classification",
    aliases=("pass_at_n", "direct_coverage_optimization", "dco"),
    options=(Option("n", int, Interval(1, None), doc="number N of test-time samples the loss is aligned to"),),
)
def pass_at_n_loss(
    logps: torch.Tensor,
    *,
    n: int = 8,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Confidence-limiting loss aligned to pass@N: the negative log-probability that N samples contain the answer.

    With :math:`p = \pi(y \mid x) = e^{\text{logps}}` the model's probability of the correct answer,

    .. math::
        \ell = -\log\big(1 - (1 - p)^N\big),

    which is cross-entropy at ``N = 1``; for larger ``N`` its gradient with respect to :math:`\log p`,
    :math:`-N p (1-p)^{N-1} / (1 - (1-p)^N)`, vanishes as :math:`p \to 1`, so examples already solved with high
    probability stop pushing the model to overconfidence (which hurts pass@N). Computed in the log domain
    (``log1mexp``); for :math:`p < e^{-30}` the first-order form :math:`-\log N - \log p` is used.

    Chen, Raventós, Cheng, Ganguli & Druckmann (2025), "Rethinking Fine-Tuning when Scaling Test-Time Compute:
    Limiting Confidence Improves Mathematical Reasoning" (NeurIPS), their direct coverage optimisation objective.

    Args:
        logps: ``[batch]`` log-probabilities of the correct answers (summed over its tokens).
    Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    if not (isinstance(logps, torch.Tensor) and logps.is_floating_point()):
        raise InputError("logps must be a floating-point torch tensor")
    check_broadcastable("mask", mask, logps.shape)
    check_broadcastable("weights", weights, logps.shape)
    x = logps.float() if logps.dtype in (torch.float16, torch.bfloat16) else logps
    x = x.clamp(max=0.0)
    tiny = x < -30.0
    # log (1 - p)^N = N log(1 - e^x); then log(1 - (1 - p)^N)
    log_miss = n * _log1mexp(torch.where(tiny, torch.full_like(x, -1.0), x))
    exact = _log1mexp(log_miss)
    values = -torch.where(tiny, x + torch.log(torch.tensor(float(n), dtype=x.dtype)), exact)
    return reduce_loss(values.to(logps.dtype), reduction, mask=mask, weights=weights)


@register(
    "correctness_aware_loss",
    inputs=(
        Input("logits", "logits", "[batch, classes]"),
        Input("labels", "classes"),
        keyword("predictions", "classes", doc="the classifier's predicted classes (default: argmax of logits)"),
    ),
    family="classification",
    aliases=("ca_loss", "correctness_aware_calibration"),
    batch_coupled=True,
)
def correctness_aware_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    predictions: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Correctness-aware calibration loss: a calibrator's confidence should be 1 on correct predictions, 0 else.

    For a post-hoc calibrator's logits :math:`\tilde z` (e.g. temperature-scaled), confidence
    :math:`c = \max_k \operatorname{softmax}(\tilde z)_k` and correctness :math:`a = \mathbb 1[\hat y = y]` of
    the classifier's prediction :math:`\hat y` (``predictions``; default the argmax of ``logits``):

    .. math::
        \ell_i = w_i\,(c_i - a_i)^2, \qquad w_i = \begin{cases} 1 - \bar a & a_i = 1\\ \bar a & a_i = 0\end{cases},
        \qquad \mathcal L = \frac{\sum_i \ell_i}{\sum_i w_i},

    with :math:`\bar a` the batch accuracy, so correct and incorrect predictions weigh equally overall (the
    ``"mean"`` divides by the weights, as the authors). Unlike NLL it directly targets the confidence of the
    *predicted* class on correct vs. wrong samples.

    Liu, Wang, Zou, Zou & Zheng (2024), "Optimizing Calibration by Gaining Aware of Prediction Correctness"; as the
    authors' ``loss_CA`` (liuyvchi/Correctness-aware-calibration). A batch with only correct (or only wrong)
    predictions has zero total weight and gives 0.

    Args:
        logits: ``[batch, K]`` calibrated logits; labels: ``[batch]``; predictions: optional ``[batch]``.
    Returns ``[batch]`` (weighted values) with ``reduction="none"``, else a scalar.
    """
    from pairkit.losses.classification import check_logits_labels

    safe = check_logits_labels(logits, labels, mask, weights)
    if logits.dim() != 2:
        raise InputError(f"logits must be [batch, classes], got {list(logits.shape)}")
    with torch.no_grad():
        pred = logits.detach().argmax(-1) if predictions is None else torch.as_tensor(predictions, device=logits.device)
        if tuple(pred.shape) != tuple(safe.shape):
            raise InputError(f"predictions must be [{safe.shape[0]}], got {list(pred.shape)}")
        correct = (pred == safe).to(logits.dtype)
        valid = torch.ones_like(correct, dtype=torch.bool) if mask is None else torch.as_tensor(mask).bool()
        accuracy = (correct * valid).sum() / valid.sum().clamp(min=1)
        balance = torch.where(correct > 0, 1.0 - accuracy, accuracy)
    confidence = torch.softmax(logits, dim=-1).max(-1).values
    values = (confidence - correct) ** 2
    total = balance if weights is None else balance * torch.as_tensor(weights, dtype=logits.dtype, device=logits.device)
    return reduce_loss(values, reduction, mask=mask, weights=total)


def _phi_tau(u: torch.Tensor, tau: float) -> torch.Tensor:
    r""":math:`\Phi^\tau(u)` of the comp-sum family: :math:`\log(1+u)` at τ = 1, else
    :math:`((1+u)^{1-\tau} - 1)/(1-\tau)`; ``u >= 0``."""
    if tau == 1.0:
        return torch.log1p(u)
    return torch.expm1((1.0 - tau) * torch.log1p(u)) / (1.0 - tau)


_TAU = Option("tau", float, Interval(0, None), doc="τ of the comp-sum family (0 sum-exp, 1 logistic, 2 MAE)")
_RHO = Option("rho", float, Interval(0, None, closed="neither"), doc="margin ρ > 0")


@register(
    "adversarial_comp_sum",
    inputs=(Input("logits", "logits", "[batch, classes]"), Input("labels", "classes")),
    family="classification",
    aliases=("rho_margin_comp_sum", "adversarial_comp_sum_rho_margin"),
    options=(_TAU, _RHO),
)
def adversarial_comp_sum_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    tau: float = 1.0,
    rho: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Adversarial comp-sum ρ-margin loss: the comp-sum transform of the ρ-margin losses of the label's margins.

    With the scores :math:`h(x', \cdot)` at the (caller's) adversarial point :math:`x'` and the ρ-margin loss
    :math:`\Phi_\rho(t) = \min\big(\max(0, 1 - t/\rho), 1\big)`:

    .. math::
        \ell = \Phi^\tau\Big(\sum_{k \ne y} \Phi_\rho\big(h(x', y) - h(x', k)\big)\Big),\qquad
        \Phi^\tau(u) = \begin{cases}\log(1 + u) & \tau = 1\\ \frac{(1+u)^{1-\tau} - 1}{1 - \tau} & \tau \ne 1
        \end{cases}

    the comp-sum losses (:func:`~pairkit.losses.comp_sum_loss`) with the exponential :math:`e^{-t}` of each margin
    replaced by the bounded ρ-margin loss. The supremum over the perturbation ball
    :math:`\lVert x - x'\rVert_p \le \gamma` of the paper is the caller's attack: pass the scores at the
    perturbed input. It is 0 when every margin is at least ρ and :math:`\Phi^\tau(K-1)` when none is positive.

    Mao, Mohri & Zhong (2023), "Cross-Entropy Loss Functions: Theoretical Analysis and Applications" (ICML), the
    adversarial comp-sum ρ-margin losses :math:`\tilde\ell^{\,\mathrm{comp}}_{\tau,\rho}` (Section 5); the reading
    taken (the paper's text was not available to check) is the comp-sum transform applied to the *sum* of the
    per-class ρ-margin losses, as written above. A non-convex, bounded target; for training use
    :func:`smooth_adversarial_comp_sum_loss`.

    Args:
        logits: ``[batch, K]`` scores at the adversarial input; labels: ``[batch]``; mask, weights: ``[batch]``.
    Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    from pairkit.losses.classification import check_logits_labels

    safe = check_logits_labels(logits, labels, mask, weights, min_classes=2)
    dtype = torch.float32 if logits.dtype in (torch.float16, torch.bfloat16) else logits.dtype
    z = logits.to(dtype)
    margins = z.gather(-1, safe.unsqueeze(-1)) - z
    others = torch.ones_like(z, dtype=torch.bool).scatter(-1, safe.unsqueeze(-1), False)
    phi = (1.0 - margins / rho).clamp(0.0, 1.0) * others
    values = _phi_tau(phi.sum(-1), tau)
    return reduce_loss(values.to(logits.dtype), reduction, mask=mask, weights=weights)


@register(
    "smooth_adversarial_comp_sum",
    inputs=(
        Input("logits", "logits", "[batch, classes]", doc="scores h(x, ·) at the clean input"),
        Input("adversarial_logits", "logits", "[batch, classes]", doc="scores h(x', ·) at the perturbed input"),
        Input("labels", "classes"),
    ),
    family="classification",
    aliases=("adv_comp_sum", "smooth_adv_comp_sum"),
    options=(_TAU, _RHO, Option("nu", float, Interval(0, None), doc="weight ν of the smoothness term")),
)
def smooth_adversarial_comp_sum_loss(
    logits: torch.Tensor,
    adversarial_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    tau: float = 1.0,
    rho: float = 1.0,
    nu: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Smooth adversarial comp-sum loss (ADV-COMP-SUM): the clean comp-sum loss plus the change of the margins.

    With the margin vector :math:`\bar\Delta_h(x, y) = \big(h(x, y) - h(x, k)\big)_{k}` at the clean input
    :math:`x` and at the caller's perturbed input :math:`x'`:

    .. math::
        \ell = \Phi^\tau\Big(\sum_{k \ne y} e^{(h(x, k) - h(x, y))/\rho}\Big)
            + \nu\,\big\lVert \bar\Delta_h(x', y) - \bar\Delta_h(x, y)\big\rVert_2

    (:math:`\Phi^\tau` as in :func:`~pairkit.losses.comp_sum_loss`, so the first term is the comp-sum loss of
    :math:`h/\rho`): an upper bound of the adversarial ρ-margin loss
    (:func:`adversarial_comp_sum_loss`) that is smooth in the scores, since :math:`\Phi_\rho(t) \le e^{-t/\rho}`
    and :math:`\Phi^\tau` is Lipschitz on the sum. The paper's supremum over :math:`\lVert x - x'\rVert_p \le
    \gamma` is the caller's attack (e.g. PGD on this term, as :func:`~pairkit.train.train_pairwise_judge` runs it
    in embedding space); pass its scores as ``adversarial_logits``. With
    :math:`x' = x` (or ν = 0) and ρ = 1 it is the comp-sum loss; with τ = 1 too, cross-entropy.

    Mao, Mohri & Zhong (2023), "Cross-Entropy Loss Functions: Theoretical Analysis and Applications" (ICML), the
    smooth adversarial comp-sum losses behind their ADV-COMP-SUM algorithms (Section 5). Reading taken (the
    paper's text was not available to check): the Euclidean norm over all ``K`` margin entries (the label's entry
    is 0 at both points), ν a free hyper-parameter standing for the paper's Lipschitz constant; no gradient is
    stopped. The norm's gradient at :math:`x' = x` is taken as 0.

    Args:
        logits, adversarial_logits: ``[batch, K]``; labels: ``[batch]``; mask, weights: ``[batch]``.
    Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    from pairkit.losses.classification import check_logits_labels, comp_sum_loss

    safe = check_logits_labels(logits, labels, mask, weights, min_classes=2)
    if not (isinstance(adversarial_logits, torch.Tensor) and adversarial_logits.is_floating_point()) or (
        adversarial_logits.shape != logits.shape
    ):
        raise InputError(
            f"adversarial_logits must be a floating-point tensor of the shape {list(logits.shape)} of logits, got "
            f"{list(getattr(adversarial_logits, 'shape', [])) or type(adversarial_logits).__name__}"
        )
    dtype = torch.float32 if logits.dtype in (torch.float16, torch.bfloat16) else logits.dtype
    clean = comp_sum_loss(logits.to(dtype) / rho, safe, tau=tau, reduction="none")
    shift = adversarial_logits.to(dtype) - logits.to(dtype)
    change = shift.gather(-1, safe.unsqueeze(-1)) - shift  # Δ(x') - Δ(x)
    square = change.square().sum(-1)
    positive = square > 0
    norm = torch.where(positive, torch.where(positive, square, torch.ones_like(square)).sqrt(), square * 0)
    values = clean + nu * norm
    return reduce_loss(values.to(logits.dtype), reduction, mask=mask, weights=weights)
