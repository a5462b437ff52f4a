"""ASFT, SPO and rationale-augmented DPO against slow references written from the papers' equations."""

import math

import pytest

torch = pytest.importorskip("torch")

from pairkit.errors import InputError  # noqa: E402
from pairkit.losses import asft_loss, orpo_loss, rationale_dpo_loss, spo_loss  # noqa: E402


def _logps(seed=0, b=5):
    g = torch.Generator().manual_seed(seed)
    return [-(torch.rand(b, generator=g, dtype=torch.float64) * 20 + 0.5) for _ in range(4)]


def _log_sigmoid(x):
    return -math.log1p(math.exp(-x)) if x > 0 else x - math.log1p(math.exp(x))


def test_asft_matches_the_log_odds_form_of_the_paper():
    pc, pr, _, _ = _logps()
    lc, lr = torch.tensor([4.0, 7, 2, 9, 3]), torch.tensor([5.0, 3, 8, 2, 6])
    got = asft_loss(pc, pr, chosen_lengths=lc, rejected_lengths=lr, beta=0.4, reduction="none")
    ref = []
    for c, r, a, b in zip(pc.tolist(), pr.tolist(), lc.tolist(), lr.tolist()):
        p_c, p_r = math.exp(c / a), math.exp(r / b)
        odds_c, odds_r = p_c / (1 - p_c), p_r / (1 - p_r)
        align = -_log_sigmoid(math.log(odds_c)) - _log_sigmoid(-math.log(odds_r))
        ref.append(-c / a + 0.4 * align)
    torch.testing.assert_close(got, torch.tensor(ref, dtype=torch.float64))


def test_asft_pushes_each_response_on_its_own_unlike_orpo():
    """ORPO's term depends only on the difference of log-odds; ASFT's changes when both move together."""
    pc, pr = torch.tensor([-1.0]), torch.tensor([-2.0])
    shift = 0.5
    assert asft_loss(pc + shift, pr + shift) != pytest.approx(asft_loss(pc, pr).item())
    assert orpo_loss(pc, pr, chosen_nll=torch.zeros(1)).item() != pytest.approx(
        orpo_loss(pc + shift, pr + shift, chosen_nll=torch.zeros(1)).item()
    )  # (log-odds are nonlinear, so ORPO moves too; ASFT's rejected gradient is nonetheless its own:)
    leaf = pr.clone().requires_grad_(True)
    asft_loss(pc, leaf, beta=1.0).backward()
    p = math.exp(-2.0)
    assert leaf.grad.item() == pytest.approx(p / (1 - p))  # d/dlogP_r of −log(1 − P_r), independent of the chosen


def test_spo_is_dpo_plus_a_degree_cross_entropy():
    pc, pr, rc, rr = _logps(1)
    g = torch.Generator().manual_seed(3)
    z = torch.randn(5, 4, generator=g, dtype=torch.float64)
    k = torch.tensor([0, 3, 1, 2, 3])
    got = spo_loss(pc, pr, rc, rr, degree_logits=z, degree_labels=k, beta=0.2, ssl_weight=0.6, reduction="none")
    ref = []
    for i in range(5):
        dpo = -_log_sigmoid(0.2 * ((pc[i] - rc[i]) - (pr[i] - rr[i])).item())
        logz = math.log(sum(math.exp(v) for v in z[i].tolist()))
        ref.append(dpo + 0.6 * (logz - z[i, k[i]].item()))
    torch.testing.assert_close(got, torch.tensor(ref, dtype=torch.float64))
    with pytest.raises(InputError, match="degree_labels must lie in"):
        spo_loss(pc, pr, rc, rr, degree_logits=z, degree_labels=k + 1)
    with pytest.raises(InputError, match="both degree_logits and degree_labels"):
        spo_loss(pc, pr, rc, rr, degree_logits=z)


def test_rationale_dpo_adds_the_rationale_likelihood():
    pc, pr, rc, rr = _logps(2)
    rat = -torch.arange(1.0, 6.0, dtype=torch.float64)
    got = rationale_dpo_loss(pc, pr, rc, rr, rationale_logps=rat, gamma=0.5, beta=0.3, reduction="none")
    ref = [-_log_sigmoid(0.3 * ((pc[i] - rc[i]) - (pr[i] - rr[i])).item()) + 0.5 * (i + 1) for i in range(5)]
    torch.testing.assert_close(got, torch.tensor(ref, dtype=torch.float64))
    lengths = torch.full((5,), 2.0)
    half = rationale_dpo_loss(pc, pr, rc, rr, rationale_logps=rat, rationale_lengths=lengths, gamma=1.0,
                              reduction="none")  # fmt: skip
    plain = rationale_dpo_loss(pc, pr, rc, rr, rationale_logps=rat / 2, gamma=1.0, reduction="none")
    torch.testing.assert_close(half, plain)
    with pytest.raises(InputError, match="rationale_logps"):
        rationale_dpo_loss(pc, pr, rc, rr, rationale_logps=rat[:3])
