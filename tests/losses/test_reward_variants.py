"""ArmoRM's gated BT loss, the K-wise pairwise MLE and the pessimistic rewards of Zhu, Jordan & Jiao (2023),
against slow references written from the papers' equations and closed forms."""

from __future__ import annotations

import itertools
import math

import pytest

torch = pytest.importorskip("torch")

import pairkit.losses as L  # noqa: E402
from pairkit.errors import InputError  # noqa: E402


def test_armorm_matches_gated_bradley_terry_reference():
    g = torch.Generator().manual_seed(0)
    c, r = torch.randn(5, 6, generator=g, dtype=torch.float64), torch.randn(5, 6, generator=g, dtype=torch.float64)
    ref = []
    for ci, ri in zip(c, r):
        score = [sum(math.exp(x[3 + i]) / sum(math.exp(x[3 + j]) for j in range(3)) * x[i] for i in range(3))
                 for x in (ci.tolist(), ri.tolist())]  # fmt: skip
        ref.append(math.log1p(math.exp(-2.0 * (score[0] - score[1]))))
    torch.testing.assert_close(L.armorm_loss(c, r, beta=2.0, reduction="none"), torch.tensor(ref, dtype=torch.float64))
    # a gate certain of one objective is Bradley-Terry on that objective
    c2, r2 = c.clone(), r.clone()
    c2[:, 3:], r2[:, 3:] = torch.tensor([50.0, 0.0, 0.0]), torch.tensor([50.0, 0.0, 0.0])
    torch.testing.assert_close(L.armorm_loss(c2, r2), L.bradley_terry_reward_loss(c2[:, 0], r2[:, 0]))
    with pytest.raises(InputError, match="even width"):
        L.armorm_scores(torch.zeros(2, 5))


def test_kwise_pairwise_loss_sums_bt_over_ranked_pairs():
    g = torch.Generator().manual_seed(1)
    rewards = torch.randn(3, 4, generator=g, dtype=torch.float64)
    labels = torch.tensor([[3.0, 1.0, 2.0, 0.0], [1.0, 1.0, 0.0, 2.0], [0.0, 2.0, 1.0, 5.0]])
    mask = torch.tensor([[True] * 4, [True] * 4, [True, True, True, False]])
    ref = []
    for r, y, m in zip(rewards, labels, mask):
        idx = [i for i in range(4) if m[i]]
        ref.append(sum(math.log1p(math.exp(-(float(r[i]) - float(r[j])))) for i, j in itertools.permutations(idx, 2)
                       if y[i] > y[j]))  # fmt: skip
    got = L.kwise_pairwise_reward_loss(rewards, labels, mask=mask, reduction="none")
    torch.testing.assert_close(got, torch.tensor(ref, dtype=torch.float64))
    pair = rewards[:, :2]
    two = L.kwise_pairwise_reward_loss(pair, torch.tensor([[1.0, 0.0]] * 3))
    torch.testing.assert_close(two, L.bradley_terry_reward_loss(pair[:, 0], pair[:, 1]))


def test_kwise_covariance_is_the_mean_over_pairwise_differences():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 3, 2, generator=g, dtype=torch.float64)
    mask = torch.tensor([[True, True, True], [True, True, False], [True, False, False], [True, True, True]])
    per_list = []
    for xi, mi in zip(x, mask):
        rows = xi[mi]
        pairs = list(itertools.combinations(range(len(rows)), 2))
        if pairs:
            per_list.append(sum(torch.outer(rows[a] - rows[b], rows[a] - rows[b]) for a, b in pairs) / len(pairs))
    torch.testing.assert_close(L.kwise_feature_covariance(x, mask), sum(per_list) / len(per_list))


def test_pessimistic_reward_is_the_minimum_over_the_confidence_set():
    g = torch.Generator().manual_seed(3)
    d = 3
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    cov, theta = a @ a.T / d, torch.randn(d, generator=g, dtype=torch.float64)
    phi = torch.randn(4, d, generator=g, dtype=torch.float64)
    gamma, lam = 0.7, 0.1
    m = cov + lam * torch.eye(d, dtype=torch.float64)
    m_inv = torch.linalg.inv(m)
    got = L.pessimistic_rewards(phi, theta, cov, gamma=gamma, lam=lam)
    ref = phi @ theta - gamma * torch.sqrt(torch.einsum("nd,de,ne->n", phi, m_inv, phi))
    torch.testing.assert_close(got, ref)
    # attained at θ* = θ̂ - Γ M⁻¹φ / ‖φ‖_{M⁻¹} on the boundary ‖θ - θ̂‖_M = Γ; other boundary points are higher
    for p, value in zip(phi, got):
        step = m_inv @ p / torch.sqrt(p @ m_inv @ p)
        star = theta - gamma * step
        assert float(torch.sqrt((star - theta) @ m @ (star - theta))) == pytest.approx(gamma)
        assert float(star @ p) == pytest.approx(float(value))
        u = torch.randn(20, d, generator=g, dtype=torch.float64)
        u = u / torch.sqrt(torch.einsum("nd,de,ne->n", u, m, u))[:, None]
        assert (((theta + gamma * u) @ p) >= value - 1e-12).all()
    with pytest.raises(InputError, match="gamma"):
        L.pessimistic_rewards(phi, theta, cov, gamma=-1.0)


def _pal_ref(c, r, protos, w, scale, tau, link):
    out = []
    for ci, ri, wi in zip(c, r, w):
        mix = torch.softmax(wi / tau, 0)
        a = sum(mix[k] * protos[k] for k in range(len(protos)))
        m = float((ri - a).norm() - (ci - a).norm())
        out.append(math.log1p(math.exp(-scale * m)) if link == "logistic" else max(0.0, 1.0 - m))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("link", ["logistic", "hinge"])
def test_pal_ideal_point_matches_mixture_reference(link):
    g = torch.Generator().manual_seed(4)
    c, r = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    protos, w = torch.randn(2, 3, generator=g, dtype=torch.float64), torch.randn(5, 2, generator=g, dtype=torch.float64)
    got = L.pal_ideal_point_loss(c, r, protos, w, scale=3.0, temperature=0.5, link=link, reduction="none")
    torch.testing.assert_close(got, _pal_ref(c, r, protos, w, 3.0, 0.5, link))
    # a user whose ideal point is the chosen response's embedding prefers it
    flat = torch.zeros(5, 2, dtype=torch.float64)
    at_chosen = L.pal_ideal_point_loss(c, r, c[:1].expand(2, 3), flat, link="hinge", reduction="none")
    torch.testing.assert_close(at_chosen[0], torch.relu(1.0 - (r[0] - c[0]).norm()))
