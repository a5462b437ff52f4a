"""Symile: vs a slow reference over every candidate tuple, the shuffled variant, M = 2 == CLIP, chunking."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import pairkit.losses as L
from pairkit.errors import InputError
from pairkit.losses import contrastive_multiview as MV


def _views(m=3, n=5, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, n, d, generator=g, dtype=torch.float64)


def _mip(vectors):
    out = torch.ones_like(vectors[0])
    for v in vectors:
        out = out * v
    return float(out.sum())


def _reference_all(x, s):
    """Per example: mean over anchor modalities of -log softmax over every tuple of the other modalities' rows."""
    m, n, _ = x.shape
    out = []
    for i in range(n):
        total = 0.0
        for a in range(m):
            others = [o for o in range(m) if o != a]
            logits = [
                s * _mip([x[a, i]] + [x[o, j] for o, j in zip(others, combo)])
                for combo in itertools.product(range(n), repeat=m - 1)
            ]
            top = max(logits)
            lse = top + math.log(sum(math.exp(v - top) for v in logits))
            total += lse - s * _mip([x[o, i] for o in range(m)])
        out.append(total / m)
    return torch.tensor(out, dtype=x.dtype)


@pytest.mark.parametrize("m", [3, 4])
def test_all_combinations_match_slow_reference(m):
    x = _views(m=m, n=4 if m == 4 else 5)
    ours = L.symile(x, logit_scale=2.0, reduction="none")
    torch.testing.assert_close(ours, _reference_all(x, 2.0), rtol=1e-10, atol=1e-10)


def test_shuffled_negatives_match_reference_with_the_same_permutations():
    x = _views(seed=1)
    m, n, _ = x.shape
    ours = L.symile(
        x, negatives="shuffled", logit_scale=1.5, generator=torch.Generator().manual_seed(3), reduction="none"
    )
    g = torch.Generator().manual_seed(3)
    want = torch.zeros(n, dtype=x.dtype)
    for a in range(m):
        perms = {o: torch.randperm(n, generator=g) for o in range(m) if o != a}
        for i in range(n):
            logits = []
            for j in range(n):
                rows = {o: (i if j == i else int(perms[o][j])) for o in perms}
                logits.append(1.5 * _mip([x[a, i]] + [x[o, rows[o]] for o in perms]))
            want[i] += (torch.logsumexp(torch.tensor(logits, dtype=x.dtype), 0) - logits[i]) / m
    torch.testing.assert_close(ours, want, rtol=1e-10, atol=1e-10)


def test_two_views_normalised_is_clip():
    x = _views(m=2, n=7, seed=2)
    torch.testing.assert_close(L.symile(x, logit_scale=1 / 0.1, normalize=True), L.clip(x[0], x[1], temperature=0.1))


def test_chunked_checkpointed_equals_one_chunk_and_learnable_scale(monkeypatch):
    x = _views(n=6, seed=4)
    s1 = torch.tensor(1.3, dtype=x.dtype, requires_grad=True)
    x1 = x.clone().requires_grad_(True)
    whole = L.symile(x1, logit_scale=s1)
    g1 = torch.autograd.grad(whole, (x1, s1))
    monkeypatch.setattr(MV, "CHUNK_ELEMENTS", 1)
    s2 = torch.tensor(1.3, dtype=x.dtype, requires_grad=True)
    x2 = x.clone().requires_grad_(True)
    chunked = L.symile(x2, logit_scale=s2)
    g2 = torch.autograd.grad(chunked, (x2, s2))
    torch.testing.assert_close(whole, chunked, rtol=1e-12, atol=1e-12)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_bad_input():
    with pytest.raises(InputError, match="at least 2 views"):
        L.symile(_views(m=1))
    with pytest.raises(InputError, match=r"views must be a tensor \[M, N, D\]"):
        L.symile(_views()[0])
    with pytest.raises(InputError, match="negatives must be"):
        L.symile(_views(), negatives="some")


@pytest.mark.parametrize("normalize", [False, True])
def test_wasserstein_dependency_matches_pairwise_reference(normalize):
    g = torch.Generator().manual_seed(5)
    q, k = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(6, 3, generator=g, dtype=torch.float64)
    qs, ks = (torch.nn.functional.normalize(x, dim=1) for x in (q, k)) if normalize else (q, k)
    want = [-float(qs[i] @ ks[i]) + sum(float(qs[i] @ ks[j]) for j in range(6) if j != i) / 5 for i in range(6)]
    ours = L.wasserstein_dependency(q, k, normalize=normalize, reduction="none")
    torch.testing.assert_close(ours, torch.tensor(want, dtype=q.dtype))
    # mean = -(E_joint f - E_marginals f) with the off-diagonal pairs as the marginal sample
    f = qs @ ks.T
    off = ~torch.eye(6, dtype=torch.bool)
    torch.testing.assert_close(
        L.wasserstein_dependency(q, k, normalize=normalize), -(f.diagonal().mean() - f[off].mean())
    )
    assert float(L.wasserstein_dependency(q[:1], k[:1])) == 0.0


def _slow_mv(x, tau, kind):
    """MV-InfoNCE / MV-DHEL per example, one similarity at a time (unit vectors, s = u.v / tau)."""
    u = torch.nn.functional.normalize(x, dim=2)
    m, n, _ = u.shape

    def s(a, b):
        return math.exp(float(u[a[0], a[1]] @ u[b[0], b[1]]) / tau)

    out = []
    for i in range(n):
        if kind == "mv_infonce":
            num = sum(s((l, i), (q, i)) for l in range(m) for q in range(m) if q != l)
            den = sum(s((l, i), (q, j)) for l in range(m) for q in range(m) for j in range(n) if (q, j) != (l, i))
            out.append(-math.log(num / den))
        else:
            num = sum(s((l, i), (q, i)) for l in range(m) for q in range(l + 1, m))
            energy = sum(math.log(sum(s((l, i), (l, j)) for j in range(n) if j != i)) for l in range(m))
            out.append(energy - math.log(num))
    return torch.tensor(out, dtype=x.dtype)


@pytest.mark.parametrize("kind", ["mv_infonce", "mv_dhel"])
@pytest.mark.parametrize("m", [2, 4])
def test_multi_view_losses_match_slow_reference(kind, m):
    x = _views(m=m, n=5, seed=6)
    ours = L.get(kind)(x, temperature=0.5, reduction="none")
    torch.testing.assert_close(ours, _slow_mv(x, 0.5, kind), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["mv_infonce", "mv_dhel"])
def test_multi_view_chunked_equals_dense(kind):
    x = _views(m=3, n=6, seed=7)
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    dense = L.get(kind)(a, temperature=0.3)
    chunked = L.get(kind)(b, temperature=0.3, chunk_size=2)
    torch.testing.assert_close(dense, chunked, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.autograd.grad(dense, a)[0], torch.autograd.grad(chunked, b)[0])
