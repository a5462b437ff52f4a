"""Listwise losses: K = 2 identities with DPO, brute-force Plackett–Luce, and a slow LiPO-λ reference."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import pairkit.losses as L
from pairkit.errors import InputError
from pairkit.losses import dpo_plackett_luce_loss, lipo_lambda_weights, lipo_loss, lipo_softmax_loss

BETA = 0.3


def _dpo(pc, pr, rc, rr, beta=BETA):
    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr)))


def _pair(seed, n=8):
    g = torch.Generator().manual_seed(seed)
    pol, ref = torch.randn(n, 2, generator=g) * 4, torch.randn(n, 2, generator=g) * 4
    return pol, ref, torch.tensor([[1.0, 0.0]] * n)


@pytest.mark.parametrize("seed", [0, 1])
def test_list_of_two_equals_dpo(seed):
    pol, ref, labels = _pair(seed)
    dpo = _dpo(pol[:, 0], pol[:, 1], ref[:, 0], ref[:, 1])
    kw = {"beta": BETA, "reduction": "none"}
    torch.testing.assert_close(lipo_loss(pol, ref, labels, lambda_weights=False, **kw), dpo)
    torch.testing.assert_close(dpo_plackett_luce_loss(pol, ref, labels, **kw), dpo)
    torch.testing.assert_close(lipo_softmax_loss(pol, ref, labels, label_temperature=1e-3, **kw), dpo)
    # LiPO-lambda: a constant lambda weight |G_1 - G_2| |1/log2(2) - 1/log2(3)| times DPO
    torch.testing.assert_close(lipo_loss(pol, ref, labels, **kw), (1 - 1 / math.log2(3)) * dpo)
    # swapping the order of the two responses (and their labels) changes nothing
    torch.testing.assert_close(dpo_plackett_luce_loss(pol.flip(-1), ref.flip(-1), labels.flip(-1), **kw), dpo)
    # the same value as the pairwise DPO module's loss
    from pairkit.losses import get

    torch.testing.assert_close(
        get("dpo")(pol[:, 0], pol[:, 1], ref[:, 0], ref[:, 1], beta=BETA),
        lipo_loss(pol, ref, labels, beta=BETA, lambda_weights=False),
    )


def test_plackett_luce_dpo_brute_force():
    g = torch.Generator().manual_seed(2)
    pol, ref = torch.randn(1, 4, generator=g, dtype=torch.float64), torch.randn(1, 4, generator=g, dtype=torch.float64)
    s = (BETA * (pol - ref))[0].tolist()
    total = 0.0
    for perm in itertools.permutations(range(4)):
        labels = torch.zeros(1, 4, dtype=torch.float64)
        labels[0, list(perm)] = torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=torch.float64)
        p, rest = 1.0, list(perm)
        while rest:
            p *= math.exp(s[rest[0]]) / sum(math.exp(s[j]) for j in rest)
            rest = rest[1:]
        nll = dpo_plackett_luce_loss(pol, ref, labels, beta=BETA).item()
        assert nll == pytest.approx(-math.log(p), rel=1e-10)
        total += p
    assert total == pytest.approx(1.0)


def _slow_lipo_lambda(s, labels, valid):
    """LiPO-λ written out pair by pair (Liu et al. 2024, Eq. for the lambda loss; LambdaRank NDCG weights)."""
    out = []
    for b in range(s.shape[0]):
        items = [i for i in range(s.shape[1]) if valid[b, i]]
        ordered = sorted(items, key=lambda i: (-s[b, i].item(), i))
        rank = {i: r + 1 for r, i in enumerate(ordered)}
        loss = 0.0
        for i in items:
            for j in items:
                if labels[b, i] > labels[b, j]:
                    gain = abs(2 ** labels[b, i].item() - 2 ** labels[b, j].item())
                    disc = abs(1 / math.log2(1 + rank[i]) - 1 / math.log2(1 + rank[j]))
                    loss += gain * disc * math.log1p(math.exp(-(s[b, i] - s[b, j]).item()))
        out.append(loss)
    return torch.tensor(out, dtype=torch.float64)


def test_lipo_lambda_matches_slow_reference_with_ragged_lists_and_ties():
    g = torch.Generator().manual_seed(3)
    pol, ref = torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(6, 5, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (6, 5), generator=g).double()  # many ties
    valid = torch.arange(5)[None] < torch.randint(1, 6, (6, 1), generator=g)
    got = lipo_loss(pol, ref, labels, beta=BETA, mask=valid, reduction="none")
    torch.testing.assert_close(got, _slow_lipo_lambda(BETA * (pol - ref), labels, valid))
    # gradient: the lambda weights are constants
    p = pol.clone().requires_grad_(True)
    lipo_loss(p, ref, labels, beta=BETA, mask=valid, reduction="sum").backward()
    s = BETA * (pol - ref)
    w = lipo_lambda_weights(s, labels, valid)
    ok = (labels[:, :, None] > labels[:, None, :]) & valid[:, :, None] & valid[:, None, :]
    coef = torch.where(ok, w * torch.sigmoid(-(s[:, :, None] - s[:, None, :])), 0.0)
    want = -BETA * (coef.sum(2) - coef.sum(1))
    torch.testing.assert_close(p.grad, want)


def test_listnet_reference_and_label_distribution():
    g = torch.Generator().manual_seed(4)
    pol, ref, labels = (torch.randn(3, 4, generator=g, dtype=torch.float64) for _ in range(3))
    valid = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 1, 1]], dtype=torch.bool)
    got = lipo_softmax_loss(pol, ref, labels, beta=BETA, label_temperature=0.5, mask=valid, reduction="none")
    for b in range(3):
        idx = valid[b].nonzero()[:, 0]
        target = torch.softmax(labels[b, idx] / 0.5, 0)
        want = -(target * torch.log_softmax(BETA * (pol[b, idx] - ref[b, idx]), 0)).sum()
        assert got[b].item() == pytest.approx(want.item(), rel=1e-10)


def test_lambda_labels_must_be_graded():
    pol, ref, _ = _pair(0)
    with pytest.raises(InputError, match="graded"):
        lipo_loss(pol, ref, torch.tensor([[500.0, 0.0]] * 8))
    lipo_loss(pol, ref, torch.tensor([[500.0, 0.0]] * 8), lambda_weights=False)  # fine without lambda weights
    with pytest.raises(InputError, match="label_temperature"):
        lipo_softmax_loss(pol, ref, torch.zeros(8, 2), label_temperature=0.0)
    with pytest.raises(InputError, match="mask"):
        lipo_loss(pol, ref, torch.zeros(8, 2), mask=torch.ones(8, 2))


@settings(max_examples=25, deadline=None)
@given(k=st.integers(2, 6), seed=st.integers(0, 10_000), lam=st.booleans())
def test_listwise_losses_invariant_to_list_order(k, seed, lam):
    g = torch.Generator().manual_seed(seed)
    pol, ref = torch.randn(3, k, generator=g, dtype=torch.float64), torch.randn(3, k, generator=g, dtype=torch.float64)
    labels = torch.randperm(3 * k, generator=g).reshape(3, k).double() / k  # distinct labels: no tie-breaking
    valid = torch.rand(3, k, generator=g) > 0.3
    perm = torch.randperm(k, generator=g)
    for fn, kw in (
        (lipo_loss, {"lambda_weights": lam}),
        (dpo_plackett_luce_loss, {}),
        (lipo_softmax_loss, {}),
    ):
        a = fn(pol, ref, labels, mask=valid, reduction="none", **kw)
        b = fn(pol[:, perm], ref[:, perm], labels[:, perm], mask=valid[:, perm], reduction="none", **kw)
        torch.testing.assert_close(a, b)
    # shifting every policy log-prob of a list by a constant (e.g. a prompt-level offset) changes nothing
    shift = torch.randn(3, 1, generator=g, dtype=torch.float64) * 10
    torch.testing.assert_close(
        dpo_plackett_luce_loss(pol + shift, ref, labels, mask=valid),
        dpo_plackett_luce_loss(pol, ref, labels, mask=valid),
    )


# ------------------------------------------------------------------------------------------- NCA, InfoNCA


def _ref_nca(pol, ref, rewards, valid, beta, alpha):
    out = []
    for p, r, w, v in zip(pol, ref, rewards, valid):
        idx = [i for i in range(len(p)) if v[i]]
        s = [beta * float(p[i] - r[i]) for i in idx]
        e = [float(torch.exp(w[i] / alpha)) for i in idx]
        k = len(idx)
        out.append(
            -sum(e[j] / sum(e) * float(F.logsigmoid(torch.tensor(s[j]))) + float(F.logsigmoid(torch.tensor(-s[j]))) / k
                 for j in range(k))
        )  # fmt: skip
    return torch.tensor(out, dtype=torch.float64)


def test_nca_matches_reference_with_ragged_lists():
    g = torch.Generator().manual_seed(0)
    pol = -torch.rand(3, 4, generator=g, dtype=torch.float64) * 5
    ref = -torch.rand(3, 4, generator=g, dtype=torch.float64) * 5
    rewards = torch.randn(3, 4, generator=g, dtype=torch.float64)
    valid = torch.tensor([[True, True, True, True], [True, False, True, True], [True, True, False, False]])
    got = L.nca_loss(pol, ref, rewards, beta=0.5, label_temperature=0.7, mask=valid, reduction="none")
    torch.testing.assert_close(got, _ref_nca(pol, ref, rewards, valid, 0.5, 0.7))


def test_nca_and_infonca_with_two_responses_and_a_hard_preference_are_the_pair_losses():
    g = torch.Generator().manual_seed(1)
    pc, pr, rc, rr = (-torch.rand(5, generator=g, dtype=torch.float64) * 4 for _ in range(4))
    pol, ref = torch.stack([pc, pr], 1), torch.stack([rc, rr], 1)
    rewards = torch.tensor([[1.0, 0.0]] * 5, dtype=torch.float64)
    hard = dict(beta=0.3, label_temperature=1e-3)
    torch.testing.assert_close(L.nca_loss(pol, ref, rewards, **hard), L.nca_pair_loss(pc, pr, rc, rr, beta=0.3))
    assert L.get("infonca") is L.lipo_softmax_loss
    torch.testing.assert_close(L.get("infonca")(pol, ref, rewards, **hard), L.dpo_loss(pc, pr, rc, rr, beta=0.3))
