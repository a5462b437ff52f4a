"""Classification losses against torch, closed forms and references written from the authors' code."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import pairkit.losses as L
from pairkit.errors import InputError


def _batch(n=8, k=5, seed=0, dtype=torch.float64, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g, dtype=dtype) * scale
    y = torch.randint(0, k, (n,), generator=g)
    return z, y


# ------------------------------------------------------------------------------------- cross-entropy


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.35])
def test_cross_entropy_matches_torch(smoothing):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3, 4, 6, generator=g, dtype=torch.float64)  # [batch, time, classes]
    y = torch.randint(0, 6, (3, 4), generator=g)
    want = F.cross_entropy(z.permute(0, 2, 1), y, label_smoothing=smoothing, reduction="none")
    torch.testing.assert_close(L.cross_entropy(z, y, label_smoothing=smoothing, reduction="none"), want)
    torch.testing.assert_close(L.cross_entropy(z, y, label_smoothing=smoothing), want.mean())
    # torch's ignore_index == masking
    y_pad = y.clone()
    y_pad[0, 2:] = -100
    torch.testing.assert_close(
        L.cross_entropy(z, y_pad, label_smoothing=smoothing, mask=y_pad != -100),
        F.cross_entropy(z.permute(0, 2, 1), y_pad, label_smoothing=smoothing, ignore_index=-100),
    )


def test_focal_against_reference_and_ce_limit():
    z, y = _batch(seed=2)
    p = torch.softmax(z, -1).gather(1, y[:, None]).squeeze(1)
    alpha = torch.tensor([0.1, 0.2, 0.3, 0.25, 0.15], dtype=torch.float64)
    want = -alpha[y] * (1 - p) ** 2.5 * torch.log(p)
    torch.testing.assert_close(L.focal_loss(z, y, gamma=2.5, alpha=alpha, reduction="none"), want)
    torch.testing.assert_close(L.focal_loss(z, y, gamma=0.0), F.cross_entropy(z, y))
    torch.testing.assert_close(L.focal_loss(z, y, gamma=1.0, alpha=0.25), (-0.25 * (1 - p) * torch.log(p)).mean())


@pytest.mark.parametrize(("epsilon", "smoothing"), [(1.0, 0.0), (-0.5, 0.0), (2.0, 0.1)])
def test_poly1_matches_reference(epsilon, smoothing):
    # PolyLoss reference implementation: CE (with label smoothing) + eps * (1 - sum(smoothed_onehot * softmax))
    z, y = _batch(seed=3)
    k = z.shape[1]
    onehot = F.one_hot(y, k).to(z.dtype) * (1 - smoothing) + smoothing / k
    pt = (onehot * torch.softmax(z, -1)).sum(-1)
    want = F.cross_entropy(z, y, label_smoothing=smoothing, reduction="none") + epsilon * (1 - pt)
    torch.testing.assert_close(
        L.poly1_cross_entropy(z, y, epsilon=epsilon, label_smoothing=smoothing, reduction="none"), want
    )


# -------------------------------------------------------------------------------------------- Z-loss


def test_z_loss_closed_form():
    z, y = _batch(seed=4)
    x = z.numpy()
    std = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    zy = std[np.arange(len(y)), y.numpy()]
    a, b = 0.5, 2.0
    want = np.log1p(np.exp(a * (b - zy))) / a
    np.testing.assert_allclose(L.z_loss(z, y, a=a, b=b, reduction="none").numpy(), want, rtol=1e-12)


_logits = st.lists(st.floats(-20, 20, allow_nan=False), min_size=4, max_size=4)


@settings(max_examples=50, deadline=None)
@given(
    row=_logits,
    label=st.integers(0, 3),
    shift=st.floats(-1e3, 1e3, allow_nan=False),
    scale=st.floats(1e-2, 1e2, allow_nan=False),
)
def test_z_loss_shift_and_scale_invariant(row, label, shift, scale):
    z = torch.tensor([row], dtype=torch.float64)
    assume(z.std() > 1e-3)  # below that the shifted logits lose their spread to rounding
    y = torch.tensor([label])
    base = L.z_loss(z, y, a=2.0, b=1.0)
    moved = L.z_loss(scale * z + shift, y, a=2.0, b=1.0)
    assert math.isclose(base.item(), moved.item(), rel_tol=1e-6, abs_tol=1e-9)


def test_z_loss_constant_logits_finite():
    z = torch.zeros(2, 4, requires_grad=True)
    out = L.z_loss(z, torch.tensor([0, 3]))
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(z.grad).all()


# ---------------------------------------------------------------------------------------- LDR / ALDR


def _ref_ldr(z, y, lam, margin, normalize=True):
    # structure of the authors' LDR-KL code: softplus scores normalised by their mean, margin on k != y,
    # max-shifted log-mean-exp of the gaps divided by lambda
    k = z.shape[1]
    onehot = F.one_hot(y, k).to(z.dtype)
    s = z
    if normalize:
        s = F.softplus(z)
        s = s / s.mean(1, keepdim=True)
    gaps = margin * (1 - onehot) + s - (s * onehot).sum(1, keepdim=True)
    gaps = gaps / lam
    top = gaps.max(1, keepdim=True).values
    return (lam * (torch.log(torch.exp(gaps - top).mean(1, keepdim=True)) + top)).squeeze(1)


def _ref_aldr(z, y, lam0, alpha, margin, old=None):
    k = z.shape[1]
    s = F.softplus(z)
    s = s / (s.abs().sum(1, keepdim=True) / k)
    old = torch.full((z.shape[0], 1), lam0, dtype=z.dtype) if old is None else old[:, None]
    q = torch.softmax(s / old, 1)
    kl = (q * torch.log(k * q)).sum(1, keepdim=True)
    lam = (lam0 - lam0 * kl / (alpha * math.log(k))).detach()
    extra = -0.5 * alpha * math.log(k) / lam0 * (lam - lam0) ** 2
    onehot = F.one_hot(y, k).to(z.dtype)
    gaps = (margin * (1 - onehot) + s - (s * onehot).sum(1, keepdim=True)) / lam
    return (lam * torch.log(torch.exp(gaps).mean(1, keepdim=True)) + extra).squeeze(1)


@pytest.mark.parametrize(("lam", "margin"), [(1.0, 1.0), (0.3, 2.0), (5.0, 0.0)])
def test_ldr_kl_matches_reference(lam, margin):
    z, y = _batch(seed=5)
    torch.testing.assert_close(
        L.ldr_kl_loss(z, y, lam=lam, margin=margin, reduction="none"), _ref_ldr(z, y, lam, margin)
    )


def test_ldr_kl_special_cases():
    z, y = _batch(seed=6)
    k = z.shape[1]
    # raw logits, no margin, lambda = 1: cross-entropy minus log K
    torch.testing.assert_close(
        L.ldr_kl_loss(z, y, lam=1.0, margin=0.0, normalize_scores=False, reduction="none"),
        F.cross_entropy(z, y, reduction="none") - math.log(k),
    )
    # lambda -> 0: the Crammer-Singer hinge max_k (c 1[k != y] + z_k - z_y)
    onehot = F.one_hot(y, k).to(z.dtype)
    hinge = (1.0 * (1 - onehot) + z - (z * onehot).sum(1, keepdim=True)).max(1).values
    small = L.ldr_kl_loss(z, y, lam=1e-4, margin=1.0, normalize_scores=False, reduction="none")
    torch.testing.assert_close(small, hinge, atol=1e-3, rtol=0)


def test_aldr_kl_matches_reference_and_state():
    z, y = _batch(seed=7)
    a = z.clone().requires_grad_(True)
    b = z.clone().requires_grad_(True)
    got = L.aldr_kl_loss(a, y, lambda_ref=1.0, alpha=2.0, margin=1.0, reduction="none")
    want = _ref_aldr(b, y, 1.0, 2.0, 1.0)
    torch.testing.assert_close(got, want)
    got.sum().backward()
    want.sum().backward()
    torch.testing.assert_close(a.grad, b.grad)
    old = torch.linspace(0.6, 1.4, 8, dtype=torch.float64)
    torch.testing.assert_close(
        L.aldr_kl_loss(z, y, lambdas=old, alpha=3.0, reduction="none"), _ref_aldr(z, y, 1.0, 3.0, 1.0, old)
    )
    with pytest.raises(InputError, match="alpha"):
        L.aldr_kl_loss(z, y, alpha=1.0)


# -------------------------------------------------------------------------------------- comp-sum family


def test_comp_sum_family_closed_forms():
    z, y = _batch(seed=8)
    p = torch.softmax(z, -1).gather(1, y[:, None]).squeeze(1)
    none = partial(L.comp_sum_loss, reduction="none")
    torch.testing.assert_close(none(z, y, tau=1.0), F.cross_entropy(z, y, reduction="none"))
    torch.testing.assert_close(none(z, y, tau=2.0), 1 - p)
    torch.testing.assert_close(none(z, y, tau=0.0), 1 / p - 1)
    torch.testing.assert_close(none(z, y, tau=1.5), (p**0.5 - 1) / (1 - 1.5))
    for q in (0.1, 0.7, 1.0):
        torch.testing.assert_close(L.generalized_cross_entropy(z, y, q=q, reduction="none"), (1 - p**q) / q)
    near_ce = L.generalized_cross_entropy(z, y, q=1e-6, reduction="none")
    torch.testing.assert_close(near_ce, F.cross_entropy(z, y, reduction="none"), rtol=1e-4, atol=1e-5)
    onehot = F.one_hot(y, z.shape[1]).to(z.dtype)
    torch.testing.assert_close(L.mae_loss(z, y, reduction="none"), (onehot - torch.softmax(z, -1)).abs().sum(-1))


# --------------------------------------------------------------------------------------------------- P2C


def _ref_p2c(z1, z2, y, r1, r2, pref, lam_pref, lam_cons, lam_div):
    # written after the authors' training loop (src/train.py, train_preference): pref codes 1 (x1 better),
    # 0 (x2 better), 2 (tie); the per-head scores are [B, 1] tensors
    batch = z1.shape[0]
    n_heads = r1.shape[1]
    heads1 = [r1[:, m : m + 1] for m in range(n_heads)]
    heads2 = [r2[:, m : m + 1] for m in range(n_heads)]
    p1_code, p2_code = pref.clone(), pref.clone()
    p1_code[p1_code == 2] = 0
    p2_code[p2_code == 2] = 1
    label = torch.zeros(batch, 2, dtype=z1.dtype)
    label[torch.arange(batch), p1_code] += 0.5
    label[torch.arange(batch), p2_code] += 0.5
    loss_cls = (0.5 * F.cross_entropy(z1, y, reduction="none") + 0.5 * F.cross_entropy(z2, y, reduction="none")).mean()
    delta = (z1.softmax(-1) - z2.softmax(-1))[torch.arange(batch), y]
    zeros = torch.zeros(batch, dtype=z1.dtype)
    cons = (pref == 1).to(z1.dtype) * torch.max(zeros, -delta)
    cons = cons + (pref == 0).to(z1.dtype) * torch.max(zeros, delta)
    cons = cons + (pref == 2).to(z1.dtype) * torch.max(zeros, delta.abs())
    loss_cons = cons.mean()
    probs = []
    loss_pref = 0
    for a, b in zip(heads1, heads2):
        pr = torch.cat([torch.exp(b), torch.exp(a)], -1) / (torch.exp(b) + torch.exp(a))
        loss_pref = loss_pref + (-label * torch.log(pr + 1e-8)).sum(-1).mean()
        probs.append(pr)
    loss_pref = loss_pref / n_heads
    sim = 0
    for i in range(n_heads):
        for j in range(n_heads):
            if i != j:
                sim = sim + (-probs[i].detach() * torch.log(probs[j] + 1e-8)).sum(-1).mean()
    loss_div = sim / (n_heads * (n_heads - 1))
    return loss_cls + lam_cons * loss_cons + lam_pref * loss_pref - lam_div * loss_div


def test_p2c_matches_authors_loop():
    g = torch.Generator().manual_seed(9)
    z1, z2 = (torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(2))
    y = torch.randint(0, 4, (6,), generator=g)
    r1, r2 = (torch.randn(6, 3, generator=g, dtype=torch.float64) for _ in range(2))
    codes = torch.tensor([1, 0, 2, 1, 2, 0])
    outcome = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.5, 0.0], dtype=torch.float64)
    leaves = [x.clone().requires_grad_(True) for x in (z1, z2, r1, r2)]
    got = L.p2c_loss(*leaves[:2], y, *leaves[2:], outcome, lambda_pref=0.7, lambda_cons=1.0, lambda_div=0.1)
    ref_leaves = [x.clone().requires_grad_(True) for x in (z1, z2, r1, r2)]
    want = _ref_p2c(*ref_leaves[:2], y, *ref_leaves[2:], codes, 0.7, 1.0, 0.1)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)  # the reference adds 1e-8 inside its logs
    got.backward()
    want.backward()
    for a, b in zip(leaves, ref_leaves):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7)


def test_p2c_single_head_and_bad_preferences():
    z, y = _batch(n=4, k=3, seed=10)
    r = torch.randn(4, dtype=torch.float64)
    out = L.p2c_loss(z, z.flip(0), y, r, r.flip(0), torch.tensor([1.0, 0.0, 0.5, 1.0]))
    assert torch.isfinite(out)
    with pytest.raises(InputError, match="preferences"):
        L.p2c_loss(z, z, y, r, r, torch.tensor([1.0, 0.3, 0.5, 1.0]))
    with pytest.raises(InputError, match="preference logits"):
        L.p2c_loss(z, z, y, torch.randn(3, 2), torch.randn(3, 2), torch.ones(4))


# ---------------------------------------------------------------------------------------- properties
# (gradients in float64, incl. option variants: the registry-driven matrix, test_behaviour.py)


def test_bad_inputs():
    z, y = _batch()
    with pytest.raises(InputError, match="leading shape"):
        L.cross_entropy(z, y[:-1])
    with pytest.raises(InputError, match=r"class indices in \[0, 5\)"):
        L.focal_loss(z, torch.full_like(y, 5))
    with pytest.raises(InputError, match="integer"):
        L.z_loss(z, y.float())
    with pytest.raises(InputError, match="label_smoothing"):
        L.cross_entropy(z, y, label_smoothing=1.5)
    with pytest.raises(InputError, match="q must"):
        L.generalized_cross_entropy(z, y, q=0.0)
    with pytest.raises(InputError, match="alpha"):
        L.focal_loss(z, y, alpha=torch.ones(3))
