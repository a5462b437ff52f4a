"""Forward + backward time of the losses pairkit shares with TRL: KTO (and APO-zero-unpaired) vs
``KTOTrainer._compute_loss``, Bradley–Terry reward loss vs ``RewardTrainer.compute_loss``.

TRL computes these losses inside its trainers, so TRL is run on precomputed log-probs / rewards through a stub
model (the same harness as the tests); its timings include the per-step metric logging the trainer does there.
Values are checked to agree before timing. Run: ``python benchmarks/bench_reward_losses.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from pairkit.losses import bradley_terry_reward_loss, kto_loss
from pairkit.losses import get as get_loss

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for the shared TRL harness
from tests.losses.trl_stubs import trl_kto_loss, trl_reward_loss  # noqa: E402


def timed(fn, leaves, repeats):
    """Median wall time of forward + backward (after two warm-up calls)."""
    times = []
    for i in range(repeats + 2):
        for x in leaves:
            x.grad = None
        t0 = time.perf_counter()
        fn().backward()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cases(n):
    g = torch.Generator().manual_seed(0)
    pol = torch.randn(n, generator=g) - 20
    ref, kl_pol, kl_ref = (
        pol + torch.randn(n, generator=g),
        torch.randn(n, generator=g) - 20,
        torch.randn(n, generator=g) - 20,
    )
    labels = torch.rand(n, generator=g) > 0.5
    rc, rr, margin = torch.randn(n, generator=g), torch.randn(n, generator=g), torch.rand(n, generator=g)
    p = pol.requires_grad_(True)
    c, r = rc.requires_grad_(True), rr.requires_grad_(True)
    apo = get_loss("apo_zero_unpaired")
    yield (
        "kto",
        [p],
        lambda: kto_loss(p, ref, labels, policy_kl_logps=kl_pol, ref_kl_logps=kl_ref),
        lambda: trl_kto_loss(p, ref, kl_pol, kl_ref, labels, loss_type="kto"),
    )
    yield (
        "apo_zero_unpaired",
        [p],
        lambda: apo(p, ref, labels),
        lambda: trl_kto_loss(p, ref, kl_pol, kl_ref, labels, loss_type="apo_zero_unpaired"),
    )
    yield (
        "reward_bradley_terry (margin, centring)",
        [c, r],
        lambda: bradley_terry_reward_loss(c, r, margin=margin, center_rewards_coefficient=0.01),
        lambda: trl_reward_loss(c, r, margin=margin, center=0.01),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 4096, 65536])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import trl

    machine = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, trl {trl.__version__}, {machine}, threads={args.threads}")
    print("| loss | batch | pairkit ms | TRL ms | TRL / pairkit | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        for name, leaves, ours, theirs in cases(n):
            diff = (ours() - theirs()).abs().item()
            t_ours, t_trl = timed(ours, leaves, args.repeats), timed(theirs, leaves, args.repeats)
            print(f"| {name} | {n} | {t_ours * 1e3:.3f} | {t_trl * 1e3:.3f} | {t_trl / t_ours:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
