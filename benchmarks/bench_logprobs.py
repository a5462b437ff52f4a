"""Completion log-probabilities: naive log_softmax vs pairkit's chunked functions (time and peak RSS).

Each configuration runs in its own subprocess so that its peak resident set size (``ru_maxrss``) is its own.
"Working" memory is the peak minus the RSS after the inputs were allocated. Every run is forward + backward
of the summed completion log-probabilities, with every position a completion position (no savings from
masking).

    python benchmarks/bench_logprobs.py [--vocab 32000 128000] [--hidden 256] [--repeats 2]

The default (vocab 32,000 only) takes about 1 minute; 128,000 adds several minutes.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

BATCH, LENGTH = 8, 1024


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_one(method: str, vocab: int, hidden: int, repeats: int, chunk: int) -> dict:
    import torch

    from pairkit.train.logprobs import token_logps_from_hidden, token_logps_from_logits

    torch.manual_seed(0)
    labels = torch.randint(0, vocab, (BATCH, LENGTH))
    h = (torch.randn(BATCH, LENGTH, hidden) / hidden**0.5).requires_grad_(True)
    w = torch.randn(vocab, hidden).requires_grad_(True)
    logits = None
    if method.startswith("logits"):
        with torch.no_grad():
            logits = (h @ w.T).requires_grad_(True)
    base = _rss_mib()

    def step():
        if method == "hidden-naive":
            lp = torch.log_softmax(h @ w.T, -1)[:, :-1].gather(-1, labels[:, 1:, None]).sum()
        elif method == "hidden-pairkit":
            lp = token_logps_from_hidden(h, w, labels, chunk_size=chunk).sum()
        elif method == "logits-naive":
            lp = torch.log_softmax(logits, -1)[:, :-1].gather(-1, labels[:, 1:, None]).sum()
        else:
            lp = token_logps_from_logits(logits, labels, chunk_size=chunk).sum()
        lp.backward()
        for t in (h, w, logits):
            if t is not None:
                t.grad = None
        return float(lp)

    times, value = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = step()
        times.append(time.perf_counter() - t0)
    return {"seconds": min(times), "peak_mib": _rss_mib(), "working_mib": _rss_mib() - base, "value": value}


def naive_bytes(method: str, vocab: int) -> int:
    # logits, their log-softmax, its gradient and the logits' gradient, float32
    n = BATCH * LENGTH * vocab * 4
    return 4 * n if method == "hidden-naive" else 3 * n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, nargs="+", default=[32000])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--memory-budget-gib", type=float, default=10.0)
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "VOCAB"))
    args = parser.parse_args()
    if args.child:
        method, vocab = args.child[0], int(args.child[1])
        print(json.dumps(run_one(method, vocab, args.hidden, args.repeats, args.chunk)))
        return

    rows = []
    for vocab in args.vocab:
        for start in ("hidden", "logits"):
            result = {}
            for impl in ("naive", "pairkit"):
                method = f"{start}-{impl}"
                need = naive_bytes(method, vocab) / 2**30
                if impl == "naive" and need > args.memory_budget_gib:
                    result[impl] = {"infeasible": f"needs ~{need:.1f} GiB > budget {args.memory_budget_gib} GiB"}
                    continue
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    method,
                    str(vocab),
                    "--hidden",
                    str(args.hidden),
                    "--repeats",
                    str(args.repeats),
                    "--chunk",
                    str(args.chunk),
                ]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True)
                result[impl] = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append((vocab, start, result))

    print(f"batch {BATCH}, length {LENGTH}, hidden {args.hidden}, chunk {args.chunk}, float32, fwd+bwd")
    head = (
        "| vocab | input | naive s | pairkit s | time ratio | naive peak MiB (working) "
        "| pairkit peak MiB (working) | memory ratio (working) |"
    )
    print(head)
    print("|" + "---|" * 8)
    for vocab, start, r in rows:
        n, p = r["naive"], r["pairkit"]
        if "infeasible" in n:
            print(
                f"| {vocab} | {start} | infeasible ({n['infeasible']}) | {p['seconds']:.2f} | – | – | "
                f"{p['peak_mib']:.0f} ({p['working_mib']:.0f}) | – |"
            )
            continue
        assert abs(n["value"] - p["value"]) <= 1e-3 * abs(n["value"]), (n["value"], p["value"])
        print(
            f"| {vocab} | {start} | {n['seconds']:.2f} | {p['seconds']:.2f} | {p['seconds'] / n['seconds']:.2f} | "
            f"{n['peak_mib']:.0f} ({n['working_mib']:.0f}) | {p['peak_mib']:.0f} ({p['working_mib']:.0f}) | "
            f"{p['working_mib'] / n['working_mib']:.3f} |"
        )


if __name__ == "__main__":
    main()
