"""Bradley–Terry fitting: pairkit against choix, scikit-learn (LMArena's approach), evalica and arena-rank.

Run:  python benchmarks/bench_bradley_terry.py            (1M comparisons / 1,000 items, 10M, bootstrap)
      python benchmarks/bench_bradley_terry.py --quick    (smaller sizes, for a smoke run)
      python benchmarks/bench_bradley_terry.py --slow     (adds choix mm_pairwise, ~150 s)

Every method starts from the same raw arrays (winner/loser indices), so pairkit's times include building the
Comparisons and the pair counts. Accuracy is max |Δ log-strength| (after centring) to the exact MLE, whose
gradient is checked independently here on the raw rows.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import time
import warnings

import numpy as np
from scipy import special

from pairkit.data import Comparisons
from pairkit.rating import bootstrap_bradley_terry, fit_bradley_terry


def simulate(n_items: int, m: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    theta = rng.normal(0, 1, n_items)
    a = rng.integers(0, n_items, m)
    b = (a + rng.integers(1, n_items, m)) % n_items
    a_won = rng.random(m) < special.expit(theta[a] - theta[b])
    return np.where(a_won, a, b), np.where(a_won, b, a)


def timed(fn, repeat: int = 1):
    best, out = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def centred(x):
    x = np.asarray(x, dtype=float)
    return x - x.mean()


def gradient_check(winners, losers, theta, n):
    """Max |∂ℓ/∂θ| per comparison on the raw rows — independent of pairkit's pair counts."""
    r = 1 - special.expit(theta[winners] - theta[losers])
    g = np.bincount(winners, r, n) - np.bincount(losers, r, n)
    return float(np.max(np.abs(g)) / (len(winners) / n))


def peers(winners, losers, n, slow: bool):
    out = {}
    if importlib.util.find_spec("choix"):
        import choix

        data = np.c_[winners, losers]
        out["choix lsr_pairwise (approximate)"] = lambda: choix.lsr_pairwise(n, data)
        out["choix ilsr_pairwise (tol 1e-8)"] = lambda: choix.ilsr_pairwise(n, data, tol=1e-8)
        if slow:
            out["choix mm_pairwise (tol 1e-8)"] = lambda: choix.mm_pairwise(n, data, tol=1e-8)
    if importlib.util.find_spec("sklearn"):
        import scipy.sparse as sp
        from sklearn.linear_model import LogisticRegression

        def lmarena():
            # LMArena's elo_analysis: ±1 design matrix, logistic regression without intercept. Random
            # orientation of each row so both classes occur (as with model_a/model_b battles).
            m = len(winners)
            flip = np.random.default_rng(1).random(m) < 0.5
            left, right = np.where(flip, losers, winners), np.where(flip, winners, losers)
            x = sp.csr_matrix((np.r_[np.ones(m), -np.ones(m)], (np.r_[np.arange(m), np.arange(m)],
                                                                  np.r_[left, right])), shape=(m, n))
            model = LogisticRegression(fit_intercept=False, C=1e8, tol=1e-8, max_iter=1000)
            model.fit(x, (~flip).astype(int))
            return model.coef_[0]

        out["scikit-learn lbfgs (LMArena)"] = lmarena
    if importlib.util.find_spec("evalica"):
        import evalica
        import pandas as pd

        def run_evalica(fn):
            index = pd.Index(range(n))
            result = fn(winners, losers, [evalica.Winner.X] * len(winners), index=index, tolerance=1e-8,
                        limit=1000)
            return np.log(result.scores.reindex(range(n)).to_numpy())

        out["evalica bradley_terry"] = lambda: run_evalica(evalica.bradley_terry)
        out["evalica newman"] = lambda: run_evalica(evalica.newman)
    if importlib.util.find_spec("arena_rank") and importlib.util.find_spec("jax"):
        def run_arena_rank():
            import jax

            jax.config.update("jax_enable_x64", True)
            import pandas as pd
            from arena_rank.models.bradley_terry import BradleyTerry
            from arena_rank.utils.data_utils import PairDataset

            frame = pd.DataFrame({"model_a": winners.astype(str), "model_b": losers.astype(str),
                                  "winner": "model_a"})
            ds = PairDataset.from_pandas(frame)
            model = BradleyTerry(ds.n_competitors).fit(ds)
            ratings = np.asarray(model.params["ratings"])
            order = np.array([int(c) for c in ds.competitors])
            full = np.empty(n)
            full[order] = ratings
            return full

        out["arena-rank (jax lbfgs)"] = run_arena_rank
    return out


def bench_fit(n: int, m: int, slow: bool, rows: list):
    winners, losers = simulate(n, m)

    def ours():
        comps = Comparisons.from_arrays(winners, losers)
        return fit_bradley_terry(comps, intervals="none").log_strength

    t_ours, theta = timed(ours, repeat=3)
    grad = gradient_check(winners, losers, theta, n)
    t_ci, _ = timed(lambda: fit_bradley_terry(Comparisons.from_arrays(winners, losers)), repeat=2)
    rows.append((f"{m:,} comparisons, {n:,} items", "pairkit fit_bradley_terry", t_ours, 1.0, 0.0))
    rows.append(("", "pairkit, with Fisher intervals", t_ci, t_ci / t_ours, 0.0))
    for name, fn in peers(winners, losers, n, slow).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                t, est = timed(fn)
            except Exception as exc:  # a peer failing is reported, not fatal
                rows.append(("", f"{name}: failed ({type(exc).__name__})", np.nan, np.nan, np.nan))
                continue
        rows.append(("", name, t, t / t_ours, float(np.max(np.abs(centred(est) - theta)))))
    return grad


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--slow", action="store_true")
    parser.add_argument("--boot", type=int, default=1000)
    args = parser.parse_args()
    sizes = [(100, 100_000)] if args.quick else [(1000, 1_000_000)]
    big = 1_000_000 if args.quick else 10_000_000
    rows: list = []
    grads = []
    for n, m in sizes:
        grads.append(bench_fit(n, m, args.slow, rows))

    winners, losers = simulate(1000, big, seed=3)
    t_big, board = timed(lambda: fit_bradley_terry(Comparisons.from_arrays(winners, losers), intervals="none"))
    rows.append((f"{big:,} comparisons, 1,000 items", "pairkit, arrays → pair counts → MLE", t_big, np.nan,
                 0.0))

    for n_items in (100, 1000):
        w, l = simulate(n_items, sizes[0][1], seed=5)
        comps = Comparisons.from_arrays(w, l)
        t_boot, boot = timed(lambda comps=comps: bootstrap_bradley_terry(comps, n_boot=args.boot, seed=0))
        rows.append((f"bootstrap ×{args.boot}, {sizes[0][1]:,} comparisons, {n_items} items",
                     "pairkit bootstrap_bradley_terry", t_boot, np.nan, 0.0))
        if n_items == 100:
            # The generic path (one full refit per replicate) for comparison, on 20 replicates.
            from pairkit.rating import bootstrap

            t_slow, _ = timed(lambda comps=comps: bootstrap(comps, lambda c: fit_bradley_terry(c, intervals="none"),
                                                n_boot=20, seed=0))
            rows.append(("", "generic refit per replicate (extrapolated from 20)", t_slow * args.boot / 20,
                         t_slow * args.boot / 20 / t_boot, 0.0))

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}, numpy {np.__version__}")
    print(f"exact-MLE check: max |gradient| per average comparison count = {max(grads):.1e}")
    print("| case | method | time (s) | × pairkit | max abs Δθ to MLE |")
    print("|---|---|---:|---:|---:|")
    for case, name, t, ratio, err in rows:
        ratio_s = "" if not np.isfinite(ratio) else f"{ratio:.1f}"
        err_s = "" if not np.isfinite(err) else f"{err:.1e}"
        print(f"| {case} | {name} | {t:.3f} | {ratio_s} | {err_s} |")


if __name__ == "__main__":
    main()
