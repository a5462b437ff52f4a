"""Reward-model variants: multi-objective rewards with a gating head (ArmoRM), K-wise comparisons with the
pessimistic MLE of Zhu, Jordan & Jiao, and PAL's personalized ideal-point rewards.

ArmoRM's model outputs ``[batch, 2k]`` per response: ``k`` objective rewards followed by ``k`` gating logits
(declared as embeddings so :func:`~pairkit.train.train_reward_model` passes the whole output). K-wise inputs are
``[batch, list]`` rewards with graded labels, as :func:`~pairkit.losses.plackett_luce_reward_loss`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pairkit._spec import Input, Interval, Option
from pairkit.errors import InputError
from pairkit.losses._checks import prepare_lists
from pairkit.losses._core import Reduction, check_broadcastable, reduce_loss, register
from pairkit.losses.scores import logistic_loss

__all__ = [
    "armorm_loss",
    "armorm_scores",
    "kwise_feature_covariance",
    "kwise_pairwise_reward_loss",
    "pal_ideal_point_loss",
    "pal_ideal_points",
    "pessimistic_rewards",
]

_FAMILY = "reward"


def armorm_scores(outputs: torch.Tensor) -> torch.Tensor:
    r"""ArmoRM's preference score from ``[..., 2k]`` outputs: the gated mixture of the ``k`` objective rewards.

    .. math::
        R = \sum_{i=1}^{k} g_i\, r_i, \qquad g = \operatorname{softmax}(\text{gating logits}),

    with ``outputs = [r_1 … r_k, gating logits_1 … k]``. Wang, Xiong, Xie, Zhao & Zhang (2024), "Interpretable
    Preferences via Multi-Objective Reward Modeling and Mixture-of-Experts".
    """
    if not (isinstance(outputs, torch.Tensor) and outputs.is_floating_point()) or outputs.dim() < 1:
        raise InputError("outputs must be a floating-point [..., 2k] tensor")
    width = outputs.shape[-1]
    if width < 2 or width % 2:
        raise InputError(f"outputs must have an even width 2k (k objective rewards, k gating logits), got {width}")
    k = width // 2
    rewards, gate = outputs[..., :k], outputs[..., k:]
    return (torch.softmax(gate, dim=-1) * rewards).sum(-1)


def _armorm_logits(chosen_embeddings, rejected_embeddings, beta=1.0):
    return beta * (armorm_scores(chosen_embeddings) - armorm_scores(rejected_embeddings))


@register(
    "armorm",
    inputs=(
        Input("chosen_embeddings", "embeddings", "[batch, 2k]"),
        Input("rejected_embeddings", "embeddings", "[batch, 2k]"),
    ),
    family=_FAMILY,
    aliases=("armorm_gating", "multi_objective_gating"),
    options=(Option("beta", float, Interval(0, None, closed="neither"), doc="scale β of the gated score"),),
    extra={"pair_logits": _armorm_logits},
)
def armorm_loss(
    chosen_embeddings: torch.Tensor,
    rejected_embeddings: torch.Tensor,
    *,
    beta: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""ArmoRM's gating-stage loss: Bradley–Terry on the gated mixture of multi-objective rewards.

    Each response's output is ``[r_1 … r_k, gating logits]``; its score is :math:`R = g^\top r`
    (:func:`armorm_scores`) and

    .. math::
        \ell = -\log\sigma\big(\beta\,(R_c - R_r)\big).

    In the paper the gating network reads the prompt only (so both responses share :math:`g`) and is trained with
    this loss while the backbone and the regression layer (fit to the ``k`` objectives by least squares in the
    first stage) stay frozen; freeze them yourself, and pre-subtract the verbosity component of each objective
    (the paper's decorrelation step) if you use it. Here each response's own gating logits are used, which is the
    paper's setting when the gate depends on the prompt alone.

    Wang, Xiong, Xie, Zhao & Zhang (2024), "Interpretable Preferences via Multi-Objective Reward Modeling and
    Mixture-of-Experts" (ArmoRM).

    Args:
        chosen_embeddings, rejected_embeddings: ``[batch, 2k]`` model outputs. beta: ``β > 0``.
    Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    for name, x in (("chosen_embeddings", chosen_embeddings), ("rejected_embeddings", rejected_embeddings)):
        if not (isinstance(x, torch.Tensor) and x.is_floating_point()) or x.dim() != 2:
            raise InputError(f"{name} must be a floating-point [batch, 2k] tensor")
    if chosen_embeddings.shape != rejected_embeddings.shape:
        raise InputError(
            f"shapes must match: chosen_embeddings {list(chosen_embeddings.shape)}, "
            f"rejected_embeddings {list(rejected_embeddings.shape)}"
        )
    check_broadcastable("mask", mask, chosen_embeddings.shape[:1])
    check_broadcastable("weights", weights, chosen_embeddings.shape[:1])
    values = logistic_loss(_armorm_logits(chosen_embeddings, rejected_embeddings, beta))
    return reduce_loss(values, reduction, mask=mask, weights=weights)


@register(
    "reward_kwise_pairs",
    inputs=(Input("rewards", "rewards", "[batch, list]"), Input("labels", "grades", "[batch, list]")),
    family=_FAMILY,
    aliases=("kwise_pairwise_mle", "mle_2"),
)
def kwise_pairwise_reward_loss(
    rewards: torch.Tensor,
    labels: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""K-wise comparisons split into their pairs: the sum of Bradley–Terry losses over every ordered pair.

    .. math::
        \ell = -\sum_{j<k} \log\sigma\big(r_{\tau(j)} - r_{\tau(k)}\big)

    over the :math:`K(K-1)/2` pairs of each ranking (:math:`\tau` sorts by decreasing ``labels``; tied labels give
    no pair). This is the estimator :math:`\hat\theta_{\mathrm{MLE}_2}` of Zhu, Jordan & Jiao (2023), "Principled
    Reinforcement Learning with Human Feedback from Pairwise or K-wise Comparisons" (ICML), which they show is
    consistent (though not efficient, unlike the Plackett–Luce MLE :func:`~pairkit.losses.plackett_luce_reward_loss`)
    and which trains faster; feed its estimate to :func:`pessimistic_rewards`. ``K = 2`` is the BT loss.

    Args: ``rewards``, ``labels``, ``mask`` ``[batch, list]``; ``weights`` ``[batch]``.
    Returns ``[batch]`` with ``reduction="none"``, else a scalar (lists without a pair give 0, left out of the mean).
    """
    rewards, labels, valid = prepare_lists(rewards, labels, mask)
    pairs = (labels.unsqueeze(-1) > labels.unsqueeze(-2)) & valid.unsqueeze(-1) & valid.unsqueeze(-2)
    diff = rewards.unsqueeze(-1) - rewards.unsqueeze(-2)
    per_pair = torch.where(pairs, F.softplus(-diff), torch.zeros_like(diff))
    values = per_pair.sum((-2, -1))
    check_broadcastable("weights", weights, values.shape)
    return reduce_loss(values, reduction, mask=pairs.flatten(-2).any(-1), weights=weights)


def kwise_feature_covariance(features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    r"""The data covariance of K-wise comparisons, over all pairwise feature differences.

    .. math::
        \Sigma_{\mathcal D} = \frac{2}{K(K-1)\,n}\sum_{i=1}^{n}\sum_{j<k}
            (x_{ij} - x_{ik})(x_{ij} - x_{ik})^\top

    Zhu, Jordan & Jiao (2023), "Principled Reinforcement Learning with Human Feedback from Pairwise or K-wise
    Comparisons", the matrix defining their confidence set. ``features`` ``[n, K, d]`` (``mask`` ``[n, K]`` for
    ragged lists: each list then uses its own ``K``). Computed as ``K Σ_j x_j x_jᵀ − (Σ_j x_j)(Σ_j x_j)ᵀ`` per
    list, so memory is ``O(n d²)`` not ``O(n K² d)``. Returns ``[d, d]``.
    """
    if not (isinstance(features, torch.Tensor) and features.is_floating_point()) or features.dim() != 3:
        raise InputError("features must be a floating-point [n, K, d] tensor")
    valid = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device) if mask is None else mask
    if tuple(valid.shape) != tuple(features.shape[:2]) or valid.dtype != torch.bool:
        raise InputError(f"mask must be a bool tensor of shape {list(features.shape[:2])}")
    x = torch.where(valid.unsqueeze(-1), features, torch.zeros_like(features))
    k = valid.sum(-1).to(x.dtype)  # [n]
    total = x.sum(1)  # [n, d]
    second = torch.einsum("nkd,nke->nde", x, x)
    # Σ_{j<k} (x_j - x_k)(x_j - x_k)^T = K Σ_j x_j x_j^T - (Σ_j x_j)(Σ_j x_j)^T
    pair_sum = k[:, None, None] * second - total.unsqueeze(-1) * total.unsqueeze(-2)
    n_pairs = k * (k - 1) / 2
    per_list = pair_sum / n_pairs.clamp(min=1)[:, None, None]
    has_pair = n_pairs > 0
    count = has_pair.sum().clamp(min=1).to(x.dtype)
    return (per_list * has_pair[:, None, None].to(x.dtype)).sum(0) / count


def pessimistic_rewards(
    features: torch.Tensor,
    theta: torch.Tensor,
    covariance: torch.Tensor,
    *,
    gamma: float,
    lam: float = 0.0,
    reference: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Lower-confidence-bound rewards of the pessimistic MLE for a linear reward :math:`r_\theta = \theta^\top\phi`.

    .. math::
        \hat r(\phi) = \hat\theta^\top(\phi - v)
            - \Gamma\,\big\lVert \phi - v \big\rVert_{(\Sigma_{\mathcal D} + \lambda I)^{-1}}
        = \min_{\lVert\theta - \hat\theta\rVert_{\Sigma_{\mathcal D}+\lambda I} \le \Gamma} \theta^\top(\phi - v),

    the worst reward over the confidence set around the MLE; a policy maximising it is the paper's pessimistic
    policy (for one state, or with :math:`\phi` the policy's expected features). ``v`` (``reference``, default 0)
    is the paper's reference vector: only reward differences are identified.

    Zhu, Jordan & Jiao (2023), "Principled Reinforcement Learning with Human Feedback from Pairwise or K-wise
    Comparisons" (ICML), Algorithm 1 with :math:`\Gamma = f(n, d, \delta, \lambda)` given by the caller.

    Args:
        features: ``[..., d]``; theta: ``[d]`` (e.g. fitted with :func:`kwise_pairwise_reward_loss` or the PL loss);
        covariance: ``[d, d]`` (:func:`kwise_feature_covariance`); gamma: ``Γ >= 0``; lam: ``λ >= 0``.
    Returns ``[...]``.
    """
    d = theta.shape[-1] if isinstance(theta, torch.Tensor) and theta.dim() == 1 else None
    if d is None or not isinstance(features, torch.Tensor) or features.shape[-1] != d:
        raise InputError("theta must be [d] and features [..., d] with the same d")
    if not isinstance(covariance, torch.Tensor) or covariance.shape != (d, d):
        raise InputError(f"covariance must be [{d}, {d}], got {getattr(covariance, 'shape', covariance)}")
    for name, value in (("gamma", gamma), ("lam", lam)):
        if not (isinstance(value, (int, float)) and value >= 0 and value == value and value != float("inf")):
            raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
    diff = features - (0.0 if reference is None else reference)
    matrix = covariance + lam * torch.eye(d, dtype=covariance.dtype, device=covariance.device)
    solved = torch.linalg.solve(matrix, diff.reshape(-1, d).T).T.reshape(diff.shape)
    width = (diff * solved).sum(-1).clamp(min=0.0).sqrt()
    return diff @ theta - gamma * width


def pal_ideal_points(prototypes: torch.Tensor, user_logits: torch.Tensor, *, temperature: float = 1.0) -> torch.Tensor:
    r"""PAL-A user ideal points: a convex mixture of ``K`` prototypical ideal points, :math:`a_u = P^\top
    \operatorname{softmax}(w_u/\tau)`. ``prototypes`` ``[K, dim]``, ``user_logits`` ``[..., K]``; returns
    ``[..., dim]``. Chen, Chen, Rege, Wang & Vinayak (2025), "PAL: Sample-Efficient Personalized Reward Modeling for
    Pluralistic Alignment" (ICLR).
    """
    if prototypes.dim() != 2 or user_logits.shape[-1] != prototypes.shape[0]:
        raise InputError(
            f"user_logits must be [..., K] with K = prototypes rows ({prototypes.shape[0]}), "
            f"got {list(user_logits.shape)} and prototypes {list(prototypes.shape)}"
        )
    return torch.softmax(user_logits / temperature, dim=-1) @ prototypes


def _distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    sq = ((x - y) ** 2).sum(-1)
    positive = sq > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, sq, torch.ones_like(sq))), torch.zeros_like(sq))


@register(
    "pal_ideal_point",
    inputs=(
        Input("chosen_embeddings", "embeddings", "[batch, dim]"),
        Input("rejected_embeddings", "embeddings", "[batch, dim]"),
        Input("prototypes", "embeddings", "[prototypes, dim]"),
        Input("user_logits", "logits", "[batch, prototypes]"),
    ),
    family="reward_personalized",
    aliases=("pal", "pal_a"),
    options=(
        Option("scale", float, Interval(0, None, closed="neither"), doc="scale s of the distance margin"),
        Option("temperature", float, Interval(0, None, closed="neither"), doc="softmax temperature τ of the mixture"),
        Option("link", str, choices=("logistic", "hinge"), doc="logistic (BT) or hinge on the margin"),
    ),
)
def pal_ideal_point_loss(
    chosen_embeddings: torch.Tensor,
    rejected_embeddings: torch.Tensor,
    prototypes: torch.Tensor,
    user_logits: torch.Tensor,
    *,
    scale: float = 1.0,
    temperature: float = 1.0,
    link: str = "logistic",
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""PAL-A: pluralistic preferences as an ideal-point model with a mixture of prototypical ideal points.

    Each user ``u`` has an ideal point :math:`a_u = P^\top\operatorname{softmax}(w_u/\tau)` in the preference
    embedding space, a mixture of ``K`` shared prototypes :math:`P` (:func:`pal_ideal_points`); a user prefers the
    response whose (projected) embedding :math:`f(y)` is closer to it. With the margin
    :math:`m = \lVert f(y_r) - a_u\rVert_2 - \lVert f(y_c) - a_u\rVert_2`:

    .. math::
        \ell = -\log\sigma(s\,m) \quad(\texttt{link="logistic"}), \qquad
        \ell = \max(0,\ 1 - m) \quad(\texttt{link="hinge"}).

    Chen, Chen, Rege, Wang & Vinayak (2025), "PAL: Sample-Efficient Personalized Reward Modeling for Pluralistic
    Alignment" (ICLR); ``hinge`` is the authors' ``dist`` learner with their hinge loss, ``logistic`` their
    ``dist_logistic`` learner (with ``scale`` = the exponentiated ``logit_scale``, clamped at 100 in their code).
    The item projection :math:`f` and the per-user logits :math:`w_u` are parameters: this loss takes their
    outputs. :func:`pairkit.train.train_reward_model` trains them with a :class:`pairkit.train.PALRewardModel`,
    reading each pair's user from a ``user`` column.

    Args:
        chosen_embeddings, rejected_embeddings: ``[batch, dim]``; prototypes: ``[K, dim]``;
        user_logits: ``[batch, K]`` (each pair's user's mixture logits).
    Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    for name, x in (("chosen_embeddings", chosen_embeddings), ("rejected_embeddings", rejected_embeddings)):
        if not (isinstance(x, torch.Tensor) and x.is_floating_point()) or x.dim() != 2:
            raise InputError(f"{name} must be a floating-point [batch, dim] tensor")
    if chosen_embeddings.shape != rejected_embeddings.shape:
        raise InputError(
            f"shapes must match: chosen_embeddings {list(chosen_embeddings.shape)}, "
            f"rejected_embeddings {list(rejected_embeddings.shape)}"
        )
    if prototypes.dim() != 2 or prototypes.shape[1] != chosen_embeddings.shape[1]:
        raise InputError(f"prototypes must be [K, {chosen_embeddings.shape[1]}], got {list(prototypes.shape)}")
    if user_logits.shape[:1] != chosen_embeddings.shape[:1]:
        raise InputError(f"user_logits must have one row per pair, got {list(user_logits.shape)}")
    check_broadcastable("mask", mask, chosen_embeddings.shape[:1])
    check_broadcastable("weights", weights, chosen_embeddings.shape[:1])
    ideal = pal_ideal_points(prototypes, user_logits, temperature=temperature)
    margin = _distance(rejected_embeddings, ideal) - _distance(chosen_embeddings, ideal)
    values = logistic_loss(scale * margin) if link == "logistic" else F.relu(1.0 - margin)
    return reduce_loss(values, reduction, mask=mask, weights=weights)
