"""Unpaired preference losses: TRL's own KTOTrainer code (KTO, APO-zero-unpaired), a reference following TRL's
BCOTrainer, and slow references from the papers for point-wise DPO, ULMA, DRO and NPO."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import pairkit.losses as L
from pairkit.errors import InputError
from pairkit.losses import (
    apo_zero_unpaired_loss,
    bco_loss,
    dro_loss,
    kto_kl_estimate,
    kto_loss,
    npo_loss,
    pointwise_dpo_loss,
    ulma_loss,
)
from tests.losses.trl_stubs import trl_kto_loss

TOL = {"rtol": 1e-6, "atol": 1e-6}


def _inputs(seed, n=12, all_desirable=False):
    g = torch.Generator().manual_seed(seed)
    pol = torch.randn(n, generator=g, dtype=torch.float32) * 3 - 20
    ref = pol.detach() + torch.randn(n, generator=g) * 2
    kl_pol = torch.randn(n, generator=g) * 3 - 20
    kl_ref = kl_pol - torch.randn(n, generator=g).abs() * (1 if seed % 2 else -1)  # both signs of the KL estimate
    labels = torch.ones(n, dtype=torch.bool) if all_desirable else torch.rand(n, generator=g) > 0.4
    return pol, ref, kl_pol, kl_ref, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("beta,dw,uw", [(0.1, 1.0, 1.0), (0.5, 1.33, 0.75)])
@pytest.mark.parametrize("loss_type", ["kto", "apo_zero_unpaired"])
def test_matches_trl_kto_trainer(seed, beta, dw, uw, loss_type):
    pol, ref, kl_pol, kl_ref, labels = _inputs(seed, all_desirable=(seed == 2))
    p1 = pol.clone().requires_grad_(True)
    trl = trl_kto_loss(p1, ref, kl_pol, kl_ref, labels, loss_type=loss_type, beta=beta, dw=dw, uw=uw)
    trl.backward()
    p2 = pol.clone().requires_grad_(True)
    common = {"beta": beta, "desirable_weight": dw, "undesirable_weight": uw}
    if loss_type == "kto":
        ours = kto_loss(p2, ref, labels, policy_kl_logps=kl_pol, ref_kl_logps=kl_ref, **common)
    else:
        ours = L.get("apo_zero_unpaired")(p2, ref, labels, **common)
    ours.backward()
    torch.testing.assert_close(ours, trl, **TOL)
    torch.testing.assert_close(p2.grad, p1.grad, **TOL)


def test_kto_kl_reference_point():
    pol, ref, kl_pol, kl_ref, labels = _inputs(0)
    z0 = kto_kl_estimate(kl_pol, kl_ref)
    assert z0.item() == pytest.approx(max(0.0, (kl_pol - kl_ref).mean().item()), abs=1e-6)
    assert kto_kl_estimate(kl_pol, kl_pol + 1).item() == 0.0  # clamped at 0
    # given explicitly, the same value gives the same loss; it carries no gradient either way
    a = kto_loss(pol, ref, labels, policy_kl_logps=kl_pol, ref_kl_logps=kl_ref)
    b = kto_loss(pol, ref, labels, kl=z0)
    torch.testing.assert_close(a, b)
    klp = kl_pol.clone().requires_grad_(True)
    kto_loss(pol.requires_grad_(True), ref, labels, policy_kl_logps=klp, ref_kl_logps=kl_ref).backward()
    assert klp.grad is None
    with pytest.raises(InputError, match="KL reference point"):
        kto_loss(pol, ref, labels)
    with pytest.raises(InputError, match="desirable"):
        kto_loss(pol, ref, torch.full_like(pol, 2.0), kl=0.0)


def _trl_bco_reference(pol_c, pol_r, ref_c, ref_r, beta, delta, rejected_weight=None):
    """Follows ``BCOTrainer.bco_loss`` and the ``losses.nanmean()`` of ``get_batch_loss_metrics`` in
    huggingface/trl ``trl/trainer/bco_trainer.py`` (TRL 0.x; the trainer was removed in TRL 1.x): losses of the
    chosen then the rejected examples, concatenated, with optional UDM weights on the rejected ones."""
    chosen_rewards = beta * (pol_c - ref_c)
    rejected_rewards = beta * (pol_r - ref_r)
    chosen_losses = -F.logsigmoid(chosen_rewards - delta)
    rejected_losses = -F.logsigmoid(-(rejected_rewards - delta))
    if rejected_weight is not None:
        rejected_losses = rejected_weight * rejected_losses
    return torch.cat((chosen_losses, rejected_losses), 0).nanmean()


def test_bco_matches_trl_with_running_delta_and_udm_weights():
    beta, seen = 0.2, []
    for seed in range(3):
        pol, ref, _, _, labels = _inputs(seed)
        # TRL updates its running mean of all implicit rewards with the current batch before using it
        seen.append((beta * (pol - ref)).detach())
        delta = torch.cat(seen).mean()
        udm = torch.where(labels, 1.0, torch.rand(len(pol), generator=torch.Generator().manual_seed(seed)) + 0.2)
        p1 = pol.clone().requires_grad_(True)
        want = _trl_bco_reference(p1[labels], p1[~labels], ref[labels], ref[~labels], beta, delta, udm[~labels])
        want.backward()
        p2 = pol.clone().requires_grad_(True)
        got = bco_loss(p2, ref, labels, beta=beta, delta=delta, weights=udm, reduction="none").mean()
        got.backward()
        torch.testing.assert_close(got, want, **TOL)
        torch.testing.assert_close(p2.grad, p1.grad, **TOL)


def test_pointwise_dpo_and_ulma_against_formula():
    pol, ref, _, _, labels = _inputs(3)
    beta = 0.3
    z = torch.rand(len(pol), generator=torch.Generator().manual_seed(1))
    want_pw, want_ulma = [], []
    for i in range(len(pol)):
        p = 1 / (1 + math.exp(-beta * (pol[i].item() - ref[i].item())))
        want_pw.append(-(z[i].item() * math.log(p) + (1 - z[i].item()) * math.log(1 - p)))
        want_ulma.append(-pol[i].item() if labels[i] else -math.log(1 - p))
    torch.testing.assert_close(pointwise_dpo_loss(pol, ref, z, beta=beta, reduction="none"), torch.tensor(want_pw))
    torch.testing.assert_close(ulma_loss(pol, ref, labels, beta=beta, reduction="none"), torch.tensor(want_ulma))
    # hard labels: bool and 0/1 floats agree; labels outside [0, 1] are refused
    torch.testing.assert_close(pointwise_dpo_loss(pol, ref, labels), pointwise_dpo_loss(pol, ref, labels.float()))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        pointwise_dpo_loss(pol, ref, z + 1)


def test_dro_formula_and_value_gradient():
    g = torch.Generator().manual_seed(4)
    pol, ref, r, v = (torch.randn(8, generator=g) for _ in range(4))
    beta = 0.7
    v = v.requires_grad_(True)
    out = dro_loss(pol, ref, r, values=v, beta=beta, reduction="sum")
    want = sum(0.5 * (r[i] - v[i] - beta * (pol[i] - ref[i])) ** 2 for i in range(8))
    torch.testing.assert_close(out, want)
    out.backward()
    torch.testing.assert_close(v.grad, -(r - v - beta * (pol - ref)).detach())
    # the best shared value for a batch is the mean residual (least squares)
    shared = (r - beta * (pol - ref)).mean()
    s = shared.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(dro_loss(pol, ref, r, values=s.expand(8), beta=beta), s)
    assert abs(grad.item()) < 1e-6


def test_npo_formula_and_gradient_ascent_limit():
    g = torch.Generator().manual_seed(5)
    pol = torch.randn(10, generator=g, dtype=torch.float64) - 5
    ref = pol + torch.randn(10, generator=g, dtype=torch.float64)
    beta = 0.4
    want = (2 / beta) * torch.log1p(torch.exp(pol - ref) ** beta)
    torch.testing.assert_close(npo_loss(pol, ref, beta=beta, reduction="none"), want)
    # as beta -> 0 the gradient becomes that of gradient ascent on log pi (minimising log-likelihood): 1 per example
    for beta, tol in ((1e-2, 1e-2), (1e-5, 1e-5)):
        p = pol.clone().requires_grad_(True)
        npo_loss(p, ref, beta=beta, reduction="sum").backward()
        torch.testing.assert_close(p.grad, torch.ones_like(p), rtol=0, atol=tol)
    # ...but with beta > 0 the weight 2*sigmoid(beta*rho) shrinks on examples already unlearned (rho << 0)
    p = pol.clone().requires_grad_(True)
    npo_loss(p, pol.detach() + 30.0, beta=0.5, reduction="sum").backward()
    assert torch.all(p.grad < 1e-5)
    with pytest.raises(InputError, match="beta"):
        npo_loss(pol, ref, beta=0.0)


def test_apo_zero_unpaired_direction():
    pol = torch.zeros(4, requires_grad=True)
    apo_zero_unpaired_loss(pol, torch.zeros(4), torch.tensor([True, True, False, False]), reduction="sum").backward()
    assert torch.all(pol.grad[:2] < 0) and torch.all(pol.grad[2:] > 0)  # raise desirable, lower undesirable
