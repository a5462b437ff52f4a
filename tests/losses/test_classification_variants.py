"""EnsLoss against the authors' ``ensLoss.forward`` (statmlben/ensLoss) with the same normal draws."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import pairkit.losses as L  # noqa: E402


def _authors_ensloss(output, target, z, lam=0.0):
    # their forward with torch.randn replaced by the given draws z (and no .to("cuda"))
    target = 2.0 * target - 1.0
    s_batch = output.flatten() * target.flatten()
    g_batch = torch.zeros(len(target), dtype=output.dtype)
    rd = torch.exp(z) if lam == 0 else torch.clamp(1.0 + lam * z, min=0.0) ** (1.0 / lam)
    rd_grad, _ = torch.sort(-rd)
    rd_grad = np.maximum(rd_grad, -1.0)
    _, ind_tmp = torch.sort(s_batch)
    g_batch[ind_tmp] = rd_grad.to(output.dtype)
    s_nograd = s_batch.detach()
    pos = s_nograd > 1.0
    g_batch[pos] *= 1 / s_nograd[pos]
    g_batch = g_batch.detach() - 1e-6
    return (g_batch * s_batch).mean()


@pytest.mark.parametrize("lam", [0.0, 0.5])
def test_ensloss_value_and_gradient_equal_authors_code(lam):
    g = torch.Generator().manual_seed(0)
    f = (torch.randn(9, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    y = (torch.rand(9, generator=g) > 0.5).double()
    z = torch.randn(9, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    ref = _authors_ensloss(f, y, z, lam)
    got = L.ensloss(f, y, seed=11, box_cox_lambda=lam)
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(torch.autograd.grad(got, f)[0], torch.autograd.grad(ref, f)[0])


def test_ensloss_derivative_is_a_convex_calibrated_loss_and_changes_with_the_seed():
    s = torch.linspace(-3, 3, 50, dtype=torch.float64)
    for seed in range(3):
        d = L.ensloss_derivatives(s, seed=seed)
        assert (d < 0).all() and (d >= -1.0 - 1e-6).all()  # calibrated: negative derivative everywhere
        inner = d[s <= 1.0]
        assert (inner[1:] >= inner[:-1]).all()  # non-decreasing derivative: convex on the sampled margins
    assert not torch.equal(L.ensloss_derivatives(s, seed=0), L.ensloss_derivatives(s, seed=1))


# ------------------------------------------------------------------------------------------------ pass@N


def test_pass_at_n_closed_form_gradient_and_limits():
    logp = torch.tensor([-0.01, -0.3, -1.0, -3.0, -8.0], dtype=torch.float64, requires_grad=True)
    p = logp.detach().exp()
    for n in (1, 4, 16):
        got = L.pass_at_n_loss(logp, n=n, reduction="none")
        torch.testing.assert_close(got, -torch.log(1 - (1 - p) ** n))
        (grad,) = torch.autograd.grad(got.sum(), logp)
        torch.testing.assert_close(grad, -n * p * (1 - p) ** (n - 1) / (1 - (1 - p) ** n))
    torch.testing.assert_close(L.pass_at_n_loss(logp, n=1, reduction="none"), -logp.detach())  # N = 1: CE
    # confident examples get a much smaller push at larger N (confidence limiting)
    sure = torch.tensor([-0.01], dtype=torch.float64, requires_grad=True)
    (g1,) = torch.autograd.grad(L.pass_at_n_loss(sure, n=1), sure)
    (g16,) = torch.autograd.grad(L.pass_at_n_loss(sure, n=16), sure)
    assert abs(float(g16)) < 1e-20 < abs(float(g1))
    far = torch.tensor([-100.0, -1e4], dtype=torch.float64)
    expected = -far - torch.log(torch.tensor(8.0, dtype=torch.float64))
    torch.testing.assert_close(L.pass_at_n_loss(far, n=8, reduction="none"), expected)


# ----------------------------------------------------------------------------------- correctness-aware


def test_correctness_aware_loss_matches_authors_weighted_mse():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(12, 4, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, 4, (12,), generator=g)
    original = torch.randn(12, 4, generator=g, dtype=torch.float64)
    pred = original.argmax(-1)
    correctness = pred.eq(labels)
    acc = correctness.double().mean()
    weights = torch.where(correctness, 1 - acc, acc)
    conf = torch.softmax(logits, 1).max(1)[0]
    ref = ((conf - correctness.double()) ** 2 * weights).sum() / weights.sum()
    torch.testing.assert_close(L.correctness_aware_loss(logits, labels, predictions=pred), ref)
    # with the default predictions (argmax of the calibrated logits)
    pred2 = logits.argmax(-1)
    c2 = pred2.eq(labels)
    a2 = c2.double().mean()
    w2 = torch.where(c2, 1 - a2, a2)
    ref2 = ((conf - c2.double()) ** 2 * w2).sum() / w2.sum()
    torch.testing.assert_close(L.correctness_aware_loss(logits, labels), ref2)
