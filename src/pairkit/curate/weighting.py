"""Reweighting and sampling rules: which training examples count more, and which are drawn.

Per-example weights from current losses (dynamic loss-based reweighting, curriculum re-weighting), loss-based
resampling of a user's positives (PLD) with the BPR loss, topic-aware balanced-margin batches (TAS-Balanced),
teacher-vs-reference difference sampling (MiniPLM) and submodular pairwise-utility selection (DELIFT). numpy only;
weights go into any trainer as per-example multipliers of the loss.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from pairkit._spec import Interval, Option
from pairkit.curate._registry import AT_LEAST_1, POSITIVE, as_array, as_rng, rule
from pairkit.errors import InputError

__all__ = [
    "bpr_loss",
    "curriculum_weights",
    "delift_select",
    "difference_sampling",
    "dynamic_loss_weights",
    "pld_sample",
    "tas_balanced_batches",
]


def _ids(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise InputError(f"{name} must be a 1-d array of ids, got shape {a.shape}")
    return a


@rule(
    "dynamic_loss_reweighting",
    "reweighting",
    Option("strategy", str, choices=("linupper", "quadratic", "extremes", "uniform"), doc="shape of g"),
    Option("delta", float, POSITIVE, doc="half-width of the normalised loss range"),
    Option("r", float, POSITIVE, doc="temperature of the softmax over the batch"),
    data="per-example losses of one batch",
    aliases=("loss_reweighting",),
)
def dynamic_loss_weights(losses, *, strategy: str = "linupper", delta: float = 1.0, r: float = 1.0) -> np.ndarray:
    """Per-example weights ``[B]`` (mean 1) from the batch's current losses.

    .. math::

        \\tilde\\ell_i = \\delta\\,\\frac{2\\ell_i - \\ell_{max} - \\ell_{min}}{\\ell_{max} - \\ell_{min}},
        \\qquad w_i = B\\,\\mathrm{softmax}_i\\big(g(\\tilde\\ell)/r\\big)

    with :math:`g` = ``linupper`` :math:`\\min(\\tilde\\ell+\\delta, \\delta)` (low-loss, redundant examples down,
    the rest equal), ``quadratic`` :math:`1 - \\tilde\\ell^2/\\delta^2` (medium losses up), ``extremes``
    :math:`|\\tilde\\ell|` (both ends up) or ``uniform`` :math:`\\tilde\\ell` (higher loss, more weight). Sow et
    al. (2025), "Dynamic Loss-Based Sample Reweighting for Improved Large Language Model Pretraining" (ICLR).
    The weighted batch loss is :math:`\\frac1B\\sum_i w_i \\ell_i`; weights are constants (no gradient).
    """
    x = as_array(losses, "losses", 1)
    if len(x) == 0:
        return x
    lo, hi = x.min(), x.max()
    norm = delta * (2 * x - hi - lo) / max(hi - lo, 1e-12)
    g = {
        "linupper": np.minimum(norm + delta, delta),
        "quadratic": 1 - norm**2 / delta**2,
        "extremes": np.abs(norm),
        "uniform": norm,
    }[strategy]
    return len(x) * special.softmax(g / r)


@rule(
    "curriculum_reweighting",
    "reweighting",
    Option("end_step", int, AT_LEAST_1, doc="step from which every weight is 1"),
    data="difficulty in [0, 1] per example (1 = easy) and the training step",
)
def curriculum_weights(difficulty, step: int, *, end_step: int) -> np.ndarray:
    """Curriculum weights ``[n]``: easy examples (``D`` near 1) count fully at once, hard ones phase in.

    .. math::

        W(i, D) = \\begin{cases} D + \\frac{i}{m}(1 - D) & i < m \\\\ 1 & i \\ge m \\end{cases}

    MacAvaney, Nardini, Perego, Tonellotto, Goharian & Frieder (2020), "Training Curricula for Open Domain
    Answer Re-Ranking" (SIGIR), with :math:`i` the training step, :math:`m` = ``end_step`` and :math:`D` a
    heuristic difficulty score (e.g. from the BM25 rank of the pair), 1 for the easiest.
    """
    d = as_array(difficulty, "difficulty", 1)
    if np.any((d < 0) | (d > 1)):
        raise InputError("difficulty must lie in [0, 1] (1 = easiest)")
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise InputError(f"step must be an integer >= 0, got {step!r}")
    if step >= end_step:
        return np.ones_like(d)
    return d + (step / end_step) * (1 - d)


@rule(
    "pld",
    "sampling",
    Option("k", int, AT_LEAST_1, doc="candidate positives drawn per user"),
    Option("tau", float, POSITIVE, doc="temperature of the loss-based resampling"),
    data="user id and current loss of every observed (user, item) interaction",
    aliases=("personalized_loss_denoising",),
)
def pld_sample(users, losses, *, k: int = 5, tau: float = 1.0, seed=None) -> np.ndarray:
    """One positive interaction per user, resampled towards the user's low-loss (likely clean) positives.

    For each user :math:`u`, draw ``k`` candidates :math:`C_u` uniformly (with replacement) from the user's
    observed interactions, then pick one with

    .. math::

        P(i \\mid C_u) = \\frac{\\exp(-\\ell_{ui}/\\tau)}{\\sum_{j\\in C_u} \\exp(-\\ell_{uj}/\\tau)}

    so each user's own loss distribution decides what counts as noise. Zhang et al. (2025), "Personalized
    Denoising Implicit Feedback for Robust Recommender System" (PLD, WWW); train the picked positives with
    :func:`bpr_loss`. ``users``, ``losses``: ``[m]`` (one row per interaction). Returns ``[n_users]`` row
    indices, users in sorted order of their ids.
    """
    u = _ids(users, "users")
    x = as_array(losses, "losses", 1)
    if len(u) != len(x) or len(u) == 0:
        raise InputError(f"users and losses must be non-empty and of one length, got {len(u)} and {len(x)}")
    rng = as_rng(seed)
    order = np.argsort(u, kind="stable")
    _, start, count = np.unique(u[order], return_index=True, return_counts=True)
    cand = order[start[:, None] + np.floor(rng.random((len(start), k)) * count[:, None]).astype(int)]
    gumbel = -np.log(-np.log(rng.random(cand.shape)))
    return cand[np.arange(len(cand)), np.argmax(-x[cand] / tau + gumbel, axis=1)]


def bpr_loss(pos_scores, neg_scores, *, reduction: str = "mean"):
    """Bayesian Personalized Ranking loss on (user, positive, negative) scores (numpy).

    .. math::

        \\mathcal L = -\\log\\sigma(\\hat y_{ui} - \\hat y_{uj})

    Rendle, Freudenthaler, Gantner & Schmidt-Thieme (2009), "BPR: Bayesian Personalized Ranking from Implicit
    Feedback". ``reduction``: ``"mean"``, ``"sum"`` or ``"none"`` (per triple). For training with gradients use
    the torch losses of :mod:`pairkit.losses`; this one scores data (e.g. the per-interaction losses of PLD).
    """
    p, n = as_array(pos_scores, "pos_scores", 1), as_array(neg_scores, "neg_scores", 1)
    if p.shape != n.shape:
        raise InputError(f"pos_scores and neg_scores must have one shape, got {p.shape} and {n.shape}")
    per = -special.log_expit(p - n)
    if reduction == "none":
        return per
    if reduction not in ("mean", "sum"):
        raise InputError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if len(per) == 0:
        return 0.0
    return float(per.mean() if reduction == "mean" else per.sum())


@rule(
    "tas_balanced",
    "sampling",
    Option("batch_size", int, AT_LEAST_1, doc="queries (one pair each) per batch"),
    Option("n_batches", int, AT_LEAST_1, doc="batches to draw"),
    Option("n_bins", int, AT_LEAST_1, doc="margin bins per query"),
    data="topic per query; query and teacher margin per (positive, negative) pair",
    aliases=("tas_b",),
)
def tas_balanced_batches(
    query_topic, pair_query, pair_margin, *, batch_size: int = 32, n_batches: int = 1, n_bins: int = 10, seed=None
) -> np.ndarray:
    """Topic-aware batches of pairs, balanced over the teacher's margins: ``[n_batches, batch_size]`` pair indices.

    Each batch draws one topic uniformly, ``batch_size`` of its queries uniformly (with replacement when the
    topic has fewer), and for each query one (positive, negative) pair: a margin bin uniformly among the
    query's non-empty bins (``n_bins`` equal-width bins between its smallest and largest margin), then a pair
    uniformly within the bin:

    .. math::

        P(p \\mid q) = \\frac{1}{|B_q|}\\,\\frac{1}{|\\{p' \\in q : b(p') = b(p)\\}|}

    Hofstätter, Lin, Yang, Lin & Hanbury (2021), "Efficiently Teaching an Effective Dense Retriever with Balanced
    Topic Aware Sampling" (TAS-Balanced; the margins come from the pairwise teacher of its dual-teacher loss).
    ``query_topic``: ``[Q]`` cluster id per query (e.g. k-means of query embeddings); ``pair_query``: ``[P]``
    query index per pair; ``pair_margin``: ``[P]`` teacher score margin positive − negative.
    """
    topic = _ids(query_topic, "query_topic")
    pq = _ids(pair_query, "pair_query").astype(int)
    margin = as_array(pair_margin, "pair_margin", 1)
    if len(pq) != len(margin) or len(pq) == 0:
        raise InputError(
            f"pair_query and pair_margin must be non-empty and of one length, got {len(pq)}, {len(margin)}"
        )
    if pq.min() < 0 or pq.max() >= len(topic):
        raise InputError(f"pair_query must index query_topic (0..{len(topic) - 1})")
    rng = as_rng(seed)
    q_min = np.full(len(topic), np.inf)
    q_max = np.full(len(topic), -np.inf)
    np.minimum.at(q_min, pq, margin)
    np.maximum.at(q_max, pq, margin)
    width = np.where(q_max > q_min, q_max - q_min, 1.0)
    b = np.minimum(((margin - q_min[pq]) / width[pq] * n_bins).astype(int), n_bins - 1)
    # groups (query, bin) in sorted order; per query: its first group and number of non-empty bins
    key = pq * n_bins + b
    order = np.argsort(key, kind="stable")
    gkey, gstart, gsize = np.unique(key[order], return_index=True, return_counts=True)
    gquery = gkey // n_bins
    first_group = np.searchsorted(gquery, np.arange(len(topic)))
    n_groups = np.bincount(gquery, minlength=len(topic))
    has_pairs = n_groups > 0
    topics = np.unique(topic[has_pairs])
    out = np.empty((n_batches, batch_size), dtype=int)
    batch_topic = rng.integers(len(topics), size=n_batches)
    for k in np.unique(batch_topic):  # the batches of one topic at once
        rows = np.flatnonzero(batch_topic == k)
        members = np.flatnonzero(has_pairs & (topic == topics[k]))
        if len(members) < batch_size:
            qs = members[rng.integers(len(members), size=(len(rows), batch_size))]
        else:  # distinct queries within a batch: the first columns of a random permutation per row
            qs = members[np.argsort(rng.random((len(rows), len(members))), axis=1)[:, :batch_size]]
        g = first_group[qs] + np.floor(rng.random(qs.shape) * n_groups[qs]).astype(int)
        out[rows] = order[gstart[g] + np.floor(rng.random(qs.shape) * gsize[g]).astype(int)]
    return out


@rule(
    "miniplm",
    "sampling",
    Option("fraction", float, Interval(0, 1, closed="right"), doc="share of the corpus kept"),
    Option("per_token", bool, doc="compare mean per-token log-probabilities (needs lengths)"),
    data="teacher and reference log-probabilities of each document",
    aliases=("difference_sampling",),
)
def difference_sampling(
    teacher_logps, ref_logps, lengths=None, *, fraction: float = 0.5, per_token: bool = False
) -> np.ndarray:
    """Indices of the documents the large teacher finds likelier than a small reference LM does, best first.

    .. math::

        s(x) = \\log p_{teacher}(x) - \\log p_{ref}(x),\\qquad
        \\text{keep } \\operatorname{top}_{\\lceil \\alpha n \\rceil}\\, s

    Gu, Zhou, Meng, Huang & Huang (2025), "MiniPLM: Knowledge Distillation for Pre-Training Language Models"
    (ICLR): difference sampling keeps what the teacher knows and the reference does not, dropping easy and
    noisy text. ``teacher_logps``, ``ref_logps``: ``[n]`` summed log-probabilities; ``per_token`` divides both
    by ``lengths`` first. Ties keep the earlier index.
    """
    t, r = as_array(teacher_logps, "teacher_logps", 1), as_array(ref_logps, "ref_logps", 1)
    if t.shape != r.shape:
        raise InputError(f"teacher_logps and ref_logps must have one length, got {len(t)} and {len(r)}")
    score = t - r
    if per_token:
        if lengths is None:
            raise InputError("per_token=True needs lengths (tokens per document)")
        n_tok = as_array(lengths, "lengths", 1)
        if n_tok.shape != t.shape or np.any(n_tok <= 0):
            raise InputError("lengths must be positive token counts, one per document")
        score = score / n_tok
    keep = int(np.ceil(fraction * len(score)))
    return np.argsort(-score, kind="stable")[:keep]


@rule(
    "delift",
    "sampling",
    Option("budget", int, AT_LEAST_1, doc="examples to select"),
    data="pairwise utility matrix [n, n]: U[i, j] = gain on example i from example j in context",
)
def delift_select(utility, *, budget: int) -> np.ndarray:
    """Greedy facility-location selection on DELIFT's pairwise utility (``[budget]`` indices in pick order).

    .. math::

        U_{ij} = d\\big(y_i, p(y_i \\mid x_i)\\big) - d\\big(y_i, p(y_i \\mid x_j, y_j, x_i)\\big),\\qquad
        F(S) = \\sum_i \\max_{j \\in S} \\max(U_{ij}, 0)

    Agarwal, Rawat, Bhatt et al. (2025), "DELIFT: Data Efficient Language model Instruction Fine-Tuning" (ICLR):
    how much example :math:`j` as an in-context demonstration helps the model on :math:`i`; the facility-location
    objective is monotone submodular, so the greedy choice is within :math:`1 - 1/e` of the best set
    (Nemhauser, Wolsey & Fisher 1978). ``U[i, i]`` should hold the self-utility (e.g. the largest of row i).
    """
    u = np.asarray(utility, dtype=float)
    if u.ndim != 2 or u.shape[0] != u.shape[1] or not np.all(np.isfinite(u)):
        raise InputError(f"utility must be a finite square [n, n] matrix, got shape {u.shape}")
    s = np.maximum(u, 0.0)
    best = np.zeros(len(s))
    chosen: list[int] = []
    free = np.ones(len(s), bool)
    for _ in range(min(budget, len(s))):
        gain = np.maximum(s - best[:, None], 0.0).sum(0)
        gain[~free] = -np.inf
        j = int(np.argmax(gain))
        chosen.append(j)
        free[j] = False
        best = np.maximum(best, s[:, j])
    return np.array(chosen, dtype=int)
