"""Diagnostics against explicit formulas (loops, closed forms) and the behaviour each paper predicts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pairkit.errors import InputError
from pairkit.losses import (
    alignment_gap,
    ches_score,
    gradient_entanglement,
    idealized_ranking_accuracy,
    implicit_reward_accuracy,
    implicit_reward_margins,
    ranking_accuracy,
    select_high_ches,
    top_k_entropy,
    top_k_mass,
)


def _logps(seed, n=40):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g, dtype=torch.float64) * 3 - 30 for _ in range(4)]


def test_implicit_reward_margins_and_accuracy():
    pc, pr, rc, rr = _logps(0)
    m = implicit_reward_margins(pc, pr, rc, rr, beta=0.2)
    torch.testing.assert_close(
        m, torch.tensor([0.2 * ((pc[i] - rc[i]) - (pr[i] - rr[i])).item() for i in range(40)], dtype=torch.float64)
    )
    acc = implicit_reward_accuracy(pc, pr, rc, rr, beta=0.2)
    assert acc.item() == pytest.approx(sum(float(x > 0) for x in m.tolist()) / 40)
    mask = torch.arange(40) < 10
    assert implicit_reward_accuracy(pc, pr, rc, rr, mask=mask).item() == pytest.approx(
        (m[:10] > 0).double().mean().item()
    )
    assert implicit_reward_accuracy(pc[:0], pr[:0], rc[:0], rr[:0]).item() == 0.0


def test_ranking_accuracy_idealized_and_gap():
    pc, pr, rc, rr = _logps(1)
    g = torch.Generator().manual_seed(2)
    alpha = torch.rand(40, generator=g, dtype=torch.float64)
    alpha[:5] = 1.0  # unanimous pairs
    beta = 0.5
    assert ranking_accuracy(pc, pr).item() == pytest.approx(sum(float(a > b) for a, b in zip(pc, pr)) / 40)
    # Chen et al. (2024), Thm 3.1 in ratio form: pi_ref(y_w)/pi_ref(y_l) > ((1 - alpha)/alpha)^(1/beta)
    hits = []
    for i in range(40):
        a = alpha[i].item()
        threshold = 0.0 if a == 1.0 else ((1 - a) / a) ** (1 / beta)
        hits.append(float(math.exp(rc[i].item() - rr[i].item()) > threshold))
    ideal = idealized_ranking_accuracy(rc, rr, preference_probs=alpha, beta=beta)
    assert ideal.item() == pytest.approx(sum(hits) / 40)
    gap = alignment_gap(pc, pr, rc, rr, preference_probs=alpha, beta=beta)
    assert gap.item() == pytest.approx(ideal.item() - ranking_accuracy(pc, pr).item())
    # all-unanimous data: the optimum ranks every pair correctly whatever the reference does
    assert idealized_ranking_accuracy(rc, rr, preference_probs=torch.ones(40), beta=beta).item() == 1.0
    # alpha = 1/2 carries no preference: the optimum keeps the reference's ranking
    assert (
        idealized_ranking_accuracy(rc, rr, preference_probs=torch.full((40,), 0.5)).item()
        == ranking_accuracy(rc, rr).item()
    )
    with pytest.raises(InputError, match="preference_probs"):
        idealized_ranking_accuracy(rc, rr, preference_probs=alpha + 1)


def test_ches_reference_and_filter():
    g = torch.Generator().manual_seed(3)
    hc, hr = (
        torch.randn(5, 6, 4, generator=g, dtype=torch.float64),
        torch.randn(5, 3, 4, generator=g, dtype=torch.float64),
    )
    cm = torch.arange(6)[None] < torch.tensor([[6], [2], [4], [1], [3]])
    rm = torch.arange(3)[None] < torch.tensor([[3], [1], [2], [3], [2]])
    got = ches_score(hc, hr, chosen_mask=cm, rejected_mask=rm)
    got_ln = ches_score(hc, hr, chosen_mask=cm, rejected_mask=rm, length_normalize=True)
    for b in range(5):
        sp = sum(hc[b, t] for t in range(6) if cm[b, t])
        sn = sum(hr[b, t] for t in range(3) if rm[b, t])
        assert got[b].item() == pytest.approx((sp @ sn - sp @ sp).item(), rel=1e-10)
        lp, ln = int(cm[b].sum()), int(rm[b].sum())
        want_ln = (sp @ sn) / (lp * ln) - (sp @ sp) / lp**2
        assert got_ln[b].item() == pytest.approx(want_ln.item(), rel=1e-10)
    # identical responses: CHES = 0; opposite hidden states: strongly negative
    assert ches_score(hc, hc).abs().max().item() < 1e-9
    assert torch.all(ches_score(hc, -hc) < 0)
    scores = torch.tensor([0.3, 5.0, -1.0, 5.0, 2.0])
    torch.testing.assert_close(select_high_ches(scores, k=2), torch.tensor([False, True, False, True, False]))
    torch.testing.assert_close(select_high_ches(scores, fraction=0.5), torch.tensor([False, True, False, True, True]))
    assert not select_high_ches(scores, k=0).any()
    with pytest.raises(InputError, match="exactly one"):
        select_high_ches(scores)
    with pytest.raises(InputError, match="k must"):
        select_high_ches(scores, k=9)


def test_gradient_entanglement_closed_form_and_prediction():
    # log pi(y) = w . x_y: the gradients are the feature vectors, so the cosine is theirs
    g = torch.Generator().manual_seed(4)
    w = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    xc = torch.randn(6, generator=g, dtype=torch.float64)
    xr = xc + 0.3 * torch.randn(6, generator=g, dtype=torch.float64)  # similar responses: strongly entangled
    ent = gradient_entanglement(w @ xc, w @ xr, [w])
    assert ent.cosine.item() == pytest.approx(F.cosine_similarity(xc, xr, dim=0).item(), rel=1e-10)
    assert ent.inner.item() == pytest.approx((xc @ xr).item())
    assert ent.chosen_sq_norm.item() == pytest.approx((xc @ xc).item())
    # Yuan et al.: under a margin loss the chosen log-prob falls iff <g_c, g_r> > |g_c|^2
    for xr_case in (xc * 1.5, -xc):
        before = (w @ xc).item()
        loss = -F.logsigmoid(w @ xc - w @ xr_case)
        (grad,) = torch.autograd.grad(loss, w)
        after = ((w - 1e-3 * grad) @ xc).item()
        e = gradient_entanglement(w @ xc, w @ xr_case, [w])
        assert (after < before) == (e.inner > e.chosen_sq_norm).item()
    with pytest.raises(InputError, match="requires_grad"):
        gradient_entanglement(w @ xc, w @ xr, [torch.ones(3)])


def test_top_k_entropy_and_mass():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 3, 10, generator=g, dtype=torch.float64)
    full = torch.distributions.Categorical(logits=logits).entropy()
    torch.testing.assert_close(
        top_k_entropy(logits, k=10, reduction="none"), full.float().double(), atol=1e-6, rtol=1e-6
    )
    torch.testing.assert_close(
        top_k_mass(logits, k=10, reduction="none"), torch.ones(2, 3, dtype=torch.float64), atol=1e-6, rtol=0
    )
    uniform = torch.zeros(4, 10)
    assert top_k_entropy(uniform, k=3).item() == pytest.approx(math.log(3), rel=1e-6)
    assert top_k_mass(uniform, k=3).item() == pytest.approx(0.3, rel=1e-6)
    # a peaked (over-optimised) distribution: entropy near 0, mass near 1; extreme logits stay finite
    peaked = torch.tensor([[1e4, -1e4, 0.0, 5.0]])
    assert top_k_entropy(peaked, k=2).item() == pytest.approx(0.0, abs=1e-6)
    assert top_k_mass(peaked, k=1).item() == pytest.approx(1.0)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    want = (full[0, 0] + full[0, 2]) / 2
    assert top_k_entropy(logits, k=10, mask=mask).item() == pytest.approx(want.item(), rel=1e-6)
    with pytest.raises(InputError, match="k must"):
        top_k_mass(logits, k=11)
