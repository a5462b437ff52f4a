"""Likelihood rating models: pairkit against peers in one run (time, agreement, ratio).

* Plackett–Luce on NASCAR 2002 (Hunter 2004's example) and on synthetic top-k lists: pairkit's MM + Newton vs
  choix's ``ilsr_rankings`` and ``mm_rankings`` (tolerances tight enough to agree to 1e-6).
* Bradley–Terry with a home advantage on the icehockey data and on a synthetic league: pairkit's
  ``fit_order_advantage`` vs scikit-learn's unpenalised ``LogisticRegression`` on the sparse difference design.

Time is the median CPU time (process time: the machine is shared) of ``--repeats`` runs with BLAS limited to
one thread for everyone; intervals are off in pairkit, so all do the same work. "max |Δθ|" is the
largest difference of centred log-strengths from pairkit's.

    python benchmarks/bench_rating_models.py [--repeats 3] [--quick] [--blas-threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def timed(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        start = time.process_time()
        out = fn()
        times.append(time.process_time() - start)
    return statistics.median(times), out


def centred(x):
    x = np.asarray(x, dtype=float)
    return x - x.mean()


def pl_rows(repeats, quick):
    import choix

    from pairkit.data import Rankings, read_rankings
    from pairkit.rating import fit_plackett_luce

    cases = []
    nascar = read_rankings(SHARED / "rankings" / "nascar2002.txt", ranking="Race", item="DriverID", position="Place")
    cases.append(("PL nascar2002 (83 drivers, 36 races)", nascar))
    rng = np.random.default_rng(0)
    n, r, k = (200, 2000, 8) if quick else (500, 20000, 10)
    strength = rng.normal(size=n)
    lists = []
    for _ in range(r):  # Gumbel trick: sorting perturbed utilities samples a Plackett–Luce ranking
        lists.append(list(np.argsort(-(strength + rng.gumbel(size=n)))[:k]))
    synth = Rankings.from_lists(lists, items=[str(i) for i in range(n)])
    cases.append((f"PL synthetic ({n} items, {r} rankings of {k}, partial)", synth))
    rows = []
    for label, data in cases:
        t_pk, board = timed(lambda data=data: fit_plackett_luce(data, intervals="none"), repeats)
        ours = board.scores
        lists = [tuple(data.flat[data.offsets[i] : data.offsets[i + 1]]) for i in range(len(data))]
        t_ilsr, ilsr = timed(
            lambda lists=lists, data=data: choix.ilsr_rankings(data.n_items, lists, tol=1e-12, max_iter=100_000),
            repeats,
        )
        t_mm, mm = timed(
            lambda lists=lists, data=data: choix.mm_rankings(data.n_items, lists, tol=1e-12, max_iter=100_000),
            max(1, repeats // 2),
        )
        rows.append((label, "pairkit fit_plackett_luce", t_pk, 1.0, 0.0))
        rows.append((label, "choix.ilsr_rankings", t_ilsr, t_ilsr / t_pk, float(np.abs(centred(ilsr) - ours).max())))
        rows.append((label, "choix.mm_rankings", t_mm, t_mm / t_pk, float(np.abs(centred(mm) - ours).max())))
    return rows


def home_rows(repeats, quick):
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression

    from pairkit import read_comparisons
    from pairkit.data import Comparisons
    from pairkit.rating import fit_order_advantage

    raw = read_comparisons(
        SHARED / "sports" / "icehockey.csv", a="visitor", b="opponent", outcome="result", a_first="home.ice"
    )
    home = raw.a_first.copy()
    ice = Comparisons.from_arrays(raw.a, raw.b, raw.outcome, items=raw.items, a_first=~home)
    rng = np.random.default_rng(1)
    n, m = (200, 50_000) if quick else (500, 300_000)
    truth = rng.normal(size=n)
    a = rng.integers(0, n, m)
    b = (a + rng.integers(1, n, m)) % n
    y = (rng.random(m) < 1 / (1 + np.exp(-(truth[a] - truth[b] + 0.3)))).astype(float)
    league = Comparisons.from_arrays(a, b, y, a_first=np.ones(m, bool))
    cases = [
        ("BT + home, icehockey (58 teams, 1083 games)", ice, ~home),
        (f"BT + home, synthetic ({n} teams, {m:,} games)", league, np.zeros(m, bool)),
    ]
    rows = []
    for label, comps, neutral in cases:
        t_pk, board = timed(
            lambda comps=comps, neutral=neutral: fit_order_advantage(comps, neutral=neutral, intervals="none"), repeats
        )
        mm, nn = len(comps), comps.n_items
        x = np.where(neutral, 0.0, np.where(comps.a_first, 1.0, -1.0))
        rr = np.repeat(np.arange(mm), 3)
        cols = np.stack([comps.a, comps.b, np.full(mm, nn)], 1).ravel()
        vals = np.stack([np.ones(mm), -np.ones(mm), x], 1).ravel()
        X = sp.csr_matrix((vals, (rr, cols)), shape=(mm, nn + 1))
        X2 = sp.vstack([X, X]).tocsr()
        y2 = np.r_[np.ones(mm), np.zeros(mm)]
        w2 = np.r_[comps.outcome, 1 - comps.outcome]
        keep = w2 > 0

        def sk(X2=X2, y2=y2, w2=w2, keep=keep):
            model = LogisticRegression(C=np.inf, fit_intercept=False, tol=1e-10, max_iter=100_000)
            return model.fit(X2[keep], y2[keep], sample_weight=w2[keep]).coef_.ravel()

        t_sk, coef = timed(sk, max(1, repeats // 2))
        diff = max(
            float(np.abs(centred(coef[:nn]) - board.scores).max()),
            abs(coef[nn] - board.params["order_advantage"]),
        )
        rows.append((label, "pairkit fit_order_advantage", t_pk, 1.0, 0.0))
        rows.append((label, "sklearn LogisticRegression (lbfgs, sparse)", t_sk, t_sk / t_pk, diff))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smaller synthetic cases")
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="BLAS threads for every implementation (0 = library default); on 2 shared cores a "
        "thread pool makes small dense solves 100x slower",
    )
    args = parser.parse_args()
    from contextlib import nullcontext

    import choix  # noqa: F401  (load every BLAS-linked library before limiting its thread pool)
    import sklearn.linear_model  # noqa: F401
    from threadpoolctl import threadpool_info, threadpool_limits

    import pairkit.rating  # noqa: F401

    limit = threadpool_limits(args.blas_threads) if args.blas_threads else nullcontext()
    with limit:
        blas = ", ".join(
            f"{i['internal_api']} {i.get('architecture', '')} × {i['num_threads']}"
            for i in threadpool_info()
            if i["user_api"] == "blas"
        )
        rows = pl_rows(args.repeats, args.quick) + home_rows(args.repeats, args.quick)
    print(f"BLAS: {blas}")
    print("| case | implementation | time (s) | time / pairkit | max abs diff vs pairkit |")
    print("|---|---|---:|---:|---:|")
    for case, impl, t, ratio, diff in rows:
        print(f"| {case} | {impl} | {t:.4f} | {ratio:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
