"""LoL and class-relation KD against slow references written from the papers' equations (and the authors' forms)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

import pairkit.losses as L  # noqa: E402
from pairkit.errors import InputError  # noqa: E402


def _lol_slow(losses, evidence, margin):
    out = []
    for row, ev in zip(losses.tolist(), evidence.tolist()):
        terms = [max(0.0, margin + row[i] - row[j]) for i in range(len(row)) for j in range(len(row)) if ev[i] > ev[j]]
        out.append(sum(terms) / len(terms) if terms else 0.0)
    return torch.tensor(out, dtype=torch.float64)


def test_lol_equals_the_pairwise_hinge_over_evidence_ordered_versions():
    g = torch.Generator().manual_seed(0)
    losses = torch.rand(6, 4, generator=g, dtype=torch.float64) * 3
    default = torch.arange(3, -1, -1).expand(6, 4)
    for margin in (0.0, 0.5):
        got = L.lol_loss(losses, margin=margin, reduction="none")
        torch.testing.assert_close(got, _lol_slow(losses, default, margin))
    # the authors' form: margin_ranking_loss over all ordered pairs of all queries, mean over pairs
    pairs = [(i, j) for i in range(4) for j in range(4) if i < j]
    s1 = torch.cat([-losses[:, i] for i, _ in pairs])
    s2 = torch.cat([-losses[:, j] for _, j in pairs])
    authors = torch.nn.functional.margin_ranking_loss(s1, s2, torch.ones_like(s1), margin=0.0)
    torch.testing.assert_close(L.get("lol")(losses), authors)
    # given evidence with ties: tied versions form no pair
    evidence = torch.tensor([[5, 5, 2, 0]] * 6)
    got = L.lol_loss(losses, evidence=evidence, reduction="none")
    torch.testing.assert_close(got, _lol_slow(losses, evidence, 0.0))


def test_lol_is_zero_when_more_evidence_means_lower_loss_and_pushes_both_sides_otherwise():
    ordered = torch.tensor([[0.1, 0.2, 0.3]], requires_grad=True)
    assert float(L.lol_loss(ordered).detach()) == 0.0
    flipped = torch.tensor([[0.3, 0.2, 0.1]], requires_grad=True)
    value = L.lol_loss(flipped)
    assert float(value.detach()) == pytest.approx((0.1 + 0.2 + 0.1) / 3)
    (grad,) = torch.autograd.grad(value, flipped)
    torch.testing.assert_close(grad, torch.tensor([[2.0, 0.0, -2.0]]) / 3)
    with pytest.raises(InputError, match="evidence must have the shape"):
        L.lol_loss(flipped, evidence=torch.zeros(1, 2))


def _crkd_slow(s, t, u, temp, mask=None):
    n = s.shape[0]
    rows = [i for i in range(n) if mask is None or bool(mask[i])]
    eta = {}
    for i in range(n):
        z = [math.exp(v / temp) for v in s[i].tolist() + u[i].tolist()]
        eta[i] = sum(z[: s.shape[1]]) / sum(z)
    mean = sum(eta[i] for i in rows) / len(rows)
    out = []
    for i in range(n):
        if i not in rows:
            out.append(0.0)
            continue
        zt = [math.exp(v / temp) for v in t[i].tolist()]
        p = [z / sum(zt) for z in zt]
        zs = [math.exp(v / temp) for v in s[i].tolist()]
        q = [z / sum(zs) for z in zs]
        out.append(-(temp**2) * eta[i] / mean * sum(pc * math.log(qc) for pc, qc in zip(p, q)))
    return torch.tensor(out, dtype=torch.float64)


def test_class_relation_kd_equals_a_slow_reference_and_normalises_its_weights_over_the_batch():
    g = torch.Generator().manual_seed(2)
    s, t, u = (torch.randn(5, k, generator=g, dtype=torch.float64) for k in (4, 4, 3))
    for temp in (1.0, 0.5):
        got = L.class_relation_kd_loss(s, t, u, temperature=temp, reduction="none")
        torch.testing.assert_close(got, _crkd_slow(s, t, u, temp))
    mask = torch.tensor([True, False, True, True, False])
    got = L.class_relation_kd_loss(s, t, u, temperature=0.5, mask=mask, reduction="none")
    torch.testing.assert_close(got, _crkd_slow(s, t, u, 0.5, mask))
    # with equal known-class mass for every sample the weights are 1: T² times the cross-entropy to the teacher
    flat = L.class_relation_kd_loss(s, t, torch.full((5, 3), -1e4, dtype=torch.float64), temperature=1.0,
                                    reduction="none")  # fmt: skip
    ce = -(torch.softmax(t, -1) * torch.log_softmax(s, -1)).sum(-1)
    torch.testing.assert_close(flat, ce)


def test_class_relation_kd_gate_is_learned_and_shapes_are_checked():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    u = torch.randn(4, 2, generator=g, requires_grad=True)
    (grad,) = torch.autograd.grad(L.class_relation_kd_loss(s, t, u), u)
    assert grad.abs().sum() > 0  # the weight is not detached: the novel logits get a gradient through it
    with pytest.raises(InputError, match="shapes must match"):
        L.class_relation_kd_loss(s, t[:, :2], u)
    with pytest.raises(InputError, match="one row per sample"):
        L.class_relation_kd_loss(s, t, u[:3])


def _moments_slow(adapted, source, text, normalize=True, cov_weight=1000.0):
    """Jeon et al. (2023) eq. (3) with numpy: cosine distance of the means + λ·Frobenius distance of X^T X / n."""
    import numpy as np

    x = (adapted - source).numpy()
    y = text.numpy()
    if normalize:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        y = y / np.linalg.norm(y, axis=1, keepdims=True)
    mx, my = x.mean(0), y.mean(0)
    cosine = float(mx @ my / (np.linalg.norm(mx) * np.linalg.norm(my)))
    second_x, second_y = x.T @ x / len(x), y.T @ y / len(y)  # [dim, dim], built here on purpose
    return (1 - cosine) + cov_weight * float(np.linalg.norm(second_x - second_y, "fro"))


def test_directional_moment_loss_equals_the_papers_equation_3():
    g = torch.Generator().manual_seed(4)
    adapted, source = torch.randn(7, 5, generator=g, dtype=torch.float64), torch.randn(7, 5, generator=g,
                                                                                      dtype=torch.float64)  # fmt: skip
    text = torch.randn(3, 5, generator=g, dtype=torch.float64)
    for normalize in (True, False):
        for weight in (1000.0, 1.0, 0.0):
            got = L.directional_moment_loss(adapted, source, text_directions=text, normalize=normalize,
                                            cov_weight=weight)  # fmt: skip
            assert float(got) == pytest.approx(_moments_slow(adapted, source, text, normalize, weight), rel=1e-10)
    keep = torch.tensor([True, False, True, True, True, False, True])
    got = L.directional_moment_loss(adapted, source, text_directions=text, mask=keep)
    assert float(got) == pytest.approx(_moments_slow(adapted[keep], source[keep], text), rel=1e-10)


def test_directional_moment_loss_uses_a_cosine_mean_term_and_uncentred_second_moments():
    # the means point the same way at different lengths: the cosine distance is 0 (a squared Euclidean one is not)
    text = torch.tensor([[2.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    source = torch.zeros(2, 2, dtype=torch.float64)
    adapted = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    got = L.directional_moment_loss(adapted, source, text_directions=text, normalize=False, cov_weight=0.0)
    assert float(got) == pytest.approx(0.0, abs=1e-12)
    # the second moments are uncentred: two sets with equal (zero) covariances but different means still differ,
    # by the Frobenius norm (not its square) of diag(4, 0) - diag(1, 0) = 3
    got = L.directional_moment_loss(adapted, source, text_directions=text, normalize=False, cov_weight=1.0)
    assert float(got) == pytest.approx(3.0, rel=1e-12)


def test_directional_moment_loss_is_zero_when_image_directions_are_the_text_directions():
    text = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.6, 0.8, 0.0]], dtype=torch.float64)
    source = torch.zeros(6, 3, dtype=torch.float64)
    adapted = (torch.cat([text, text]) * 2.0).requires_grad_()  # the same directions (normalised), each twice
    value = L.directional_moment_loss(adapted, source, text_directions=text)
    assert float(value.detach()) == pytest.approx(0.0, abs=1e-6)
    value.backward()
    assert torch.isfinite(adapted.grad).all()  # the Frobenius distance at (numerically) 0 does not give NaN
    # one mode only (every image the mean text direction): the mean matches but the second moment cannot
    collapsed = text.mean(0).expand(6, 3)
    got = L.directional_moment_loss(collapsed, source, text_directions=text, cov_weight=1.0)
    assert float(got) > 0.1
    with pytest.raises(InputError, match="text_directions must be"):
        L.directional_moment_loss(adapted, source, text_directions=torch.ones(2, 4))


def test_ccs_equals_its_two_terms_and_the_trivial_probe_scores_a_quarter():
    g = torch.Generator().manual_seed(5)
    zp, zn = torch.randn(8, generator=g, dtype=torch.float64), torch.randn(8, generator=g, dtype=torch.float64)
    got = L.ccs_loss(zp, zn, reduction="none")
    for value, a, b in zip(got.tolist(), zp.tolist(), zn.tolist()):
        pp, pn = 1 / (1 + math.exp(-a)), 1 / (1 + math.exp(-b))
        assert value == pytest.approx((pp - (1 - pn)) ** 2 + min(pp, pn) ** 2, rel=1e-12)
    zero = torch.zeros(3, dtype=torch.float64)
    assert float(L.ccs_loss(zero, zero)) == pytest.approx(0.25)
    confident = torch.tensor([30.0, -30.0], dtype=torch.float64)  # consistent and confident: ~0
    assert float(L.get("ccr_pairwise")(confident, -confident)) == pytest.approx(0.0, abs=1e-12)
