"""NT-Xent / SupCon: pairkit (dense and exact row-chunked) vs pytorch-metric-learning — time and peak memory.

Run: python benchmarks/bench_contrastive.py            (default set, under 2 minutes on 2 idle cores)
     python benchmarks/bench_contrastive.py --large    (adds the 65,536 x 256 memory-bounded run: minutes)

Each configuration runs in a fresh subprocess so that its peak resident set size (ru_maxrss) is its own. A
"batch" is N embedding rows of dimension D holding two views of N/2 items (SimCLR labels), and each timing is
one forward + backward pass with respect to the embeddings. pml's NTXentLoss builds a
[positive pairs x negative pairs] matrix, O(N^3) memory and time, so it only runs at small N; the ratio at
larger N is extrapolated from the measured cubic growth and labelled as such.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run_one(impl: str, loss: str, n: int, d: int, chunk: int | None, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)

    torch.manual_seed(0)
    x = torch.randn(n, d)
    labels = torch.arange(n // 2).repeat(2)
    temperature = 0.07 if loss == "ntxent" else 0.1
    if impl == "pml":
        from pytorch_metric_learning import losses as pml

        fn = (pml.NTXentLoss if loss == "ntxent" else pml.SupConLoss)(temperature=temperature)
    elif impl == "reference":
        # What one would write by hand for two views: a dense cross-entropy over the other 2n - 1 rows.
        import torch.nn.functional as F

        def fn(e, lab):
            z = F.normalize(e, dim=1)
            logits = (z @ z.T / temperature).fill_diagonal_(float("-inf"))
            rows = e.shape[0]
            return F.cross_entropy(logits, torch.arange(rows).roll(rows // 2))
    else:
        import pairkit.losses as L

        def fn(e, lab):
            return L.get(loss)(e, lab, temperature=temperature, chunk_size=chunk)

    # Warm up on a small batch (first-call dispatch and allocator costs), then keep the best of the repeats.
    small = x[:64].clone().requires_grad_(True)
    fn(small, torch.arange(32).repeat(2)).backward()
    base = _peak_rss_mb()
    best = None
    for _ in range(1 if impl == "pml" or n > 8192 else 3):
        e = x.clone().requires_grad_(True)
        cpu0, start = _cpu_seconds(), time.perf_counter()
        value = fn(e, labels)
        value.backward()
        seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu0
        if best is None or seconds < best[0]:
            best = (seconds, cpu)
    return {"seconds": best[0], "cpu": best[1], "peak_mb": _peak_rss_mb(), "base_mb": base, "value": value.item()}


CONFIGS_NTXENT = [
    # (impl, n, d, chunk)
    ("pml", 256, 256, None),
    ("pairkit", 256, 256, None),
    ("pml", 512, 256, None),
    ("pairkit", 512, 256, None),
    ("reference", 4096, 256, None),
    ("pairkit", 4096, 256, None),
    ("pairkit", 4096, 256, 512),
]
CONFIGS_SUPCON = [("pml", 4096, 256, None), ("pairkit", 4096, 256, None)]
LARGE = [("pairkit", 65536, 256, None)]


def _spawn(impl, loss, n, d, chunk, threads) -> dict:
    cmd = [sys.executable, __file__, "--one", impl, loss, str(n), str(d), str(chunk or 0), str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--large", action="store_true", help="add the 65,536 x 256 run (several minutes)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads for every implementation (default 1: stable timings)"
    )
    parser.add_argument("--one", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        impl, loss, n, d, chunk, threads = args.one
        print(json.dumps(_run_one(impl, loss, int(n), int(d), int(chunk) or None, int(threads))))
        return

    rows = []
    runs = [("ntxent", *c) for c in CONFIGS_NTXENT] + [("supcon", *c) for c in CONFIGS_SUPCON]
    if args.large:
        runs += [("ntxent", *c) for c in LARGE]
    for loss, impl, n, d, chunk in runs:
        res = _spawn(impl, loss, n, d, chunk, args.threads)
        rows.append((loss, impl, n, d, chunk, res))
        print(f"done {loss} {impl} N={n} chunk={chunk}: {res['seconds']:.3f}s", file=sys.stderr, flush=True)

    def find(loss, impl, n, chunk=None):
        return next(r[5] for r in rows if r[:3] == (loss, impl, n) and r[4] == chunk)

    print(
        "| loss | implementation | N x D | chunk | wall (s) | CPU (s) | peak RSS (MB) | RSS above start (MB) | value |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for loss, impl, n, d, chunk, res in rows:
        mode = "dense" if impl != "pairkit" else (f"{chunk} rows" if chunk else "auto")
        print(
            f"| {loss} | {impl} | {n} x {d} | {mode} | {res['seconds']:.3f} | {res['cpu']:.3f} | "
            f"{res['peak_mb']:.0f} | {res['peak_mb'] - res['base_mb']:.0f} | {res['value']:.6f} |"
        )
    print()
    for n in (256, 512):
        ours, theirs = find("ntxent", "pairkit", n), find("ntxent", "pml", n)
        print(
            f"NT-Xent N={n}: pml / pairkit time = {theirs['seconds'] / ours['seconds']:.0f}x, "
            f"|value difference| = {abs(ours['value'] - theirs['value']):.2e}"
        )
    t256, t512 = find("ntxent", "pml", 256)["seconds"], find("ntxent", "pml", 512)["seconds"]
    exponent = math.log(t512 / t256, 2)
    pml_4096 = t512 * 8**exponent
    ours_4096 = find("ntxent", "pairkit", 4096)["seconds"]
    ref = find("ntxent", "reference", 4096)["value"]
    print(
        f"NT-Xent N=4096: pml extrapolated from N=256 -> 512 growth (N^{exponent:.2f}) = {pml_4096:.0f} s, "
        f"pairkit {ours_4096:.2f} s -> ~{pml_4096 / ours_4096:.0f}x (extrapolated, pml not run); "
        f"|pairkit - dense cross-entropy reference| = {abs(ref - find('ntxent', 'pairkit', 4096)['value']):.2e}"
    )
    sp, so = find("supcon", "pml", 4096), find("supcon", "pairkit", 4096)
    print(
        f"SupCon N=4096: pml / pairkit time = {sp['seconds'] / so['seconds']:.1f}x, "
        f"|value difference| = {abs(sp['value'] - so['value']):.2e}"
    )


if __name__ == "__main__":
    main()
