"""PSO (pairwise sample optimisation for timestep-distilled diffusion models) against a slow float64 loop written
from the authors' loss: -log σ(β (ref_diff - model_diff)) with diff = e_tgt - d·e_ref, + λ_prior·e_ref."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

import pairkit.losses as L  # noqa: E402


def _slow(pt, pr, rt, rr, beta, scale, d=1.0, prior=0.0):
    out = []
    for i in range(len(pt)):
        model_diff = float(pt[i]) - d * float(pr[i])
        ref_diff = float(rt[i]) - d * float(rr[i])
        z = beta * float(scale[i]) * (ref_diff - model_diff)
        out.append(math.log1p(math.exp(-z)) + prior * float(pr[i]))  # -log σ(z) + λ e_ref
    return torch.tensor(out, dtype=torch.float64)


def test_pso_equals_the_authors_loss_written_slowly():
    g = torch.Generator().manual_seed(0)
    pt, pr, rt, rr = (torch.rand(6, generator=g, dtype=torch.float64) * 0.01 for _ in range(4))
    scale = torch.rand(6, generator=g, dtype=torch.float64) + 0.5
    got = L.diffusion_pso_loss(pt, pr, rt, rr, beta=300.0, time_scale=scale, reduction="none")
    torch.testing.assert_close(got, _slow(pt, pr, rt, rr, 300.0, scale), rtol=1e-12, atol=1e-12)
    got = L.diffusion_pso_loss(pt, pr, rt, rr, beta=300.0, time_scale=scale, rejected_weight=0.1, prior_weight=0.5,
                               reduction="none")  # fmt: skip
    torch.testing.assert_close(got, _slow(pt, pr, rt, rr, 300.0, scale, 0.1, 0.5), rtol=1e-12, atol=1e-12)


def test_pso_beta_has_no_factor_one_half_unlike_diffusers_diffusion_dpo():
    g = torch.Generator().manual_seed(1)
    pt, pr, rt, rr = (torch.rand(5, generator=g, dtype=torch.float64) * 0.01 for _ in range(4))
    # β_PSO = β_DPO / 2 gives the same loss (diffusers' Diffusion-DPO scales by β/2); the same β does not
    pso = L.get("pso")(pt, pr, rt, rr, beta=100.0)
    torch.testing.assert_close(pso, L.diffusion_dpo_loss(pt, pr, rt, rr, beta=200.0))
    assert not torch.allclose(pso, L.diffusion_dpo_loss(pt, pr, rt, rr, beta=100.0))
    torch.testing.assert_close(L.diffusion_pso_loss(pt, pr, rt, rr), L.diffusion_dpo_loss(pt, pr, rt, rr))  # defaults


def test_pso_starts_at_log2_and_its_gradient_lowers_the_target_error():
    g = torch.Generator().manual_seed(2)
    rt, rr = (torch.rand(6, generator=g, dtype=torch.float64) * 0.01 for _ in range(2))
    pt0 = rt.clone().requires_grad_(True)
    pr0 = rr.clone().requires_grad_(True)
    loss = L.diffusion_pso_loss(pt0, pr0, rt, rr)
    torch.testing.assert_close(loss, torch.tensor(math.log(2), dtype=torch.float64))
    loss.backward()
    assert bool((pt0.grad > 0).all()) and bool((pr0.grad < 0).all())
    # the prior term keeps the reference image fitted: with a large weight its error is pushed down too
    pr1 = rr.clone().requires_grad_(True)
    L.diffusion_pso_loss(rt, pr1, rt, rr, prior_weight=1e6).backward()
    assert bool((pr1.grad > 0).all())
