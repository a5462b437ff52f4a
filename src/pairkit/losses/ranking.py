"""Learning-to-rank losses over scored lists (torch).

Every loss takes ``scores`` and ``labels`` of shape ``[..., list]``: the last axis is one list (the documents
of one query), leading axes are batch axes. ``mask`` (bool, broadcastable to ``[..., list]``) marks the valid
entries of ragged lists padded to a common length; masked entries never influence the value or the gradient,
whatever their scores or labels hold (no sentinel padding values). ``weights`` (broadcastable to ``[...]``)
weight whole lists.

``reduction="none"`` returns one value per list, shape ``[...]``; ``"sum"`` their weighted sum; ``"mean"``
their weighted mean over the lists that carry a training signal: for pointwise and listwise losses lists with
a valid entry, for pairwise losses lists with a valid pair, for NDCG-based losses and the normalised softmax
loss lists with a positive ideal DCG (resp. label sum). Lists without a signal are 0 and never NaN.

The losses are built from a few small cores, as in Rax (Jagerman et al., 2022, "Rax: Composable
Learning-to-Rank using JAX"): :func:`pairwise_ranking_loss` applies any function of score differences to the
pairs ``y_i > y_j`` with optional pair weights (RankNet, hinge, soft zero-one and the LambdaLoss family are
instances), a masked log-softmax serves the listwise cross-entropies, and the torch DCG helpers serve the
NDCG surrogates. Definitions follow allRank (allegro/allRank, ``allrank/models/losses/*.py``) where it
implements the method; differences are stated in the docstrings.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

from pairkit._spec import Input, Interval, Option
from pairkit.errors import InputError
from pairkit.losses._checks import prepare_lists
from pairkit.losses._core import (
    GAIN,
    NON_NEGATIVE,
    POSITIVE,
    RANKED_LISTS,
    TEMPERATURE,
    TOP_K,
    Reduction,
    check_broadcastable,
    check_same_shape,
    keyword,
    reduce_loss,
    register,
)

_SIGMA = Option("sigma", float, POSITIVE, doc="slope σ of the pair sigmoid")
_LAMBDA_OPTIONS = (TOP_K, _SIGMA, GAIN)

__all__ = [
    "approx_ndcg_loss",
    "dcg_discounts",
    "ideal_dcg",
    "lambda_loss",
    "lambdarank_loss",
    "lambdarank_weights",
    "listmle_loss",
    "listnet_loss",
    "margin_mse_loss",
    "ndcg_loss2",
    "ndcg_loss2_weights",
    "ndcg_loss2pp_weights",
    "neural_ndcg_loss",
    "neural_sort",
    "pairwise_hinge_loss",
    "pairwise_logistic_loss",
    "pairwise_ranking_loss",
    "pairwise_soft_zero_one_loss",
    "pointwise_mse_loss",
    "pointwise_sigmoid_loss",
    "poly1_softmax_loss",
    "relevance_gains",
    "sinkhorn_scaling",
    "softmax_loss",
    "thurstone_fidelity_loss",
]

Gain = Literal["exp2", "linear"]
_LN2 = math.log(2.0)


# ------------------------------------------------------------------------------------------ input handling


def _check_nonnegative(labels: torch.Tensor, mask: torch.Tensor, name: str = "labels") -> None:
    bad = mask & (labels < 0)
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0])
        raise InputError(
            f"{name} must be non-negative relevance grades for this loss; {name}{list(idx)} = "
            f"{labels[idx].item()}. Shift or clip the grades to >= 0."
        )


def _reduce_lists(per_list, *, valid, weights, reduction: Reduction) -> torch.Tensor:
    check_broadcastable("weights", None if weights is None else torch.as_tensor(weights), per_list.shape)
    return reduce_loss(per_list, reduction, mask=valid, weights=weights)


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``den > 0``, else 0 (with zero gradient)."""
    pos = den > 0
    return torch.where(pos, num / torch.where(pos, den, torch.ones_like(den)), torch.zeros_like(num))


def _pair_diff(x: torch.Tensor) -> torch.Tensor:
    """``out[..., i, j] = x[..., i] - x[..., j]``."""
    return x.unsqueeze(-1) - x.unsqueeze(-2)


def _pair_and(mask: torch.Tensor) -> torch.Tensor:
    return mask.unsqueeze(-1) & mask.unsqueeze(-2)


def _upper_pairs(mask: torch.Tensor) -> torch.Tensor:
    """Valid unordered pairs ``i < j`` (each pair once)."""
    n = mask.shape[-1]
    upper = torch.ones(n, n, dtype=torch.bool, device=mask.device).triu(1)
    return _pair_and(mask) & upper


def _pairs_reduce(values, pairs, pair_weights, *, normalize: bool) -> torch.Tensor:
    """Per-list (weighted) sum or mean of pair ``values`` over the boolean ``pairs``."""
    w = pairs.to(values.dtype) if pair_weights is None else torch.where(pairs, pair_weights, 0.0)
    total = (torch.where(pairs, values, torch.zeros_like(values)) * w).sum((-2, -1))
    return _safe_div(total, w.sum((-2, -1))) if normalize else total


def _masked_log_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # finfo.min rather than -inf keeps an all-masked list finite (uniform) instead of NaN, also in backward.
    x = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.where(mask, torch.log_softmax(x, dim=-1), torch.zeros_like(scores))


def _rank_order(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """0-based positions of the items when sorted by descending score, masked items last.

    Ties keep list order (stable sort), so the ordering is deterministic.
    """
    key = scores.detach().masked_fill(~mask, -math.inf)
    order = torch.sort(key, dim=-1, descending=True, stable=True).indices
    return torch.argsort(order, dim=-1)


# ------------------------------------------------------------------------------------- DCG in torch


def relevance_gains(labels: torch.Tensor, gain: Gain = "exp2") -> torch.Tensor:
    """Gain of relevance grades: ``2**y - 1`` (``"exp2"``, Burges et al. 2005) or ``y`` (``"linear"``)."""
    if gain == "exp2":
        return torch.exp2(labels) - 1.0
    if gain == "linear":
        return labels
    raise InputError(f"gain must be 'exp2' or 'linear'; got {gain!r}")


def dcg_discounts(n: int, *, k: int | None = None, dtype=None, device=None) -> torch.Tensor:
    """Position discounts ``1 / log2(r + 2)`` for 0-based ranks ``r < n``; 0 beyond rank ``k``."""
    r = torch.arange(n, dtype=dtype or torch.get_default_dtype(), device=device)
    disc = 1.0 / torch.log2(r + 2.0)
    if k is not None:
        disc = torch.where(r < k, disc, torch.zeros_like(disc))
    return disc


def ideal_dcg(labels, *, mask=None, k: int | None = None, gain: Gain = "exp2") -> torch.Tensor:
    r"""Ideal (maximum) DCG@k of each list, torch version of :func:`pairkit.metrics.ideal_dcg`.

    .. math::
        \mathrm{IDCG@k} = \sum_{r=1}^{k} \frac{g(y_{(r)})}{\log_2(r + 1)}, \quad y_{(1)} \ge y_{(2)} \ge \dots

    Järvelin & Kekäläinen (2002), "Cumulated gain-based evaluation of IR techniques".
    ``labels``: ``[..., list]`` non-negative grades; returns ``[...]``.
    """
    labels = torch.as_tensor(labels)
    if not labels.is_floating_point():
        labels = labels.to(torch.get_default_dtype())
    mask = torch.ones_like(labels, dtype=torch.bool) if mask is None else torch.as_tensor(mask).expand(labels.shape)
    gains = torch.where(mask, relevance_gains(labels, gain), torch.zeros_like(labels))
    best = torch.sort(gains, dim=-1, descending=True).values
    return (best * dcg_discounts(labels.shape[-1], k=k, dtype=labels.dtype, device=labels.device)).sum(-1)


# ------------------------------------------------------------------------------------------- pointwise


@register(
    "pointwise_sigmoid_loss",
    inputs=RANKED_LISTS,
    family="ranking",
    aliases=("pointwise_sigmoid",),
    options=(Option("max_label", float, POSITIVE, doc="the highest relevance grade (labels are divided by it)"),),
)
def pointwise_sigmoid_loss(
    scores, labels, *, max_label: float = 1.0, mask=None, weights=None, reduction: Reduction = "mean"
) -> torch.Tensor:
    r"""Pointwise sigmoid cross-entropy with graded labels scaled to ``[0, 1]``.

    .. math::
        \ell(s, y) = \frac{1}{n}\sum_i -\tilde y_i \log\sigma(s_i) - (1 - \tilde y_i)\log(1 - \sigma(s_i)),
        \qquad \tilde y_i = y_i / y_{\max}

    The classical pointwise baseline (e.g. Burges et al., 2005, "Learning to rank using gradient descent",
    as a comparison; Rax ``pointwise_sigmoid_loss``). Unlike Rax, graded labels are scaled by ``max_label``
    (pass the top grade, e.g. 4 for LETOR) rather than binarised. ``scores``, ``labels``: ``[..., list]``;
    the per-list value is the mean over valid entries.
    """
    scores, labels, mask = prepare_lists(scores, labels, mask)
    targets = labels / max_label
    bad = mask & ((targets < 0) | (targets > 1))
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0])
        raise InputError(
            f"labels / max_label must lie in [0, 1]; labels{list(idx)} = {labels[idx].item()} with "
            f"max_label={max_label}. Pass max_label= the highest relevance grade."
        )
    item = F.binary_cross_entropy_with_logits(scores, targets, reduction="none")
    per_list = _safe_div(torch.where(mask, item, 0.0).sum(-1), mask.sum(-1).to(scores.dtype))
    return _reduce_lists(per_list, valid=mask.any(-1), weights=weights, reduction=reduction)


@register("pointwise_mse_loss", inputs=RANKED_LISTS, family="ranking", aliases=("pointwise_mse",))
def pointwise_mse_loss(scores, labels, *, mask=None, weights=None, reduction: Reduction = "mean") -> torch.Tensor:
    r"""Pointwise squared error between scores and relevance labels (regression baseline).

    .. math::
        \ell(s, y) = \frac{1}{n}\sum_i (s_i - y_i)^2

    Fuhr (1989), "Optimum polynomial retrieval functions based on the probability ranking principle"
    (least-squares relevance regression). ``scores``, ``labels``: ``[..., list]``; per-list mean over valid
    entries.
    """
    scores, labels, mask = prepare_lists(scores, labels, mask)
    per_list = _safe_div(torch.where(mask, (scores - labels) ** 2, 0.0).sum(-1), mask.sum(-1).to(scores.dtype))
    return _reduce_lists(per_list, valid=mask.any(-1), weights=weights, reduction=reduction)


# -------------------------------------------------------------------------------------------- pairwise


def pairwise_ranking_loss(
    scores,
    labels,
    *,
    pair_loss: Callable[[torch.Tensor], torch.Tensor],
    pair_weights: torch.Tensor | None = None,
    normalize: bool = True,
    mask=None,
    weights=None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Generic pairwise loss: ``pair_loss`` of score differences over the pairs with ``y_i > y_j``.

    .. math::
        \ell(s, y) = \frac{1}{Z}\sum_{i,j:\, y_i > y_j} w_{ij}\, \phi(s_i - s_j), \qquad
        Z = \sum_{i,j:\, y_i > y_j} w_{ij}\ (\texttt{normalize}) \text{ or } 1

    The composable core of Rax (Jagerman et al., 2022, "Rax: Composable Learning-to-Rank using JAX").
    ``scores``, ``labels``: ``[..., list]``; ``pair_loss`` maps ``[..., list, list]`` differences
    ``s_i - s_j`` elementwise to losses; ``pair_weights``: ``[..., list, list]`` (default 1).
    """
    scores, labels, mask = prepare_lists(scores, labels, mask)
    pairs = _pair_and(mask) & (_pair_diff(labels) > 0)
    per_list = _pairs_reduce(pair_loss(_pair_diff(scores)), pairs, pair_weights, normalize=normalize)
    return _reduce_lists(per_list, valid=pairs.any((-2, -1)), weights=weights, reduction=reduction)


@register(
    "pairwise_logistic_loss",
    inputs=RANKED_LISTS,
    family="ranking",
    aliases=("pairwise_logistic", "rank_net", "ranknet"),
    options=(_SIGMA,),
)
def pairwise_logistic_loss(
    scores, labels, *, sigma: float = 1.0, mask=None, weights=None, reduction: Reduction = "mean"
) -> torch.Tensor:
    r"""RankNet: logistic loss on the score difference of every pair ``y_i > y_j`` (mean over pairs).

    .. math::
        \ell(s, y) = \operatorname{mean}_{y_i > y_j} \log\bigl(1 + e^{-\sigma (s_i - s_j)}\bigr)

    Burges et al. (2005), "Learning to rank using gradient descent". Per list equals allRank ``rankNet``
    (``allrank/models/losses/rankNet.py``, BCE with logits over positive pairs). ``[..., list]`` inputs.

    Example:

        >>> import torch
        >>> from pairkit.losses import pairwise_logistic_loss
        >>> print(round(pairwise_logistic_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]])).item(), 4))
        0.3133
    """
    return pairwise_ranking_loss(
        scores,
        labels,
        pair_loss=lambda d: F.softplus(-sigma * d),
        mask=mask,
        weights=weights,
        reduction=reduction,
    )


@register(
    "pairwise_hinge_loss",
    inputs=RANKED_LISTS,
    family="ranking",
    aliases=("pairwise_hinge",),
    options=(Option("margin", float, NON_NEGATIVE, doc="margin m"),),
)
def pairwise_hinge_loss(
    scores, labels, *, margin: float = 1.0, mask=None, weights=None, reduction: Reduction = "mean"
) -> torch.Tensor:
    r"""Pairwise hinge (RankSVM) loss over the pairs ``y_i > y_j`` (mean over pairs).

    .. math::
        \ell(s, y) = \operatorname{mean}_{y_i > y_j} \max\bigl(0,\ m - (s_i - s_j)\bigr)

    Herbrich et al. (2000), "Large margin rank boundaries for ordinal regression"; Joachims (2002),
    "Optimizing search engines using clickthrough data". ``[..., list]`` inputs.
    """
    return pairwise_ranking_loss(
        scores, labels, pair_loss=lambda d: F.relu(margin - d), mask=mask, weights=weights, reduction=reduction
    )


@register(
    "pairwise_soft_zero_one_loss",
    inputs=RANKED_LISTS,
    family="ranking",
    aliases=("pairwise_soft_zero_one",),
    options=(_SIGMA,),
)
def pairwise_soft_zero_one_loss(
    scores, labels, *, sigma: float = 1.0, mask=None, weights=None, reduction: Reduction = "mean"
) -> torch.Tensor:
    r"""Soft zero-one loss: a sigmoid relaxation of the count of mis-ordered pairs (mean over pairs).

    .. math::
        \ell(s, y) = \operatorname{mean}_{y_i > y_j} \sigma\bigl(-\sigma_0 (s_i - s_j)\bigr)

    Yan et al. (2003), "Optimizing classifier performance via an approximation to the Wilcoxon-Mann-Whitney
    statistic" (Rax ``pairwise_soft_zero_one_loss``). ``sigma`` is the slope. ``[..., list]`` inputs.
    """
    return pairwise_ranking_loss(
        scores,
        labels,
        pair_loss=lambda d: torch.sigmoid(-sigma * d),
        mask=mask,
        weights=weights,
        reduction=reduction,
    )


@register(
    "margin_mse_loss",
    inputs=(Input("scores", "scores", "[batch, list]"), Input("teacher_scores", "scores", "[batch, list]")),
    family="ranking",
    aliases=("margin_mse",),
)
def margin_mse_loss(scores, teacher_scores, *, mask=None, weights=None, reduction: Reduction = "mean") -> torch.Tensor:
    r"""Margin-MSE distillation: match the student's score margins to the teacher's.

    .. math::
        \ell(s, t) = \operatorname{mean}_{i < j} \bigl((s_i - s_j) - (t_i - t_j)\bigr)^2

    Hofstätter et al. (2020), "Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge
    Distillation" (also the loss of TAS-Balanced, Hofstätter et al., 2021). With lists
    ``[positive, negative]`` this is exactly the paper's loss; longer lists average over all pairs.
    ``scores``, ``teacher_scores``: ``[..., list]``.
    """
    scores, teacher, mask = prepare_lists(scores, teacher_scores, mask, labels_name="teacher_scores")
    pairs = _upper_pairs(mask)
    values = (_pair_diff(scores) - _pair_diff(teacher)) ** 2
    per_list = _pairs_reduce(values, pairs, None, normalize=True)
    return _reduce_lists(per_list, valid=pairs.any((-2, -1)), weights=weights, reduction=reduction)


@register(
    "thurstone_fidelity_loss",
    inputs=(
        *RANKED_LISTS,
        keyword("stds", "stds", "[batch, list]", required=True),
        keyword("label_stds", "stds", "[batch, list]"),
    ),
    family="ranking",
    aliases=("thurstone_fidelity", "fidelity"),
    options=(Option("eps", float, POSITIVE, doc="ε keeping the square roots differentiable"),),
)
def thurstone_fidelity_loss(
    scores,
    labels,
    *,
    stds,
    label_stds=None,
    eps: float = 1e-8,
    mask=None,
    weights=None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Fidelity loss between Thurstone pair probabilities of predicted score distributions and targets.

    Each item has a predicted score distribution :math:`\mathcal N(\mu_i, \sigma_i^2)` (``scores`` = means,
    ``stds`` = standard deviations). Thurstone's Case III gives the probability that ``i`` beats ``j``:

    .. math::
        \hat p_{ij} = \Phi\Bigl(\frac{\mu_i - \mu_j}{\sqrt{\sigma_i^2 + \sigma_j^2 + \epsilon}}\Bigr),\qquad
        \ell = \operatorname{mean}_{i<j} 1 - \sqrt{p_{ij}\hat p_{ij} + \epsilon}
               - \sqrt{(1 - p_{ij})(1 - \hat p_{ij}) + \epsilon}

    with the target :math:`p_{ij}` from the label means and ``label_stds`` in the same way, or, without
    ``label_stds``, :math:`p_{ij} = 1[y_i > y_j] + \tfrac12 1[y_i = y_j]`. The fidelity loss is Tsai et al.
    (2007), "FRank: a ranking method with fidelity loss"; the Thurstone form with per-item score
    distributions follows DeQA-Score (Zhu et al., 2025, "Teaching Large Language Models to Regress Accurate
    Image Quality Scores using Score Distribution"). ``eps`` keeps the square roots differentiable at 0; the
    loss is 0 up to :math:`O(\sqrt\epsilon)` when the probabilities agree.
    ``scores``, ``labels``, ``stds``, ``label_stds``: ``[..., list]``.
    """
    scores, labels, mask = prepare_lists(scores, labels, mask)
    stds = torch.as_tensor(stds, dtype=scores.dtype, device=scores.device)
    check_same_shape(scores=scores, stds=stds)
    if bool((mask & ~(stds >= 0)).any()):
        raise InputError("stds must be non-negative and finite at valid entries")
    var = torch.where(mask, stds, 0.0) ** 2
    p_hat = torch.special.ndtr(_pair_diff(scores) / torch.sqrt(var.unsqueeze(-1) + var.unsqueeze(-2) + eps))
    if label_stds is None:
        d = _pair_diff(labels)
        target = (d > 0).to(scores.dtype) + 0.5 * (d == 0).to(scores.dtype)
    else:
        label_stds = torch.as_tensor(label_stds, dtype=scores.dtype, device=scores.device)
        check_same_shape(scores=scores, label_stds=label_stds)
        if bool((mask & ~(label_stds >= 0)).any()):
            raise InputError("label_stds must be non-negative and finite at valid entries")
        tvar = torch.where(mask, label_stds, 0.0) ** 2
        target = torch.special.ndtr(_pair_diff(labels) / torch.sqrt(tvar.unsqueeze(-1) + tvar.unsqueeze(-2) + eps))
    fidelity = 1.0 - torch.sqrt(target * p_hat + eps) - torch.sqrt((1.0 - target) * (1.0 - p_hat) + eps)
    pairs = _upper_pairs(mask)
    per_list = _pairs_reduce(fidelity, pairs, None, normalize=True)
    return _reduce_lists(per_list, valid=pairs.any((-2, -1)), weights=weights, reduction=reduction)


# ------------------------------------------------------------------------------------------- listwise


def _listwise_cross_entropy(scores, target_probs, mask):
    return -(target_probs * _masked_log_softmax(scores, mask)).sum(-1)


@register("softmax_loss", inputs=RANKED_LISTS, family="ranking", aliases=("softmax", "listwise_softmax"))
def softmax_loss(scores, labels, *, mask=None, weights=None, reduction: Reduction = "mean") -> torch.Tensor:
    r"""Listwise softmax cross-entropy with the labels normalised to a distribution.

    .. math::
        \ell(s, y) = -\sum_i \frac{y_i}{\sum_j y_j} \log \frac{e^{s_i}}{\sum_j e^{s_j}}

    Bruch et al. (2019), "An Analysis of the Softmax Cross Entropy Loss for Learning-to-Rank with Binary
    Relevance" (Rax/TF-Ranking ``softmax_loss``; allRank ``binary_listNet``). Labels must be non-negative;
    a list whose labels sum to 0 has no target and gives 0. ``[..., list]`` inputs.
    """
    scores, labels, mask = prepare_lists(scores, labels, mask)
    _check_nonnegative(labels, mask)
    total = labels.sum(-1, keepdim=True)
    per_list = _listwise_cross_entropy(scores, _safe_div(labels, total), mask)
    return _reduce_lists(per_list, valid=total.squeeze(-1) > 0, weights=weights, reduction=reduction)


@register("listnet_loss", inputs=RANKED_LISTS, family="ranking", aliases=("listnet", "list_net"))
def listnet_loss(scores, labels, *, mask=None, weights=None, reduction: Reduction = "mean") -> torch.Tensor:
    r"""ListNet: cross-entropy between the top-one probabilities of labels and of scores.

    .. math::
        \ell(s, y) = -\sum_i \operatorname{softmax}(y)_i \log \operatorname{softmax}(s)_i

    Cao et al. (2007), "Learning to Rank: From Pairwise Approach to Listwise Approach". Equals allRank
    ``listNet`` (``allrank/models/losses/listNet.py``) per list, without its ``eps`` inside the log.
    ``[..., list]`` inputs.
    """
    scores, labels, mask = prepare_lists(scores, labels, mask)
    target = torch.where(mask, torch.softmax(labels.masked_fill(~mask, -math.inf), dim=-1), 0.0)
    per_list = _listwise_cross_entropy(scores, target.nan_to_num(0.0), mask)
    return _reduce_lists(per_list, valid=mask.any(-1), weights=weights, reduction=reduction)


@register(
    "poly1_softmax_loss",
    inputs=RANKED_LISTS,
    family="ranking",
    aliases=("poly1_softmax",),
    options=(Option("epsilon", float, Interval(-1, None), doc="weight ε of the first polynomial term"),),
)
def poly1_softmax_loss(
    scores, labels, *, epsilon: float = 1.0, mask=None, weights=None, reduction: Reduction = "mean"
) -> torch.Tensor:
    r"""Poly-1 softmax loss: the softmax loss plus a first-order polynomial term.

    .. math::
        \ell(s, y) = \mathrm{CE}(p, \operatorname{softmax}(s)) + \epsilon\,(1 - p_t),\quad
        p_i = \frac{y_i}{\sum_j y_j},\ p_t = \sum_i p_i \operatorname{softmax}(s)_i

    Leng et al. (2022), "PolyLoss: A Polynomial Expansion Perspective of Classification Loss Functions"
    (Rax ``poly1_softmax_loss``). Lists whose labels sum to 0 give 0. ``[..., list]`` inputs.
    """
    scores, labels, mask = prepare_lists(scores, labels, mask)
    _check_nonnegative(labels, mask)
    total = labels.sum(-1, keepdim=True)
    target = _safe_div(labels, total)
    logp = _masked_log_softmax(scores, mask)
    p_t = (target * torch.where(mask, logp.exp(), 0.0)).sum(-1)
    valid = total.squeeze(-1) > 0
    per_list = -(target * logp).sum(-1) + epsilon * torch.where(valid, 1.0 - p_t, 0.0)
    return _reduce_lists(per_list, valid=valid, weights=weights, reduction=reduction)


@register(
    "listmle_loss",
    inputs=RANKED_LISTS,
    family="ranking",
    aliases=("listmle", "list_mle", "plackett_luce", "plackett_luce_topk"),
    options=(TOP_K,),
)
def listmle_loss(
    scores, labels, *, k: int | None = None, mask=None, weights=None, reduction: Reduction = "mean"
) -> torch.Tensor:
    r"""ListMLE: negative Plackett–Luce log-likelihood of the label order (top-``k`` with ``k``).

    .. math::
        \ell(s, y) = \sum_{r=1}^{\min(k, n)} \Bigl(\log \sum_{t=r}^{n} e^{s_{\pi(t)}} - s_{\pi(r)}\Bigr)

    with :math:`\pi` the items sorted by descending label. Xia et al. (2008), "Listwise approach to learning
    to rank: theory and algorithm"; top-k: Xia et al. (2009), "Statistical consistency of top-k ranking".
    Ties in the labels are broken by list order (stable sort), deterministically; allRank ``listMLE``
    breaks them at random, so the two agree exactly for tie-free labels. ``[..., list]`` inputs.

    Example:

        >>> import torch
        >>> from pairkit.losses import listmle_loss
        >>> scores = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0]])
        >>> labels = torch.tensor([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
        >>> print(listmle_loss(scores, labels, reduction='none').round(decimals=4))
        tensor([0.7209, 3.7209])
    """
    scores, labels, mask = prepare_lists(scores, labels, mask)
    key = labels.masked_fill(~mask, -math.inf)
    order = torch.sort(key, dim=-1, descending=True, stable=True).indices
    s = torch.gather(scores, -1, order)
    m = torch.gather(mask, -1, order)
    # finfo.min (not -inf) for masked entries: the reverse cumulative logsumexp stays finite in backward.
    s_fill = s.masked_fill(~m, torch.finfo(s.dtype).min)
    tail_lse = torch.logcumsumexp(s_fill.flip(-1), dim=-1).flip(-1)
    keep = m
    if k is not None:
        keep = keep & (torch.arange(s.shape[-1], device=s.device) < k)
    per_list = torch.where(keep, tail_lse - s, 0.0).sum(-1)
    return _reduce_lists(per_list, valid=mask.any(-1), weights=weights, reduction=reduction)


# ---------------------------------------------------------------------------------- LambdaLoss family


def lambdarank_weights(gains: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
    r"""LambdaRank pair weights: the absolute ΔNDCG of swapping ``i`` and ``j``.

    .. math::
        w_{ij} = \Bigl|\frac{1}{D_i} - \frac{1}{D_j}\Bigr|\, |G_i - G_j|,\quad D_i = \log_2(1 + r_i)

    Burges et al. (2006), "Learning to rank with nonsmooth cost functions"; as the LambdaLoss weighting in
    Wang et al. (2018). ``gains``: ``[..., list]`` gains divided by the ideal DCG; ``ranks``: ``[..., list]``
    1-based positions in the score order. Returns ``[..., list, list]``.
    """
    inv_d = 1.0 / torch.log2(1.0 + ranks.to(gains.dtype))
    return _pair_diff(inv_d).abs() * _pair_diff(gains).abs()


def ndcg_loss2_weights(gains: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
    r"""NDCG-Loss2 pair weights (a bound on NDCG via rank-distance discounts).

    .. math::
        w_{ij} = \delta_{|r_i - r_j|}\, |G_i - G_j|,\quad \delta_d = \frac{1}{\log_2(1 + d)} -
        \frac{1}{\log_2(2 + d)}

    Wang et al. (2018), "The LambdaLoss Framework for Ranking Metric Optimization", Eq. 13. Arguments as in
    :func:`lambdarank_weights`.
    """
    d = _pair_diff(ranks.to(gains.dtype)).abs()
    safe = torch.where(d > 0, d, torch.ones_like(d))
    delta = torch.where(d > 0, 1.0 / torch.log2(1.0 + safe) - 1.0 / torch.log2(2.0 + safe), torch.zeros_like(d))
    return delta * _pair_diff(gains).abs()


def ndcg_loss2pp_weights(gains: torch.Tensor, ranks: torch.Tensor, *, mu: float = 10.0) -> torch.Tensor:
    r"""NDCG-Loss2++ pair weights: ``mu`` times NDCG-Loss2 plus LambdaRank weights.

    .. math::
        w_{ij} = \mu\, w^{\mathrm{NDCG\text{-}Loss2}}_{ij} + w^{\mathrm{LambdaRank}}_{ij}

    Wang et al. (2018), "The LambdaLoss Framework for Ranking Metric Optimization", Eq. 14.
    """
    return mu * ndcg_loss2_weights(gains, ranks) + lambdarank_weights(gains, ranks)


@register(
    "lambda_loss",
    inputs=RANKED_LISTS,
    family="ranking",
    aliases=("lambdaloss", "ndcg_loss2pp", "ndcg_loss2_plus_plus"),
    options=(
        Option("weighting", callable, doc="pair weights w(G, r)"),
        *_LAMBDA_OPTIONS,
        Option("normalize", bool, doc="weighted mean over pairs instead of the sum"),
    ),
)
def lambda_loss(
    scores,
    labels,
    *,
    weighting: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = ndcg_loss2pp_weights,
    k: int | None = None,
    sigma: float = 1.0,
    gain: Gain = "exp2",
    normalize: bool = False,
    mask=None,
    weights=None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""LambdaLoss: metric-weighted pairwise logistic loss (default weighting NDCG-Loss2++).

    .. math::
        \ell(s, y) = -\sum_{y_i > y_j,\ r_i, r_j \le k} \log_2
        \sigma\bigl(\sigma_0 (s_i - s_j)\bigr)^{w_{ij}}

    with pair weights :math:`w_{ij}` = ``weighting(G, r)`` from the normalised gains
    :math:`G_i = g(y_i) / \mathrm{IDCG@k}` and the 1-based ranks :math:`r` of the items in the current score
    order (ties in scores keep list order). Wang et al. (2018), "The LambdaLoss Framework for Ranking Metric
    Optimization". Per list equals allRank ``lambdaLoss`` (``allrank/models/losses/lambdaLoss.py``,
    ``reduction="sum"``, binary log) with the matching ``weighing_scheme``; pass
    ``functools.partial(ndcg_loss2pp_weights, mu=...)`` for another ``mu``. The per-list value is the sum
    over pairs (``normalize=True``: the weighted mean). ``[..., list]`` inputs, labels non-negative.
    """
    scores, labels, mask = prepare_lists(scores, labels, mask)
    _check_nonnegative(labels, mask)
    ranks = _rank_order(scores, mask)
    gains = _safe_div(relevance_gains(labels, gain), ideal_dcg(labels, mask=mask, k=k, gain=gain).unsqueeze(-1))
    pair_w = weighting(gains, ranks + 1)
    if k is not None:
        top = ranks < k
        pair_w = torch.where(_pair_and(top), pair_w, torch.zeros_like(pair_w))
    return pairwise_ranking_loss(
        scores,
        labels,
        pair_loss=lambda d: F.softplus(-sigma * d) / _LN2,
        pair_weights=pair_w.detach(),
        normalize=normalize,
        mask=mask,
        weights=weights,
        reduction=reduction,
    )


def _lambda_loss_with(weighting, name: str, doc: str):
    """A :func:`lambda_loss` with a fixed pair weighting, as its own named function."""

    def loss(
        scores,
        labels,
        *,
        k: int | None = None,
        sigma: float = 1.0,
        gain: Gain = "exp2",
        mask=None,
        weights=None,
        reduction: Reduction = "mean",
    ) -> torch.Tensor:
        return lambda_loss(
            scores,
            labels,
            weighting=weighting,
            k=k,
            sigma=sigma,
            gain=gain,
            mask=mask,
            weights=weights,
            reduction=reduction,
        )

    loss.__name__ = loss.__qualname__ = name
    loss.__doc__ = doc
    return loss


lambdarank_loss = register(
    "lambdarank_loss", inputs=RANKED_LISTS, family="ranking", aliases=("lambdarank",), options=(*_LAMBDA_OPTIONS,)
)(
    _lambda_loss_with(
        lambdarank_weights,
        "lambdarank_loss",
        r"""LambdaRank as a LambdaLoss: :func:`lambda_loss` with :func:`lambdarank_weights`.

    .. math::
        \ell(s, y) = -\sum_{y_i > y_j} |\Delta \mathrm{NDCG}_{ij}| \log_2 \sigma(\sigma_0(s_i - s_j))

    Burges et al. (2006), "Learning to rank with nonsmooth cost functions"; Wang et al. (2018), "The
    LambdaLoss Framework for Ranking Metric Optimization". Options as :func:`lambda_loss`; ``[..., list]``.
    """,
    )
)

ndcg_loss2 = register(
    "ndcg_loss2", inputs=RANKED_LISTS, family="ranking", aliases=("ndcgloss2",), options=(*_LAMBDA_OPTIONS,)
)(
    _lambda_loss_with(
        ndcg_loss2_weights,
        "ndcg_loss2",
        r"""NDCG-Loss2: :func:`lambda_loss` with :func:`ndcg_loss2_weights`.

    .. math::
        \ell(s, y) = -\sum_{y_i > y_j} \delta_{|r_i - r_j|} |G_i - G_j| \log_2 \sigma(\sigma_0(s_i - s_j))

    Wang et al. (2018), "The LambdaLoss Framework for Ranking Metric Optimization". Options as
    :func:`lambda_loss`; ``[..., list]`` inputs.
    """,
    )
)


# ------------------------------------------------------------------------------------ NDCG surrogates


def _normalised_gains(labels, mask, k, gain):
    idcg = ideal_dcg(labels, mask=mask, k=k, gain=gain)
    return _safe_div(relevance_gains(labels, gain), idcg.unsqueeze(-1)), idcg


@register(
    "approx_ndcg_loss",
    inputs=RANKED_LISTS,
    family="ranking",
    aliases=("approx_ndcg", "approxndcg", "approxndcgloss"),
    options=(
        Option("alpha", float, POSITIVE, doc="slope α of the smoothed ranks"),
        GAIN,
    ),
)
def approx_ndcg_loss(
    scores,
    labels,
    *,
    alpha: float = 1.0,
    gain: Gain = "exp2",
    mask=None,
    weights=None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""ApproxNDCG: negative NDCG with ranks replaced by a sigmoid-smoothed rank.

    .. math::
        \hat r_i = 1 + \sum_{j \ne i} \sigma\bigl(-\alpha (s_i - s_j)\bigr),\qquad
        \ell(s, y) = -\sum_i \frac{g(y_i)/\mathrm{IDCG}}{\log_2(1 + \hat r_i)}

    Qin et al. (2010), "A general approximation framework for direct optimization of information retrieval
    measures". Per list equals allRank ``approxNDCGLoss`` (``allrank/models/losses/approxNDCG.py``) without
    its ``eps`` clamp; unlike allRank, lists with no relevant item are left out of the mean.
    ``[..., list]`` inputs, labels non-negative.
    """
    scores, labels, mask = prepare_lists(scores, labels, mask)
    _check_nonnegative(labels, mask)
    g, idcg = _normalised_gains(labels, mask, None, gain)
    n = scores.shape[-1]
    others = _pair_and(mask) & ~torch.eye(n, dtype=torch.bool, device=scores.device)
    soft = torch.where(others, torch.sigmoid(-alpha * _pair_diff(scores)), 0.0)
    approx_rank = 1.0 + soft.sum(-1)
    per_list = -torch.where(mask, g / torch.log2(1.0 + approx_rank), 0.0).sum(-1)
    return _reduce_lists(per_list, valid=idcg > 0, weights=weights, reduction=reduction)


def neural_sort(scores, *, temperature: float = 1.0, mask=None) -> torch.Tensor:
    r"""Deterministic NeuralSort: a row-stochastic relaxation of the descending sort permutation.

    .. math::
        \hat P[r, :] = \operatorname{softmax}\Bigl(\frac{(n + 1 - 2r)\, s - A_s \mathbf 1}{\tau}\Bigr),\quad
        (A_s)_{ij} = |s_i - s_j|

    Grover et al. (2019), "Stochastic Optimization of Sorting Networks via Continuous Relaxations". With a
    ``mask``, ``n`` is the number of valid items, rows ``r > n`` and masked columns are 0 (as allRank's
    ``deterministic_neural_sort`` for lists padded at the end, but for masks anywhere in the list).
    ``scores``: ``[..., list]``; returns ``[..., list (rank), list (item)]``.
    """
    scores = torch.as_tensor(scores)
    mask = torch.ones_like(scores, dtype=torch.bool) if mask is None else mask.expand(scores.shape)
    s = torch.where(mask, scores, 0.0)
    n_valid = mask.sum(-1, keepdim=True).to(s.dtype)
    abs_diff = torch.where(_pair_and(mask), _pair_diff(s).abs(), 0.0)
    b = abs_diff.sum(-1)  # [..., item]
    r = torch.arange(1, s.shape[-1] + 1, dtype=s.dtype, device=s.device)
    scaling = n_valid + 1.0 - 2.0 * r  # [..., rank]
    logits = (scaling.unsqueeze(-1) * s.unsqueeze(-2) - b.unsqueeze(-2)) / temperature
    row_ok = r <= n_valid  # [..., rank]
    cell_ok = row_ok.unsqueeze(-1) & mask.unsqueeze(-2)
    p = torch.softmax(logits.masked_fill(~cell_ok, torch.finfo(s.dtype).min), dim=-1)
    return torch.where(cell_ok, p, 0.0)


def sinkhorn_scaling(
    mat: torch.Tensor, *, row_mask=None, col_mask=None, tol: float = 1e-6, max_iter: int = 50
) -> torch.Tensor:
    r"""Sinkhorn scaling of non-negative square matrices towards doubly stochastic ones.

    .. math::
        P \leftarrow P \oslash (\mathbf 1 \mathbf 1^\top P),\quad P \leftarrow P \oslash (P \mathbf 1 \mathbf
        1^\top) \quad\text{(columns, then rows; until both sums are within tol of 1)}

    Sinkhorn (1964), "A relationship between arbitrary positive matrices and doubly stochastic matrices".
    Masked rows/columns stay 0 and are ignored by the stopping test (``tol=0`` runs all ``max_iter``).
    ``mat``: ``[..., n, n]``; masks ``[..., n]``.
    """
    eps = 1e-10  # as allRank's DEFAULT_EPS: zero rows/columns stay zero
    row_mask = torch.ones(mat.shape[:-1], dtype=torch.bool, device=mat.device) if row_mask is None else row_mask
    col_mask = torch.ones(mat.shape[:-1], dtype=torch.bool, device=mat.device) if col_mask is None else col_mask
    one = torch.ones((), dtype=mat.dtype, device=mat.device)
    if mat.numel() == 0:  # an empty batch has nothing to scale (and max() of nothing is undefined)
        return mat
    for _ in range(max_iter):
        # masked rows/columns are divided by 1, not by a clamped 0: dividing by eps would amplify the
        # (zero) gradient through them by 1/eps per iteration and overflow into NaN
        mat = mat / torch.where(col_mask, mat.sum(-2), one).clamp_min(eps).unsqueeze(-2)
        mat = mat / torch.where(row_mask, mat.sum(-1), one).clamp_min(eps).unsqueeze(-1)
        if tol > 0:
            row_err = torch.where(row_mask, (mat.sum(-1) - 1.0).abs(), 0.0).max()
            col_err = torch.where(col_mask, (mat.sum(-2) - 1.0).abs(), 0.0).max()
            if bool(row_err < tol) and bool(col_err < tol):
                break
    return mat


@register(
    "neural_ndcg_loss",
    inputs=RANKED_LISTS,
    family="ranking",
    aliases=("neural_ndcg", "neuralndcg"),
    options=(
        TEMPERATURE,
        TOP_K,
        GAIN,
        Option("sinkhorn_tol", float, NON_NEGATIVE, doc="Sinkhorn stopping tolerance (0: run all iterations)"),
        Option("sinkhorn_iters", int, Interval(0, None), doc="most Sinkhorn iterations"),
        Option("transposed", bool, doc="NeuralNDCG-transposed"),
    ),
)
def neural_ndcg_loss(
    scores,
    labels,
    *,
    temperature: float = 1.0,
    k: int | None = None,
    gain: Gain = "exp2",
    sinkhorn_tol: float = 1e-6,
    sinkhorn_iters: int = 50,
    transposed: bool = False,
    mask=None,
    weights=None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""NeuralNDCG: negative NDCG@k of the labels sorted by a Sinkhorn-scaled NeuralSort relaxation.

    .. math::
        \ell(s, y) = -\frac{1}{\mathrm{IDCG@k}} \sum_{r=1}^{k} \frac{(\hat P\, g(y))_r}{\log_2(r + 1)},
        \quad \hat P = \operatorname{Sinkhorn}(\operatorname{NeuralSort}_\tau(s))

    ``transposed=True`` is the paper's NeuralNDCG-transposed: each item's gain times its expected discount,
    :math:`\sum_j g(y_j) \sum_{r \le k} \hat P_{rj} / \log_2(r + 1)` (allRank ``neuralNDCG_transposed``,
    there with the exponential gain in the ideal DCG whatever ``gain``; here ``gain`` is used throughout).

    Pobrotyn & Białobrzeski (2021), "NeuralNDCG: Direct Optimisation of a Ranking Metric via Differentiable
    Relaxation of Sorting". Per list equals allRank ``neuralNDCG`` (deterministic variant,
    ``allrank/models/losses/neuralNDCG.py``); as there, lists without a relevant item are left out of the
    mean. Lower ``temperature`` sorts more sharply. ``[..., list]`` inputs, labels non-negative.
    """
    scores, labels, mask = prepare_lists(scores, labels, mask)
    _check_nonnegative(labels, mask)
    n = scores.shape[-1]
    p_hat = neural_sort(scores, temperature=temperature, mask=mask)
    n_valid = mask.sum(-1, keepdim=True)
    row_mask = torch.arange(n, device=scores.device) < n_valid
    p_hat = sinkhorn_scaling(p_hat, row_mask=row_mask, col_mask=mask, tol=sinkhorn_tol, max_iter=sinkhorn_iters)
    gains = torch.where(mask, relevance_gains(labels, gain), 0.0)
    discounts = dcg_discounts(n, k=k, dtype=scores.dtype, device=scores.device)
    if transposed:
        dcg = (gains * (discounts.unsqueeze(-1) * p_hat).sum(-2)).sum(-1)
    else:
        dcg = ((p_hat @ gains.unsqueeze(-1)).squeeze(-1) * discounts).sum(-1)
    idcg = ideal_dcg(labels, mask=mask, k=k, gain=gain)
    per_list = -_safe_div(dcg, idcg)
    return _reduce_lists(per_list, valid=idcg > 0, weights=weights, reduction=reduction)
