"""Token-level KL / generalised JSD over [batch, time, vocab]: pairkit (chunked) vs naive torch vs TRL.

Each method runs forward + backward (gradient w.r.t. the student logits) in its own subprocess, so the
peak resident memory (``ru_maxrss``) of that process, minus the memory held after the inputs were
created, is the method's own extra peak. Times are the best of ``--repeats`` runs.

    python benchmarks/bench_divergence.py                 # [8, 256, 32000] fp32 (about 2 minutes)
    python benchmarks/bench_divergence.py --time 1024     # [8, 1024, 32000]: ~10 GB+ RAM for the naive/TRL rows
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

METHODS = {
    "kl/naive torch": "naive_kl",
    "kl/pairkit chunked": "pairkit_kl",
    "jsd/naive torch": "naive_jsd",
    "jsd/TRL GKDTrainer.generalized_jsd_loss": "trl_jsd",
    "jsd/pairkit unchunked": "pairkit_jsd_full",
    "jsd/pairkit chunked": "pairkit_jsd",
}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _run_one(method: str, batch: int, time_len: int, vocab: int, chunk: int, repeats: int, beta: float) -> dict:
    import torch
    import torch.nn.functional as F

    import pairkit.losses as L

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    g = torch.Generator().manual_seed(0)
    student = torch.randn(batch, time_len, vocab, generator=g)
    teacher = torch.randn(batch, time_len, vocab, generator=g)
    labels = torch.randint(0, vocab, (batch, time_len), generator=g)
    labels[:, : time_len // 8] = -100  # a prompt that is not distilled
    mask = labels != -100
    student.requires_grad_(True)
    base = _peak_mb()

    def naive_kl():
        per = F.kl_div(student.log_softmax(-1), teacher.log_softmax(-1), log_target=True, reduction="none").sum(-1)
        return per[mask].mean()

    def naive_jsd():
        ls, lt = student.log_softmax(-1), teacher.log_softmax(-1)
        lm = torch.logaddexp(ls + torch.log1p(torch.tensor(-beta)), lt + torch.log(torch.tensor(beta)))
        kl_t = F.kl_div(lm, lt, log_target=True, reduction="none").sum(-1)
        kl_s = F.kl_div(lm, ls, log_target=True, reduction="none").sum(-1)
        return (beta * kl_t + (1 - beta) * kl_s)[mask].mean()

    if method == "trl_jsd":  # import outside the timed region
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
        from trl.experimental.gkd import GKDTrainer

    def trl_jsd():
        return GKDTrainer.generalized_jsd_loss(student, teacher, labels, beta=beta)

    fns = {
        "naive_kl": naive_kl,
        "pairkit_kl": lambda: L.token_kl_divergence(student, teacher, chunk_size=chunk, mask=mask),
        "naive_jsd": naive_jsd,
        "trl_jsd": trl_jsd,
        "pairkit_jsd_full": lambda: L.token_generalized_jsd(student, teacher, beta=beta, mask=mask),
        "pairkit_jsd": lambda: L.token_generalized_jsd(student, teacher, beta=beta, chunk_size=chunk, mask=mask),
    }
    fn = fns[method]
    times = []
    value = None
    for _ in range(repeats):
        student.grad = None
        start = time.perf_counter()
        loss = fn()
        loss.backward()
        times.append(time.perf_counter() - start)
        value = loss.item()
    return {"seconds": min(times), "extra_peak_mb": _peak_mb() - base, "loss": value}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--time", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--chunk-size", type=int, default=512, help="positions per chunk for pairkit")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--beta", type=float, default=0.5)
    parser.add_argument("--only", default=None, help="comma-separated method keys (internal / debugging)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        out = _run_one(args.child, args.batch, args.time, args.vocab, args.chunk_size, args.repeats, args.beta)
        print(json.dumps(out))
        return

    input_gb = args.batch * args.time * args.vocab * 4 / 1e9
    print(
        f"shape [{args.batch}, {args.time}, {args.vocab}] fp32 (each logits tensor {input_gb:.2f} GB), "
        f"chunk_size={args.chunk_size}, beta={args.beta}, forward+backward, best of {args.repeats}"
    )
    rows = []
    for label, key in METHODS.items():
        if args.only and key not in args.only.split(","):
            continue
        cmd = [sys.executable, __file__, "--child", key]
        for flag in ("batch", "time", "vocab", "repeats", "beta"):
            cmd += [f"--{flag}", str(getattr(args, flag))]
        cmd += ["--chunk-size", str(args.chunk_size)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            rows.append((label, None, proc.stderr.strip().splitlines()[-1:]))
            continue
        rows.append((label, json.loads(proc.stdout.strip().splitlines()[-1]), None))

    ref = {"kl": rows[0][1], "jsd": next((r[1] for r in rows if r[0].startswith("jsd/TRL")), None)}
    print("\n| method | time (s) | extra peak RSS (MB) | time ratio | memory ratio | loss |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, res, err in rows:
        if res is None:
            print(f"| {label} | failed: {err} | | | | |")
            continue
        base = ref["kl"] if label.startswith("kl/") else ref["jsd"]
        t_ratio = res["seconds"] / base["seconds"] if base else float("nan")
        m_ratio = res["extra_peak_mb"] / base["extra_peak_mb"] if base and base["extra_peak_mb"] > 0 else float("nan")
        print(
            f"| {label} | {res['seconds']:.2f} | {res['extra_peak_mb']:.0f} | {t_ratio:.2f} | {m_ratio:.2f} "
            f"| {res['loss']:.6f} |"
        )
    print("\nratios: kl rows vs naive torch KL, jsd rows vs TRL generalized_jsd_loss (lower is better)")


if __name__ == "__main__":
    main()
