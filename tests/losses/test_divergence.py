"""Divergences: against scipy / POT / TRL and closed forms, plus properties (hypothesis)."""

from __future__ import annotations

import math
import os
from functools import partial

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.special import kl_div, rel_entr

import pairkit.losses as L
from pairkit.errors import InputError

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def _kl_probs_targets(lp, lt, **kw):
    return L.kl_divergence(lp, lt.exp(), **kw)


# every divergence as a function of (log_predictions, log_targets)
LOG_DIVERGENCES = {
    "kl": _kl_probs_targets,
    "kl_log_targets": L.kl_divergence_with_log_targets,
    "reverse_kl": L.reverse_kl_divergence,
    "jsd": L.generalized_jsd,
    "gjsd_0.2": partial(L.generalized_jsd, beta=0.2),
    "gjsd_0": partial(L.generalized_jsd, beta=0.0),
    "gjsd_1": partial(L.generalized_jsd, beta=1.0),
    "tv": L.total_variation_distance,
    "hellinger": L.squared_hellinger_distance,
    "alpha_0.5": partial(L.alpha_divergence, alpha=0.5),
    "alpha_-1": partial(L.alpha_divergence, alpha=-1.0),
    "alpha_1": partial(L.alpha_divergence, alpha=1.0),
    "alpha_3": partial(L.alpha_divergence, alpha=3.0),
    "chi2": L.chi_squared_divergence,
    "cauchy_schwarz": L.cauchy_schwarz_divergence,
    "top_k": partial(L.top_k_kl_divergence, k=3),
}


def _pair(shape=(4, 7), seed=0, dtype=torch.float64, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(*shape, generator=g, dtype=dtype) * scale
    t = torch.randn(*shape, generator=g, dtype=dtype) * scale
    return s.log_softmax(-1), t.log_softmax(-1)


# ------------------------------------------------------------------------------------------- vs scipy


def test_kl_matches_scipy_with_zero_targets():
    lp, lt = _pair()
    t = lt.exp().clone()
    t[:, :2] = 0.0
    t = t / t.sum(-1, keepdim=True)
    got = L.kl_divergence(lp, t, reduction="none").numpy()
    want_rel = rel_entr(t.numpy(), lp.exp().numpy()).sum(-1)
    want_kl = kl_div(t.numpy(), lp.exp().numpy()).sum(-1)  # the "-x + y" terms cancel for distributions
    np.testing.assert_allclose(got, want_rel, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got, want_kl, rtol=1e-10, atol=1e-12)
    log_t = torch.where(t > 0, t.log(), float("-inf"))
    np.testing.assert_allclose(L.kl_divergence_with_log_targets(lp, log_t, reduction="none").numpy(), want_rel)


def test_reverse_kl_and_jsd_match_scipy():
    lp, lt = _pair(seed=1)
    p, t = lp.exp().numpy(), lt.exp().numpy()
    np.testing.assert_allclose(L.reverse_kl_divergence(lp, lt, reduction="none").numpy(), rel_entr(p, t).sum(-1))
    js = jensenshannon(p, t, axis=-1) ** 2  # scipy returns the JS *distance* (square root), natural log
    np.testing.assert_allclose(L.generalized_jsd(lp, lt, reduction="none").numpy(), js, rtol=1e-10)


def test_closed_forms_tv_hellinger_cs_chi2_alpha():
    lp, lt = _pair(seed=2)
    p, t = lp.exp().numpy(), lt.exp().numpy()
    np.testing.assert_allclose(L.total_variation_distance(lp, lt, reduction="none"), 0.5 * np.abs(p - t).sum(-1))
    np.testing.assert_allclose(
        L.squared_hellinger_distance(lp, lt, reduction="none"), 1 - np.sqrt(p * t).sum(-1), rtol=1e-10
    )
    cs = -np.log((p * t).sum(-1) / np.sqrt((p**2).sum(-1) * (t**2).sum(-1)))
    np.testing.assert_allclose(L.cauchy_schwarz_divergence(lp, lt, reduction="none"), cs, rtol=1e-10)
    np.testing.assert_allclose(L.chi_squared_divergence(lp, lt, reduction="none"), ((t - p) ** 2 / p).sum(-1))
    for alpha in (-0.5, 0.0, 0.7, 2.0):
        a, b = (1 - alpha) / 2, (1 + alpha) / 2
        want = 4 / (1 - alpha**2) * (1 - (t**a * p**b).sum(-1))
        np.testing.assert_allclose(L.alpha_divergence(lp, lt, alpha=alpha, reduction="none"), want, rtol=1e-9)
    # alpha = 0 is four times the squared Hellinger distance; alpha -> -1 / +1 tend to forward / reverse KL
    torch.testing.assert_close(
        L.alpha_divergence(lp, lt, alpha=0.0, reduction="none"),
        4 * L.squared_hellinger_distance(lp, lt, reduction="none"),
    )
    for alpha, exact in ((-1.0, rel_entr(t, p).sum(-1)), (1.0, rel_entr(p, t).sum(-1))):
        np.testing.assert_allclose(L.alpha_divergence(lp, lt, alpha=alpha, reduction="none"), exact)
        near = L.alpha_divergence(lp, lt, alpha=alpha * (1 - 1e-5), reduction="none").numpy()
        np.testing.assert_allclose(near, exact, rtol=1e-3)


# ---------------------------------------------------------------------------------------- f-divergences


def _js_generator(u):
    return 0.5 * (u * torch.log(u) - (1 + u) * torch.log((1 + u) / 2))


@pytest.mark.parametrize(
    ("generator", "closed"),
    [
        (lambda u: u * torch.log(u), _kl_probs_targets),
        (lambda u: -torch.log(u), L.reverse_kl_divergence),
        (lambda u: 0.5 * (u - 1).abs(), L.total_variation_distance),
        (lambda u: 0.5 * (u.sqrt() - 1) ** 2, L.squared_hellinger_distance),
        (_js_generator, L.generalized_jsd),
        # Amari alpha in the T || P orientation: p f(t / p) with f(u) = 4 / (1 - a^2) (1 - u^((1 - a) / 2))
        (lambda u: 4 / (1 - 0.3**2) * (1 - u ** ((1 - 0.3) / 2)), partial(L.alpha_divergence, alpha=0.3)),
    ],
)
def test_f_divergence_factory_matches_closed_forms(generator, closed):
    lp, lt = _pair(seed=3)
    built = L.f_divergence(generator)
    torch.testing.assert_close(built(lp, lt, reduction="none"), closed(lp, lt, reduction="none"))


def test_f_divergence_rejects_non_callable():
    with pytest.raises(InputError, match="generator"):
        L.f_divergence(3.0)


# ------------------------------------------------------------------------------------ properties


_row = st.lists(st.floats(-8, 8, allow_nan=False), min_size=5, max_size=5)


@settings(max_examples=40, deadline=None)
@given(a=_row, b=_row)
def test_divergences_nonnegative_and_zero_iff_equal(a, b):
    lp = torch.tensor(a, dtype=torch.float64).log_softmax(-1)
    lt = torch.tensor(b, dtype=torch.float64).log_softmax(-1)
    distinct = (lp.exp() - lt.exp()).abs().max() > 1e-3
    for name, fn in LOG_DIVERGENCES.items():
        d = fn(lp, lt, reduction="none")
        assert d >= -1e-12, name
        assert abs(fn(lp, lp, reduction="none")) < 1e-10, name
        if distinct and name != "top_k":  # top-k only sees the teacher's top-3 classes
            assert d > 1e-12, name


def test_gradcheck_tv_away_from_kinks():
    s = torch.tensor([[0.0, 1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[2.0, 0.5, 0.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: L.total_variation_distance(a.log_softmax(-1), t.log_softmax(-1)), (s,))


def test_bad_inputs_raise_input_error():
    lp, lt = _pair()
    with pytest.raises(InputError, match="shapes must match"):
        L.kl_divergence_with_log_targets(lp, lt[:, :-1])
    with pytest.raises(InputError, match="shapes must match"):
        L.generalized_jsd(lp, lt[:-1])
    with pytest.raises(InputError, match="beta"):
        L.generalized_jsd(lp, lt, beta=1.5)
    with pytest.raises(InputError, match="k must"):
        L.top_k_kl_divergence(lp, lt, k=0)
    with pytest.raises(InputError, match="mask"):
        L.reverse_kl_divergence(lp, lt, mask=torch.ones(5, dtype=torch.bool))
    with pytest.raises(InputError, match="mask must be a bool"):
        L.reverse_kl_divergence(lp, lt, mask=torch.ones(4))
    with pytest.raises(InputError, match="reduction"):
        L.reverse_kl_divergence(lp, lt, reduction="batchmean")
    with pytest.raises(InputError, match="alpha"):
        L.alpha_divergence(lp, lt, alpha=float("nan"))


def test_registry_names_and_aliases():
    assert L.get("gkd") is L.token_generalized_jsd
    assert L.get("forward-kl") is L.kl_divergence
    assert L.family_of("sinkhorn") == "divergence"


# -------------------------------------------------------------------------------------------- top-k


def test_top_k_against_slow_reference():
    lp, lt = _pair(shape=(3, 8), seed=7)
    got = L.top_k_kl_divergence(lp, lt, k=3, reduction="none")
    got_raw = L.top_k_kl_divergence(lp, lt, k=3, renormalize_predictions=False, reduction="none")
    for row in range(3):
        t, p = lt[row].exp().numpy(), lp[row].exp().numpy()
        support = np.argsort(-t)[:3]
        t_s = t[support] / t[support].sum()
        p_s = p[support] / p[support].sum()
        assert got[row].item() == pytest.approx(rel_entr(t_s, p_s).sum(), rel=1e-10)
        assert got_raw[row].item() == pytest.approx((t_s * (np.log(t_s) - np.log(p[support]))).sum(), rel=1e-10)
    torch.testing.assert_close(
        L.top_k_kl_divergence(lp, lt, k=8, reduction="none"), L.kl_divergence(lp, lt.exp(), reduction="none")
    )


# ------------------------------------------------------------------------------------------ sinkhorn


def _histograms(n, m, batch, seed, zeros=False):
    rng = np.random.default_rng(seed)
    a = rng.random((batch, n)) + 0.05
    b = rng.random((batch, m)) + 0.05
    if zeros:
        a[:, 0] = 0.0
        b[:, -1] = 0.0
    a /= a.sum(-1, keepdims=True)
    b /= b.sum(-1, keepdims=True)
    x, y = rng.random((n, 2)), rng.random((m, 2))
    cost = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    return a, b, cost


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # POT takes log(0) for empty bins
@pytest.mark.parametrize(("epsilon", "zeros"), [(0.5, False), (0.05, False), (0.05, True), (0.01, False)])
def test_sinkhorn_matches_pot(epsilon, zeros):
    ot = pytest.importorskip("ot")
    a, b, cost = _histograms(6, 5, 3, seed=8, zeros=zeros)
    got = L.sinkhorn_distance(
        torch.tensor(a),
        torch.tensor(b),
        torch.tensor(cost),
        epsilon=epsilon,
        num_iters=5000,
        tol=1e-12,
        reduction="none",
    )
    want = [
        ot.sinkhorn2(a[i], b[i], cost, epsilon, method="sinkhorn_log", numItermax=100000, stopThr=1e-13)
        for i in range(3)
    ]
    np.testing.assert_allclose(got.numpy(), np.array(want, dtype=float), rtol=1e-7, atol=1e-10)


def test_sinkhorn_small_epsilon_is_stable_and_near_exact_ot():
    ot = pytest.importorskip("ot")
    a, b, cost = _histograms(6, 6, 1, seed=9)
    got = L.sinkhorn_distance(torch.tensor(a), torch.tensor(b), torch.tensor(cost), epsilon=1e-3, num_iters=20000)
    assert torch.isfinite(got)
    exact = ot.emd2(a[0], b[0], cost)
    assert got.item() == pytest.approx(exact, abs=5e-3)


def test_sinkhorn_gradcheck_and_zero_bins():
    a, b, cost = _histograms(4, 3, 2, seed=10, zeros=True)
    la = torch.tensor(a).log().clamp_min(-1e3).requires_grad_(True)
    c = torch.tensor(cost, requires_grad=True)

    def fn(logits, cost_):
        return L.sinkhorn_distance(torch.softmax(logits, -1), torch.tensor(b), cost_, epsilon=0.3, num_iters=30)

    assert torch.autograd.gradcheck(fn, (la, c))
    out = L.sinkhorn_distance(torch.tensor(a, requires_grad=True), torch.tensor(b), c, epsilon=0.1)
    out.backward()
    assert torch.isfinite(c.grad).all()


def test_sinkhorn_bad_shapes():
    a, b, cost = _histograms(4, 3, 2, seed=11)
    with pytest.raises(InputError, match="cost"):
        L.sinkhorn_distance(torch.tensor(a), torch.tensor(b), torch.tensor(cost).T)
    with pytest.raises(InputError, match="epsilon"):
        L.sinkhorn_distance(torch.tensor(a), torch.tensor(b), torch.tensor(cost), epsilon=0)


# ------------------------------------------------------------------------------------ token level


def _token_batch(seed=12, vocab=11, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(2, 5, vocab, generator=g, dtype=dtype) * 3
    t = torch.randn(2, 5, vocab, generator=g, dtype=dtype) * 3
    labels = torch.randint(0, vocab, (2, 5), generator=g)
    labels[0, 3:] = -100
    labels[1, 0] = -100
    return s, t, labels


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_token_generalized_jsd_matches_trl(beta, chunk_size):
    from trl.experimental.gkd import GKDTrainer

    s, t, labels = _token_batch()
    s1 = s.clone().requires_grad_(True)
    s2 = s.clone().requires_grad_(True)
    want = GKDTrainer.generalized_jsd_loss(s1, t, labels, beta=beta, temperature=2.0)
    got = L.token_generalized_jsd(s2, t, beta=beta, temperature=2.0, chunk_size=chunk_size, mask=labels != -100)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    want.backward()
    got.backward()
    torch.testing.assert_close(s2.grad, s1.grad, rtol=1e-9, atol=1e-12)
    # without labels TRL's "sum" reduction is the plain sum over positions
    torch.testing.assert_close(
        L.token_generalized_jsd(s, t, beta=beta, reduction="sum"),
        GKDTrainer.generalized_jsd_loss(s, t, beta=beta, reduction="sum"),
    )


@pytest.mark.parametrize("fn", [L.token_kl_divergence, L.token_reverse_kl_divergence, L.token_generalized_jsd])
@pytest.mark.parametrize("chunk_size", [1, 4, 100])
def test_chunked_equals_unchunked_values_and_gradients(fn, chunk_size):
    s, t, labels = _token_batch(seed=13)
    mask = labels != -100
    grads = []
    outs = []
    for cs in (None, chunk_size):
        a = s.clone().requires_grad_(True)
        b = t.clone().requires_grad_(True)
        out = fn(a, b, temperature=1.5, chunk_size=cs, mask=mask)
        out.backward()
        outs.append(out.detach())
        grads.append((a.grad, b.grad))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-14)


def test_token_kl_matches_torch_kl_div():
    s, t, labels = _token_batch(seed=14)
    mask = labels != -100
    per = torch.nn.functional.kl_div(
        (s / 2).log_softmax(-1), (t / 2).log_softmax(-1), log_target=True, reduction="none"
    ).sum(-1)
    torch.testing.assert_close(L.token_kl_divergence(s, t, temperature=2.0, chunk_size=3, mask=mask), per[mask].mean())
    torch.testing.assert_close(
        L.token_reverse_kl_divergence(s, t, chunk_size=4, reduction="none"),
        torch.nn.functional.kl_div(t.log_softmax(-1), s.log_softmax(-1), log_target=True, reduction="none").sum(-1),
    )


def test_token_generic_with_top_k_and_bf16_extremes():
    s, t, _ = _token_batch(seed=15, dtype=torch.float32)
    got = L.token_divergence(L.top_k_kl_divergence, s, t, chunk_size=3, k=4, reduction="none")
    want = L.top_k_kl_divergence(s.log_softmax(-1), t.log_softmax(-1), k=4, reduction="none")
    torch.testing.assert_close(got, want)
    big = (torch.sign(s) * 1e4).to(torch.bfloat16).requires_grad_(True)
    out = L.token_generalized_jsd(big, (torch.sign(t) * 1e4).to(torch.bfloat16), chunk_size=2)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(big.grad.float()).all()


def test_token_bad_inputs():
    s, t, labels = _token_batch()
    with pytest.raises(InputError, match="chunk_size"):
        L.token_kl_divergence(s, t, chunk_size=0)
    with pytest.raises(InputError, match="temperature"):
        L.token_kl_divergence(s, t, temperature=0.0)
    with pytest.raises(InputError, match="shapes must match"):
        L.token_generalized_jsd(s, t[:, :-1])
    with pytest.raises(InputError, match="mask"):
        L.token_generalized_jsd(s, t, mask=torch.ones(3, 5, dtype=torch.bool))
    assert math.isclose(L.token_kl_divergence(s, t, mask=torch.zeros(2, 5, dtype=torch.bool)).item(), 0.0)


def test_chunked_gradient_only_student_and_no_grad_forward():
    s, t, labels = _token_batch(seed=16)
    mask = labels != -100
    a = s.clone().requires_grad_(True)
    b = s.clone().requires_grad_(True)
    L.token_generalized_jsd(a, t, beta=0.3, chunk_size=2, mask=mask).backward()
    L.token_generalized_jsd(b, t, beta=0.3, mask=mask).backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-14)
    with torch.no_grad():
        torch.testing.assert_close(
            L.token_kl_divergence(a, t, chunk_size=3, reduction="none"),
            L.token_kl_divergence(a, t, reduction="none"),
        )
