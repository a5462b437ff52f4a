"""Forward+backward time of pairkit's pairwise preference losses vs TRL's implementations, same run.

DPO family: TRL's own ``DPOTrainer._compute_loss`` runs unbound on a stand-in (a fake fused-LM-head model
returning fixed per-token log-probs), so it includes what TRL does around the loss (summing per-token
log-probs, its metric bookkeeping). pairkit does the same per-token sum, then the loss. CPO/SimPO and ORPO:
TRL's ``cpo_loss`` / ``odds_ratio_loss`` methods against pairkit's loss, both on sequence log-probs.

Run: ``python benchmarks/bench_preference_losses.py [--batch 4096] [--tokens 16] [--repeats 40]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import types
import warnings
from collections import defaultdict

import torch

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import pairkit.losses as L


class _FakeLM(torch.nn.Module):
    is_gradient_checkpointing = False

    def __init__(self, log_probs, log_sum_sq_probs=None):
        super().__init__()
        self.log_probs, self.log_sum_sq_probs = log_probs, log_sum_sq_probs

    def forward(self, **_):
        z = torch.zeros_like(self.log_probs.detach())
        return types.SimpleNamespace(
            log_probs=self.log_probs, entropy=z, mean_logits=z, is_top1=z.bool(), log_sum_sq_probs=self.log_sum_sq_probs
        )


_ACCEL = types.SimpleNamespace(device="cpu", gather=lambda x: x, gather_for_metrics=lambda x: x)


def trl_dpo_call(trainer_cls, loss_type, tok, ref_tok, mask, lssp=None, **cfg):
    self = types.SimpleNamespace(
        accelerator=_ACCEL,
        model=_FakeLM(tok, lssp),
        ref_model=_FakeLM(ref_tok),
        aux_loss_enabled=False,
        precompute_ref_logps=False,
        ld_alpha=cfg.get("ld_alpha"),
        f_divergence_type=cfg.get("f_divergence_type", "reverse_kl"),
        f_alpha_divergence_coef=0.5,
        loss_types=[loss_type],
        loss_weights=[1.0],
        beta=0.1,
        label_smoothing=cfg.get("label_smoothing", 0.0),
        use_weighting=cfg.get("use_weighting", False),
        args=types.SimpleNamespace(discopop_tau=0.05, gradient_checkpointing_kwargs=None),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )
    inputs = {"input_ids": torch.zeros_like(mask), "attention_mask": torch.ones_like(mask), "completion_mask": mask}
    return trainer_cls._compute_loss(self, self.model, inputs, return_outputs=False)


def timeit_pair(fn_a, fn_b, leaves, repeats):
    """Median forward+backward seconds of two callables, interleaved so machine load hits both alike."""
    times = ([], [])
    for i in range(repeats + 3):
        for fn, out in zip((fn_a, fn_b), times):
            t0 = time.perf_counter()
            fn().backward()
            if i >= 3:
                out.append(time.perf_counter() - t0)
            for leaf in leaves:
                leaf.grad = None
    return statistics.median(times[0]), statistics.median(times[1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import trl
        from trl.experimental.cpo.cpo_trainer import CPOTrainer
        from trl.experimental.orpo.orpo_trainer import ORPOTrainer
        from trl.trainer.dpo_trainer import DPOTrainer

    n, t = args.batch, args.tokens
    mask = torch.zeros(2 * n, t + 1, dtype=torch.long)
    lengths = torch.randint(1, t + 1, (2 * n,))
    mask[:, 1:] = (torch.arange(t)[None] < lengths[:, None]).long()
    shift = mask[:, 1:].float()
    raw = (-torch.rand(2 * n, t)).requires_grad_(True)
    ref = -torch.rand(2 * n, t) * shift
    lssp = -torch.rand(2 * n, t)
    lc, lr = mask.sum(1).float().chunk(2)

    def seq():
        tok = raw * shift
        pc, pr = tok.sum(1).chunk(2)
        rc, rr = ref.sum(1).chunk(2)
        return tok, pc, pr, rc, rr

    def ours(name, **kw):
        def run():
            _, pc, pr, rc, rr = seq()
            return L.get(name)(pc, pr, rc, rr, **kw)

        return run

    def theirs(loss_type, **cfg):
        return lambda: trl_dpo_call(DPOTrainer, loss_type, raw * shift, ref, mask, lssp, **cfg)

    def ours_wpo():
        tok, pc, pr, rc, rr = seq()
        w = L.wpo_weights(tok[:n], tok[n:], shift[:n], shift[n:], chosen_log_sum_sq_probs=lssp[:n],
                          rejected_log_sum_sq_probs=lssp[n:])  # fmt: skip
        return L.dpo_loss(pc, pr, rc, rr, weights=w, reduction="none").mean()

    def ours_ld():
        tok = raw * shift
        pc, pr = L.ld_dpo_logps(tok[:n], tok[n:], shift[:n], shift[n:], alpha=0.5)
        rc, rr = L.ld_dpo_logps(ref[:n], ref[n:], shift[:n], shift[n:], alpha=0.5)
        return L.dpo_loss(pc, pr, rc, rr)

    rows = [
        ("sigmoid (dpo)", ours("sigmoid"), theirs("sigmoid")),
        ("hinge", ours("hinge"), theirs("hinge")),
        ("ipo (length-normalised)", ours("ipo", chosen_lengths=lc, rejected_lengths=lr), theirs("ipo")),
        ("exo_pair", ours("exo_pair"), theirs("exo_pair", label_smoothing=1e-3)),
        ("nca_pair", ours("nca_pair"), theirs("nca_pair")),
        ("robust", ours("robust", label_smoothing=0.1), theirs("robust", label_smoothing=0.1)),
        ("bco_pair", ours("bco_pair"), theirs("bco_pair")),
        ("sppo_hard", ours("sppo_hard"), theirs("sppo_hard")),
        ("aot", ours("aot"), theirs("aot")),
        ("aot_unpaired", ours("aot_unpaired"), theirs("aot_unpaired")),
        ("apo_zero", ours("apo_zero"), theirs("apo_zero")),
        ("apo_down", ours("apo_down"), theirs("apo_down")),
        ("discopop", ours("discopop"), theirs("discopop")),
        ("sigmoid_norm", ours("sigmoid_norm", chosen_lengths=lc, rejected_lengths=lr), theirs("sigmoid_norm")),
        ("sft", ours("sft", chosen_lengths=shift.sum(1)[:n]), theirs("sft")),
        ("f-DPO js_divergence", ours("dpo", f_divergence="js_divergence"),
         theirs("sigmoid", f_divergence_type="js_divergence")),
        ("f-DPO alpha_divergence", ours("dpo", f_divergence="alpha_divergence"),
         theirs("sigmoid", f_divergence_type="alpha_divergence")),
        ("WPO weighting (dpo)", ours_wpo, theirs("sigmoid", use_weighting=True)),
        ("LD-DPO ld_alpha=0.5", ours_ld, theirs("sigmoid", ld_alpha=0.5)),
    ]  # fmt: skip

    # reference-free: both sides take sequence log-probs
    pc_leaf = (-3 * torch.rand(n) - 1e-3).requires_grad_(True)
    pr_leaf = (-3 * torch.rand(n) - 1e-3).requires_grad_(True)
    nll = torch.tensor(1.0)
    ref_free = []
    for lt in ("sigmoid", "hinge", "ipo", "simpo"):
        stand_in = types.SimpleNamespace(alpha=0.0, loss_type=lt, simpo_gamma=0.5, beta=0.1, label_smoothing=0.0,
                                         accelerator=_ACCEL)  # fmt: skip
        ref_free.append((
            f"CPO {lt}",
            lambda lt=lt: L.cpo_loss(pc_leaf, pr_leaf, chosen_nll=nll, loss_type=lt, simpo_gamma=0.5),
            lambda s=stand_in: CPOTrainer.cpo_loss(s, pc_leaf, pr_leaf)[0].mean() + nll,
        ))  # fmt: skip
    orpo_self = types.SimpleNamespace(beta=0.1, accelerator=_ACCEL)
    ref_free.append((
        "ORPO",
        lambda: L.orpo_loss(pc_leaf, pr_leaf, chosen_nll=nll),
        lambda: nll - ORPOTrainer.odds_ratio_loss(orpo_self, pc_leaf, pr_leaf)[0].mean(),
    ))  # fmt: skip

    table = []
    for name, ours_fn, trl_fn in rows:
        a, b = ours_fn(), trl_fn()
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5), (name, float(a), float(b))
        table.append((name, *timeit_pair(ours_fn, trl_fn, [raw], args.repeats)))
    for name, ours_fn, trl_fn in ref_free:
        a, b = ours_fn(), trl_fn()
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5), (name, float(a), float(b))
        table.append((name, *timeit_pair(ours_fn, trl_fn, [pc_leaf, pr_leaf], 10 * args.repeats)))

    print(
        f"pairwise preference losses, forward+backward, batch {n} pairs x {t} tokens, median of {args.repeats}; "
        f"torch {torch.__version__}, trl {trl.__version__}, {args.threads} thread(s), {platform.machine()}"
    )
    print()
    print("| loss | pairkit (ms) | TRL (ms) | TRL / pairkit |")
    print("|---|---:|---:|---:|")
    for name, a, b in table:
        print(f"| {name} | {a * 1e3:.3f} | {b * 1e3:.3f} | {b / a:.2f} |")
    ratios = [b / a for _, a, b in table]
    print()
    print(f"geometric-mean speed ratio TRL/pairkit: {statistics.geometric_mean(ratios):.2f}; "
          f"slowest pairkit row: {min(ratios):.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
