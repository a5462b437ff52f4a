"""Slow per-list numpy references for the ranking losses, following allRank 1.4.3's definitions.

allRank (allegro/allRank) pins torch<=1.8 and cannot be installed beside torch 2.x, so the tests compare with
these references instead. Each function takes ONE list of valid items (1-D arrays, no padding) and returns
the loss value of that list, computed the obvious way (explicit sorting, loops over ranks) in float64.
The source followed is named in each docstring (paths in allegro/allRank). pairkit's losses were also checked
once against the real allRank code under torch 2.13 (see benchmarks/results/ranking_losses.md).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit, logsumexp, softmax
from scipy.stats import norm

EPS = 1e-10  # allrank.models.losses.DEFAULT_EPS


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def listnet(s, y, eps=EPS):
    """allrank/models/losses/listNet.py: cross-entropy of softmax(labels) and softmax(scores) (+eps)."""
    return float(-(softmax(y) * np.log(softmax(s) + eps)).sum())


def binary_listnet(s, y, eps=EPS):
    """allrank/models/losses/binary_listNet.py: labels divided by their sum (1 if the sum is 0)."""
    total = y.sum()
    t = y / (total if total != 0 else 1.0)
    return float(-(t * np.log(softmax(s) + eps)).sum())


def ranknet(s, y):
    """allrank/models/losses/rankNet.py: BCE-with-logits mean over pairs with y_i > y_j (target 1)."""
    vals = [-_log_sigmoid(s[i] - s[j]) for i in range(len(s)) for j in range(len(s)) if y[i] > y[j]]
    return float(np.mean(vals)) if vals else 0.0


def listmle(s, y, k=None):
    """allrank/models/losses/listMLE.py (tie-free labels): sum over ranks of logsumexp(tail) - score."""
    ss = s[np.argsort(-y, kind="stable")]
    top = len(ss) if k is None else min(k, len(ss))
    return float(sum(logsumexp(ss[r:]) - ss[r] for r in range(top)))


def _idcg(y, k=None, gain=lambda v: 2.0**v - 1.0):
    g = np.sort(gain(y))[::-1][:k]
    return float((g / np.log2(np.arange(len(g)) + 2.0)).sum())


def lambdaloss(s, y, scheme, k=None, sigma=1.0, mu=10.0):
    """allrank/models/losses/lambdaLoss.py with reduction="sum", reduction_log="binary".

    ``scheme``: "lambdaRank", "ndcgLoss2" or "ndcgLoss2PP" (the ``*_scheme`` functions there).
    """
    order = np.argsort(-s, kind="stable")
    ss, ys = s[order], y[order]
    n = len(s)
    d = np.log2(np.arange(n) + 2.0)  # D at 0-based position r = log2(r + 2)
    g = (2.0**ys - 1.0) / max(_idcg(y, k), EPS)
    total = 0.0
    for i in range(n):
        for j in range(n):
            if not ys[i] > ys[j] or (k is not None and (i >= k or j >= k)):
                continue
            lambdarank = abs(1 / d[i] - 1 / d[j]) * abs(g[i] - g[j])
            dist = abs(i - j)
            ndcg2 = (1 / math.log2(1 + dist) - 1 / math.log2(2 + dist)) * abs(g[i] - g[j])
            w = {"lambdaRank": lambdarank, "ndcgLoss2": ndcg2, "ndcgLoss2PP": mu * ndcg2 + lambdarank}[scheme]
            total += -w * _log_sigmoid(sigma * (ss[i] - ss[j])) / math.log(2)
    return total


def approx_ndcg(s, y, alpha=1.0):
    """allrank/models/losses/approxNDCG.py: -sum_i G_i / log2(1 + approximate rank_i)."""
    g = (2.0**y - 1.0) / max(_idcg(y), EPS)
    total = 0.0
    for i in range(len(s)):
        rank = 1.0 + sum(max(expit(-alpha * (s[i] - s[j])), EPS) for j in range(len(s)) if j != i)
        total += g[i] / math.log2(1.0 + rank)
    return -total


def neural_sort(s, tau):
    """allrank/models/losses/loss_utils.py deterministic_neural_sort for one unpadded list: [rank, item]."""
    n = len(s)
    b = np.abs(s[:, None] - s[None, :]).sum(1)
    p = np.empty((n, n))
    for r in range(n):
        p[r] = softmax(((n + 1 - 2 * (r + 1)) * s - b) / tau)
    return p


def sinkhorn(p, tol=1e-6, max_iter=50):
    """allrank/models/losses/loss_utils.py sinkhorn_scaling: columns then rows, stop within tol."""
    for _ in range(max_iter):
        p = p / np.maximum(p.sum(0, keepdims=True), EPS)
        p = p / np.maximum(p.sum(1, keepdims=True), EPS)
        if tol > 0 and np.abs(p.sum(1) - 1).max() < tol and np.abs(p.sum(0) - 1).max() < tol:
            break
    return p


def neural_ndcg(s, y, tau=1.0, k=None, tol=1e-6, max_iter=50, exp2=True, transposed=False):
    """allrank/models/losses/neuralNDCG.py (deterministic): -NDCG@k of labels sorted by Sinkhorn(NeuralSort).

    ``transposed``: ``neuralNDCG_transposed`` there, gains times expected discounts of the items.
    """
    gain = (lambda v: 2.0**v - 1.0) if exp2 else (lambda v: v)
    p = sinkhorn(neural_sort(s, tau), tol=tol, max_iter=max_iter)
    top = len(s) if k is None else min(k, len(s))
    disc = np.where(np.arange(len(s)) < top, 1.0 / np.log2(np.arange(len(s)) + 2.0), 0.0)
    if transposed:
        dcg = sum(gain(y[j]) * sum(p[r, j] * disc[r] for r in range(len(s))) for j in range(len(s)))
    else:
        dcg = ((p @ gain(y)) * disc).sum()
    idcg = _idcg(y, k, gain)
    return 0.0 if idcg == 0 else float(-dcg / idcg)


# ---- references for losses allRank does not implement (closed forms from the papers)


def pairwise(s, y, phi):
    """Mean of phi(s_i - s_j) over pairs y_i > y_j (Rax pairwise losses, mean-reduced per list)."""
    vals = [phi(s[i] - s[j]) for i in range(len(s)) for j in range(len(s)) if y[i] > y[j]]
    return float(np.mean(vals)) if vals else 0.0


def poly1_softmax(s, y, epsilon):
    """Leng et al. (2022) Poly-1 on the softmax loss with label-normalised targets."""
    if y.sum() == 0:
        return 0.0
    t = y / y.sum()
    p = softmax(s)
    return float(-(t * np.log(p)).sum() + epsilon * (1 - (t * p).sum()))


def margin_mse(s, t):
    """Hofstätter et al. (2020): mean over pairs i<j of ((s_i - s_j) - (t_i - t_j))^2."""
    vals = [((s[i] - s[j]) - (t[i] - t[j])) ** 2 for i in range(len(s)) for j in range(i + 1, len(s))]
    return float(np.mean(vals)) if vals else 0.0


def thurstone_fidelity(mu, sd, y, ysd=None, eps=1e-8):
    """Tsai et al. (2007) fidelity between Thurstone probabilities (DeQA-Score style), mean over i<j."""
    vals = []
    for i in range(len(mu)):
        for j in range(i + 1, len(mu)):
            p_hat = norm.cdf((mu[i] - mu[j]) / math.sqrt(sd[i] ** 2 + sd[j] ** 2 + eps))
            if ysd is None:
                p = 1.0 if y[i] > y[j] else (0.5 if y[i] == y[j] else 0.0)
            else:
                p = norm.cdf((y[i] - y[j]) / math.sqrt(ysd[i] ** 2 + ysd[j] ** 2 + eps))
            vals.append(1 - math.sqrt(p * p_hat + eps) - math.sqrt((1 - p) * (1 - p_hat) + eps))
    return float(np.mean(vals)) if vals else 0.0
