"""Feature-level and relational distillation against slow references written from the papers and authors' code.

RKD: Park et al. (2019) and the authors' ``RkdDistance``/``RKdAngle`` averaging (over all n² / n³ entries);
ND: the authors' ``DirectNormLoss`` (WangYZ1608/Knowledge-Distillation-via-ND); SinKD: the authors'
``sinkhorn_loss`` (2018cx/SinKD, matrix scaling) and pairkit's POT-equal ``sinkhorn_distance``; PRD: a per-sample
KL loop (Asadi et al. 2023).
"""

from __future__ import annotations

import itertools

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import pairkit.losses as L  # noqa: E402
from pairkit.errors import InputError  # noqa: E402


def _feats(n=5, ds=4, dt=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, ds, generator=g, dtype=torch.float64), torch.randn(n, dt, generator=g, dtype=torch.float64)


def _huber(x, delta=1.0):
    return 0.5 * x * x / delta if abs(x) < delta else abs(x) - 0.5 * delta


# ----------------------------------------------------------------------------------------------- RKD


def _ref_rkd_distance(s, t):
    n = len(s)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    mu_s = sum(float((s[i] - s[j]).norm()) for i, j in pairs) / len(pairs)
    mu_t = sum(float((t[i] - t[j]).norm()) for i, j in pairs) / len(pairs)
    return sum(_huber(float((s[i] - s[j]).norm()) / mu_s - float((t[i] - t[j]).norm()) / mu_t) for i, j in pairs) / len(
        pairs
    )


def _authors_rkd_distance(s, t):
    def pd(e):
        d = torch.cdist(e, e)
        return d / d[d > 0].mean()

    return F.smooth_l1_loss(pd(s), pd(t))


def test_rkd_distance_matches_pairwise_reference_and_authors_averaging():
    s, t = _feats()
    got = L.rkd_distance_loss(s, t)
    assert float(got) == pytest.approx(_ref_rkd_distance(s, t), rel=1e-10)
    n = len(s)
    torch.testing.assert_close(got * (n - 1) / n, _authors_rkd_distance(s, t))


def test_rkd_distance_is_zero_for_a_scaled_rotated_copy():
    s, _ = _feats(dt=4)
    q, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    assert float(L.rkd_distance_loss(s, 3.0 * s @ q + 2.0)) == pytest.approx(0.0, abs=1e-12)
    assert float(L.rkd_distance_loss(s, s.flip(0) ** 3)) > 0


def _ref_rkd_angle(s, t):
    n = len(s)

    def cos(e, i, j, k):
        a, b = e[i] - e[j], e[k] - e[j]
        return float(a @ b / (a.norm() * b.norm()))

    triples = [(i, j, k) for i, j, k in itertools.product(range(n), repeat=3) if i != j and k != j]
    return sum(_huber(cos(s, i, j, k) - cos(t, i, j, k)) for i, j, k in triples) / len(triples)


def _authors_rkd_angle(s, t):
    def angles(e):
        d = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)
        return torch.bmm(d, d.transpose(1, 2)).view(-1)

    return F.smooth_l1_loss(angles(s), angles(t))


def test_rkd_angle_matches_triplet_reference_and_authors_averaging():
    s, t = _feats()
    got = L.rkd_angle_loss(s, t)
    assert float(got) == pytest.approx(_ref_rkd_angle(s, t), rel=1e-10)
    n = len(s)
    torch.testing.assert_close(got * (n - 1) ** 2 / n**2, _authors_rkd_angle(s, t))
    # the angles do not change under scaling, translation and rotation
    q, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))
    assert float(L.rkd_angle_loss(s, 0.5 * s @ q - 1.0)) == pytest.approx(0.0, abs=1e-12)


def test_rkd_gradients_are_finite_with_duplicate_rows():
    s, t = _feats()
    s = torch.cat([s, s[:1]]).requires_grad_(True)  # a zero distance off the diagonal
    t = torch.cat([t, t[:1]])
    for fn in (L.rkd_distance_loss, L.rkd_angle_loss):
        (g,) = torch.autograd.grad(fn(s, t), s)
        assert torch.isfinite(g).all()


def test_rkd_mask_drops_rows_from_the_relation():
    s, t = _feats(n=6)
    keep = torch.tensor([True, True, False, True, True, True])
    for fn in (L.rkd_distance_loss, L.rkd_angle_loss):
        torch.testing.assert_close(fn(s, t, mask=keep), fn(s[keep], t[keep]))
        assert fn(s, t, mask=keep, reduction="none")[2] == 0


def test_rkd_rejects_bad_inputs():
    s, t = _feats()
    with pytest.raises(InputError, match="one row per example"):
        L.rkd_distance_loss(s, t[:-1])
    with pytest.raises(InputError, match="delta must be"):
        L.rkd_angle_loss(s, t, delta=0.0)
    with pytest.raises(InputError, match="mask"):
        L.rkd_angle_loss(s, t, mask=torch.ones(5))


# ------------------------------------------------------------------------------------------------- ND


def _authors_nd(s, t, centers, labels):
    total = 0.0
    for si, ti, y in zip(s, t, labels):
        e_c = centers[int(y)] / centers[int(y)].norm()
        total += 1 - float(si @ e_c) / max(float(si.norm()), float(ti.norm()))
    return total / len(labels)


def test_nd_loss_matches_authors_formula():
    s, t = _feats(n=6, ds=5, dt=5)
    centers = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    assert float(L.nd_loss(s, t, y, centers)) == pytest.approx(_authors_nd(s, t, centers, y), rel=1e-12)
    # a student feature along its centre, longer than the teacher's, gives 0
    along = 2.0 * centers[y] / centers[y].norm(dim=-1, keepdim=True)
    assert float(L.nd_loss(along, 0.5 * t / t.norm(dim=-1, keepdim=True), y, centers)) == pytest.approx(0, abs=1e-12)
    with pytest.raises(InputError, match=r"class indices in \[0, 3\)"):
        L.nd_loss(s, t, torch.tensor([0, 1, 2, 3, 1, 0]), centers)
    with pytest.raises(InputError, match="same width"):
        L.nd_loss(s, t[:, :4], y, centers)


# ----------------------------------------------------------------------------------------- prototypes


def test_prototype_relation_matches_per_sample_kl():
    s, t = _feats(n=4, ds=5, dt=5)
    g = torch.Generator().manual_seed(4)
    protos, old = (torch.randn(3, 5, generator=g, dtype=torch.float64) for _ in range(2))
    tau = 0.2
    ref = 0.0
    for si, ti in zip(s, t):
        pt = torch.softmax(F.normalize(old, dim=-1) @ F.normalize(ti, dim=0) / tau, 0)
        ps = torch.softmax(F.normalize(protos, dim=-1) @ F.normalize(si, dim=0) / tau, 0)
        ref += float((pt * (pt.log() - ps.log())).sum())
    got = L.prototype_relation_loss(s, t, protos, teacher_prototypes=old, temperature=tau)
    assert float(got) == pytest.approx(ref / 4, rel=1e-10)
    assert float(L.prototype_relation_loss(t, t, protos)) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(InputError, match="teacher_prototypes"):
        L.prototype_relation_loss(s, t, protos, teacher_prototypes=old[:2])


# ------------------------------------------------------------------------------------------------ SinKD


def _authors_sinkd(ys, yt, T=2.0, eps=0.1, iters=20):
    ps, pt = torch.softmax(ys / T, 1), torch.softmax(yt / T, 1)
    w = torch.cdist(ps, pt, p=1)
    p = torch.exp(-w / eps)
    for _ in range(iters):
        p = p / p.sum(1, keepdim=True)
        p = p / p.sum(0, keepdim=True)
    return (p * w).sum()


def test_sinkhorn_kd_sum_equals_authors_loss_and_mean_the_sinkhorn_distance():
    g = torch.Generator().manual_seed(5)
    s, t = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(L.sinkhorn_kd_loss(s, t, reduction="sum"), _authors_sinkd(s, t))
    torch.testing.assert_close(
        L.sinkhorn_kd_loss(s, t, temperature=1.0, epsilon=0.5, num_iters=3, reduction="sum"),
        _authors_sinkd(s, t, T=1.0, eps=0.5, iters=3),
    )
    # converged, the mean is the entropic OT cost between uniform measures (pairkit's POT-equal solver)
    ps, pt = torch.softmax(s / 2.0, 1), torch.softmax(t / 2.0, 1)
    cost = torch.cdist(ps, pt, p=1)
    uniform = torch.full((6,), 1 / 6, dtype=torch.float64)
    ref = L.sinkhorn_distance(uniform, uniform, cost, epsilon=0.1, num_iters=2000, tol=1e-13)
    torch.testing.assert_close(L.sinkhorn_kd_loss(s, t, num_iters=2000), ref, rtol=1e-8, atol=1e-10)


def test_sinkhorn_kd_is_small_when_the_student_copies_the_teacher():
    g = torch.Generator().manual_seed(6)
    t = torch.randn(8, 5, generator=g, dtype=torch.float64) * 3
    s = torch.randn(8, 5, generator=g, dtype=torch.float64) * 3
    assert float(L.sinkhorn_kd_loss(t, t, epsilon=0.01, num_iters=500)) < 0.05 * float(
        L.sinkhorn_kd_loss(s, t, epsilon=0.01, num_iters=500)
    )
