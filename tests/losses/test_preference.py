"""Pairwise preference losses: equality with TRL (forward and gradients), paper references, behaviour."""

from __future__ import annotations

import types
from collections import defaultdict

import pytest
import torch
from trl.trainer.dpo_trainer import DPOTrainer

import pairkit.losses as L

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


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_matches_trl_sigmoid(beta):
    assert_matches_trl("sigmoid", lambda b: L.get("sigmoid")(*seq(b), beta=beta), trl_kwargs=dict(beta=beta))


def test_dpo_per_pair_values_match_trl_one_pair_at_a_time():
    b = make_batch(n=4, seed=3)
    ours = L.dpo_loss(*seq(b), beta=0.3, reduction="none")
    for i in range(4):
        idx = torch.tensor([i, i + 4])
        one = dict(
            b, policy_tok=b["policy_tok"][idx], ref_tok=b["ref_tok"][idx], completion_mask=b["completion_mask"][idx]
        )
        torch.testing.assert_close(ours[i], trl_dpo("sigmoid", one, beta=0.3), **TOL)
