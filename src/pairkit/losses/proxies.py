"""Proxy-based metric-learning losses: each class is represented by one (or a few) learnable proxy vectors.

Every loss here is ``f(embeddings [N, D], labels [N], proxies [C, D], *, options..., reduction="mean")`` (SoftTriple
takes ``centers [C, K, D]``): the proxies are an ordinary tensor, so the caller owns them — typically a
``torch.nn.Parameter`` of the model or of the loss's optimiser group, e.g.

.. code-block:: python

    proxies = torch.nn.Parameter(torch.randn(num_classes, dim) / dim**0.5)
    loss = pairkit.losses.proxy_anchor(model(x), y, proxies)

``labels`` are class indices in ``[0, C)``; row ``c`` of ``proxies`` belongs to class ``c``. Embeddings and proxies
are L2-normalised before use (as pytorch-metric-learning's defaults), so similarities are cosines. Values and
gradients equal pytorch-metric-learning's classes with the same proxies (its ``W`` of shape ``[D, C]`` is
``proxies.T``), to float64 round-off; the cost is O(N C D) time and O(N C) memory.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pairkit._spec import Input, Interval, Option
from pairkit.errors import InputError
from pairkit.losses._core import LABELLED_EMBEDDINGS, Reduction, reduce_loss, register
from pairkit.losses._embeddings import check_matrix, check_weights, masked_logsumexp, normalize_rows, safe_sqrt

__all__ = ["arcface", "cosface", "normalized_softmax", "proxy_anchor", "proxy_nca", "soft_triple", "unpg"]

_FAMILY = "contrastive"
PROXIES = Input("proxies", "proxies", "[classes, dim]", doc="one proxy vector per class")
CENTERS = Input("centers", "proxies", "[classes, centers, dim]", doc="K centres per class")

_POSITIVE = Interval(0, None, closed="neither")
_NON_NEGATIVE = Interval(0, None)
_SCALE = Option("scale", float, _POSITIVE, doc="scale s of the cosine logits")


def _proxy_inputs(embeddings, labels, proxies, weights, *, name="proxies", per_class_dims=1):
    """Check the inputs; return normalised embeddings, long labels and normalised proxies."""
    check_matrix("embeddings", embeddings)
    n, d = embeddings.shape
    if not isinstance(proxies, torch.Tensor) or not proxies.is_floating_point():
        raise InputError(f"{name} must be a floating-point torch tensor, got {type(proxies).__name__}")
    want = "[C, D]" if per_class_dims == 1 else "[C, K, D]"
    if proxies.ndim != per_class_dims + 1 or proxies.shape[-1] != d or proxies.shape[0] < 1:
        raise InputError(f"{name} must have shape {want} with D = {d} (the embedding size), got {list(proxies.shape)}")
    if not bool(torch.isfinite(proxies).all()):
        raise InputError(f"{name} contains a non-finite value")
    labels = torch.as_tensor(labels, device=embeddings.device)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise InputError(f"labels must have shape [N] = [{n}] (one per embedding row), got {list(labels.shape)}")
    if labels.is_floating_point() or labels.dtype == torch.bool or labels.is_complex():
        raise InputError(f"labels must be integer class indices (rows of {name}), got dtype {labels.dtype}")
    labels = labels.long()
    c = proxies.shape[0]
    bad = (labels < 0) | (labels >= c)
    if bool(bad.any()):
        row = int(torch.nonzero(bad)[0])
        raise InputError(f"labels must index rows of {name} (0 <= label < {c}); row {row} has label {int(labels[row])}")
    check_weights(weights, n)
    return normalize_rows(embeddings), labels, normalize_rows(proxies)


def _cross_entropy(logits, labels, weights, reduction):
    values = F.cross_entropy(logits, labels, reduction="none") if logits.shape[0] else logits.sum(1)
    return reduce_loss(values, reduction, weights=weights)


# --------------------------------------------------------------------------------------------- losses


@register(
    "proxy_nca",
    keywords=("weights", "reduction"),
    inputs=(*LABELLED_EMBEDDINGS, PROXIES),
    family=_FAMILY,
    aliases=("proxy_nca_loss", "proxynca"),
    options=(Option("softmax_scale", float, _POSITIVE, doc="inverse temperature of the softmax over proxies"),),
)
def proxy_nca(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    proxies: torch.Tensor,
    *,
    softmax_scale: float = 1.0,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Proxy-NCA: neighbourhood component analysis against one proxy per class.

    .. math::

        \\ell_i = -\\log \\frac{\\exp(-s\\, \\lVert \\hat x_i - \\hat p_{y_i} \\rVert^2)}
        {\\sum_{c=1}^{C} \\exp(-s\\, \\lVert \\hat x_i - \\hat p_c \\rVert^2)}

    with :math:`\\hat{\\cdot}` the L2-normalised vectors and :math:`s` = ``softmax_scale``. The paper's
    denominator leaves out the positive proxy; this follows pytorch-metric-learning's ``ProxyNCALoss`` (and
    Proxy-NCA++), which keeps it, so the loss is a cross-entropy and bounded below by 0. pml drops rows whose
    probability underflows to 0; here they give their (large, finite) value.

    Movshovitz-Attias, Toshev, Leung, Ioffe & Singh (2017), "No Fuss Distance Metric Learning using Proxies".

    Args: ``embeddings`` [N, D], ``labels`` [N] in [0, C), ``proxies`` [C, D], ``weights`` [N]. Returns a scalar,
    or [N] for ``reduction="none"``; "mean" is over rows.
    """
    x, labels, p = _proxy_inputs(embeddings, labels, proxies, weights)
    # -s |x - p|^2 = 2 s cos - 2 s for unit vectors; the constant cancels in the softmax
    return _cross_entropy((2.0 * softmax_scale) * (x @ p.T), labels, weights, reduction)


@register(
    "proxy_anchor",
    keywords=("reduction",),
    inputs=(*LABELLED_EMBEDDINGS, PROXIES),
    batch_coupled=True,
    family=_FAMILY,
    aliases=("proxy_anchor_loss", "proxyanchor"),
    options=(
        Option("margin", float, _NON_NEGATIVE, doc="margin δ"),
        Option("alpha", float, _POSITIVE, doc="scaling factor α"),
    ),
)
def proxy_anchor(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    proxies: torch.Tensor,
    *,
    margin: float = 0.1,
    alpha: float = 32.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Proxy-Anchor: each proxy is an anchor pulling its class's rows and pushing the others away.

    .. math::

        \\mathcal{L} = \\frac{1}{|P^+|} \\sum_{c \\in P^+} \\log\\Big(1 + \\sum_{i \\in X_c^+}
        e^{-\\alpha (s(x_i, p_c) - \\delta)}\\Big) + \\frac{1}{C} \\sum_{c=1}^{C} \\log\\Big(1 +
        \\sum_{i \\in X_c^-} e^{\\alpha (s(x_i, p_c) + \\delta)}\\Big)

    with :math:`s` the cosine similarity, :math:`P^+` the classes present in the batch and :math:`X_c^{+}`
    (:math:`X_c^-`) the rows of (not of) class :math:`c`. Defaults follow the paper and pytorch-metric-learning's
    ``ProxyAnchorLoss`` (δ = 0.1, α = 32). The loss is a sum over proxies, not rows: ``reduction="none"`` gives
    the per-proxy terms [C] (positive plus negative), ``"sum"`` their sum and ``"mean"`` the formula above.

    Kim, Kim, Cho & Kwak (2020), "Proxy Anchor Loss for Deep Metric Learning".

    Args: ``embeddings`` [N, D], ``labels`` [N] in [0, C), ``proxies`` [C, D]. Returns a scalar or [C].
    """
    x, labels, p = _proxy_inputs(embeddings, labels, proxies, None)
    cos = (p @ x.T).T  # [N, C]
    pos = F.one_hot(labels, p.shape[0]).bool() if x.shape[0] else torch.zeros_like(cos, dtype=torch.bool)
    pos_term = F.softplus(masked_logsumexp((-alpha * (cos - margin)).T, pos.T))
    neg_term = F.softplus(masked_logsumexp((alpha * (cos + margin)).T, ~pos.T))
    if reduction == "mean":
        n_present = pos.any(0).sum().clamp_min(1).to(cos.dtype)
        return pos_term.sum() / n_present + neg_term.mean()
    return reduce_loss(pos_term + neg_term, reduction)


@register(
    "normalized_softmax",
    keywords=("weights", "reduction"),
    inputs=(*LABELLED_EMBEDDINGS, PROXIES),
    family=_FAMILY,
    aliases=("normalized_softmax_loss", "normalised_softmax", "norm_softmax"),
    options=(Option("temperature", float, _POSITIVE, doc="temperature τ of the softmax"),),
)
def normalized_softmax(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    proxies: torch.Tensor,
    *,
    temperature: float = 0.05,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Normalised softmax (NormSoftmax): cross-entropy over cosine similarities to class proxies.

    .. math::

        \\ell_i = -\\log \\frac{\\exp(\\hat x_i^\\top \\hat p_{y_i} / \\tau)}{\\sum_{c=1}^{C}
        \\exp(\\hat x_i^\\top \\hat p_c / \\tau)}

    Default temperature 0.05 as in the paper and pytorch-metric-learning's ``NormalizedSoftmaxLoss``.

    Zhai & Wu (2019), "Classification is a Strong Baseline for Deep Metric Learning".

    Args: ``embeddings`` [N, D], ``labels`` [N] in [0, C), ``proxies`` [C, D], ``weights`` [N]. Returns a scalar,
    or [N] for ``reduction="none"``.
    """
    x, labels, p = _proxy_inputs(embeddings, labels, proxies, weights)
    return _cross_entropy((x @ p.T) / temperature, labels, weights, reduction)


def _arcface_logit(cos: torch.Tensor, margin: float) -> torch.Tensor:
    """ψ(θ) = cos(θ + m) for θ <= π - m, else cos θ - m sin m; from cos θ without acos (finite gradient at θ = 0)."""
    cos_m, sin_m = math.cos(margin), math.sin(margin)
    sin = safe_sqrt(1.0 - cos * cos)
    return torch.where(cos >= -cos_m, cos * cos_m - sin * sin_m, cos - margin * sin_m)


def _margin_logits(x, labels, p, head: str, margin: float) -> torch.Tensor:
    """Unscaled logits [N, C]: cosines to the proxies with the target class's replaced by its margin form."""
    cos = x @ p.T
    target = F.one_hot(labels, p.shape[0]).bool() if x.shape[0] else torch.zeros_like(cos, dtype=torch.bool)
    c = cos.clamp(-1.0, 1.0)
    return torch.where(target, _arcface_logit(c, margin) if head == "arcface" else c - margin, cos)


@register(
    "arcface",
    keywords=("weights", "reduction"),
    inputs=(*LABELLED_EMBEDDINGS, PROXIES),
    family=_FAMILY,
    aliases=("arc_face_loss", "arcface_loss", "additive_angular_margin"),
    options=(Option("margin", float, Interval(0, math.pi / 2), doc="additive angular margin m (radians)"), _SCALE),
)
def arcface(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    proxies: torch.Tensor,
    *,
    margin: float = 0.5,
    scale: float = 64.0,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """ArcFace: softmax cross-entropy with an additive angular margin on the target class.

    .. math::

        \\ell_i = -\\log \\frac{e^{s\\, \\psi(\\theta_{i y_i})}}{e^{s\\, \\psi(\\theta_{i y_i})} +
        \\sum_{c \\ne y_i} e^{s \\cos \\theta_{ic}}}, \\qquad
        \\psi(\\theta) = \\begin{cases} \\cos(\\theta + m) & \\theta \\le \\pi - m \\\\
        \\cos\\theta - m \\sin m & \\text{otherwise} \\end{cases}

    with :math:`\\theta_{ic}` the angle between row :math:`i` and proxy :math:`c`. The second branch keeps the
    target logit decreasing in :math:`\\theta` (the authors' code and pytorch-metric-learning's ``ArcFaceLoss``).
    :math:`\\cos(\\theta + m)` is computed as :math:`\\cos\\theta\\cos m - \\sin\\theta \\sin m` (no ``acos``, so the
    gradient stays finite at :math:`\\theta = 0`). ``margin`` is in radians (the paper's m = 0.5; pml takes
    degrees, 28.6 ≈ 0.5 rad), ``scale`` s = 64.

    Deng, Guo, Xue & Zafeiriou (2019), "ArcFace: Additive Angular Margin Loss for Deep Face Recognition".

    Args: ``embeddings`` [N, D], ``labels`` [N] in [0, C), ``proxies`` [C, D] (the class weights), ``weights`` [N].
    Returns a scalar, or [N] for ``reduction="none"``.
    """
    x, labels, p = _proxy_inputs(embeddings, labels, proxies, weights)
    return _cross_entropy(scale * _margin_logits(x, labels, p, "arcface", margin), labels, weights, reduction)


@register(
    "cosface",
    keywords=("weights", "reduction"),
    inputs=(*LABELLED_EMBEDDINGS, PROXIES),
    family=_FAMILY,
    aliases=("cos_face_loss", "cosface_loss", "large_margin_cosine", "lmcl"),
    options=(Option("margin", float, _NON_NEGATIVE, doc="additive cosine margin m"), _SCALE),
)
def cosface(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    proxies: torch.Tensor,
    *,
    margin: float = 0.35,
    scale: float = 64.0,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """CosFace (large margin cosine loss): softmax cross-entropy with a cosine margin on the target class.

    .. math::

        \\ell_i = -\\log \\frac{e^{s (\\cos\\theta_{i y_i} - m)}}{e^{s (\\cos\\theta_{i y_i} - m)} +
        \\sum_{c \\ne y_i} e^{s \\cos \\theta_{ic}}}

    Defaults m = 0.35, s = 64 (the paper and pytorch-metric-learning's ``CosFaceLoss``).

    Wang et al. (2018), "CosFace: Large Margin Cosine Loss for Deep Face Recognition".

    Args: ``embeddings`` [N, D], ``labels`` [N] in [0, C), ``proxies`` [C, D] (the class weights), ``weights`` [N].
    Returns a scalar, or [N] for ``reduction="none"``.
    """
    x, labels, p = _proxy_inputs(embeddings, labels, proxies, weights)
    return _cross_entropy(scale * _margin_logits(x, labels, p, "cosface", margin), labels, weights, reduction)


@register(
    "soft_triple",
    keywords=("weights", "reduction"),
    inputs=(*LABELLED_EMBEDDINGS, CENTERS),
    family=_FAMILY,
    aliases=("soft_triple_loss", "softtriple"),
    options=(
        Option("la", float, _POSITIVE, doc="scale λ of the class logits"),
        Option("gamma", float, _POSITIVE, doc="temperature γ of the softmax over a class's centres"),
        Option("margin", float, _NON_NEGATIVE, doc="margin δ on the target class"),
        Option("tau", float, _NON_NEGATIVE, doc="weight τ of the centre-merging regulariser"),
    ),
)
def soft_triple(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    centers: torch.Tensor,
    *,
    la: float = 20.0,
    gamma: float = 0.1,
    margin: float = 0.01,
    tau: float = 0.0,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """SoftTriple: softmax over classes whose similarity is a soft maximum over K centres per class.

    .. math::

        S_{ic} = \\sum_{k=1}^{K} \\frac{e^{s_{ick}/\\gamma}}{\\sum_{k'} e^{s_{ick'}/\\gamma}}\\, s_{ick}, \\qquad
        \\ell_i = -\\log \\frac{e^{\\lambda (S_{i y_i} - \\delta)}}{e^{\\lambda (S_{i y_i} - \\delta)} +
        \\sum_{c \\ne y_i} e^{\\lambda S_{ic}}} + \\tau\\, R, \\qquad
        R = \\frac{\\sum_{c} \\sum_{k < k'} \\sqrt{2 - 2\\, s(w_{ck}, w_{ck'})}}{C K (K - 1)}

    with :math:`s` cosine similarities. Defaults λ = 20, γ = 0.1, δ = 0.01 (the paper and pytorch-metric-learning's
    ``SoftTripleLoss``). The regulariser :math:`R` (which lets similar centres merge) follows the authors' code;
    its weight ``tau`` defaults to 0 as in pml (the paper used τ = 0.2). :math:`\\tau R` is a batch-level term:
    it is added to every row's value, so it enters "mean" once and "sum" N times. pml's ``fc`` of shape
    ``[D, C K]`` is ``centers.reshape(C * K, D).T`` (class-major).

    Qian, Shang, Sun, Hu, Li & Jin (2019), "SoftTriple Loss: Deep Metric Learning Without Triplet Sampling".

    Args: ``embeddings`` [N, D], ``labels`` [N] in [0, C), ``centers`` [C, K, D], ``weights`` [N]. Returns a scalar,
    or [N] for ``reduction="none"``.
    """
    x, labels, w = _proxy_inputs(embeddings, labels, centers, weights, name="centers", per_class_dims=2)
    c, k, _ = w.shape
    sims = torch.einsum("nd,ckd->nck", x, w)
    class_sims = (torch.softmax(sims / gamma, dim=2) * sims).sum(2)
    target = F.one_hot(labels, c).to(sims.dtype) if x.shape[0] else torch.zeros_like(class_sims)
    values = F.cross_entropy(la * (class_sims - margin * target), labels, reduction="none")
    if tau > 0 and k > 1:
        d2 = (2.0 - 2.0 * w @ w.transpose(1, 2)).clamp_min(0.0)
        upper = torch.triu(torch.ones(k, k, dtype=torch.bool, device=w.device), diagonal=1).expand(c, k, k)
        values = values + tau * safe_sqrt(d2, upper).sum() / (c * k * (k - 1))
    return reduce_loss(values, reduction, weights=weights)


def _whisker_filter(values: torch.Tensor, whisker: float) -> torch.Tensor:
    """The values inside Tukey's fences [Q1 - w IQR, Q3 + w IQR] (quartiles as the sorted values at 25 % / 75 %)."""
    n = values.shape[0]
    if n == 0:
        return values
    ordered = torch.sort(values.detach()).values
    q1, q3 = ordered[int(0.25 * n)], ordered[int(0.75 * n)]
    iqr = q3 - q1
    return values[(values >= q1 - whisker * iqr) & (values <= q3 + whisker * iqr)]


@register(
    "unpg",
    keywords=("weights", "reduction"),
    inputs=(*LABELLED_EMBEDDINGS, PROXIES),
    batch_coupled=True,
    family=_FAMILY,
    aliases=("unified_negative_pair_generation", "unpg_loss"),
    options=(
        Option("head", str, choices=("arcface", "cosface"), doc="margin form of the target logit"),
        Option("margin", float, Interval(0, math.pi / 2), none=True, doc="margin (None: 0.5 ArcFace, 0.35 CosFace)"),
        _SCALE,
        Option("whisker", float, _NON_NEGATIVE, doc="whisker w of the box-and-whisker filter"),
    ),
)
def unpg(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    proxies: torch.Tensor,
    *,
    head: str = "arcface",
    margin: float | None = None,
    scale: float = 64.0,
    whisker: float = 1.0,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""UNPG: a margin softmax whose denominator also holds the batch's filtered negative sample pairs.

    .. math::

        \ell_i = -\log \frac{e^{s\,\psi_{i y_i}}}{e^{s\,\psi_{i y_i}} + \sum_{c \ne y_i} e^{s \cos\theta_{ic}}
        + \sum_{t \in S_n'} e^{s\, t}}, \qquad
        S_n' = \{t \in S_n : Q_1 - w\,\mathrm{IQR} \le t \le Q_3 + w\,\mathrm{IQR}\}

    with :math:`\psi` the ArcFace or CosFace target logit (``head``), :math:`S_n` the cosine similarities of all
    negative sample pairs :math:`i < j, y_i \ne y_j` of the batch, and the box-and-whisker fences removing outlier
    pairs (quartiles taken as the sorted values at positions ⌊0.25 n⌋ and ⌊0.75 n⌋, as the authors' code). The
    same set :math:`S_n'` joins every row's denominator; gradients flow through it (not through the fences).
    Defaults: ArcFace, m = 0.5 (CosFace 0.35), s = 64, w = 1. Costs O(N^2) for the pair similarities.

    Jung, Jeong, Park, Jung & Lee (2022), "Unified Negative Pair Generation toward Well-discriminative Feature Space
    for Face Recognition".

    Args: ``embeddings`` [N, D], ``labels`` [N] in [0, C), ``proxies`` [C, D] (the class weights), ``weights`` [N].
    Returns a scalar, or [N] for ``reduction="none"``.
    """
    if margin is None:
        margin = 0.5 if head == "arcface" else 0.35
    x, labels, p = _proxy_inputs(embeddings, labels, proxies, weights)
    logits = scale * _margin_logits(x, labels, p, head, margin)
    n = x.shape[0]
    upper = torch.triu(labels[:, None] != labels[None, :], diagonal=1)
    extra = _whisker_filter((x @ x.T)[upper], whisker)
    lse = torch.logsumexp(logits, dim=1)
    if extra.numel():
        lse = torch.logaddexp(lse, torch.logsumexp(scale * extra, dim=0))
    target = logits.gather(1, labels[:, None]).squeeze(1) if n else lse
    return reduce_loss(lse - target, reduction, weights=weights)
