"""Chunked SigLIP and CWCL equal their dense forms in value and gradient (also of a learnable scale and bias)."""

from __future__ import annotations

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
