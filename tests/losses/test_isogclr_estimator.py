"""iSogCLR's moving-average estimator: buffer updates, surrogate value, the paper's gradients; γ = 1 is the batch."""

from __future__ import annotations

import math

import pytest
import torch

import pairkit.losses as L
from pairkit.errors import InputError


def _batch(n=6, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)


def _inner_mean(q, k, tau):
    """g_i = mean_{j != i} exp((s_ij - s_ii) / tau_i) with cosine similarities."""
    qn, kn = torch.nn.functional.normalize(q, dim=1), torch.nn.functional.normalize(k, dim=1)
    s = qn @ kn.T
    n = len(q)
    off = ~torch.eye(n, dtype=torch.bool)
    e = torch.exp((s - s.diagonal()[:, None]) / tau[:, None])
    return (e * off).sum(1) / (n - 1)


def test_buffer_updates_value_and_gradients_follow_the_paper():
    q, k = _batch()
    n, gamma, rho = len(q), 0.7, 0.3
    u = torch.full((10,), float("-inf"), dtype=q.dtype)
    idx = torch.tensor([7, 1, 3, 0, 9, 4])
    expected_u = torch.zeros(10, dtype=q.dtype)
    tau0 = torch.linspace(0.2, 0.5, n, dtype=q.dtype)
    for step in range(3):  # u starts empty: first u = g (the authors' init), then (1 - γ) u + γ g
        qs, ks = q + 0.1 * step, k - 0.05 * step
        tau = tau0.clone().requires_grad_(True)
        qg = qs.clone().requires_grad_(True)
        value = L.isogclr(qg, ks, temperature=tau, rho=rho, log_u=u, indices=idx, gamma=gamma, reduction="sum")
        g = _inner_mean(qs, ks, tau0)
        expected_u[idx] = g if step == 0 else (1 - gamma) * expected_u[idx] + gamma * g
        torch.testing.assert_close(u[idx].exp(), expected_u[idx], rtol=1e-12, atol=0)
        uu = expected_u[idx]
        torch.testing.assert_close(value, (tau0 * (uu.log() + rho)).sum())  # the surrogate's value
        grad_q, grad_tau = torch.autograd.grad(value, (qg, tau))
        # the paper's gradients: tau_i * grad g_i / u_i (encoder) and log u_i + rho + tau_i dg_i/dtau_i / u_i
        qr, tr = qs.clone().requires_grad_(True), tau0.clone().requires_grad_(True)
        gi = _inner_mean(qr, ks, tr)
        want_q = torch.autograd.grad((tau0 * gi / uu).sum(), qr, retain_graph=True)[0]
        dg_dtau = torch.autograd.grad(gi.sum(), tr)[0]  # g_i depends on tau_i only
        torch.testing.assert_close(grad_q, want_q, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(grad_tau, uu.log() + rho + tau0 * dg_dtau / uu, rtol=1e-10, atol=1e-12)
    assert torch.isinf(u[[2, 5, 6, 8]]).all()  # rows not in the batch are untouched


def test_gamma_one_is_the_mini_batch_objective():
    q, k = _batch(seed=1)
    tau = torch.full((6,), 0.3, dtype=q.dtype)
    a, b = (x.clone().requires_grad_(True) for x in (q, q))
    plain = L.isogclr(a, k, temperature=tau, rho=0.2)
    u = torch.zeros(6, dtype=q.dtype)
    ma = L.isogclr(b, k, temperature=tau, rho=0.2, log_u=u, indices=torch.arange(6), gamma=1.0)
    torch.testing.assert_close(plain, ma)
    torch.testing.assert_close(torch.autograd.grad(plain, a)[0], torch.autograd.grad(ma, b)[0])
    torch.testing.assert_close(u, _inner_mean(q, k, tau).log())
    assert math.isfinite(float(ma.detach()))


def test_bad_buffer_and_indices():
    q, k = _batch()
    u = torch.zeros(8, dtype=q.dtype)
    with pytest.raises(InputError, match="give both"):
        L.isogclr(q, k, temperature=0.1, rho=0.1, log_u=u)
    with pytest.raises(InputError, match="distinct"):
        L.isogclr(q, k, temperature=0.1, rho=0.1, log_u=u, indices=torch.tensor([0, 0, 1, 2, 3, 4]))
    with pytest.raises(InputError, match="got 8"):
        L.isogclr(q, k, temperature=0.1, rho=0.1, log_u=u, indices=torch.tensor([0, 1, 2, 3, 4, 8]))
    with pytest.raises(InputError, match="gamma must be"):
        L.isogclr(q, k, temperature=0.1, rho=0.1, log_u=u, indices=torch.arange(6), gamma=0.0)


def _libauc_loop(batches, n_total, tau0, tau_min, tau_max, rho, gamma, eta, beta):
    """The temperature update of the authors' GCLoss_v1 (LibAUC, enable_isogclr) one example at a time, with the
    paper's h_ij = s_ij - s_ii over the other keys: u (first visit: g), the gradient in tau, momentum, projection."""
    u = [None] * n_total
    tau = [tau0] * n_total
    m = [0.0] * n_total
    values = []
    for q, k, idx in batches:
        qn, kn = torch.nn.functional.normalize(q, dim=1), torch.nn.functional.normalize(k, dim=1)
        n = len(idx)
        step_values = []
        for a, i in enumerate(idx.tolist()):
            hs = [float(qn[a] @ kn[j] - qn[a] @ kn[a]) for j in range(n) if j != a]
            g = sum(math.exp(h / tau[i]) for h in hs) / (n - 1)
            u[i] = g if u[i] is None else (1 - gamma) * u[i] + gamma * g
            step_values.append(tau[i] * (math.log(u[i]) + rho))
            grad = math.log(u[i]) + rho - sum(math.exp(h / tau[i]) / u[i] * h / tau[i] for h in hs) / (n - 1)
            m[i] = (1 - beta) * m[i] + beta * grad
            tau[i] = min(max(tau[i] - eta * m[i], tau_min), tau_max)
        values.append(sum(step_values) / n)
    return values, tau, u


def test_temperature_state_follows_the_authors_update():
    g = torch.Generator().manual_seed(5)
    batches = []
    for idx in ([0, 3, 5, 6], [1, 3, 4, 0], [6, 2, 3, 5], [0, 3, 5, 6]):
        batches.append((torch.randn(4, 3, generator=g, dtype=torch.float64),
                        torch.randn(4, 3, generator=g, dtype=torch.float64), torch.tensor(idx)))  # fmt: skip
    settings = dict(tau_min=0.05, tau_max=0.7, rho=0.3, gamma=0.8, eta=0.5, beta=0.9)
    values, tau, u = _libauc_loop(batches, 7, 0.2, **settings)
    state = L.ISogCLRTemperatures(7, tau_init=0.2, dtype=torch.float64, **settings)
    for (q, k, idx), want in zip(batches, values):
        assert float(state(q, k, idx)) == pytest.approx(want, rel=1e-10)
    torch.testing.assert_close(state.tau, torch.tensor(tau, dtype=torch.float64), rtol=1e-10, atol=1e-12)
    seen = [i for i in range(7) if u[i] is not None]
    torch.testing.assert_close(state.log_u[seen].exp(), torch.tensor([u[i] for i in seen], dtype=torch.float64))
    assert any(t in (0.05, 0.7) for t in tau) or len(set(tau)) > 1  # the update moved (and may clamp) them
    assert set(state.state_dict()) == {"log_u", "tau", "grad_tau"}


def test_temperature_state_trains_the_encoder_and_refuses_bad_settings():
    torch.manual_seed(0)
    enc = torch.nn.Linear(3, 4).double()
    state = L.ISogCLRTemperatures(6, dtype=torch.float64)
    x = torch.randn(6, 3, dtype=torch.float64)
    loss = state(enc(x), enc(x + 0.1), torch.arange(6))
    loss.backward()
    assert enc.weight.grad is not None and bool(enc.weight.grad.abs().sum() > 0)
    with pytest.raises(InputError, match="tau_min <= tau_init <= tau_max"):
        L.ISogCLRTemperatures(6, tau_init=1.0)
    with pytest.raises(InputError, match="num_examples"):
        L.ISogCLRTemperatures(0)
    with pytest.raises(InputError, match="rows of log_u"):
        state(x, x, torch.tensor([0, 1, 2, 3, 4, 9]))
