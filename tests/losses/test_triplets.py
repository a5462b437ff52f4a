"""Softmax-ratio (Triplet network) loss: vs a slow per-triplet reference; chunked (checkpointed) == one chunk."""

from __future__ import annotations

import math

import pytest
import torch

import pairkit.losses as L
from pairkit.errors import InputError
from pairkit.losses import triplets as T


def _batch(n=14, d=4, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randint(0, classes, (n,), generator=g)


def _reference(x, y):
    """Mean over triplets of ||(d+, d- - 1)||^2 from the paper's softmax of the two distances; per-anchor sums."""
    per_anchor, everything = [], []
    n = len(y)
    for a in range(n):
        mine = []
        for p in range(n):
            for q in range(n):
                if p != a and y[p] == y[a] and y[q] != y[a]:
                    dp, dn = float((x[a] - x[p]).norm()), float((x[a] - x[q]).norm())
                    d_plus = math.exp(dp) / (math.exp(dp) + math.exp(dn))
                    d_minus = math.exp(dn) / (math.exp(dp) + math.exp(dn))
                    mine.append(d_plus**2 + (d_minus - 1) ** 2)
        everything += mine
        per_anchor.append(sum(mine))
    return sum(everything) / len(everything), per_anchor


@pytest.mark.parametrize("normalize", [False, True])
def test_matches_slow_reference(normalize):
    x, y = _batch()
    ref_x = torch.nn.functional.normalize(x, dim=1) if normalize else x
    mean, per_anchor = _reference(ref_x, y)
    torch.testing.assert_close(L.softmax_ratio_triplet(x, y, normalize=normalize), torch.tensor(mean, dtype=x.dtype))
    none = L.softmax_ratio_triplet(x, y, normalize=normalize, reduction="none")
    torch.testing.assert_close(none, torch.tensor(per_anchor, dtype=x.dtype))


def test_chunked_checkpointed_equals_one_chunk(monkeypatch):
    x, y = _batch(seed=1)
    w = torch.rand(len(y), dtype=x.dtype)
    x1 = x.clone().requires_grad_(True)
    whole = L.softmax_ratio_triplet(x1, y, weights=w)
    (g1,) = torch.autograd.grad(whole, x1)
    monkeypatch.setattr(T, "CHUNK_ELEMENTS", 1)  # one anchor per chunk, recomputed in backward
    x2 = x.clone().requires_grad_(True)
    chunked = L.softmax_ratio_triplet(x2, y, weights=w)
    (g2,) = torch.autograd.grad(chunked, x2)
    torch.testing.assert_close(whole, chunked, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda z: L.softmax_ratio_triplet(z, y[:8]), (x[:8].clone().requires_grad_(),))


def test_given_triplets_equal_all_triplets_and_weights():
    x, y = _batch(seed=2)
    every = L.triplet_margin_miner(x, y, margin=1e9)  # every triplet, as index tuples
    torch.testing.assert_close(
        L.softmax_ratio_triplet(x, y, triplets=every, normalize=True), L.softmax_ratio_triplet(x, y, normalize=True)
    )
    w = torch.rand(len(y), dtype=x.dtype)
    none = L.softmax_ratio_triplet(x, y, reduction="none")
    counts = torch.bincount(every[0], minlength=len(y)).to(x.dtype)
    torch.testing.assert_close(L.softmax_ratio_triplet(x, y, weights=w), (w * none).sum() / (w * counts).sum())
    assert float(L.softmax_ratio_triplet(x, torch.zeros_like(y))) == 0.0  # no negatives: no triplets
    with pytest.raises(InputError, match="reduction"):
        L.softmax_ratio_triplet(x, y, reduction="avg")
