"""Proxy-based metric losses: equal to pytorch-metric-learning with the same proxies (value and gradient)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import pairkit.losses as L
from pairkit.errors import InputError

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")

N, D, C, K = 20, 7, 5, 3
TOL64 = dict(rtol=1e-6, atol=1e-6)  # the brief: equal to pml to 1e-6 (observed ~1e-12 in float64)


def _data(seed, dtype=torch.float64, centers=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g, dtype=dtype)
    y = torch.randint(0, C, (N,), generator=g)
    y[:2] = torch.tensor([0, 0])  # class C-1 may be absent: proxies without rows are covered
    shape = (C, K, D) if centers else (C, D)
    p = torch.randn(*shape, generator=g, dtype=dtype)
    return x, y, p


def _pml(name, p, **kw):
    """The pml loss with its proxies set to ``p`` ([C, D], or [C, K, D] for SoftTriple)."""
    if name == "proxy_nca":
        loss = pml_losses.ProxyNCALoss(C, D, **kw)
        loss.proxies.data = p.clone()
    elif name == "proxy_anchor":
        loss = pml_losses.ProxyAnchorLoss(C, D, **kw)
        loss.proxies.data = p.clone()
    elif name == "soft_triple":
        loss = pml_losses.SoftTripleLoss(C, D, centers_per_class=K, **kw)
        loss.fc.data = p.reshape(C * K, D).T.clone()
    else:
        cls = {
            "normalized_softmax": pml_losses.NormalizedSoftmaxLoss,
            "arcface": pml_losses.ArcFaceLoss,
            "cosface": pml_losses.CosFaceLoss,
        }[name]
        loss = cls(num_classes=C, embedding_size=D, **kw)
        loss.W.data = p.T.clone()
    return loss.double() if p.dtype == torch.float64 else loss


CASES = [
    ("proxy_nca", {}, {}),
    ("proxy_nca", {"softmax_scale": 3.0}, {"softmax_scale": 3.0}),
    ("proxy_anchor", {}, {}),
    ("proxy_anchor", {"margin": 0.3, "alpha": 8.0}, {"margin": 0.3, "alpha": 8.0}),
    ("normalized_softmax", {}, {}),
    ("normalized_softmax", {"temperature": 0.3}, {"temperature": 0.3}),
    ("arcface", {}, {"margin": math.degrees(0.5)}),
    ("arcface", {"margin": 1.2, "scale": 10.0}, {"margin": math.degrees(1.2), "scale": 10.0}),
    ("cosface", {}, {}),
    ("cosface", {"margin": 0.1, "scale": 16.0}, {"margin": 0.1, "scale": 16.0}),
    ("soft_triple", {}, {}),
    ("soft_triple", {"la": 5.0, "gamma": 0.5, "margin": 0.2}, {"la": 5.0, "gamma": 0.5, "margin": 0.2}),
]


@pytest.mark.parametrize("name, ours_kw, pml_kw", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_value_and_gradients_match_pml(name, ours_kw, pml_kw, seed):
    x, y, p = _data(seed, centers=name == "soft_triple")
    x1, p1 = x.clone().requires_grad_(True), p.clone().requires_grad_(True)
    ours = L.get(name)(x1, y, p1, **ours_kw)
    ours.backward()
    peer = _pml(name, p, **pml_kw)
    x2 = x.clone().requires_grad_(True)
    theirs = peer(x2, y)
    theirs.backward()
    their_p_grad = next(iter(peer.parameters())).grad
    if name == "soft_triple":
        their_p_grad = their_p_grad.T.reshape(C, K, D)
    elif name in ("normalized_softmax", "arcface", "cosface"):
        their_p_grad = their_p_grad.T
    torch.testing.assert_close(ours, theirs, **TOL64)
    torch.testing.assert_close(x1.grad, x2.grad, **TOL64)
    torch.testing.assert_close(p1.grad, their_p_grad, **TOL64)


@pytest.mark.parametrize("name", ["proxy_nca", "proxy_anchor", "normalized_softmax", "arcface", "cosface"])
def test_float32_matches_pml(name):
    x, y, p = _data(5, dtype=torch.float32)
    kw = {"margin": math.degrees(0.5)} if name == "arcface" else {}
    torch.testing.assert_close(L.get(name)(x, y, p), _pml(name, p, **kw)(x, y), rtol=1e-5, atol=1e-5)


def _angles(x, p):
    return torch.acos((F.normalize(x, dim=1) @ F.normalize(p, dim=1).T).clamp(-1, 1))


def test_arcface_and_cosface_slow_reference_per_row():
    """Each row's loss from the papers' formulas, one row at a time (acos / cos of the angle)."""
    x, y, p = _data(3)
    m, s = 0.7, 30.0
    theta = _angles(x, p)
    arc, cos_ = [], []
    for i in range(N):
        t = theta[i].clone()
        target = t[y[i]]
        psi = math.cos(target + m) if target <= math.pi - m else math.cos(target) - m * math.sin(m)
        logits = torch.cos(t)
        others = [math.exp(s * float(logits[c])) for c in range(C) if c != y[i]]
        arc.append(-(s * psi) + math.log(math.exp(s * psi) + sum(others)))
        tc = float(logits[y[i]]) - m
        cos_.append(-(s * tc) + math.log(math.exp(s * tc) + sum(others)))
    ours_arc = L.arcface(x, y, p, margin=m, scale=s, reduction="none")
    ours_cos = L.cosface(x, y, p, margin=m, scale=s, reduction="none")
    torch.testing.assert_close(ours_arc, torch.tensor(arc, dtype=x.dtype), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ours_cos, torch.tensor(cos_, dtype=x.dtype), rtol=1e-9, atol=1e-9)


def test_arcface_gradient_finite_when_embedding_equals_its_proxy():
    x, y, p = _data(4)
    x = p[y].clone().requires_grad_(True)  # angle 0: acos would have an infinite derivative
    L.arcface(x, y, p).backward()
    assert torch.isfinite(x.grad).all()


def test_proxy_anchor_slow_reference_and_reductions():
    x, y, p = _data(6)
    delta, alpha = 0.2, 16.0
    cos = F.normalize(x, dim=1) @ F.normalize(p, dim=1).T
    pos_terms, neg_terms, present = [], [], 0
    for c in range(C):
        rows_pos = [i for i in range(N) if y[i] == c]
        rows_neg = [i for i in range(N) if y[i] != c]
        present += bool(rows_pos)
        pos_terms.append(math.log1p(sum(math.exp(-alpha * (float(cos[i, c]) - delta)) for i in rows_pos)))
        neg_terms.append(math.log1p(sum(math.exp(alpha * (float(cos[i, c]) + delta)) for i in rows_neg)))
    want = sum(pos_terms) / present + sum(neg_terms) / C
    torch.testing.assert_close(L.proxy_anchor(x, y, p, margin=delta, alpha=alpha), torch.tensor(want, dtype=x.dtype))
    none = L.proxy_anchor(x, y, p, margin=delta, alpha=alpha, reduction="none")
    assert none.shape == (C,)
    torch.testing.assert_close(none, torch.tensor(pos_terms, dtype=x.dtype) + torch.tensor(neg_terms, dtype=x.dtype))


def test_soft_triple_regulariser_and_single_center_is_normalized_softmax():
    x, y, p = _data(7, centers=True)
    base = L.soft_triple(x, y, p)
    w = F.normalize(p, dim=2)
    reg = 0.0
    for c in range(C):
        for a in range(K):
            for b in range(a + 1, K):
                reg += math.sqrt(2 - 2 * float(w[c, a] @ w[c, b]))
    reg /= C * K * (K - 1)
    torch.testing.assert_close(L.soft_triple(x, y, p, tau=0.2), base + 0.2 * reg)
    # one centre per class and no margin: the cross-entropy of la * cosine = normalised softmax at τ = 1 / la
    one = L.soft_triple(x, y, p[:, :1], la=4.0, margin=0.0)
    torch.testing.assert_close(one, L.normalized_softmax(x, y, p[:, 0], temperature=0.25))


def test_weights_and_bad_inputs():
    x, y, p = _data(8)
    w = torch.rand(N, dtype=x.dtype)
    none = L.cosface(x, y, p, reduction="none")
    torch.testing.assert_close(L.cosface(x, y, p, weights=w), (none * w).sum() / w.sum())
    with pytest.raises(InputError, match="row 3 has label 9"):
        L.proxy_nca(x, torch.where(torch.arange(N) == 3, 9, y), p)
    with pytest.raises(InputError, match="proxies must have shape"):
        L.arcface(x, y, p[:, :3])
    with pytest.raises(InputError, match="integer class indices"):
        L.normalized_softmax(x, y.double(), p)
    with pytest.raises(InputError, match="margin must be"):
        L.arcface(x, y, p, margin=2.0)
    with pytest.raises(InputError, match="centers must have shape"):
        L.soft_triple(x, y, p)


@pytest.mark.parametrize("head, margin", [("arcface", 0.5), ("cosface", 0.35), ("arcface", 0.2)])
def test_unpg_slow_reference(head, margin):
    """Each row's loss with the filtered negative pairs, from the paper's equations one pair at a time."""
    x, y, p = _data(9)
    s, w = 16.0, 0.5
    xn, pn = F.normalize(x, dim=1), F.normalize(p, dim=1)
    pairs = sorted(float(xn[i] @ xn[j]) for i in range(N) for j in range(i + 1, N) if y[i] != y[j])
    q1, q3 = pairs[int(0.25 * len(pairs))], pairs[int(0.75 * len(pairs))]
    kept = [t for t in pairs if q1 - w * (q3 - q1) <= t <= q3 + w * (q3 - q1)]
    assert 0 < len(kept) < len(pairs)  # the fences remove some pairs here
    want = []
    for i in range(N):
        theta = math.acos(float(xn[i] @ pn[y[i]]))
        if head == "cosface":
            psi = math.cos(theta) - margin
        else:
            psi = math.cos(theta + margin) if theta <= math.pi - margin else math.cos(theta) - margin * math.sin(margin)
        denom = math.exp(s * psi) + sum(math.exp(s * float(xn[i] @ pn[c])) for c in range(C) if c != y[i])
        denom += sum(math.exp(s * t) for t in kept)
        want.append(math.log(denom) - s * psi)
    ours = L.unpg(x, y, p, head=head, margin=margin, scale=s, whisker=w, reduction="none")
    torch.testing.assert_close(ours, torch.tensor(want, dtype=x.dtype), rtol=1e-9, atol=1e-9)


def test_unpg_without_negative_pairs_is_the_margin_softmax():
    x, y, p = _data(10)
    same = torch.zeros_like(y)
    torch.testing.assert_close(L.unpg(x, same, p), L.arcface(x, same, p))
    torch.testing.assert_close(L.unpg(x, same, p, head="cosface"), L.cosface(x, same, p))
    assert float(L.unpg(x, y, p)) > float(L.arcface(x, y, p))  # extra negatives only add to the denominator
    with pytest.raises(InputError, match="head must be"):
        L.unpg(x, y, p, head="sphereface")
