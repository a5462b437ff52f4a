"""Calls vs Kendall τ for every registered selection strategy, in one run (simulated Bradley–Terry judge).

32 items, θ ~ N(0, sd²) with sd 6 ("spread": most random pairs are lopsided) and sd 2 ("close"); hard sampled
verdicts; several seeds. Every strategy in ``pairkit.select.strategies.STRATEGIES`` is run:

- anytime strategies (``random_pairs``, ``active`` with each rule, ``swiss``, ``kwise``): τ of a Bradley–Terry fit
  (prior 0.1) on every prefix of their judgments, on a grid of call counts;
- strategies with a fixed plan (sorts, knockouts, round robin, windows): one point per setting of their size option,
  τ of the strategy's own scores (``Selection.scores()``: its ranking where it has one, else Bradley–Terry).

K-wise rows also run with a simulated *listwise* judge (one call ranks k answers by Plackett–Luce sampling of the
same θ), where a call carries more than one comparison — and shows k answers, so the table also gives the answers
read (calls × answers per call) against random pairs. The table gives the median calls to τ ≥ 0.9 and the ratio
to random pairs; the plot (``--plot``) the mean τ against calls.

    python benchmarks/bench_selection_efficiency.py --seeds 4 --plot benchmarks/results/selection_efficiency.png
"""

from __future__ import annotations

import argparse
import re
import time
import warnings

import numpy as np

from pairkit.data import Comparisons
from pairkit.judges import CallableChat, ListwiseJudge, SimulatedJudge
from pairkit.metrics import kendall_tau
from pairkit.rating import fit_bradley_terry
from pairkit.select import Pool, select
from pairkit.select.strategies import STRATEGIES

N = 32
GRID = np.concatenate([np.arange(16, 512, 8), np.arange(512, 1024, 32), np.arange(1024, 1537, 64)])
BUDGET = int(GRID[-1])
NUMBERED = re.compile(r"\[(\d+)\]\n(item\d+)")

# name → (label, options) runs; anytime strategies are read on every prefix of their judgments.
ANYTIME = {
    "random_pairs": [("random_pairs", {"n_comparisons": BUDGET})],
    "active": [(f"active ({r})", {"rule": r, "n_comparisons": BUDGET}) for r in ("rank", "information", "ucb",
                                                                                  "discordance")],
    "swiss": [("swiss (12 rounds)", {"rounds": 12})],
    "kwise": [(f"kwise (k=4, {a} anchor, pairwise judge)", {"k": 4, "rounds": 60, "anchor": a})
              for a in ("ucb", "discordance")],
}
FIXED = {
    "round_robin": [("round_robin", {})],
    "knockout": [(f"knockout (best of {b})", {"best_of": b}) for b in (1, 3)],
    "varco_arena": [("varco_arena", {})],
    "merge_sort": [("merge_sort", {})],
    "pairs_beam": [("pairs_beam (beam 2)", {"beam": 2})],
    "heap_topk": [("heap_topk (k = n: heap sort)", {"k": N})],
    "sliding_topk": [(f"sliding_topk (k={k})", {"k": k}) for k in (4, 8)],
    "duo_rerank": [("duo_rerank (depth 16)", {"depth": 16})],
    "vs_baselines": [("vs_baselines", {})],
    "listwise": [(f"listwise (window 4, {p} passes, pairwise judge)", {"window": 4, "passes": p}) for p in (1, 3)],
}
LISTWISE_JUDGE = {
    "kwise": [(f"kwise (k={k}, {a} anchor, listwise judge)", {"k": k, "rounds": 80, "anchor": a})
              for k in (4, 8) for a in ("ucb", "discordance")],
    "listwise": [(f"listwise (window 8, {p} passes, listwise judge)", {"window": 8, "passes": p}) for p in (1, 3)],
}


def world(spread: float, seed: int):
    rng = np.random.default_rng(seed)
    theta = rng.normal(0.0, spread, N)
    names = [f"item{i:03d}" for i in range(N)]
    return theta, names, Pool.single(names)


def listwise_judge(theta, names, seed: int) -> ListwiseJudge:
    """A listwise judge whose ranking is a Plackett–Luce draw (Gumbel-max over θ) of the candidates shown."""
    strength = dict(zip(names, theta))
    rng = np.random.default_rng(seed + 7)

    def rank(messages):
        shown = NUMBERED.findall(messages[-1]["content"])
        noisy = [strength[name] + rng.gumbel() for _, name in shown]
        order = [shown[k][0] for k in np.argsort(noisy)[::-1]]
        return "Ranking: " + " > ".join(f"[{n}]" for n in order)

    return ListwiseJudge(CallableChat(rank, chat_id=f"pl{seed}"))


def prefix_curve(sel, theta) -> np.ndarray:
    """τ of a BT fit on the judgments made by each call count in GRID (decisions follow the calls' order)."""
    _, a, b, s, _ = map(np.array, zip(*sel.decisions))
    w = np.asarray(sel.weights, float) if len(sel.weights) == len(a) else np.ones(len(a))
    per_call = len(a) / max(sel.calls, 1)  # listwise judges: several decisions per call
    out = np.full(len(GRID), np.nan)
    for k, calls in enumerate(GRID):
        m = int(round(calls * per_call))
        if calls <= sel.calls and m >= 2:
            comps = Comparisons.from_arrays(a[:m], b[:m], s[:m], items=sel.pool.items, weight=w[:m])
            board = fit_bradley_terry(comps, prior=0.1, intervals="none")
            out[k] = float(kendall_tau(board.scores, theta))
    return out


def first_reach(curve: np.ndarray, target: float = 0.9) -> float:
    hit = np.flatnonzero(curve >= target)
    return float(GRID[hit[0]]) if len(hit) else float("inf")


def run(spread: float, seeds: int) -> dict:
    rows: dict[str, dict] = {}
    plans = [(name, label, opts, "pairwise", True) for name, runs in ANYTIME.items() for label, opts in runs]
    plans += [(name, label, opts, "pairwise", False) for name, runs in FIXED.items() for label, opts in runs]
    plans += [(name, label, opts, "listwise", name == "kwise") for name, runs in LISTWISE_JUDGE.items()
              for label, opts in runs]  # fmt: skip
    for name, label, opts, judge_kind, anytime in plans:
        need, curves, points, times = [], [], [], []
        for seed in range(seeds):
            theta, names, pool = world(spread, seed)
            judge = (SimulatedJudge(dict(zip(names, theta)), seed=seed + 1000) if judge_kind == "pairwise"
                     else listwise_judge(theta, names, seed))  # fmt: skip
            t = time.perf_counter()
            sel = select(name, judge, pool, seed=seed, **opts)
            times.append(time.perf_counter() - t)
            if anytime:
                curve = prefix_curve(sel, theta)
                curves.append(curve)
                need.append(first_reach(curve))
            tau = float(kendall_tau(sel.scores(prior=0.1), theta))
            points.append((sel.calls, tau))
            if not anytime:
                need.append(sel.calls if tau >= 0.9 else float("inf"))
        calls, taus = np.array(points).T
        rows[label] = {
            "strategy": name,
            "judge": judge_kind,
            "need": float(np.median(need)),
            "shown": 2 if judge_kind == "pairwise" else opts.get("k", opts.get("window")),
            "reached": int(np.sum(np.isfinite(need))),
            "final_calls": float(np.mean(calls)),
            "final_tau": float(np.mean(taus)),
            "curve": np.nanmean(curves, axis=0) if curves else None,
            "time": float(np.mean(times)),
        }
        print(f"  sd {spread:g} {label}: calls to 0.9 {rows[label]['need']:g}, final τ {rows[label]['final_tau']:.3f}"
              f" at {rows[label]['final_calls']:.0f} calls", flush=True)
    return rows


def table(results: dict, seeds: int) -> list[str]:
    lines = [
        "| strengths | strategy | judge | calls to τ ≥ 0.9 (median) | seeds reaching | × fewer than random "
        "| answers per call | × fewer answers read than random | calls made (mean) | τ at the end (mean) "
        "| time/run (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for spread, rows in results.items():
        base = rows["random_pairs"]["need"]
        for label, r in sorted(rows.items(), key=lambda kv: (kv[1]["need"], kv[0])):
            ratio = base / r["need"] if np.isfinite(r["need"]) else float("nan")
            read = 2 * base / (r["need"] * r["shown"]) if np.isfinite(r["need"]) else float("nan")
            kind = f"sd {spread:g} ({'spread' if spread >= 4 else 'close'})"
            lines.append(
                f"| {kind} | {label} | {r['judge']} | {r['need']:g} | {r['reached']}/{seeds} | "
                f"{_ratio(ratio)} | {r['shown']} | {_ratio(read)} | {r['final_calls']:.0f} | "
                f"{r['final_tau']:.3f} | {r['time']:.1f} |"
            )
    return lines


def _ratio(x: float) -> str:
    return "–" if not np.isfinite(x) else f"{x:.2f}"


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(7 * len(results), 5), sharey=True)
    for ax, (spread, rows) in zip(np.atleast_1d(axes), results.items()):
        for label, r in rows.items():
            style = "--" if r["judge"] == "listwise" else "-"
            if r["curve"] is not None:
                ax.plot(GRID, r["curve"], style, lw=1.2, label=label)
            else:
                ax.plot([r["final_calls"]], [r["final_tau"]], "o" if r["judge"] == "pairwise" else "s", label=label)
        ax.axhline(0.9, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_ylim(0.3, 1.0)
        ax.set_title(f"{N} items, θ ~ N(0, {spread:g}²)")
        ax.set_xlabel("judge calls")
    np.atleast_1d(axes)[0].set_ylabel("Kendall τ to the truth (mean over seeds)")
    np.atleast_1d(axes)[-1].legend(fontsize=6, loc="lower right", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--plot", default=None)
    args = parser.parse_args()
    covered = set(ANYTIME) | set(FIXED)
    missing = sorted(set(STRATEGIES.names()) - covered)
    if missing:
        raise SystemExit(f"registered strategies without a run here: {', '.join(missing)}")
    warnings.simplefilter("ignore")  # prefix fits of early judgments warn about unconnected items
    t0 = time.perf_counter()
    results = {spread: run(spread, args.seeds) for spread in (6.0, 2.0)}
    print("\n".join(table(results, args.seeds)))
    print(f"\nTotal {time.perf_counter() - t0:.0f} s.")
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
