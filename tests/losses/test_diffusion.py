"""Diffusion and flow preference losses against independent transcriptions of the public implementations."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

import pairkit.losses as L  # noqa: E402
from pairkit.errors import InputError  # noqa: E402


def _errors(n, seed=0, shape=None):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(shape or (n,), generator=g, dtype=torch.float64) for _ in range(4)]


def _diffusers_dpo(model_pred, ref_pred, target, beta_dpo):
    """Diffusers' train_diffusion_dpo.py loss, transcribed step by step (winners first, then losers)."""
    model_losses = (model_pred - target).pow(2).mean(dim=[1, 2, 3])
    model_losses_w, model_losses_l = model_losses.chunk(2)
    model_diff = model_losses_w - model_losses_l
    ref_losses = (ref_pred - target).pow(2).mean(dim=[1, 2, 3])
    ref_losses_w, ref_losses_l = ref_losses.chunk(2)
    ref_diff = ref_losses_w - ref_losses_l
    inside_term = -0.5 * beta_dpo * (model_diff - ref_diff)
    return -torch.nn.functional.logsigmoid(inside_term).mean()


@pytest.mark.parametrize("name", ["diffusion_dpo", "flow_dpo"])
def test_diffusion_dpo_equals_the_diffusers_example(name):
    g = torch.Generator().manual_seed(1)
    b = 6
    model_pred = torch.randn(2 * b, 4, 8, 8, generator=g)
    ref_pred = model_pred + 0.3 * torch.randn(2 * b, 4, 8, 8, generator=g)
    target = torch.randn(2 * b, 4, 8, 8, generator=g)
    for beta in (1.0, 50.0, 5000.0):
        expected = _diffusers_dpo(model_pred, ref_pred, target, beta)
        e = (model_pred - target).pow(2).mean(dim=[1, 2, 3])
        e_ref = (ref_pred - target).pow(2).mean(dim=[1, 2, 3])
        got = L.get(name)(e[:b], e[b:], e_ref[:b], e_ref[b:], beta=beta)
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_diffusion_dpo_closed_forms():
    ew, el, rw, rl = _errors(5)
    # equal model and reference: log 2 for every pair
    log2 = torch.full((5,), math.log(2.0), dtype=torch.float64)
    torch.testing.assert_close(L.diffusion_dpo_loss(ew, el, ew, el, reduction="none"), log2)
    # is DPO with log-probabilities -e and beta/2
    torch.testing.assert_close(
        L.diffusion_dpo_loss(ew, el, rw, rl, beta=3.0, reduction="none"),
        L.dpo_loss(-ew, -el, -rw, -rl, beta=1.5, reduction="none"),
    )
    # one pair by hand: the winner's error dropped by 0.01 below the reference, the loser's unchanged
    one = L.diffusion_dpo_loss(torch.tensor([0.49]), torch.tensor([0.5]), torch.tensor([0.5]), torch.tensor([0.5]),
                               beta=100.0)  # fmt: skip
    assert float(one) == pytest.approx(math.log1p(math.exp(-0.5)), rel=1e-5)
    # time_scale multiplies beta per pair
    ts = torch.tensor([0.0, 0.25, 1.0, 0.5, 2.0], dtype=torch.float64)
    got = L.flow_dpo_loss(ew, el, rw, rl, beta=4.0, time_scale=ts, reduction="none")
    want = torch.stack([
        L.flow_dpo_loss(ew[i:i + 1], el[i:i + 1], rw[i:i + 1], rl[i:i + 1], beta=4.0 * float(ts[i])) if ts[i] > 0
        else log2[0] for i in range(5)
    ])  # fmt: skip
    torch.testing.assert_close(got, want)


def _official_kto(model_losses, ref_loss, labels, beta, lambda_d=1.0, lambda_u=1.0):
    """The authors' Diffusion-KTO loss (sigmoid utility), transcribed step by step."""
    g_term = -model_losses + ref_loss
    kl = g_term.mean().detach().clamp(min=0)
    g_term = g_term - kl
    label_sgn = 2 * labels.double() - 1
    h = torch.sigmoid(label_sgn * beta * g_term)
    w_y = lambda_d * labels + lambda_u * ~labels
    return (w_y * (1 - h)).mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_diffusion_kto_equals_the_authors_loss(seed):
    e, e_ref, _, _ = _errors(8, seed)
    e_ref = e_ref * 0.5 + (0.3 if seed == 1 else 0.0)  # seed 1: a positive reference point (not clamped)
    labels = torch.tensor([True, False, True, True, False, False, True, False])
    for beta, ld, lu in ((1.0, 1.0, 1.0), (20.0, 1.0, 1.5), (5000.0, 0.7, 1.0)):
        want = _official_kto(e, e_ref, labels, beta, ld, lu)
        got = L.diffusion_kto_loss(e, e_ref, labels, beta=beta, desirable_weight=ld, undesirable_weight=lu)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-9)
    # a fixed reference point replaces the estimate; with it, equal errors give 1 - sigmoid(0) = 1/2
    got = L.diffusion_kto_loss(e, e, labels, kl=0.0, reduction="none")
    torch.testing.assert_close(got, torch.full((8,), 0.5, dtype=torch.float64))


def _official_mapo(model_losses_w, model_losses_l, snr_value, beta_mapo, num_train_timesteps):
    """The authors' MaPO loss, transcribed (naive x / (exp(x) - 1))."""
    log_odds = (snr_value * model_losses_w) / (torch.exp(snr_value * model_losses_w) - 1) - (
        snr_value * model_losses_l
    ) / (torch.exp(snr_value * model_losses_l) - 1)
    ratio = torch.nn.functional.logsigmoid(log_odds * num_train_timesteps)
    return model_losses_w.mean() - (beta_mapo * ratio).mean()


def test_mapo_equals_the_authors_loss_and_is_stable():
    ew, el, _, _ = _errors(7, 3)
    for snr, beta, t in ((1.0, 0.1, 1000), (0.2, 0.5, 10), (5.0, 1.0, 1)):
        want = _official_mapo(ew, el, snr, beta, t)
        torch.testing.assert_close(L.mapo_loss(ew, el, snr=snr, beta=beta, num_timesteps=t), want, rtol=1e-7, atol=1e-9)
    # equal errors: e_w + beta * log 2
    torch.testing.assert_close(L.mapo_loss(ew, ew, beta=0.3, reduction="none"), ew + 0.3 * math.log(2.0))
    # at an error of exactly 0 (the naive form is 0/0) and at huge errors (inf/inf): finite values and gradients
    x = torch.tensor([0.0, 1e-5, 1e4], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1e-5, 0.0, 1e3], dtype=torch.float64, requires_grad=True)
    loss = L.mapo_loss(x, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()


def _slow_rankdpo(e, e_ref, labels, beta):
    """Every ordered pair in Python loops, DCG weights from the ranks by the current scores."""
    total = 0.0
    for b in range(e.shape[0]):
        s = [-(beta / 2) * float(e[b, i] - e_ref[b, i]) for i in range(e.shape[1])]
        order = sorted(range(len(s)), key=lambda i: (-s[i], i))
        rank = {i: r + 1 for r, i in enumerate(order)}
        for i in range(len(s)):
            for j in range(len(s)):
                if labels[b, i] > labels[b, j]:
                    gain = abs(2 ** float(labels[b, i]) - 2 ** float(labels[b, j]))
                    disc = abs(1 / math.log2(1 + rank[i]) - 1 / math.log2(1 + rank[j]))
                    total += gain * disc * math.log1p(math.exp(-(s[i] - s[j])))
    return total / e.shape[0]


def test_rankdpo_equals_a_slow_reference_and_reduces_to_diffusion_dpo():
    g = torch.Generator().manual_seed(4)
    e = torch.rand(3, 5, generator=g, dtype=torch.float64)
    e_ref = torch.rand(3, 5, generator=g, dtype=torch.float64)
    labels = torch.tensor([[3.0, 1.0, 0.0, 2.0, 1.0], [0.0, 0.0, 1.0, 2.0, 3.0], [1.0, 2.0, 1.0, 0.0, 3.0]])
    got = L.rankdpo_loss(e, e_ref, labels, beta=4.0)
    assert float(got) == pytest.approx(_slow_rankdpo(e, e_ref, labels, 4.0), rel=1e-6)  # weights in fp32
    ew, el, rw, rl = _errors(4, 5)
    pair = L.rankdpo_loss(torch.stack([ew, el], 1), torch.stack([rw, rl], 1), torch.tensor([[1.0, 0.0]] * 4),
                          beta=7.0, lambda_weights=False, reduction="none")  # fmt: skip
    torch.testing.assert_close(pair, L.diffusion_dpo_loss(ew, el, rw, rl, beta=7.0, reduction="none"))


def test_bad_inputs_name_the_argument():
    ew, el, rw, rl = _errors(3)
    with pytest.raises(InputError, match="policy_chosen_errors"):
        L.diffusion_dpo_loss(ew.long(), el, rw, rl)
    with pytest.raises(InputError, match="beta"):
        L.diffusion_dpo_loss(ew, el, rw, rl, beta=0.0)
    with pytest.raises(InputError, match="time_scale"):
        L.flow_dpo_loss(ew, el, rw, rl, time_scale=torch.ones(4))
    with pytest.raises(InputError, match="desirable"):
        L.diffusion_kto_loss(ew, rw, torch.tensor([0, 2, 1]))
    with pytest.raises(InputError, match="labels"):
        L.rankdpo_loss(ew[None], rw[None], torch.zeros(1, 4))


def test_diffusion_spo_inside_the_clip_band_is_dpo_on_step_log_ratios_and_clipped_ratios_stop_gradients():
    g = torch.Generator().manual_seed(11)
    pc, pr = torch.rand(5, generator=g, dtype=torch.float64), torch.rand(5, generator=g, dtype=torch.float64)
    var = torch.rand(5, generator=g, dtype=torch.float64) + 0.5
    rc, rr = pc + 0.01 * torch.randn(5, generator=g, dtype=torch.float64), pr.clone()
    pc.requires_grad_(True)
    out = L.diffusion_spo_loss(pc, pr, rc, rr, step_variance=var, beta=3.0, clip=0.5, reduction="none")
    # |log r| < log 1.5: no clipping, so -log σ(β (log r_w - log r_l)) with log r = -(e - e_ref) / (2 σ²)
    lw, ll = -(pc - rc) / (2 * var), -(pr - rr) / (2 * var)
    torch.testing.assert_close(out, -torch.nn.functional.logsigmoid(3.0 * (lw - ll)))
    # far outside the band both ratios sit on its edges: the value is -log σ(β (log 1.1 - log 0.9)) and no gradient
    far = L.diffusion_spo_loss(pc - 100, pr + 100, rc, rr, step_variance=var, reduction="none")
    edge = math.log1p(math.exp(-10.0 * (math.log(1.1) - math.log(0.9))))
    torch.testing.assert_close(far.detach(), torch.full_like(far, edge).detach())
    (grad,) = torch.autograd.grad(far.sum(), pc)
    assert torch.all(grad == 0)
    with pytest.raises(InputError, match="step_variance must be > 0"):
        L.diffusion_spo_loss(pc, pr, rc, rr, step_variance=torch.zeros(5))
