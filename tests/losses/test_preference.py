"""Pairwise preference losses: equality with TRL (forward and gradients), paper references, behaviour."""

from __future__ import annotations

import math
import os
import types
import warnings
from collections import defaultdict

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from trl.trainer.dpo_trainer import DPOTrainer

import pairkit.losses as L
from pairkit.errors import InputError
from pairkit.losses import preference as P

TOL = dict(rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------ TRL stand-in harness


class _FakeLM(torch.nn.Module):
    """Stands in for the fused-LM-head model: returns fixed per-token log-probs of shape [2B, T-1]."""

    is_gradient_checkpointing = False

    def __init__(self, log_probs, log_sum_sq_probs=None):
        super().__init__()
        self.log_probs = log_probs
        self.log_sum_sq_probs = log_sum_sq_probs

    def forward(self, **_):
        z = torch.zeros_like(self.log_probs.detach())
        return types.SimpleNamespace(
            log_probs=self.log_probs,
            entropy=z,
            mean_logits=z,
            is_top1=z.bool(),
            log_sum_sq_probs=self.log_sum_sq_probs,
            aux_loss=None,
        )


def trl_dpo(loss_type, batch, *, beta=0.1, label_smoothing=0.0, f_divergence_type="reverse_kl", **cfg):
    """Run TRL's own ``DPOTrainer._compute_loss`` (unbound) on ``batch`` and return the scalar loss."""
    accel = types.SimpleNamespace(device="cpu", gather=lambda x: x, gather_for_metrics=lambda x: x)
    self = types.SimpleNamespace(
        accelerator=accel,
        model=_FakeLM(batch["policy_tok"], batch.get("log_sum_sq")),
        ref_model=_FakeLM(batch["ref_tok"]),
        aux_loss_enabled=False,
        precompute_ref_logps=False,
        ld_alpha=cfg.get("ld_alpha"),
        f_divergence_type=f_divergence_type,
        f_alpha_divergence_coef=cfg.get("f_alpha", 0.5),
        loss_types=[loss_type] if isinstance(loss_type, str) else list(loss_type),
        loss_weights=cfg.get("loss_weights") or [1.0] * (1 if isinstance(loss_type, str) else len(loss_type)),
        beta=beta,
        label_smoothing=label_smoothing,
        use_weighting=cfg.get("use_weighting", False),
        args=types.SimpleNamespace(discopop_tau=cfg.get("discopop_tau", 0.05), gradient_checkpointing_kwargs=None),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )
    mask = batch["completion_mask"]
    inputs = {"input_ids": torch.zeros_like(mask), "attention_mask": torch.ones_like(mask), "completion_mask": mask}
    return DPOTrainer._compute_loss(self, self.model, inputs, return_outputs=False)


def make_batch(n=8, t=12, seed=0, scale=1.0, dtype=torch.float32):
    """Random per-token log-probs for n pairs ([chosen; rejected] stacked as TRL does) with ragged masks."""
    g = torch.Generator().manual_seed(seed)
    # completion_mask covers the full sequence (length t+1); the first position is always prompt
    lengths = torch.randint(1, t + 1, (2 * n,), generator=g)
    start = 1 + (torch.rand(2 * n, generator=g) * (t + 1 - lengths)).long().clamp(max=t - lengths)
    pos = torch.arange(t + 1)
    mask = ((pos >= start[:, None]) & (pos < (start + lengths)[:, None])).long()
    shift = mask[:, 1:].to(dtype)
    raw = (-scale * torch.rand(2 * n, t, generator=g, dtype=torch.float64)).to(dtype).requires_grad_(True)
    ref = (-scale * torch.rand(2 * n, t, generator=g, dtype=torch.float64)).to(dtype)
    policy_tok = raw * shift  # TRL's fused head yields 0 at ignored labels
    ref_tok = ref * shift
    pc, pr = policy_tok.sum(1).chunk(2)
    rc, rr = ref_tok.sum(1).chunk(2)
    lc, lr = mask.sum(1).to(dtype).chunk(2)
    return dict(
        raw=raw, policy_tok=policy_tok, ref_tok=ref_tok, completion_mask=mask, shift=shift,
        pc=pc, pr=pr, rc=rc, rr=rr, lc=lc, lr=lr,
    )  # fmt: skip


def grads_equal(batch_a_loss, batch_b_loss, batch_a, batch_b):
    ga = torch.autograd.grad(batch_a_loss, batch_a["raw"])[0]
    gb = torch.autograd.grad(batch_b_loss, batch_b["raw"])[0]
    torch.testing.assert_close(ga, gb, **TOL)


def assert_matches_trl(loss_type, pk_fn, *, trl_kwargs=None, seeds=(0, 1, 2), **batch_kwargs):
    """pairkit (mean over pairs) == TRL's loss, and their gradients w.r.t. every per-token log-prob agree."""
    for seed in seeds:
        a, b = make_batch(seed=seed, **batch_kwargs), make_batch(seed=seed, **batch_kwargs)
        ours = pk_fn(a)
        theirs = trl_dpo(loss_type, b, **(trl_kwargs or {}))
        torch.testing.assert_close(ours, theirs, **TOL)
        grads_equal(ours, theirs, a, b)


def seq(b):
    return b["pc"], b["pr"], b["rc"], b["rr"]


# ----------------------------------------------------------------------------------------------- vs TRL

# pairkit counterpart of each TRL DPOTrainer loss_type, as a function of the stacked batch and its options
PK = {
    "sigmoid": lambda b, **o: L.get("sigmoid")(*seq(b), **o),
    "hinge": lambda b, **o: L.get("hinge")(*seq(b), **o),
    "ipo": lambda b, **o: L.get("ipo")(*seq(b), chosen_lengths=b["lc"], rejected_lengths=b["lr"], **o),
    "exo_pair": lambda b, **o: L.get("exo_pair")(*seq(b), **o),
    "nca_pair": lambda b, **o: L.get("nca_pair")(*seq(b), **o),
    "robust": lambda b, **o: L.get("robust")(*seq(b), **o),
    "bco_pair": lambda b, **o: L.get("bco_pair")(*seq(b), **o),
    "sppo_hard": lambda b, **o: L.get("sppo_hard")(*seq(b), **o),
    "aot": lambda b, **o: L.get("aot")(*seq(b), **o),
    "aot_unpaired": lambda b, **o: L.get("aot_unpaired")(*seq(b), **o),
    "apo_zero": lambda b, **o: L.get("apo_zero")(*seq(b), **o),
    "apo_down": lambda b, **o: L.get("apo_down")(*seq(b), **o),
    "discopop": lambda b, **o: L.get("discopop")(*seq(b), **o),
    "sft": lambda b, **o: L.get("sft")(*seq(b), chosen_lengths=b["shift"].sum(1).chunk(2)[0]),
    "sigmoid_norm": lambda b, **o: L.get("sigmoid_norm")(
        *seq(b), chosen_lengths=b["lc"], rejected_lengths=b["lr"], **o
    ),
}
SMOOTHED = {"robust": 0.2, "exo_pair": 1e-3, "aot": 0.1, "aot_unpaired": 0.1}
F_LOSSES = ["sigmoid", "sigmoid_norm", "hinge", "ipo", "exo_pair", "robust", "discopop"]


def _trl_source_loss_types():
    import inspect

    src = inspect.getsource(DPOTrainer._compute_loss)
    return {line.split('"')[1] for line in src.splitlines() if "loss_type ==" in line}


def test_every_trl_loss_type_is_covered_and_resolves():
    trl_types = _trl_source_loss_types()
    assert len(trl_types) >= 15
    assert trl_types <= set(PK)
    for name in trl_types:
        assert L.family_of(name) == "preference"


@pytest.mark.parametrize("loss_type", sorted(PK))
@pytest.mark.parametrize("beta", [0.1, 0.7])
def test_matches_trl_dpo_trainer(loss_type, beta):
    opts = {} if loss_type == "sft" else {"beta": beta}
    trl_opts = {"beta": beta}
    if loss_type in SMOOTHED:
        opts["label_smoothing"] = trl_opts["label_smoothing"] = SMOOTHED[loss_type]
    assert_matches_trl(loss_type, lambda b: PK[loss_type](b, **opts), trl_kwargs=trl_opts)


def test_trl_harness_can_fail():
    # the harness must notice a wrong beta and a wrong loss (guards against comparing TRL with itself)
    with pytest.raises(AssertionError):
        assert_matches_trl("sigmoid", lambda b: PK["sigmoid"](b, beta=0.11), trl_kwargs={"beta": 0.1}, seeds=(0,))
    with pytest.raises(AssertionError):
        assert_matches_trl(
            "robust", lambda b: PK["sigmoid"](b, beta=0.1), trl_kwargs={"beta": 0.1, "label_smoothing": 0.1}, seeds=(0,)
        )


@pytest.mark.parametrize("loss_type", ["aot", "aot_unpaired", "exo_pair"])
def test_matches_trl_other_smoothing(loss_type):
    eps = 0.0 if loss_type != "exo_pair" else 0.3
    opts = {"beta": 0.3, "label_smoothing": eps}
    assert_matches_trl(loss_type, lambda b: PK[loss_type](b, **opts), trl_kwargs=opts, seeds=(5,))


def test_discopop_tau_matches_trl():
    assert_matches_trl(
        "discopop",
        lambda b: PK["discopop"](b, beta=0.5, tau=0.3),
        trl_kwargs=dict(beta=0.5, discopop_tau=0.3),
        seeds=(4,),
    )


@pytest.mark.parametrize("loss_type", F_LOSSES)
@pytest.mark.parametrize(
    "div", [("forward_kl", 0.5), ("js_divergence", 0.5), ("alpha_divergence", 0.5), ("alpha_divergence", 1.5)]
)
def test_f_divergence_matches_trl(loss_type, div):
    name, alpha = div
    opts = {"beta": 0.2, "f_divergence": name, "f_alpha": alpha}
    trl_opts = {"beta": 0.2, "f_divergence_type": name, "f_alpha": alpha}
    if loss_type in SMOOTHED:
        opts["label_smoothing"] = trl_opts["label_smoothing"] = SMOOTHED[loss_type]
    assert_matches_trl(loss_type, lambda b: PK[loss_type](b, **opts), trl_kwargs=trl_opts, seeds=(7,))


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "nca_pair", "apo_down"])
def test_wpo_weighting_matches_trl(loss_type):
    for seed in (0, 1):
        a, b = make_batch(seed=seed), make_batch(seed=seed)
        g = torch.Generator().manual_seed(seed + 100)
        lssp = -torch.rand(a["raw"].shape, generator=g)
        a["log_sum_sq"] = b["log_sum_sq"] = lssp
        n = a["pc"].shape[0]
        w = L.wpo_weights(
            a["policy_tok"][:n], a["policy_tok"][n:], a["shift"][:n], a["shift"][n:],
            chosen_log_sum_sq_probs=lssp[:n], rejected_log_sum_sq_probs=lssp[n:],
        )  # fmt: skip
        assert not w.requires_grad
        ours = PK[loss_type](a, beta=0.3, weights=w, reduction="none").mean()
        theirs = trl_dpo(loss_type, b, beta=0.3, use_weighting=True)
        torch.testing.assert_close(ours, theirs, **TOL)
        grads_equal(ours, theirs, a, b)


@pytest.mark.parametrize("ld_alpha", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("loss_type", ["sigmoid", "robust"])
def test_ld_alpha_matches_trl(ld_alpha, loss_type):
    for seed in (0, 3):
        a, b = make_batch(seed=seed), make_batch(seed=seed)
        n = a["pc"].shape[0]
        sm = a["shift"]
        pc, pr = L.ld_dpo_logps(a["policy_tok"][:n], a["policy_tok"][n:], sm[:n], sm[n:], alpha=ld_alpha)
        rc, rr = L.ld_dpo_logps(a["ref_tok"][:n], a["ref_tok"][n:], sm[:n], sm[n:], alpha=ld_alpha)
        eps = SMOOTHED.get(loss_type, 0.0)
        kw = {"label_smoothing": eps} if eps else {}
        ours = L.get(loss_type)(pc, pr, rc, rr, beta=0.4, **kw)
        theirs = trl_dpo(loss_type, b, beta=0.4, ld_alpha=ld_alpha, label_smoothing=eps)
        torch.testing.assert_close(ours, theirs, **TOL)
        grads_equal(ours, theirs, a, b)


def test_weighted_sum_matches_trl_mpo_mixture():
    mpo = L.weighted_sum([("sigmoid", 0.8), ("bco_pair", 0.2), ("sft", 1.0)])

    def ours(b):
        return mpo(*seq(b), beta=0.25, chosen_lengths=b["shift"].sum(1).chunk(2)[0])

    assert_matches_trl(
        ["sigmoid", "bco_pair", "sft"], ours, trl_kwargs=dict(beta=0.25, loss_weights=[0.8, 0.2, 1.0]), seeds=(0, 1)
    )


def test_weighted_sum_rejects_unknown_options_and_bad_terms():
    mix = L.weighted_sum([("dpo", 1.0), (L.ipo_loss, 0.5, {"beta": 0.3})])
    b = make_batch(seed=2)
    with pytest.raises(InputError, match="tau"):
        mix(*seq(b), tau=3.0)
    expected = L.dpo_loss(*seq(b), beta=0.2) + 0.5 * L.ipo_loss(*seq(b), beta=0.3)
    torch.testing.assert_close(mix(*seq(b), beta=0.2), expected)
    with pytest.raises(InputError):
        L.weighted_sum([])
    with pytest.raises(InputError):
        L.weighted_sum(["dpo"])


# ------------------------------------------------------------------------------- CPO / SimPO / ORPO vs TRL


@pytest.fixture(scope="module")
def trl_experimental():
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from trl.experimental.cpo.cpo_trainer import CPOTrainer
        from trl.experimental.orpo.orpo_trainer import ORPOTrainer
    return CPOTrainer, ORPOTrainer


def _policy_pair(seed, n=16, low=-3.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    pc = (low * torch.rand(n, generator=g, dtype=torch.float64) - 1e-3).to(dtype).requires_grad_(True)
    pr = (low * torch.rand(n, generator=g, dtype=torch.float64) - 1e-3).to(dtype).requires_grad_(True)
    return pc, pr


def _grads_close(ours, theirs, leaves_a, leaves_b):
    torch.testing.assert_close(ours, theirs, **TOL)
    for ga, gb in zip(torch.autograd.grad(ours, leaves_a), torch.autograd.grad(theirs, leaves_b)):
        torch.testing.assert_close(ga, gb, **TOL)


_ACCEL = types.SimpleNamespace(device="cpu", gather_for_metrics=lambda x: x, gather=lambda x: x)


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "ipo", "simpo"])
@pytest.mark.parametrize("alpha", [0.0, 0.25])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cpo_matches_trl_cpo_trainer(trl_experimental, loss_type, alpha, label_smoothing):
    cpo_trainer, _ = trl_experimental
    stand_in = types.SimpleNamespace(
        alpha=alpha, loss_type=loss_type, simpo_gamma=0.7, beta=0.3, label_smoothing=label_smoothing, accelerator=_ACCEL
    )
    for seed in (0, 1):
        a, b = _policy_pair(seed), _policy_pair(seed)
        nll = torch.tensor(1.7)  # TRL's NLL is a scalar token-mean cross-entropy; added as in get_batch_loss_metrics
        theirs = cpo_trainer.cpo_loss(stand_in, *b)[0].mean() + 0.9 * nll
        ours = L.cpo_loss(
            *a, chosen_nll=nll, beta=0.3, label_smoothing=label_smoothing, cpo_alpha=0.9,
            loss_type=loss_type, simpo_gamma=0.7, alpha=alpha,
        )  # fmt: skip
        _grads_close(ours, theirs, a, b)


def test_cpo_simpo_and_simpo_match_trl_simpo(trl_experimental):
    cpo_trainer, _ = trl_experimental
    stand_in = types.SimpleNamespace(
        alpha=0.0, loss_type="simpo", simpo_gamma=0.5, beta=2.0, label_smoothing=0.0, accelerator=_ACCEL
    )
    a, b = _policy_pair(3), _policy_pair(3)
    theirs = cpo_trainer.cpo_loss(stand_in, *b)[0]
    # TRL's CPOTrainer margin is β·(Δ − γ/β); SimPO writes βΔ − γ (the same number)
    _grads_close(L.simpo_loss(*a, beta=2.0, gamma=0.5), theirs.mean(), a, b)
    a, b = _policy_pair(4), _policy_pair(4)
    theirs = cpo_trainer.cpo_loss(stand_in, *b)[0].mean() + 1.0 * (-b[0]).mean()
    _grads_close(L.cpo_simpo_loss(*a, beta=2.0, gamma=0.5, cpo_alpha=1.0), theirs, a, b)


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_orpo_matches_trl_odds_ratio_loss(trl_experimental, beta):
    _, orpo_trainer = trl_experimental
    stand_in = types.SimpleNamespace(beta=beta, accelerator=_ACCEL)
    for seed in (0, 1):
        # averaged log-probs on both sides of TRL's -log 2 switch point
        a, b = _policy_pair(seed, low=-1.5), _policy_pair(seed, low=-1.5)
        nll = torch.tensor(0.8)
        theirs = nll - orpo_trainer.odds_ratio_loss(stand_in, *b)[0].mean()  # as in get_batch_loss_metrics
        _grads_close(L.orpo_loss(*a, chosen_nll=nll, beta=beta), theirs, a, b)


# -------------------------------------------------------------------- paper formulas and identities


def _rand(n=32, seed=0, scale=20.0, grad=False):
    g = torch.Generator().manual_seed(seed)
    return [(-scale * torch.rand(n, generator=g, dtype=torch.float64)).requires_grad_(grad) for _ in range(4)]


def test_identities_reduce_to_dpo():
    pc, pr, rc, rr = _rand()
    dpo = L.dpo_loss(pc, pr, rc, rr, beta=0.3, reduction="none")
    same = [
        L.robust_dpo_loss(pc, pr, rc, rr, beta=0.3, label_smoothing=0.0, reduction="none"),
        L.conservative_dpo_loss(pc, pr, rc, rr, beta=0.3, label_smoothing=0.0, reduction="none"),
        L.dpo_loss(pc, pr, rc, rr, beta=0.3, f_divergence="alpha_divergence", f_alpha=1.0, reduction="none"),
        L.get("f_dpo")(pc, pr, rc, rr, beta=0.3, reduction="none"),
        L.rpo_loss(pc, pr, rc, rr, beta=0.3, alpha=0.0, reduction="none"),
        L.mmpo_loss(pc, pr, rc, rr, beta=0.3, quality_margins=torch.full((32,), 1e4), reduction="none"),
    ]
    for v in same:
        torch.testing.assert_close(v, dpo, rtol=1e-6, atol=1e-6)
    # Dr. DPO's soft-min tends to the plain mean as beta' grows
    dr = L.dr_dpo_loss(pc, pr, rc, rr, beta=0.3, beta_prime=1e7)
    torch.testing.assert_close(dr, dpo.mean(), rtol=1e-6, atol=1e-6)
    # alpha-divergence with α → 0 is forward KL (f'(t) = 1 - 1/t)
    fwd = L.dpo_loss(pc, pr, rc, rr, beta=0.3, f_divergence="forward_kl", reduction="none")
    a0 = L.dpo_loss(pc, pr, rc, rr, beta=0.3, f_divergence="alpha_divergence", f_alpha=1e-9, reduction="none")
    torch.testing.assert_close(a0, fwd, rtol=1e-6, atol=1e-6)


def test_simpo_gamma_zero_is_reference_free_length_normalised_dpo():
    pc, pr, _, _ = _rand()
    lc, lr = torch.arange(1.0, 33.0, dtype=torch.float64), torch.arange(32.0, 0.0, -1.0, dtype=torch.float64)
    z = torch.zeros_like(pc)
    got = L.simpo_loss(pc, pr, chosen_lengths=lc, rejected_lengths=lr, beta=2.0, gamma=0.0, reduction="none")
    want = L.sigmoid_norm_loss(pc, pr, z, z, chosen_lengths=lc, rejected_lengths=lr, beta=2.0, reduction="none")
    torch.testing.assert_close(got, want)
    # and γ shifts the logit: -log σ(β Δ̄ - γ) by the formula
    got = L.simpo_loss(pc, pr, chosen_lengths=lc, rejected_lengths=lr, beta=2.0, gamma=1.0, reduction="none")
    ref = [
        -math.log(1 / (1 + math.exp(-(2.0 * (c / a - r / b) - 1.0))))
        for c, r, a, b in zip(*map(torch.Tensor.tolist, (pc, pr, lc, lr)))
    ]
    torch.testing.assert_close(got, torch.tensor(ref, dtype=torch.float64))


def test_conservative_and_mmpo_follow_the_soft_label_formula():
    pc, pr, rc, rr = _rand(seed=1)
    m = torch.linspace(-3, 3, 32, dtype=torch.float64)
    got = L.mmpo_loss(pc, pr, rc, rr, beta=0.2, gamma=0.7, quality_margins=m, reduction="none")
    cdpo = L.conservative_dpo_loss(pc, pr, rc, rr, beta=0.2, label_smoothing=0.25, reduction="none")
    for i in range(32):
        d = 0.2 * float(((pc[i] - rc[i]) - (pr[i] - rr[i])).detach())
        p = 1 / (1 + math.exp(-0.7 * float(m[i])))
        bce = -(p * math.log(1 / (1 + math.exp(-d))) + (1 - p) * math.log(1 / (1 + math.exp(d))))
        assert abs(float(got[i]) - bce) < 1e-9
        cd = -(0.75 * math.log(1 / (1 + math.exp(-d))) + 0.25 * math.log(1 / (1 + math.exp(d))))
        assert abs(float(cdpo[i]) - cd) < 1e-9
    # a zero quality margin is a coin flip: the loss is minimised at Δ = 0
    zero = L.mmpo_loss(pc, pr, rc, rr, quality_margins=torch.zeros(32), reduction="none")
    assert torch.all(zero >= math.log(2) - 1e-12)


def test_irepo_regression_formula_and_probability_check():
    pc, pr, rc, rr = _rand(seed=2)
    p = torch.linspace(0.05, 0.95, 32, dtype=torch.float64)
    got = L.irepo_loss(pc, pr, rc, rr, beta=0.1, preference_probs=p, reduction="none")
    for i in range(32):
        d = 0.1 * float((pc[i] - rc[i]) - (pr[i] - rr[i]))
        assert abs(float(got[i]) - (d - math.log(p[i] / (1 - p[i]))) ** 2) < 1e-9
    unanimous = L.irepo_loss(pc, pr, rc, rr, preference_probs=torch.ones(32), reduction="none")
    assert torch.isfinite(unanimous).all()
    with pytest.raises(InputError, match="preference_probs"):
        L.irepo_loss(pc, pr, rc, rr, preference_probs=torch.full((32,), 1.5))


def test_dr_dpo_is_log_mean_exp_of_dpo_losses():
    pc, pr, rc, rr = _rand(seed=3)
    w = torch.rand(32, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 0.1
    m = torch.arange(32) % 5 != 0
    dpo = L.dpo_loss(pc, pr, rc, rr, beta=0.1, reduction="none").tolist()
    for beta_prime in (0.5, 2.0):
        num = sum(float(w[i]) * math.exp(-dpo[i] / beta_prime) for i in range(32) if m[i])
        den = sum(float(w[i]) for i in range(32) if m[i])
        want = -beta_prime * math.log(num / den)
        got = L.dr_dpo_loss(pc, pr, rc, rr, beta=0.1, beta_prime=beta_prime, weights=w, mask=m)
        assert abs(float(got) - want) < 1e-9
        s = L.dr_dpo_loss(pc, pr, rc, rr, beta=0.1, beta_prime=beta_prime, weights=w, mask=m, reduction="sum")
        assert abs(float(s) - want * den) < 1e-8
    # soft-min: never above the mean DPO loss
    assert float(L.dr_dpo_loss(pc, pr, rc, rr, beta_prime=1.0)) <= float(L.dpo_loss(pc, pr, rc, rr)) + 1e-12


def test_bco_pair_delta_and_running_shift():
    pc, pr, rc, rr = _rand(seed=4)
    got = L.bco_pair_loss(pc, pr, rc, rr, beta=0.2, delta=0.3, reduction="none")
    for i in range(32):
        c = 0.2 * float(pc[i] - rc[i]) - 0.3
        r = 0.2 * float(pr[i] - rr[i]) - 0.3
        want = math.log1p(math.exp(-c)) + math.log1p(math.exp(r))
        assert abs(float(got[i]) - want) < 1e-9
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(5, generator=g), torch.randn(5, generator=g)) for _ in range(3)]
    mean, count = 0.0, 0
    for c, r in batches:
        mean, count = L.bco_reward_shift(c, r, mean=mean, count=count)
    everything = torch.cat([torch.cat(b) for b in batches])
    assert count == 30
    torch.testing.assert_close(mean, everything.mean())


def test_rpo_adds_length_normalised_nll():
    pc, pr, rc, rr = _rand(seed=5)
    lc = torch.arange(1.0, 33.0, dtype=torch.float64)
    got = L.rpo_loss(pc, pr, rc, rr, beta=0.1, alpha=0.5, chosen_lengths=lc, reduction="none")
    want = L.dpo_loss(pc, pr, rc, rr, beta=0.1, reduction="none") - 0.5 * pc / lc
    torch.testing.assert_close(got, want)


def test_ipo_paper_form_without_lengths():
    pc, pr, rc, rr = _rand(seed=6)
    got = L.ipo_loss(pc, pr, rc, rr, beta=0.25, reduction="none")
    torch.testing.assert_close(got, ((pc - rc) - (pr - rr) - 2.0) ** 2)


def test_pairwise_cringe_against_slow_reference_and_sampler():
    g = torch.Generator().manual_seed(0)
    n, t, v = 4, 6, 11
    pc, pr = -5 * torch.rand(n, generator=g, dtype=torch.float64), -5 * torch.rand(n, generator=g, dtype=torch.float64)
    logits = torch.randn(n, t, v, generator=g, dtype=torch.float64, requires_grad=True)
    tokens = torch.randint(0, v, (n, t), generator=g)
    tmask = torch.rand(n, t, generator=g) > 0.3
    pos = L.cringe_positive_logits(logits, tokens, k=3, generator=torch.Generator().manual_seed(1))
    neg = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    for i in range(n):
        for j in range(t):
            row = logits[i, j].detach().clone()
            row[tokens[i, j]] = -math.inf
            assert float(pos[i, j].detach()) in set(row.topk(3).values.tolist())
    got = L.pairwise_cringe_loss(
        pc, pr, rejected_token_logits=neg, positive_token_logits=pos, rejected_mask=tmask,
        alpha=0.5, margin=1.0, temperature=2.0, reduction="none",
    )  # fmt: skip
    for i in range(n):
        gate = 1 / (1 + math.exp(-(1.0 - float(pc[i] - pr[i])) / 2.0))
        terms = [math.log1p(math.exp(float((neg[i, j] - pos[i, j]).detach()))) for j in range(t) if tmask[i, j]]
        cringe = sum(terms) / max(len(terms), 1)
        assert abs(float(got[i].detach()) - (-float(pc[i]) + 0.5 * gate * cringe)) < 1e-9
    got.sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_ld_dpo_logps_by_hand():
    tok = torch.tensor([[-1.0, -2.0, -3.0, 0.0], [-1.0, -1.0, 0.0, 0.0]])
    m = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    c, r = L.ld_dpo_logps(tok[:1], tok[1:], m[:1], m[1:], alpha=0.5)
    assert float(c) == -1.0 - 2.0 - 0.5 * 3.0 and float(r) == -2.0
    c1, r1 = L.ld_dpo_logps(tok[:1], tok[1:], m[:1], m[1:], alpha=1.0)
    assert float(c1) == -6.0 and float(r1) == -2.0


def test_wpo_weights_without_alignment_and_from_logits():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 7, generator=g)
    lssp = L.token_log_sum_sq_probs(logits)
    probs = logits.softmax(-1)
    torch.testing.assert_close(lssp, (probs**2).sum(-1).log())
    tok = torch.log_softmax(logits, -1)[..., 0]
    m = torch.ones(3, 5)
    w = L.wpo_weights(tok, tok, m, m)
    torch.testing.assert_close(w, torch.exp(2 * tok.mean(-1)))


def test_aot_mask_drops_pairs_before_sorting():
    pc, pr, rc, rr = _rand(n=10, seed=7)
    keep = torch.tensor([True] * 6 + [False] * 4)
    masked = L.aot_loss(pc, pr, rc, rr, mask=keep)
    sub = L.aot_loss(pc[:6], pr[:6], rc[:6], rr[:6])
    torch.testing.assert_close(masked, sub)
    with pytest.raises(InputError, match="weights"):
        L.aot_unpaired_loss(pc, pr, rc, rr, weights=torch.ones(10))


def test_inputs_by_keyword_and_unknown_options():
    pc, pr, rc, rr = _rand(n=4)
    by_kw = L.get("robust")(
        policy_chosen_logps=pc, policy_rejected_logps=pr, ref_chosen_logps=rc, ref_rejected_logps=rr,
        label_smoothing=0.2,
    )  # fmt: skip
    torch.testing.assert_close(by_kw, L.robust_dpo_loss(pc, pr, rc, rr, label_smoothing=0.2))
    with pytest.raises(InputError, match="label_smoothing"):
        L.dpo_loss(pc, pr, rc, rr, label_smoothing=0.1)  # DPO has no smoothing: use conservative_dpo
    with pytest.raises(InputError, match="quality_margins"):
        L.mmpo_loss(pc, pr, rc, rr)


def test_bad_options_raise_input_error():
    pc, pr, rc, rr = _rand(n=4)
    with pytest.raises(InputError, match="f_divergence"):
        L.dpo_loss(pc, pr, rc, rr, f_divergence="chi2")
    with pytest.raises(InputError, match="label_smoothing"):
        L.robust_dpo_loss(pc, pr, rc, rr, label_smoothing=0.5)
    with pytest.raises(InputError, match="label_smoothing"):
        L.exo_pair_loss(pc, pr, rc, rr, label_smoothing=0.0)
    with pytest.raises(InputError, match="loss_type"):
        L.cpo_loss(pc, pr, loss_type="kto")
    with pytest.raises(InputError, match="chosen_lengths"):
        L.sigmoid_norm_loss(pc, pr, rc, rr, chosen_lengths=None, rejected_lengths=torch.ones(4))
    with pytest.raises(InputError, match="floating-point"):
        L.dpo_loss(pc, pr, rc, torch.zeros(4, dtype=torch.long))


# ------------------------------------------------------------------------------------ behaviour matrix


def _extras(name, pc):
    """Positional inputs beyond (chosen, rejected) and required options for each registered loss."""
    n = pc.shape[0]
    ones = torch.ones(n, dtype=pc.dtype)
    lengths = {"chosen_lengths": 3 * ones, "rejected_lengths": 2 * ones}
    g = torch.Generator().manual_seed(0)
    tok = {
        "rejected_token_logits": torch.randn(n, 4, generator=g).to(pc.dtype),
        "positive_token_logits": torch.randn(n, 4, generator=g).to(pc.dtype),
        "rejected_mask": torch.ones(n, 4, dtype=torch.bool),
    }
    return {
        "sigmoid_norm": (True, lengths),
        "pair_sft": (True, {"chosen_lengths": 3 * ones}),
        "mmpo": (True, {"quality_margins": ones}),
        "irepo": (True, {"preference_probs": 0.7 * ones}),
        "pairwise_cringe": (False, tok),
        "simpo": (False, lengths),
        "cpo_simpo": (False, lengths),
        "cpo": (False, {}),
        "orpo": (False, {}),
    }.get(name, (True, {}))


# the pairwise preference modules (preference.py split by concern: with a reference, batch-coupled, reference-free)
PAIRWISE = {P.__name__, "pairkit.losses.preference_batch", "pairkit.losses.preference_free"}
MINE = sorted(n for n in L.names("preference") if L.get(n).__module__ in PAIRWISE)


def _call(name, pc, pr, rc, rr, **kw):
    with_ref, extra = _extras(name, pc)
    args = (pc, pr, rc, rr) if with_ref else (pc, pr)
    return L.get(name)(*args, **extra, **kw)


def test_module_registers_every_requested_loss():
    wanted = {
        "dpo", "robust_dpo", "conservative_dpo", "slic", "ipo", "exo", "nca_pair", "bco_pair", "sppo_hard", "aot",
        "aot_unpaired", "apo_zero", "apo_down", "discopop", "sigmoid_norm", "simpo", "cpo", "cpo_simpo", "orpo",
        "rpo", "pairwise_cringe", "mmpo", "dr_dpo", "irepo", "pair_sft",
    }  # fmt: skip
    assert wanted <= set(MINE)
    assert set(P.__all__) <= set(dir(L))


@pytest.mark.parametrize("name", MINE)
def test_unit_weights_equal_no_weights(name):
    pc, pr, rc, rr = _rand(n=6, seed=12, scale=3.0)
    plain = _call(name, pc, pr, rc, rr)
    if name.startswith("aot"):
        with pytest.raises(InputError, match="weights"):
            _call(name, pc, pr, rc, rr, weights=torch.ones(6))
        return
    torch.testing.assert_close(_call(name, pc, pr, rc, rr, weights=torch.ones(6, dtype=torch.float64)), plain)
    # and a mask that drops pairs equals computing on the kept ones (aot handled separately)
    keep = torch.tensor([True, False, True, True, False, True])
    masked = _call(name, pc, pr, rc, rr, mask=keep)
    if name != "pair_sft":  # its token-mean normaliser is batch-wide by design (TRL "sft")
        with_ref, extra = _extras(name, pc)
        extra = {k: v[keep] for k, v in extra.items()}
        args = (pc[keep], pr[keep], rc[keep], rr[keep]) if with_ref else (pc[keep], pr[keep])
        torch.testing.assert_close(masked, L.get(name)(*args, **extra))


# ------------------------------------------------------------------------------------ property tests

# paired AOT compares each model's log-odds quantiles; cringe, RPO and SFT also use the policy log-probs alone
_REF_BASED = [
    n for n in MINE if _extras(n, torch.zeros(1))[0] and n not in ("pair_sft", "aot", "pairwise_cringe", "rpo")
]
_finite = st.floats(-50.0, 50.0, allow_nan=False, width=64)


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(_REF_BASED),
    values=st.lists(st.tuples(_finite, _finite, _finite, _finite, _finite), min_size=1, max_size=6),
)
def test_reference_based_losses_depend_only_on_log_ratios(name, values):
    # shifting a response's policy and reference log-probs by the same amount leaves log pi/pi_ref unchanged
    pc, pr, rc, rr, shift = (torch.tensor(v, dtype=torch.float64) for v in zip(*values))
    base = _call(name, pc, pr, rc, rr, reduction="none")
    moved = _call(name, pc + shift, pr - shift, rc + shift, rr - shift, reduction="none")
    torch.testing.assert_close(moved, base, rtol=1e-9, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from([n for n in MINE if not n.startswith("aot")]), seed=st.integers(0, 2**16))
def test_per_pair_values_are_permutation_equivariant(name, seed):
    pc, pr, rc, rr = _rand(n=7, seed=seed, scale=4.0)
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(seed))
    with_ref, extra = _extras(name, pc)
    args = (pc, pr, rc, rr) if with_ref else (pc, pr)
    out = L.get(name)(*args, **extra, reduction="none")
    permuted = L.get(name)(*(a[perm] for a in args), **{k: v[perm] for k, v in extra.items()}, reduction="none")
    torch.testing.assert_close(permuted, out[perm])


@settings(max_examples=30, deadline=None)
@given(delta=st.floats(-30.0, 30.0, allow_nan=False), beta=st.floats(0.01, 2.0))
def test_dpo_logistic_identity(delta, beta):
    # l(D) - l(-D) = -beta * D for the logistic loss, whatever the margin
    d = torch.tensor([delta], dtype=torch.float64)
    z = torch.zeros(1, dtype=torch.float64)
    forward = L.dpo_loss(d, z, z, z, beta=beta, reduction="sum")
    backward = L.dpo_loss(z, d, z, z, beta=beta, reduction="sum")
    assert abs(float(forward - backward) + beta * delta) < 1e-9
