"""PSO (pairwise sample optimisation for timestep-distilled diffusion models) against a slow float64 loop."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

import pairkit.losses as L  # noqa: E402


def _slow(pt, pr, rt, rr, beta, scale):
    out = []
    for i in range(len(pt)):
        z = -beta * float(scale[i]) / 2 * ((float(pt[i]) - float(rt[i])) - (float(pr[i]) - float(rr[i])))
        out.append(math.log1p(math.exp(-z)))  # -log σ(z)
    return torch.tensor(out, dtype=torch.float64)


def test_pso_equals_slow_loop_and_dpo_form():
    g = torch.Generator().manual_seed(0)
    pt, pr, rt, rr = (torch.rand(6, generator=g, dtype=torch.float64) * 0.01 for _ in range(4))
    scale = torch.rand(6, generator=g, dtype=torch.float64) + 0.5
    got = L.diffusion_pso_loss(pt, pr, rt, rr, beta=300.0, time_scale=scale, reduction="none")
    torch.testing.assert_close(got, _slow(pt, pr, rt, rr, 300.0, scale), rtol=1e-12, atol=1e-12)
    # (target, reference) in the place of (winner, loser): the Diffusion-DPO form
    torch.testing.assert_close(L.get("pso")(pt, pr, rt, rr), L.diffusion_dpo_loss(pt, pr, rt, rr))
    # at the start of tuning the model is its own reference: log 2, and the gradient lowers the target's error
    pt0 = rt.clone().requires_grad_(True)
    pr0 = rr.clone().requires_grad_(True)
    loss = L.diffusion_pso_loss(pt0, pr0, rt, rr)
    torch.testing.assert_close(loss, torch.tensor(math.log(2), dtype=torch.float64))
    loss.backward()
    assert bool((pt0.grad > 0).all()) and bool((pr0.grad < 0).all())
