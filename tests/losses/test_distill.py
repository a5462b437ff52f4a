"""Distillation losses against independent references written from the papers / authors' code.

torchdistill could not be installed next to the pinned torch (it pulls a different torch build), so the
references below are re-derived from the papers and the authors' public training code:
Hinton et al. (2015); DKD: Zhao et al. (2022), megvii-research/mdistiller ``dkd_loss``; NKD: Yang et al.
(2023), yzd-v/cls_KD ``NKDLoss``; PS-KD: Kim et al. (2021), lgcnsai/PS-KD-Pytorch.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F

import pairkit.losses as L
from pairkit.errors import InputError


def _batch(n=6, k=5, seed=0, dtype=torch.float64, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, k, generator=g, dtype=dtype) * scale
    t = torch.randn(n, k, generator=g, dtype=dtype) * scale
    y = torch.randint(0, k, (n,), generator=g)
    return s, t, y


# ------------------------------------------------------------------------------------------ references


def _ref_hinton(s, t, tau, y=None, alpha=0.5):
    soft = F.kl_div(F.log_softmax(s / tau, 1), F.softmax(t / tau, 1), reduction="batchmean") * tau**2
    if y is None:
        return soft
    return alpha * soft + (1 - alpha) * F.cross_entropy(s, y)


def _ref_dkd(s, t, y, alpha, beta, tau):
    # the authors' formulation: probabilities, a "-1000" logit mask for the non-target part, and log()
    gt = F.one_hot(y, s.shape[1]).to(s.dtype)
    other = 1 - gt
    ps, pt = F.softmax(s / tau, 1), F.softmax(t / tau, 1)

    def binary(p):
        return torch.cat([(p * gt).sum(1, keepdim=True), (p * other).sum(1, keepdim=True)], 1)

    tckd = F.kl_div(torch.log(binary(ps)), binary(pt), reduction="sum") * tau**2 / s.shape[0]
    nckd = (
        F.kl_div(F.log_softmax(s / tau - 1000.0 * gt, 1), F.softmax(t / tau - 1000.0 * gt, 1), reduction="sum")
        * tau**2
        / s.shape[0]
    )
    return alpha * tckd + beta * nckd


def _ref_nkd(s, t, y, tau, gamma):
    n, _ = s.shape
    label = y.view(-1, 1)
    s_t = torch.gather(F.log_softmax(s, 1), 1, label)
    t_t = torch.gather(F.softmax(t, 1), 1, label).detach()
    loss_t = -(t_t * s_t).mean()
    keep = torch.ones_like(s).scatter_(1, label, 0).bool()
    s_non = F.log_softmax(s[keep].reshape(n, -1) / tau, 1)
    t_non = F.softmax(t[keep].reshape(n, -1) / tau, 1)
    return loss_t - gamma * tau**2 * (t_non * s_non).sum(1).mean()


def _ref_pskd(s, y, past, alpha):
    targets = (1 - alpha) * F.one_hot(y, s.shape[1]).to(s.dtype) + alpha * F.softmax(past, 1)
    return (-targets * F.log_softmax(s, 1)).mean(0).sum()


def _ref_bdkd(s, t, y, tau, lam):
    total = 0.0
    for i in range(s.shape[0]):
        lp, lt = F.log_softmax(s[i] / tau, 0), F.log_softmax(t[i] / tau, 0)
        p, q = lp.exp(), lt.exp()
        h_s, h_t = -(p * lp).sum(), -(q * lt).sum()
        fkl, rkl = (q * (lt - lp)).sum(), (p * (lp - lt)).sum()
        w_f, w_r = (1.0, lam) if h_s > h_t else (lam, 1.0)
        total = total + tau**2 * (w_f * fkl + w_r * rkl) + F.cross_entropy(s[i : i + 1], y[i : i + 1])
    return total / s.shape[0]


# ---------------------------------------------------------------------------------------- comparisons


@pytest.mark.parametrize("tau", [1.0, 4.0])
def test_hinton_matches_reference(tau):
    s, t, y = _batch()
    torch.testing.assert_close(L.hinton_kd_loss(s, t, temperature=tau), _ref_hinton(s, t, tau))
    torch.testing.assert_close(
        L.hinton_kd_loss(s, t, temperature=tau, labels=y, alpha=0.3), _ref_hinton(s, t, tau, y, 0.3)
    )


@pytest.mark.parametrize(("alpha", "beta", "tau"), [(1.0, 8.0, 4.0), (0.5, 2.0, 1.0)])
def test_dkd_matches_authors_formulation(alpha, beta, tau):
    s, t, y = _batch(seed=1)
    a = s.clone().requires_grad_(True)
    b = s.clone().requires_grad_(True)
    got = L.dkd_loss(a, t, y, alpha=alpha, beta=beta, temperature=tau)
    want = _ref_dkd(b, t, y, alpha, beta, tau)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    got.backward()
    want.backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-12)


def test_dkd_reformulates_kd():
    # Zhao et al. (2022), Eq. 4: KL(T || S) = TCKD + (1 - p_y^T) NCKD
    s, t, y = _batch(seed=2)
    tckd = L.dkd_loss(s, t, y, alpha=1.0, beta=0.0, temperature=1.0, reduction="none")
    nckd = L.dkd_loss(s, t, y, alpha=0.0, beta=1.0, temperature=1.0, reduction="none")
    kd = L.hinton_kd_loss(s, t, temperature=1.0, reduction="none")
    p_y_teacher = torch.softmax(t, -1).gather(1, y[:, None]).squeeze(1)
    torch.testing.assert_close(kd, tckd + (1 - p_y_teacher) * nckd)


@pytest.mark.parametrize(("tau", "gamma"), [(1.0, 1.5), (2.0, 0.5)])
def test_nkd_matches_authors_formulation(tau, gamma):
    s, t, y = _batch(seed=3)
    a = s.clone().requires_grad_(True)
    b = s.clone().requires_grad_(True)
    got = L.nkd_loss(a, t, y, temperature=tau, gamma=gamma)
    want = _ref_nkd(b, t, y, tau, gamma)
    torch.testing.assert_close(got, want)
    got.backward()
    want.backward()
    torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("lam", [1.0, 3.0])
def test_bdkd_matches_per_sample_reference(lam):
    s, t, y = _batch(seed=4)
    torch.testing.assert_close(L.bd_kd_loss(s, t, labels=y, temperature=2.0, balance=lam), _ref_bdkd(s, t, y, 2.0, lam))


def test_bdkd_balance_one_is_symmetric_kl():
    s, t, _ = _batch(seed=5)
    got = L.bd_kd_loss(s, t, temperature=1.0, balance=1.0, reduction="none")
    ls, lt = s.log_softmax(-1), t.log_softmax(-1)
    want = L.kl_divergence_with_log_targets(ls, lt, reduction="none") + L.reverse_kl_divergence(
        ls, lt, reduction="none"
    )
    torch.testing.assert_close(got, want)


def test_pskd_matches_reference_and_schedule():
    s, past, y = _batch(seed=6)
    torch.testing.assert_close(L.ps_kd_loss(s, y, past, alpha=0.35), _ref_pskd(s, y, past, 0.35))
    torch.testing.assert_close(L.ps_kd_loss(s, y, past, alpha=0.0), F.cross_entropy(s, y))
    assert L.ps_kd_alpha(0, 300, alpha_final=0.8) == pytest.approx(0.8 / 300)
    assert L.ps_kd_alpha(299, 300, alpha_final=0.8) == pytest.approx(0.8)
    # the past predictions are targets: no gradient flows into them
    p = past.clone().requires_grad_(True)
    L.ps_kd_loss(s.clone().requires_grad_(True), y, p, alpha=0.5).backward()
    assert p.grad is None or torch.all(p.grad == 0)
    with pytest.raises(InputError, match="epoch"):
        L.ps_kd_alpha(300, 300)


# ---------------------------------------------------------------------------------------- properties

LOSSES = {
    "hinton": lambda s, t, y, **kw: L.hinton_kd_loss(s, t, **kw),
    "hinton_labels": lambda s, t, y, **kw: L.hinton_kd_loss(s, t, labels=y, **kw),
    "dkd": L.dkd_loss,
    "nkd": partial(L.nkd_loss, temperature=2.0),
    "bdkd": lambda s, t, y, **kw: L.bd_kd_loss(s, t, labels=y, **kw),
    "pskd": lambda s, t, y, **kw: L.ps_kd_loss(s, y, t, alpha=0.4, **kw),
}


@pytest.mark.parametrize("name", ["hinton", "dkd", "bdkd"])
def test_zero_when_student_equals_teacher(name):
    s, _, y = _batch(seed=7)
    fn = {"hinton": L.hinton_kd_loss, "dkd": partial(L.dkd_loss, labels=y), "bdkd": L.bd_kd_loss}[name]
    assert fn(s, s.clone()).abs().item() < 1e-12
    assert fn(s, s + 1.0).abs().item() < 1e-12  # a shift of the logits leaves the softmax unchanged
    assert fn(s, 2.0 * s).item() > 1e-6


def test_bad_inputs():
    s, t, y = _batch()
    with pytest.raises(InputError, match="shapes must match"):
        L.hinton_kd_loss(s, t[:, :-1])
    with pytest.raises(InputError, match="class indices"):
        L.dkd_loss(s, t, y + 10)
    with pytest.raises(InputError, match="integer"):
        L.nkd_loss(s, t, y.double())
    with pytest.raises(InputError, match="temperature"):
        L.dkd_loss(s, t, y, temperature=-1.0)
    with pytest.raises(InputError, match="num_classes >= 2"):
        L.dkd_loss(s[:, :1], t[:, :1], torch.zeros(6, dtype=torch.long))
    with pytest.raises(InputError, match="past_logits"):
        L.ps_kd_loss(s, y, t[:, :-1], alpha=0.1)


# ------------------------------------------------------------------------------------------- OFA, USKD


def _ref_ofa(s, t, y, eps, tau=1.0):
    # the authors' ofa_loss (Hao et al. 2023): probabilities, weight (p_t + onehot)**eps - onehot
    target_mask = F.one_hot(y, s.shape[1]).to(s.dtype)
    ps, pt = F.softmax(s / tau, 1), F.softmax(t / tau, 1)
    prod = (pt + target_mask) ** eps
    return torch.sum(-(prod - target_mask) * torch.log(ps), dim=-1).mean()


@pytest.mark.parametrize("gamma, tau", [(1.0, 1.0), (1.3, 1.0), (2.0, 2.5), (0.7, 1.0)])
def test_ofa_matches_authors_code(gamma, tau):
    s, t, y = _batch()
    torch.testing.assert_close(L.ofa_loss(s, t, y, gamma=gamma, temperature=tau), _ref_ofa(s, t, y, gamma, tau))


def test_ofa_with_gamma_one_is_the_kd_cross_entropy():
    s, t, y = _batch()
    q = F.softmax(t, 1)
    ce = -(q * F.log_softmax(s, 1)).sum(1).mean()
    torch.testing.assert_close(L.ofa_loss(s, t, y), ce)


def _ref_uskd(z, y, zw, alpha=1.0, beta=0.1, mu=0.005, smoothing=0.1):
    # written from the paper's description, one example at a time (the batch mean of p_y^2 is the coupling)
    n, k = z.shape
    p, w = F.softmax(z, 1), F.softmax(zw, 1)
    p2_mean = float((p[torch.arange(n), y] ** 2).mean())
    total = 0.0
    for i in range(n):
        yi = int(y[i])
        soft_y = float(p[i, yi]) ** 2 + 1 - p2_mean
        score = [float(w[i, c] / (1 - w[i, yi]) + p[i, c] / (1 - p[i, yi])) for c in range(k)]
        order = sorted(range(k), key=lambda c: -score[c])
        zipf = {c: 1.0 / (order.index(c) + 1) for c in range(k) if c != yi}
        norm = sum(zipf.values())
        others = [c for c in range(k) if c != yi]
        log_hat = F.log_softmax(z[i, others], 0)
        loss_non = -sum(zipf[c] / norm * float(log_hat[j]) for j, c in enumerate(others))
        target = [(1 - smoothing) * (c == yi) + smoothing / k for c in range(k)]
        loss_weak = -sum(target[c] * float(F.log_softmax(zw[i], 0)[c]) for c in range(k))
        total += -alpha * soft_y * float(torch.log(p[i, yi])) + beta * loss_non + mu * loss_weak
    return total / n


def test_uskd_matches_paper_reference():
    s, w, y = _batch(n=7, k=6, seed=3)
    assert float(L.uskd_loss(s, y, w)) == pytest.approx(_ref_uskd(s, y, w), rel=1e-10)
    got = L.uskd_loss(s, y, w, alpha=0.5, beta=1.0, mu=0.1, smoothing=0.0)
    assert float(got) == pytest.approx(_ref_uskd(s, y, w, 0.5, 1.0, 0.1, 0.0), rel=1e-10)


def test_uskd_soft_target_is_centred_on_the_batch_and_constant():
    s, w, y = _batch(n=4, k=5, seed=4)
    s = s.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(L.uskd_loss(s, y, w, beta=0.0, mu=0.0, reduction="sum"), s)
    p = F.softmax(s.detach(), 1)
    p_y = p[torch.arange(4), y]
    soft = p_y**2 + 1 - (p_y**2).mean()
    expected = soft[:, None] * (p - F.one_hot(y, 5))  # d(-c log p_y)/ds with c constant
    torch.testing.assert_close(g, expected)


# -------------------------------------------------------------------------------------- BinaryKL, DHKD


def _ref_binary_kl(s, t, T=2.0, eps=1e-8, norm=False):
    # the authors' BinaryKL_loss / BinaryKL_norm_loss (clamped sigmoids, KLDivLoss per class)
    if norm:
        s = (s - s.mean(1, keepdim=True)) / (s.std(1, keepdim=True) + 1e-8)
        t = (t - t.mean(1, keepdim=True)) / (t.std(1, keepdim=True) + 1e-8)
    ps = torch.sigmoid(s / T).clamp(eps, 1 - eps)
    pt = torch.sigmoid(t / T).clamp(eps, 1 - eps)
    kl = F.kl_div(torch.log(ps), pt, reduction="none") + F.kl_div(torch.log(1 - ps), 1 - pt, reduction="none")
    return T**2 * kl.sum() / s.shape[0]


@pytest.mark.parametrize("norm, T", [(False, 2.0), (True, 1.0), (True, 3.0)])
def test_binary_kl_matches_authors_code(norm, T):
    s, t, _ = _batch()
    got = L.binary_kl_loss(s, t, temperature=T, normalize=norm)
    torch.testing.assert_close(got, _ref_binary_kl(s, t, T, norm=norm))
    assert float(L.binary_kl_loss(t, t)) == pytest.approx(0.0, abs=1e-12)
    # unlike the softmax KL, a shift of every logit changes it
    assert float(L.binary_kl_loss(t + 1.0, t)) > 0
    assert float(L.hinton_kd_loss(t + 1.0, t)) == pytest.approx(0, abs=1e-12)


def test_dual_head_kd_is_ce_plus_kd_on_main_head_plus_binary_kl_norm_on_aux_head():
    s, t, y = _batch()
    aux = torch.randn(s.shape, dtype=s.dtype, generator=torch.Generator().manual_seed(9))
    ref = F.cross_entropy(s, y) + 0.5 * _ref_hinton(s, t, 4.0) + 2.0 * _ref_binary_kl(aux, t, 1.0, norm=True)
    torch.testing.assert_close(L.dual_head_kd_loss(s, t, aux, y, alpha=0.5, beta=2.0), ref)
    # the auxiliary head gets only the logit-level gradient, the main head only the probability-level ones
    s, aux = s.clone().requires_grad_(True), aux.clone().requires_grad_(True)
    g_main, g_aux = torch.autograd.grad(L.dual_head_kd_loss(s, t, aux, y), (s, aux))
    aux_only = L.binary_kl_loss(aux, t, temperature=1.0, normalize=True)
    torch.testing.assert_close(g_aux, torch.autograd.grad(aux_only, aux)[0])
    torch.testing.assert_close(g_main, torch.autograd.grad(F.cross_entropy(s, y) + _ref_hinton(s, t, 4.0), s)[0])


# ------------------------------------------------------------------------------------------------- MCMI


def test_mcmi_matches_authors_ce_kl_weighted_one_minus_lambda():
    s, _, y = _batch(n=8, k=4, seed=6)
    centroids = L.class_centroids(s, y, 4)
    # the authors' CE_KL_loss pieces, combined as their fine-tuning script (1 * CE - 0.25 * KL)
    ce = F.cross_entropy(s, y)
    kl = F.kl_div(centroids[y].log(), F.log_softmax(s, 1), reduction="batchmean", log_target=True)
    torch.testing.assert_close(L.mcmi_teacher_loss(s, y, centroids), ce - 0.25 * kl)
    torch.testing.assert_close(L.mcmi_teacher_loss(s, y, centroids, cmi_weight=0.0), ce)


def test_class_centroids_are_per_class_mean_probabilities():
    s, _, y = _batch(n=8, k=4, seed=7)
    c = L.class_centroids(s, y, 5)
    p = F.softmax(s, 1)
    for k in range(5):
        expected = p[y == k].mean(0) if (y == k).any() else torch.full((4,), 0.25, dtype=s.dtype)
        torch.testing.assert_close(c[k], expected)
    with pytest.raises(InputError, match="class_centroids"):
        L.mcmi_teacher_loss(s, y, c)  # 5 rows for 4 classes
