"""Metric-learning losses built on class structure: prototype triplets, nearest-neighbour class separability (ICNN),
the energy-confusion regulariser and Metrix's mixup of positives with negatives.

Each is ``f(embeddings [N, D], labels [N], ..., *, options...)`` like the labelled-batch losses of
:mod:`pairkit.losses.contrastive`; none builds an N x N x N tensor (the largest temporary is N x N, or N x C against
prototypes, and the energy-confusion term needs only O(N D)).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pairkit._spec import Input, Option
from pairkit.errors import InputError
from pairkit.losses._core import (
    AT_LEAST_ONE,
    LABELLED_EMBEDDINGS,
    NON_NEGATIVE,
    NORMALIZE,
    POSITIVE,
    REAL,
    REDUCTIONS,
    UNIT,
    Reduction,
    keyword,
    reduce_loss,
    register,
)
from pairkit.losses._embeddings import check_matrix, check_triplets, labelled_rows, reduce_pairs, safe_sqrt

__all__ = ["energy_confusion", "icnn_loss", "metrix", "metrix_mix_inputs", "proto_triplet"]

_FAMILY = "contrastive"
_UNMASKED = ("weights", "reduction")
PROTOTYPES = Input("prototypes", "proxies", "[classes, dim]", doc="one prototype (e.g. a support class mean) per class")


def _distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances [A, B] with a zero (not NaN) gradient where two rows coincide."""
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return safe_sqrt(d2)


# ----------------------------------------------------------------------------------------- proto-triplet


@register(
    "proto_triplet",
    keywords=_UNMASKED,
    inputs=(*LABELLED_EMBEDDINGS, PROTOTYPES),
    family=_FAMILY,
    aliases=("proto_triplet_loss", "prototype_triplet", "prototype_triplet_loss"),
    options=(Option("margin", float, NON_NEGATIVE, doc="margin m"), NORMALIZE),
)
def proto_triplet(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    prototypes: torch.Tensor,
    *,
    margin: float = 0.5,
    normalize: bool = False,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Proto-Triplet loss: each query must be nearer its own class prototype than any other prototype, by a margin.

    .. math::

        \\ell_i = \\big[\\lVert x_i - p_{y_i} \\rVert - \\min_{c \\ne y_i} \\lVert x_i - p_c \\rVert + m\\big]_+

    with :math:`p_c` the prototype of class :math:`c` (in few-shot episodes the mean of the support embeddings of
    class :math:`c`, e.g. from :func:`pairkit.losses.class_centroids`; pass them with their gradient to train the
    support side too). Euclidean distances of the raw embeddings as in the paper (``normalize=False``); default
    margin 0.5 as the authors' code. A query of an episode with a single class has no negative prototype and gives 0.

    Mendez-Ruiz, Gonzalez-Zapata, Reyes-Amezcua, Flores-Araiza, Lopez-Tiro, Mendez-Vazquez & Ochoa-Ruiz (2023),
    "SuSana Distancia is all you need: Enforcing class separability in metric learning via two novel
    distance-based loss functions for few-shot image classification".

    Args: ``embeddings`` (queries) [N, D], ``labels`` [N] in [0, C), ``prototypes`` [C, D], ``weights`` [N]. Returns a
    scalar, or [N] for ``reduction="none"``.
    """
    x, labels = labelled_rows(embeddings, labels, weights, False)
    check_matrix("prototypes", prototypes, x.shape[1])
    c = prototypes.shape[0]
    if labels.is_floating_point():
        raise InputError(f"labels must be integer class indices (rows of prototypes), got dtype {labels.dtype}")
    bad = (labels < 0) | (labels >= c)
    if bool(bad.any()):
        row = int(torch.nonzero(bad)[0])
        raise InputError(
            f"labels must index rows of prototypes (0 <= label < {c}); row {row} has label {int(labels[row])}"
        )
    p = prototypes
    if normalize:
        x, p = F.normalize(x, dim=1), F.normalize(p, dim=1)
    d = _distances(x, p.to(x.dtype))  # [N, C]
    own = F.one_hot(labels.long(), c).bool() if x.shape[0] else torch.zeros_like(d, dtype=torch.bool)
    d_pos = torch.where(own, d, torch.zeros_like(d)).sum(1)
    has_neg = (~own).any(1)
    d_neg = d.masked_fill(own, float("inf")).amin(1) if c > 1 else d_pos
    values = torch.where(has_neg, F.relu(d_pos - torch.where(has_neg, d_neg, d_pos) + margin), torch.zeros_like(d_pos))
    return reduce_loss(values, reduction, weights=weights)


# --------------------------------------------------------------------------------------------------- ICNN


@register(
    "icnn_loss",
    keywords=(),
    inputs=LABELLED_EMBEDDINGS,
    batch_coupled=True,
    family=_FAMILY,
    aliases=("icnn", "icnn_score_loss"),
    options=(
        Option("k", int, AT_LEAST_ONE, doc="neighbours scored per sample"),
        Option("ipc", int, AT_LEAST_ONE, none=True, doc="neighbours searched for the nearest other class (None: k+1)"),
    ),
)
def icnn_loss(embeddings: torch.Tensor, labels: torch.Tensor, *, k: int = 4, ipc: int | None = None) -> torch.Tensor:
    """ICNN loss: minus the log of the inter- and intra-class nearest-neighbour score of the batch.

    For each sample :math:`i` take its :math:`K` = ``ipc`` nearest other samples (Euclidean distances
    :math:`d_{ij}`, ascending, the sample itself excluded by index), of which the first :math:`k` are scored;
    :math:`s_{ij} = [y_j = y_i]`. With :math:`\\nu_i` the distance to the nearest of the :math:`K` neighbours of
    another class:

    .. math::

        \\tilde d_{ij} = \\frac{d_{ij} / \\nu_i}{\\max(1, \\max_{j' \\le k} d_{ij'} / \\nu_i)},\\quad
        \\lambda_{sc} = 1 - \\operatorname{mean}_{i: \\exists s_{ij}} \\frac{\\sum_{j \\le k} s_{ij} \\tilde d_{ij}}
        {\\sum_{j \\le k} s_{ij}},\\quad
        \\lambda_{dc} = \\operatorname{mean}_{i: \\exists \\bar s_{ij}} \\frac{\\sum_{j \\le k} \\bar s_{ij}
        d_{ij} / D}{\\sum_{j \\le k} \\bar s_{ij}}

    with :math:`\\bar s = 1 - s` and :math:`D` the largest scored other-class distance of the batch
    (:math:`\\lambda_{dc} = 1` when no scored neighbour is of another class, :math:`\\tilde d_{ij} = 0` when none of the
    :math:`K` is); :math:`\\gamma = \\operatorname{mean}_i \\frac1k \\sum_{j \\le k} s_{ij}`, and

    .. math::

        \\mathcal{L} = -\\log\\Big(\\frac{(\\lambda_{sc} + \\lambda_{dc})/2 + \\gamma}{2}\\Big)

    The score rewards near same-class and far other-class neighbours. This follows the authors' ``modified_score``
    (k = 4, K = k + 1; for N <= k + 2 the code uses k = N - 2 and γ = 1), with their 1e-6/1e-7 guards replaced by
    exact divisions where defined (the readings where the paper is silent). The score is a batch quantity, so there
    is no ``reduction``; fewer than 3 rows give 0. The neighbour search is O(N^2) memory (one N x N distance matrix).

    Mendez-Ruiz et al. (2023), "SuSana Distancia is all you need: Enforcing class separability in metric learning
    via two novel distance-based loss functions for few-shot image classification" (ICNN loss, after García
    Ramírez's ICNN score).

    Args: ``embeddings`` [N, D], ``labels`` [N]. Returns a scalar.
    """
    x, labels = labelled_rows(embeddings, labels, None, False)
    n = x.shape[0]
    if n < 3:
        return x.sum() * 0
    gamma_one = k + 2 >= n
    k = n - 2 if gamma_one else k
    big_k = min(k + 1 if ipc is None else max(ipc, k), n - 1)
    d_all = _distances(x, x)
    eye = torch.eye(n, dtype=torch.bool, device=x.device)
    d_search = d_all.detach().masked_fill(eye, float("inf"))
    idx = torch.topk(d_search, big_k, dim=1, largest=False).indices  # [N, K] (selection only, no gradient)
    d = torch.gather(d_all, 1, idx)
    same = labels[idx] == labels[:, None]
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    other = ~same
    has_other = other.any(1)
    nu = torch.where(other, d, torch.full_like(d, float("inf"))).amin(1)
    nu = torch.where(has_other, nu, torch.ones_like(nu))
    ratio = torch.where(has_other[:, None], d / nu[:, None], zero)[:, :k]
    ratio = ratio / torch.clamp(ratio.amax(1, keepdim=True), min=1.0)
    same_k, other_k, d_k = same[:, :k], other[:, :k], d[:, :k]
    n_same, n_other = same_k.sum(1), other_k.sum(1)
    rows_same, rows_other = n_same > 0, n_other > 0
    sc_mean = torch.where(same_k, ratio, zero).sum(1) / n_same.clamp_min(1)
    lam_sc = 1.0 - sc_mean.sum() / rows_same.sum().clamp_min(1)
    if bool(other_k.any()):
        d_other = torch.where(other_k, d_k, zero)
        d_other = d_other / d_other.amax().clamp_min(torch.finfo(x.dtype).tiny)
        lam_dc = (d_other.sum(1) / n_other.clamp_min(1)).sum() / rows_other.sum()
    else:
        lam_dc = torch.ones((), dtype=x.dtype, device=x.device)
    gamma = torch.ones_like(lam_dc) if gamma_one else (n_same.to(x.dtype) / k).mean()
    return -torch.log(((lam_sc + lam_dc) / 2 + gamma) / 2)


# --------------------------------------------------------------------------------------- energy confusion


def _class_sums(x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each row: the sum of the rows of its class, the sum of their squared norms and the class size."""
    _, inverse = torch.unique(labels, return_inverse=True)
    k = int(inverse.max()) + 1 if inverse.numel() else 0
    sq = (x * x).sum(1)
    s = x.new_zeros(k, x.shape[1]).index_add(0, inverse, x)
    q = x.new_zeros(k).index_add(0, inverse, sq)
    c = torch.bincount(inverse, minlength=k).to(x.dtype)
    return s[inverse], q[inverse], c[inverse]


@register(
    "energy_confusion",
    keywords=_UNMASKED,
    inputs=LABELLED_EMBEDDINGS,
    batch_coupled=True,
    family=_FAMILY,
    aliases=("energy_confusion_loss", "ecaml", "ec_loss"),
    options=(
        Option("normalize", bool, doc="L2-normalise the embeddings first (the authors' release does not)"),
        Option("log", bool, doc="return log E, the objective the release's backward pass differentiates (mean only)"),
    ),
)
def energy_confusion(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    normalize: bool = False,
    log: bool = False,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Energy-confusion regulariser (ECAML): the mean energy of the pairs of different classes, to be minimised.

    .. math::

        E = \\frac{1}{|\\mathcal{N}|} \\sum_{(i, j) \\in \\mathcal{N}}
        \\tfrac12 \\lVert x_i - x_j \\rVert_2^2, \\qquad \\mathcal{N} = \\{(i, j): y_i \\ne y_j\\},
        \\qquad \\mathcal{L}_{EC} = E \\ \\text{or} \\ \\log E

    Minimising it pulls the classes together, "confusing" the metric so that it cannot rely on the few easiest
    attributes of the seen classes; it is trained against the metric loss (adversarially) with a small weight.

    Checked against the authors' release (``chenbinghui1/ECAML``, Caffe): ``src/energy_confusion.cpp`` sums
    :math:`\\tfrac12\\lVert x_i - x_j\\rVert^2` over negative pairs and divides by the number of negative pairs
    of the batch (it samples ``random_num`` = 10 partners per anchor; here every negative pair counts), and its
    backward pass scales the gradient by :math:`1/E`, i.e. it descends :math:`\\log E` (``log=True``; the value
    :math:`E` is what it reports). ``examples/car/train_confusion.prototxt`` applies it, with loss weight 0.13, to
    the raw output of a copy of the embedding layer that shares its weights and does not propagate to the
    backbone (``propagate_down: 0``): the term moves the embedding layer only, and the embeddings are not
    normalised (``normalize=False``, the default). To reproduce that split, compute the embeddings for this term
    from detached backbone features. "none" gives each anchor's sum over its negative pairs (adding up to
    "sum"); "mean" divides by the number of ordered negative pairs (the same mean as over unordered ones).

    Computed through per-class sums in O(N D) time and memory (no N x N matrix): for row :math:`i`,
    :math:`\\sum_{j \\in \\mathcal N_i} \\lVert x_i - x_j \\rVert^2 = |\\mathcal N_i| \\lVert x_i \\rVert^2 +
    \\sum_{j \\in \\mathcal N_i} \\lVert x_j \\rVert^2 - 2 x_i^\\top \\sum_{j \\in \\mathcal N_i} x_j`.

    Chen & Deng (2019), "Energy Confused Adversarial Metric Learning for Zero-Shot Image Retrieval and Clustering"
    (AAAI).

    Args: ``embeddings`` [N, D], ``labels`` [N], ``weights`` [N] (per anchor). Returns a scalar or [N].
    """
    if reduction not in REDUCTIONS:
        raise InputError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if log and reduction != "mean":
        raise InputError(f"log=True gives log E of the batch mean: it needs reduction='mean', got {reduction!r}")
    x, labels = labelled_rows(embeddings, labels, weights, normalize)
    n = x.shape[0]
    if n == 0:
        return reduce_loss(x.sum(1), reduction, weights=weights)
    cls_sum, cls_sq, cls_n = _class_sums(x, labels)
    sq = (x * x).sum(1)
    n_neg = n - cls_n
    neg_sum = x.sum(0, keepdim=True) - cls_sum
    neg_sq = sq.sum() - cls_sq
    per_anchor = 0.5 * (n_neg * sq + neg_sq - 2.0 * (x * neg_sum).sum(1)).clamp_min(0.0)
    if reduction == "none":
        return reduce_loss(per_anchor, "none", weights=weights)
    w = None if weights is None else torch.as_tensor(weights, dtype=x.dtype, device=x.device).expand(n)
    total = per_anchor.sum() if w is None else (w * per_anchor).sum()
    if reduction == "sum":
        return total
    denom = n_neg.sum() if w is None else (w * n_neg).sum()
    energy = torch.where(denom > 0, total / denom.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(total))
    if not log:
        return energy
    # no negative pair (or zero energy): 0 with zero gradient rather than log 0 = -inf
    positive = energy > 0
    return torch.where(positive, torch.log(torch.where(positive, energy, torch.ones_like(energy))), energy * 0)


# -------------------------------------------------------------------------------------------------- Metrix


@register(
    "metrix",
    keywords=_UNMASKED,
    inputs=(
        *LABELLED_EMBEDDINGS,
        keyword("mixed_embeddings", "embeddings", "[mixtures, dim]",
                doc="the encoder's embeddings of input-level mixtures (metrix_mix_inputs); needs pairs"),  # fmt: skip
    ),
    batch_coupled=True,
    family=_FAMILY,
    aliases=("metrix_loss", "metric_mixup", "embedding_mixup"),
    options=(
        Option("lam", float, UNIT, doc="mixing factor λ of the positive (draw it from Beta(α, α) per step)"),
        Option("base", str, choices=("contrastive", "multi_similarity"), doc="metric loss generalised to mixtures"),
        Option("pairs", tuple, none=True, doc="(anchors, positives, negatives) index tensors to mix (None: hardest)"),
        Option("pos_margin", float, NON_NEGATIVE, doc="contrastive: distance within which positives are free"),
        Option("neg_margin", float, NON_NEGATIVE, doc="contrastive: distance beyond which negatives are free"),
        Option("alpha", float, POSITIVE, doc="multi-similarity: scale α of the positive term"),
        Option("beta", float, POSITIVE, doc="multi-similarity: scale β of the negative term"),
        Option("similarity_offset", float, REAL, doc="multi-similarity: similarity offset λ_ms"),
    ),
)
def metrix(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    lam: float = 0.5,
    base: str = "contrastive",
    pairs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    mixed_embeddings: torch.Tensor | None = None,
    pos_margin: float = 0.0,
    neg_margin: float = 1.0,
    alpha: float = 2.0,
    beta: float = 50.0,
    similarity_offset: float = 0.5,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Metrix (embedding mixup for metric learning): a metric loss on mixtures of a positive and a negative.

    For anchor :math:`a` with positive :math:`p` and negative :math:`n`, the mixed embedding
    :math:`v = \\operatorname{norm}(\\lambda \\hat x_p + (1 - \\lambda) \\hat x_n)` has the interpolated target
    :math:`\\lambda` ("how positive" it is for :math:`a`), and the loss splits its positive and negative terms by
    it. For the contrastive loss (``base="contrastive"``, :func:`~pairkit.losses.contrastive` with
    :math:`d` the Euclidean distance of normalised embeddings)

    .. math::

        \\tilde\\ell_a = \\lambda\\,[d(a, v) - m_+]_+ + (1 - \\lambda)\\,[m_- - d(a, v)]_+

    and for multi-similarity (``base="multi_similarity"``, cosine :math:`s`)

    .. math::

        \\tilde\\ell_a = \\frac{1}{\\alpha}\\log\\Big(1 + \\sum_v \\lambda e^{-\\alpha (s_{av} - \\lambda_{ms})}\\Big)
        + \\frac{1}{\\beta}\\log\\Big(1 + \\sum_v (1 - \\lambda) e^{\\beta (s_{av} - \\lambda_{ms})}\\Big)

    The paper's objective is the clean loss plus a weighted mixed loss; this function is the mixed term only (add
    it to :func:`~pairkit.losses.contrastive` or :func:`~pairkit.losses.multi_similarity` on the clean batch, with
    the weight w). Readings taken: mixing at the embedding level (the paper also mixes inputs and features — do
    that in the model); one mixture per anchor, of its hardest positive (farthest) with its hardest negative
    (nearest), so memory stays O(N D) — the authors' code mixes an anchor's positive with each of its negatives,
    which ``pairs=(anchors, positives, negatives)`` reproduces in O(T D) for T mixtures; λ shared by the batch
    (sample it from Beta(2, 2) per step, as their code; their contrastive variant uses the negative margin 0.5).
    λ = 1 gives the base loss's positive term on the hardest positive and λ = 0 its negative term on the
    hardest negative. Anchors without a positive or a negative are left out. "none" gives each anchor's sum over its
    mixtures.

    **Input-level mixup** (the paper's input mixup, for any encoder): :func:`metrix_mix_inputs` mixes the inputs
    :math:`\\tilde x = \\lambda x_p + (1 - \\lambda) x_n` (and returns the ``pairs`` it mixed); pass the encoder's
    embeddings of :math:`\\tilde x` as ``mixed_embeddings`` [T, D] with those ``pairs``, and :math:`v` is their
    normalised row instead of the embedding mixture (the target of mixture :math:`t` for its anchor is still
    :math:`\\lambda`; the positive and negative indices only say which rows were mixed).

    Venkataramanan, Psomas, Kijak, Amsaleg, Karantzalos & Avrithis (2022), "It Takes Two to Tango: Mixup for Deep
    Metric Learning".

    Args: ``embeddings`` [N, D], ``labels`` [N], ``weights`` [N] (per anchor), ``mixed_embeddings`` [T, D] with
    ``pairs`` of length T. Returns a scalar or [N].
    """
    x, labels = labelled_rows(embeddings, labels, weights, True)
    n = x.shape[0]
    if mixed_embeddings is not None:
        if pairs is None:
            raise InputError("mixed_embeddings needs the pairs that were mixed (metrix_mix_inputs returns them)")
        check_matrix("mixed_embeddings", mixed_embeddings)
        if mixed_embeddings.shape[1] != x.shape[1]:
            raise InputError(f"mixed_embeddings must have {x.shape[1]} columns (the embeddings' dim), got "
                             f"{list(mixed_embeddings.shape)}")  # fmt: skip
    if n == 0:
        return reduce_loss(x.sum(1), reduction, weights=weights)
    if pairs is not None:
        a, p, q = (i.to(x.device) for i in check_triplets(pairs, n))
    else:
        sims = (x @ x.T).detach()
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(n, dtype=torch.bool, device=x.device)
        pos, neg = same & ~eye, ~same
        valid = pos.any(1) & neg.any(1)
        a = torch.nonzero(valid).flatten()
        p = sims.masked_fill(~pos, float("inf")).argmin(1)[a]
        q = sims.masked_fill(~neg, float("-inf")).argmax(1)[a]
    if mixed_embeddings is not None:
        if mixed_embeddings.shape[0] != a.shape[0]:
            raise InputError(f"mixed_embeddings has {mixed_embeddings.shape[0]} rows but pairs has {a.shape[0]} "
                             "mixtures: one row per mixture")  # fmt: skip
        v = F.normalize(mixed_embeddings.to(x.dtype), dim=1)
    else:
        v = F.normalize(lam * x[p] + (1.0 - lam) * x[q], dim=1) if a.numel() else x[p]
    s = (x[a] * v).sum(1)
    if base == "contrastive":
        d = safe_sqrt((2.0 - 2.0 * s).clamp_min(0.0))
        values = lam * F.relu(d - pos_margin) + (1.0 - lam) * F.relu(neg_margin - d)
        return reduce_pairs(values, a, n, weights, reduction)
    # multi-similarity: one log-sum-exp per anchor over its mixtures (segments of the pair list, O(N + T) memory)
    terms = []
    for share, scale in ((lam, -alpha), (1.0 - lam, beta)):
        if share <= 0:
            terms.append(x.new_zeros(n))
            continue
        lse, has = _segment_logsumexp(math.log(share) + scale * (s - similarity_offset), a, n)
        terms.append(torch.where(has, F.softplus(lse), torch.zeros_like(lse)) / abs(scale))
    has = torch.zeros(n, dtype=torch.bool, device=x.device).index_fill(0, a, True)
    return reduce_loss(terms[0] + terms[1], reduction, mask=has, weights=weights)


def metrix_mix_inputs(
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    lam: float,
    pairs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    embeddings: torch.Tensor | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Metrix's input mixup: mix each chosen positive with a negative of its anchor, for any encoder.

    .. math::

        \\tilde x_t = \\lambda\\, x_{p_t} + (1 - \\lambda)\\, x_{n_t}

    for the mixtures :math:`t` given by ``pairs`` = (anchors, positives, negatives) index tensors (e.g. from a miner,
    or every negative of each anchor as the authors' code), or else one per anchor: its farthest positive and
    nearest negative by cosine similarity of ``embeddings`` (the clean batch's, no gradient), the pairs
    :func:`metrix` picks by itself. The mixture's label, relative to its anchor, is :math:`\\lambda` (how positive
    it is). Embed the returned inputs with the same encoder and pass them to :func:`metrix` as
    ``mixed_embeddings`` with the returned ``pairs``; add that to the clean-batch loss with a weight, as the paper.
    Mixing interpolates the input values, so it suits continuous inputs (images, features, or a text model's input
    embeddings), not token ids. Anchors without a positive or a negative get no mixture.

    Venkataramanan, Psomas, Kijak, Amsaleg, Karantzalos & Avrithis (2022), "It Takes Two to Tango: Mixup for Deep
    Metric Learning" (ICLR), input mixup.

    Args: ``inputs`` [N, ...] floating point; ``labels`` [N]; ``lam`` in [0, 1]; ``embeddings`` [N, D] (when
    ``pairs`` is None). Returns the mixed inputs [T, ...] and ``(anchors, positives, negatives)`` [T] each.

    >>> import torch
    >>> from pairkit.losses import metrix_mix_inputs
    >>> x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> mixed, (a, p, n) = metrix_mix_inputs(x, torch.tensor([0, 0, 1]), lam=0.25, pairs=([0], [1], [2]))
    >>> mixed
    tensor([[0.2500, 0.7500]])
    """
    if not (isinstance(inputs, torch.Tensor) and inputs.is_floating_point()) or inputs.ndim < 1:
        raise InputError("inputs must be a floating-point tensor [N, ...] (mix token ids at the embedding level)")
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0.0 <= lam <= 1.0:
        raise InputError(f"lam must be a number in [0, 1], got {lam!r}")
    n = inputs.shape[0]
    y = torch.as_tensor(labels, device=inputs.device)
    if y.shape != (n,):
        raise InputError(f"labels must have shape [N] = [{n}], got {list(y.shape)}")
    if pairs is not None:
        a, p, q = (i.to(inputs.device) for i in check_triplets(pairs, n))
    else:
        if embeddings is None:
            raise InputError("give pairs (anchors, positives, negatives) or the clean batch's embeddings to pick them")
        check_matrix("embeddings", embeddings)
        if embeddings.shape[0] != n:
            raise InputError(f"embeddings must have one row per input ({n}), got {list(embeddings.shape)}")
        z = F.normalize(embeddings.detach().to(torch.float64), dim=1)
        sims = z @ z.T
        same = y[:, None] == y[None, :]
        eye = torch.eye(n, dtype=torch.bool, device=z.device)
        pos, neg = same & ~eye, ~same
        a = torch.nonzero(pos.any(1) & neg.any(1)).flatten()
        p = sims.masked_fill(~pos, float("inf")).argmin(1)[a]
        q = sims.masked_fill(~neg, float("-inf")).argmax(1)[a]
    return lam * inputs[p] + (1.0 - lam) * inputs[q], (a, p, q)


def _segment_logsumexp(values: torch.Tensor, index: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-segment log-sum-exp of ``values`` grouped by ``index`` in [0, n), and which segments are non-empty
    (empty ones give 0 with a zero gradient)."""
    has = torch.zeros(n, dtype=torch.bool, device=values.device).index_fill(0, index, True)
    peak = values.new_full((n,), float("-inf")).scatter_reduce(0, index, values.detach(), "amax")
    peak = torch.where(has, peak, torch.zeros_like(peak))
    sums = values.new_zeros(n).index_add(0, index, torch.exp(values - peak[index]))
    lse = torch.log(torch.where(has, sums, torch.ones_like(sums))) + peak
    return torch.where(has, lse, torch.zeros_like(lse)), has
