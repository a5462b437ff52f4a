"""Miners: the same index sets as pytorch-metric-learning's miners; chunked == one chunk; mined triplets in the loss."""

from __future__ import annotations

import math

import pytest
import torch

import pairkit.losses as L
from pairkit.errors import InputError
from pairkit.losses import miners as M

pml_miners = pytest.importorskip("pytorch_metric_learning.miners")
from pytorch_metric_learning import losses as pml_losses  # noqa: E402
from pytorch_metric_learning import reducers  # noqa: E402
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu  # noqa: E402


def _batch(n=30, d=5, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randint(0, classes, (n,), generator=g)


def _set(*idx):
    return set(zip(*(i.tolist() for i in idx)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_hard_equals_pml(seed):
    x, y = _batch(seed=seed)
    ours = M.batch_hard_miner(x, y)
    theirs = pml_miners.BatchHardMiner()(x, y)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kind", ["all", "hard", "semihard", "easy"])
@pytest.mark.parametrize("seed", [0, 1])
def test_triplet_margin_miner_equals_pml_in_order(kind, seed):
    x, y = _batch(seed=seed)
    ours = M.triplet_margin_miner(x, y, margin=0.3, type_of_triplets=kind)
    theirs = pml_miners.TripletMarginMiner(margin=0.3, type_of_triplets=kind)(x, y)
    assert len(ours[0]) > 0
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)
    if kind == "semihard":
        for a, b in zip(M.semihard_miner(x, y, margin=0.3), ours):
            assert torch.equal(a, b)


@pytest.mark.parametrize("eps", [0.1, 0.4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multi_similarity_miner_equals_pml_as_sets(eps, seed):
    x, y = _batch(seed=seed)
    a1, p, a2, n = M.multi_similarity_miner(x, y, epsilon=eps)
    b1, q, b2, m = pml_miners.MultiSimilarityMiner(epsilon=eps)(x, y)
    assert _set(a1, p) == _set(b1, q) and len(a1) == len(b1) > 0
    assert _set(a2, n) == _set(b2, m) and len(a2) == len(b2) > 0


def test_distance_weighted_probabilities_equal_pml(monkeypatch):
    x, y = _batch(n=40, d=6, seed=3)
    seen = {}

    def capture(labels, ref_labels=None, t_per_anchor=None, weights=None):
        seen["weights"] = weights
        return tuple(torch.zeros(0, dtype=torch.long) for _ in range(3))

    monkeypatch.setattr(lmu, "get_random_triplet_indices", capture)
    pml_miners.DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4)(x, y)
    xn = torch.nn.functional.normalize(x, dim=1)
    log_w = M._distance_weighted_log_weights(torch.cdist(xn, xn), x.shape[1], 0.5, 1.4)
    log_w = log_w.masked_fill(y[:, None] == y[None, :], float("-inf"))
    ours = torch.softmax(log_w, dim=1)
    torch.testing.assert_close(ours, seen["weights"], rtol=1e-9, atol=1e-12)


def test_distance_weighted_draws_follow_the_probabilities():
    """One triplet per positive pair; empirical negative frequencies match the probabilities (chi-square bound)."""
    x, y = _batch(n=12, d=4, classes=2, seed=4)
    xn = torch.nn.functional.normalize(x, dim=1)
    log_w = M._distance_weighted_log_weights(torch.cdist(xn, xn), 4, 0.5, 1.4)
    probs = torch.softmax(log_w.masked_fill(y[:, None] == y[None, :], float("-inf")), dim=1)
    ok = (probs > 0).any(1)
    a, p, n = M.distance_weighted_miner(x, y, generator=torch.Generator().manual_seed(0))
    assert _set(a, p) == {(i, j) for i in range(12) for j in range(12) if i != j and y[i] == y[j] and ok[i]}
    assert bool((y[a] == y[p]).all() and (y[a] != y[n]).all()) and 0 < int(ok.sum()) < 12
    anchor = int(torch.argmax((probs > 0).sum(1)))  # the anchor with the most admissible negatives
    g = torch.Generator().manual_seed(1)
    counts = torch.zeros(12, dtype=torch.float64)
    for _ in range(400):
        a, p, n = M.distance_weighted_miner(x, y, generator=g)
        counts += torch.bincount(n[a == anchor], minlength=12).double()
    expected = probs[anchor] * counts.sum()
    keep = expected > 0
    assert counts[~keep].sum() == 0 and int(keep.sum()) >= 3  # never a positive or an inadmissible negative
    chi2 = float(((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum())
    dof = int(keep.sum()) - 1
    assert chi2 < dof + 6 * math.sqrt(2 * dof), (chi2, dof)


@pytest.mark.parametrize("miner", ["batch_hard", "triplet", "ms", "dw"])
def test_chunked_equals_single_chunk(monkeypatch, miner):
    x, y = _batch(n=25, seed=5)
    call = {
        "batch_hard": lambda: M.batch_hard_miner(x, y),
        "triplet": lambda: M.triplet_margin_miner(x, y, type_of_triplets="semihard"),
        "ms": lambda: M.multi_similarity_miner(x, y),
        "dw": lambda: M.distance_weighted_miner(x, y, generator=torch.Generator().manual_seed(0)),
    }[miner]
    whole = call()
    monkeypatch.setattr(M, "CHUNK_ELEMENTS", 1)  # one row per chunk
    chunked = call()
    if miner == "dw":  # the draws differ with the chunking; the (anchor, positive) pairs do not
        assert _set(*whole[:2]) == _set(*chunked[:2])
        return
    for a, b in zip(whole, chunked):
        assert torch.equal(a, b)


def test_mined_triplets_in_triplet_margin_equal_pml_with_indices():
    x, y = _batch(seed=6)
    t = M.semihard_miner(x, y, margin=0.3)
    x1 = x.clone().requires_grad_(True)
    ours = L.triplet_margin(x1, y, margin=0.3, triplets=t)
    (g1,) = torch.autograd.grad(ours, x1)
    x2 = x.clone().requires_grad_(True)
    theirs = pml_losses.TripletMarginLoss(margin=0.3, reducer=reducers.MeanReducer())(x2, y, t)
    (g2,) = torch.autograd.grad(theirs, x2)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(g1, g2, rtol=1e-9, atol=1e-12)
    # all triplets given explicitly = mining="all"
    everything = M.triplet_margin_miner(x, y, margin=1e9)
    torch.testing.assert_close(L.triplet_margin(x, y, triplets=everything), L.triplet_margin(x, y))
    none = L.triplet_margin(x, y, triplets=everything, reduction="none")
    torch.testing.assert_close(none, L.triplet_margin(x, y, reduction="none"))


def test_edge_cases_and_bad_input():
    x, y = _batch(n=6)
    one_class = torch.zeros(6, dtype=torch.long)
    for out in (
        M.batch_hard_miner(x, one_class),
        M.triplet_margin_miner(x, one_class),
        M.multi_similarity_miner(x, one_class),
        M.distance_weighted_miner(x, one_class),
        M.batch_hard_miner(x[:0], y[:0]),
    ):
        assert all(i.numel() == 0 and i.dtype == torch.long for i in out)
    assert float(L.triplet_margin(x, one_class, triplets=M.batch_hard_miner(x, one_class))) == 0.0
    with pytest.raises(InputError, match="labels must have shape"):
        M.batch_hard_miner(x, y[:-1])
    with pytest.raises(InputError, match="type_of_triplets must be"):
        M.triplet_margin_miner(x, y, type_of_triplets="medium")
    with pytest.raises(InputError, match="epsilon must be"):
        M.multi_similarity_miner(x, y, epsilon=-1.0)
    with pytest.raises(InputError, match="negatives must index embedding rows 0..5, got 9"):
        L.triplet_margin(x, y, triplets=(torch.tensor([0]), torch.tensor([1]), torch.tensor([9])))
    with pytest.raises(InputError, match="not both"):
        L.triplet_margin(x, y, triplets=M.batch_hard_miner(x, y), mining="batch_hard")
