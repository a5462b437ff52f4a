"""Feature-level and relational distillation losses on embeddings (and a batch-wise Sinkhorn logit distiller).

Inputs are features the caller collected (forward hooks, ``output_hidden_states``, or
:func:`pairkit.train.collect_hidden_states`): ``student_embeddings [n, dim]`` and ``teacher_embeddings
[n, teacher_dim]``. Relational losses compare the *structure* of a batch (distances, angles, similarities to
prototypes), so the two models' feature widths may differ and each example's value depends on the others in the
batch (they are registered ``batch_coupled``). ``mask`` drops examples from the batch before the relations are
computed (a masked row is neither an anchor nor a neighbour), so masking equals slicing. As everywhere in
:mod:`pairkit.losses.distill`, the teacher is used as given: detach it yourself for offline distillation.

The token-level relationship-graph losses take token features ``student_tokens [batch, T, dim]`` and
``teacher_tokens [batch, T, teacher_dim]`` (a ViT's patch tokens, or a CNN feature map cut into ``T`` patches);
``mask`` then drops whole examples (all their tokens).
"""

from __future__ import annotations

import math

import torch

from pairkit._spec import Input, Interval, Option
from pairkit.errors import InputError
from pairkit.losses._core import Reduction, reduce_loss, register
from pairkit.losses._embeddings import check_features, feature_rows, safe_norm, scatter_rows, unit_rows
from pairkit.losses.classification import check_logits_labels

__all__ = [
    "nd_loss",
    "prototype_relation_loss",
    "rkd_angle_loss",
    "rkd_distance_loss",
    "sinkhorn_kd_loss",
    "token_contextual_kd_loss",
    "token_graph_kd_loss",
]

_FAMILY = "distill"

STUDENT_TEACHER_EMBEDDINGS = (
    Input("student_embeddings", "embeddings", "[n, dim]"),
    Input("teacher_embeddings", "embeddings", "[n, teacher_dim]"),
)
_POSITIVE = Interval(0, None, closed="neither")
HUBER_DELTA = Option("delta", float, _POSITIVE, doc="Huber threshold δ (RKD uses 1, i.e. smooth L1)")
TEMPERATURE = Option("temperature", float, _POSITIVE, doc="softmax temperature τ")


# --------------------------------------------------------------------------------------------- helpers


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``[n, n]`` with a zero diagonal and finite gradients there (no ``sqrt(0)``)."""
    diff = x.unsqueeze(1) - x.unsqueeze(0)
    sq = (diff * diff).sum(-1)
    eye = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    positive = ~eye & (sq > 0)
    return torch.where(positive, torch.sqrt(torch.where(positive, sq, torch.ones_like(sq))), torch.zeros_like(sq))


def _huber(x: torch.Tensor, delta: float) -> torch.Tensor:
    a = x.abs()
    return torch.where(a < delta, 0.5 * x * x / delta, a - 0.5 * delta)


def _normalised_distances(x: torch.Tensor) -> torch.Tensor:
    """RKD's ψ_D: distances divided by their mean over the ordered pairs ``i ≠ j``."""
    n = x.shape[0]
    d = _pairwise_distances(x)
    pairs = max(n * (n - 1), 1)
    mu = d.sum() / pairs
    return d / torch.where(mu > 0, mu, torch.ones_like(mu))


# ----------------------------------------------------------------------------------------------- RKD


@register(
    "rkd_distance_loss",
    inputs=STUDENT_TEACHER_EMBEDDINGS,
    family=_FAMILY,
    aliases=("rkd_distance", "rkd_d"),
    options=(HUBER_DELTA,),
    batch_coupled=True,
)
def rkd_distance_loss(
    student_embeddings: torch.Tensor,
    teacher_embeddings: torch.Tensor,
    *,
    delta: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Relational KD, distance-wise: match the batch's normalised pairwise distances.

    .. math::
        \psi_D(x_i, x_j) = \frac{\lVert x_i - x_j\rVert_2}{\mu}, \quad
        \mu = \frac{1}{n(n-1)}\sum_{k \ne l}\lVert x_k - x_l\rVert_2, \qquad
        \ell_i = \frac{1}{n-1}\sum_{j \ne i} h_\delta\big(\psi_D(s_i, s_j) - \psi_D(t_i, t_j)\big),

    with :math:`h_\delta` the Huber loss (``δ = 1``: smooth L1, as the paper). The mean of :math:`\ell_i` over
    the batch is the mean over all ordered pairs ``i ≠ j`` (the paper's sum over pairs, averaged). The authors'
    code averages over all ``n²`` entries including the zero diagonal, i.e. ``(n−1)/n`` times this value.

    Park, Kim, Lu & Cho (2019), "Relational Knowledge Distillation" (CVPR), eq. (3)–(5).

    Args:
        student_embeddings: ``[n, dim]``; teacher_embeddings: ``[n, teacher_dim]`` (widths may differ).
        delta: Huber threshold. mask, weights: ``[n]``.
    Returns ``[n]`` (one value per anchor) with ``reduction="none"``, else a scalar.
    """
    n = check_features(("student_embeddings", "teacher_embeddings"), student_embeddings, teacher_embeddings,
                        mask=mask, weights=weights)  # fmt: skip
    s, t = feature_rows(mask, student_embeddings, teacher_embeddings)
    dtype = _compute_dtype(s)
    ds, dt = _normalised_distances(s.to(dtype)), _normalised_distances(t.to(dtype))
    m = s.shape[0]
    off = ~torch.eye(m, dtype=torch.bool, device=s.device)
    per_pair = torch.where(off, _huber(ds - dt, delta), torch.zeros_like(ds))
    values = per_pair.sum(-1) / max(m - 1, 1)
    return reduce_loss(scatter_rows(values.to(s.dtype), mask, n), reduction, mask=mask, weights=weights)


def _unit_differences(x: torch.Tensor) -> torch.Tensor:
    """``e[j, i] = (x_i − x_j) / ‖x_i − x_j‖`` as ``[n, n, dim]`` (zero where ``x_i = x_j``, finite gradient)."""
    diff = x.unsqueeze(0) - x.unsqueeze(1)  # [j, i, d]
    sq = (diff * diff).sum(-1, keepdim=True)
    positive = sq > 0
    inv = torch.where(positive, torch.rsqrt(torch.where(positive, sq, torch.ones_like(sq))), torch.zeros_like(sq))
    return diff * inv


@register(
    "rkd_angle_loss",
    inputs=STUDENT_TEACHER_EMBEDDINGS,
    family=_FAMILY,
    aliases=("rkd_angle", "rkd_a"),
    options=(HUBER_DELTA,),
    batch_coupled=True,
)
def rkd_angle_loss(
    student_embeddings: torch.Tensor,
    teacher_embeddings: torch.Tensor,
    *,
    delta: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Relational KD, angle-wise: match the cosines of the angles of every triplet in the batch.

    .. math::
        \psi_A(x_i, x_j, x_k) = \langle e^{ij}, e^{kj}\rangle, \quad
        e^{ij} = \frac{x_i - x_j}{\lVert x_i - x_j\rVert_2},
        \qquad
        \ell_j = \frac{1}{(n-1)^2}\sum_{i \ne j}\sum_{k \ne j}
            h_\delta\big(\psi_A(s_i, s_j, s_k) - \psi_A(t_i, t_j, t_k)\big),

    the angle at vertex ``j`` (:math:`h_\delta` the Huber loss). The mean of :math:`\ell_j` over the batch is the
    mean over all triplets whose outer points differ from the vertex (``i = k`` included: its cosine is 1 for
    both models). The authors' code averages over all ``n³`` entries, counting the degenerate ones (a zero
    difference vector) as 0 for both models, i.e. ``(n−1)²/n²`` times this value.

    Park, Kim, Lu & Cho (2019), "Relational Knowledge Distillation" (CVPR), eq. (6)–(7). The ``[n, n, dim]``
    difference tensor is built per call: the batch is the relation, so ``n`` is a batch size.

    Args:
        student_embeddings: ``[n, dim]``; teacher_embeddings: ``[n, teacher_dim]``.
        delta: Huber threshold. mask, weights: ``[n]``.
    Returns ``[n]`` (one value per vertex) with ``reduction="none"``, else a scalar.
    """
    n = check_features(("student_embeddings", "teacher_embeddings"), student_embeddings, teacher_embeddings,
                        mask=mask, weights=weights)  # fmt: skip
    s, t = feature_rows(mask, student_embeddings, teacher_embeddings)
    dtype = _compute_dtype(s)
    es, et = _unit_differences(s.to(dtype)), _unit_differences(t.to(dtype))
    cos_s = es @ es.transpose(1, 2)  # [j, i, k]
    cos_t = et @ et.transpose(1, 2)
    m = s.shape[0]
    # the entries with i = j or k = j are exactly 0 for both models (zero difference vectors), so they add 0
    values = _huber(cos_s - cos_t, delta).sum((1, 2)) / max(m - 1, 1) ** 2
    return reduce_loss(scatter_rows(values.to(s.dtype), mask, n), reduction, mask=mask, weights=weights)


# ------------------------------------------------------------------------------ norm and direction (ND)


@register(
    "nd_loss",
    inputs=(
        Input("student_embeddings", "embeddings", "[batch, dim]"),
        Input("teacher_embeddings", "embeddings", "[batch, dim]"),
        Input("labels", "classes"),
        Input("class_centers", "embeddings", "[classes, dim]"),
    ),
    family=_FAMILY,
    aliases=("norm_direction_kd", "nd"),
)
def nd_loss(
    student_embeddings: torch.Tensor,
    teacher_embeddings: torch.Tensor,
    labels: torch.Tensor,
    class_centers: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Norm-and-direction (ND) loss: push the student's feature along its class's teacher centre, and long.

    With :math:`c_y` the mean teacher embedding of class ``y`` (computed by the caller over the training set)
    and :math:`\hat c_y = c_y / \lVert c_y\rVert`:

    .. math::
        \ell = 1 - \frac{\langle s, \hat c_y\rangle}{\max(\lVert s\rVert, \lVert t\rVert)},

    so the loss falls both when the student feature turns towards :math:`\hat c_y` and when its projection on it
    grows (up to the larger of the two norms). Added to a logit-KD loss (KD++, DKD++, …) in the paper.

    Wang, Cheng, Zhang, Wu & Zhang (2023), "Improving Knowledge Distillation via Regularizing Feature Norm and
    Direction"; formula as in the authors' ``DirectNormLoss`` (WangYZ1608/Knowledge-Distillation-via-ND).

    Args:
        student_embeddings, teacher_embeddings: ``[batch, dim]`` penultimate features (same width: project the
        student first if they differ); labels: ``[batch]`` class indices; class_centers: ``[classes, dim]``.
    Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    check_features(("student_embeddings", "teacher_embeddings"), student_embeddings, teacher_embeddings,
                    mask=mask, weights=weights, same_dim=True)  # fmt: skip
    if not (isinstance(class_centers, torch.Tensor) and class_centers.is_floating_point()):
        raise InputError("class_centers must be a floating-point torch tensor [classes, dim]")
    if class_centers.dim() != 2 or class_centers.shape[1] != student_embeddings.shape[1]:
        raise InputError(
            f"class_centers must have shape [classes, {student_embeddings.shape[1]}], got {list(class_centers.shape)}"
        )
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.shape[0] != student_embeddings.shape[0]:
        got = getattr(labels, "shape", labels)
        raise InputError(f"labels must be a [{student_embeddings.shape[0]}] tensor, got {got}")
    # the classes are the rows of class_centers: check labels against them as against [batch, classes] logits
    shape_only = class_centers.new_zeros(()).expand(labels.shape[0], class_centers.shape[0])
    safe = check_logits_labels(shape_only, labels, mask, weights, logits_name="class_centers rows")
    dtype = _compute_dtype(student_embeddings)
    s, t, c = student_embeddings.to(dtype), teacher_embeddings.to(dtype), class_centers.to(dtype)
    centre = c[safe]
    c_norm = safe_norm(centre)
    direction = centre / torch.where(c_norm > 0, c_norm, torch.ones_like(c_norm)).unsqueeze(-1)
    scale = torch.maximum(safe_norm(s), safe_norm(t))
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    values = 1.0 - (s * direction).sum(-1) / scale
    return reduce_loss(values.to(student_embeddings.dtype), reduction, mask=mask, weights=weights)


# ----------------------------------------------------------------------------------- prototype relation


@register(
    "prototype_relation_loss",
    inputs=(
        Input("student_embeddings", "embeddings", "[batch, dim]"),
        Input("teacher_embeddings", "embeddings", "[batch, dim]"),
        Input("prototypes", "embeddings", "[classes, dim]"),
        Input("teacher_prototypes", "embeddings", "[classes, dim]", required=False, keyword=True),
    ),
    family=_FAMILY,
    aliases=("prd", "prototype_sample_relation"),
    options=(TEMPERATURE, Option("normalize", bool, doc="ℓ2-normalise embeddings and prototypes (cosine)")),
)
def prototype_relation_loss(
    student_embeddings: torch.Tensor,
    teacher_embeddings: torch.Tensor,
    prototypes: torch.Tensor,
    *,
    teacher_prototypes: torch.Tensor | None = None,
    temperature: float = 0.1,
    normalize: bool = True,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Prototype–sample relation distillation: keep each sample's softmax similarity to the class prototypes.

    With :math:`P` the prototypes (``[classes, dim]``, those of the classes seen so far) and
    :math:`p(x; z, P)_c = \operatorname{softmax}_c(\langle z, P_c\rangle/\tau)` over normalised vectors:

    .. math::
        \ell_i = \mathrm{KL}\big(p(x_i; t_i, P^{T}) \,\big\|\, p(x_i; s_i, P)\big),

    where :math:`t_i, P^T` are the previous (teacher) model's embedding and prototypes (``teacher_prototypes``,
    default: the same ``prototypes``) and :math:`s_i, P` the current ones; gradients flow to the student
    embeddings and to ``prototypes``.

    Asadi, Davari, Mudur, Aljundi & Belilovsky (2023), "Prototype-Sample Relation Distillation: Towards
    Replay-Free Continual Learning" (ICML). The paper tunes ``τ``; ``0.1`` (the usual supervised-contrastive
    value) is only a default.

    Args:
        student_embeddings, teacher_embeddings: ``[batch, dim]``; prototypes: ``[classes, dim]``;
        teacher_prototypes: optional ``[classes, dim]``. temperature: ``τ > 0``.
    Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    names = ("student_embeddings", "teacher_embeddings")
    check_features(names, student_embeddings, teacher_embeddings, mask=mask, weights=weights, same_dim=True)
    t_protos = prototypes if teacher_prototypes is None else teacher_prototypes
    for name, p in (("prototypes", prototypes), ("teacher_prototypes", t_protos)):
        if not (isinstance(p, torch.Tensor) and p.is_floating_point()) or p.dim() != 2 or p.shape[0] == 0:
            raise InputError(f"{name} must be a floating-point [classes, dim] tensor with classes >= 1")
        if p.shape != prototypes.shape or p.shape[1] != student_embeddings.shape[1]:
            raise InputError(
                f"{name} must have shape [classes, {student_embeddings.shape[1]}] like prototypes "
                f"{list(prototypes.shape)}, got {list(p.shape)}"
            )
    dtype = _compute_dtype(student_embeddings)

    def log_relation(z: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
        z, protos = z.to(dtype), protos.to(dtype)
        if normalize:
            z, protos = unit_rows(z), unit_rows(protos)
        return torch.log_softmax(z @ protos.T / temperature, dim=-1)

    log_t = log_relation(teacher_embeddings, t_protos)
    log_s = log_relation(student_embeddings, prototypes)
    values = (log_t.exp() * (log_t - log_s)).sum(-1)
    return reduce_loss(values.to(student_embeddings.dtype), reduction, mask=mask, weights=weights)


# ------------------------------------------------------------------------------------------------ SinKD


@register(
    "sinkhorn_kd_loss",
    inputs=(
        Input("student_logits", "logits", "[batch, classes]"),
        Input("teacher_logits", "logits", "[batch, classes]"),
    ),
    family=_FAMILY,
    aliases=("sinkd", "sinkhorn_kd"),
    options=(
        TEMPERATURE,
        Option("epsilon", float, _POSITIVE, doc="entropic regularisation ε of the transport plan"),
        Option("num_iters", int, Interval(1, None), doc="Sinkhorn iterations (row then column scaling each)"),
    ),
    batch_coupled=True,
)
def sinkhorn_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    temperature: float = 2.0,
    epsilon: float = 0.1,
    num_iters: int = 20,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""SinKD, batch-wise: Sinkhorn distance between the batch of student and the batch of teacher predictions.

    The ``n`` softened predictions :math:`p^s_i = \operatorname{softmax}(s_i/\tau)` and
    :math:`p^t_j = \operatorname{softmax}(t_j/\tau)` are two empirical measures with uniform weights; the ground
    cost between a student and a teacher prediction is their L1 distance, and the plan is the entropic one
    (``num_iters`` row-then-column Sinkhorn scalings of :math:`e^{-C/\varepsilon}`, in the log domain):

    .. math::
        C_{ij} = \lVert p^s_i - p^t_j\rVert_1, \qquad
        \Pi = \operatorname{Sinkhorn}_\varepsilon\big(C; \tfrac1n\mathbf 1, \tfrac1n\mathbf 1\big), \qquad
        \ell_i = n\sum_j \Pi_{ij} C_{ij},

    so the ``"mean"`` is the Sinkhorn distance :math:`\langle\Pi, C\rangle` and the ``"sum"`` equals the
    authors' ``sum(P * C)`` (their plan is ``n Π``: rows and columns normalised to 1). Gradients flow through
    the unrolled iterations, as in the authors' code.

    Cui, Qin, Gao, Zhang, Xu, Wu, Li, Sun, Zhou & Li (2024), "Sinkhorn Distance Minimization for Knowledge
    Distillation" (LREC-COLING); defaults ``τ = 2``, ``ε = 0.1``, 20 iterations from the authors' code
    (2018cx/SinKD). The paper's weighting against the CE/KD terms is left to the caller.

    Args:
        student_logits, teacher_logits: ``[batch, classes]``. mask, weights: ``[batch]``.
    Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    n = check_features(("student_logits", "teacher_logits"), student_logits, teacher_logits, mask=mask,
                        weights=weights, same_dim=True)  # fmt: skip
    s, t = feature_rows(mask, student_logits, teacher_logits)
    dtype = _compute_dtype(s)
    p_s = torch.softmax(s.to(dtype) / temperature, dim=-1)
    p_t = torch.softmax(t.to(dtype) / temperature, dim=-1)
    cost = (p_s.unsqueeze(1) - p_t.unsqueeze(0)).abs().sum(-1)  # [i, j]
    m = cost.shape[0]
    log_marginal = -torch.log(torch.tensor(float(max(m, 1)), dtype=dtype, device=cost.device))
    scaled = -cost / epsilon
    f = torch.zeros(m, dtype=dtype, device=cost.device)
    g = torch.zeros(m, dtype=dtype, device=cost.device)
    for _ in range(num_iters):
        f = epsilon * (log_marginal - torch.logsumexp(scaled + g.unsqueeze(0) / epsilon, dim=1))
        g = epsilon * (log_marginal - torch.logsumexp(scaled + f.unsqueeze(1) / epsilon, dim=0))
    plan = torch.exp(scaled + (f.unsqueeze(1) + g.unsqueeze(0)) / epsilon)
    values = m * (plan * cost).sum(-1)
    return reduce_loss(scatter_rows(values.to(s.dtype), mask, n), reduction, mask=mask, weights=weights)


# ------------------------------------------------------------------------- token-level relationship graph

STUDENT_TEACHER_TOKENS = (
    Input("student_tokens", "embeddings", "[batch, T, dim]"),
    Input("teacher_tokens", "embeddings", "[batch, T, teacher_dim]"),
)


def _check_tokens(student: torch.Tensor, teacher: torch.Tensor, mask, weights) -> int:
    """``[batch, T, dim]`` floating token tensors with one ``batch`` and ``T`` (widths may differ); returns batch."""
    for name, x in (("student_tokens", student), ("teacher_tokens", teacher)):
        if not (isinstance(x, torch.Tensor) and x.is_floating_point()):
            kind = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(f"{name} must be a floating-point torch tensor, got {kind}")
        if x.dim() != 3 or x.shape[1] == 0 or x.shape[2] == 0:
            raise InputError(f"{name} must have shape [batch, T, dim] with T, dim >= 1, got {list(x.shape)}")
    if student.shape[:2] != teacher.shape[:2]:
        raise InputError(
            "student_tokens and teacher_tokens must have the same [batch, T]: "
            f"{list(student.shape)} and {list(teacher.shape)}"
        )
    n = student.shape[0]
    check_features(("student_tokens[:, 0]", "teacher_tokens[:, 0]"), student[:, 0], teacher[:, 0],
                   mask=mask, weights=weights)  # fmt: skip
    return n


@register(
    "token_contextual_kd_loss",
    inputs=STUDENT_TEACHER_TOKENS,
    family=_FAMILY,
    aliases=("trg_contextual", "trg_inner", "token_contextual_kd"),
)
def token_contextual_kd_loss(
    student_tokens: torch.Tensor,
    teacher_tokens: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""TRG's contextual (inner-instance) loss: match each example's token-to-token attention map.

    For one example with token features :math:`F \in \mathbb R^{T\times D}` the contextual similarity is the
    row-softmax of the scaled Gram matrix; the student's map is pulled to the teacher's by the mean squared error:

    .. math::
        \mathrm{CS}(F) = \operatorname{softmax}_{\text{row}}\Big(\frac{F F^\top}{\sqrt D}\Big), \qquad
        \ell = \frac{1}{T^2}\sum_{i,j}\big(\mathrm{CS}(F^{t})_{ij} - \mathrm{CS}(F^{s})_{ij}\big)^2 .

    The maps are ``T × T`` whatever the widths, so student and teacher widths may differ (each is scaled by its
    own :math:`\sqrt D`). One value per example: the loss is not batch-coupled.

    Zhang, Liu & He (2023), "Knowledge Distillation via Token-level Relationship Graph" (arXiv:2306.12442),
    the contextual loss :math:`\mathcal L_{inner}`; the total objective adds it (weight :math:`\alpha`) to the
    logit KD loss, :func:`token_graph_kd_loss` (:math:`\beta`) and the token InfoNCE described there
    (:math:`\gamma`).

    Reading taken: the paper's own text could not be read here; the formula is the one restated from it in a
    third-party summary (``MSE(CS^T, CS^S)`` with ``CS = Softmax(F·F'/√D)``). The row-softmax and the mean over
    the ``T²`` entries are the reading of "Softmax" and "MSE".

    Args:
        student_tokens: ``[batch, T, dim]``; teacher_tokens: ``[batch, T, teacher_dim]``. mask, weights:
        ``[batch]``.
    Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    _check_tokens(student_tokens, teacher_tokens, mask, weights)
    dtype = _compute_dtype(student_tokens)

    def contextual(x: torch.Tensor) -> torch.Tensor:
        x = x.to(dtype)
        return torch.softmax(x @ x.transpose(1, 2) / math.sqrt(x.shape[-1]), dim=-1)

    diff = contextual(teacher_tokens) - contextual(student_tokens)
    values = (diff * diff).mean((1, 2))
    return reduce_loss(values.to(student_tokens.dtype), reduction, mask=mask, weights=weights)


def _gram_sq_distances(x: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``[n, n]`` from the Gram matrix (for choosing neighbours only)."""
    sq = (x * x).sum(-1)
    return (sq.unsqueeze(1) + sq.unsqueeze(0) - 2.0 * (x @ x.T)).clamp_min(0)


@register(
    "token_graph_kd_loss",
    inputs=STUDENT_TEACHER_TOKENS,
    family=_FAMILY,
    aliases=("trg", "trg_local", "token_relationship_graph_kd"),
    options=(
        Option("k", int, Interval(1, None), doc="neighbours of each token in the teacher's k-NN token graph"),
        Option("sigma", float, _POSITIVE, doc="bandwidth σ of the Gaussian edge weight exp(-d²/(2σ))"),
    ),
    batch_coupled=True,
)
def token_graph_kd_loss(
    student_tokens: torch.Tensor,
    teacher_tokens: torch.Tensor,
    *,
    k: int,
    sigma: float,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""TRG's local-preserving loss: keep each token's neighbourhood in the batch's k-NN token graph.

    All tokens of the batch (the caller samples them: the paper draws a few per image to keep the graph small)
    are the nodes of one graph, so tokens of different examples are linked when they look alike. Each node's
    edges go to its ``k`` nearest tokens in the teacher's feature space, weighted by a Gaussian kernel; the
    softmax of a node's edge weights is its local structure, and the student's (same edges, its own features)
    is pulled to the teacher's:

    .. math::
        A(x_i, x_j) = \exp\Big(-\frac{\lVert x_i - x_j\rVert^2}{2\sigma}\Big), \quad
        p^{m}_{i\cdot} = \operatorname{softmax}_{j \in \mathcal N_k(i)} A(x^m_i, x^m_j), \qquad
        \ell_i = \mathrm{KL}\big(p^{s}_{i\cdot} \,\big\|\, p^{t}_{i\cdot}\big),

    with :math:`\mathcal N_k(i)` the ``k`` nearest other tokens of token ``i`` among the teacher's features
    (``min(k, N-1)`` of the ``N`` tokens). An example's value is the mean of :math:`\ell_i` over its tokens,
    so the batch ``"mean"`` is the mean over all tokens. Widths may differ. Batch-coupled; the ``N × N`` teacher
    distances are computed to find the neighbours (without gradient), so ``N`` is a sampled token count.

    Zhang, Liu & He (2023), "Knowledge Distillation via Token-level Relationship Graph" (arXiv:2306.12442),
    :math:`\mathcal L_{local}`. The paper's global term is an InfoNCE between each student
    token (linearly projected to the teacher's width) and the same token of the teacher, the other tokens
    negatives, with a temperature lowered during training: :func:`pairkit.losses.infonce` on
    ``(proj(student_tokens).flatten(0, 1), teacher_tokens.flatten(0, 1))`` with the caller's schedule.

    Reading taken: the paper's own text could not be read here; the formulas are those restated from it in a
    third-party summary (Gaussian k-NN adjacency, row softmax, ``KL(softmax(A^S) || softmax(A^T))``, as in the
    local-structure-preserving loss of Yang et al. 2020 that it follows). Taken there: the neighbour sets are the
    teacher's and shared by both models (so the two distributions have one support), the softmax runs over a
    token's ``k`` neighbours (the non-edges are not in it), a token is not its own neighbour, and ``σ`` divides
    the squared distance unsquared as written. ``k`` and ``σ`` have no default: their values are not in the text
    available, and ``σ`` depends on the feature scale.

    Args:
        student_tokens: ``[batch, T, dim]``; teacher_tokens: ``[batch, T, teacher_dim]``. k: neighbours per token;
        sigma: kernel bandwidth. mask, weights: ``[batch]`` (a masked example's tokens leave the graph).
    Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    n = _check_tokens(student_tokens, teacher_tokens, mask, weights)
    s, t = feature_rows(mask, student_tokens, teacher_tokens)
    m, tokens = s.shape[0], s.shape[1]
    dtype = _compute_dtype(s)
    s_flat = s.reshape(m * tokens, s.shape[2]).to(dtype)
    t_flat = t.reshape(m * tokens, t.shape[2]).to(dtype)
    count = m * tokens
    kk = min(k, count - 1)
    if kk < 1:
        values = s_flat.new_zeros(m)  # one token (or none): no edges
        return reduce_loss(scatter_rows(values.to(s.dtype), mask, n), reduction, mask=mask, weights=weights)
    with torch.no_grad():
        d2 = _gram_sq_distances(t_flat)
        d2.fill_diagonal_(math.inf)
        neighbours = torch.topk(d2, kk, dim=1, largest=False).indices  # [N, k]

    def log_structure(x: torch.Tensor) -> torch.Tensor:
        diff = x.unsqueeze(1) - x[neighbours]  # [N, k, dim]
        edge = torch.exp(-(diff * diff).sum(-1) / (2.0 * sigma))
        return torch.log_softmax(edge, dim=-1)

    log_s, log_t = log_structure(s_flat), log_structure(t_flat)
    kl = (log_s.exp() * (log_s - log_t)).sum(-1)
    values = kl.reshape(m, tokens).mean(-1)
    return reduce_loss(scatter_rows(values.to(s.dtype), mask, n), reduction, mask=mask, weights=weights)
