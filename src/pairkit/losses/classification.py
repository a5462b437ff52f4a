"""Classification losses on logits ``[..., num_classes]`` with integer labels ``[...]``.

Every loss returns one value per leading position with ``reduction="none"``; ``mask`` and ``weights``
index the leading dimensions. Labels at masked-out positions are not checked (so padding values such as
``-100`` may stay there).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pairkit._spec import Input, Interval, Option
from pairkit.errors import InputError
from pairkit.losses._core import (
    CLASSES,
    NON_NEGATIVE,
    POSITIVE,
    REAL,
    UNIT,
    Reduction,
    check_broadcastable,
    label_logp,
    reduce_loss,
    register,
    weight_option,
)
from pairkit.losses.scores import sigmoid_binary_cross_entropy

_NORMALIZE_SCORES = Option(
    "normalize_scores", bool, doc="map logits to positive scores of mean 1 (the authors' bounded form)"
)

__all__ = [
    "aldr_kl_loss",
    "comp_sum_loss",
    "cross_entropy",
    "focal_loss",
    "generalized_cross_entropy",
    "ldr_kl_loss",
    "mae_loss",
    "p2c_loss",
    "poly1_cross_entropy",
    "z_loss",
]


# ------------------------------------------------------------------------------------------------ helpers


def check_logits_labels(
    logits: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    *,
    logits_name: str = "logits",
    min_classes: int = 1,
) -> torch.Tensor:
    """Validate ``logits [..., C]`` / integer ``labels [...]``; return labels safe to gather with.

    Out-of-range labels at unmasked positions raise :class:`InputError`; at masked positions they are
    replaced by 0 so that ``gather`` works (their loss is discarded by the reduction).
    """
    if not isinstance(logits, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise InputError(f"{logits_name} and labels must be torch tensors")
    if logits.ndim < 1 or logits.shape[-1] < min_classes:
        raise InputError(
            f"{logits_name} must have shape [..., num_classes] with num_classes >= {min_classes}, "
            f"got {list(logits.shape)}"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise InputError(f"labels must be an integer tensor of class indices, got dtype {labels.dtype}")
    if tuple(labels.shape) != tuple(logits.shape[:-1]):
        raise InputError(
            f"labels must have the leading shape of {logits_name} {list(logits.shape[:-1])}, got {list(labels.shape)}"
        )
    lead = logits.shape[:-1]
    check_broadcastable("mask", mask, lead)
    check_broadcastable("weights", weights, lead)
    num_classes = logits.shape[-1]
    valid = (labels >= 0) & (labels < num_classes)
    if mask is not None:
        mask = torch.as_tensor(mask, dtype=torch.bool, device=labels.device)
        checked = valid | ~mask
    else:
        checked = valid
    if not bool(checked.all()):
        bad = labels[~checked]
        raise InputError(
            f"labels must be class indices in [0, {num_classes}); found {bad[0].item()} "
            f"({bad.numel()} invalid entries). Mask those positions out or fix the labels."
        )
    return torch.where(valid, labels, torch.zeros_like(labels)).long()


def _smoothed_targets(labels: torch.Tensor, num_classes: int, smoothing: float, dtype) -> torch.Tensor:
    one_hot = F.one_hot(labels, num_classes).to(dtype)
    return one_hot * (1.0 - smoothing) + smoothing / num_classes


# ------------------------------------------------------------------------------------------------- losses


@register(
    "cross_entropy",
    inputs=CLASSES,
    family="classification",
    aliases=("softmax_cross_entropy", "ce"),
    options=(Option("label_smoothing", float, UNIT, doc="label smoothing ε"),),
)
def cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    label_smoothing: float = 0.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Softmax cross-entropy with label smoothing (as ``torch.nn.functional.cross_entropy``).

    .. math::
        \ell = -(1-\varepsilon)\log p_y - \frac{\varepsilon}{K}\sum_{k=1}^K \log p_k,
        \qquad p = \mathrm{softmax}(z).

    Label smoothing: Szegedy et al. (2016), "Rethinking the Inception Architecture for Computer Vision".

    Args:
        logits: ``[..., K]``; labels: ``[...]`` integer class indices.
        label_smoothing: ``ε`` in ``[0, 1]``.
    """
    labels = check_logits_labels(logits, labels, mask, weights)
    log_probs = torch.log_softmax(logits, dim=-1)
    values = -label_logp(log_probs, labels)
    if label_smoothing:
        values = (1.0 - label_smoothing) * values - label_smoothing * log_probs.mean(-1)
    return reduce_loss(values, reduction, mask=mask, weights=weights)


@register(
    "focal_loss",
    inputs=CLASSES,
    family="classification",
    aliases=("focal",),
    options=(
        Option("gamma", float, NON_NEGATIVE, doc="focusing parameter γ"),
        Option(
            "alpha", (float, torch.Tensor), NON_NEGATIVE, none=True, doc="class weight α (a number or a [K] tensor)"
        ),
    ),
)
def focal_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    gamma: float = 2.0,
    alpha: float | torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Softmax focal loss.

    .. math::
        \ell = -\alpha_y (1 - p_y)^\gamma \log p_y .

    Lin, Goyal, Girshick, He & Dollár (2017), "Focal Loss for Dense Object Detection".

    Args:
        logits: ``[..., K]``; labels: ``[...]``.
        gamma: focusing parameter ``γ >= 0`` (``0`` gives cross-entropy).
        alpha: ``None``, a scalar, or a ``[K]`` tensor of per-class weights ``α_k``.
    """
    labels = check_logits_labels(logits, labels, mask, weights)
    log_p = label_logp(torch.log_softmax(logits, dim=-1), labels)
    # 1 - p_y via expm1 keeps precision for confident predictions (p_y close to 1)
    one_minus_p = -torch.expm1(log_p)
    values = -one_minus_p.pow(gamma) * log_p
    if alpha is not None:
        alpha_t = torch.as_tensor(alpha, dtype=values.dtype, device=values.device)
        if alpha_t.ndim == 1:
            if alpha_t.shape[0] != logits.shape[-1]:
                raise InputError(
                    f"alpha must be a scalar or have shape [{logits.shape[-1]}], got {list(alpha_t.shape)}"
                )
            alpha_t = alpha_t[labels]
        elif alpha_t.ndim != 0:
            raise InputError(f"alpha must be a scalar or a [num_classes] tensor, got shape {list(alpha_t.shape)}")
        values = alpha_t * values
    return reduce_loss(values, reduction, mask=mask, weights=weights)


@register(
    "poly1_cross_entropy",
    inputs=CLASSES,
    family="classification",
    aliases=("poly1", "poly_loss"),
    options=(
        Option("epsilon", float, Interval(-1, None), doc="weight ε of the first polynomial term"),
        Option("label_smoothing", float, UNIT, doc="label smoothing"),
    ),
)
def poly1_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    epsilon: float = 1.0,
    label_smoothing: float = 0.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Poly-1 loss: cross-entropy plus a first-order polynomial term.

    .. math::
        \ell = \mathrm{CE}_\varepsilon(z, y) + \epsilon_1 \big(1 - \textstyle\sum_k q_k p_k\big),

    where ``q`` is the (smoothed) one-hot target, so without smoothing the extra term is ``ε₁(1 − p_y)``.

    Leng et al. (2022), "PolyLoss: A Polynomial Expansion Perspective of Classification Loss Functions".

    Args:
        logits: ``[..., K]``; labels: ``[...]``.
        epsilon: the Poly-1 coefficient ``ε₁`` (``>= -1`` keeps the loss monotone).
        label_smoothing: as in :func:`cross_entropy`.
    """
    ce = cross_entropy(logits, labels, label_smoothing=label_smoothing, mask=mask, weights=None, reduction="none")
    safe = check_logits_labels(logits, labels, mask, weights)
    probs = torch.softmax(logits, dim=-1)
    targets = _smoothed_targets(safe, logits.shape[-1], label_smoothing, probs.dtype)
    values = ce + epsilon * (1.0 - (targets * probs).sum(-1))
    return reduce_loss(values, reduction, mask=mask, weights=weights)


@register(
    "z_loss",
    inputs=CLASSES,
    family="classification",
    aliases=("spherical_z_loss",),
    options=(
        Option("a", float, POSITIVE, doc="scale a of the logits"),
        Option("b", float, REAL, doc="shift b of the target"),
    ),
)
def z_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    a: float = 1.0,
    b: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""The Z-loss: a softplus of the standardised target logit (shift- and scale-invariant).

    .. math::
        z_k = \frac{o_k - \mu(o)}{\sigma(o)}, \qquad \ell = \frac{1}{a}\,\mathrm{softplus}\big(a\,(b - z_y)\big),

    with ``μ``, ``σ`` the mean and (population) standard deviation of the ``K`` logits. The loss is
    unchanged by ``o -> c·o + d`` for any ``c > 0``; all-equal logits give ``z = 0``.
    Not to be confused with the auxiliary ``log² Z`` penalty of PaLM.

    de Brébisson & Vincent (2016), "The Z-loss: a shift and scale invariant classification loss belonging
    to the Spherical Family".

    Args:
        logits: ``[..., K]`` with ``K >= 2``; labels: ``[...]``.
        a: sharpness ``a > 0``; b: offset (margin) of the standardised target logit.
    """
    labels = check_logits_labels(logits, labels, mask, weights, min_classes=2)
    mean = logits.mean(-1, keepdim=True)
    std = logits.std(-1, keepdim=True, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    z = (logits - mean) / std
    z_y = torch.gather(z, -1, labels.unsqueeze(-1)).squeeze(-1)
    values = F.softplus(a * (b - z_y)) / a
    return reduce_loss(values, reduction, mask=mask, weights=weights)


def _ldr_scores(logits: torch.Tensor, normalize_scores: bool) -> torch.Tensor:
    if not normalize_scores:
        return logits
    # the authors' code maps logits to positive scores with mean 1 so that the loss is bounded
    scores = F.softplus(logits)
    return scores / scores.mean(-1, keepdim=True)


def _ldr_margin_gaps(scores: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """``c·1[k != y] + s_k − s_y`` for every class ``k``."""
    s_y = torch.gather(scores, -1, labels.unsqueeze(-1))
    not_y = 1.0 - F.one_hot(labels, scores.shape[-1]).to(scores.dtype)
    return margin * not_y + scores - s_y


def _mean_lse(values: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(values, dim=-1) - math.log(values.shape[-1])


@register(
    "ldr_kl_loss",
    inputs=CLASSES,
    family="classification",
    aliases=("ldr_kl", "ldr_loss"),
    options=(
        Option("lam", float, POSITIVE, doc="regularisation λ"),
        Option("margin", float, NON_NEGATIVE, doc="margin"),
        _NORMALIZE_SCORES,
    ),
)
def ldr_kl_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    lam: float = 1.0,
    margin: float = 1.0,
    normalize_scores: bool = True,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Label-distributionally-robust loss with a KL penalty (LDR-KL).

    The worst case over label distributions ``q`` in the simplex, penalised by ``λ KL(q || uniform)``:

    .. math::
        \ell = \max_{q \in \Delta_K} \sum_k q_k\big(c\,\mathbb 1[k\ne y] + s_k - s_y\big)
               - \lambda\,\mathrm{KL}(q\,\|\,\tfrac1K)
             = \lambda \log \frac1K \sum_k \exp\!\Big(\frac{c\,\mathbb 1[k\ne y] + s_k - s_y}{\lambda}\Big).

    ``λ -> 0`` gives the Crammer–Singer hinge, ``λ -> ∞`` the average margin; with ``c = 0`` and raw
    logits it is the temperature-scaled cross-entropy minus ``λ log K``. With ``normalize_scores=True``
    (as in the authors' experiments) the scores are ``s = softplus(z) / mean(softplus(z))``; otherwise
    ``s = z``.

    Zhu, Ying & Yang (2023), "Label Distributionally Robust Losses for Multi-class Classification:
    Consistency, Robustness and Adaptivity".

    Args:
        logits: ``[..., K]``; labels: ``[...]``.
        lam: ``λ > 0``; margin: ``c >= 0``.
    """
    labels = check_logits_labels(logits, labels, mask, weights)
    gaps = _ldr_margin_gaps(_ldr_scores(logits, normalize_scores), labels, margin)
    values = lam * _mean_lse(gaps / lam)
    return reduce_loss(values, reduction, mask=mask, weights=weights)


@register(
    "aldr_kl_loss",
    inputs=CLASSES,
    family="classification",
    aliases=("aldr_kl",),
    options=(
        Option("lambda_ref", float, POSITIVE, doc="reference λ"),
        Option("alpha", float, Interval(1, None, closed="neither"), doc="adaptivity α"),
        Option("margin", float, NON_NEGATIVE, doc="margin"),
        Option("lambdas", torch.Tensor, none=True, doc="per-example λ (a [batch] tensor)"),
        _NORMALIZE_SCORES,
    ),
)
def aldr_kl_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    lambda_ref: float = 1.0,
    alpha: float = 2.0,
    margin: float = 1.0,
    lambdas: torch.Tensor | None = None,
    normalize_scores: bool = True,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Adaptive LDR-KL (ALDR-KL): LDR-KL with an instance-level ``λ_i`` chosen in closed form.

    Each example's ``λ_i`` maximises the LDR objective with the extra penalty
    ``−(α log K / 2λ₀)(λ − λ₀)²``. With ``q_i = softmax(s_i / λ_i^{old})`` (the current worst-case label
    distribution) the maximiser is

    .. math::
        \lambda_i = \lambda_0\Big(1 - \frac{\mathrm{KL}(q_i \,\|\, \tfrac1K)}{\alpha \log K}\Big), \qquad
        \ell_i = \lambda_i \log \frac1K \sum_k e^{(c\mathbb 1[k\ne y] + s_k - s_y)/\lambda_i}
                 - \frac{\alpha \log K}{2\lambda_0}(\lambda_i - \lambda_0)^2,

    where ``λ_i`` is treated as a constant for the gradient (as in the authors' code). Confident
    (low-entropy) examples get a smaller ``λ`` (closer to a hinge), uncertain ones stay near ``λ₀``.
    ``lambdas`` are the per-example ``λ^{old}`` a training loop keeps between epochs (``None``: ``λ₀``).
    ``alpha > 1`` keeps ``λ_i >= λ₀(1 − 1/α) > 0``.

    Zhu, Ying & Yang (2023), "Label Distributionally Robust Losses for Multi-class Classification:
    Consistency, Robustness and Adaptivity" (ALDR-KL).

    Args:
        logits: ``[..., K]`` with ``K >= 2``; labels: ``[...]``.
        lambda_ref: ``λ₀ > 0``; alpha: ``α > 1``; margin: ``c >= 0``.
        lambdas: optional ``[...]`` previous per-example ``λ``.
    """
    labels = check_logits_labels(logits, labels, mask, weights, min_classes=2)
    scores = _ldr_scores(logits, normalize_scores)
    log_k = math.log(logits.shape[-1])
    with torch.no_grad():
        old = torch.full(scores.shape[:-1], float(lambda_ref), dtype=scores.dtype, device=scores.device)
        if lambdas is not None:
            old = torch.as_tensor(lambdas, dtype=scores.dtype, device=scores.device).expand_as(old)
        log_q = torch.log_softmax(scores / old.unsqueeze(-1), dim=-1)
        kl_uniform = (log_q.exp() * log_q).sum(-1) + log_k
        lam = lambda_ref * (1.0 - kl_uniform / (alpha * log_k))
    gaps = _ldr_margin_gaps(scores, labels, margin)
    penalty = alpha * log_k / (2.0 * lambda_ref) * (lam - lambda_ref).square()
    values = lam * _mean_lse(gaps / lam.unsqueeze(-1)) - penalty
    return reduce_loss(values, reduction, mask=mask, weights=weights)


@register(
    "comp_sum_loss",
    inputs=CLASSES,
    family="classification",
    aliases=("comp_sum",),
    options=(Option("tau", float, NON_NEGATIVE, doc="τ of the comp-sum family"),),
)
def comp_sum_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    tau: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Comp-sum loss family ``Φ^τ`` of the sum of exponentiated logit gaps.

    .. math::
        u = \sum_{k\ne y} e^{z_k - z_y} = \frac{1}{p_y} - 1, \qquad
        \ell = \Phi^\tau(u) = \begin{cases} \log(1+u) = -\log p_y & \tau = 1 \\
        \frac{(1+u)^{1-\tau} - 1}{1-\tau} = \frac{p_y^{\tau-1} - 1}{1-\tau} & \tau \ne 1 \end{cases}

    ``τ = 0``: sum-exponential loss; ``τ = 1``: cross-entropy; ``τ = 1 + q``: generalised cross-entropy;
    ``τ = 2``: mean absolute error ``1 − p_y``.

    Mao, Mohri & Zhong (2023), "Cross-Entropy Loss Functions: Theoretical Analysis and Applications".

    Args:
        logits: ``[..., K]``; labels: ``[...]``; tau: ``τ >= 0``.
    """
    labels = check_logits_labels(logits, labels, mask, weights)
    log_p = label_logp(torch.log_softmax(logits, dim=-1), labels)
    if tau == 1.0:
        values = -log_p
    else:
        # expm1 avoids cancellation near p_y = 1
        values = torch.expm1((tau - 1.0) * log_p) / (1.0 - tau)
    return reduce_loss(values, reduction, mask=mask, weights=weights)


@register(
    "generalized_cross_entropy",
    inputs=CLASSES,
    family="classification",
    aliases=("gce",),
    options=(Option("q", float, Interval(0, 1, closed="right"), doc="q of the Box-Cox transform"),),
)
def generalized_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    q: float = 0.7,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Generalised cross-entropy (``L_q``) loss, robust to label noise.

    .. math::
        \ell = \frac{1 - p_y^{\,q}}{q}, \qquad 0 < q \le 1,

    which tends to cross-entropy as ``q -> 0`` and equals ``1 − p_y`` (MAE up to a factor 2) at ``q = 1``.

    Zhang & Sabuncu (2018), "Generalized Cross Entropy Loss for Training Deep Neural Networks with Noisy
    Labels".

    Args:
        logits: ``[..., K]``; labels: ``[...]``; q: in ``(0, 1]``.
    """
    return comp_sum_loss(logits, labels, tau=1.0 + q, mask=mask, weights=weights, reduction=reduction)


@register("mae_loss", inputs=CLASSES, family="classification", aliases=("mean_absolute_error",))
def mae_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Mean absolute error between the one-hot label and the softmax probabilities.

    .. math::
        \ell = \sum_k |\mathbb 1[k=y] - p_k| = 2(1 - p_y).

    Ghosh, Kumar & Sastry (2017), "Robust Loss Functions under Label Noise for Deep Neural Networks".

    Args:
        logits: ``[..., K]``; labels: ``[...]``.
    """
    values = 2.0 * comp_sum_loss(logits, labels, tau=2.0, mask=mask, reduction="none")  # weighted once, below
    check_broadcastable("weights", weights, values.shape)
    return reduce_loss(values, reduction, mask=mask, weights=weights)


@register(
    "p2c_loss",
    inputs=(
        Input("logits_a", "logits", "[batch, classes]"),
        Input("logits_b", "logits", "[batch, classes]"),
        Input("labels", "classes"),
        Input("preference_logits_a", "logits"),
        Input("preference_logits_b", "logits"),
        Input("preferences", "outcomes"),
    ),
    family="classification",
    aliases=("prefer_to_classify",),
    options=(
        weight_option("lambda_pref", "weight of the preference term"),
        weight_option("lambda_cons", "weight of the consistency term"),
        weight_option("lambda_div", "weight of the diversity term"),
    ),
)
def p2c_loss(
    logits_a: torch.Tensor,
    logits_b: torch.Tensor,
    labels: torch.Tensor,
    preference_logits_a: torch.Tensor,
    preference_logits_b: torch.Tensor,
    preferences: torch.Tensor,
    *,
    lambda_pref: float = 1.0,
    lambda_cons: float = 1.0,
    lambda_div: float = 0.1,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Prefer-to-Classify (P2C): classification with auxiliary pairwise-preference heads.

    A pair ``(x_a, x_b)`` of the same class ``y`` has class logits ``z^a, z^b`` and ``M`` preference-head
    scores ``r^a_m, r^b_m``; ``o ∈ {1, 0, 0.5}`` says ``x_a`` is preferred, ``x_b`` is, or a tie. With
    ``π_m = σ(r^a_m − r^b_m)``, ``P_m = (1 − π_m, π_m)`` and ``δ = softmax(z^a)_y − softmax(z^b)_y``:

    .. math::
        \ell = \tfrac12\big(\mathrm{CE}(z^a, y) + \mathrm{CE}(z^b, y)\big)
             + \lambda_{pref} \frac1M \sum_m \mathrm{BCE}(\pi_m, o)
             + \lambda_{cons}\, c(\delta, o)
             - \lambda_{div} \frac{1}{M(M-1)} \sum_{m \ne m'} H\big(\mathrm{sg}(P_m), P_{m'}\big),

    where the consistency term ``c`` is ``max(0, −δ)`` if ``o = 1``, ``max(0, δ)`` if ``o = 0`` and
    ``|δ|`` for a tie, ``H(p, q) = −Σ p log q`` and ``sg`` stops the gradient (the diversity term rewards
    disagreement between the heads, so it is subtracted).

    Kim, Shin & Kang (2023), "Prefer to Classify: Improving Text Classifiers via Auxiliary Preference
    Learning" (ICML; Eq. 2–5 and the authors' code).

    Args:
        logits_a, logits_b: ``[B, K]`` class-head logits of the two inputs.
        labels: ``[B]`` class indices (shared by the pair).
        preference_logits_a, preference_logits_b: ``[B, M]`` (or ``[B]`` for one head) preference scores.
        preferences: ``[B]`` float in ``{0, 0.5, 1}`` (1: ``x_a`` preferred).
        lambda_pref, lambda_cons, lambda_div: weights (defaults from the authors' scripts).
    """
    if not isinstance(logits_a, torch.Tensor) or not isinstance(logits_b, torch.Tensor):
        raise InputError("logits_a and logits_b must be torch tensors")
    if logits_a.shape != logits_b.shape:
        raise InputError(f"logits_a {list(logits_a.shape)} and logits_b {list(logits_b.shape)} must match")
    safe = check_logits_labels(logits_a, labels, mask, weights, logits_name="logits_a")
    if preference_logits_a.shape != preference_logits_b.shape:
        raise InputError(
            f"preference_logits_a {list(preference_logits_a.shape)} and preference_logits_b "
            f"{list(preference_logits_b.shape)} must match"
        )
    pref_a, pref_b = preference_logits_a, preference_logits_b
    if pref_a.shape == labels.shape:
        pref_a, pref_b = pref_a.unsqueeze(-1), pref_b.unsqueeze(-1)
    if pref_a.shape[:-1] != labels.shape:
        raise InputError(
            f"preference logits must have shape {list(labels.shape)} + [num_heads], "
            f"got {list(preference_logits_a.shape)}"
        )
    preferences = torch.as_tensor(preferences, dtype=logits_a.dtype, device=logits_a.device)
    if preferences.shape != labels.shape:
        raise InputError(f"preferences must have shape {list(labels.shape)}, got {list(preferences.shape)}")
    allowed = (preferences == 0) | (preferences == 0.5) | (preferences == 1)
    if mask is not None:
        allowed = allowed | ~torch.as_tensor(mask, dtype=torch.bool, device=allowed.device)
    if not bool(allowed.all()):
        raise InputError(
            f"preferences must be 1 (a preferred), 0 (b preferred) or 0.5 (tie); got {preferences[~allowed][0].item()}"
        )

    log_pa = torch.log_softmax(logits_a, dim=-1)
    log_pb = torch.log_softmax(logits_b, dim=-1)
    cls = -0.5 * (label_logp(log_pa, safe) + label_logp(log_pb, safe))

    diff = pref_a - pref_b  # [B, M]
    o = preferences.unsqueeze(-1)
    pref = sigmoid_binary_cross_entropy(diff, o).mean(-1)

    delta = label_logp(log_pa, safe).exp() - label_logp(log_pb, safe).exp()
    cons = torch.where(
        preferences == 1, torch.relu(-delta), torch.where(preferences == 0, torch.relu(delta), delta.abs())
    )

    num_heads = diff.shape[-1]
    if num_heads > 1:
        log_probs = torch.stack([F.logsigmoid(-diff), F.logsigmoid(diff)], dim=-1)  # [B, M, 2]
        probs = log_probs.detach().exp()
        cross = -(probs.unsqueeze(-2) * log_probs.unsqueeze(-3)).sum(-1)  # [B, M(p), M(log q)]
        off_diag = cross.sum((-2, -1)) - cross.diagonal(dim1=-2, dim2=-1).sum(-1)
        div = off_diag / (num_heads * (num_heads - 1))
    else:
        div = torch.zeros_like(cls)
    values = cls + lambda_pref * pref + lambda_cons * cons - lambda_div * div
    return reduce_loss(values, reduction, mask=mask, weights=weights)
