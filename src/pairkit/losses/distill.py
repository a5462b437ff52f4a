"""Knowledge-distillation losses on ``student_logits`` / ``teacher_logits`` of shape ``[..., num_classes]``.

The teacher is treated as given: gradients flow to whichever inputs require them, so detach the teacher
logits yourself for offline distillation. Each loss returns one value per leading position with
``reduction="none"``; ``mask`` and ``weights`` index the leading dims. Token-level distillation of language
models (with chunking over ``[batch, time, vocab]``) is in :mod:`pairkit.losses.divergence`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pairkit._spec import Input, Interval, Option
from pairkit.errors import InputError
from pairkit.losses._checks import check_distributions
from pairkit.losses._core import (
    CLASSES,
    NON_NEGATIVE,
    STUDENT_TEACHER,
    TEMPERATURE,
    UNIT,
    Reduction,
    check_same_shape,
    keyword,
    kl_logspace,
    label_logp,
    reduce_loss,
    register,
    weight_option,
)
from pairkit.losses.classification import check_logits_labels

__all__ = [
    "bd_kd_loss",
    "binary_kl_loss",
    "class_centroids",
    "dkd_loss",
    "dual_head_kd_loss",
    "hinton_kd_loss",
    "mcmi_teacher_loss",
    "nkd_loss",
    "ofa_loss",
    "ps_kd_alpha",
    "ps_kd_loss",
    "uskd_loss",
]


def _check_inputs(student_logits, teacher_logits, labels, mask, weights, *, min_classes=1):
    """Shared checks; returns labels safe to gather with (or ``None`` when no labels are given)."""
    check_distributions(("student_logits", "teacher_logits"), student_logits, teacher_logits, mask, weights)
    if labels is None:
        return None
    return check_logits_labels(
        student_logits, labels, mask, weights, logits_name="student_logits", min_classes=min_classes
    )


def _soft(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.log_softmax(logits / temperature, dim=-1)


def _ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return -label_logp(torch.log_softmax(logits, dim=-1), labels)


@register(
    "hinton_kd_loss",
    inputs=(*STUDENT_TEACHER, keyword("labels", "classes")),
    family="distill",
    aliases=("kd", "hinton_kd"),
    options=(
        TEMPERATURE,
        Option("alpha", float, UNIT, doc="weight of the soft term when labels are given"),
    ),
)
def hinton_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    temperature: float = 4.0,
    labels: torch.Tensor | None = None,
    alpha: float = 0.5,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Hinton knowledge distillation: ``τ²``-scaled KL to the teacher's softened distribution.

    .. math::
        \ell = \alpha\,\tau^2\,\mathrm{KL}\big(\mathrm{softmax}(t/\tau)\,\|\,\mathrm{softmax}(s/\tau)\big)
             + (1-\alpha)\,\mathrm{CE}(s, y),

    the hard-label term only when ``labels`` are given (otherwise ``ℓ = τ² KL``). The ``τ²`` keeps the
    soft term's gradient magnitude independent of ``τ``.

    Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural Network".

    Args:
        student_logits, teacher_logits: ``[..., K]``.
        temperature: ``τ > 0``.
        labels: optional ``[...]`` class indices; alpha: weight of the soft term when labels are given.
    """
    safe = _check_inputs(student_logits, teacher_logits, labels, mask, weights)
    kl = kl_logspace(_soft(teacher_logits, temperature), _soft(student_logits, temperature))
    values = temperature**2 * kl
    if safe is not None:
        values = alpha * values + (1.0 - alpha) * _ce(student_logits, safe)
    return reduce_loss(values, reduction, mask=mask, weights=weights)


def _target_split(log_probs: torch.Tensor, labels: torch.Tensor):
    """Binary (target, rest) log-probabilities and the log-distribution over non-target classes."""
    is_y = F.one_hot(labels, log_probs.shape[-1]).bool()
    log_p_y = label_logp(log_probs, labels)
    masked = log_probs.masked_fill(is_y, float("-inf"))
    log_rest = torch.logsumexp(masked, dim=-1)
    binary = torch.stack([log_p_y, log_rest], dim=-1)
    # renormalised over k != y; the target entry is -inf and contributes nothing to the KLs
    non_target = masked - log_rest.unsqueeze(-1)
    return binary, non_target


@register(
    "dkd_loss",
    inputs=(*STUDENT_TEACHER, Input("labels", "classes")),
    family="distill",
    aliases=("dkd", "decoupled_kd"),
    options=(
        weight_option("alpha", "TCKD weight"),
        weight_option("beta", "NCKD weight"),
        TEMPERATURE,
    ),
)
def dkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 4.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Decoupled knowledge distillation: target-class (TCKD) and non-target-class (NCKD) terms.

    With ``b = (p_y, 1 − p_y)`` the binary target/rest split and ``p̂`` the distribution over the
    non-target classes renormalised (all at temperature ``τ``):

    .. math::
        \ell = \tau^2\Big(\alpha\,\mathrm{KL}(b^{T}\,\|\,b^{S}) + \beta\,\mathrm{KL}(\hat p^{T}\,\|\,\hat p^{S})\Big).

    (The original training recipe also ramps the loss up linearly over the first epochs; apply that
    schedule to the returned loss.)

    Zhao, Cui, Song, Qiu & Liang (2022), "Decoupled Knowledge Distillation".

    Args:
        student_logits, teacher_logits: ``[..., K]`` with ``K >= 2``; labels: ``[...]``.
        alpha: TCKD weight; beta: NCKD weight; temperature: ``τ > 0``.
    """
    safe = _check_inputs(student_logits, teacher_logits, labels, mask, weights, min_classes=2)
    bin_s, non_s = _target_split(_soft(student_logits, temperature), safe)
    bin_t, non_t = _target_split(_soft(teacher_logits, temperature), safe)
    tckd = kl_logspace(bin_t, bin_s)
    nckd = kl_logspace(non_t, non_s)
    values = temperature**2 * (alpha * tckd + beta * nckd)
    return reduce_loss(values, reduction, mask=mask, weights=weights)


@register(
    "nkd_loss",
    inputs=(*STUDENT_TEACHER, Input("labels", "classes")),
    family="distill",
    aliases=("nkd", "normalized_kd"),
    options=(
        TEMPERATURE,
        weight_option("gamma", "weight γ of the non-target term"),
    ),
)
def nkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float = 1.0,
    gamma: float = 1.5,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Normalised knowledge distillation: teacher-weighted target CE plus normalised non-target CE.

    With ``p = softmax(s)``, ``q = softmax(t)`` (no temperature) and ``p̂, q̂`` the non-target
    distributions at temperature ``τ`` renormalised over ``k ≠ y``:

    .. math::
        \ell = -\,\mathrm{sg}(q_y) \log p_y \;-\; \gamma\,\tau^2 \sum_{k \ne y} \hat q_k \log \hat p_k .

    The second term is a cross-entropy, so its minimum (at ``p̂ = q̂``) is the entropy of ``q̂``, not 0.

    Yang, Zeng, Li, Zhang, Yuan & Li (2023), "From Knowledge Distillation to Self-Knowledge Distillation:
    A Unified Approach with Normalized Loss and Customized Soft Labels" (ICCV).

    Args:
        student_logits, teacher_logits: ``[..., K]`` with ``K >= 2``; labels: ``[...]``.
        temperature: ``τ > 0`` for the non-target term; gamma: its weight ``γ``.
    """
    safe = _check_inputs(student_logits, teacher_logits, labels, mask, weights, min_classes=2)
    idx = safe.unsqueeze(-1)
    log_p_y = torch.gather(torch.log_softmax(student_logits, dim=-1), -1, idx).squeeze(-1)
    q_y = torch.gather(torch.softmax(teacher_logits, dim=-1), -1, idx).squeeze(-1).detach()
    _, non_s = _target_split(_soft(student_logits, temperature), safe)
    _, non_t = _target_split(_soft(teacher_logits, temperature), safe)
    q_hat = non_t.exp()
    finite_s = torch.where(q_hat > 0, non_s, torch.zeros_like(non_s))
    non_target_ce = -(q_hat * finite_s).sum(-1)
    values = -q_y * log_p_y + gamma * temperature**2 * non_target_ce
    return reduce_loss(values, reduction, mask=mask, weights=weights)


def _entropy(log_p: torch.Tensor) -> torch.Tensor:
    p = log_p.exp()
    return -(p * torch.where(p > 0, log_p, torch.zeros_like(log_p))).sum(-1)


@register(
    "bd_kd_loss",
    inputs=(*STUDENT_TEACHER, keyword("labels", "classes")),
    family="distill",
    aliases=("bd_kd", "balanced_divergence_kd"),
    options=(
        TEMPERATURE,
        Option("balance", float, NON_NEGATIVE, doc="balance of the two KL directions"),
    ),
)
def bd_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    temperature: float = 4.0,
    balance: float = 2.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Balanced-divergence KD: sample-wise weighting of forward and reverse KL by the entropy gap.

    With ``P = softmax(s/τ)``, ``T = softmax(t/τ)`` and ``H`` the entropy, each sample up-weights the
    divergence that corrects its confidence mismatch: where the student is less confident than the
    teacher (``H(P) > H(T)``) the mode-seeking reverse KL gets weight ``λ``, otherwise the
    mass-covering forward KL does:

    .. math::
        \ell = \tau^2\big(w_f\,\mathrm{KL}(T\,\|\,P) + w_r\,\mathrm{KL}(P\,\|\,T)\big) + \mathrm{CE}(s, y),
        \quad (w_f, w_r) = \begin{cases} (1, \lambda) & H(P) > H(T) \\ (\lambda, 1) & \text{otherwise,}\end{cases}

    the CE term only when ``labels`` are given. For the online (mutual) setting, the same function with
    the roles swapped gives the teacher's loss.

    Amara, Sepahvand, Meyer, Gross & Clark (2022/2023), "BD-KD: Balancing the Divergences for Online
    Knowledge Distillation". The paper's exact per-sample weights are hyper-parameters; this is its
    entropy-gap rule with one balance factor ``λ`` (``λ = 1`` is the symmetric forward+reverse KL).

    Args:
        student_logits, teacher_logits: ``[..., K]``; labels: optional ``[...]``.
        temperature: ``τ > 0``; balance: ``λ >= 0``.
    """
    safe = _check_inputs(student_logits, teacher_logits, labels, mask, weights)
    log_s = _soft(student_logits, temperature)
    log_t = _soft(teacher_logits, temperature)
    with torch.no_grad():
        student_less_sure = _entropy(log_s) > _entropy(log_t)
    one = torch.ones((), dtype=log_s.dtype, device=log_s.device)
    w_f = torch.where(student_less_sure, one, one * balance)
    w_r = torch.where(student_less_sure, one * balance, one)
    values = temperature**2 * (w_f * kl_logspace(log_t, log_s) + w_r * kl_logspace(log_s, log_t))
    if safe is not None:
        values = values + _ce(student_logits, safe)
    return reduce_loss(values, reduction, mask=mask, weights=weights)


def ps_kd_alpha(epoch: int, num_epochs: int, *, alpha_final: float = 0.8) -> float:
    r"""PS-KD's linear schedule ``α_t = α_T · t / T`` for the 0-based ``epoch`` (``t = epoch + 1``).

    Kim, Ji, Yoon, Hwang & Kim (2021), "Self-Knowledge Distillation with Progressive Refinement of
    Targets" (ICCV).
    """
    if not (isinstance(num_epochs, int) and num_epochs >= 1):
        raise InputError(f"num_epochs must be a positive int, got {num_epochs!r}")
    if not (isinstance(epoch, int) and 0 <= epoch < num_epochs):
        raise InputError(f"epoch must be an int in [0, num_epochs={num_epochs}), got {epoch!r}")
    alpha_final = Option("alpha_final", float, UNIT).check(alpha_final)
    return alpha_final * (epoch + 1) / num_epochs


@register(
    "ps_kd_loss",
    inputs=(*CLASSES, Input("past_logits", "logits", "[batch, classes]")),
    family="distill",
    aliases=("ps_kd", "pskd"),
    options=(Option("alpha", float, UNIT, doc="α_t, the weight of the past predictions"),),
)
def ps_kd_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    past_logits: torch.Tensor,
    *,
    alpha: float,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Progressive self-knowledge distillation: CE to targets mixed with the model's past predictions.

    .. math::
        \tilde y = (1-\alpha_t)\,\mathrm{onehot}(y) + \alpha_t\, \mathrm{softmax}(z^{(t-1)}), \qquad
        \ell = -\sum_k \tilde y_k \log \mathrm{softmax}(z)_k,

    where ``z^{(t-1)}`` are the logits of the model from the previous epoch (treated as constants) and
    ``α_t`` grows with the epoch (:func:`ps_kd_alpha`).

    Kim, Ji, Yoon, Hwang & Kim (2021), "Self-Knowledge Distillation with Progressive Refinement of
    Targets" (ICCV).

    Args:
        logits: ``[..., K]`` current logits; labels: ``[...]``; past_logits: ``[..., K]``.
        alpha: ``α_t`` in ``[0, 1]``.
    """
    check_same_shape(logits=logits, past_logits=past_logits)
    safe = check_logits_labels(logits, labels, mask, weights)
    past = torch.softmax(past_logits.detach(), dim=-1)
    targets = (1.0 - alpha) * F.one_hot(safe, logits.shape[-1]).to(past.dtype) + alpha * past
    values = -(targets * torch.log_softmax(logits, dim=-1)).sum(-1)
    return reduce_loss(values, reduction, mask=mask, weights=weights)


@register(
    "ofa_loss",
    inputs=(*STUDENT_TEACHER, Input("labels", "classes")),
    family="distill",
    aliases=("ofa", "ofa_kd", "one_for_all_kd"),
    options=(
        Option("gamma", float, Interval(0, None, closed="neither"), doc="target-class modulating exponent γ"),
        Option("temperature", float, Interval(0, None, closed="neither"), doc="softmax temperature τ"),
    ),
)
def ofa_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    gamma: float = 1.0,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""OFA-KD: cross-entropy to the teacher with a modulated target-class weight, for logits of projected features.

    In OFA-KD every intermediate stage of the student is projected into the logit space by a small branch (the
    caller's module) and each branch's logits are distilled with this loss (sum it over the branches and add it
    for the final logits). With :math:`q = \operatorname{softmax}(t/\tau)`, :math:`p = \operatorname{softmax}(s/\tau)`:

    .. math::
        \ell = -\big((1 + q_y)^{\gamma} - 1\big)\log p_y \;-\; \sum_{c \ne y} q_c^{\gamma}\log p_c ,

    so ``γ = 1`` is the plain KD cross-entropy :math:`-\sum_c q_c \log p_c` and ``γ > 1`` strengthens the target
    class where the teacher is confident. This is the authors' code (``ofa_loss``: weight
    ``(q + onehot)^γ − onehot``); the paper writes the target term as :math:`(1 + q_y)^{\gamma}` — this follows
    the code. Computed from log-probabilities, so a zero teacher probability gives weight 0 with a finite
    gradient.

    Hao, Guo, Han, Xu, Tang, Wang & Wang (2023), "One-for-All: Bridge the Gap Between Heterogeneous Architectures
    in Knowledge Distillation" (NeurIPS).

    Args:
        student_logits: ``[..., K]`` logits of one branch; teacher_logits: ``[..., K]``; labels: ``[...]``.
    Returns one value per leading position with ``reduction="none"``, else a scalar.
    """
    safe = _check_inputs(student_logits, teacher_logits, labels, mask, weights)
    log_q = _soft(teacher_logits, temperature)
    log_p = _soft(student_logits, temperature)
    is_y = F.one_hot(safe, log_q.shape[-1]).bool()
    target_w = torch.expm1(gamma * torch.log1p(log_q.exp()))
    weight = torch.where(is_y, target_w, torch.exp(gamma * log_q))
    values = -(weight * log_p).sum(-1)
    return reduce_loss(values, reduction, mask=mask, weights=weights)


@register(
    "uskd_loss",
    inputs=(*CLASSES, Input("weak_logits", "logits", "[batch, classes]")),
    family="distill",
    aliases=("uskd",),
    options=(
        Option("alpha", float, Interval(0, None), doc="weight of the target-class term"),
        Option("beta", float, Interval(0, None), doc="weight of the non-target (Zipf) term"),
        Option("mu", float, Interval(0, None), doc="weight of the weak-supervision term"),
        Option("smoothing", float, Interval(0, 1, closed="left"), doc="label smoothing of the weak target"),
    ),
    batch_coupled=True,
)
def uskd_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weak_logits: torch.Tensor,
    *,
    alpha: float = 1.0,
    beta: float = 0.1,
    mu: float = 0.005,
    smoothing: float = 0.1,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Universal self-knowledge distillation (USKD): customised soft labels without a teacher.

    With :math:`p = \operatorname{softmax}(z)` the final prediction, :math:`w = \operatorname{softmax}(z^{w})` a
    weak prediction from intermediate features (the caller's linear head), and stop-gradients on the soft labels:

    .. math::
        \tilde p_y = \operatorname{sg}\big(p_y^2 + 1 - \overline{p_y^2}\big), \qquad
        \ell = -\alpha\,\tilde p_y\log p_y
               - \beta\sum_{k\ne y}\hat z_k \log\hat p_k
               - \mu\sum_k \big((1-\epsilon)\,\mathbb 1[k=y] + \tfrac{\epsilon}{K}\big)\log w_k ,

    where :math:`\overline{p_y^2}` is the batch mean (so the loss is batch-coupled), :math:`\hat p` the student's
    distribution over the non-target classes, and :math:`\hat z` Zipf's law over them: every class ``k`` (the
    target included) is ranked by :math:`w_k/(1-w_y) + p_k/(1-p_y)`, gets :math:`1/\mathrm{rank}_k`, and the
    non-target values are renormalised. The target-class soft label is the paper's
    "squared prediction centred on the batch"; the non-target one mirrors NKD (:func:`nkd_loss`) with Zipf labels.

    Yang, Zeng, Li, Zhang, Yuan & Li (2023), "From Knowledge Distillation to Self-Knowledge Distillation: A
    Unified Approach with Normalized Loss and Customized Soft Labels" (ICCV); defaults from the authors' code
    (yzd-v/cls_KD ``USKDLoss``). That code ranks with the *log*-probability of the final logits in the second
    term; this follows the paper's text (normalised non-target probabilities of both).

    Args:
        logits: ``[batch, K]`` final logits (``K >= 2``); labels: ``[batch]``; weak_logits: ``[batch, K]``.
    Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    check_same_shape(logits=logits, weak_logits=weak_logits)
    safe = check_logits_labels(logits, labels, mask, weights, min_classes=2)
    if logits.dim() != 2:
        raise InputError(f"logits must be [batch, classes], got {list(logits.shape)}")
    n = logits.shape[0]
    if mask is not None:
        keep = torch.as_tensor(mask, dtype=torch.bool, device=logits.device).expand(n)
        z, zw, y = logits[keep], weak_logits[keep], safe[keep]
    else:
        z, zw, y = logits, weak_logits, safe
    k = z.shape[-1]
    log_p = torch.log_softmax(z, dim=-1)
    log_w = torch.log_softmax(zw, dim=-1)
    log_p_y = label_logp(log_p, y)
    with torch.no_grad():
        p2 = log_p_y.exp() ** 2
        soft_y = p2 + 1.0 - p2.mean() if p2.numel() else p2
        is_y = F.one_hot(y, k).bool()

        def odds(lp):  # p_k / (1 - p_y) for every k, from log-probabilities
            rest = torch.logsumexp(lp.masked_fill(is_y, float("-inf")), dim=-1, keepdim=True)
            return torch.exp(lp - rest)

        order = torch.argsort(odds(log_w) + odds(log_p), dim=-1, descending=True, stable=True)
        rank = torch.argsort(order, dim=-1)  # 0-based rank of each class
        zipf = (1.0 / (rank + 1).to(log_p.dtype)).masked_fill(is_y, 0.0)
        zipf = zipf / zipf.sum(-1, keepdim=True)
    non_target = log_p.masked_fill(is_y, float("-inf"))
    log_p_hat = non_target - torch.logsumexp(non_target, dim=-1, keepdim=True)
    loss_non = -(zipf * torch.where(is_y, torch.zeros_like(log_p_hat), log_p_hat)).sum(-1)
    target = (1.0 - smoothing) * is_y.to(log_w.dtype) + smoothing / k
    loss_weak = -(target * log_w).sum(-1)
    values = -alpha * soft_y * log_p_y + beta * loss_non + mu * loss_weak
    if mask is not None:
        values = torch.zeros(n, dtype=values.dtype, device=values.device).masked_scatter(keep, values)
    return reduce_loss(values, reduction, mask=mask, weights=weights)


def _standardised(logits: torch.Tensor) -> torch.Tensor:
    """Logits z-scored along the class axis (unbiased std, as ``torch.std``; ``+1e-8`` as the authors)."""
    centred = logits - logits.mean(-1, keepdim=True)
    std = (centred.square().sum(-1, keepdim=True) / max(logits.shape[-1] - 1, 1)).sqrt()
    return centred / (std + 1e-8)


def _binary_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, normalize: bool):
    s, t = student_logits, teacher_logits
    if s.dtype in (torch.float16, torch.bfloat16):
        s, t = s.float(), t.float()
    if normalize:
        s, t = _standardised(s), _standardised(t)
    s, t = s / temperature, t / temperature
    # per class: KL(Bernoulli(σ(t)) || Bernoulli(σ(s))) from log-sigmoids (no clamping needed)
    q = torch.sigmoid(t)
    log_q, log_1q = F.logsigmoid(t), F.logsigmoid(-t)
    log_p, log_1p = F.logsigmoid(s), F.logsigmoid(-s)
    per_class = q * (log_q - log_p) + (1.0 - q) * (log_1q - log_1p)
    return temperature**2 * per_class.sum(-1)


_POS = Interval(0, None, closed="neither")


@register(
    "binary_kl_loss",
    inputs=STUDENT_TEACHER,
    family="distill",
    aliases=("binary_kl", "binary_kl_norm"),
    options=(
        Option("temperature", float, _POS, doc="temperature τ of the per-class sigmoids"),
        Option("normalize", bool, doc="z-score the logits first (BinaryKL-Norm)"),
    ),
)
def binary_kl_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    temperature: float = 2.0,
    normalize: bool = False,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""BinaryKL: a logit-level distillation loss — one Bernoulli KL per class on sigmoid-squashed logits.

    .. math::
        \ell = \tau^2 \sum_{c=1}^{K} \mathrm{KL}\big(\mathrm{Bern}(\sigma(t_c/\tau)) \,\big\|\,
                                                     \mathrm{Bern}(\sigma(s_c/\tau))\big),

    which, unlike a softmax KL, sees shifts of all logits. ``normalize=True`` is BinaryKL-Norm: each logit vector
    is first z-scored over its classes (:math:`(z - \bar z)/(\mathrm{std}(z) + 10^{-8})`). Computed from
    log-sigmoids; the authors' code clamps the sigmoids to ``[1e-8, 1 − 1e-8]`` instead, which only differs for
    logits beyond about ±18τ.

    Yang, Zong, Huang, Feng & An (2024/2025), "Dual-Head Knowledge Distillation: Enhancing Logits Utilization
    with an Auxiliary Head" (the logit-level loss of :func:`dual_head_kd_loss`).

    Args:
        student_logits, teacher_logits: ``[..., K]``.
    Returns one value per leading position with ``reduction="none"``, else a scalar.
    """
    _check_inputs(student_logits, teacher_logits, None, mask, weights)
    values = _binary_kl(student_logits, teacher_logits, temperature, normalize)
    return reduce_loss(values.to(student_logits.dtype), reduction, mask=mask, weights=weights)


@register(
    "dual_head_kd_loss",
    inputs=(
        *STUDENT_TEACHER,
        Input("aux_logits", "logits", "[batch, classes]"),
        Input("labels", "classes"),
    ),
    family="distill",
    aliases=("dhkd", "dual_head_kd"),
    options=(
        Option("temperature", float, _POS, doc="KD temperature τ of the main head"),
        Option("binary_temperature", float, _POS, doc="BinaryKL-Norm temperature of the auxiliary head"),
        Option("alpha", float, Interval(0, None), doc="weight of the main head's KD term"),
        Option("beta", float, Interval(0, None), doc="weight of the auxiliary head's BinaryKL-Norm term"),
    ),
)
def dual_head_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    aux_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float = 4.0,
    binary_temperature: float = 1.0,
    alpha: float = 1.0,
    beta: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Dual-head KD: probability-level losses on the main head, the logit-level loss on an auxiliary head.

    The student's linear classifier is split into two heads on the same features: ``student_logits`` (the main
    head, used at test time) and ``aux_logits`` (the auxiliary head). With :math:`q = \mathrm{softmax}(t/\tau)`,
    :math:`p = \mathrm{softmax}(s/\tau)`:

    .. math::
        \ell = \mathrm{CE}(s, y) + \alpha\,\tau^2\,\mathrm{KL}(q \,\|\, p)
               + \beta\,\mathrm{BinaryKL\text{-}Norm}(s^{aux}, t),

    so the logit-level signal reaches the shared backbone through the auxiliary head while the main head only
    sees the probability-level losses (combining both on one head collapses it under neural collapse, the
    paper's analysis). BinaryKL-Norm is :func:`binary_kl_loss` with ``normalize=True``.

    Yang, Zong, Huang, Feng & An (2024/2025), "Dual-Head Knowledge Distillation: Enhancing Logits Utilization
    with an Auxiliary Head". Reading taken: the main head's probability-level loss is CE + Hinton KD (the paper's
    "probability-level loss"); the weights are options (the paper tunes them per dataset). BinaryKL-Norm as in
    the authors' released ``BinaryKL_norm_loss``.

    Args:
        student_logits: ``[batch, K]`` of the main head; teacher_logits, aux_logits: ``[batch, K]``;
        labels: ``[batch]``.
    Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    check_same_shape(student_logits=student_logits, aux_logits=aux_logits)
    safe = _check_inputs(student_logits, teacher_logits, labels, mask, weights)
    kd = kl_logspace(_soft(teacher_logits, temperature), _soft(student_logits, temperature))
    aux = _binary_kl(aux_logits, teacher_logits, binary_temperature, True).to(kd.dtype)
    values = _ce(student_logits, safe) + alpha * temperature**2 * kd + beta * aux
    return reduce_loss(values, reduction, mask=mask, weights=weights)


def class_centroids(logits: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    r"""Per-class mean predicted distributions :math:`q_y = \mathbb E[\operatorname{softmax}(z) \mid Y = y]`.

    The class centroids of :func:`mcmi_teacher_loss` (accumulate them over the training set, e.g. once per
    epoch, with the model in eval mode). ``logits`` ``[n, K]``, ``labels`` ``[n]``; returns ``[num_classes, K]``
    (no gradient; a class without examples gets the uniform distribution).
    """
    k = logits.shape[-1] if num_classes is None else num_classes
    safe = check_logits_labels(logits.new_zeros(()).expand(*labels.shape, k), labels)
    with torch.no_grad():
        probs = torch.softmax(logits.detach().float(), dim=-1)
        sums = torch.zeros(k, probs.shape[-1], dtype=probs.dtype, device=probs.device).index_add_(0, safe, probs)
        counts = torch.bincount(safe, minlength=k).to(probs.dtype)
        uniform = torch.full_like(sums, 1.0 / probs.shape[-1])
        return torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], uniform).to(logits.dtype)


@register(
    "mcmi_teacher_loss",
    inputs=(*CLASSES, Input("class_centroids", "probs", "[classes, classes]")),
    family="distill",
    aliases=("mcmi", "maximum_cmi"),
    options=(weight_option("cmi_weight", "weight λ of the conditional mutual information (maximised)"),),
)
def mcmi_teacher_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_centroids: torch.Tensor,
    *,
    cmi_weight: float = 0.25,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Maximum-CMI teacher training: cross-entropy minus λ times the conditional mutual information ``I(X; Ŷ | Y)``.

    A teacher whose output is closer to the Bayes conditional distribution teaches better; the paper trains (or
    fine-tunes) it to *keep* the information its predictions carry about the input beyond the label. With
    :math:`p = \operatorname{softmax}(z)` and :math:`q_y` the centroid of class ``y`` (:func:`class_centroids`),
    ``I(X; Ŷ | Y)`` is estimated per example by :math:`\mathrm{KL}(p \,\|\, q_y)`:

    .. math::
        \ell = \mathrm{CE}(z, y) - \lambda\,\mathrm{KL}\big(p \,\|\, q_{y}\big).

    Ye, Chen, Yang, Feng, Sun & Chen (2024), "Bayes Conditional Distribution Estimation for Knowledge
    Distillation" (ICLR), MCMI; as the authors' ``CE_KL_loss`` (``F.kl_div(centroids.log(), log_softmax(output),
    log_target=True)``) weighted ``1, −λ`` in their fine-tuning script. The centroids are constants (computed over
    the training set); a zero centroid entry is floored at the smallest positive normal number.

    Args:
        logits: ``[batch, K]``; labels: ``[batch]``; class_centroids: ``[K, K]`` (row ``y`` = centroid of class y).
        cmi_weight: ``λ >= 0`` (``0`` is plain cross-entropy).
    Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    safe = check_logits_labels(logits, labels, mask, weights)
    k = logits.shape[-1]
    if not isinstance(class_centroids, torch.Tensor) or tuple(class_centroids.shape) != (k, k):
        got = getattr(class_centroids, "shape", class_centroids)
        raise InputError(f"class_centroids must be [{k}, {k}] (one distribution per class), got {got}")
    log_p = torch.log_softmax(logits, dim=-1)
    centroid = class_centroids.detach().to(log_p.dtype)[safe]
    log_q = torch.log(centroid.clamp(min=torch.finfo(log_p.dtype).tiny))
    cmi = kl_logspace(log_p, log_q)
    values = -label_logp(log_p, safe) - cmi_weight * cmi
    return reduce_loss(values, reduction, mask=mask, weights=weights)
