"""Chunked SigLIP and CWCL equal their dense forms in value and gradient (also of a learnable scale and bias)."""

from __future__ import annotations

import math

import pytest
import torch

import pairkit.losses as L
from pairkit.errors import InputError


def _pair(n=9, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)


def _grads(fn, *leaves):
    leaves = [x.detach().clone().requires_grad_(True) for x in leaves]
    value = fn(*leaves)
    return value.detach(), torch.autograd.grad(value, leaves)


@pytest.mark.parametrize("chunk", [1, 4, 100])
@pytest.mark.parametrize("normalize", [True, False])
def test_siglip_chunked_equals_dense(chunk, normalize):
    q, k = _pair()
    t, b = torch.tensor(3.0, dtype=q.dtype), torch.tensor(-2.0, dtype=q.dtype)

    def run(chunk_size):
        return _grads(
            lambda q, k, t, b: L.siglip(q, k, logit_scale=t, logit_bias=b, normalize=normalize, chunk_size=chunk_size),
            q, k, t, b,
        )  # fmt: skip

    dense, chunked = run(None), run(chunk)
    torch.testing.assert_close(dense[0], chunked[0], rtol=1e-12, atol=1e-12)
    for a, c in zip(dense[1], chunked[1]):
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)
    # the dense form itself: the paper's -sum_j log sigmoid(y_ij z_ij) with y = +1 on the diagonal only
    qn, kn = (torch.nn.functional.normalize(x, dim=1) for x in (q, k)) if normalize else (q, k)
    z = 3.0 * qn @ kn.T - 2.0
    y = 2 * torch.eye(len(q), dtype=q.dtype) - 1
    torch.testing.assert_close(dense[0], -torch.nn.functional.logsigmoid(y * z).sum(1).mean())


@pytest.mark.parametrize("chunk", [1, 4])
@pytest.mark.parametrize("normalize", [True, False])
def test_cwcl_linear_form_equals_dense(chunk, normalize):
    q, k = _pair(seed=1)

    def run(chunk_size):
        return _grads(
            lambda q, k: L.cwcl(q, k, temperature=0.3, normalize=normalize, chunk_size=chunk_size, reduction="none")
            .pow(2).sum(),  # a non-linear read-out so that every row's gradient is checked
            q, k,
        )  # fmt: skip

    dense, chunked = run(None), run(chunk)
    torch.testing.assert_close(dense[0], chunked[0], rtol=1e-10, atol=1e-12)
    for a, c in zip(dense[1], chunked[1]):
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-12)


def test_bad_chunk_size():
    q, k = _pair()
    with pytest.raises(InputError, match="chunk_size"):
        L.siglip(q, k, chunk_size=0)
    with pytest.raises(InputError, match="chunk_size"):
        L.cwcl(q, k, chunk_size=-2)


@pytest.mark.parametrize("chunk", [1, 3])
def test_decoupled_softmax_chunked_equals_dense(chunk):
    g = torch.Generator().manual_seed(2)
    q, k = torch.randn(7, 4, generator=g, dtype=torch.float64), torch.randn(11, 4, generator=g, dtype=torch.float64)
    targets = torch.rand(7, 11, generator=g) < 0.3
    targets[0] = False  # a query without positives
    targets[1] = True  # a query without negatives
    t = torch.tensor(0.2, dtype=q.dtype)

    def run(chunk_size):
        return _grads(
            lambda q, k, t: L.decoupled_softmax(q, k, targets, temperature=t, chunk_size=chunk_size, reduction="none")
            .pow(2).sum(),
            q, k, t,
        )  # fmt: skip

    dense, chunked = run(None), run(chunk)
    torch.testing.assert_close(dense[0], chunked[0], rtol=1e-12, atol=1e-12)
    for a, c in zip(dense[1], chunked[1]):
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)


def _dexml_data(seed=3, n=6, m=9):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(n, 4, generator=g, dtype=torch.float64), torch.randn(m, 4, generator=g, dtype=torch.float64)
    targets = torch.rand(n, m, generator=g) < 0.3
    targets[0] = False  # no positives: contributes 0
    return q, k, targets


def test_dexml_topk_matches_a_root_finder_reference():
    from scipy.optimize import brentq

    q, k, targets = _dexml_data()
    tau, alpha, kk = 0.2, 2.0, 3
    z = (torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(k, dim=1).T / tau).tolist()
    want = []
    for i, row in enumerate(z):

        def excess(t, row=row):
            return sum(1 / (1 + math.exp(-alpha * (v + t))) for v in row) - kk

        t = brentq(excess, -100, 100, xtol=1e-14)
        logs = [-math.log1p(math.exp(-alpha * (row[j] + t))) for j in range(len(row)) if targets[i, j]]
        want.append(-sum(logs) / len(logs) if logs else 0.0)
    ours = L.dexml_topk(q, k, targets, k=kk, alpha=alpha, temperature=tau, reduction="none")
    torch.testing.assert_close(ours, torch.tensor(want, dtype=q.dtype), rtol=1e-9, atol=1e-10)


def test_dexml_topk_gradients_are_the_implicit_derivative_and_chunking_is_exact():
    q, k, targets = _dexml_data(seed=4)
    fn = lambda a, b: L.dexml_topk(a, b, targets, k=2, alpha=1.5, temperature=0.3)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (q.clone().requires_grad_(), k.clone().requires_grad_()), eps=1e-6, atol=1e-6)
    dense = _grads(fn, q, k)
    chunked = _grads(lambda a, b: L.dexml_topk(a, b, targets, k=2, alpha=1.5, temperature=0.3, chunk_size=2), q, k)
    torch.testing.assert_close(dense[0], chunked[0], rtol=1e-12, atol=1e-12)
    for a, c in zip(dense[1], chunked[1]):
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)
    with pytest.raises(InputError, match="k must be below the number of keys"):
        L.dexml_topk(q, k, targets, k=9)
