"""Reward-model losses: TRL's own RewardTrainer.compute_loss, identities between the BT variants, brute-force
Plackett–Luce, and the General Preference Model's skew symmetry and cyclic preferences."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from pairkit.errors import InputError
from pairkit.losses import (
    bradley_terry_reward_loss,
    gpm_loss,
    gpm_preference_logits,
    gpm_preference_probs,
    plackett_luce_reward_loss,
    regression_bradley_terry_loss,
    reward_centering_loss,
    soft_bradley_terry_reward_loss,
)
from tests.losses.trl_stubs import trl_reward_loss

TOL = {"rtol": 1e-6, "atol": 1e-6}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("use_margin", [False, True])
@pytest.mark.parametrize("center", [None, 0.01])
def test_bradley_terry_matches_trl_reward_trainer(seed, use_margin, center):
    g = torch.Generator().manual_seed(seed)
    rc, rr = torch.randn(16, generator=g) * 3, torch.randn(16, generator=g) * 3
    margin = torch.rand(16, generator=g) * 2 if use_margin else None
    a = [rc.clone().requires_grad_(True), rr.clone().requires_grad_(True)]
    b = [rc.clone().requires_grad_(True), rr.clone().requires_grad_(True)]
    want = trl_reward_loss(*a, margin=margin, center=center)
    got = bradley_terry_reward_loss(*b, margin=margin, center_rewards_coefficient=center)
    torch.testing.assert_close(got, want, **TOL)
    want.backward()
    got.backward()
    for x, y in zip(b, a):
        torch.testing.assert_close(x.grad, y.grad, **TOL)


def test_bt_variants_reduce_to_bt():
    g = torch.Generator().manual_seed(2)
    rc, rr, tc, tr = (torch.randn(9, generator=g) for _ in range(4))
    m = torch.rand(9, generator=g)
    bt = bradley_terry_reward_loss(rc, rr, margin=m, reduction="none")
    ones = torch.ones(9)
    torch.testing.assert_close(
        soft_bradley_terry_reward_loss(rc, rr, target_probs=ones, margin=m, reduction="none"), bt
    )
    # p = 1/2: symmetric in the two responses
    half = torch.full((9,), 0.5)
    torch.testing.assert_close(
        soft_bradley_terry_reward_loss(rc, rr, target_probs=half, reduction="none"),
        soft_bradley_terry_reward_loss(rr, rc, target_probs=half, reduction="none"),
    )
    # soft label p equals the p-weighted mix of the two hard-label losses
    p = torch.rand(9, generator=g)
    mix = p * bradley_terry_reward_loss(rc, rr, reduction="none") + (1 - p) * bradley_terry_reward_loss(
        rr, rc, reduction="none"
    )
    torch.testing.assert_close(soft_bradley_terry_reward_loss(rc, rr, target_probs=p, reduction="none"), mix)
    reg = regression_bradley_terry_loss(
        rc, rr, chosen_targets=tc, rejected_targets=tr, margin=m, regression_weight=0.0, reduction="none"
    )
    torch.testing.assert_close(reg, bt)
    full = regression_bradley_terry_loss(
        rc, rr, chosen_targets=tc, rejected_targets=tr, strength=-2 * ones, regression_weight=0.3, reduction="none"
    )
    want = [
        -2 * math.log(1 / (1 + math.exp(-(rc[i] - rr[i]).item())))
        + 0.3 * 0.5 * ((rc[i] - tc[i]).item() ** 2 + (rr[i] - tr[i]).item() ** 2)
        for i in range(9)
    ]
    torch.testing.assert_close(full, torch.tensor(want))
    torch.testing.assert_close(reward_centering_loss(rc, rr, reduction="none"), (rc + rr) ** 2)
    with pytest.raises(InputError, match="target_probs"):
        soft_bradley_terry_reward_loss(rc, rr, target_probs=ones * 1.5)
    with pytest.raises(InputError, match="margin"):
        bradley_terry_reward_loss(rc, rr, margin=torch.ones(4))


def test_plackett_luce_reward_brute_force_and_k2():
    g = torch.Generator().manual_seed(3)
    r = torch.randn(2, 4, generator=g, dtype=torch.float64)
    # probabilities of all 4! orderings sum to 1; each matches the product-of-choices formula
    total = torch.zeros(2, dtype=torch.float64)
    for perm in itertools.permutations(range(4)):
        labels = torch.zeros(2, 4, dtype=torch.float64)
        labels[:, list(perm)] = torch.arange(4, 0, -1, dtype=torch.float64)  # perm[0] gets the top label
        nll = plackett_luce_reward_loss(r, labels, reduction="none")
        for b in range(2):
            p, rest = 1.0, list(perm)
            while rest:
                p *= math.exp(r[b, rest[0]]) / sum(math.exp(r[b, j]) for j in rest)
                rest = rest[1:]
            assert math.exp(-nll[b].item()) == pytest.approx(p, rel=1e-10)
        total += torch.exp(-nll)
    torch.testing.assert_close(total, torch.ones(2, dtype=torch.float64))
    # K = 2 is Bradley-Terry
    x = torch.randn(6, 2, generator=g)
    torch.testing.assert_close(
        plackett_luce_reward_loss(x, torch.tensor([[1, 0]] * 6)), bradley_terry_reward_loss(x[:, 0], x[:, 1])
    )


def test_gpm_skew_symmetry_and_bt_special_case():
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(7, 8, generator=g), torch.randn(7, 8, generator=g)
    lam = torch.rand(4, generator=g)
    torch.testing.assert_close(
        gpm_preference_logits(a, b, eigenvalues=lam), -gpm_preference_logits(b, a, eigenvalues=lam)
    )
    torch.testing.assert_close(gpm_preference_logits(a, a), torch.zeros(7), atol=1e-6, rtol=0)
    p = gpm_preference_probs(a, b, beta=0.7)
    torch.testing.assert_close(p + gpm_preference_probs(b, a, beta=0.7), torch.ones(7))
    # the explicit matrix form <R v1, v2> with R = blockdiag(lambda_l [[0, -1], [1, 0]])
    R = torch.block_diag(*[lam_l * torch.tensor([[0.0, -1.0], [1.0, 0.0]]) for lam_l in lam])
    torch.testing.assert_close(gpm_preference_logits(a, b, eigenvalues=lam), ((a @ R.T) * b).sum(-1))
    # embeddings (r, 1) reproduce Bradley-Terry with reward r
    rc, rr = torch.randn(7, generator=g), torch.randn(7, generator=g)
    emb = lambda r: torch.stack((r, torch.ones_like(r)), -1)  # noqa: E731
    torch.testing.assert_close(gpm_loss(emb(rc), emb(rr)), bradley_terry_reward_loss(rc, rr))
    with pytest.raises(InputError, match="even"):
        gpm_loss(torch.randn(3, 5), torch.randn(3, 5))


def test_gpm_represents_and_learns_a_cycle():
    # three responses at 120 degree steps on the circle: a > b, b > c and c > a all with the same probability
    ang = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3])
    v = torch.stack((ang.cos(), ang.sin()), -1) * 2
    first, second = v[[0, 1, 2]], v[[1, 2, 0]]
    p = gpm_preference_probs(first, second)
    assert torch.all(p > 0.8)
    torch.testing.assert_close(p, p[:1].expand(3))
    # a scalar reward cannot: P(a>b), P(b>c), P(c>a) all above 1/2 would need r_a > r_b > r_c > r_a
    # ...and the GPM learns the cycle from data by gradient descent
    emb = torch.nn.Parameter(torch.randn(3, 2, generator=torch.Generator().manual_seed(0)) * 0.1)
    opt = torch.optim.Adam([emb], lr=0.1)
    for _ in range(150):
        opt.zero_grad()
        gpm_loss(emb[[0, 1, 2]], emb[[1, 2, 0]]).backward()
        opt.step()
    assert torch.all(gpm_preference_probs(emb[[0, 1, 2]], emb[[1, 2, 0]]) > 0.75)
    bt = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.Adam([bt], lr=0.1)
    for _ in range(150):
        opt.zero_grad()
        bradley_terry_reward_loss(bt[[0, 1, 2]], bt[[1, 2, 0]]).backward()
        opt.step()
    probs = torch.sigmoid(bt[[0, 1, 2]] - bt[[1, 2, 0]])
    assert probs.min() < 0.5 + 1e-6  # at best 1/2 each: BT cannot fit the cycle


def test_reward_losses_reference_logsigmoid_form():
    g = torch.Generator().manual_seed(5)
    rc, rr = torch.randn(5, generator=g), torch.randn(5, generator=g)
    want = -F.logsigmoid(rc - rr - 0.5).mean() + 0.1 * ((rc + rr) ** 2).mean()
    torch.testing.assert_close(bradley_terry_reward_loss(rc, rr, margin=0.5, center_rewards_coefficient=0.1), want)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), angle=st.floats(-math.pi, math.pi), shift=st.floats(-50, 50))
def test_reward_invariances(seed, angle, shift):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(4, 6, generator=g, dtype=torch.float64)
    # rotating every 2-D block of both embeddings by the same angle preserves the skew-symmetric score
    c, s = math.cos(angle), math.sin(angle)
    rot = torch.block_diag(*[torch.tensor([[c, -s], [s, c]], dtype=torch.float64)] * 3)
    torch.testing.assert_close(gpm_preference_logits(a @ rot.T, b @ rot.T), gpm_preference_logits(a, b))
    # Bradley-Terry and Plackett-Luce depend on reward differences only
    rc, rr = a[:, 0], a[:, 1]
    torch.testing.assert_close(bradley_terry_reward_loss(rc + shift, rr + shift), bradley_terry_reward_loss(rc, rr))
    labels = torch.randint(0, 3, (4, 6), generator=g)
    torch.testing.assert_close(plackett_luce_reward_loss(b + shift, labels), plackett_luce_reward_loss(b, labels))
