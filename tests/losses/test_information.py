"""CS-IB (Yu et al. 2024) against the authors' ``CS_QMI`` and ``CS_Div`` (log2, plain Gram sums), re-derived."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

import pairkit.losses as L  # noqa: E402


def _gram(a, b, sigma):
    return torch.exp(-(torch.cdist(a, b) ** 2) / (2 * sigma**2))


def _authors_qmi(x, y, sigma):
    n = x.shape[0]
    kx, ky = _gram(x, x, sigma), _gram(y, y, sigma)
    self1 = torch.trace(kx @ ky.T) / n**2
    self2 = kx.sum() * ky.sum() / n**4
    cross = (torch.ones(1, n, dtype=x.dtype) @ kx.T @ ky @ torch.ones(n, 1, dtype=x.dtype)) / n**3
    return (-2 * torch.log2(cross) + torch.log2(self1) + torch.log2(self2)).squeeze()


def _authors_cs_div(x, y1, y2, sigma):
    k, l1, l2, l21 = _gram(x, x, sigma), _gram(y1, y1, sigma), _gram(y2, y2, sigma), _gram(y2, y1, sigma)

    def term(h):
        return (h.sum(-1) / (k**2).sum(-1)).sum(0)

    return -2 * torch.log2(term(k * l21)) + torch.log2(term(k * l1)) + torch.log2(term(k * l2))


def _data(seed=0, n=7):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    t = torch.randn(n, 2, generator=g, dtype=torch.float64)
    y = torch.randn(n, 1, generator=g, dtype=torch.float64)
    y_hat = y + 0.3 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    return x, t, y, y_hat


def test_cs_estimators_equal_the_authors_code_in_log2():
    x, t, y, y_hat = _data()
    ln2 = math.log(2.0)
    qmi = L.cs_quadratic_mutual_information(x, t, sigma_x=1.3, sigma_t=1.3)
    torch.testing.assert_close(qmi / ln2, _authors_qmi(x, t, 1.3))
    div = L.cs_conditional_divergence(x, y, y_hat, sigma_x=0.9, sigma_y=0.9)
    torch.testing.assert_close(div / ln2, _authors_cs_div(x, y, y_hat, 0.9))
    total = L.cs_ib_loss(x, t, y, y_hat, beta=0.5, sigma_x=0.9, sigma_t=0.9, sigma_y=0.9)
    torch.testing.assert_close(total / ln2, _authors_cs_div(x, y, y_hat, 0.9) + 0.5 * _authors_qmi(x, t, 0.9))


def test_cs_estimators_closed_forms():
    x, t, y, _ = _data(1)
    # perfect predictions: the conditional divergence is exactly 0; a constant code carries no information
    assert float(L.cs_conditional_divergence(x, y, y, sigma_x=1.0, sigma_y=1.0)) == pytest.approx(0.0, abs=1e-12)
    const = torch.zeros_like(t)
    assert float(L.cs_quadratic_mutual_information(x, const, sigma_x=1.0, sigma_t=1.0)) == pytest.approx(0, abs=1e-12)
    # CS divergences are non-negative (Cauchy-Schwarz), and stay finite for far-apart points (log domain)
    assert float(L.cs_quadratic_mutual_information(x, t, sigma_x=1.0, sigma_t=1.0)) >= 0
    far = L.cs_conditional_divergence(x * 1e4, y, y + 1e4, sigma_x=1.0, sigma_y=1.0)
    assert torch.isfinite(far) and float(far) > 0
