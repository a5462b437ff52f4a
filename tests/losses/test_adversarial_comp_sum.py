"""Adversarial comp-sum losses (Mao, Mohri & Zhong 2023) against slow float64 loops over the equations, closed
forms and limits (τ = 1, ρ = 1, x' = x: cross-entropy)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

import pairkit.losses as L  # noqa: E402
from pairkit.errors import InputError  # noqa: E402


def _phi_tau(u, tau):
    return math.log(1 + u) if tau == 1 else ((1 + u) ** (1 - tau) - 1) / (1 - tau)


def _slow_rho_margin(z, y, tau, rho):
    out = []
    for i in range(len(y)):
        u = 0.0
        for k in range(z.shape[1]):
            if k != int(y[i]):
                t = float(z[i, y[i]] - z[i, k])
                u += min(max(0.0, 1 - t / rho), 1.0)
        out.append(_phi_tau(u, tau))
    return torch.tensor(out, dtype=torch.float64)


def _slow_smooth(z, za, y, tau, rho, nu):
    out = []
    for i in range(len(y)):
        yi = int(y[i])
        u = sum(math.exp(float(z[i, k] - z[i, yi]) / rho) for k in range(z.shape[1]) if k != yi)
        sq = 0.0
        for k in range(z.shape[1]):
            sq += (float(za[i, yi] - za[i, k]) - float(z[i, yi] - z[i, k])) ** 2
        out.append(_phi_tau(u, tau) + nu * math.sqrt(sq))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0, 1.7, 2.0])
@pytest.mark.parametrize("rho", [0.3, 1.0, 4.0])
def test_rho_margin_comp_sum_equals_slow_loop(tau, rho):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(9, 5, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, 5, (9,), generator=g)
    got = L.adversarial_comp_sum_loss(z, y, tau=tau, rho=rho, reduction="none")
    torch.testing.assert_close(got, _slow_rho_margin(z, y, tau, rho), rtol=1e-12, atol=1e-12)


def test_rho_margin_closed_forms():
    y = torch.tensor([0, 0])
    wide = torch.tensor([[5.0, 0.0, 1.0, -3.0], [0.0, 0.5, 2.0, 1.0]], dtype=torch.float64)
    got = L.adversarial_comp_sum_loss(wide, y, tau=2.0, rho=1.0, reduction="none")
    # every margin >= ρ: 0; every margin <= 0: Φ^2(K-1) = 1 - 1/K (the MAE end of the family)
    torch.testing.assert_close(got, torch.tensor([0.0, 0.75], dtype=torch.float64))
    assert L.spec("rho_margin_comp_sum").name == "adversarial_comp_sum"


@pytest.mark.parametrize("tau", [0.0, 1.0, 1.5, 2.0])
def test_smooth_adversarial_comp_sum_equals_slow_loop(tau):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(7, 4, generator=g, dtype=torch.float64)
    za = z + 0.3 * torch.randn(7, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (7,), generator=g)
    got = L.smooth_adversarial_comp_sum_loss(z, za, y, tau=tau, rho=0.7, nu=2.5, reduction="none")
    torch.testing.assert_close(got, _slow_smooth(z, za, y, tau, 0.7, 2.5), rtol=1e-12, atol=1e-12)


def test_smooth_limits_cross_entropy_comp_sum_and_bound():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(6, 5, generator=g, dtype=torch.float64)
    za = z + torch.randn(6, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (6,), generator=g)
    ce = torch.nn.functional.cross_entropy(z, y)
    torch.testing.assert_close(L.smooth_adversarial_comp_sum_loss(z, z, y, nu=5.0), ce)
    torch.testing.assert_close(L.smooth_adversarial_comp_sum_loss(z, za, y, nu=0.0), ce)
    torch.testing.assert_close(
        L.smooth_adversarial_comp_sum_loss(z, z + 1.0, y, tau=0.5, rho=1.0), L.comp_sum_loss(z, y, tau=0.5)
    )  # a shift of every score leaves the margins unchanged
    # the smooth loss at (x, x') bounds the ρ-margin loss at x' once ν is the Lipschitz constant of the
    # exponential route: with τ = 0, Φ^0(u) = u and |e^a - e^b| <= e^max|a-b|; check only the easy ν = 0, x' = x case
    for tau in (0.0, 1.0, 2.0):
        upper = L.smooth_adversarial_comp_sum_loss(z, z, y, tau=tau, rho=0.5, reduction="none")
        assert bool((L.adversarial_comp_sum_loss(z, y, tau=tau, rho=0.5, reduction="none") <= upper + 1e-12).all())


def test_smooth_gradient_finite_at_no_perturbation_and_shapes_checked():
    z = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 3])
    L.smooth_adversarial_comp_sum_loss(z, z.detach().clone(), y).backward()
    assert torch.isfinite(z.grad).all()
    with pytest.raises(InputError, match="adversarial_logits"):
        L.smooth_adversarial_comp_sum_loss(z, torch.zeros(3, 5), y)
    with pytest.raises(InputError, match="rho"):
        L.get("adv_comp_sum")(z, z, y, rho=0.0)
